// parallel.h — how the column-parallel reductions split their work. Parameter gradients that sum over
// rows (rmsnorm dw, embedding dtable) give each thread a fixed column range and add the rows in order,
// so every element sums in row order whatever the thread count.
#pragma once
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ko {

// This thread's share [*c0, *c1) of the columns [0, dim), in 64-byte chunks (no false sharing between
// threads). Call inside an OpenMP parallel region; outside one (or without OpenMP) it is all of [0, dim).
inline void threadColumnRange(int dim, int* c0, int* c1) {
  constexpr int kAlign = 16;
  const int chunks = (dim + kAlign - 1) / kAlign;
  int nt = 1, tid = 0;
#ifdef _OPENMP
  nt = omp_get_num_threads();
  tid = omp_get_thread_num();
#endif
  *c0 = std::min(dim, int(int64_t(chunks) * tid / nt) * kAlign);
  *c1 = std::min(dim, int(int64_t(chunks) * (tid + 1) / nt) * kAlign);
}

}  // namespace ko
