// ngram_estimate.cpp — interpolated modified Kneser-Ney from NgramCounter's order-N counts, computed
// the way lmplz does (Heafield et al. 2013; lm/builder/adjust_counts.cc, initial_probabilities.cc,
// interpolate.cc), in memory: each order is an array sorted in suffix order (compare the last word,
// then the one before, ...), which is lmplz's stream order and the order of its ARPA sections.
// Arithmetic is float in lmplz's order of operations, so the printed ARPA values come out the same;
// products are rounded before they are added (volatile) so that -march=native cannot fuse them into
// FMAs that lmplz's build does not have.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "ngram_lm.h"

namespace ko {

namespace {

inline float mulRounded(float a, float b) {
  volatile float p = a * b;
  return p;
}

// -1, 0, 1 comparing a and b (n ids each) in suffix order.
inline int suffixCmp(const uint32_t* a, const uint32_t* b, int n) {
  for (int i = n - 1; i >= 0; i--)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

// One order's n-grams during estimation, in suffix order.
struct Level {
  int n = 0;
  std::vector<uint32_t> ids;  // n per entry
  std::vector<uint64_t> adj;  // adjusted counts
  size_t size() const { return adj.size(); }
  const uint32_t* at(size_t i) const { return ids.data() + i * size_t(n); }
  void push(const uint32_t* g, uint64_t a) {
    ids.insert(ids.end(), g, g + n);
    adj.push_back(a);
  }
};

// Exact index of a Level: id tuple → entry (keys verified against the ids).
class LevelIndex {
 public:
  explicit LevelIndex(const Level& l) : l_(l) {
    size_t cap = 16;
    while (cap < l.size() * 2) cap *= 2;
    slots_.assign(cap, 0);
    mask_ = cap - 1;
    for (size_t i = 0; i < l.size(); i++) {
      size_t s = ngramKey(l.at(i), l.n) & mask_;
      while (slots_[s]) s = (s + 1) & mask_;
      slots_[s] = uint32_t(i + 1);
    }
  }
  // Index of g (l.n ids); throws when absent (a broken invariant, not bad input).
  size_t find(const uint32_t* g) const {
    for (size_t s = ngramKey(g, l_.n) & mask_; slots_[s]; s = (s + 1) & mask_) {
      const size_t i = slots_[s] - 1;
      if (std::equal(g, g + l_.n, l_.at(i))) return i;
    }
    throw std::logic_error("ngram estimate: missing " + std::to_string(l_.n) + "-gram");
  }

 private:
  const Level& l_;
  std::vector<uint32_t> slots_;
  size_t mask_;
};

// Chen & Goodman eq. 26 as lmplz's StatCollector::CalculateDiscounts computes it; false when lmplz
// would throw BadDiscountException.
bool computeDiscounts(const uint64_t t[5], float d[4]) {
  for (int j = 1; j < 4; j++)
    if (t[j] == 0) return false;
  d[0] = 0.0f;
  const float y = static_cast<float>(t[1]) / static_cast<float>(t[1] + 2.0 * t[2]);
  for (unsigned j = 1; j < 4; j++) {
    d[j] = static_cast<float>(j) - static_cast<float>(j + 1) * y * static_cast<float>(t[j + 1]) / static_cast<float>(t[j]);
    if (d[j] < 0.0 || d[j] > j) return false;
  }
  return true;
}

}  // namespace

struct NgramEstimator {
  static NgramModel run(const NgramCounter& c, const KnOptions& opt);
};

NgramModel NgramCounter::estimate(const KnOptions& opt) const {
  if (!finished_) throw std::logic_error("NgramCounter::estimate before finish()");
  return NgramEstimator::run(*this, opt);
}

NgramModel NgramEstimator::run(const NgramCounter& c, const KnOptions& opt) {
  const int N = c.order_;
  if (c.sentences_ == 0) throw std::runtime_error("n-gram estimate: the corpus has no sentences");

  // ---- the order-N n-grams, sorted ----
  const size_t nFull = c.counts_.size();
  std::vector<uint32_t> perm(nFull);
  std::iota(perm.begin(), perm.end(), 0u);
  const uint32_t* G = c.grams_.data();
  std::sort(perm.begin(), perm.end(),
            [&](uint32_t a, uint32_t b) { return suffixCmp(G + size_t(a) * N, G + size_t(b) * N, N) < 0; });
  auto full = [&](size_t k) { return G + size_t(perm[k]) * N; };
  auto fullCount = [&](size_t k) { return c.counts_[perm[k]]; };

  std::vector<Level> L(N + 1);
  for (int n = 1; n <= N; n++) L[n].n = n;

  if (N == 1) {
    // lmplz's Writer adds <unk> and <s> with count 0; all counts are raw.
    const uint32_t unk = kNgramUnk, bos = kNgramBos;
    L[1].push(&unk, 0);
    L[1].push(&bos, 0);
    for (size_t k = 0; k < nFull; k++) L[1].push(full(k), fullCount(k));
  } else {
    // Order N: raw counts, without "<s> <s> ..." (lmplz's CollapseStream drops them).
    // B[n]: n-grams that start with <s>, keeping raw counts: a full n-gram with L leading <s> gives
    // the one of order N - L + 1 that starts at its last leading <s>.
    std::vector<Level> B(N + 1);
    for (int n = 1; n <= N; n++) B[n].n = n;
    for (size_t k = 0; k < nFull; k++) {
      const uint32_t* g = full(k);
      int lead = 0;
      while (lead < N && g[lead] == kNgramBos) lead++;
      if (N >= 2 && g[1] != kNgramBos) L[N].push(g, fullCount(k));
      if (lead >= 2) B[N - lead + 1].push(g + lead - 1, fullCount(k));
    }
    // Lower orders: the suffixes of the order above (equal ones are adjacent in suffix order; their
    // number is the continuation count), merged with B[n].
    for (int n = N - 1; n >= 1; n--) {
      Level derived;
      derived.n = n;
      const Level& up = L[n + 1];
      for (size_t i = 0; i < up.size(); i++) {
        const uint32_t* s = up.at(i) + 1;
        if (derived.size() && std::equal(s, s + n, derived.at(derived.size() - 1)))
          derived.adj.back()++;
        else
          derived.push(s, 1);
      }
      Level& out = L[n];
      if (n == 1) {  // AdjustCounts starts the unigrams with <unk> and <s>, count 0
        const uint32_t unk = kNgramUnk, bos = kNgramBos;
        out.push(&unk, 0);
        out.push(&bos, 0);
      }
      size_t a = 0, b = 0;
      const Level& bl = B[n];
      while (a < derived.size() || b < bl.size()) {
        if (b == bl.size() || (a < derived.size() && suffixCmp(derived.at(a), bl.at(b), n) < 0)) {
          out.push(derived.at(a), derived.adj[a]);
          a++;
        } else {
          out.push(bl.at(b), bl.adj[b]);
          b++;
        }
      }
    }
  }

  // ---- count-of-counts and discounts ----
  // lmplz quirk (AdjustCounts::Run, the loop after the main one): the lower-order n-grams still open
  // when the input ends — the suffixes of the last order-N n-gram, up to its last <s> — enter the
  // statistics with their raw count (actual_counts) instead of the adjusted one.
  std::vector<int64_t> quirkIndex(N + 1, -1);
  std::vector<uint64_t> quirkRaw(N + 1, 0);
  if (N >= 2 && nFull > 0) {
    const uint32_t* last = full(nFull - 1);
    int p = 0;  // rightmost <s> at position >= 1
    for (int i = 1; i < N; i++)
      if (last[i] == kNgramBos) p = i;
    const int maxValid = p ? N - p : N - 1;
    for (int n = 1; n <= maxValid; n++) {
      const uint32_t* s = last + (N - n);
      uint64_t raw = 0;
      for (size_t k = nFull; k-- > 0;) {
        if (!std::equal(s, s + n, full(k) + (N - n))) break;
        raw += fullCount(k);
      }
      const Level& l = L[n];
      if (l.size() && std::equal(s, s + n, l.at(l.size() - 1))) {
        quirkIndex[n] = int64_t(l.size() - 1);
        quirkRaw[n] = raw;
      }
    }
  }
  NgramModel m;
  m.resize(N);
  m.vocab_ = c.vocab_;
  for (int n = 1; n <= N; n++) {
    uint64_t t[5] = {0, 0, 0, 0, 0};
    const Level& l = L[n];
    for (size_t i = 0; i < l.size(); i++) {
      const uint64_t a = int64_t(i) == quirkIndex[n] ? quirkRaw[n] : l.adj[i];
      if (a < 5) t[a]++;
    }
    float* d = m.discounts_[n - 1];
    if (!computeDiscounts(t, d)) {
      if (!opt.discountFallback)
        throw std::runtime_error("n-gram estimate: cannot compute Kneser-Ney discounts for " + std::to_string(n) +
                                 "-grams (count-of-counts " + std::to_string(t[1]) + " " + std::to_string(t[2]) + " " +
                                 std::to_string(t[3]) + " " + std::to_string(t[4]) +
                                 "); is this small or artificial data? Use the discount fallback");
      d[0] = 0.0f;
      for (int j = 0; j < 3; j++) d[j + 1] = float(opt.fallback[j]);
      m.fallback_[n - 1] = true;
    }
  }

  // ---- initial probabilities (uninterpolated) and gammas ----
  std::vector<std::vector<float>> uninterp(N + 1), gamma(N + 1), ctxGamma(N + 1);
  std::vector<std::vector<uint8_t>> isContext(N + 1);
  for (int n = 1; n <= N; n++) {
    uninterp[n].resize(L[n].size());
    gamma[n].resize(L[n].size());
    ctxGamma[n].assign(L[n].size(), 1.0f);
    isContext[n].assign(L[n].size(), 0);
  }
  auto gammaOf = [](const float* d, uint64_t denominator, const uint64_t cnt[4]) {
    float g = 0.0f;
    for (int i = 1; i <= 3; i++) g += mulRounded(d[i], static_cast<float>(cnt[i]));
    g += 0.0f;  // lmplz adds the pruned mass here; none without pruning
    g /= static_cast<float>(denominator);
    return g;
  };
  auto apply = [](const float* d, uint64_t a) { return static_cast<float>(a) - d[std::min<uint64_t>(a, 3)]; };
  {
    const Level& l = L[1];
    const float* d = m.discounts_[0];
    uint64_t denominator = 0, cnt[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < l.size(); i++) {
      denominator += l.adj[i];
      if (l.adj[i] > 0) cnt[std::min<uint64_t>(l.adj[i], 3)]++;
    }
    const float g0 = gammaOf(d, denominator, cnt);
    const float den = static_cast<float>(denominator);
    for (size_t i = 0; i < l.size(); i++) {
      const uint32_t w = l.at(i)[0];
      if (w == kNgramUnk) {  // interpolate_unigrams (lmplz's default): <unk> is a zeroton
        uninterp[1][i] = 0.0f;
        gamma[1][i] = g0;
      } else if (w == kNgramBos) {  // probability 1, so that scoring <s> costs nothing
        uninterp[1][i] = 1.0f;
        gamma[1][i] = 0.0f;
      } else {
        uninterp[1][i] = apply(d, l.adj[i]) / den;
        gamma[1][i] = g0;
      }
    }
  }
  std::vector<std::vector<uint32_t>> suffixOf(N + 1);
  for (int n = 2; n <= N; n++) {
    const Level& l = L[n];
    const Level& lo = L[n - 1];
    const LevelIndex index(lo);
    const float* d = m.discounts_[n - 1];
    std::vector<uint32_t> ctx(l.size());
    suffixOf[n].resize(l.size());
    std::vector<uint64_t> denominator(lo.size(), 0);
    std::vector<uint64_t> cnt(lo.size() * 4, 0);
    for (size_t i = 0; i < l.size(); i++) {
      const size_t j = index.find(l.at(i));
      ctx[i] = uint32_t(j);
      suffixOf[n][i] = uint32_t(index.find(l.at(i) + 1));
      denominator[j] += l.adj[i];
      if (l.adj[i] > 0) cnt[j * 4 + std::min<uint64_t>(l.adj[i], 3)]++;
    }
    for (size_t j = 0; j < lo.size(); j++) {
      if (!denominator[j]) continue;
      ctxGamma[n - 1][j] = gammaOf(d, denominator[j], &cnt[j * 4]);
      isContext[n - 1][j] = 1;
    }
    for (size_t i = 0; i < l.size(); i++) {
      const size_t j = ctx[i];
      uninterp[n][i] = apply(d, l.adj[i]) / static_cast<float>(denominator[j]);
      gamma[n][i] = ctxGamma[n - 1][j];
    }
  }

  // ---- interpolation, log10, the model ----
  // uniform_prob_ = 1.0 / float(vocab_size): a double division stored in a float.
  const float uniform = static_cast<float>(1.0 / static_cast<float>(L[1].size() - 1));
  std::vector<float> lowerP, curP;
  for (int n = 1; n <= N; n++) {
    const Level& l = L[n];
    curP.resize(l.size());
    for (size_t i = 0; i < l.size(); i++) {
      const float lower = n == 1 ? uniform : lowerP[suffixOf[n][i]];
      curP[i] = uninterp[n][i] + mulRounded(gamma[n][i], lower);
    }
    m.ids_[n - 1] = l.ids;
    m.prob_[n - 1].resize(l.size());
    if (n < N) m.backoff_[n - 1].resize(l.size());
    for (size_t i = 0; i < l.size(); i++) {
      m.prob_[n - 1][i] = std::min(0.0f, log10f(curP[i]));
      if (n < N) {
        const uint32_t w = l.at(i)[n - 1];
        const bool ctxOk = w != kNgramUnk && w != kNgramEos && isContext[n][i];
        m.backoff_[n - 1][i] = log10f(ctxOk ? ctxGamma[n][i] : 1.0f);
      }
    }
    lowerP.swap(curP);
    // Free what this order no longer needs.
    std::vector<float>().swap(uninterp[n]);
    std::vector<float>().swap(gamma[n]);
    if (n > 1) {
      std::vector<float>().swap(ctxGamma[n - 1]);
      std::vector<uint32_t>().swap(suffixOf[n]);
    }
    Level().ids.swap(L[n].ids);
  }
  m.buildIndex();
  return m;
}

}  // namespace ko
