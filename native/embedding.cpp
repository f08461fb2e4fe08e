// embedding.cpp — token embedding lookup and its scatter-add backward.
#include <cstring>

#include "ops.h"
#include "parallel.h"

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
#pragma omp parallel
  {
    int c0, c1;
    threadColumnRange(dim, &c0, &c1);
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
