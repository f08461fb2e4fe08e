// embedding.cpp — token embedding lookup and its scatter-add backward.
#include <algorithm>
#include <cstring>

#include "ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ko {

void embeddingForward(float* out, const uint32_t* ids, const float* table, int n, int dim) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++)
    std::memcpy(out + size_t(i) * dim, table + size_t(ids[i]) * dim, sizeof(float) * size_t(dim));
}

// Repeated ids make rows collide, so threads split the COLUMNS: each thread owns a fixed column range
// and adds the rows in order. Every element therefore sums in row order whatever the thread count.
void embeddingBackward(float* dtable, const uint32_t* ids, const float* dout, int n, int dim) {
  if (n <= 0 || dim <= 0) return;
  constexpr int kAlign = 16;  // 64-byte column chunks: no false sharing between threads
  const int chunks = (dim + kAlign - 1) / kAlign;
#pragma omp parallel
  {
    int nt = 1, tid = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    tid = omp_get_thread_num();
#endif
    const int c0 = std::min(dim, int(int64_t(chunks) * tid / nt) * kAlign);
    const int c1 = std::min(dim, int(int64_t(chunks) * (tid + 1) / nt) * kAlign);
    if (c0 < c1) {
      for (int i = 0; i < n; i++) {
        float* dst = dtable + size_t(ids[i]) * dim;
        const float* src = dout + size_t(i) * dim;
        for (int c = c0; c < c1; c++) dst[c] += src[c];
      }
    }
  }
}

}  // namespace ko
