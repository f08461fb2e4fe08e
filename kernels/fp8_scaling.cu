// fp8_scaling.cu — the delayed-scaling update of Transformer Engine's recipe for n FP8 tensors at once
// (twin: ko::Fp8ScalingState::update / ko::fp8ScaleFromAmax, native/fp8_recipe.h).
//
// One thread per tensor; a few hundred tensors at most, so this is a single small launch per optimizer
// step. The arithmetic is the twin's, operation by operation, in FP32 with IEEE division (no fast math,
// no fused operations are possible: two divisions and a max), so the scales are bit-identical:
//   history[pos*n + i] = amaxCur[i];  amax = useMax ? fmax over the history : amaxCur[i]
//   scale = (fp8Max / amax) / 2^margin   when amax is finite and > 0, else the previous scale
//   scaleInv = 1 / scale;  amaxCur[i] = 0
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    fp8ScalingUpdateKernel(float* __restrict__ scale, float* __restrict__ scaleInv, float* __restrict__ amaxCur,
                           float* __restrict__ history, const uint8_t* __restrict__ formats, int n, int historyLen,
                           int pos, float marginFactor, bool useMax) {
  const int i = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float cur = amaxCur[i];
  history[size_t(pos) * n + i] = cur;
  float amax = cur;
  if (useMax)
    for (int h = 0; h < historyLen; h++) amax = fmaxf(amax, history[size_t(h) * n + i]);
  // As fp8Spec: format 0 is E4M3, anything else E5M2.
  const float fp8Max = formats[i] == 0 ? 448.f : 57344.f;
  float s = scale[i];
  if (amax > 0.f && isfinite(amax)) s = (fp8Max / amax) / marginFactor;
  scale[i] = s;
  scaleInv[i] = 1.f / s;
  amaxCur[i] = 0.f;
}

}  // namespace

std::string fp8ScalingUpdate(float* scale, float* scaleInv, float* amaxCur, float* history, const uint8_t* formats,
                             int n, int historyLen, int pos, int margin, bool useMax, void* stream) {
  if (n < 0) return "fp8ScalingUpdate: bad tensor count " + std::to_string(n);
  if (historyLen < 1) return "fp8ScalingUpdate: historyLen must be >= 1, got " + std::to_string(historyLen);
  if (pos < 0 || pos >= historyLen)
    return "fp8ScalingUpdate: pos " + std::to_string(pos) + " outside [0, " + std::to_string(historyLen) + ")";
  if (n == 0) return "";
  if (!scale || !scaleInv || !amaxCur || !history || !formats) return "fp8ScalingUpdate: null pointer";
  // 2^margin exactly as the twin computes it (std::ldexp(1.0f, margin) on the host, the same float).
  const float marginFactor = std::ldexp(1.0f, margin);
  const unsigned blocks = unsigned((n + kThreads - 1) / kThreads);
  fp8ScalingUpdateKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      scale, scaleInv, amaxCur, history, formats, n, historyLen, pos, marginFactor, useMax);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return std::string("fp8ScalingUpdate: launch failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  return "";
}

}  // namespace ko::cuda
