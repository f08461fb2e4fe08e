// test_cuda_gemm.cpp — group `cuda`: ko::cuda::Gemm (cuBLASLt, loaded at run time) against a CPU GEMM
// in double over the exactly decoded BF16 / FP8 inputs, and the host-side argument checks.
//   * cuda_gemm_validate_args and cuda_gemm_cublaslt_load need no GPU (they run everywhere).
//   * The others skip without a GPU, and skip (saying why) when cuBLASLt cannot be loaded.
// Inputs are fresh random values; padding between rows (ld > width) is filled with NaN encodings so that
// reading it would show; outputs are poisoned (NaN) first, and with beta = 0 C must not be read.
#ifdef KO_CUDA
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "cublaslt.h"
#include "cuda_test_util.h"
#include "kernels.h"
#include "lowp.h"
#include "rng.h"

namespace {

using ko::cuda::DType;
using ko::cuda::Gemm;
using ko::cuda::MatmulArgs;

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

size_t elemBytes(DType t) { return t == DType::F32 ? 4 : t == DType::BF16 ? 2 : 1; }

const char* name(DType t) {
  return t == DType::F32 ? "F32" : t == DType::BF16 ? "BF16" : t == DType::E4M3 ? "E4M3" : "E5M2";
}

// A stored row-major matrix [rows, cols] with row stride ld, encoded as `type`, and the exact decoded
// values (double) the reference uses. Padding columns [cols, ld) hold NaN encodings (0xFF bytes).
struct HostMatrix {
  std::vector<uint8_t> bytes;
  std::vector<double> values;  // rows * ld; padding entries NaN
};

HostMatrix randomMatrix(DType type, int rows, int cols, int ld, uint64_t seed, float amp) {
  HostMatrix m;
  const size_t eb = elemBytes(type);
  m.bytes.assign(size_t(rows) * ld * eb, 0xFF);
  m.values.assign(size_t(rows) * ld, NAN);
  ko::Rng rng(seed);
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < cols; c++) {
      float x;
      do x = float((rng.uniform() * 2 - 1) * amp);
      while (x == 0.f);
      const size_t i = size_t(r) * ld + c;
      uint8_t* dst = m.bytes.data() + i * eb;
      if (type == DType::F32) {
        std::memcpy(dst, &x, 4);
        m.values[i] = x;
      } else if (type == DType::BF16) {
        const uint16_t b = ko::bf16FromFloat(x);
        std::memcpy(dst, &b, 2);
        m.values[i] = ko::floatFromBf16(b);
      } else {
        const ko::Fp8Format f = type == DType::E4M3 ? ko::Fp8Format::E4M3 : ko::Fp8Format::E5M2;
        const uint8_t q = ko::fp8FromFloat(x, f);
        *dst = q;
        m.values[i] = ko::fp8ToFloat(q, f);
      }
    }
  }
  return m;
}

double decodeOutput(DType type, const uint8_t* p) {
  if (type == DType::F32) {
    float x;
    std::memcpy(&x, p, 4);
    return x;
  }
  uint16_t b;
  std::memcpy(&b, p, 2);
  return ko::floatFromBf16(b);
}

struct Case {
  const char* what = "";
  DType typeA = DType::BF16, typeB = DType::BF16, typeC = DType::F32;
  bool transA = false, transB = true;
  int M = 96, N = 80, K = 112;
  int padA = 8, padB = 24, padC = 16;  // ld = row width + pad
  float alpha = 1.f, beta = 0.f;
  float scaleA = 1.f, scaleB = 1.f;  // FP8 dequantization scales
  bool fastAccum = false;
  size_t offsetA = 0, offsetB = 0, offsetC = 0;  // byte offsets from the (256-aligned) allocations
  int calls = 1;                                 // matmul repeated (accumulates when beta != 0)
  double tol = 2e-5;
};

