// ngram_score.cpp — scoring as KenLM's `query`: per word, the longest n-gram of the model ending in it
// (found by extending the match one word to the left at a time, one hash probe each, stopping at the
// first miss — the ARPA guarantees that every suffix of an n-gram is present, and the reader fills
// holes with blanks), plus the backoffs of the longer context suffixes, which the state carries from
// the previous word. Per word: one vocabulary probe and (match length + 1) table probes.
#include <cmath>
#include <cstring>

#include "ngram_lm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ko {

void NgramModel::resize(int order) {
  order_ = order;
  ids_.assign(order, {});
  prob_.assign(order, {});
  backoff_.assign(order, {});
  tables_.assign(order, NgramTable());
}

void NgramModel::setUnigram(uint32_t id, float prob, float backoff) {
  if (uniProb_.size() <= id) {
    uniProb_.resize(size_t(id) + 1, -100.0f);  // KenLM's unknown_missing_logprob for an absent <unk>
    uniBackoff_.resize(size_t(id) + 1, 0.0f);
  }
  uniProb_[id] = prob;
  uniBackoff_[id] = backoff;
}

void NgramModel::buildIndex() {
  uniProb_.assign(vocab_.size(), -100.0f);
  uniBackoff_.assign(vocab_.size(), 0.0f);
  for (size_t i = 0; i < prob_[0].size(); i++) setUnigram(ids_[0][i], prob_[0][i], backoff(1, i));
  for (int n = 2; n <= order_; n++) {
    NgramTable& t = tables_[n - 1];
    t.reserve(count(n));
    for (size_t i = 0; i < count(n); i++) {
      bool existed;
      NgramEntry* e = t.insert(ngramKey(ngram(n, i), n), &existed);
      e->prob = prob(n, i);
      e->backoff = backoff(n, i);
    }
  }
}

bool NgramModel::find(const uint32_t* ids, int n, float* prob, float* backoff) const {
  if (n < 1 || n > order_) return false;
  if (n == 1) {
    if (ids[0] >= uniProb_.size()) return false;
    *prob = uniProb_[ids[0]];
    *backoff = uniBackoff_[ids[0]];
    return true;
  }
  const NgramEntry* e = tables_[n - 1].find(ngramKey(ids, n));
  if (!e) return false;
  *prob = e->prob;
  *backoff = e->backoff;
  return true;
}

NgramState NgramModel::beginSentenceState() const {
  NgramState s;
  s.len = order_ > 1 ? 1 : 0;
  s.words[0] = kNgramBos;
  s.backoff[0] = kNgramBos < uniBackoff_.size() ? uniBackoff_[kNgramBos] : 0.0f;
  return s;
}

float NgramModel::score(const NgramState& in, uint32_t word, NgramState* out) const {
  if (word >= uniProb_.size()) word = kNgramUnk;
  float prob = uniProb_[word];
  float bo[kNgramMaxOrder];
  bo[0] = uniBackoff_[word];
  int matched = 1;
  uint64_t key = ngramKeyFirst(word);
  for (int k = 0; k < in.len; k++) {  // try the (k+2)-gram in.words[k] .. in.words[0] word
    key = ngramKeyExtend(key, in.words[k]);
    const NgramEntry* e = tables_[k + 1].find(key);
    if (!e) break;
    prob = e->prob;
    bo[k + 1] = e->backoff;
    matched = k + 2;
  }
  // Back off through the context suffixes longer than the match.
  for (int j = matched - 1; j < in.len; j++) prob += in.backoff[j];
  // The new context: word and the words before it that formed the matched n-grams.
  const int len = matched < order_ - 1 ? matched : order_ - 1;
  uint32_t words[kNgramMaxOrder - 1];
  words[0] = word;
  for (int k = 1; k < len; k++) words[k] = in.words[k - 1];
  out->len = len;
  std::memcpy(out->words, words, sizeof(uint32_t) * len);
  std::memcpy(out->backoff, bo, sizeof(float) * len);
  return prob;
}

float NgramModel::logProb(const uint32_t* ids, int n) const {
  NgramState s;
  const int ctx = n - 1 < order_ - 1 ? n - 1 : order_ - 1;
  // Build the state by looking the context suffixes up, shortest first, as scoring would have.
  s.len = 0;
  for (int k = 0; k < ctx; k++) {
    float p, b;
    if (!find(ids + (n - 2 - k), k + 1, &p, &b)) break;
    s.words[k] = ids[n - 2 - k];
    s.backoff[k] = b;
    s.len = k + 1;
  }
  NgramState out;
  return score(s, ids[n - 1], &out);
}

double NgramModel::scoreSentence(const std::vector<std::string_view>& words, std::vector<float>* perWord,
                                 int* oov) const {
  NgramState s = beginSentenceState();
  double total = 0.0;
  int unknown = 0;
  if (perWord) perWord->clear();
  for (std::string_view w : words) {
    uint32_t id;
    if (!vocab_.lookup(w, &id)) id = kNgramUnk;
    if (id == kNgramUnk) unknown++;
    const float p = score(s, id, &s);
    total += p;
    if (perWord) perWord->push_back(p);
  }
  const float p = score(s, kNgramEos, &s);
  total += p;
  if (perWord) perWord->push_back(p);
  if (oov) *oov = unknown;
  return total;
}

namespace {
inline bool isSep(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\0'; }
}  // namespace

void NgramModel::scoreDocuments(const char* text, const int64_t* offsets, int64_t nDocs, double* sumLog10,
                                int64_t* nTokens, int64_t* oov) const {
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t d = 0; d < nDocs; d++) {
    const char* p = text + offsets[d];
    const char* end = text + offsets[d + 1];
    double total = 0.0;
    int64_t tokens = 0, unknown = 0;
    NgramState s;
    bool inSentence = false;
    while (p < end) {
      const char c = *p;
      if (c == '\n') {
        if (inSentence) {
          total += score(s, kNgramEos, &s);
          tokens++;
          inSentence = false;
        }
        p++;
        continue;
      }
      if (isSep(c)) {
        p++;
        continue;
      }
      const char* q = p + 1;
      while (q < end && *q != '\n' && !isSep(*q)) q++;
      if (!inSentence) {
        s = beginSentenceState();
        inSentence = true;
      }
      const uint32_t id = vocab_.find(std::string_view(p, size_t(q - p)));
      if (id == kNgramUnk) unknown++;
      total += score(s, id, &s);
      tokens++;
      p = q;
    }
    if (inSentence) {
      total += score(s, kNgramEos, &s);
      tokens++;
    }
    sumLog10[d] = total;
    nTokens[d] = tokens;
    oov[d] = unknown;
  }
}

double NgramModel::perplexity(double sumLog10, int64_t nTokens) {
  return nTokens > 0 ? std::pow(10.0, -sumLog10 / double(nTokens)) : 0.0;
}

size_t NgramModel::memoryBytes() const {
  size_t b = (uniProb_.capacity() + uniBackoff_.capacity()) * 4;
  for (int n = 0; n < order_; n++)
    b += ids_[n].capacity() * 4 + (prob_[n].capacity() + backoff_[n].capacity()) * 4 + tables_[n].bytes();
  return b;
}

}  // namespace ko
