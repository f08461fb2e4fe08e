// test_ngram_lm.cpp — group `prep`: the KenLM-compatible n-gram LM (native/ngram_*.cpp). Expected values
// are worked out by hand in the comments (exact fractions), never taken from the code under test; the
// model computes in float as lmplz does, so they agree to ~1e-7.
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "ngram_lm.h"
#include "rng.h"

namespace {

using ko::NgramModel;

NgramModel train(const std::string& text, int order, bool countEmpty = false, size_t chunk = 0) {
  ko::NgramCounter c(order, countEmpty);
  if (chunk == 0) {
    c.addText(text.data(), text.size());
  } else {
    for (size_t i = 0; i < text.size(); i += chunk) c.addText(text.data() + i, std::min(chunk, text.size() - i));
  }
  c.finish();
  return c.estimate();
}

std::string arpaOf(const NgramModel& m) {
  std::ostringstream os;
  m.writeArpa(os);
  return os.str();
}

NgramModel readArpa(const std::string& text, size_t chunk = 0) {
  ko::ArpaReader r;
  if (chunk == 0) {
    r.feed(text.data(), text.size());
  } else {
    for (size_t i = 0; i < text.size(); i += chunk) r.feed(text.data() + i, std::min(chunk, text.size() - i));
  }
  return r.finish();
}

std::vector<uint32_t> idsOf(const NgramModel& m, const std::vector<std::string>& words) {
  std::vector<uint32_t> ids;
  for (auto& w : words) {
    uint32_t id;
    if (!m.vocab().lookup(w, &id)) throw kotest::Failure{"word not in vocab: " + w};
    ids.push_back(id);
  }
  return ids;
}

// log10 prob and backoff of an n-gram that must be in the model.
float probOf(const NgramModel& m, const std::vector<std::string>& words) {
  auto ids = idsOf(m, words);
  float p, b;
  if (!m.find(ids.data(), int(ids.size()), &p, &b)) throw kotest::Failure{"n-gram not in model: " + words.back()};
  return p;
}
float backoffOf(const NgramModel& m, const std::vector<std::string>& words) {
  auto ids = idsOf(m, words);
  float p, b;
  if (!m.find(ids.data(), int(ids.size()), &p, &b)) throw kotest::Failure{"n-gram not in model: " + words.back()};
  return b;
}
bool has(const NgramModel& m, const std::vector<std::string>& words) {
  std::vector<uint32_t> ids;
  for (auto& w : words) {
    uint32_t id;
    if (!m.vocab().lookup(w, &id)) return false;
    ids.push_back(id);
  }
  float p, b;
  return m.find(ids.data(), int(ids.size()), &p, &b);
}

double score(const NgramModel& m, const std::vector<std::string>& words, int* oov = nullptr,
             std::vector<float>* per = nullptr) {
  std::vector<std::string_view> v(words.begin(), words.end());
  int o = 0;
  const double s = m.scoreSentence(v, per, &o);
  if (oov) *oov = o;
  return s;
}

double l10(double x) { return std::log10(x); }

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  std::string l;
  while (std::getline(is, l)) out.push_back(l);
  return out;
}

// The corpus of the hand calculations: 11 lines over a, b, c, d.
const char* kHandCorpus =
    "a a\na a\nc a b\nc b\nc b\nc b\nc\nc\nc\nc\nd a\n";

std::string expectThrow(const std::string& arpa) {
  try {
    readArpa(arpa);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  throw kotest::Failure{"no exception for:\n" + arpa};
}

// A random corpus: Zipf-like over `vocab` words, lines of 1..maxLen words.
std::string randomCorpus(uint64_t seed, int nLines, int vocab, int maxLen) {
  ko::Rng r(seed);
  std::string s;
  for (int i = 0; i < nLines; i++) {
    const int len = 1 + int(r.uniform() * maxLen);
    for (int k = 0; k < len; k++) {
      const double u = r.uniform();
      const int w = int(vocab * u * u * u);  // skewed towards small ids
      if (k) s += ' ';
      s += "w" + std::to_string(w);
    }
    s += '\n';
  }
  return s;
}

}  // namespace

