// bench_cuda_gemm.cpp — cuBLASLt GEMM throughput through ko::cuda::Gemm: BF16 (BF16 out) against FP8
// at a square 4096^3 and at the Qwen3-0.6B linears with M = 16384 tokens (4096 with --quick), each in its
// three training forms:
//   fwd    y [T, N]   = x [T, K] · W [N, K]^T         BF16 out   FP8: x, W in E4M3, fast accumulation
//   dgrad  dx [T, K]  = dy [T, N] · W [N, K]          BF16 out   FP8: dy E5M2 x W^T E4M3 ("TN" needs W^T)
//   wgrad  dW [N, K] += dy^T [N, T] · x [T, K]        F32 out    FP8: dy^T E5M2 x x^T E4M3, beta = 1
// The FP8 column is the same GEMM with FP8 operands (the transposed copies it needs are assumed made by the
// cast kernels, not timed here). Buffers are filled with a constant byte (finite in every format).
#ifdef KO_CUDA
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_cuda.h"
#include "cuda_api.h"
#include "kernels.h"

namespace kobench {

namespace {

using ko::cuda::DType;
using ko::cuda::MatmulArgs;

enum class Pass { Fwd, Dgrad, Wgrad };

struct Linear {
  const char* name;
  int out, in;       // W [out, in]
  bool forwardOnly;  // the square reference: one GEMM of 4096 x 4096 x 4096
};

// Device memory released at scope exit.
struct Buffer {
  void* ptr = nullptr;
  explicit Buffer(size_t bytes) {
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) {
      cudaGetLastError();
      ptr = nullptr;
      return;
    }
    cudaMemset(ptr, 0x3C, bytes);  // E4M3 1.5, E5M2 1.0, BF16 ~0.0115, F32 ~0.0115
  }
  ~Buffer() {
    if (ptr) cudaFree(ptr);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// The GEMM of one pass, for BF16 or FP8 operands. A, B, C are set by the caller.
MatmulArgs passArgs(Pass pass, int T, int out, int in, bool fp8) {
  MatmulArgs a;
  a.typeC = DType::BF16;
  switch (pass) {
    case Pass::Fwd:  // [T, in] x [out, in]^T
      a.M = T, a.N = out, a.K = in;
      a.transA = false, a.transB = true;
      a.typeA = a.typeB = fp8 ? DType::E4M3 : DType::BF16;
      a.fastAccum = fp8;
      break;
    case Pass::Dgrad:  // [T, out] x W; FP8 reads W^T [in, out] as a transposed B
      a.M = T, a.N = in, a.K = out;
      a.transA = false, a.transB = fp8;
      a.typeA = fp8 ? DType::E5M2 : DType::BF16;
      a.typeB = fp8 ? DType::E4M3 : DType::BF16;
      break;
    case Pass::Wgrad:  // dy^T x: BF16 reads dy [T, out] transposed; FP8 reads dy^T [out, T] and x^T [in, T]
      a.M = out, a.N = in, a.K = T;
      a.transA = !fp8, a.transB = fp8;
      a.typeA = fp8 ? DType::E5M2 : DType::BF16;
      a.typeB = fp8 ? DType::E4M3 : DType::BF16;
      a.typeC = DType::F32;
      a.beta = 1.f;
      break;
  }
  a.lda = a.transA ? a.M : a.K;
  a.ldb = a.transB ? a.K : a.N;
  a.ldc = a.N;
  return a;
}

size_t elemBytes(DType t) { return t == DType::F32 ? 4 : t == DType::BF16 ? 2 : 1; }

struct Timing {
  double ms = -1;
  std::string error;
};

// Times one GEMM (best of reps); the buffers are sized for the BF16 form and reused by the FP8 one.
Timing timeGemm(ko::cuda::Gemm& gemm, MatmulArgs a, void* A, void* B, void* C, const float* scales, int reps) {
  Timing t;
  a.A = A, a.B = B, a.C = C;
  a.scaleA = scales;
  a.scaleB = scales + 1;
  t.error = gemm.matmul(a);  // builds the plan outside the timed runs
  if (t.error.empty()) t.error = ko::cuda::checkLastError("gemm");
  if (!t.error.empty()) return t;
  std::string err;
  t.ms = cudaBestMs(
      [&] {
        const std::string e = gemm.matmul(a);
        if (!e.empty() && err.empty()) err = e;
      },
      1, reps);
  if (err.empty()) err = ko::cuda::checkLastError("gemm");
  if (!err.empty()) {
    t.ms = -1;
    t.error = err;
  }
  return t;
}

}  // namespace

bool benchCudaGemm(bool quick) {
  std::string why;
  const auto devices = ko::cuda::listDevices(&why);
  if (devices.empty()) {
    std::printf("cuda gemm: skipped: %s\n", why.c_str());
    return false;
  }
  const std::string loadError = ko::cuda::cublasLtLoad();
  if (!loadError.empty()) {
    std::printf("cuda gemm: skipped: %s\n", loadError.c_str());
    return false;
  }
  const bool fp8 = devices[0].fp8Supported;
  ko::cuda::Gemm gemm;
  const std::string initError = gemm.init(nullptr);
  if (!initError.empty()) {
    std::printf("cuda gemm: %s\n", initError.c_str());
    return false;
  }
  float* scales = nullptr;  // FP8 dequantization scales, 1.0
  if (cudaMalloc(&scales, 2 * sizeof(float)) != cudaSuccess) {
    std::printf("cuda gemm: cudaMalloc failed\n");
    return false;
  }
  const float ones[2] = {1.f, 1.f};
  cudaMemcpy(scales, ones, sizeof(ones), cudaMemcpyHostToDevice);

  const int T = quick ? 4096 : 16384;
  const int reps = quick ? 3 : 10;
  std::printf("cuda gemm: %s on %s; best of %d; FP8 %s\n", ko::cuda::cublasLtDescription().c_str(),
              devices[0].name.c_str(), reps, fp8 ? "E4M3/E5M2" : "not supported on this GPU");
  std::printf("%-22s %6s %7s %6s | %9s %9s | %9s %9s | %8s\n", "gemm", "M", "N", "K", "BF16 ms", "TFLOP/s",
              "FP8 ms", "TFLOP/s", "FP8/BF16");

  // Qwen3-0.6B: hidden 1024, 16 q heads x 128 + 2 x 8 kv heads x 128 (fused qkv 4096), intermediate 3072.
  const Linear linears[] = {{"square 4096", 4096, 4096, true}, {"qkv", 4096, 1024, false},
                            {"o_proj", 1024, 2048, false},     {"gate_up", 6144, 1024, false},
                            {"down", 1024, 3072, false},       {"lm_head", 151936, 1024, false}};
  const char* passNames[] = {"fwd", "dgrad", "wgrad"};
  bool ok = true;
  for (const Linear& L : linears) {
    const int tokens = L.forwardOnly ? 4096 : T;
    for (Pass pass : {Pass::Fwd, Pass::Dgrad, Pass::Wgrad}) {
      if (L.forwardOnly && pass != Pass::Fwd) continue;
      const MatmulArgs bf = passArgs(pass, tokens, L.out, L.in, false);
      const size_t bytesA = size_t(bf.M) * bf.K * 2, bytesB = size_t(bf.N) * bf.K * 2;
      const size_t bytesC = size_t(bf.M) * bf.N * elemBytes(bf.typeC);
      Buffer A(bytesA), B(bytesB), C(bytesC);
      const std::string label = std::string(L.name) + " " + passNames[int(pass)];
      if (!A.ptr || !B.ptr || !C.ptr) {
        std::printf("%-22s out of device memory (%.1f GB)\n", label.c_str(), double(bytesA + bytesB + bytesC) / 1e9);
        ok = false;
        continue;
      }
      const double flops = 2.0 * double(bf.M) * double(bf.N) * double(bf.K);
      const Timing tb = timeGemm(gemm, bf, A.ptr, B.ptr, C.ptr, scales, reps);
      Timing tf;
      if (fp8) tf = timeGemm(gemm, passArgs(pass, tokens, L.out, L.in, true), A.ptr, B.ptr, C.ptr, scales, reps);
      const double tfBf = tb.ms > 0 ? flops / (tb.ms * 1e-3) / 1e12 : 0;
      const double tfF8 = tf.ms > 0 ? flops / (tf.ms * 1e-3) / 1e12 : 0;
      char bfCols[64], f8Cols[64], ratio[32];
      if (tb.ms > 0) std::snprintf(bfCols, sizeof(bfCols), "%9.3f %9.1f", tb.ms, tfBf);
      else std::snprintf(bfCols, sizeof(bfCols), "%9s %9s", "error", "-");
      if (tf.ms > 0) std::snprintf(f8Cols, sizeof(f8Cols), "%9.3f %9.1f", tf.ms, tfF8);
      else std::snprintf(f8Cols, sizeof(f8Cols), "%9s %9s", fp8 ? "error" : "-", "-");
      if (tb.ms > 0 && tf.ms > 0) std::snprintf(ratio, sizeof(ratio), "%7.2fx", tfF8 / tfBf);
      else std::snprintf(ratio, sizeof(ratio), "%8s", "-");
      std::printf("%-22s %6d %7d %6d | %s | %s | %s\n", label.c_str(), bf.M, bf.N, bf.K, bfCols, f8Cols, ratio);
      if (!tb.error.empty()) {
        std::printf("    BF16: %s\n", tb.error.c_str());
        ok = false;
      }
      if (fp8 && !tf.error.empty()) {
        std::printf("    FP8: %s\n", tf.error.c_str());
        ok = false;
      }
    }
  }
  std::printf("  (fwd/dgrad BF16 out; wgrad F32 out with beta = 1; FP8 fwd uses fast accumulation)\n\n");
  cudaFree(scales);
  return ok;
}

}  // namespace kobench
#endif  // KO_CUDA
