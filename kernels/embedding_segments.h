// embedding_segments.h — host-side grouping of token rows for ko::cuda::embeddingBackward (kernels.h).
// Plain C++ (no CUDA), header-only, so any caller (cuda_model, the tests, the bench) can build the
// order / segStart / segToken arrays before uploading them.
#pragma once
#include <cstdint>
#include <vector>

namespace ko::cuda {

// Stable counting sort of the rows 0..n-1 by token id:
//   order    [m]         row indices sorted by token; rows of one token keep increasing order
//   segStart [nSeg + 1]  segment s covers order[segStart[s] .. segStart[s+1])
//   segToken [nSeg]      the token of segment s (increasing)
// nSeg = segToken.size(). Every id must be < vocab (the caller validates them, as for the forward
// pass); an id >= vocab is left out of every segment (m < n then) rather than written out of range.
// n <= 0 gives nSeg = 0 and segStart = {0}. O(n + vocab) time and memory.
inline void embeddingSegments(const uint32_t* ids, int n, int vocab, std::vector<int32_t>& order,
                              std::vector<int32_t>& segStart, std::vector<int32_t>& segToken) {
  order.clear();
  segStart.clear();
  segToken.clear();
  if (n <= 0 || vocab <= 0 || !ids) {
    segStart.push_back(0);
    return;
  }
  // start[tok] = first slot of token tok in `order` (exclusive prefix sum of the counts).
  std::vector<int32_t> start(size_t(vocab) + 1, 0);
  for (int i = 0; i < n; i++)
    if (ids[i] < uint32_t(vocab)) start[size_t(ids[i]) + 1]++;
  for (int t = 0; t < vocab; t++) {
    if (start[size_t(t) + 1] > 0) {
      segToken.push_back(t);
      segStart.push_back(start[t]);
    }
    start[size_t(t) + 1] += start[t];
  }
  const int32_t m = start[size_t(vocab)];
  segStart.push_back(m);
  order.resize(size_t(m));
  // Rows in increasing order, each into the next free slot of its token: stable.
  for (int i = 0; i < n; i++)
    if (ids[i] < uint32_t(vocab)) order[size_t(start[ids[i]]++)] = i;
}

}  // namespace ko::cuda
