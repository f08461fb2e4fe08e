// test_minhash.cpp — group `prep`: dedup normalization, the exact hash (XXH64 vectors), MinHash
// signatures against a plain reference, the statistical quality of the Jaccard estimate, LSH recall and
// precision around the threshold, clustering (survivors, transitive chains, exact duplicates),
// determinism across thread counts, argument validation, empty and very long documents.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "lsh_dedup.h"
#include "minhash.h"
#include "rng.h"
#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

struct Corpus {
  std::string text;
  std::vector<int64_t> offsets{0};
  void add(const std::string& doc) {
    text += doc;
    offsets.push_back(int64_t(text.size()));
  }
  int64_t size() const { return int64_t(offsets.size()) - 1; }
};

std::vector<uint32_t> sign(const Corpus& c, const ko::MinhashParams& p, std::vector<uint64_t>* exact = nullptr) {
  std::vector<uint32_t> sigs(size_t(c.size()) * size_t(p.numPerm));
  if (exact) exact->assign(size_t(c.size()), 0);
  ko::minhashSignatures(c.text.data(), c.offsets.data(), c.size(), p, sigs.data(), exact ? exact->data() : nullptr);
  return sigs;
}

// Random Hangul syllables: every 5-gram of a few thousand of them is distinct, and normalization keeps them.
std::vector<uint32_t> randomSyllables(ko::Rng& r, size_t n) {
  std::vector<uint32_t> v(n);
  for (auto& c : v) c = 0xAC00 + uint32_t(r.next() % 11172);
  return v;
}
std::string utf8(const std::vector<uint32_t>& cps) {
  std::string s;
  for (uint32_t c : cps) ko::utf8Append(s, c);
  return s;
}
std::vector<uint32_t> cat(std::initializer_list<std::vector<uint32_t>> parts) {
  std::vector<uint32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Random English-like text: lowercase words of 2-9 letters with punctuation and capitals sprinkled in.
std::string randomEnglish(ko::Rng& r, size_t bytes) {
  std::string s;
  while (s.size() < bytes) {
    const int len = 2 + int(r.next() % 8);
    for (int i = 0; i < len; i++) s.push_back(char('a' + r.next() % 26));
    const uint64_t u = r.next() % 20;
    s += u == 0 ? ". " : u == 1 ? ", " : " ";
  }
  return s;
}

// The plain reference of one signature: normalize fully, hash every shingle with the public pieces of
// minhash.h, then min over each permutation. No chunking, no vector code.
std::vector<uint32_t> referenceSignature(const std::string& doc, const ko::MinhashParams& p) {
  std::vector<uint32_t> cps;
  ko::normalizeCodepoints(doc, &cps);
  std::vector<uint64_t> toks;
  if (!p.wordNgrams) {
    toks.assign(cps.begin(), cps.end());
  } else {
    uint64_t w = 14695981039346656037ull;
    bool in = false;
    for (uint32_t c : cps) {
      if (c == ' ') {
        toks.push_back(ko::minhashMix64(w));
        w = 14695981039346656037ull, in = false;
      } else {
        w = (w ^ c) * 1099511628211ull, in = true;
      }
    }
    if (in) toks.push_back(ko::minhashMix64(w));
  }
  std::vector<uint32_t> sig(size_t(p.numPerm), 0xFFFFFFFFu);
  if (toks.empty()) return sig;
  const size_t m = std::min(toks.size(), size_t(p.ngram));
  for (size_t i = 0; i + m <= toks.size(); i++) {
    uint64_t h = 0;
    for (size_t k = 0; k < m; k++) h += toks[i + k] * ko::minhashShingleKey(p.seed, int(k));
    const uint32_t x = ko::minhashShingleFinish(h);
    for (int j = 0; j < p.numPerm; j++) {
      uint32_t a, b;
      ko::minhashPermutation(p.seed, j, &a, &b);
      sig[size_t(j)] = std::min(sig[size_t(j)], a * x + b);
    }
  }
  return sig;
}

bool validUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    bool ok;
    i += size_t(ko::utf8Decode(p, s.size(), i, &cp, &ok));
    if (!ok) return false;
  }
  return true;
}

