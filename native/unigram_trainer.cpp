// unigram_trainer.cpp — the Unigram LM trainer of unigram_trainer.h: seed, EM over word lattices,
// likelihood-loss pruning. Words are processed once per distinct word, weighted by their counts.
#include "unigram_trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ko {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kFixedScale = 1048576.0;      // 2^20: expected counts are summed as int64 in units of 2^-20
constexpr double kMinExpectedToKeep = 0.5;     // SentencePiece's kExpectedFrequencyThreshold
constexpr double kMinCount = 1e-6;             // floor so a kept piece's logProb stays finite
constexpr double kUnknownPenalty = 10.0;       // unknown characters score this far below the worst piece

inline double logAdd(double a, double b) {
  if (a < b) std::swap(a, b);
  if (b == kNegInf) return a;
  return a + std::log1p(std::exp(b - a));
}

int maxThreads() {
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}
int threadIndex() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Byte offsets of a string's characters plus its end (an invalid byte is a one-byte character).
void charBounds(std::string_view s, std::vector<uint32_t>* b) {
  b->clear();
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    b->push_back(uint32_t(i));
    uint32_t cp;
    bool valid;
    i += size_t(utf8Decode(u, s.size(), i, &cp, &valid));
  }
  b->push_back(uint32_t(s.size()));
}

int charCount(std::string_view s) {
  std::vector<uint32_t> b;
  charBounds(s, &b);
  return int(b.size()) - 1;
}

// Piece lookup by bytes; the views point into the model's strings, which outlive the index.
struct PieceIndex {
  std::unordered_map<std::string_view, int> id;
  int maxChars = 1;
  explicit PieceIndex(const std::vector<UnigramPiece>& model) {
    id.reserve(model.size() * 2);
    for (size_t k = 0; k < model.size(); k++) {
      id.emplace(model[k].piece, int(k));
      maxChars = std::max(maxChars, charCount(model[k].piece));
    }
  }
};

// One arc of a word's lattice: characters [from, to) are piece `id`. Lattices list arcs by `from`.
struct Arc {
  int from, to, id;
};

// The arcs of `word` (character bounds `b`), skipping piece `exclude`.
void buildLattice(std::string_view word, const std::vector<uint32_t>& b, const PieceIndex& index, int exclude,
                  std::vector<Arc>* arcs) {
  arcs->clear();
  const int n = int(b.size()) - 1;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j <= std::min(n, i + index.maxChars); j++) {
      auto it = index.id.find(word.substr(b[size_t(i)], b[size_t(j)] - b[size_t(i)]));
      if (it != index.id.end() && it->second != exclude) arcs->push_back({i, j, it->second});
    }
}

// Forward-backward over arcs sorted by `from`: alpha is final at node i once all arcs starting before i
// are added, beta likewise backwards. Calls post(arc, P(arc | word)) and returns log Z (−∞: no path).
template <typename Post>
double forwardBackward(const std::vector<Arc>& arcs, int n, const std::vector<double>& logp,
                       std::vector<double>* alpha, std::vector<double>* beta, Post post) {
  alpha->assign(size_t(n) + 1, kNegInf);
  beta->assign(size_t(n) + 1, kNegInf);
  (*alpha)[0] = 0;
  (*beta)[size_t(n)] = 0;
  for (const Arc& a : arcs) (*alpha)[size_t(a.to)] = logAdd((*alpha)[size_t(a.to)], (*alpha)[size_t(a.from)] + logp[size_t(a.id)]);
  for (auto it = arcs.rbegin(); it != arcs.rend(); ++it)
    (*beta)[size_t(it->from)] = logAdd((*beta)[size_t(it->from)], logp[size_t(it->id)] + (*beta)[size_t(it->to)]);
  const double z = (*alpha)[size_t(n)];
  if (z == kNegInf) return z;
  for (const Arc& a : arcs) {
    const double lp = (*alpha)[size_t(a.from)] + logp[size_t(a.id)] + (*beta)[size_t(a.to)] - z;
    if (lp > kNegInf) post(a, std::exp(lp));
  }
  return z;
}