// ---- 1. modified Kneser-Ney by hand, order 2 ---------------------------------------------------
KO_TEST(prep, ngram_kn_bigram_by_hand) {
  // Corpus (ids by first appearance: <unk>0 <s>1 </s>2 a3 c4 b5 d6):
  //   "a a" x2, "c a b", "c b" x3, "c" x4, "d a"
  // Bigram counts (order 2 = highest: raw): <s> a 2, <s> c 8, <s> d 1, a a 2, a b 1, a </s> 3,
  //   c a 1, c b 3, c </s> 4, b </s> 4, d a 1                                   (11 bigrams)
  // Count-of-counts t1..t4 = 4 (<s> d, a b, c a, d a), 2 (<s> a, a a), 2 (a </s>, c b), 2 (c </s>, b </s>)
  //   Y = 4/(4+2*2) = 1/2; D1 = 1 - 2*(1/2)*2/4 = 1/2; D2 = 2 - 3*(1/2)*2/2 = 1/2; D3+ = 3 - 4*(1/2)*2/2 = 1
  // Unigram adjusted counts = distinct left words: a {<s>,a,c,d} 4, b {a,c} 2, c {<s>} 1, d {<s>} 1,
  //   </s> {a,b,c} 3; <unk> 0, <s> 0. (The lmplz quirk — the last unigram, d, counted raw — changes
  //   nothing: d occurs once.) t = 2, 1, 1, 1: Y = 2/(2+2) = 1/2, D1 = 1/2, D2 = 2 - 3/2 = 1/2, D3+ = 3 - 2 = 1.
  const NgramModel m = train(kHandCorpus, 2);
  KO_CHECK(m.order() == 2);
  KO_CHECK(m.count(1) == 7 && m.count(2) == 11);
  for (int n = 1; n <= 2; n++) {
    KO_CHECK(!m.usedFallback(n));
    KO_CHECK_NEAR(m.discounts(n)[1], 0.5, 1e-7);
    KO_CHECK_NEAR(m.discounts(n)[2], 0.5, 1e-7);
    KO_CHECK_NEAR(m.discounts(n)[3], 1.0, 1e-7);
  }
  // Unigrams: sum a = 4+2+1+1+3 = 11; N1 = 2, N2 = 1, N3+ = 2: gamma = (0.5*2 + 0.5*1 + 1*2)/11 = 7/22;
  // |V| = 7 unigrams - <s> = 6; gamma/|V| = 7/132.
  //   p(a) = 3/11 + 7/132 = 43/132; p(b) = 1.5/11 + 7/132 = 25/132; p(c) = p(d) = 0.5/11 + 7/132 = 13/132;
  //   p(</s>) = 2/11 + 7/132 = 31/132; p(<unk>) = 7/132; p(<s>) = 1 (ARPA "0"). Sum over all but <s> = 1.
  KO_CHECK_NEAR(probOf(m, {"a"}), l10(43.0 / 132), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"b"}), l10(25.0 / 132), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"c"}), l10(13.0 / 132), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"d"}), l10(13.0 / 132), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"</s>"}), l10(31.0 / 132), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"<unk>"}), l10(7.0 / 132), 1e-6);
  KO_CHECK(probOf(m, {"<s>"}) == 0.0f);
  // Bigram contexts: gamma(h) = (D1 N1 + D2 N2 + D3+ N3+)/sum a(h.)
  //   <s>: a 2, c 8, d 1 -> sum 11, gamma = (0.5 + 0.5 + 1)/11 = 2/11
  //   a:   a 2, </s> 3, b 1 -> 6, gamma = 2/6 = 1/3;   b: </s> 4 -> 4, gamma = 1/4
  //   c:   a 1, b 3, </s> 4 -> 8, gamma = (0.5 + 2)/8 = 5/16;   d: a 1 -> 1, gamma = 1/2
  KO_CHECK_NEAR(backoffOf(m, {"<s>"}), l10(2.0 / 11), 1e-6);
  KO_CHECK_NEAR(backoffOf(m, {"a"}), l10(1.0 / 3), 1e-6);
  KO_CHECK_NEAR(backoffOf(m, {"b"}), l10(1.0 / 4), 1e-6);
  KO_CHECK_NEAR(backoffOf(m, {"c"}), l10(5.0 / 16), 1e-6);
  KO_CHECK_NEAR(backoffOf(m, {"d"}), l10(1.0 / 2), 1e-6);
  KO_CHECK(backoffOf(m, {"</s>"}) == 0.0f && backoffOf(m, {"<unk>"}) == 0.0f);
  //   p(a|<s>) = 1.5/11 + (2/11)(43/132) = 71/363;  p(c|<s>) = 7/11 + (2/11)(13/132) = 475/726
  //   p(d|<s>) = 0.5/11 + (2/11)(13/132) = 23/363;  p(a|a) = 1.5/6 + (1/3)(43/132) = 71/198
  //   p(</s>|a) = 2/6 + (1/3)(31/132) = 163/396;   p(b|a) = 0.5/6 + (1/3)(25/132) = 29/198
  //   p(</s>|b) = 3/4 + (1/4)(31/132) = 427/528;   p(a|c) = 0.5/8 + (5/16)(43/132) = 347/2112
  //   p(b|c) = 2/8 + (5/16)(25/132) = 653/2112;    p(</s>|c) = 3/8 + (5/16)(31/132) = 947/2112
  //   p(a|d) = 0.5 + (1/2)(43/132) = 175/264
  KO_CHECK_NEAR(probOf(m, {"<s>", "a"}), l10(71.0 / 363), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"<s>", "c"}), l10(475.0 / 726), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"<s>", "d"}), l10(23.0 / 363), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"a", "a"}), l10(71.0 / 198), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"a", "</s>"}), l10(163.0 / 396), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"a", "b"}), l10(29.0 / 198), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"b", "</s>"}), l10(427.0 / 528), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"c", "a"}), l10(347.0 / 2112), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"c", "b"}), l10(653.0 / 2112), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"c", "</s>"}), l10(947.0 / 2112), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"d", "a"}), l10(175.0 / 264), 1e-6);
  // Context c sums to 1: (347 + 653 + 947)/2112 + (5/16)(p(c) + p(d) + p(<unk>) = 33/132) = 1947/2112 + 165/2112.
  // Sentences: "c a b" = p(c|<s>) p(a|c) p(b|a) p(</s>|b); "b d" backs off every time:
  //   p(b|<s>) = (2/11)(25/132), p(d|b) = (1/4)(13/132), p(</s>|d) = (1/2)(31/132).
  KO_CHECK_NEAR(score(m, {"c", "a", "b"}), l10(475.0 / 726) + l10(347.0 / 2112) + l10(29.0 / 198) + l10(427.0 / 528),
                1e-5);
  KO_CHECK_NEAR(score(m, {"b", "d"}), l10(2.0 / 11 * 25 / 132) + l10(1.0 / 4 * 13 / 132) + l10(1.0 / 2 * 31 / 132), 1e-5);

  // ARPA layout: lmplz's header, unigrams by id, higher orders in suffix order (last word's id first),
  // backoff on every n-gram below the top order ("0" when not a context), <s> with prob 0.
  const auto L = lines(arpaOf(m));
  KO_CHECK(L.size() == 27);
  KO_CHECK(L[0] == "\\data\\" && L[1] == "ngram 1=7" && L[2] == "ngram 2=11" && L[3] == "" && L[4] == "\\1-grams:");
  const char* uni[] = {"<unk>", "<s>", "</s>", "a", "c", "b", "d"};
  for (int i = 0; i < 7; i++) {
    std::vector<std::string> f;
    std::stringstream ss(L[5 + i]);
    std::string x;
    while (std::getline(ss, x, '\t')) f.push_back(x);
    KO_CHECK(f.size() == 3 && f[1] == uni[i]);
  }
  KO_CHECK(L[5].substr(L[5].find('\t')) == "\t<unk>\t0");
  KO_CHECK(L[6].rfind("0\t<s>\t-", 0) == 0);
  KO_CHECK(L[7].substr(L[7].find('\t')) == "\t</s>\t0");
  KO_CHECK(L[12] == "" && L[13] == "\\2-grams:");
  const char* bi[] = {"a </s>", "c </s>", "b </s>", "<s> a", "a a", "c a", "d a", "<s> c", "a b", "c b", "<s> d"};
  for (int i = 0; i < 11; i++) {
    const std::string& l = L[14 + i];
    const size_t t = l.find('\t');
    KO_CHECK(t != std::string::npos && l.find('\t', t + 1) == std::string::npos);  // no backoff at the top order
    KO_CHECK_MSG(l.substr(t + 1) == bi[i], l);
  }
  KO_CHECK(L[25] == "" && L[26] == "\\end\\");
}