// Runs one case on the GPU and compares with the double-precision reference; returns the rel error.
double runCase(Gemm& gemm, const Case& c, uint64_t seed) {
  const bool fp8 = c.typeA == DType::E4M3 || c.typeA == DType::E5M2;
  const float amp = fp8 ? 2.f : 1.f;
  const int rowsA = c.transA ? c.K : c.M, colsA = c.transA ? c.M : c.K;
  const int rowsB = c.transB ? c.N : c.K, colsB = c.transB ? c.K : c.N;
  const int lda = colsA + c.padA, ldb = colsB + c.padB, ldc = c.N + c.padC;
  HostMatrix A = randomMatrix(c.typeA, rowsA, colsA, lda, seed, amp);
  HostMatrix B = randomMatrix(c.typeB, rowsB, colsB, ldb, seed + 1, amp);
  // Initial C: random (padding too, so untouched padding can be checked) when beta != 0, else poison.
  HostMatrix C0 = randomMatrix(c.typeC, c.M, ldc, ldc, seed + 2, 1.f);

  kocuda::DeviceBuffer<uint8_t> dA(A.bytes.size() + c.offsetA), dB(B.bytes.size() + c.offsetB),
      dC(C0.bytes.size() + c.offsetC);
  KO_CUDA_CHECK(cudaMemcpy(dA.ptr + c.offsetA, A.bytes.data(), A.bytes.size(), cudaMemcpyHostToDevice));
  KO_CUDA_CHECK(cudaMemcpy(dB.ptr + c.offsetB, B.bytes.data(), B.bytes.size(), cudaMemcpyHostToDevice));
  if (c.beta != 0.f)
    KO_CUDA_CHECK(cudaMemcpy(dC.ptr + c.offsetC, C0.bytes.data(), C0.bytes.size(), cudaMemcpyHostToDevice));
  kocuda::DeviceBuffer<float> scales(std::vector<float>{c.scaleA, c.scaleB});

  MatmulArgs a;
  a.C = dC.ptr + c.offsetC;
  a.A = dA.ptr + c.offsetA;
  a.B = dB.ptr + c.offsetB;
  a.typeA = c.typeA;
  a.typeB = c.typeB;
  a.typeC = c.typeC;
  a.transA = c.transA;
  a.transB = c.transB;
  a.M = c.M;
  a.N = c.N;
  a.K = c.K;
  a.lda = lda;
  a.ldb = ldb;
  a.ldc = ldc;
  a.alpha = c.alpha;
  a.beta = c.beta;
  a.scaleA = fp8 ? scales.ptr : nullptr;
  a.scaleB = fp8 ? scales.ptr + 1 : nullptr;
  a.fastAccum = c.fastAccum;
  for (int i = 0; i < c.calls; i++) {
    const std::string err = gemm.matmul(a);
    KO_CHECK_MSG(err.empty(), std::string(c.what) + ": " + err);
  }
  KO_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint8_t> out = dC.download();

  // Reference in double: C = C0 (beta-scaled `calls` times) + alpha sA sB opA(A) opB(B), repeated.
  const size_t eb = elemBytes(c.typeC);
  std::vector<double> ref(size_t(c.M) * c.N), got(size_t(c.M) * c.N);
  const double s = double(c.alpha) * (fp8 ? double(c.scaleA) * double(c.scaleB) : 1.0);
  for (int m = 0; m < c.M; m++) {
    for (int n = 0; n < c.N; n++) {
      double acc = 0;
      for (int k = 0; k < c.K; k++) {
        const double x = c.transA ? A.values[size_t(k) * lda + m] : A.values[size_t(m) * lda + k];
        const double y = c.transB ? B.values[size_t(n) * ldb + k] : B.values[size_t(k) * ldb + n];
        acc += x * y;
      }
      double v = c.beta != 0.f ? C0.values[size_t(m) * ldc + n] : 0.0;
      for (int i = 0; i < c.calls; i++) v = double(c.beta) * v + s * acc;
      ref[size_t(m) * c.N + n] = v;
      got[size_t(m) * c.N + n] = decodeOutput(c.typeC, out.data() + c.offsetC + (size_t(m) * ldc + n) * eb);
    }
  }
  // Nothing outside the M x N block was written: the padding columns and the bytes around it are as before.
  bool paddingIntact = true;
  for (int m = 0; m < c.M && paddingIntact; m++)
    for (int n = c.N; n < ldc; n++) {
      const size_t at = (size_t(m) * ldc + n) * eb;
      for (size_t b = 0; b < eb; b++) {
        const uint8_t before = c.beta != 0.f ? C0.bytes[at + b] : uint8_t(0xFF);
        if (out[c.offsetC + at + b] != before) paddingIntact = false;
      }
    }
  for (size_t i = 0; i < c.offsetC; i++) paddingIntact = paddingIntact && out[i] == 0xFF;
  KO_CHECK_MSG(paddingIntact, std::string(c.what) + ": wrote into the row padding of C");
  KO_CHECK_MSG(dC.guardIntact(), std::string(c.what) + ": wrote past the end of C");

  const double err = kotest::relError(got.data(), ref.data(), got.size());
  std::printf("  %-44s %s x %s -> %s  tA=%d tB=%d  M=%d N=%d K=%d  rel error %.3g (tol %.0e)\n", c.what,
              name(c.typeA), name(c.typeB), name(c.typeC), int(c.transA), int(c.transB), c.M, c.N, c.K, err, c.tol);
  KO_CHECK_MSG(err <= c.tol,
               std::string(c.what) + ": rel error " + std::to_string(err) + " > " + std::to_string(c.tol));
  return err;
}

