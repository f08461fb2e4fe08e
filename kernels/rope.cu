// rope.cu — rotary position embedding in place on BF16, HF rotate_half convention (twin: ko::ropeApply,
// native/rope.cpp): element i of a head pairs with i + D/2,
//   x1' = x1*cos - x2*sin,   x2' = x2*cos + x1*sin,   angle = float(pos) * invFreq[i] (FP32)
// inverse (the backward pass) negates sin. x (b, t, h, d) is at x[(b*T + t)*rowStride + h*D + d], so q
// and k can be rotated inside the fused qkv buffer.
//
// cos/sin are computed as the twin does: in double from the FP32 angle, then rounded to float. Double
// sincos is expensive, so a block computes them once for its position t (into shared memory) and applies
// them to every head of up to kBatchPerBlock batch rows at that position:
//   grid = (T, ceil(B / kBatchPerBlock)), block = 128 threads, dynamic shared memory = D floats.
// A thread rotates 8 consecutive pairs per step with 16-byte loads of x1 and x2 when D/2 % 8 == 0,
// rowStride % 8 == 0 and x is 16-byte aligned; otherwise one pair per step.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "bf16_vec.cuh"
#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kBatchPerBlock = 4;
constexpr int kMaxHeadDim = 8192;  // D floats of shared memory (32 KiB)


// The rotation of one pair, written without FMA contraction, as the twin's expression reads.
__device__ __forceinline__ void rotate(float& a, float& b, float c, float s) {
  const float a2 = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
  const float b2 = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
  a = a2;
  b = b2;
}

template <bool Vec>
__global__ void __launch_bounds__(kThreads) ropeKernel(uint16_t* x, int B, int T, int H, int D, int rowStride,
                                                       const float* __restrict__ invFreq, int posOffset,
                                                       float sinSign) {
  extern __shared__ float table[];  // cos [D/2], then sin [D/2] (sign applied)
  const int half = D / 2;
  const int t = blockIdx.x;
  const float pos = float(posOffset + t);
  for (int i = threadIdx.x; i < half; i += kThreads) {
    const float angle = __fmul_rn(pos, invFreq[i]);
    double sn, cs;
    sincos(double(angle), &sn, &cs);
    table[i] = float(cs);
    table[half + i] = sinSign * float(sn);
  }
  __syncthreads();

  const int b0 = blockIdx.y * kBatchPerBlock;
  const int nb = min(kBatchPerBlock, B - b0);
  const int unitsPerHead = Vec ? half / 8 : half;
  const int unitsPerRow = H * unitsPerHead;
  for (int k = threadIdx.x; k < nb * unitsPerRow; k += kThreads) {
    const int b = b0 + k / unitsPerRow;
    const int rem = k % unitsPerRow;
    const int h = rem / unitsPerHead;
    const int i = (rem % unitsPerHead) * (Vec ? 8 : 1);
    uint16_t* x1 = x + (size_t(b) * T + t) * size_t(rowStride) + size_t(h) * D + i;
    uint16_t* x2 = x1 + half;
    if constexpr (Vec) {
      float a[8], bb[8];
      unpack8(*reinterpret_cast<const uint4*>(x1), a);
      unpack8(*reinterpret_cast<const uint4*>(x2), bb);
#pragma unroll
      for (int j = 0; j < 8; j++) rotate(a[j], bb[j], table[i + j], table[half + i + j]);
      *reinterpret_cast<uint4*>(x1) = pack8(a);
      *reinterpret_cast<uint4*>(x2) = pack8(bb);
    } else {
      float a = bf16ToFloat(*x1), bb = bf16ToFloat(*x2);
      rotate(a, bb, table[i], table[half + i]);
      *x1 = uint16_t(bf16Bits(a));
      *x2 = uint16_t(bf16Bits(bb));
    }
  }
}


}  // namespace

std::string ropeApply(bf16* x, int B, int T, int H, int D, int rowStride, const float* invFreq, int posOffset,
                      bool inverse, void* stream) {
  if (B < 0 || T < 0) return "ropeApply: B and T must be >= 0, got " + std::to_string(B) + ", " + std::to_string(T);
  if (H <= 0) return "ropeApply: H must be > 0, got " + std::to_string(H);
  if (D <= 0 || D % 2 != 0 || D > kMaxHeadDim)
    return "ropeApply: D must be even and in [2, " + std::to_string(kMaxHeadDim) + "], got " + std::to_string(D);
  if (int64_t(rowStride) < int64_t(H) * D)
    return "ropeApply: rowStride " + std::to_string(rowStride) + " < H*D = " + std::to_string(int64_t(H) * D);
  if (posOffset < 0 || int64_t(posOffset) + T > INT32_MAX)
    return "ropeApply: positions must be in [0, 2^31), got posOffset " + std::to_string(posOffset);
  if (B == 0 || T == 0) return "";
  if (!x || !invFreq) return "ropeApply: null pointer";
  const unsigned batchBlocks = unsigned((B + kBatchPerBlock - 1) / kBatchPerBlock);
  if (batchBlocks > 65535u) return "ropeApply: B too large (" + std::to_string(B) + ")";
  const int half = D / 2;
  const bool vec = half % 8 == 0 && rowStride % 8 == 0 && aligned16(x);
  const dim3 grid(unsigned(T), batchBlocks);
  const size_t smem = size_t(D) * sizeof(float);
  const float sinSign = inverse ? -1.0f : 1.0f;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    ropeKernel<true><<<grid, kThreads, smem, s>>>(x, B, T, H, D, rowStride, invFreq, posOffset, sinSign);
  else
    ropeKernel<false><<<grid, kThreads, smem, s>>>(x, B, T, H, D, rowStride, invFreq, posOffset, sinSign);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return std::string("ropeApply: launch failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  return "";
}

}  // namespace ko::cuda