// ---- 1b. order 3 by hand -----------------------------------------------------------------------
KO_TEST(prep, ngram_kn_trigram_by_hand) {
  // Same corpus, order 3. Trigrams (padded "<s> <s>"; "<s> <s> x" feed lower orders only):
  //   <s> a a 2, a a </s> 2, <s> c a 1, c a b 1, a b </s> 1, <s> c b 3, c b </s> 3, <s> c </s> 4, <s> d a 1,
  //   d a </s> 1 (10). t = 5, 2, 2, 1: Y = 5/9, D1 = 1 - 2(5/9)(2/5) = 5/9, D2 = 2 - 3(5/9)(2/2) = 1/3,
  //   D3+ = 3 - 4(5/9)(1/2) = 17/9.
  // Bigrams: continuation counts a a 1, a </s> 2 (a a, d a), c a 1, a b 1, b </s> 2, c b 1, c </s> 1, d a 1;
  //   <s>-initial ones keep raw counts: <s> a 2, <s> c 8, <s> d 1. t = 7, 3, 0 -> fallback 0.5, 1, 1.5.
  // Unigrams: as in the bigram model (same left-neighbour sets), so the same probabilities.
  const NgramModel m = train(kHandCorpus, 3);
  KO_CHECK(m.count(1) == 7 && m.count(2) == 11 && m.count(3) == 10);
  KO_CHECK(!m.usedFallback(3) && m.usedFallback(2) && !m.usedFallback(1));
  KO_CHECK_NEAR(m.discounts(3)[1], 5.0 / 9, 1e-6);
  KO_CHECK_NEAR(m.discounts(3)[2], 1.0 / 3, 1e-6);
  KO_CHECK_NEAR(m.discounts(3)[3], 17.0 / 9, 1e-6);
  KO_CHECK(m.discounts(2)[1] == 0.5f && m.discounts(2)[2] == 1.0f && m.discounts(2)[3] == 1.5f);
  KO_CHECK_NEAR(probOf(m, {"a"}), l10(43.0 / 132), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"</s>"}), l10(31.0 / 132), 1e-6);
  // Bigram level: <s>: a 2, c 8, d 1 -> gamma = (0.5 + 1 + 1.5)/11 = 3/11
  //   p(c|<s>) = 6.5/11 + (3/11)(13/132) = 299/484;  p(a|<s>) = 1/11 + (3/11)(43/132) = 87/484
  //   c: a 1, b 1, </s> 1 -> gamma = 1.5/3 = 1/2: p(b|c) = 0.5/3 + (1/2)(25/132) = 23/88,
  //      p(a|c) = 0.5/3 + (1/2)(43/132) = 29/88
  //   a: a 1, </s> 2, b 1 -> gamma = (0.5*2 + 1)/4 = 1/2: p(b|a) = 0.5/4 + (1/2)(25/132) = 29/132
  //   b: </s> 2 -> gamma = 1/2: p(</s>|b) = 1/2 + (1/2)(31/132) = 163/264
  KO_CHECK_NEAR(backoffOf(m, {"<s>"}), l10(3.0 / 11), 1e-6);
  KO_CHECK_NEAR(backoffOf(m, {"c"}), l10(0.5), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"<s>", "c"}), l10(299.0 / 484), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"<s>", "a"}), l10(87.0 / 484), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"c", "b"}), l10(23.0 / 88), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"c", "a"}), l10(29.0 / 88), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"a", "b"}), l10(29.0 / 132), 1e-6);
  // Trigram level: <s> c: a 1, b 3, </s> 4 -> sum 8, gamma = (5/9 + 2*17/9)/8 = 13/24
  //   p(b|<s> c) = (3 - 17/9)/8 + (13/24)(23/88) = 10/72 + 299/2112 = 1777/6336
  //   p(a|<s> c) = (1 - 5/9)/8 + (13/24)(29/88) = 4/72 + 377/2112 = 1483/6336
  //   c a: b 1 -> gamma = 5/9: p(b|c a) = 4/9 + (5/9)(29/132) = 673/1188
  //   a b: </s> 1 -> gamma = 5/9: p(</s>|a b) = 4/9 + (5/9)(163/264) = 1871/2376
  KO_CHECK_NEAR(backoffOf(m, {"<s>", "c"}), l10(13.0 / 24), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"<s>", "c", "b"}), l10(1777.0 / 6336), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"<s>", "c", "a"}), l10(1483.0 / 6336), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"c", "a", "b"}), l10(673.0 / 1188), 1e-6);
  KO_CHECK_NEAR(probOf(m, {"a", "b", "</s>"}), l10(1871.0 / 2376), 1e-6);
  KO_CHECK(!has(m, {"<s>", "<s>", "c"}));  // collapsed, as lmplz
  KO_CHECK_NEAR(score(m, {"c", "a", "b"}), l10(299.0 / 484) + l10(1483.0 / 6336) + l10(673.0 / 1188) + l10(1871.0 / 2376),
                1e-5);
}