// Skips without a GPU or without cuBLASLt; returns device 0's info.
ko::cuda::DeviceInfo gemmOrSkip() {
  ko::cuda::DeviceInfo info = kocuda::deviceOrSkip();
  const std::string err = ko::cuda::cublasLtLoad();
  if (!err.empty()) KO_SKIP("cuBLASLt could not be loaded: " + err);
  if (!info.bf16Supported) KO_SKIP("BF16 GEMMs need compute capability >= 8.0 (device " + info.name + ")");
  return info;
}

void initOrFail(Gemm& g) {
  const std::string err = g.init(nullptr);
  KO_CHECK_MSG(err.empty(), err);
}

// Fake, never dereferenced device addresses for the host-side checks (16-byte aligned).
void* fakePtr(uintptr_t a) { return reinterpret_cast<void*>(a); }

MatmulArgs validBf16() {
  MatmulArgs a;
  a.C = fakePtr(0x10000);
  a.A = fakePtr(0x20000);
  a.B = fakePtr(0x30000);
  a.M = 32;
  a.N = 48;
  a.K = 64;
  a.lda = 64;  // A [M, K]
  a.ldb = 64;  // B [N, K] (transB)
  a.ldc = 48;
  return a;
}

MatmulArgs validFp8() {
  MatmulArgs a = validBf16();
  a.typeA = a.typeB = DType::E4M3;
  a.scaleA = reinterpret_cast<const float*>(fakePtr(0x40000));
  a.scaleB = reinterpret_cast<const float*>(fakePtr(0x40004));
  return a;
}

void expectError(const MatmulArgs& a, const char* rule, const char* what) {
  const std::string err = ko::cuda::validateMatmulArgs(a);
  KO_CHECK_MSG(!err.empty(), std::string(what) + ": accepted");
  KO_CHECK_MSG(contains(err, rule), std::string(what) + ": error \"" + err + "\" does not mention \"" + rule + "\"");
}

}  // namespace

