// bf16_vec.cuh — BF16 bit helpers shared by the elementwise kernels: rounding that matches
// ko::bf16FromFloat bit for bit (NaN payloads included, which __float2bfloat16_rn does not promise), and
// 8-value (16-byte) packing for vectorized loads and stores.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ko::cuda {

// Round-to-nearest-even FP32 -> BF16 bits, NaN kept quiet with its sign (as ko::bf16FromFloat).
__device__ __forceinline__ uint32_t bf16Bits(float x) {
  uint32_t u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x40u) & 0xffffu;
  u += 0x7fffu + ((u >> 16) & 1u);
  return u >> 16;
}
__device__ __forceinline__ float bf16ToFloat(uint32_t h) { return __uint_as_float((h & 0xffffu) << 16); }
__device__ __forceinline__ void unpack8(const uint4& v, float* f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ uint4 pack8(const float* f) {
  uint4 v;
  v.x = bf16Bits(f[0]) | (bf16Bits(f[1]) << 16);
  v.y = bf16Bits(f[2]) | (bf16Bits(f[3]) << 16);
  v.z = bf16Bits(f[4]) | (bf16Bits(f[5]) << 16);
  v.w = bf16Bits(f[6]) | (bf16Bits(f[7]) << 16);
  return v;
}
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace ko::cuda
