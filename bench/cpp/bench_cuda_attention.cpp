// bench_cuda_attention.cpp — the flash-attention kernels (attention_fwd.cu, attention_bwd.cu): forward and
// backward TFLOP/s at a Qwen3-0.6B-like shape (T = 2048, Hq = 16, Hkv = 8, D = 128) and a tiny model's
// (T = 128, D = 64). Causal FLOPs: forward 4 * B * Hq * T^2 * D / 2 (QK^T and PV over the lower
// triangle), backward 2.5x that (the FlashAttention convention; the deterministic 3-kernel backward
// actually issues 3.5x, as S and dP are recomputed for dQ). The reference, measured in the same run, is
// a dense BF16 GEMM through cuBLASLt (4096^3): "vs gemm" = attention TFLOP/s / GEMM TFLOP/s.
#ifdef KO_CUDA
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_cuda.h"
#include "kernels.h"
#include "lowp.h"
#include "rng.h"

namespace kobench {

namespace {

// One device allocation, freed on scope exit.
struct AttnDevMem {
  void* p = nullptr;
  AttnDevMem() = default;
  AttnDevMem(const AttnDevMem&) = delete;
  AttnDevMem& operator=(const AttnDevMem&) = delete;
  ~AttnDevMem() {
    if (p) cudaFree(p);
  }
  bool alloc(size_t bytes) {
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      cudaGetLastError();
      p = nullptr;
      return false;
    }
    return true;
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Random BF16 values in [-amp, amp) (one upload of n elements).
bool uploadRandomBf16(void* dst, size_t n, uint64_t seed, float amp) {
  std::vector<uint16_t> host(n);
  ko::Rng r(seed);
  for (auto& x : host) x = ko::bf16FromFloat(float((r.uniform() * 2 - 1) * amp));
  return cudaMemcpy(dst, host.data(), n * 2, cudaMemcpyHostToDevice) == cudaSuccess;
}

// Dense BF16 GEMM TFLOP/s through cuBLASLt (0 when unavailable), the in-run reference.
double gemmReferenceTflops(bool quick, std::string* why) {
  const int n = 4096;
  if (std::string e = ko::cuda::cublasLtLoad(); !e.empty()) {
    *why = e;
    return 0;
  }
  ko::cuda::Gemm gemm;
  if (std::string e = gemm.init(nullptr); !e.empty()) {
    *why = e;
    return 0;
  }
  AttnDevMem a, b, c;
  const size_t bytes = size_t(n) * n * 2;
  if (!a.alloc(bytes) || !b.alloc(bytes) || !c.alloc(bytes) || !uploadRandomBf16(a.p, size_t(n) * n, 1, 1.f) ||
      !uploadRandomBf16(b.p, size_t(n) * n, 2, 1.f)) {
    *why = "out of device memory";
    return 0;
  }
  ko::cuda::MatmulArgs m;
  m.C = c.p;
  m.A = a.p;
  m.B = b.p;
  m.M = m.N = m.K = n;
  m.lda = m.ldb = m.ldc = n;
  m.transA = false;
  m.transB = true;
  std::string err = gemm.matmul(m);
  if (err.empty() && cudaDeviceSynchronize() != cudaSuccess) err = cudaGetErrorString(cudaGetLastError());
  if (!err.empty()) {
    *why = err;
    return 0;
  }
  const double ms = cudaBestMs([&] { gemm.matmul(m); }, 2, quick ? 3 : 10);
  return 2.0 * n * double(n) * n / (ms * 1e9);
}

struct AttnShape {
  const char* name;
  int B, T, Hq, Hkv, D;
};

}  // namespace

bool benchCudaAttention(bool quick) {
  std::printf("CUDA flash attention (BF16, causal, GQA)%s\n", quick ? " (--quick)" : "");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) {
    cudaGetLastError();
    std::printf("  skipped: no CUDA device\n\n");
    return false;
  }
  std::string why;
  const double gemmTf = gemmReferenceTflops(quick, &why);
  if (gemmTf > 0)
    std::printf("  reference: cuBLASLt BF16 GEMM 4096^3 = %.1f TFLOP/s\n", gemmTf);
  else
    std::printf("  reference GEMM unavailable (%s)\n", why.c_str());

