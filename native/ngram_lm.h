// ngram_lm.h — KenLM-compatible n-gram language models for the perplexity filter (CCNet; Thunder-LLM
// used a 5-gram KenLM model of Korean Wikipedia): counting (NgramCounter), interpolated modified
// Kneser-Ney estimation as KenLM's `lmplz` does it (NgramCounter::estimate), ARPA writing and reading
// (NgramModel::writeArpa, ArpaReader), and scoring with the log10 probabilities of KenLM's `query`.
//
// What is reproduced from lmplz (lm/builder/corpus_count.cc, adjust_counts.cc,
// initial_probabilities.cc, interpolate.cc, lm/common/print.cc), all in float as lmplz computes:
//  * Input: one sentence a line; tokens split on ' ', '\t', '\r', '\0'. Ids by first appearance after
//    <unk>=0, <s>=1, </s>=2. The tokens <s>, </s>, <unk> in the text count as whitespace (lmplz
//    --skip_symbols; without it lmplz refuses the corpus). lmplz turns an empty line into "<s> </s>";
//    here lines without tokens are skipped unless NgramCounter(order, /*countEmptyLines=*/true).
//  * Only order-N n-grams are counted, each sentence padded with N-1 <s>. "<s> <s> ..." n-grams
//    (second word <s>) feed the lower orders but are not in the model.
//  * Adjusted counts: order N raw; lower orders the number of distinct left extensions, except
//    n-grams that start with <s>, which keep their raw count. Unigrams <unk> and <s> have count 0.
//  * Count-of-counts t1..t4 per order over the adjusted counts, with one lmplz quirk kept: the last
//    n-gram of each lower order in suffix order (the one AdjustCounts flushes after its loop) enters the
//    statistics with its raw count. Discounts D1, D2, D3+ by Chen & Goodman eq. 26; if t1, t2 or t3 is
//    0 or a discount falls outside [0, k], lmplz --discount_fallback's 0.5 1 1.5 (KnOptions).
//  * p(w|h) = (a(hw) - D(a(hw))) / Σx a(hx) + γ(h) p(w|h'), γ(h) = (D1 N1(h•) + D2 N2(h•) + D3+ N3+(h•))
//    / Σx a(hx). Unigrams interpolate with 1/|V|, |V| = number of unigrams minus one (<unk> and </s>
//    in, <s> out). p(<unk>) = γ(ε)/|V| (no count of its own). p(<s>) = 1, so the ARPA shows 0 for it
//    (SRILM writes -99; lmplz does not).
//  * ARPA: counts include <unk> and <s>; n-grams in suffix order (last word's id, then the one before
//    ...); every n-gram below order N carries a backoff: log10 γ when it is a context, 0 otherwise
//    (n-grams ending in </s> or <unk>); order N none. Floats printed as lmplz does: the shortest
//    decimal that reads back to the same float (double-conversion ToShortestSingle, exponent form
//    below 1e-6: "1.5e-7").
// Scoring (KenLM query): sentence context starts at <s>, </s> is scored at the end; an unknown word is
// <unk> (p(<unk>), counted as OOV) and stays in the context, where no n-gram contains it, so the next
// word backs off. p(w|h) = the longest n-gram (h suffix + w) in the model, plus the backoffs of the
// context suffixes longer than that match (standard ARPA semantics; KenLM's state minimization gives
// the same numbers). ARPA files with "holes" (a b c present, b c absent) get blank b c entries holding
// the backed-off probability, as KenLM's loader does, so the longest match is still found.
//
// Memory: counting stores each distinct order-N n-gram once: 4N bytes of ids + 8 count + 8-16 bytes
// of hash slot (load <= 1/2). A model holds, per n-gram, 4n bytes of ids + 8 (prob, backoff) for the
// ARPA (read models keep the file's order), and for scoring a 16-byte hash slot (64-bit key, prob,
// backoff) at load 0.35..0.7, i.e. 23-46 bytes; keys are 64-bit hashes of the id tuple, not the words (as
// KenLM's probing model). The vocabulary costs its bytes + 40..72 per word.
#pragma once
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace ko {

constexpr int kNgramMaxOrder = 6;
constexpr uint32_t kNgramUnk = 0, kNgramBos = 1, kNgramEos = 2;

struct KnOptions {
  bool discountFallback = true;           // lmplz --discount_fallback (on here; off = throw)
  double fallback[3] = {0.5, 1.0, 1.5};   // D1, D2, D3+ used when the count-of-counts cannot give them
};

// Words ↔ ids. Open addressing over 64-bit hashes of the bytes; the bytes are compared on a hit.
class NgramVocab {
 public:
  NgramVocab();  // <unk>=0, <s>=1, </s>=2
  bool lookup(std::string_view w, uint32_t* id) const;
  uint32_t find(std::string_view w) const {  // kNgramUnk when absent
    uint32_t id;
    return lookup(w, &id) ? id : kNgramUnk;
  }
  uint32_t findOrInsert(std::string_view w);
  std::string_view word(uint32_t id) const {
    return std::string_view(chars_.data() + offsets_[id], size_t(offsets_[id + 1] - offsets_[id]));
  }
  uint32_t size() const { return uint32_t(offsets_.size() - 1); }

 private:
  struct Slot {
    uint64_t hash;  // 0 = empty
    uint32_t id;
  };
  void rehash(size_t capacity);
  std::string chars_;
  std::vector<uint64_t> offsets_;
  std::vector<Slot> slots_;
};

// Scoring table of one order: 64-bit key of the id tuple → prob, backoff (log10). Linear probing.
struct NgramEntry {
  uint64_t key;  // 0 = empty
  float prob;
  float backoff;
};
class NgramTable {
 public:
  void reserve(size_t n);
  const NgramEntry* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = key & mask_;; i = (i + 1) & mask_) {
      const NgramEntry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == 0) return nullptr;
    }
  }
  NgramEntry* insert(uint64_t key, bool* existed);  // a zeroed entry when new
  size_t size() const { return size_; }
  size_t bytes() const { return slots_.size() * sizeof(NgramEntry); }

 private:
  std::vector<NgramEntry> slots_;
  uint64_t mask_ = 0;
  size_t size_ = 0;
};