// ---- 1c. lmplz's count-of-counts quirk --------------------------------------------------------
KO_TEST(prep, ngram_kn_last_ngram_raw_count) {
  // The hand corpus plus "e a" twice, order 2. e (the last id) has continuation count 1 ({<s>}) but occurs
  // twice; lmplz's AdjustCounts flushes the last unigram with its raw count. Unigram counts: a 5
  // ({<s>,a,c,d,e}), b 2, c 1, d 1, e 2 (raw), </s> 3 -> t = 2, 2, 1, 0: Y = 2/(2+4) = 1/3,
  // D1 = 1 - 2(1/3)(2/2) = 1/3, D2 = 2 - 3(1/3)(1/2) = 3/2, D3+ = 3 - 0 = 3. (With e at 1: 3/5, 1/5, 3.)
  const NgramModel m = train(std::string(kHandCorpus) + "e a\ne a\n", 2);
  KO_CHECK(!m.usedFallback(1));
  KO_CHECK_NEAR(m.discounts(1)[1], 1.0 / 3, 1e-6);
  KO_CHECK_NEAR(m.discounts(1)[2], 1.5, 1e-6);
  KO_CHECK_NEAR(m.discounts(1)[3], 3.0, 1e-6);
}

// ---- 1d. every context's distribution sums to 1 (orders 2..5, random corpus) ------------------
KO_TEST(prep, ngram_kn_sums_to_one) {
  const std::string text = randomCorpus(7, 600, 25, 9);
  for (int N = 2; N <= 5; N++) {
    const NgramModel m = train(text, N);
    const uint32_t V = m.vocab().size();
    std::vector<uint32_t> ids(N + 1);
    auto sumOver = [&](const uint32_t* ctx, int n) {
      std::copy(ctx, ctx + n, ids.begin());
      double s = 0;
      for (uint32_t w = 0; w < V; w++) {
        if (w == ko::kNgramBos) continue;
        ids[n] = w;
        s += std::pow(10.0, double(m.logProb(ids.data(), n + 1)));
      }
      return s;
    };
    KO_CHECK_NEAR(sumOver(nullptr, 0), 1.0, 2e-5);
    size_t checked = 0;
    for (int n = 1; n < N; n++) {
      for (size_t i = 0; i < m.count(n); i++) {
        const uint32_t* g = m.ngram(n, i);
        if (g[n - 1] == ko::kNgramEos || g[n - 1] == ko::kNgramUnk) continue;
        const double s = sumOver(g, n);
        KO_CHECK_MSG(std::fabs(s - 1.0) < 2e-5, "order " + std::to_string(N) + " sum " + std::to_string(s));
        checked++;
      }
    }
    KO_CHECK(checked >= 20);
    // Well-formed: every n-gram's context and suffix are in the model; nothing starts with "<s> <s>".
    for (int n = 2; n <= N; n++) {
      for (size_t i = 0; i < m.count(n); i++) {
        const uint32_t* g = m.ngram(n, i);
        float p, b;
        KO_CHECK(m.find(g, n - 1, &p, &b) && m.find(g + 1, n - 1, &p, &b));
        KO_CHECK(!(g[0] == ko::kNgramBos && g[1] == ko::kNgramBos));
      }
    }
  }
}