// Viterbi over arcs sorted by `from`; strict > keeps the first-found best. Fills the piece ids of the best
// path (an arc id < 0 is an unknown character, scored unknownLogp) and returns its score (−∞: no path).
double viterbi(const std::vector<Arc>& arcs, int n, const std::vector<double>& logp, double unknownLogp,
               std::vector<int>* path, std::vector<Arc>* pathArcs = nullptr) {
  std::vector<double> best(size_t(n) + 1, kNegInf);
  std::vector<int> back(size_t(n) + 1, -1);
  best[0] = 0;
  for (size_t k = 0; k < arcs.size(); k++) {
    const Arc& a = arcs[k];
    const double s = best[size_t(a.from)] + (a.id >= 0 ? logp[size_t(a.id)] : unknownLogp);
    if (s > best[size_t(a.to)]) best[size_t(a.to)] = s, back[size_t(a.to)] = int(k);
  }
  path->clear();
  if (pathArcs) pathArcs->clear();
  if (best[size_t(n)] == kNegInf) return kNegInf;
  for (int j = n; j > 0; j = arcs[size_t(back[size_t(j)])].from) {
    path->push_back(arcs[size_t(back[size_t(j)])].id);
    if (pathArcs) pathArcs->push_back(arcs[size_t(back[size_t(j)])]);
  }
  std::reverse(path->begin(), path->end());
  if (pathArcs) std::reverse(pathArcs->begin(), pathArcs->end());
  return best[size_t(n)];
}

// The training corpus: non-empty words with positive counts and their character bounds (flat).
struct Corpus {
  std::vector<std::string_view> words;
  std::vector<int64_t> counts;
  std::vector<uint32_t> bounds;      // every word's charBounds, back to back
  std::vector<size_t> boundsStart;   // word w's bounds are bounds[boundsStart[w] .. boundsStart[w+1])

  Corpus(const std::vector<std::string>& w, const std::vector<int64_t>& c) {
    std::vector<uint32_t> b;
    boundsStart.push_back(0);
    for (size_t i = 0; i < w.size(); i++) {
      if (c[i] <= 0 || w[i].empty()) continue;
      words.push_back(w[i]);
      counts.push_back(c[i]);
      charBounds(w[i], &b);
      bounds.insert(bounds.end(), b.begin(), b.end());
      boundsStart.push_back(bounds.size());
    }
  }
  size_t size() const { return words.size(); }
  void boundsOf(size_t w, std::vector<uint32_t>* b) const {
    b->assign(bounds.begin() + std::ptrdiff_t(boundsStart[w]), bounds.begin() + std::ptrdiff_t(boundsStart[w + 1]));
  }
};

std::vector<double> logProbsOf(const std::vector<UnigramPiece>& model) {
  std::vector<double> lp(model.size());
  for (size_t k = 0; k < model.size(); k++) lp[k] = model[k].logProb;
  return lp;
}

