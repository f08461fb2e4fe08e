// reduce.cu — the squared global gradient norm, sum of g[i]^2 in double, deterministic.
//
// Two stages with a grid that depends only on n (never on the GPU), so every run and every device adds
// the same numbers in the same order:
//   stage 1: blocks = min(ceil(n / 4096), 1024); block b owns the contiguous range [b*chunk, (b+1)*chunk)
//            (chunk = ceil(n / blocks) rounded up to a multiple of 4); thread t sums its strided elements
//            in order into 4 double accumulators (float4 loads when g is 16-byte aligned; each square of a
//            float is exact in double), then a fixed shuffle + shared-memory tree -> scratch[b].
//   stage 2: one block sums scratch[0 .. blocks) the same way and writes (or adds to) *out.
// A block owns one range instead of grid-striding so that the partial sums do not depend on the grid.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kElemsPerBlock = 4096;  // below this many elements per block, fewer blocks
constexpr size_t kMaxBlocks = 1024;

size_t blocksFor(size_t n) {
  if (n == 0) return 0;
  size_t b = (n + kElemsPerBlock - 1) / kElemsPerBlock;
  return b < kMaxBlocks ? b : kMaxBlocks;
}
size_t chunkFor(size_t n, size_t blocks) {
  const size_t c = (n + blocks - 1) / blocks;
  return (c + 3) / 4 * 4;
}

// Sum of v over the block (blockDim.x == kThreads) in a fixed order; the result is valid in thread 0.
__device__ __forceinline__ double blockSum(double v) {
  __shared__ double warpSum[kThreads / 32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  if (threadIdx.x % 32 == 0) warpSum[threadIdx.x / 32] = v;
  __syncthreads();
  double total = 0;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int w = 0; w < kThreads / 32; w++) total += warpSum[w];
  }
  return total;
}

template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    sumSquaresPartialKernel(double* __restrict__ scratch, const float* __restrict__ g, size_t n, size_t chunk) {
  const size_t begin = size_t(blockIdx.x) * chunk;
  size_t end = begin + chunk < n ? begin + chunk : n;
  if (end < begin) end = begin;  // (cannot happen with blocksFor/chunkFor, kept as a guard)
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  size_t done = begin;
  if (Vec) {
    // begin is a multiple of 4 and g is 16-byte aligned, so g + begin is too.
    const float4* g4 = reinterpret_cast<const float4*>(g + begin);
    const size_t n4 = (end - begin) / 4;
#pragma unroll 4
    for (size_t i = threadIdx.x; i < n4; i += kThreads) {
      const float4 v = g4[i];
      a0 = fma(double(v.x), double(v.x), a0);
      a1 = fma(double(v.y), double(v.y), a1);
      a2 = fma(double(v.z), double(v.z), a2);
      a3 = fma(double(v.w), double(v.w), a3);
    }
    done = begin + n4 * 4;
  }
  for (size_t i = done + threadIdx.x; i < end; i += kThreads) {
    const double v = double(g[i]);
    a0 = fma(v, v, a0);
  }
  const double total = blockSum((a0 + a1) + (a2 + a3));
  if (threadIdx.x == 0) scratch[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreads)
    sumSquaresFinalKernel(double* __restrict__ out, const double* __restrict__ scratch, int count, bool accumulate) {
  double a = 0;
  for (int i = threadIdx.x; i < count; i += kThreads) a += scratch[i];
  const double total = blockSum(a);
  if (threadIdx.x == 0) *out = accumulate ? *out + total : total;
}

}  // namespace

size_t sumSquaresScratchDoubles(size_t n) {
  const size_t b = blocksFor(n);
  return b > 0 ? b : 1;
}

std::string sumSquares(double* out, const float* g, size_t n, double* scratch, bool accumulate, void* stream) {
  if (!out) return "sumSquares: null output";
  if (n > 0 && (!g || !scratch)) return "sumSquares: null pointer";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t blocks = blocksFor(n);
  if (blocks > 0) {
    const size_t chunk = chunkFor(n, blocks);
    if ((reinterpret_cast<uintptr_t>(g) & 15u) == 0)
      sumSquaresPartialKernel<true><<<unsigned(blocks), kThreads, 0, s>>>(scratch, g, n, chunk);
    else
      sumSquaresPartialKernel<false><<<unsigned(blocks), kThreads, 0, s>>>(scratch, g, n, chunk);
  }
  // n == 0 still writes *out = 0 (or leaves the accumulated value as it is).
  sumSquaresFinalKernel<<<1, kThreads, 0, s>>>(out, scratch, int(blocks), accumulate);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return std::string("sumSquares: launch failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  return "";
}

}  // namespace ko::cuda
