// adamw.cu — AdamW over device arrays (twin of ko::adamwUpdate, native/ops.h) and its self-test.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda_api.h"
#include "ops.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 8192;  // grid-stride beyond this (enough to fill any current GPU)

struct AdamWConsts {
  float lr, beta1, oneMinusBeta1, beta2, oneMinusBeta2, eps;
  float lrWd;       // lr * weightDecay
  float bc1, bc2;   // 1 - beta^t, computed on the host in double
  float gradScale;
};

// One element, written out as in the CPU twin: fp32 throughout, IEEE sqrt and division.
__device__ __forceinline__ void adamwElem(float& p, float grad, float& m, float& v, const AdamWConsts& c) {
  const float g = grad * c.gradScale;
  p = p - c.lrWd * p;
  m = c.beta1 * m + c.oneMinusBeta1 * g;
  v = c.beta2 * v + c.oneMinusBeta2 * g * g;
  const float mHat = m / c.bc1;
  const float vHat = v / c.bc2;
  p = p - c.lr * mHat / (sqrtf(vHat) + c.eps);
}

// Vec4 = true requires p, g, m, v to be 16-byte aligned: elements [0, 4*(n/4)) go as float4 and the
// last n % 4 are done one by one. Vec4 = false handles any alignment.
template <bool Vec4>
__global__ void __launch_bounds__(kThreads)
    adamwKernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v,
                size_t n, AdamWConsts c) {
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t done = 0;
  if constexpr (Vec4) {
    const size_t n4 = n / 4;
    float4* p4 = reinterpret_cast<float4*>(p);
    const float4* g4 = reinterpret_cast<const float4*>(g);
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    for (size_t i = tid; i < n4; i += stride) {
      float4 pp = p4[i], mm = m4[i], vv = v4[i];
      const float4 gg = g4[i];
      adamwElem(pp.x, gg.x, mm.x, vv.x, c);
      adamwElem(pp.y, gg.y, mm.y, vv.y, c);
      adamwElem(pp.z, gg.z, mm.z, vv.z, c);
      adamwElem(pp.w, gg.w, mm.w, vv.w, c);
      p4[i] = pp;
      m4[i] = mm;
      v4[i] = vv;
    }
    done = n4 * 4;
  }
  for (size_t i = done + tid; i < n; i += stride) {
    float pp = p[i], mm = m[i], vv = v[i];
    adamwElem(pp, g[i], mm, vv, c);
    p[i] = pp;
    m[i] = mm;
    v[i] = vv;
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

std::string describe(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

}  // namespace

void adamwUpdateDevice(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                       float eps, int64_t step, float weightDecay, float gradScale, void* stream) {
  if (n == 0) return;
  AdamWConsts c;
  c.lr = lr;
  c.beta1 = beta1;
  c.oneMinusBeta1 = 1.0f - beta1;
  c.beta2 = beta2;
  c.oneMinusBeta2 = 1.0f - beta2;
  c.eps = eps;
  c.lrWd = lr * weightDecay;
  c.bc1 = float(1.0 - std::pow(double(beta1), double(step)));
  c.bc2 = float(1.0 - std::pow(double(beta2), double(step)));
  c.gradScale = gradScale;

  const bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
  const size_t work = vec ? (n / 4 > 0 ? n / 4 : n) : n;
  size_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  if (blocks == 0) blocks = 1;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    adamwKernel<true><<<unsigned(blocks), kThreads, 0, s>>>(p, g, m, v, n, c);
  else
    adamwKernel<false><<<unsigned(blocks), kThreads, 0, s>>>(p, g, m, v, n, c);
}

// ---- self-test ------------------------------------------------------------------------------------

namespace {

struct DeviceBuffer {
  float* ptr = nullptr;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

struct StreamHolder {
  cudaStream_t s = nullptr;
  ~StreamHolder() {
    if (s) cudaStreamDestroy(s);
  }
};

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform in [lo, hi).
float uniform(uint64_t& state, float lo, float hi) {
  const double u = double(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
  return float(lo + (hi - lo) * u);
}
// Non-zero: magnitude in [0.05, 1) times `scale`, random sign.
float nonZero(uint64_t& state, float scale) {
  const float mag = uniform(state, 0.05f, 1.0f) * scale;
  return (splitmix64(state) & 1) ? mag : -mag;
}

double relErr(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / (std::sqrt(den) + 1e-300);
}

#define KO_CU(call)                                                  \
  do {                                                               \
    cudaError_t ko_e_ = (call);                                      \
    if (ko_e_ != cudaSuccess) {                                      \
      cudaGetLastError();                                            \
      return std::string(#call) + " failed: " + describe(ko_e_);    \
    }                                                                \
  } while (0)

constexpr int kSteps = 3;
constexpr size_t kGuard = 64;  // poisoned floats after the array (and `offset` before it)

struct Inputs {
  std::vector<float> p, m, v;
  std::vector<float> g[kSteps];
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, wd = 0.1f;
  float gradScale[kSteps] = {1.0f, 0.5f, 0.25f};
};

// Runs the GPU side with the arrays starting `offset` floats into their allocations (offset 1 makes
// every pointer misaligned for float4), checks the poisoned margins and compares with the CPU result.
std::string runLayout(const Inputs& in, const std::vector<float>& pCpu, const std::vector<float>& mCpu,
                      const std::vector<float>& vCpu, size_t n, size_t offset, double* pErr) {
  const size_t total = offset + n + kGuard;
  const size_t bytes = total * sizeof(float);
  DeviceBuffer dp, dg, dm, dv;
  StreamHolder stream;
  KO_CU(cudaStreamCreateWithFlags(&stream.s, cudaStreamNonBlocking));
  KO_CU(cudaMalloc(reinterpret_cast<void**>(&dp.ptr), bytes));
  KO_CU(cudaMalloc(reinterpret_cast<void**>(&dg.ptr), bytes));
  KO_CU(cudaMalloc(reinterpret_cast<void**>(&dm.ptr), bytes));
  KO_CU(cudaMalloc(reinterpret_cast<void**>(&dv.ptr), bytes));
  // Poison everything with 0xFF bytes (a NaN), then place the inputs.
  for (float* d : {dp.ptr, dg.ptr, dm.ptr, dv.ptr}) KO_CU(cudaMemsetAsync(d, 0xFF, bytes, stream.s));
  KO_CU(cudaMemcpyAsync(dp.ptr + offset, in.p.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream.s));
  KO_CU(cudaMemcpyAsync(dm.ptr + offset, in.m.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream.s));
  KO_CU(cudaMemcpyAsync(dv.ptr + offset, in.v.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream.s));
  for (int s = 0; s < kSteps; s++) {
    KO_CU(cudaMemcpyAsync(dg.ptr + offset, in.g[s].data(), n * sizeof(float), cudaMemcpyHostToDevice, stream.s));
    adamwUpdateDevice(dp.ptr + offset, dg.ptr + offset, dm.ptr + offset, dv.ptr + offset, n, in.lr, in.beta1,
                      in.beta2, in.eps, int64_t(s + 1), in.wd, in.gradScale[s], stream.s);
    std::string err = checkLastError("adamwUpdateDevice launch");
    if (!err.empty()) return err;
  }
  KO_CU(cudaStreamSynchronize(stream.s));

  const float qnan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> hp(total, qnan), hm(total, qnan), hv(total, qnan);
  KO_CU(cudaMemcpyAsync(hp.data(), dp.ptr, bytes, cudaMemcpyDeviceToHost, stream.s));
  KO_CU(cudaMemcpyAsync(hm.data(), dm.ptr, bytes, cudaMemcpyDeviceToHost, stream.s));
  KO_CU(cudaMemcpyAsync(hv.data(), dv.ptr, bytes, cudaMemcpyDeviceToHost, stream.s));
  KO_CU(cudaStreamSynchronize(stream.s));

  const std::string where = " (offset " + std::to_string(offset) + ")";
  const uint32_t poison = 0xFFFFFFFFu;
  struct Named {
    const char* name;
    const std::vector<float>* gpu;
    const std::vector<float>* cpu;
  };
  double errs[3];
  const Named arrays[3] = {{"p", &hp, &pCpu}, {"m", &hm, &mCpu}, {"v", &hv, &vCpu}};
  for (int a = 0; a < 3; a++) {
    const float* h = arrays[a].gpu->data();
    for (size_t i = 0; i < total; i++) {
      if (i >= offset && i < offset + n) continue;
      uint32_t bits;
      std::memcpy(&bits, &h[i], 4);
      if (bits != poison)
        return std::string("kernel wrote outside the array: ") + arrays[a].name + "[" +
               std::to_string(int64_t(i) - int64_t(offset)) + "]" + where;
    }
    for (size_t i = 0; i < n; i++)
      if (!std::isfinite(h[offset + i]))
        return std::string("non-finite GPU result ") + arrays[a].name + "[" + std::to_string(i) + "] = " +
               std::to_string(h[offset + i]) + where;
    errs[a] = relErr(h + offset, arrays[a].cpu->data(), n);
  }
  *pErr = errs[0];
  for (int a = 1; a < 3; a++)
    if (!(errs[a] <= 1e-5))
      return std::string("GPU and CPU disagree on ") + arrays[a].name + ": rel error " + std::to_string(errs[a]) + where;
  return "";
}

}  // namespace

std::string adamwSelfTest(size_t n, uint64_t seed, double* relErrOut) {
  if (relErrOut) *relErrOut = -1;
  if (n == 0 || n > (size_t(1) << 26)) return "adamwSelfTest: n must be in [1, 2^26], got " + std::to_string(n);
  int count = 0;
  KO_CU(cudaGetDeviceCount(&count));
  if (count <= 0) return "adamwSelfTest: no CUDA device";

  Inputs in;
  uint64_t st = seed;
  in.p.resize(n);
  in.m.resize(n);
  in.v.resize(n);
  for (size_t i = 0; i < n; i++) {
    in.p[i] = nonZero(st, 1.0f);
    in.m[i] = nonZero(st, 0.01f);
    in.v[i] = uniform(st, 0.05f, 1.0f) * 1e-4f;  // second moments are non-negative
  }
  for (int s = 0; s < kSteps; s++) {
    in.g[s].resize(n);
    for (size_t i = 0; i < n; i++) in.g[s][i] = nonZero(st, 0.1f);
  }

  // CPU reference: the twin in native/.
  std::vector<float> pCpu = in.p, mCpu = in.m, vCpu = in.v;
  for (int s = 0; s < kSteps; s++) {
    ko::AdamWParams hp{in.lr, in.beta1, in.beta2, in.eps, int64_t(s + 1)};
    ko::adamwUpdate(pCpu.data(), in.g[s].data(), mCpu.data(), vCpu.data(), n, hp, in.wd, in.gradScale[s]);
  }

  double worst = 0;
  for (size_t offset : {size_t(0), size_t(1)}) {
    double e = -1;
    std::string err = runLayout(in, pCpu, mCpu, vCpu, n, offset, &e);
    if (!err.empty()) return err;
    if (!(e <= worst)) worst = e;  // also propagates NaN
  }
  if (relErrOut) *relErrOut = worst;
  return "";
}

}  // namespace ko::cuda