KO_TEST(cuda, cuda_gemm_validate_args) {
  using ko::cuda::validateMatmulArgs;
  KO_CHECK(validateMatmulArgs(validBf16()).empty());
  {
    MatmulArgs a = validBf16();
    a.typeC = DType::BF16;
    KO_CHECK(validateMatmulArgs(a).empty());
    a.transA = true;
    a.lda = 32;  // A stored [K, M]
    a.transB = false;
    a.ldb = 48;  // B stored [K, N]
    KO_CHECK_MSG(validateMatmulArgs(a).empty(), validateMatmulArgs(a));
  }
  MatmulArgs a = validBf16();
  a.C = nullptr;
  expectError(a, "C is null", "null C");
  a = validBf16();
  a.A = nullptr;
  expectError(a, "A is null", "null A");
  a = validBf16();
  a.B = nullptr;
  expectError(a, "B is null", "null B");
  a = validBf16();
  a.M = 0;
  expectError(a, "must be positive", "M = 0");
  a = validBf16();
  a.K = -3;
  expectError(a, "must be positive", "K < 0");
  a = validBf16();
  a.typeC = DType::E4M3;
  expectError(a, "C type must be F32 or BF16", "FP8 output");
  a = validBf16();
  a.typeA = DType::F32;
  expectError(a, "must both be BF16 or both FP8", "F32 input");
  a = validFp8();
  a.typeB = DType::BF16;
  expectError(a, "must both be BF16 or both FP8", "mixed FP8 x BF16");
  a = validBf16();
  a.lda = 63;
  expectError(a, "lda", "lda < K");
  a = validBf16();
  a.transA = true;
  a.lda = 31;
  expectError(a, "lda", "lda < M (transA)");
  a = validBf16();
  a.ldb = 63;
  expectError(a, "ldb", "ldb < K (transB)");
  a = validBf16();
  a.transB = false;
  a.ldb = 47;
  expectError(a, "ldb", "ldb < N");
  a = validBf16();
  a.ldc = 47;
  expectError(a, "ldc", "ldc < N");
  a = validBf16();
  a.A = fakePtr(0x20001);
  expectError(a, "aligned to their element size", "odd BF16 address");

  // FP8 rules of kernels.h.
  KO_CHECK(validateMatmulArgs(validFp8()).empty());
  a = validFp8();
  a.typeC = DType::F32;
  KO_CHECK(validateMatmulArgs(a).empty());
  a = validFp8();
  a.typeB = DType::E5M2;
  KO_CHECK(validateMatmulArgs(a).empty());
  a = validFp8();
  a.typeA = DType::E5M2;
  KO_CHECK(validateMatmulArgs(a).empty());
  a.typeB = DType::E5M2;
  expectError(a, "E5M2 x E5M2", "E5M2 x E5M2");
  a = validFp8();
  a.transA = true;
  a.lda = 32;
  expectError(a, "transA = false and transB = true", "FP8 transA");
  a = validFp8();
  a.transB = false;
  a.ldb = 48;
  expectError(a, "transA = false and transB = true", "FP8 !transB");
  a = validFp8();
  a.K = 40;
  a.lda = a.ldb = 48;
  expectError(a, "K % 16", "FP8 K % 16");
  a = validFp8();
  a.lda = 72;
  expectError(a, "lda % 16", "FP8 lda % 16");
  a = validFp8();
  a.ldb = 72;
  expectError(a, "ldb % 16", "FP8 ldb % 16");
  a = validFp8();
  a.A = fakePtr(0x20008);
  expectError(a, "16-byte aligned", "FP8 A misaligned");
  a = validFp8();
  a.B = fakePtr(0x30004);
  expectError(a, "16-byte aligned", "FP8 B misaligned");
  a = validFp8();
  a.C = fakePtr(0x10008);
  expectError(a, "16-byte aligned", "FP8 C misaligned");
  a = validFp8();
  a.scaleA = nullptr;
  expectError(a, "scaleA and scaleB", "FP8 without scaleA");
  a = validFp8();
  a.scaleB = nullptr;
  expectError(a, "scaleA and scaleB", "FP8 without scaleB");

  // Gemm::matmul checks the arguments before anything else, and refuses to run uninitialized.
  Gemm g;
  a = validBf16();
  a.M = 0;
  KO_CHECK(contains(g.matmul(a), "must be positive"));
  KO_CHECK(contains(g.matmul(validBf16()), "not initialized"));
}

KO_TEST(cuda, cuda_gemm_cublaslt_load) {
  const std::string err = ko::cuda::cublasLtLoad();
  if (!err.empty()) {
    // The message must say how to get the library.
    KO_CHECK_MSG(contains(err, "KO_CUBLASLT_PATH") && contains(err, "LD_LIBRARY_PATH"), err);
    KO_CHECK(ko::cuda::cublasLtDescription().empty());
    KO_CHECK(ko::cuda::cublasLtLoad() == err);  // loads once: the same answer again
    KO_SKIP("cuBLASLt could not be loaded: " + err);
  }
  const std::string desc = ko::cuda::cublasLtDescription();
  std::printf("  %s\n", desc.c_str());
  KO_CHECK_MSG(desc.rfind("cuBLASLt 1", 0) == 0, desc);  // "cuBLASLt 12.x.y" or "cuBLASLt 13.x.y"
  KO_CHECK(contains(desc, "libcublasLt"));
  KO_CHECK(ko::cuda::cublasLtLoad().empty());
}