// ---- 2. ARPA round trip ------------------------------------------------------------------------
KO_TEST(prep, ngram_arpa_round_trip) {
  const NgramModel m = train(randomCorpus(11, 400, 40, 10), 4);
  const std::string a = arpaOf(m);
  for (size_t chunk : {size_t(0), size_t(1), size_t(7), size_t(4096)}) {
    const NgramModel r = readArpa(a, chunk);
    KO_CHECK(arpaOf(r) == a);
    for (int n = 1; n <= 4; n++) {
      KO_CHECK(r.count(n) == m.count(n));
      for (size_t i = 0; i < m.count(n); i++) {
        KO_CHECK(std::memcmp(r.ngram(n, i), m.ngram(n, i), sizeof(uint32_t) * n) == 0);
        KO_CHECK(r.prob(n, i) == m.prob(n, i) && r.backoff(n, i) == m.backoff(n, i));
      }
    }
    const std::vector<std::string> s1 = {"w0", "w1", "w0", "w3", "w2"}, s2 = {"w7", "zz", "w0"};
    KO_CHECK(score(r, s1) == score(m, s1) && score(r, s2) == score(m, s2));
  }
  // Float printing as KenLM's (shortest repr. of the float; exponent form below 1e-6).
  const std::string in =
      "\\data\\\nngram 1=6\nngram 2=1\n\n\\1-grams:\n"
      "-99\t<s>\t-0.30103\n-1.5e-07\t</s>\t-1e-06\n-12345678\t<unk>\t-1e+21\n-0.1000000\ta\t0\n"
      "-2.50\tb\t-0\n-1e-300\tc\n\n\\2-grams:\n-0.5\ta b\n\n\\end\\\n";
  const std::string out = arpaOf(readArpa(in));
  const std::string want =
      "\\data\\\nngram 1=6\nngram 2=1\n\n\\1-grams:\n"
      "-99\t<s>\t-0.30103\n-1.5e-7\t</s>\t-0.000001\n-12345678\t<unk>\t-1e21\n-0.1\ta\t0\n"
      "-2.5\tb\t-0\n-0\tc\t0\n\n\\2-grams:\n-0.5\ta b\n\n\\end\\\n";
  KO_CHECK_MSG(out == want, out);
}