template <class F>
bool throwsMentioning(F fn, const char* word) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return std::string(e.what()).find(word) != std::string::npos;
  }
  return false;
}

void setThreads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}
int getThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

KO_TEST(prep, prep_dedup_normalization) {
  using ko::normalizeForDedup;
  KO_CHECK(normalizeForDedup("  Hello,   WORLD!!  ") == "hello world");
  KO_CHECK(normalizeForDedup("a\t\n\r b\u3000c\u00A0d") == "a b c d");
  KO_CHECK(normalizeForDedup("Hello,world") == "hello world");  // punctuation separates, as in datatrove
  KO_CHECK(normalizeForDedup("don't") == "don t");
  KO_CHECK(normalizeForDedup("ÀÉÎ Ωmega ПРИВЕТ Ĳssel Ÿ") == "àéî ωmega привет ĳssel ÿ");
  KO_CHECK(normalizeForDedup("ＡＢＣ１２３！") == "abc123");  // fullwidth ASCII
  KO_CHECK(normalizeForDedup("안녕하세요,  세계!") == "안녕하세요 세계");
  KO_CHECK(normalizeForDedup("「한국어」。텍스트…ㄱㄴ 가") == "한국어 텍스트 ㄱㄴ 가");  // jamo kept
  KO_CHECK(normalizeForDedup("hy\u00ADphen zero\u200Bwidth") == "hyphen zerowidth");  // invisible: removed
  KO_CHECK(normalizeForDedup("Index 🔎︎ 검색 → 결과 ₩1,000") == "index 검색 결과 1 000");
  KO_CHECK(normalizeForDedup("x² ½ µ ª") == "x² ½ µ ª");  // Latin-1 letters and digits are kept
  KO_CHECK(normalizeForDedup("") == "");
  KO_CHECK(normalizeForDedup(" .,;!? \n") == "");
  // Invalid UTF-8: one U+FFFD per bad byte (kept), never a crash or a read past the end.
  KO_CHECK(normalizeForDedup(std::string("\xff\xfe" "abc\xc3", 6)) == "\uFFFD\uFFFDabc\uFFFD");
  KO_CHECK(normalizeForDedup(std::string("\xe2\x82", 2)) == "\uFFFD\uFFFD");
  // Fuzz: random bytes (biased towards UTF-8 lead/continuation bytes) always give valid, idempotent output.
  ko::Rng r(7);
  for (int t = 0; t < 2000; t++) {
    std::string s(size_t(r.next() % 40), '\0');
    for (auto& c : s) {
      const uint64_t u = r.next() % 4;
      c = char(u == 0   ? r.next() % 128
               : u == 1 ? 0x80 + r.next() % 64
               : u == 2 ? 0xC0 + r.next() % 64
                        : r.next() % 256);
    }
    const std::string n = normalizeForDedup(s);
    KO_CHECK(validUtf8(n));
    KO_CHECK(normalizeForDedup(n) == n);
    KO_CHECK(n.empty() || (n.front() != ' ' && n.back() != ' ' && n.find("  ") == std::string::npos));
  }
}

