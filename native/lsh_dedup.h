// lsh_dedup.h — near-duplicate clusters from MinHash signatures (minhash.h): exact-duplicate merge,
// LSH banding, candidate confirmation, union-find.
//
//   1. Exact duplicates (when exactHashes is given): documents with equal exact hash AND equal
//      signature (guards against a 64-bit hash collision) join the first such document; only that
//      first one takes part in the LSH steps (the others have the same signature anyway).
//   2. Banding: the signature is cut into `bands` bands of `rows` values (bands * rows <= numPerm;
//      values past bands * rows are used only by the confirmation). Each document's r values per band
//      are hashed to a 64-bit key (sum_k v_k * K_k mod 2^64, then mix64; a collision only adds a
//      candidate that the confirmation rejects). Per band the (key, doc) pairs are sorted (a counting
//      pass on the key's top 16 bits, then small sorts), so equal keys form buckets in document order
//      (deterministic). Bands run in parallel.
//   3. Candidates: within a bucket every document is paired with the bucket's first (smallest-index)
//      document — a star, linear in the bucket size, instead of all pairs; pairs found by several bands
//      are counted once. A bucket member below the threshold against the anchor but above it against
//      another member can be missed by this band; it is usually found through another band or
//      through a chain of unions.
//   4. Confirmation: estimatedJaccard (fraction of the numPerm positions that are equal, over the whole
//      signature) >= threshold, then union. Union-find with path halving whose root is always the
//      smallest index, so each cluster's survivor is its first document in input order.
//   Documents whose signature is empty (isEmptySignature: empty normalized text) are never clustered,
//   not even with each other or as exact duplicates.
//
// See minhash.h for why 16 bands x 8 rows and 0.8: P(candidate | J) = 1 - (1 - J^8)^16 is 0.061 at
// J = 0.5, 0.613 at 0.7, 0.947 at 0.8 and 0.99988 at 0.9.
//
// Memory, per document: the signatures 4 * numPerm bytes (the caller's); the band keys 8 * bands bytes
// (128 for 16 bands); union-find, links and the result's representative 32 bytes; and 32 bytes per
// document for each band being sorted at the same time (one band per thread). Plus 16 bytes per raw
// candidate pair (at most one per document and band) and 8 per distinct pair for its estimate. For 1M
// documents, 128 permutations and 8 threads: 512 MB of signatures + ~450 MB of working memory.
// Time (bench, AMD EPYC, 1 thread): ~1.8 s per 1M documents, most of it the per-band sorts.
#pragma once
#include <cstdint>
#include <vector>

namespace ko {

struct LshParams {
  int bands = 16;
  int rows = 8;
  double threshold = 0.8;  // minimum estimated Jaccard to merge, in [0, 1]
};

struct DedupCluster {
  std::vector<int64_t> members;   // ascending; members[0] is the survivor (the smallest index)
  std::vector<int64_t> linkedTo;  // per member: the member it was merged with (-1 for the survivor) — its
                                  // confirmed partner with the highest estimated Jaccard (ties: smallest),
                                  // or the first document of its exact-duplicate group
  std::vector<double> jaccard;    // per member: estimated Jaccard with linkedTo (1 for exact duplicates
                                  // and for the survivor)
};

struct DedupResult {
  std::vector<int64_t> representative;  // per doc: the survivor of its cluster (itself if unique)
  std::vector<DedupCluster> clusters;   // clusters of >= 2 documents, ordered by survivor
  int64_t candidatePairs = 0;           // distinct pairs that shared a band bucket
  int64_t confirmedPairs = 0;           // of those, the pairs with estimated Jaccard >= threshold
  int64_t exactDuplicates = 0;          // documents merged in step 1 (not counted in the pairs)
  int64_t emptyDocuments = 0;           // documents with an empty signature (never clustered)
};

// sigs: nDocs x numPerm, doc-major (minhashSignatures). exactHashes: nDocs or null. Throws
// std::invalid_argument for bad sizes or parameters (naming them). Deterministic for any thread count.
DedupResult findNearDuplicates(const uint32_t* sigs, int64_t nDocs, int numPerm, const LshParams& params,
                               const uint64_t* exactHashes);

// Fraction of positions where the two signatures are equal: the MinHash estimate of the Jaccard
// similarity of the two shingle sets (for empty signatures it is meaningless: 1).
double estimatedJaccard(const uint32_t* a, const uint32_t* b, int numPerm);

// The LSH S-curve: probability that two documents with Jaccard j share at least one band bucket.
double lshCandidateProbability(double j, int bands, int rows);

}  // namespace ko