// ---- 3. scoring with backoff on a hand-written ARPA -------------------------------------------
KO_TEST(prep, ngram_score_backoff_by_hand) {
  // "b c a" is a trigram whose suffix "c a" is absent (a hole): the reader adds a blank "c a" as KenLM does.
  const std::string arpa =
      "# comment lines before \\data\\ are allowed\n\n"
      "\\data\\\nngram 1=6\nngram 2=5\nngram 3=3\n\n"
      "\\1-grams:\n-1.0\t<unk>\t0\n0\t<s>\t-0.5\n-0.7\t</s>\t0\n-0.8\ta\t-0.3\n-0.9\tb\t-0.2\n-1.1\tc\t-0.1\n\n"
      "\\2-grams:\n-0.4\t<s> a\t-0.25\n-0.6\ta b\t-0.15\n-0.5\tb c\t-0.05\n-0.3\tc </s>\t0\n-0.45\tb a\t-0.12\n\n"
      "\\3-grams:\n-0.2\t<s> a b\n-0.1\ta b c\n-0.05\tb c a\n\n\\end\\\n";
  const NgramModel m = readArpa(arpa);
  KO_CHECK(m.order() == 3 && m.count(2) == 5 && m.count(3) == 3);
  std::vector<float> per;
  int oov = 0;
  // "a b c": <s> a -0.4 | <s> a b -0.2 (trigram) | a b c -0.1 | </s>: "b c </s>" absent, "c </s>" -0.3
  //   + bo(b c) -0.05 = -0.35. Total -1.05.
  KO_CHECK_NEAR(score(m, {"a", "b", "c"}, &oov, &per), -1.05, 1e-6);
  KO_CHECK(per.size() == 4 && oov == 0);
  KO_CHECK_NEAR(per[0], -0.4, 1e-6);
  KO_CHECK_NEAR(per[1], -0.2, 1e-6);
  KO_CHECK_NEAR(per[2], -0.1, 1e-6);
  KO_CHECK_NEAR(per[3], -0.35, 1e-6);
  // "a b a": third word backs off to the bigram "b a" -0.45 + bo(a b) -0.15 = -0.6; </s>: "b a </s>",
  //   "a </s>" absent -> p(</s>) -0.7 + bo(a) -0.3 + bo(b a) -0.12 = -1.12. Total -0.4-0.2-0.6-1.12 = -2.32.
  KO_CHECK_NEAR(score(m, {"a", "b", "a"}, &oov, &per), -2.32, 1e-6);
  KO_CHECK_NEAR(per[2], -0.6, 1e-6);
  KO_CHECK_NEAR(per[3], -1.12, 1e-6);
  // "a b" then </s>: unigram + two backoffs: -0.7 + bo(b) -0.2 + bo(a b) -0.15 = -1.05. Total -1.65.
  KO_CHECK_NEAR(score(m, {"a", "b"}, &oov, &per), -1.65, 1e-6);
  KO_CHECK_NEAR(per[2], -1.05, 1e-6);
  // OOV: "a zzz b": zzz = <unk> -1.0 + bo(a) -0.3 + bo(<s> a) -0.25 = -1.55; b after <unk>: unigram -0.9
  //   + bo(<unk>) 0; </s> after "<unk> b": -0.7 + bo(b) -0.2 = -0.9. Total -0.4-1.55-0.9-0.9 = -3.75.
  KO_CHECK_NEAR(score(m, {"a", "zzz", "b"}, &oov, &per), -3.75, 1e-6);
  KO_CHECK(oov == 1);
  KO_CHECK_NEAR(per[1], -1.55, 1e-6);
  KO_CHECK_NEAR(per[2], -0.9, 1e-6);
  // "b c a" through the hole: b|<s>: "<s> b" absent -> -0.9 + bo(<s>) -0.5 = -1.4; c|<s> b: "b c" -0.5
  //   ("<s> b" absent: no backoff); a|b c: trigram -0.05; </s>|c a: -0.7 + bo(a) -0.3 + bo(c a) 0 = -1.0.
  KO_CHECK_NEAR(score(m, {"b", "c", "a"}, &oov, &per), -2.95, 1e-6);
  KO_CHECK_NEAR(per[2], -0.05, 1e-6);
  // The blank "c a" holds p(a|c) = bo(c) + p(a) = -0.1 - 0.8, and is not written back.
  KO_CHECK_NEAR(probOf(m, {"c", "a"}), -0.9, 1e-6);
  KO_CHECK(arpaOf(m).find("c a\t") == std::string::npos);
  // The empty sentence is p(</s>|<s>) = -0.7 + bo(<s>) -0.5.
  KO_CHECK_NEAR(score(m, {}), -1.2, 1e-6);
  // An ARPA without <unk>: unknown words get -100 (KenLM's default).
  const NgramModel nu = readArpa(
      "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n0\t<s>\t-0.5\n-0.5\t</s>\t0\n-0.3\tx\t0\n\n"
      "\\2-grams:\n-0.2\t<s> x\n\n\\end\\\n");
  KO_CHECK_NEAR(score(nu, {"y"}), -100.0 - 0.5 - 0.5, 1e-4);
}