KO_TEST(prep, prep_exact_hash) {
  // Standard XXH64 (seed 0) vectors, computed with libxxhash 0.8.1; 52 bytes exercise the 32-byte stripes.
  KO_CHECK(ko::exactDedupHash("") == 0xEF46DB3751D8E999ull);
  KO_CHECK(ko::exactDedupHash("a") == 0xD24EC4F1A98C6E5Bull);
  KO_CHECK(ko::exactDedupHash("abc") == 0x44BC2CF5AD770999ull);
  KO_CHECK(ko::exactDedupHash("hello world 12345678901234567890 the quick brown fox") == 0xEF3EB41E622C26EDull);
  KO_CHECK(ko::exactDedupHash("한국어 텍스트 중복 제거") == 0x9932577E3EE4755Eull);
  auto h = [](const char* s) { return ko::exactDedupHash(ko::normalizeForDedup(s)); };
  KO_CHECK(h("Hello, World!") == h("hello world"));
  KO_CHECK(h("  한국어   텍스트。") == h("한국어 텍스트"));
  KO_CHECK(h("hello world") != h("hello worlds"));
  // minhashSignatures hashes the normalized text in 4096-code-point chunks: same value as one shot.
  ko::Rng r(11);
  Corpus c;
  std::vector<std::string> docs = {"", "Hello, World!", randomEnglish(r, 20000), utf8(randomSyllables(r, 9000))};
  for (const auto& d : docs) c.add(d);
  std::vector<uint64_t> exact;
  sign(c, ko::MinhashParams{}, &exact);
  for (size_t d = 0; d < docs.size(); d++) KO_CHECK(exact[d] == ko::exactDedupHash(ko::normalizeForDedup(docs[d])));
}

KO_TEST(prep, prep_minhash_matches_reference) {
  // Lengths around the chunk size (4096), around ngram, and word mode; several seeds and numPerm.
  ko::Rng r(3);
  std::vector<std::string> docs = {"", "a", "ab", "abcd", "abcde", "abcdef", "한", "Hello, World!"};
  for (size_t n : {4090, 4095, 4096, 4097, 4100, 8192 + 3}) docs.push_back(utf8(randomSyllables(r, n)));
  for (int i = 0; i < 4; i++) docs.push_back(randomEnglish(r, 3000 + r.next() % 9000));
  docs.push_back(randomEnglish(r, 9000) + utf8(randomSyllables(r, 2000)) + " MiXeD, Text!");
  Corpus c;
  for (const auto& d : docs) c.add(d);
  for (const ko::MinhashParams p : {ko::MinhashParams{}, ko::MinhashParams{100, 3, false, 42},
                                    ko::MinhashParams{64, 1, false, 9}, ko::MinhashParams{33, 32, false, 5},
                                    ko::MinhashParams{128, 3, true, 1}, ko::MinhashParams{96, 1, true, 8}}) {
    const auto sigs = sign(c, p);
    for (size_t d = 0; d < docs.size(); d++) {
      const auto ref = referenceSignature(docs[d], p);
      KO_CHECK_MSG(std::equal(ref.begin(), ref.end(), sigs.begin() + std::ptrdiff_t(d * size_t(p.numPerm))),
                   "doc " + std::to_string(d) + " numPerm " + std::to_string(p.numPerm) + " ngram " +
                       std::to_string(p.ngram) + (p.wordNgrams ? " words" : " chars"));
    }
    KO_CHECK(ko::isEmptySignature(sigs.data(), p.numPerm));  // doc 0 is empty
    KO_CHECK(!ko::isEmptySignature(sigs.data() + p.numPerm, p.numPerm));
  }
}

