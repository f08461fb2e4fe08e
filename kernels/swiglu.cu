// swiglu.cu — SwiGLU on BF16 (twins: ko::swigluForward / ko::swigluBackward, native/swiglu.cpp):
//   h = silu(g) * u = g / (1 + e^-g) * u,   gateUp [rows, 2F] holds gate in [0, F) and up in [F, 2F)
//   d gate = dh * u * sig * (1 + g * (1 - sig)),   d up = dh * (g * sig),   sig = 1 / (1 + e^-g)
// The formulas are written out in the twin's order without FMA contraction; e^-g is CUDA's expf (IEEE,
// no fast math; the twin uses a Cephes-style polynomial, both within ~1 ulp) of -g clamped to the twin's
// range [-86.5, 88.72283], NaN passing through. Inputs are decoded from BF16 to FP32 and every output is
// rounded once to BF16.
// Flat grid-stride over (row, unit) with 256 threads; a unit is 8 consecutive columns (16-byte loads and
// stores; F % 8 == 0 and 16-byte aligned pointers) or 1 column.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "bf16_vec.cuh"
#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 16384;
constexpr float kExpLo = -86.5f, kExpHi = 88.72283f;  // vmath::expClamp's range (native/vec_math.h)


// e^-g with the twin's clamp (the comparisons keep NaN, unlike fminf/fmaxf).
__device__ __forceinline__ float expNeg(float g) {
  float a = -g;
  a = a < kExpLo ? kExpLo : a;
  a = a > kExpHi ? kExpHi : a;
  return expf(a);
}

__device__ __forceinline__ float swiglu(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expNeg(g))), u);
}

__device__ __forceinline__ void swigluGrad(float g, float u, float dh, float& dg, float& du) {
  const float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expNeg(g)));
  const float curve = __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig)));
  dg = __fmul_rn(__fmul_rn(__fmul_rn(dh, u), sig), curve);
  du = __fmul_rn(dh, __fmul_rn(g, sig));
}

template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    swigluForwardKernel(uint16_t* __restrict__ h, const uint16_t* __restrict__ gateUp, int rows, int F) {
  const size_t unitsPerRow = Vec ? size_t(F / 8) : size_t(F);
  const size_t total = size_t(rows) * unitsPerRow;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t k = size_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += stride) {
    const size_t r = k / unitsPerRow;
    const size_t c = (k % unitsPerRow) * (Vec ? 8 : 1);
    const uint16_t* g = gateUp + r * 2 * size_t(F) + c;
    const uint16_t* u = g + F;
    uint16_t* out = h + r * size_t(F) + c;
    if constexpr (Vec) {
      float gf[8], uf[8];
      unpack8(*reinterpret_cast<const uint4*>(g), gf);
      unpack8(*reinterpret_cast<const uint4*>(u), uf);
#pragma unroll
      for (int j = 0; j < 8; j++) gf[j] = swiglu(gf[j], uf[j]);
      *reinterpret_cast<uint4*>(out) = pack8(gf);
    } else {
      *out = uint16_t(bf16Bits(swiglu(bf16ToFloat(*g), bf16ToFloat(*u))));
    }
  }
}

template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    swigluBackwardKernel(uint16_t* __restrict__ dGateUp, const uint16_t* __restrict__ dh,
                         const uint16_t* __restrict__ gateUp, int rows, int F) {
  const size_t unitsPerRow = Vec ? size_t(F / 8) : size_t(F);
  const size_t total = size_t(rows) * unitsPerRow;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t k = size_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += stride) {
    const size_t r = k / unitsPerRow;
    const size_t c = (k % unitsPerRow) * (Vec ? 8 : 1);
    const uint16_t* g = gateUp + r * 2 * size_t(F) + c;
    const uint16_t* u = g + F;
    const uint16_t* d = dh + r * size_t(F) + c;
    uint16_t* dg = dGateUp + r * 2 * size_t(F) + c;
    uint16_t* du = dg + F;
    if constexpr (Vec) {
      float gf[8], uf[8], df[8], dgf[8], duf[8];
      unpack8(*reinterpret_cast<const uint4*>(g), gf);
      unpack8(*reinterpret_cast<const uint4*>(u), uf);
      unpack8(*reinterpret_cast<const uint4*>(d), df);
#pragma unroll
      for (int j = 0; j < 8; j++) swigluGrad(gf[j], uf[j], df[j], dgf[j], duf[j]);
      *reinterpret_cast<uint4*>(dg) = pack8(dgf);
      *reinterpret_cast<uint4*>(du) = pack8(duf);
    } else {
      float dgf, duf;
      swigluGrad(bf16ToFloat(*g), bf16ToFloat(*u), bf16ToFloat(*d), dgf, duf);
      *dg = uint16_t(bf16Bits(dgf));
      *du = uint16_t(bf16Bits(duf));
    }
  }
}


unsigned gridFor(size_t work) {
  size_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return unsigned(blocks > 0 ? blocks : 1);
}

std::string launchError(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  return std::string(kernel) + ": launch failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

std::string checkShape(const char* name, int rows, int F) {
  if (rows < 0) return std::string(name) + ": rows must be >= 0, got " + std::to_string(rows);
  if (F <= 0) return std::string(name) + ": F must be > 0, got " + std::to_string(F);
  if (int64_t(F) * 2 > INT32_MAX) return std::string(name) + ": F too large";
  return "";
}

}  // namespace

std::string swigluForward(bf16* h, const bf16* gateUp, int rows, int F, void* stream) {
  std::string err = checkShape("swigluForward", rows, F);
  if (!err.empty()) return err;
  if (rows == 0) return "";
  if (!h || !gateUp) return "swigluForward: null pointer";
  const bool vec = F % 8 == 0 && aligned16(h) && aligned16(gateUp);
  const size_t work = size_t(rows) * (vec ? F / 8 : F);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    swigluForwardKernel<true><<<gridFor(work), kThreads, 0, s>>>(h, gateUp, rows, F);
  else
    swigluForwardKernel<false><<<gridFor(work), kThreads, 0, s>>>(h, gateUp, rows, F);
  return launchError("swigluForward");
}

std::string swigluBackward(bf16* dGateUp, const bf16* dh, const bf16* gateUp, int rows, int F, void* stream) {
  std::string err = checkShape("swigluBackward", rows, F);
  if (!err.empty()) return err;
  if (rows == 0) return "";
  if (!dGateUp || !dh || !gateUp) return "swigluBackward: null pointer";
  const bool vec = F % 8 == 0 && aligned16(dGateUp) && aligned16(dh) && aligned16(gateUp);
  const size_t work = size_t(rows) * (vec ? F / 8 : F);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    swigluBackwardKernel<true><<<gridFor(work), kThreads, 0, s>>>(dGateUp, dh, gateUp, rows, F);
  else
    swigluBackwardKernel<false><<<gridFor(work), kThreads, 0, s>>>(dGateUp, dh, gateUp, rows, F);
  return launchError("swigluBackward");
}

}  // namespace ko::cuda