// E-step: expected piece counts over the corpus; *logLikelihood = Σ count × log Z (summed in word order).
std::vector<double> expectedCounts(const std::vector<UnigramPiece>& model, const Corpus& corpus, double* logLikelihood) {
  const PieceIndex index(model);
  const std::vector<double> logp = logProbsOf(model);
  const int nThreads = maxThreads();
  std::vector<std::vector<int64_t>> fixed(static_cast<size_t>(nThreads));
  std::vector<double> wordLl(corpus.size());
#pragma omp parallel num_threads(nThreads)
  {
    std::vector<int64_t>& acc = fixed[size_t(threadIndex())];
    acc.assign(model.size(), 0);
    std::vector<uint32_t> b;
    std::vector<Arc> arcs;
    std::vector<double> alpha, beta;
#pragma omp for schedule(dynamic, 64)
    for (int64_t w = 0; w < int64_t(corpus.size()); w++) {
      corpus.boundsOf(size_t(w), &b);
      buildLattice(corpus.words[size_t(w)], b, index, -1, &arcs);
      const double c = double(corpus.counts[size_t(w)]);
      const double z = forwardBackward(arcs, int(b.size()) - 1, logp, &alpha, &beta, [&](const Arc& a, double p) {
        acc[size_t(a.id)] += std::llround(c * p * kFixedScale);
      });
      wordLl[size_t(w)] = c * z;
    }
  }
  std::vector<double> expected(model.size());
  for (size_t k = 0; k < model.size(); k++) {
    int64_t s = 0;
    for (const auto& acc : fixed) s += acc[k];
    expected[k] = double(s) / kFixedScale;
  }
  double ll = 0;
  for (double x : wordLl) ll += x;
  if (logLikelihood) *logLikelihood = ll;
  return expected;
}

// M-step: drops multi-character pieces expected < 0.5 times (rarest first, never below minKeep pieces),
// then logProb = log(max(expected, kMinCount) / Σ). Keeps the model's order.
std::vector<UnigramPiece> maximize(const std::vector<UnigramPiece>& model, const std::vector<char>& single,
                                   const std::vector<double>& expected, size_t minKeep, std::vector<char>* keptSingle) {
  std::vector<char> drop(model.size(), 0);
  if (model.size() > minKeep) {
    std::vector<size_t> rare;
    for (size_t k = 0; k < model.size(); k++)
      if (!single[k] && expected[k] < kMinExpectedToKeep) rare.push_back(k);
    std::sort(rare.begin(), rare.end(), [&](size_t a, size_t b) {
      return expected[a] != expected[b] ? expected[a] < expected[b] : model[a].piece < model[b].piece;
    });
    const size_t n = std::min(rare.size(), model.size() - minKeep);
    for (size_t i = 0; i < n; i++) drop[rare[i]] = 1;
  }
  std::vector<UnigramPiece> out;
  keptSingle->clear();
  double sum = 0;
  for (size_t k = 0; k < model.size(); k++)
    if (!drop[k]) sum += std::max(expected[k], kMinCount);
  const double logSum = std::log(sum);
  for (size_t k = 0; k < model.size(); k++)
    if (!drop[k]) {
      out.push_back({model[k].piece, std::log(std::max(expected[k], kMinCount)) - logSum});
      keptSingle->push_back(single[k]);
    }
  return out;
}