KO_TEST(prep, prep_minhash_jaccard_estimate) {
  // Pairs A = PA + S + QA, B = PB + S + QB of random syllables (600 each): the shared part S sets the
  // Jaccard similarity of the 5-gram sets; exactJaccard measures it on the real shingles. For each target
  // J and k, 50 pairs (each with its own seed): the mean error must be within 3 SE / sqrt(50), >= 95% of
  // the pairs within 3 SE, and the mean squared error near the binomial variance J(1-J)/k (independent
  // permutations), SE = sqrt(J(1-J)/k).
  const int kPairs = 50;
  const size_t L = 600;
  ko::Rng r(2024);
  std::printf("  %-5s %-4s %-9s %-10s %-9s %-8s %s\n", "J", "k", "exact J", "mean err", "3SE/√50", "in 3SE",
              "MSE/var");
  for (int k : {128, 256}) {
    for (double target : {0.1, 0.3, 0.5, 0.8, 0.95}) {
      const size_t shared = size_t(std::lround(2 * target * double(L - 4) / (1 + target))) + 4;
      const size_t uniq = L - shared;
      double sumErr = 0, sumSq = 0, sumVar = 0, sumJ = 0;
      int within = 0;
      for (int t = 0; t < kPairs; t++) {
        const auto S = randomSyllables(r, shared);
        const std::string a = utf8(cat({randomSyllables(r, uniq / 2), S, randomSyllables(r, uniq - uniq / 2)}));
        const std::string b = utf8(cat({randomSyllables(r, uniq / 2), S, randomSyllables(r, uniq - uniq / 2)}));
        ko::MinhashParams p;
        p.numPerm = k;
        p.seed = 1000 + uint64_t(t);
        Corpus c;
        c.add(a);
        c.add(b);
        const auto sigs = sign(c, p);
        const double exact = ko::exactJaccard(a, b, p);
        const double est = ko::estimatedJaccard(sigs.data(), sigs.data() + k, k);
        const double var = exact * (1 - exact) / k, err = est - exact;
        sumErr += err, sumSq += err * err, sumVar += var, sumJ += exact;
        within += std::fabs(err) <= 3 * std::sqrt(var) + 1e-12;
      }
      const double meanErr = sumErr / kPairs, bound = 3 * std::sqrt(sumVar / kPairs) / std::sqrt(double(kPairs));
      const double mseRatio = sumSq / sumVar;
      std::printf("  %-5.2f %-4d %-9.4f %+-10.4f %-9.4f %2d/%-5d %.2f\n", target, k, sumJ / kPairs, meanErr, bound,
                  within, kPairs, mseRatio);
      KO_CHECK(std::fabs(sumJ / kPairs - target) < 0.02);
      KO_CHECK(std::fabs(meanErr) <= bound);
      KO_CHECK(within >= kPairs * 95 / 100);
      KO_CHECK(mseRatio > 0.45 && mseRatio < 1.7);  // chi2(50)/50 has sd 0.2
    }
  }
}