  const AttnShape shapes[] = {
      {"qwen3-0.6b-like", quick ? 2 : 8, 2048, 16, 8, 128},
      {"tiny", quick ? 8 : 64, 128, 8, 4, 64},
  };
  std::printf("  %-16s %4s %5s %3s %3s %4s | %8s %8s %7s | %8s %8s %7s\n", "shape", "B", "T", "Hq", "Hkv", "D",
              "fwd ms", "TFLOP/s", "vs gemm", "bwd ms", "TFLOP/s", "vs gemm");
  const int warmup = 2, reps = quick ? 3 : 10;
  bool ok = true;
  for (const AttnShape& s : shapes) {
    const int width = (s.Hq + 2 * s.Hkv) * s.D;
    const size_t rows = size_t(s.B) * s.T;
    const size_t qkvN = rows * width, outN = rows * size_t(s.Hq) * s.D, lseN = size_t(s.B) * s.Hq * s.T;
    const size_t scratchN = ko::cuda::attentionBackwardScratchFloats(s.B, s.T, s.Hq, s.D);
    AttnDevMem qkv, out, lse, dout, dqkv, scratch;
    if (!qkv.alloc(qkvN * 2) || !out.alloc(outN * 2) || !lse.alloc(lseN * 4) || !dout.alloc(outN * 2) ||
        !dqkv.alloc(qkvN * 2) || !scratch.alloc(scratchN * 4) || !uploadRandomBf16(qkv.p, qkvN, 3, 2.f) ||
        !uploadRandomBf16(dout.p, outN, 4, 1.f)) {
      std::printf("  %-16s out of device memory\n", s.name);
      ok = false;
      continue;
    }
    const uint16_t* q = qkv.as<uint16_t>();
    const uint16_t* k = q + size_t(s.Hq) * s.D;
    const uint16_t* v = q + size_t(s.Hq + s.Hkv) * s.D;
    uint16_t* dq = dqkv.as<uint16_t>();
    uint16_t* dk = dq + size_t(s.Hq) * s.D;
    uint16_t* dv = dq + size_t(s.Hq + s.Hkv) * s.D;
    auto fwd = [&] {
      return ko::cuda::attentionForward(out.as<uint16_t>(), lse.as<float>(), q, k, v, s.B, s.T, s.Hq, s.Hkv, s.D,
                                        width, width, nullptr);
    };
    auto bwd = [&] {
      return ko::cuda::attentionBackward(dq, dk, dv, dout.as<uint16_t>(), out.as<uint16_t>(), lse.as<float>(), q, k,
                                         v, s.B, s.T, s.Hq, s.Hkv, s.D, width, width, scratch.as<float>(), nullptr);
    };
    // One checked run of each (the backward needs the forward's out and lse), then the timings.
    std::string err = fwd();
    if (err.empty()) err = bwd();
    if (err.empty() && cudaDeviceSynchronize() != cudaSuccess) err = cudaGetErrorString(cudaGetLastError());
    if (!err.empty()) {
      std::printf("  %-16s failed: %s\n", s.name, err.c_str());
      ok = false;
      continue;
    }
    const double fwdMs = cudaBestMs([&] { fwd(); }, warmup, reps);
    const double bwdMs = cudaBestMs([&] { bwd(); }, warmup, reps);
    const double fwdFlops = 4.0 * s.B * s.Hq * double(s.T) * s.T * s.D / 2;
    const double bwdFlops = 2.5 * fwdFlops;
    const double fwdTf = fwdFlops / (fwdMs * 1e9), bwdTf = bwdFlops / (bwdMs * 1e9);
    char fwdVs[16] = "-", bwdVs[16] = "-";
    if (gemmTf > 0) {
      std::snprintf(fwdVs, sizeof fwdVs, "%.2f", fwdTf / gemmTf);
      std::snprintf(bwdVs, sizeof bwdVs, "%.2f", bwdTf / gemmTf);
    }
    std::printf("  %-16s %4d %5d %3d %3d %4d | %8.3f %8.1f %7s | %8.3f %8.1f %7s\n", s.name, s.B, s.T, s.Hq, s.Hkv,
                s.D, fwdMs, fwdTf, fwdVs, bwdMs, bwdTf, bwdVs);
  }
  std::printf("  (causal FLOPs: fwd 2 * B*Hq*T^2*D, bwd 2.5x fwd; bwd time includes the delta kernel)\n\n");
  return ok;
}

}  // namespace kobench
#endif  // KO_CUDA
