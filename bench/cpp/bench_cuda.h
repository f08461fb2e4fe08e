// bench_cuda.h — the CUDA sections of ko_bench, one file each (bench_cuda_*.cpp, compiled only when
// KO_CUDA is defined). Each prints its own table and returns false when it could not run (and says why).
#pragma once
#ifdef KO_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>

namespace kobench {

// Best time in milliseconds of fn() over `reps` runs after `warmup`, timed with CUDA events on the
// legacy default stream (every launcher in the bench uses stream nullptr).
inline double cudaBestMs(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; i++) fn();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  double best = 1e300;
  for (int i = 0; i < reps; i++) {
    cudaEventRecord(a, nullptr);
    fn();
    cudaEventRecord(b, nullptr);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    best = std::min(best, double(ms));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return best;
}

// Device-to-device copy bandwidth in GB/s (read + write bytes), the reference for the fused kernels.
double copyBandwidthGBs(bool quick);

bool benchCudaGemm(bool quick);         // bench_cuda_gemm.cpp
bool benchCudaAttention(bool quick);    // bench_cuda_attention.cpp
bool benchCudaElementwise(bool quick);  // bench_cuda_elementwise.cpp (defines copyBandwidthGBs)
bool benchCudaFp8(bool quick);          // bench_cuda_fp8.cpp
// End-to-end training on the GPU (bench_cuda_train.cpp): `ko_bench --train-cuda TOKENS.bin ...`; returns the
// process exit code.
int benchCudaTrain(int argc, char** argv);

}  // namespace kobench
#endif
