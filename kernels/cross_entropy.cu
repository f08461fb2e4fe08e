// cross_entropy.cu — softmax cross-entropy over the vocabulary, forward and backward fused
// (twin: ko::crossEntropyForward + ko::crossEntropyBackward, native/cross_entropy.cpp).
//
// One block of 512 threads per row of FP32 logits (V up to a few hundred thousand):
//   pass 1: each thread walks its fixed subset of the row (chunks of 4 loads kThreads apart, float4 loads
//           when aligned) keeping a running max m and sum s of e^(x - m) (rescaled when m grows, at most
//           once per chunk);
//           the 512 (m, s) pairs are then merged by a fixed shuffle tree and a fixed tree over the warps.
//           Everything in FP32 and in a fixed order, so the result is deterministic. This "online" form
//           reads the row once for the max and the sum instead of twice.
//   pass 2: loss = (max - x_t) + log(sum); dlogits = bf16(e^(x - max) * (dlossScale / sum)), minus
//           dlossScale at the target (the twin's order of operations), rounded to nearest even.
// Rows with target < 0 get loss 0 and a zero gradient row without reading the logits.
// Targets must be < V: the caller validates them on the host (the model does when it builds a batch);
// a target >= V is not read (no out-of-bounds access): its loss is NaN and its gradient has no one-hot.
// expf / logf are the accurate CUDA functions (no fast math).
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <string>

#include "bf16_vec.cuh"
#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;  // loads in flight per thread in pass 1

// (m, s) <- the merge of two partial softmax sums: max and the sum rescaled to it.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  s = s * expf(m - M) + s2 * expf(m2 - M);
  m = M;
}

// Adds the values v[i] with ok[i] to the running (m, s): one max over the chunk, one rescale when the
// max grows, then the exponentials in index order.
template <int K>
__device__ __forceinline__ void accumulate(float& m, float& s, const float (&v)[K], const bool (&ok)[K]) {
  float cm = m;
#pragma unroll
  for (int i = 0; i < K; i++)
    if (ok[i]) cm = fmaxf(cm, v[i]);
  if (cm > m) {
    s *= expf(m - cm);  // m starts at -FLT_MAX: e^(-huge) = 0 times s = 0
    m = cm;
  }
#pragma unroll
  for (int i = 0; i < K; i++)
    if (ok[i]) s += expf(v[i] - m);
}

