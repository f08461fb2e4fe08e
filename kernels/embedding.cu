// embedding.cu — token embedding lookup (BF16 table -> BF16 rows) and its deterministic scatter-add
// backward into the FP32 table gradient (twins: ko::embeddingForward / ko::embeddingBackward).
//
// Backward without atomics: the caller groups the rows by token on the host (embeddingSegments in
// embedding_segments.h, a stable counting sort), so each token's rows form one segment. One block per
// (segment, column chunk); each thread owns 8 (or 1) columns and walks the segment's rows in increasing
// row order, starting from the current dtable value: dtable[tok, c] = ((dtable + d[r0]) + d[r1]) + ...
// That is the CPU twin's order of additions exactly (it does dst[c] += src[c] row after row), so the
// result is bit-identical to it and independent of the launch configuration.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "bf16_vec.cuh"
#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 128;
constexpr size_t kMaxBlocks = 16384;

__device__ __forceinline__ float lowBf16(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float highBf16(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }


std::string launchError(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  return std::string(kernel) + ": launch failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

// out[row, :] = table[ids[row], :]. Work is flattened over (row, unit) with a grid-stride loop, a unit
// being 8 BF16 values (one 16-byte load; Vec requires dim % 8 == 0 and 16-byte aligned out and table)
// or a single value.
template <bool Vec>
__global__ void __launch_bounds__(kThreads) embeddingForwardKernel(uint16_t* __restrict__ out,
                                                                   const uint32_t* __restrict__ ids,
                                                                   const uint16_t* __restrict__ table, int n, int dim) {
  const size_t unitsPerRow = Vec ? size_t(dim / 8) : size_t(dim);
  const size_t total = size_t(n) * unitsPerRow;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t u = size_t(blockIdx.x) * blockDim.x + threadIdx.x; u < total; u += stride) {
    const size_t row = u / unitsPerRow, col = u % unitsPerRow;
    const size_t id = ids[row];
    if constexpr (Vec) {
      reinterpret_cast<uint4*>(out + row * dim)[col] = reinterpret_cast<const uint4*>(table + id * dim)[col];
    } else {
      out[row * dim + col] = table[id * dim + col];
    }
  }
}

// grid = (nSeg, column chunks of kThreads units). Vec: a unit is 8 columns (dim % 8 == 0, dout and
// dtable 16-byte aligned); otherwise 1 column.
template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    embeddingBackwardKernel(float* __restrict__ dtable, const uint16_t* __restrict__ dout,
                            const int32_t* __restrict__ order, const int32_t* __restrict__ segStart,
                            const int32_t* __restrict__ segToken, int dim) {
  const int seg = blockIdx.x;
  const int unit = blockIdx.y * kThreads + threadIdx.x;
  const int units = Vec ? dim / 8 : dim;
  if (unit >= units) return;
  const int begin = segStart[seg], end = segStart[seg + 1];
  const size_t tok = size_t(segToken[seg]);
  if constexpr (Vec) {
    float4* dst = reinterpret_cast<float4*>(dtable + tok * dim) + 2 * unit;
    float4 lo = dst[0], hi = dst[1];
#pragma unroll 4
    for (int j = begin; j < end; j++) {
      const size_t r = size_t(order[j]);
      const uint4 v = reinterpret_cast<const uint4*>(dout + r * dim)[unit];
      lo.x += lowBf16(v.x);
      lo.y += highBf16(v.x);
      lo.z += lowBf16(v.y);
      lo.w += highBf16(v.y);
      hi.x += lowBf16(v.z);
      hi.y += highBf16(v.z);
      hi.z += lowBf16(v.w);
      hi.w += highBf16(v.w);
    }
    dst[0] = lo;
    dst[1] = hi;
  } else {
    float* dst = dtable + tok * dim + unit;
    float acc = *dst;
#pragma unroll 4
    for (int j = begin; j < end; j++) acc += __uint_as_float(uint32_t(dout[size_t(order[j]) * dim + unit]) << 16);
    *dst = acc;
  }
}

}  // namespace

std::string embeddingForward(bf16* out, const uint32_t* ids, const bf16* table, int n, int dim, void* stream) {
  if (n < 0) return "embeddingForward: n must be >= 0, got " + std::to_string(n);
  if (dim <= 0) return "embeddingForward: dim must be > 0, got " + std::to_string(dim);
  if (n == 0) return "";
  if (!out || !ids || !table) return "embeddingForward: null pointer";
  const bool vec = dim % 8 == 0 && aligned16(out) && aligned16(table);
  const size_t total = size_t(n) * (vec ? dim / 8 : dim);
  size_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    embeddingForwardKernel<true><<<unsigned(blocks), kThreads, 0, s>>>(out, ids, table, n, dim);
  else
    embeddingForwardKernel<false><<<unsigned(blocks), kThreads, 0, s>>>(out, ids, table, n, dim);
  return launchError("embeddingForward");
}

std::string embeddingBackward(float* dtable, const bf16* dout, const int32_t* order, const int32_t* segStart,
                              const int32_t* segToken, int nSeg, int dim, void* stream) {
  if (nSeg < 0) return "embeddingBackward: nSeg must be >= 0, got " + std::to_string(nSeg);
  if (dim <= 0) return "embeddingBackward: dim must be > 0, got " + std::to_string(dim);
  if (nSeg == 0) return "";
  if (!dtable || !dout || !order || !segStart || !segToken) return "embeddingBackward: null pointer";
  const bool vec = dim % 8 == 0 && aligned16(dtable) && aligned16(dout);
  const int units = vec ? dim / 8 : dim;
  const dim3 grid(unsigned(nSeg), unsigned((units + kThreads - 1) / kThreads));
  if (grid.y > 65535u) return "embeddingBackward: dim too large (" + std::to_string(dim) + ")";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    embeddingBackwardKernel<true><<<grid, kThreads, 0, s>>>(dtable, dout, order, segStart, segToken, dim);
  else
    embeddingBackwardKernel<false><<<grid, kThreads, 0, s>>>(dtable, dout, order, segStart, segToken, dim);
  return launchError("embeddingBackward");
}

}  // namespace ko::cuda