KO_TEST(cuda, cuda_gemm_bf16_transposes) {
  gemmOrSkip();
  Gemm g;
  initOrFail(g);
  uint64_t seed = 100;
  for (DType out : {DType::F32, DType::BF16}) {
    for (int t = 0; t < 4; t++) {
      Case c;
      c.what = "bf16 transposes";
      c.typeC = out;
      c.transA = t & 1;
      c.transB = t & 2;
      c.tol = out == DType::F32 ? 2e-5 : 5e-3;
      runCase(g, c, seed += 10);
    }
  }
}

KO_TEST(cuda, cuda_gemm_bf16_model_shapes) {
  gemmOrSkip();
  Gemm g;
  initOrFail(g);
  // Qwen3-0.6B-like linears on 128 tokens: forward y = x W^T (gate_up half), its dgrad dx = dy W
  // (B not transposed), the down projection, and the wgrad dW += dy^T x (A transposed, FP32, beta = 1).
  uint64_t seed = 500;
  for (DType out : {DType::F32, DType::BF16}) {
    Case fwd;
    fwd.what = "bf16 forward (gate_up half)";
    fwd.M = 128, fwd.N = 1536, fwd.K = 1024, fwd.padA = fwd.padB = fwd.padC = 0;
    fwd.typeC = out;
    // F32 output: fp32 accumulation over K up to 3072 (tensor-core partial sums are truncated, not
    // rounded), so a little more room than at K = 112.
    fwd.tol = out == DType::F32 ? 5e-5 : 5e-3;
    runCase(g, fwd, seed += 10);
    Case down = fwd;
    down.what = "bf16 forward (down)";
    down.N = 1024, down.K = 3072;
    runCase(g, down, seed += 10);
    Case dgrad = fwd;
    dgrad.what = "bf16 dgrad (B not transposed)";
    dgrad.N = 1024, dgrad.K = 1536, dgrad.transB = false;
    runCase(g, dgrad, seed += 10);
  }
  Case wgrad;
  wgrad.what = "bf16 wgrad (A transposed, += into F32)";
  wgrad.M = 1024, wgrad.N = 512, wgrad.K = 128, wgrad.padA = wgrad.padB = wgrad.padC = 0;
  wgrad.transA = true, wgrad.transB = false;
  wgrad.typeC = DType::F32;
  wgrad.beta = 1.f;
  wgrad.tol = 5e-5;
  runCase(g, wgrad, seed += 10);
}

KO_TEST(cuda, cuda_gemm_bf16_beta_accumulate) {
  gemmOrSkip();
  Gemm g;
  initOrFail(g);
  uint64_t seed = 900;
  for (DType out : {DType::F32, DType::BF16}) {
    Case c;
    c.what = "bf16 beta=1 alpha=0.5, twice (cached plan)";
    c.typeC = out;
    c.alpha = 0.5f;
    c.beta = 1.f;
    c.calls = 2;
    // BF16 output is rounded after each call: 2 roundings.
    c.tol = out == DType::F32 ? 2e-5 : 5e-3;
    runCase(g, c, seed += 10);
    Case d = c;
    d.what = "bf16 beta=0.25, transA";
    d.beta = 0.25f;
    d.calls = 1;
    d.transA = true;
    runCase(g, d, seed += 10);
  }
}