// Seed: every character (score = count) and the seedSize substrings of 2..maxPieceChars characters with
// the highest count × length, counts >= 2; logProb = log(score / Σ score).
std::vector<UnigramPiece> seedPieces(const Corpus& corpus, const UnigramParams& p, std::vector<char>* single) {
  struct Stat {
    int64_t count = 0;
    int chars = 0;
  };
  using Counts = std::unordered_map<std::string_view, Stat>;
  const int nThreads = maxThreads();
  std::vector<Counts> local(static_cast<size_t>(nThreads));
#pragma omp parallel num_threads(nThreads)
  {
    Counts& mine = local[size_t(threadIndex())];
    std::vector<uint32_t> b;
#pragma omp for schedule(dynamic, 64)
    for (int64_t w = 0; w < int64_t(corpus.size()); w++) {
      corpus.boundsOf(size_t(w), &b);
      const std::string_view word = corpus.words[size_t(w)];
      const int n = int(b.size()) - 1;
      for (int i = 0; i < n; i++) {
        if (i > 0 && word[b[size_t(i)]] == ' ') continue;  // a space starts a piece only at the word start
        for (int j = i + 1; j <= std::min(n, i + p.maxPieceChars); j++) {
          if (j - 1 > i && word[b[size_t(j - 1)]] == ' ') break;  // nor sits inside one
          Stat& s = mine[word.substr(b[size_t(i)], b[size_t(j)] - b[size_t(i)])];
          s.count += corpus.counts[size_t(w)];
          s.chars = j - i;
        }
      }
    }
  }
  Counts all = std::move(local[0]);
  for (size_t t = 1; t < local.size(); t++)
    for (const auto& kv : local[t]) {
      Stat& s = all[kv.first];
      s.count += kv.second.count;
      s.chars = kv.second.chars;
    }

  struct Cand {
    std::string_view piece;
    double score;
  };
  std::vector<Cand> chars, multi;
  for (const auto& kv : all) {
    if (kv.second.chars == 1) chars.push_back({kv.first, double(kv.second.count)});
    else if (kv.second.count >= 2) multi.push_back({kv.first, double(kv.second.count) * kv.second.chars});
  }
  auto byScore = [](const Cand& a, const Cand& b) { return a.score != b.score ? a.score > b.score : a.piece < b.piece; };
  const size_t nSeed = size_t(std::min<int64_t>(p.seedSize, int64_t(multi.size())));
  std::partial_sort(multi.begin(), multi.begin() + std::ptrdiff_t(nSeed), multi.end(), byScore);
  multi.resize(nSeed);
  std::sort(chars.begin(), chars.end(), byScore);

  std::vector<UnigramPiece> model;
  single->clear();
  double sum = 0;
  for (const auto* list : {&chars, &multi})
    for (const Cand& c : *list) sum += c.score;
  for (const auto* list : {&chars, &multi})
    for (const Cand& c : *list) {
      model.push_back({std::string(c.piece), std::log(c.score / sum)});
      single->push_back(list == &chars);
    }
  return model;
}

// Pruning: keeps every character and the multi-character pieces with the largest likelihood loss, to
// max(vocabSize, shrinkFactor × size) pieces, at least one fewer than now. Keeps the model's order.
std::vector<UnigramPiece> prune(const std::vector<UnigramPiece>& model, std::vector<char>* single,
                                const Corpus& corpus, const UnigramParams& p) {
  const PieceIndex index(model);
  const std::vector<double> logp = logProbsOf(model);
  const int nThreads = maxThreads();

  // Viterbi counts over the corpus (integers: exact in any order).
  std::vector<std::vector<int64_t>> local(static_cast<size_t>(nThreads));
#pragma omp parallel num_threads(nThreads)
  {
    std::vector<int64_t>& acc = local[size_t(threadIndex())];
    acc.assign(model.size(), 0);
    std::vector<uint32_t> b;
    std::vector<Arc> arcs;
    std::vector<int> path;
#pragma omp for schedule(dynamic, 64)
    for (int64_t w = 0; w < int64_t(corpus.size()); w++) {
      corpus.boundsOf(size_t(w), &b);
      buildLattice(corpus.words[size_t(w)], b, index, -1, &arcs);
      viterbi(arcs, int(b.size()) - 1, logp, kNegInf, &path);
      for (int id : path) acc[size_t(id)] += corpus.counts[size_t(w)];
    }
  }
  std::vector<int64_t> freq(model.size(), 0);
  int64_t vsumInt = 0;
  for (size_t k = 0; k < model.size(); k++) {
    for (const auto& acc : local) freq[k] += acc[k];
    vsumInt += freq[k];
  }
  const double vsum = double(vsumInt);

  // Each multi-character piece's loss: 0 = ranked by loss, 1 = removable (never used, or not its own best).
  std::vector<int> rankClass(model.size(), 1);
  std::vector<double> loss(model.size(), 0);
#pragma omp parallel num_threads(nThreads)
  {
    std::vector<uint32_t> b;
    std::vector<Arc> arcs;
    std::vector<int> alt;
#pragma omp for schedule(dynamic, 256)
    for (int64_t k = 0; k < int64_t(model.size()); k++) {
      if ((*single)[size_t(k)] || freq[size_t(k)] == 0) continue;
      const std::string& s = model[size_t(k)].piece;
      charBounds(s, &b);
      buildLattice(s, b, index, int(k), &arcs);
      const double altScore = viterbi(arcs, int(b.size()) - 1, logp, kNegInf, &alt);
      if (alt.empty()) {  // no other way to write it: never remove
        rankClass[size_t(k)] = 0, loss[size_t(k)] = std::numeric_limits<double>::infinity();
        continue;
      }
      if (altScore > logp[size_t(k)]) continue;  // Viterbi never picks it as a whole
      const double f = double(freq[size_t(k)]);
      const double logprobSp = std::log(f) - std::log(vsum);
      const double logsumAlt = std::log(vsum + f * double(alt.size() - 1));
      double logprobAlt = 0;
      for (int id : alt) logprobAlt += std::log(double(freq[size_t(id)]) + f) - logsumAlt;
      rankClass[size_t(k)] = 0;
      loss[size_t(k)] = f / vsum * (logprobSp - logprobAlt);
    }
  }

  std::vector<size_t> cands;
  size_t nSingle = 0;
  for (size_t k = 0; k < model.size(); k++) {
    if ((*single)[k]) nSingle++;
    else cands.push_back(k);
  }
  std::sort(cands.begin(), cands.end(), [&](size_t a, size_t b) {
    if (rankClass[a] != rankClass[b]) return rankClass[a] < rankClass[b];
    if (loss[a] != loss[b]) return loss[a] > loss[b];
    if (model[a].logProb != model[b].logProb) return model[a].logProb > model[b].logProb;
    return model[a].piece < model[b].piece;
  });
  size_t target = std::max(size_t(p.vocabSize), size_t(p.shrinkFactor * double(model.size())));
  if (target >= model.size()) target = model.size() - 1;
  const size_t keepMulti = target > nSingle ? std::min(target - nSingle, cands.size()) : 0;
  std::vector<char> keep(model.size(), 0);
  for (size_t k = 0; k < model.size(); k++) keep[k] = (*single)[k];
  for (size_t i = 0; i < keepMulti; i++) keep[cands[i]] = 1;

  std::vector<UnigramPiece> out;
  std::vector<char> outSingle;
  for (size_t k = 0; k < model.size(); k++)
    if (keep[k]) out.push_back(model[k]), outSingle.push_back((*single)[k]);
  *single = std::move(outSingle);
  return out;
}