// Keys: built from the last word backwards, so that a scorer extends a match one word to the left at a
// time. Key of (w1 .. wn) = extend(...extend(first(wn), wn-1)..., w1). Never 0.
inline uint64_t ngramMix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}
inline uint64_t ngramKeyFirst(uint32_t w) {
  uint64_t h = ngramMix((uint64_t(w) + 1) * 0x9E3779B97F4A7C15ULL);
  return h ? h : 1;
}
inline uint64_t ngramKeyExtend(uint64_t h, uint32_t w) {
  h = ngramMix(h ^ ((uint64_t(w) + 1) * 0xC2B2AE3D27D4EB4FULL));
  return h ? h : 1;
}
inline uint64_t ngramKey(const uint32_t* ids, int n) {
  uint64_t h = ngramKeyFirst(ids[n - 1]);
  for (int i = n - 2; i >= 0; i--) h = ngramKeyExtend(h, ids[i]);
  return h;
}

// What a scorer remembers between words: the most recent words (words[0] = last) that, with their
// predecessors, form n-grams of the model, and those n-grams' backoffs (backoff[k] is that of the
// (k+1)-gram words[k] .. words[0]).
struct NgramState {
  int len = 0;
  uint32_t words[kNgramMaxOrder - 1];
  float backoff[kNgramMaxOrder - 1];
};

class NgramModel {
 public:
  int order() const { return order_; }
  const NgramVocab& vocab() const { return vocab_; }
  uint64_t count(int n) const { return prob_[n - 1].size(); }  // n-grams of order n written to the ARPA
  // Entry i of order n (ARPA order): ids, log10 prob, log10 backoff (0 for order N).
  const uint32_t* ngram(int n, size_t i) const { return ids_[n - 1].data() + i * size_t(n); }
  float prob(int n, size_t i) const { return prob_[n - 1][i]; }
  float backoff(int n, size_t i) const { return n < order_ ? backoff_[n - 1][i] : 0.0f; }
  // Looks up an n-gram of the model (blanks of a holed ARPA included).
  bool find(const uint32_t* ids, int n, float* prob, float* backoff) const;

  // Estimation facts (estimated models only): discounts D[0..3] (D0 = 0) of order n, and whether they
  // are the fallback ones.
  const float* discounts(int n) const { return discounts_[n - 1]; }
  bool usedFallback(int n) const { return fallback_[n - 1]; }

  void writeArpa(std::ostream& os) const;