KO_TEST(prep, prep_lsh_recall_precision) {
  // Base documents (800 random syllables, occasionally spaced) and copies with scattered single-character
  // substitutions; the substitution count sets the Jaccard. Groups near J = 0.9, 0.7 and 0.5, all in one
  // call of findNearDuplicates with the defaults (128 perms, 16 x 8, threshold 0.8).
  ko::Rng r(99);
  const ko::MinhashParams mp;
  const ko::LshParams lp;
  struct Group {
    double target;
    int edits, pairs;
  };
  const std::vector<Group> groups = {{0.9, 8, 300}, {0.7, 30, 300}, {0.5, 66, 400}};
  Corpus c;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> pairIdx(groups.size());
  std::vector<std::vector<double>> exactJ(groups.size());
  for (size_t g = 0; g < groups.size(); g++) {
    for (int i = 0; i < groups[g].pairs; i++) {
      auto base = randomSyllables(r, 800);
      for (size_t k = 0; k < base.size(); k += 7 + r.next() % 5) base[k] = ' ';
      auto copy = base;
      for (int e = 0; e < groups[g].edits; e++) copy[r.next() % copy.size()] = 0xAC00 + uint32_t(r.next() % 11172);
      const std::string a = utf8(base), b = utf8(copy);
      pairIdx[g].push_back({c.size(), c.size() + 1});
      c.add(a);
      c.add(b);
      exactJ[g].push_back(ko::exactJaccard(a, b, mp));
    }
  }
  const auto sigs = sign(c, mp);
  const auto res = ko::findNearDuplicates(sigs.data(), c.size(), mp.numPerm, lp, nullptr);
  int64_t candidatesSeen = 0;
  std::printf("  %-6s %-8s %-12s %-12s %-10s\n", "J", "pairs", "candidates", "S-curve", "merged");
  for (size_t g = 0; g < groups.size(); g++) {
    int merged = 0, cand = 0;
    double predicted = 0, meanJ = 0;
    for (size_t i = 0; i < pairIdx[g].size(); i++) {
      const auto [a, b] = pairIdx[g][i];
      merged += res.representative[size_t(b)] == res.representative[size_t(a)];
      const uint32_t* sa = sigs.data() + a * mp.numPerm;
      const uint32_t* sb = sigs.data() + b * mp.numPerm;
      bool shares = false;
      for (int band = 0; band < lp.bands && !shares; band++)
        shares = std::equal(sa + band * lp.rows, sa + (band + 1) * lp.rows, sb + band * lp.rows);
      cand += shares;
      predicted += ko::lshCandidateProbability(exactJ[g][i], lp.bands, lp.rows);
      meanJ += exactJ[g][i];
    }
    const double n = double(pairIdx[g].size());
    meanJ /= n;
    candidatesSeen += cand;
    std::printf("  %-6.3f %-8d %-12.3f %-12.3f %-10.3f\n", meanJ, int(n), cand / n, predicted / n, merged / n);
    KO_CHECK(std::fabs(meanJ - groups[g].target) < 0.03);
    // The measured candidate count is binomial around the S-curve's prediction (4 sigma).
    const double sd = std::sqrt(std::max(1.0, predicted * (1 - predicted / n)));
    KO_CHECK(std::fabs(cand - predicted) <= 4 * sd + 1);
    if (groups[g].target == 0.9) KO_CHECK(merged >= 0.95 * n);
    if (groups[g].target == 0.5) KO_CHECK(merged <= 0.05 * n);
  }
  // Unrelated documents never share a bucket here, so LSH found exactly the pairs counted above.
  KO_CHECK(res.candidatePairs == candidatesSeen);
  KO_CHECK(res.confirmedPairs <= res.candidatePairs);
  for (const auto& cl : res.clusters) KO_CHECK(cl.members.size() == 2);
}

KO_TEST(prep, prep_lsh_clusters_survivors_chains) {
  // A chain A ~ B ~ C whose ends are below the threshold, placed at indices 3, 5, 1; an exact duplicate
  // of B (differing in white space and punctuation) at 7; unrelated documents elsewhere; empty documents.
  ko::Rng r(5);
  const auto s = randomSyllables(r, 1200);
  auto slice = [&](size_t from) {
    return utf8(std::vector<uint32_t>(s.begin() + std::ptrdiff_t(from), s.begin() + std::ptrdiff_t(from + 1000)));
  };
  const std::string A = slice(0), B = slice(70), C = slice(140);
  std::vector<std::string> docs(10);
  for (auto& d : docs) d = randomEnglish(r, 3000);
  docs[1] = C, docs[3] = A, docs[5] = B, docs[7] = "  " + B + "!!", docs[8] = "", docs[9] = " ... ";
  ko::MinhashParams mp;
  mp.numPerm = 256;
  ko::LshParams lp;
  lp.bands = 32;
  Corpus c;
  for (const auto& d : docs) c.add(d);
  std::vector<uint64_t> exact;
  const auto sigs = sign(c, mp, &exact);
  auto est = [&](int i, int j) { return ko::estimatedJaccard(sigs.data() + i * 256, sigs.data() + j * 256, 256); };
  std::printf("  est J: A~B %.3f  B~C %.3f  A~C %.3f\n", est(3, 5), est(5, 1), est(3, 1));
  KO_CHECK(est(3, 5) >= 0.8 && est(5, 1) >= 0.8 && est(3, 1) < 0.8);  // the chain's precondition
  const auto res = ko::findNearDuplicates(sigs.data(), c.size(), mp.numPerm, lp, exact.data());
  KO_CHECK(res.clusters.size() == 1);
  const auto& cl = res.clusters[0];
  KO_CHECK((cl.members == std::vector<int64_t>{1, 3, 5, 7}));
  KO_CHECK(cl.linkedTo[0] == -1);
  // A's only partner is B; B links to whichever of A, C estimates higher (a tie goes to the smaller, C);
  // the exact duplicate B' links to B.
  KO_CHECK(cl.linkedTo[1] == 5 && cl.linkedTo[2] == (est(5, 3) > est(5, 1) ? 3 : 1) && cl.linkedTo[3] == 5);
  KO_CHECK(cl.jaccard[3] == 1.0 && cl.jaccard[1] == est(3, 5));
  for (int d = 0; d < 10; d++) {
    const bool inCluster = d == 1 || d == 3 || d == 5 || d == 7;
    KO_CHECK(res.representative[size_t(d)] == (inCluster ? 1 : d));
  }
  KO_CHECK(res.exactDuplicates == 1);
  KO_CHECK(res.emptyDocuments == 2);
  KO_CHECK(res.confirmedPairs == 2);  // A-B and B-C (A-C is below; B-B' was exact)

  // Many exact duplicates and short documents (fewer than ngram code points: one shingle each).
  Corpus d;
  for (const char* t : {"", "ab", "AB!", "ab", " ", "xyz", "a b"}) d.add(t);
  std::vector<uint64_t> ex2;
  const auto s2 = sign(d, ko::MinhashParams{}, &ex2);
  for (const uint64_t* eh : {static_cast<const uint64_t*>(nullptr), static_cast<const uint64_t*>(ex2.data())}) {
    const auto r2 = ko::findNearDuplicates(s2.data(), d.size(), 128, ko::LshParams{}, eh);
    KO_CHECK((r2.representative == std::vector<int64_t>{0, 1, 1, 1, 4, 5, 6}));
    KO_CHECK(r2.exactDuplicates == (eh ? 2 : 0));
    KO_CHECK(r2.emptyDocuments == 2);
  }
}