// ---- 4. malformed ARPA -------------------------------------------------------------------------
KO_TEST(prep, ngram_arpa_errors) {
  const std::string head = "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n0\t<s>\t-0.5\n-0.5\t</s>\t0\n-0.3\tx\t0\n\n";
  auto expect = [](const std::string& arpa, const std::string& want) {
    const std::string got = expectThrow(arpa);
    KO_CHECK_MSG(got.find(want) != std::string::npos, "got: " + got + " | want: " + want);
  };
  expect("", "ARPA line 0: the input ended without a \\data\\ header");
  expect("hello\n", "ARPA line 1: expected \\data\\");
  expect("\\data\\\nngram 2=1\n", "ARPA line 2: ngram counts must be given for orders 1, 2, 3");
  expect("\\data\\\nngram 1=x\n", "ARPA line 2: expected \"ngram N=count\"");
  expect("\\data\\\nngram 1=1\nngram 2=1\nngram 3=1\nngram 4=1\nngram 5=1\nngram 6=1\nngram 7=1\n",
         "ARPA line 8: order 7 is above the supported maximum 6");
  expect("\\data\\\n\n", "ARPA line 2: no \"ngram N=count\" line");
  expect("\\data\\\nngram 1=3\n\n\\2-grams:\n", "ARPA line 4: expected \\1-grams:");
  // Line 7 ends the 1-grams with only 2 of 3.
  expect("\\data\\\nngram 1=3\n\n\\1-grams:\n0\t<s>\t0\n-0.5\t</s>\t0\n\n\\end\\\n",
         "ARPA line 7: expected 3 1-grams (as \\data\\ says), got 2");
  expect(head + "\\2-grams:\n-0.5\tx\n\n\\end\\\n", "ARPA line 11: expected 2 words in a 2-gram, got 1");
  expect(head + "\\2-grams:\n-0.5\tx </s> x\n\n\\end\\\n", "ARPA line 11: expected 2 words in a 2-gram, got 3");
  expect(head + "\\2-grams:\n-0.5x\tx </s>\n\n\\end\\\n", "ARPA line 11: bad log probability \"-0.5x\"");
  expect(head + "\\2-grams:\n0.5\tx </s>\n\n\\end\\\n", "ARPA line 11: positive log probability");
  expect(head + "\\2-grams:\n-0.5\tx </s>\t1\n\n\\end\\\n", "ARPA line 11: non-zero backoff");
  expect(head + "\\2-grams:\n-0.5\tx y\n\n\\end\\\n", "ARPA line 11: the word \"y\" of this 2-gram is not a 1-gram");
  expect(head + "\\2-grams:\n-0.5\tx </s>\n-0.5\tx </s>\n\n\\end\\\n", "ARPA line 12: more 2-grams than the 1 declared");
  expect(head + "\\2-grams:\n-0.5\tx </s>\n\n", "the input ended before \\end\\");
  expect(head + "\\2-grams:\n-0.5\tx </s>\n\n\\3-grams:\n", "ARPA line 13: expected \\end\\ after the last section");
  expect("\\data\\\nngram 1=2\n\n\\1-grams:\n0\t<s>\t0\n-0.5\t<s>\t0\n\n\\end\\\n", "ARPA line 6: duplicate 1-gram");
  expect("\\data\\\nngram 1=2\n\n\\1-grams:\n0\t<s>\t0\n-0.5\tx\t-0.1z\n\n\\end\\\n", "ARPA line 6: bad backoff");
  expect("\\data\\\nngram 1=2\n\n\\1-grams:\n0\t<s>\t0\n-0.5\tx\t0\n\n\\end\\\n", "ARPA line 7: the 1-grams lack </s>");
  // A trigram whose context "x x" is not a bigram.
  expect("\\data\\\nngram 1=3\nngram 2=1\nngram 3=1\n\n\\1-grams:\n0\t<s>\t-0.5\n-0.5\t</s>\t0\n-0.3\tx\t0\n\n"
         "\\2-grams:\n-0.5\tx </s>\t0\n\n\\3-grams:\n-0.1\tx x </s>\n\n\\end\\\n",
         "ARPA line 15: the context \"x x\" of this 3-gram is not a 2-gram");
  // Without tabs, fields are split on spaces; a missing trailing newline is fine.
  const NgramModel ok = readArpa("\\data\\\r\nngram 1=3\r\n\r\n\\1-grams:\r\n0 <s>\r\n-0.5 </s>\r\n-0.3 x 0\r\n\r\n\\end\\");
  KO_CHECK(ok.order() == 1 && ok.count(1) == 3);
  KO_CHECK_NEAR(probOf(ok, {"x"}), -0.3, 1e-7);
}