// Vec: V % 4 == 0, logits 16-byte aligned, dlogits 8-byte aligned -> float4 loads, 4 x BF16 stores.
template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    crossEntropyKernel(float* __restrict__ losses, uint16_t* __restrict__ dlogits, const float* __restrict__ logits,
                       const int32_t* __restrict__ targets, int V, float dlossScale) {
  __shared__ float warpM[kWarps], warpS[kWarps];
  __shared__ float rowMax, rowSum;
  const int row = blockIdx.x;
  const int t = targets[row];
  const float* x = logits + size_t(row) * size_t(V);
  uint16_t* dx = dlogits + size_t(row) * size_t(V);
  const int tid = threadIdx.x;

  if (t < 0) {  // ignored row (uniform over the block)
    if (tid == 0) losses[row] = 0.f;
    if (Vec) {
      for (int j = tid; j < V / 4; j += kThreads) reinterpret_cast<uint2*>(dx)[j] = make_uint2(0u, 0u);
    } else {
      for (int j = tid; j < V; j += kThreads) dx[j] = 0;
    }
    return;
  }

  // ---- pass 1: per-thread running max and sum ----
  float m = -FLT_MAX, s = 0.f;
  if (Vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const int n4 = V / 4;
    for (int base = tid; base < n4; base += kThreads * kUnroll) {
      float v[4 * kUnroll];
      bool ok[4 * kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; u++) {
        const int j = base + u * kThreads;
        const bool in = j < n4;
        const float4 w = in ? x4[j] : make_float4(0.f, 0.f, 0.f, 0.f);
        v[4 * u] = w.x;
        v[4 * u + 1] = w.y;
        v[4 * u + 2] = w.z;
        v[4 * u + 3] = w.w;
        ok[4 * u] = ok[4 * u + 1] = ok[4 * u + 2] = ok[4 * u + 3] = in;
      }
      accumulate(m, s, v, ok);
    }
  } else {
    for (int base = tid; base < V; base += kThreads * kUnroll) {
      float v[kUnroll];
      bool ok[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; u++) {
        const int j = base + u * kThreads;
        ok[u] = j < V;
        v[u] = ok[u] ? x[j] : 0.f;
      }
      accumulate(m, s, v, ok);
    }
  }

  // ---- merge: warps by a shuffle tree, then warp 0 over the warps (fixed order) ----
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, off);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, off);
    merge(m, s, m2, s2);
  }
  if (tid % 32 == 0) {
    warpM[tid / 32] = m;
    warpS[tid / 32] = s;
  }
  __syncthreads();
  if (tid < 32) {
    m = tid < kWarps ? warpM[tid] : -FLT_MAX;
    s = tid < kWarps ? warpS[tid] : 0.f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, off);
      const float s2 = __shfl_xor_sync(0xffffffffu, s, off);
      merge(m, s, m2, s2);
    }
    if (tid == 0) {
      rowMax = m;
      rowSum = s;
      const bool valid = t < V;
      losses[row] = valid ? (m - x[t]) + logf(s) : __int_as_float(0x7fc00000);
    }
  }
  __syncthreads();
  const float mx = rowMax;
  const float f = dlossScale / rowSum;

  // ---- pass 2: the gradient ----
  if (Vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    uint2* d4 = reinterpret_cast<uint2*>(dx);
    for (int j = tid; j < V / 4; j += kThreads) {
      const float4 v = x4[j];
      float g0 = expf(v.x - mx) * f, g1 = expf(v.y - mx) * f, g2 = expf(v.z - mx) * f, g3 = expf(v.w - mx) * f;
      if ((t >> 2) == j) {
        const int k = t & 3;
        if (k == 0) g0 -= dlossScale;
        if (k == 1) g1 -= dlossScale;
        if (k == 2) g2 -= dlossScale;
        if (k == 3) g3 -= dlossScale;
      }
      d4[j] = make_uint2(bf16Bits(g0) | (bf16Bits(g1) << 16), bf16Bits(g2) | (bf16Bits(g3) << 16));
    }
  } else {
    for (int j = tid; j < V; j += kThreads) {
      float g = expf(x[j] - mx) * f;
      if (j == t) g -= dlossScale;
      dx[j] = uint16_t(bf16Bits(g));
    }
  }
}

bool alignedTo(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

}  // namespace

std::string crossEntropyForwardBackward(float* losses, bf16* dlogits, const float* logits, const int32_t* targets,
                                        int n, int V, float dlossScale, void* stream) {
  if (n < 0 || V <= 0)
    return "crossEntropyForwardBackward: bad shape n=" + std::to_string(n) + " V=" + std::to_string(V);
  if (n == 0) return "";
  if (!losses || !dlogits || !logits || !targets) return "crossEntropyForwardBackward: null pointer";
  const bool vec = V % 4 == 0 && alignedTo(logits, 16) && alignedTo(dlogits, 8);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    crossEntropyKernel<true><<<unsigned(n), kThreads, 0, s>>>(losses, dlogits, logits, targets, V, dlossScale);
  else
    crossEntropyKernel<false><<<unsigned(n), kThreads, 0, s>>>(losses, dlogits, logits, targets, V, dlossScale);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return std::string("crossEntropyForwardBackward: launch failed: ") + cudaGetErrorName(e) + ": " +
           cudaGetErrorString(e);
  return "";
}

}  // namespace ko::cuda