KO_TEST(prep, prep_minhash_thread_independent) {
  ko::Rng r(17);
  Corpus c;
  for (int i = 0; i < 300; i++) {
    const std::string base =
        i % 3 ? randomEnglish(r, 200 + r.next() % 3000) : utf8(randomSyllables(r, 100 + r.next() % 1500));
    c.add(base);
    if (i % 4 == 0) c.add(base + " extra words at the end");
  }
  const int saved = getThreads();
  std::vector<std::vector<uint32_t>> sigs;
  std::vector<std::vector<uint64_t>> exact(3);
  std::vector<std::vector<int64_t>> reps;
  std::vector<int64_t> cands;
  int idx = 0;
  for (int threads : {1, 2, 5}) {
    setThreads(threads);
    sigs.push_back(sign(c, ko::MinhashParams{}, &exact[size_t(idx)]));
    const auto res =
        ko::findNearDuplicates(sigs.back().data(), c.size(), 128, ko::LshParams{}, exact[size_t(idx)].data());
    reps.push_back(res.representative);
    cands.push_back(res.candidatePairs);
    idx++;
  }
  setThreads(saved);
  KO_CHECK(sigs[0] == sigs[1] && sigs[0] == sigs[2]);
  KO_CHECK(exact[0] == exact[1] && exact[0] == exact[2]);
  KO_CHECK(reps[0] == reps[1] && reps[0] == reps[2]);
  KO_CHECK(cands[0] == cands[1] && cands[0] == cands[2]);
  // dedupCodepoints (the GPU path's host half) agrees with the one-document normalization.
  std::vector<uint32_t> cps;
  std::vector<int64_t> cpOff;
  std::vector<uint64_t> ex(size_t(c.size()));
  ko::dedupCodepoints(c.text.data(), c.offsets.data(), c.size(), &cps, &cpOff, ex.data());
  KO_CHECK(ex == exact[0]);
  KO_CHECK(cpOff.size() == size_t(c.size()) + 1 && cpOff[0] == 0 && cpOff.back() == int64_t(cps.size()));
  for (int64_t d = 0; d < c.size(); d += 7) {
    std::vector<uint32_t> one;
    const size_t from = size_t(c.offsets[size_t(d)]), len = size_t(c.offsets[size_t(d) + 1]) - from;
    ko::normalizeCodepoints(std::string_view(c.text).substr(from, len), &one);
    KO_CHECK(std::equal(one.begin(), one.end(), cps.begin() + cpOff[size_t(d)]) &&
             int64_t(one.size()) == cpOff[size_t(d) + 1] - cpOff[size_t(d)]);
  }
}