  // ---- scoring (KenLM query) ----
  uint32_t wordId(std::string_view w) const { return vocab_.find(w); }
  NgramState beginSentenceState() const;  // context <s>
  NgramState nullContextState() const { return NgramState(); }
  // log10 p(word | in); *out (may alias in) becomes the state after word.
  float score(const NgramState& in, uint32_t word, NgramState* out) const;
  // log10 p(ids[n-1] | ids[0 .. n-2]) with only that context (no <s> unless given).
  float logProb(const uint32_t* ids, int n) const;
  // Sum of log10 p over the words and </s>, with <s> context. perWord (optional) gets one value per
  // word plus the </s> one; *oov (optional) the number of words not in the vocabulary.
  double scoreSentence(const std::vector<std::string_view>& words, std::vector<float>* perWord, int* oov) const;
  // CCNet's document perplexity: doc d is text[offsets[d], offsets[d+1]); each '\n'-separated line with
  // at least one token is a sentence. Per doc: sum of log10 p, scored tokens (words + one </s> per
  // sentence), OOV words. OpenMP over documents. ppl = 10^(-sumLog10 / nTokens) (perplexity()).
  void scoreDocuments(const char* text, const int64_t* offsets, int64_t nDocs, double* sumLog10, int64_t* nTokens,
                      int64_t* oov) const;
  static double perplexity(double sumLog10, int64_t nTokens);

  size_t memoryBytes() const;

 private:
  friend class NgramCounter;
  friend class ArpaReader;
  friend struct NgramEstimator;
  void resize(int order);
  void buildIndex();  // unigram arrays and hash tables from the ARPA entries (estimated models)
  void setUnigram(uint32_t id, float prob, float backoff);

  int order_ = 0;
  NgramVocab vocab_;
  std::vector<std::vector<uint32_t>> ids_;  // [n-1]: n ids per entry, ARPA order
  std::vector<std::vector<float>> prob_, backoff_;
  std::vector<float> uniProb_, uniBackoff_;  // by word id; <unk> -100 when the ARPA lacks it (KenLM)
  std::vector<NgramTable> tables_;           // [n-1] for n >= 2
  float discounts_[kNgramMaxOrder][4] = {};
  bool fallback_[kNgramMaxOrder] = {};
};

// Streaming counter of order-N n-grams: feed text in chunks of any size (a line or a token may span
// chunks), then finish(), then estimate().
class NgramCounter {
 public:
  explicit NgramCounter(int order, bool countEmptyLines = false);  // order 1..6
  void addText(const char* data, size_t n);
  void finish();
  NgramModel estimate(const KnOptions& opt = {}) const;  // throws std::runtime_error on an empty corpus

  int order() const { return order_; }
  int64_t tokens() const { return tokens_; }  // words, without <s> and </s> (lmplz's "tokens")
  int64_t sentences() const { return sentences_; }
  uint32_t vocabSize() const { return vocab_.size(); }  // with <unk>, <s>, </s>
  size_t distinctNgrams() const { return counts_.size(); }
  size_t memoryBytes() const;

 private:
  friend struct NgramEstimator;
  void token(const char* p, size_t n);
  void endLine();
  void countWindow();
  void rehash(size_t capacity);
  uint64_t hashGram(const uint32_t* g) const;

  int order_;
  bool countEmpty_;
  bool finished_ = false;
  NgramVocab vocab_;
  std::string partial_;        // token cut by a chunk boundary
  bool lineHasBytes_ = false;  // anything since the last '\n' (for countEmptyLines)
  bool inSentence_ = false;
  uint32_t window_[kNgramMaxOrder] = {};
  int64_t tokens_ = 0, sentences_ = 0;
  std::vector<uint32_t> grams_;  // order ids per distinct n-gram, first-seen order
  std::vector<uint64_t> counts_;
  std::vector<uint64_t> slots_;  // (hash >> 32) << 32 | (index + 1); 0 = empty
  uint64_t mask_ = 0;
};

// ARPA parser fed in chunks (the caller may be decompressing). finish() builds the model or throws
// std::runtime_error("ARPA line N: what is wrong").
class ArpaReader {
 public:
  ArpaReader();
  void feed(const char* data, size_t n);
  NgramModel finish();

 private:
  void line(std::string_view l);
  void entry(std::string_view l);
  void endSection();
  [[noreturn]] void fail(const std::string& what) const;
  enum class St { Preamble, Counts, Header, Entries, Done };
  St st_ = St::Preamble;
  int64_t lineNo_ = 0;
  std::string pending_;
  std::vector<uint64_t> declared_;
  int cur_ = 0;  // order of the section being read
  uint64_t got_ = 0;
  std::vector<uint8_t> seen_;  // unigram present, by word id
  NgramModel m_;
};

}  // namespace ko
