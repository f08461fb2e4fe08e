// elementwise.cu — flat elementwise kernels over BF16/FP32 arrays: addBf16, castFloatToBf16,
// castBf16ToFloat, and the device-to-device copy used as the bench's bandwidth reference.
//
// All three kernels are memory-bound streams: 16-byte loads/stores (8 BF16 or 4 FP32 values) when every
// pointer is 16-byte aligned, otherwise a scalar loop (any alignment). Grid-stride loops, 256 threads.
// BF16 rounding is written out with integer operations exactly as ko::bf16FromFloat (native/lowp.h), so
// the GPU bytes equal the CPU twin's bytes, NaN payloads included (the hardware cvt.rn.bf16.f32 agrees on
// every finite value and infinity; only NaN payload bits could differ, which this avoids).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "bf16_vec.cuh"
#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 8192;  // grid-stride beyond this (several waves on any current GPU)

// Two BF16 values packed in a 32-bit word (element 0 in the low half, as in memory).
__device__ __forceinline__ float lowBf16(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float highBf16(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint32_t packBf16(float lo, float hi) { return bf16Bits(lo) | (bf16Bits(hi) << 16); }


unsigned gridFor(size_t work) {
  size_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  if (blocks == 0) blocks = 1;
  return unsigned(blocks);
}

std::string launchError(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  return std::string(kernel) + ": launch failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

// ---- y = bf16(a + b) ------------------------------------------------------------------------------
// No __restrict__: y may alias a or b (each element is read before it is written, by the same thread).
template <bool Vec>
__global__ void __launch_bounds__(kThreads) addBf16Kernel(uint16_t* y, const uint16_t* a, const uint16_t* b, size_t n) {
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t done = 0;
  if constexpr (Vec) {
    const size_t n8 = n / 8;
    for (size_t i = tid; i < n8; i += stride) {
      const uint4 va = reinterpret_cast<const uint4*>(a)[i];
      const uint4 vb = reinterpret_cast<const uint4*>(b)[i];
      uint4 out;
      out.x = packBf16(lowBf16(va.x) + lowBf16(vb.x), highBf16(va.x) + highBf16(vb.x));
      out.y = packBf16(lowBf16(va.y) + lowBf16(vb.y), highBf16(va.y) + highBf16(vb.y));
      out.z = packBf16(lowBf16(va.z) + lowBf16(vb.z), highBf16(va.z) + highBf16(vb.z));
      out.w = packBf16(lowBf16(va.w) + lowBf16(vb.w), highBf16(va.w) + highBf16(vb.w));
      reinterpret_cast<uint4*>(y)[i] = out;
    }
    done = n8 * 8;
  }
  for (size_t i = done + tid; i < n; i += stride) y[i] = uint16_t(bf16Bits(bf16ToFloat(a[i]) + bf16ToFloat(b[i])));
}

// ---- out = bf16(in) -------------------------------------------------------------------------------
template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    castFloatToBf16Kernel(uint16_t* __restrict__ out, const float* __restrict__ in, size_t n) {
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t done = 0;
  if constexpr (Vec) {
    const size_t n8 = n / 8;
    const float4* in4 = reinterpret_cast<const float4*>(in);
    for (size_t i = tid; i < n8; i += stride) {
      const float4 lo = in4[2 * i], hi = in4[2 * i + 1];
      uint4 o;
      o.x = packBf16(lo.x, lo.y);
      o.y = packBf16(lo.z, lo.w);
      o.z = packBf16(hi.x, hi.y);
      o.w = packBf16(hi.z, hi.w);
      reinterpret_cast<uint4*>(out)[i] = o;
    }
    done = n8 * 8;
  }
  for (size_t i = done + tid; i < n; i += stride) out[i] = uint16_t(bf16Bits(in[i]));
}

// ---- out = float(in) (exact) ----------------------------------------------------------------------
template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    castBf16ToFloatKernel(float* __restrict__ out, const uint16_t* __restrict__ in, size_t n) {
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t done = 0;
  if constexpr (Vec) {
    const size_t n8 = n / 8;
    float4* out4 = reinterpret_cast<float4*>(out);
    for (size_t i = tid; i < n8; i += stride) {
      const uint4 v = reinterpret_cast<const uint4*>(in)[i];
      out4[2 * i] = make_float4(lowBf16(v.x), highBf16(v.x), lowBf16(v.y), highBf16(v.y));
      out4[2 * i + 1] = make_float4(lowBf16(v.z), highBf16(v.z), lowBf16(v.w), highBf16(v.w));
    }
    done = n8 * 8;
  }
  for (size_t i = done + tid; i < n; i += stride) out[i] = bf16ToFloat(in[i]);
}

}  // namespace

std::string addBf16(bf16* y, const bf16* a, const bf16* b, size_t n, void* stream) {
  if (n == 0) return "";
  if (!y || !a || !b) return "addBf16: null pointer";
  const bool vec = aligned16(y) && aligned16(a) && aligned16(b);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    addBf16Kernel<true><<<gridFor(n / 8 > 0 ? n / 8 : n), kThreads, 0, s>>>(y, a, b, n);
  else
    addBf16Kernel<false><<<gridFor(n), kThreads, 0, s>>>(y, a, b, n);
  return launchError("addBf16");
}

std::string castFloatToBf16(bf16* out, const float* in, size_t n, void* stream) {
  if (n == 0) return "";
  if (!out || !in) return "castFloatToBf16: null pointer";
  const bool vec = aligned16(out) && aligned16(in);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    castFloatToBf16Kernel<true><<<gridFor(n / 8 > 0 ? n / 8 : n), kThreads, 0, s>>>(out, in, n);
  else
    castFloatToBf16Kernel<false><<<gridFor(n), kThreads, 0, s>>>(out, in, n);
  return launchError("castFloatToBf16");
}

std::string castBf16ToFloat(float* out, const bf16* in, size_t n, void* stream) {
  if (n == 0) return "";
  if (!out || !in) return "castBf16ToFloat: null pointer";
  const bool vec = aligned16(out) && aligned16(in);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    castBf16ToFloatKernel<true><<<gridFor(n / 8 > 0 ? n / 8 : n), kThreads, 0, s>>>(out, in, n);
  else
    castBf16ToFloatKernel<false><<<gridFor(n), kThreads, 0, s>>>(out, in, n);
  return launchError("castBf16ToFloat");
}

std::string copyBytes(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return "";
  if (!dst || !src) return "copyBytes: null pointer";
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("copyBytes: cudaMemcpyAsync failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  }
  return "";
}

}  // namespace ko::cuda