KO_TEST(prep, prep_minhash_bad_args) {
  Corpus c;
  c.add("hello world");
  c.add("second doc");
  std::vector<uint32_t> sigs(2 * 1024);
  auto run = [&](ko::MinhashParams p, int64_t n = 2, const int64_t* off = nullptr) {
    ko::minhashSignatures(c.text.data(), off ? off : c.offsets.data(), n, p, sigs.data(), nullptr);
  };
  KO_CHECK(throwsMentioning([&] { run({0, 5, false, 1}); }, "numPerm"));
  KO_CHECK(throwsMentioning([&] { run({1025, 5, false, 1}); }, "numPerm"));
  KO_CHECK(throwsMentioning([&] { run({128, 0, false, 1}); }, "ngram"));
  KO_CHECK(throwsMentioning([&] { run({128, 33, false, 1}); }, "ngram"));
  KO_CHECK(throwsMentioning([&] { run({}, -1); }, "nDocs"));
  const int64_t decreasing[] = {0, 8, 4};
  KO_CHECK(throwsMentioning([&] { run({}, 2, decreasing); }, "offsets decrease at doc 1"));
  const int64_t negative[] = {-1, 4, 8};
  KO_CHECK(throwsMentioning([&] { run({}, 2, negative); }, "offsets[0]"));
  KO_CHECK(throwsMentioning(
      [&] { ko::minhashSignatures(c.text.data(), c.offsets.data(), 2, {}, nullptr, nullptr); }, "sigs"));
  run({}, 0);  // nothing to do is fine
  KO_CHECK(throwsMentioning([&] { ko::findNearDuplicates(sigs.data(), 2, 128, {17, 8, 0.8}, nullptr); }, "bands"));
  KO_CHECK(throwsMentioning([&] { ko::findNearDuplicates(sigs.data(), 2, 128, {16, 8, 1.5}, nullptr); }, "threshold"));
  KO_CHECK(throwsMentioning([&] { ko::findNearDuplicates(sigs.data(), 2, 128, {16, 8, std::nan("")}, nullptr); },
                            "threshold"));
  KO_CHECK(throwsMentioning([&] { ko::findNearDuplicates(sigs.data(), 2, 0, {}, nullptr); }, "numPerm"));
  KO_CHECK(throwsMentioning([&] { ko::findNearDuplicates(sigs.data(), -2, 128, {}, nullptr); }, "nDocs"));
  KO_CHECK(ko::findNearDuplicates(nullptr, 0, 128, {}, nullptr).representative.empty());
}

KO_TEST(prep, prep_minhash_50mb_document) {
  // One 50 MB line (English-like words and Hangul) completes in bounded memory, and its streamed exact
  // hash equals the one-shot hash of the whole normalized text.
  ko::Rng r(1);
  std::string doc = randomEnglish(r, 30u << 20);
  const std::string ko = utf8(randomSyllables(r, 1 << 16)) + " ";
  while (doc.size() < (50u << 20)) doc += ko;
  Corpus c;
  c.add("short doc");
  c.add(doc);
  std::vector<uint64_t> exact;
  const auto sigs = sign(c, ko::MinhashParams{}, &exact);
  KO_CHECK(!ko::isEmptySignature(sigs.data() + 128, 128));
  KO_CHECK(exact[1] == ko::exactDedupHash(ko::normalizeForDedup(doc)));
}
