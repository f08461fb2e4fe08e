// lsh_dedup.cpp — exact-duplicate merge, LSH banding, confirmation, union-find (see lsh_dedup.h).
#include "lsh_dedup.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "minhash.h"

namespace ko {

namespace {

// Union-find whose root is always the smallest index of its set (the survivor).
struct UnionFind {
  std::vector<int64_t> parent;
  explicit UnionFind(int64_t n) : parent(size_t(n)) {
    for (int64_t i = 0; i < n; i++) parent[size_t(i)] = i;
  }
  int64_t find(int64_t x) {
    while (parent[size_t(x)] != x) {
      parent[size_t(x)] = parent[size_t(parent[size_t(x)])];  // path halving
      x = parent[size_t(x)];
    }
    return x;
  }
  void unite(int64_t a, int64_t b) {
    a = find(a), b = find(b);
    if (a == b) return;
    if (a < b)
      parent[size_t(b)] = a;
    else
      parent[size_t(a)] = b;
  }
};

// Keeps, per document, the partner it is best linked to: highest Jaccard, then smallest index.
struct Links {
  std::vector<int64_t> to;
  std::vector<double> jaccard;
  explicit Links(int64_t n) : to(size_t(n), -1), jaccard(size_t(n), -1.0) {}
  void offer(int64_t d, int64_t partner, double j) {
    double& cur = jaccard[size_t(d)];
    if (j > cur || (j == cur && partner < to[size_t(d)])) cur = j, to[size_t(d)] = partner;
  }
};

uint64_t bandKey(const uint32_t* v, int rows, const uint64_t* keys) {
  uint64_t h = 0;
  for (int k = 0; k < rows; k++) h += uint64_t(v[k]) * keys[k];
  return minhashMix64(h);
}

// Sorts (key, doc) pairs: one counting pass on the top 16 bits of the (uniformly hashed) keys, then a
// std::sort of each small bucket — about 3x faster than sorting all at once.
void sortKeyDoc(std::vector<std::pair<uint64_t, int64_t>>& v, std::vector<std::pair<uint64_t, int64_t>>& tmp) {
  constexpr int kBits = 16;
  if (v.size() < (size_t(1) << kBits)) {
    std::sort(v.begin(), v.end());
    return;
  }
  std::vector<size_t> start((size_t(1) << kBits) + 1, 0);
  for (const auto& e : v) start[size_t(e.first >> (64 - kBits)) + 1]++;
  for (size_t b = 0; b < (size_t(1) << kBits); b++) start[b + 1] += start[b];
  tmp.resize(v.size());
  std::vector<size_t> pos(start.begin(), start.end() - 1);
  for (const auto& e : v) tmp[pos[size_t(e.first >> (64 - kBits))]++] = e;
  for (size_t b = 0; b < (size_t(1) << kBits); b++)
    std::sort(tmp.begin() + std::ptrdiff_t(start[b]), tmp.begin() + std::ptrdiff_t(start[b + 1]));
  v.swap(tmp);
}

}  // namespace

double estimatedJaccard(const uint32_t* a, const uint32_t* b, int numPerm) {
  int eq = 0;
  for (int i = 0; i < numPerm; i++) eq += a[i] == b[i];
  return numPerm > 0 ? double(eq) / double(numPerm) : 0.0;
}

double lshCandidateProbability(double j, int bands, int rows) {
  return 1.0 - std::pow(1.0 - std::pow(j, rows), bands);
}

DedupResult findNearDuplicates(const uint32_t* sigs, int64_t nDocs, int numPerm, const LshParams& params,
                               const uint64_t* exactHashes) {
  if (nDocs < 0) throw std::invalid_argument("findNearDuplicates: nDocs = " + std::to_string(nDocs) + " < 0");
  if (numPerm < 1 || numPerm > 1024)
    throw std::invalid_argument("findNearDuplicates: numPerm = " + std::to_string(numPerm) + " (allowed: 1..1024)");
  if (params.bands < 1 || params.rows < 1 || int64_t(params.bands) * params.rows > numPerm)
    throw std::invalid_argument("LshParams: bands = " + std::to_string(params.bands) + ", rows = " +
                                std::to_string(params.rows) + " (need >= 1 each and bands * rows <= numPerm = " +
                                std::to_string(numPerm) + ")");
  if (!(params.threshold >= 0.0 && params.threshold <= 1.0))
    throw std::invalid_argument("LshParams.threshold = " + std::to_string(params.threshold) + " (allowed: 0..1)");
  if (nDocs > 0 && !sigs) throw std::invalid_argument("findNearDuplicates: sigs is null");

  DedupResult res;
  const size_t P = size_t(numPerm);
  auto sig = [&](int64_t d) { return sigs + size_t(d) * P; };
  std::vector<char> inLsh(size_t(nDocs), 1);
  for (int64_t d = 0; d < nDocs; d++)
    if (isEmptySignature(sig(d), numPerm)) inLsh[size_t(d)] = 0, res.emptyDocuments++;
  UnionFind uf(nDocs);
  Links links(nDocs);

  // 1. Exact duplicates: sort (hash, doc); within a run of equal hashes, join the first document whose
  //    signature is equal too.
  if (exactHashes) {
    std::vector<std::pair<uint64_t, int64_t>> byHash;
    byHash.reserve(size_t(nDocs));
    for (int64_t d = 0; d < nDocs; d++)
      if (inLsh[size_t(d)]) byHash.push_back({exactHashes[d], d});
    std::sort(byHash.begin(), byHash.end());
    for (size_t i = 0; i < byHash.size();) {
      size_t j = i + 1;
      while (j < byHash.size() && byHash[j].first == byHash[i].first) j++;
      for (size_t k = i + 1; k < j; k++) {
        const int64_t d = byHash[k].second;
        for (size_t f = i; f < k; f++) {  // the first earlier member with an equal signature
          const int64_t e = byHash[f].second;
          if (inLsh[size_t(e)] && std::memcmp(sig(d), sig(e), P * sizeof(uint32_t)) == 0) {
            uf.unite(e, d);
            links.offer(d, e, 1.0);
            inLsh[size_t(d)] = 0;
            res.exactDuplicates++;
            break;
          }
        }
      }
      i = j;
    }
  }

  // 2. + 3. Banding and candidates. All band keys in one pass over the signatures (band-major), then one
  //    band per thread: sort its (key, doc) pairs and emit each bucket's star pairs (anchor, doc).
  const int B = params.bands, R = params.rows;
  uint64_t keys[1024];
  for (int k = 0; k < R; k++) keys[k] = minhashShingleKey(0x4C53482D42414E44ull /* "LSH-BAND" */, k);
  std::vector<int64_t> lshDocs;
  for (int64_t d = 0; d < nDocs; d++)
    if (inLsh[size_t(d)]) lshDocs.push_back(d);
  const size_t nL = lshDocs.size();
  std::vector<uint64_t> bandKeys(size_t(B) * nL);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(nL); i++)
    for (int b = 0; b < B; b++)
      bandKeys[size_t(b) * nL + size_t(i)] = bandKey(sig(lshDocs[size_t(i)]) + size_t(b) * size_t(R), R, keys);
  std::vector<std::vector<std::pair<int64_t, int64_t>>> bandPairs(static_cast<size_t>(B));
#pragma omp parallel
  {
    std::vector<std::pair<uint64_t, int64_t>> kd, tmp;
#pragma omp for schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
      kd.resize(nL);
      for (size_t i = 0; i < nL; i++) kd[i] = {bandKeys[size_t(b) * nL + i], lshDocs[i]};
      sortKeyDoc(kd, tmp);
      auto& out = bandPairs[size_t(b)];
      for (size_t i = 0; i < kd.size();) {
        size_t j = i + 1;
        while (j < kd.size() && kd[j].first == kd[i].first) j++;
        for (size_t k = i + 1; k < j; k++) out.push_back({kd[i].second, kd[k].second});
        i = j;
      }
    }
  }
  std::vector<uint64_t>().swap(bandKeys);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  size_t raw = 0;
  for (const auto& bp : bandPairs) raw += bp.size();
  pairs.reserve(raw);
  for (auto& bp : bandPairs) {
    pairs.insert(pairs.end(), bp.begin(), bp.end());
    std::vector<std::pair<int64_t, int64_t>>().swap(bp);
  }
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  res.candidatePairs = int64_t(pairs.size());

  // 4. Confirmation (parallel), then unions in pair order (sequential; the components do not depend on
  //    the order, and the links are chosen by value).
  std::vector<double> est(pairs.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(pairs.size()); i++)
    est[size_t(i)] = estimatedJaccard(sig(pairs[size_t(i)].first), sig(pairs[size_t(i)].second), numPerm);
  for (size_t i = 0; i < pairs.size(); i++) {
    if (est[i] < params.threshold) continue;
    const auto [a, b] = pairs[i];
    res.confirmedPairs++;
    uf.unite(a, b);
    links.offer(a, b, est[i]);
    links.offer(b, a, est[i]);
  }

  // Clusters: group by root (= survivor); members come out ascending because d increases.
  res.representative.resize(size_t(nDocs));
  std::vector<int64_t> clusterOf(size_t(nDocs), -1);
  std::vector<int64_t> size(size_t(nDocs), 0);
  for (int64_t d = 0; d < nDocs; d++) {
    res.representative[size_t(d)] = uf.find(d);
    size[size_t(res.representative[size_t(d)])]++;
  }
  for (int64_t d = 0; d < nDocs; d++) {
    const int64_t r = res.representative[size_t(d)];
    if (size[size_t(r)] < 2) continue;
    if (r == d) {
      clusterOf[size_t(d)] = int64_t(res.clusters.size());
      res.clusters.emplace_back();
    }
    DedupCluster& c = res.clusters[size_t(clusterOf[size_t(r)])];
    c.members.push_back(d);
    c.linkedTo.push_back(r == d ? -1 : links.to[size_t(d)]);
    c.jaccard.push_back(r == d ? 1.0 : links.jaccard[size_t(d)]);
  }
  return res;
}

}  // namespace ko
