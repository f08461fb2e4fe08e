// runtime.cpp — thread-count control shared by OpenMP loops and OpenBLAS.
#include <thread>

#include "model.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef KO_HAVE_BLAS
extern "C" void openblas_set_num_threads(int);
#endif

namespace ko {

static int gThreads = 0;

void setNumThreads(int n) {
  if (n <= 0) n = int(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  gThreads = n;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
#ifdef KO_HAVE_BLAS
  openblas_set_num_threads(n);
#endif
}

int numThreads() {
  if (gThreads == 0) setNumThreads(0);
  return gThreads;
}

}  // namespace ko