// ---- 5. robustness -----------------------------------------------------------------------------
KO_TEST(prep, ngram_robustness) {
  KO_CHECK_MSG([] {
    try {
      ko::NgramCounter c(7);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  }(), "order 7 accepted");
  // Empty input and lines of only spaces: no sentences, estimate refuses with a clear error.
  for (const char* t : {"", "   \n \t \n\n", "<s> </s>\n<unk>\n"}) {
    ko::NgramCounter c(3);
    c.addText(t, std::strlen(t));
    c.finish();
    KO_CHECK(c.sentences() == 0 && c.tokens() == 0);
    bool threw = false;
    try {
      c.estimate();
    } catch (const std::runtime_error&) {
      threw = true;
    }
    KO_CHECK(threw);
  }
  // lmplz counts empty lines as "<s> </s>": with countEmptyLines, two of them make a model where
  // a(</s>) = 1 (left word <s>), fallback D1 = 0.5: p(</s>) = 0.5/1 + gamma/|V| with gamma = 0.5/1,
  // |V| = 2 (<unk>, </s>): 0.5 + 0.25 = 0.75, p(<unk>) = 0.25.
  {
    const NgramModel m = train("   \n\n", 2, true);
    KO_CHECK(m.count(1) == 3 && m.count(2) == 1);
    KO_CHECK_NEAR(probOf(m, {"</s>"}), l10(0.75), 1e-6);
    KO_CHECK_NEAR(probOf(m, {"<unk>"}), l10(0.25), 1e-6);
  }
  // One 5 MB line (about 1.2M tokens) and one 5 MB token.
  {
    std::string big;
    ko::Rng r(3);
    while (big.size() < (5u << 20)) big += "t" + std::to_string(int(r.uniform() * 50)) + " ";
    ko::NgramCounter c(5);
    c.addText(big.data(), big.size());
    c.finish();
    KO_CHECK(c.sentences() == 1 && c.tokens() > 1000000);
    const NgramModel m = c.estimate();
    KO_CHECK(m.count(1) == 53);
    std::string tok(5u << 20, 'x');
    const NgramModel m2 = train(tok + "\n" + tok + " y\n", 2, false, 65536);
    KO_CHECK(m2.count(1) == 5 && m2.vocab().word(3).size() == tok.size());
  }
  // Invalid UTF-8 is just bytes: it trains, writes, reads back and scores.
  {
    const std::string t = "a\xff\xfe b \x80\xc3\n\xed\xa0\x80 a\xff\xfe\nb b\n";
    const NgramModel m = train(t, 3);
    KO_CHECK(m.count(1) == 3 + 4);
    const std::string a = arpaOf(m);
    const NgramModel r = readArpa(a);
    KO_CHECK(arpaOf(r) == a);
    int oov = 0;
    const double s = score(r, {"a\xff\xfe", "b", "\x80\xc3"}, &oov);
    KO_CHECK(oov == 0 && std::isfinite(s) && s < 0);
  }
  // Chunk boundaries anywhere: one byte at a time gives the same model as all at once.
  {
    const std::string t = "x y z\n  y\tz x\r\n\nz z z y x\nlast line without newline";
    const std::string whole = arpaOf(train(t, 3));
    KO_CHECK(arpaOf(train(t, 3, false, 1)) == whole);
    KO_CHECK(arpaOf(train(t, 3, false, 5)) == whole);
    ko::NgramCounter c(3);
    c.addText(t.data(), t.size());
    c.finish();
    KO_CHECK(c.sentences() == 4 && c.tokens() == 15);
  }
}

// ---- 6. document scoring (the perplexity filter) -------------------------------------------------
KO_TEST(prep, ngram_score_documents) {
  const NgramModel m = train(kHandCorpus, 3);
  const std::string docs[] = {"c a b\nb d\n", "", "\n  \n", "a zz a\n\nq r\nc", "c"};
  std::string text;
  std::vector<int64_t> off = {0};
  for (auto& d : docs) {
    text += d;
    off.push_back(int64_t(text.size()));
  }
  const int64_t n = int64_t(off.size() - 1);
  std::vector<double> sum(n);
  std::vector<int64_t> tok(n), oov(n);
  m.scoreDocuments(text.data(), off.data(), n, sum.data(), tok.data(), oov.data());
  auto sc = [&](std::vector<std::string> w) { return score(m, w); };
  KO_CHECK_NEAR(sum[0], sc({"c", "a", "b"}) + sc({"b", "d"}), 1e-9);
  KO_CHECK(tok[0] == 7 && oov[0] == 0);
  KO_CHECK(sum[1] == 0 && tok[1] == 0 && sum[2] == 0 && tok[2] == 0);
  KO_CHECK_NEAR(sum[3], sc({"a", "zz", "a"}) + sc({"q", "r"}) + sc({"c"}), 1e-9);
  KO_CHECK(tok[3] == 4 + 3 + 2 && oov[3] == 3);
  KO_CHECK_NEAR(sum[4], l10(299.0 / 484) + l10(2647.0 / 6336), 1e-5);  // p(c|<s>) p(</s>|<s> c)
  // CCNet perplexity: 10^(-sum/n).
  KO_CHECK_NEAR(NgramModel::perplexity(sum[4], tok[4]), std::pow(10.0, -sum[4] / 2), 1e-9);
  KO_CHECK(NgramModel::perplexity(0, 0) == 0);
}