KO_TEST(cuda, cuda_gemm_bf16_misaligned) {
  gemmOrSkip();
  Gemm g;
  initOrFail(g);
  // Same shape first aligned, then with pointers only 2-, 4- and 2-byte aligned: the plan cache must not
  // reuse an algorithm chosen for 256-byte-aligned buffers.
  Case c;
  c.what = "bf16 aligned";
  c.typeC = DType::BF16;
  c.tol = 5e-3;
  runCase(g, c, 1300);
  c.what = "bf16 misaligned pointers (+2, +4, +2 bytes)";
  c.offsetA = 2, c.offsetB = 4, c.offsetC = 2;
  runCase(g, c, 1310);
  Case f = c;
  f.what = "bf16 misaligned, F32 output (+4 bytes)";
  f.typeC = DType::F32;
  f.offsetC = 4;
  f.tol = 2e-5;
  runCase(g, f, 1320);
}

KO_TEST(cuda, cuda_gemm_fp8) {
  const ko::cuda::DeviceInfo info = gemmOrSkip();
  Gemm g;
  initOrFail(g);
  if (!info.fp8Supported) {
    // The wrapper must refuse FP8 with a clear message rather than fail inside cuBLASLt.
    kocuda::DeviceBuffer<uint8_t> buf(1 << 16);
    kocuda::DeviceBuffer<float> scales(2);
    MatmulArgs a = validFp8();
    a.A = buf.ptr;
    a.B = buf.ptr + 4096;
    a.C = buf.ptr + 8192;
    a.scaleA = scales.ptr;
    a.scaleB = scales.ptr + 1;
    KO_CHECK(contains(g.matmul(a), "compute capability"));
    KO_SKIP("FP8 GEMMs need compute capability >= 8.9 (device " + info.name + ")");
  }
  // K = 112 and ld = 128 (pad 16): FP8 needs K, lda, ldb % 16 == 0. Tolerances: the inputs are exact and
  // the accumulation is FP32 (promoted periodically on Hopper), so F32 output is close; BF16 output is
  // limited by its rounding; fast accumulation keeps partial sums in the tensor cores' narrower format.
  uint64_t seed = 2000;
  auto fp8Case = [&](const char* what, DType a, DType b, DType out) {
    Case c;
    c.what = what;
    c.typeA = a, c.typeB = b, c.typeC = out;
    c.padA = c.padB = 16;
    c.padC = 8;
    c.scaleA = 0.37f, c.scaleB = 2.5f;
    c.tol = out == DType::F32 ? 1e-3 : 5e-3;
    return c;
  };
  runCase(g, fp8Case("fp8 e4m3 x e4m3 -> bf16", DType::E4M3, DType::E4M3, DType::BF16), seed += 10);
  runCase(g, fp8Case("fp8 e4m3 x e4m3 -> f32", DType::E4M3, DType::E4M3, DType::F32), seed += 10);
  runCase(g, fp8Case("fp8 e4m3 x e5m2 -> bf16", DType::E4M3, DType::E5M2, DType::BF16), seed += 10);
  runCase(g, fp8Case("fp8 e5m2 x e4m3 -> f32 (dgrad form)", DType::E5M2, DType::E4M3, DType::F32), seed += 10);
  Case fast = fp8Case("fp8 e4m3 x e4m3 -> bf16, fast accumulation", DType::E4M3, DType::E4M3, DType::BF16);
  fast.fastAccum = true;
  fast.tol = 1e-2;
  runCase(g, fast, seed += 10);
  Case wgrad = fp8Case("fp8 e5m2 x e4m3 -> f32, alpha=0.5 beta=1 (wgrad +=)", DType::E5M2, DType::E4M3, DType::F32);
  wgrad.alpha = 0.5f, wgrad.beta = 1.f;
  wgrad.calls = 2;
  runCase(g, wgrad, seed += 10);
  Case model = fp8Case("fp8 model-like (o_proj on 128 tokens)", DType::E4M3, DType::E4M3, DType::BF16);
  model.M = 128, model.N = 1024, model.K = 2048;
  model.padA = model.padB = model.padC = 0;
  model.scaleA = 1.f / 64, model.scaleB = 1.f / 448;
  runCase(g, model, seed += 10);
  // Same shape as the model case (cached plan), new scale values (in a new buffer): the scales are read
  // through the pointers given on each call.
  model.what = "fp8 model-like, other scales (cached plan)";
  model.scaleA = 3.f, model.scaleB = 0.125f;
  runCase(g, model, seed += 10);
}

#endif  // KO_CUDA