void validate(const std::vector<std::string>& words, const std::vector<int64_t>& counts, const UnigramParams& p) {
  if (words.size() != counts.size())
    throw std::invalid_argument("trainUnigram: " + std::to_string(words.size()) + " words but " +
                                std::to_string(counts.size()) + " counts");
  for (size_t i = 0; i < counts.size(); i++)
    if (counts[i] < 0)
      throw std::invalid_argument("trainUnigram: counts[" + std::to_string(i) + "] = " + std::to_string(counts[i]) +
                                  " is negative");
  if (p.vocabSize < 1) throw std::invalid_argument("trainUnigram: vocabSize must be >= 1, got " + std::to_string(p.vocabSize));
  if (p.maxPieceChars < 1)
    throw std::invalid_argument("trainUnigram: maxPieceChars must be >= 1, got " + std::to_string(p.maxPieceChars));
  if (p.seedSize < 0) throw std::invalid_argument("trainUnigram: seedSize must be >= 0, got " + std::to_string(p.seedSize));
  if (!(p.shrinkFactor > 0 && p.shrinkFactor < 1))
    throw std::invalid_argument("trainUnigram: shrinkFactor must be in (0, 1), got " + std::to_string(p.shrinkFactor));
  if (p.emIterations < 1)
    throw std::invalid_argument("trainUnigram: emIterations must be >= 1, got " + std::to_string(p.emIterations));
}

void sortByLogProb(std::vector<UnigramPiece>* model) {
  std::sort(model->begin(), model->end(), [](const UnigramPiece& a, const UnigramPiece& b) {
    return a.logProb != b.logProb ? a.logProb > b.logProb : a.piece < b.piece;
  });
}

}  // namespace

std::vector<UnigramPiece> trainUnigram(const std::vector<std::string>& words, const std::vector<int64_t>& counts,
                                       const UnigramParams& p,
                                       const std::function<void(const UnigramProgress&)>& onProgress) {
  validate(words, counts, p);
  const Corpus corpus(words, counts);
  if (corpus.size() == 0) return {};
  std::vector<char> single;
  std::vector<UnigramPiece> model = seedPieces(corpus, p, &single);
  for (int round = 0;; round++) {
    for (int it = 0; it < p.emIterations; it++) {
      double ll = 0;
      const std::vector<double> expected = expectedCounts(model, corpus, &ll);
      if (onProgress) onProgress({round, it, int64_t(model.size()), ll});
      std::vector<char> keptSingle;
      model = maximize(model, single, expected, size_t(p.vocabSize), &keptSingle);
      single = std::move(keptSingle);
    }
    const size_t nSingle = size_t(std::count(single.begin(), single.end(), 1));
    if (model.size() <= size_t(p.vocabSize) || nSingle == model.size()) break;
    model = prune(model, &single, corpus, p);
  }
  sortByLogProb(&model);
  return model;
}

std::vector<std::string> unigramViterbi(const std::vector<UnigramPiece>& model, const std::string& word) {
  std::vector<std::string> out;
  if (word.empty()) return out;
  const PieceIndex index(model);
  const std::vector<double> logp = logProbsOf(model);
  double worst = 0;
  for (double x : logp) worst = std::min(worst, x);
  std::vector<uint32_t> b;
  charBounds(word, &b);
  std::vector<Arc> arcs, pathArcs;
  buildLattice(word, b, index, -1, &arcs);
  // Unknown characters: a one-character arc of their own, so every word has a path.
  std::vector<char> hasSingle(b.size(), 0);
  for (const Arc& a : arcs)
    if (a.to == a.from + 1) hasSingle[size_t(a.from)] = 1;
  std::vector<Arc> all;
  for (int i = 0, k = 0; i + 1 < int(b.size()); i++) {
    if (!hasSingle[size_t(i)]) all.push_back({i, i + 1, -1});
    while (k < int(arcs.size()) && arcs[size_t(k)].from == i) all.push_back(arcs[size_t(k++)]);
  }
  std::vector<int> path;
  viterbi(all, int(b.size()) - 1, logp, worst - kUnknownPenalty, &path, &pathArcs);
  for (const Arc& a : pathArcs) out.push_back(word.substr(b[size_t(a.from)], b[size_t(a.to)] - b[size_t(a.from)]));
  return out;
}

double unigramWordExpectedCounts(const std::vector<UnigramPiece>& model, const std::string& word,
                                 std::vector<double>* expected) {
  const PieceIndex index(model);
  const std::vector<double> logp = logProbsOf(model);
  expected->assign(model.size(), 0.0);
  std::vector<uint32_t> b;
  charBounds(word, &b);
  std::vector<Arc> arcs;
  buildLattice(word, b, index, -1, &arcs);
  std::vector<double> alpha, beta;
  return forwardBackward(arcs, int(b.size()) - 1, logp, &alpha, &beta,
                         [&](const Arc& a, double p) { (*expected)[size_t(a.id)] += p; });
}

std::vector<UnigramPiece> unigramEmIteration(const std::vector<UnigramPiece>& model,
                                             const std::vector<std::string>& words,
                                             const std::vector<int64_t>& counts, double* logLikelihood) {
  UnigramParams p;
  p.vocabSize = 1;
  validate(words, counts, p);
  const Corpus corpus(words, counts);
  std::vector<char> single(model.size()), keptSingle;
  for (size_t k = 0; k < model.size(); k++) single[k] = charCount(model[k].piece) == 1;
  return maximize(model, single, expectedCounts(model, corpus, logLikelihood), model.size(), &keptSingle);
}

}  // namespace ko
