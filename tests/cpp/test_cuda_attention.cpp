// test_cuda_attention.cpp — group `cuda`: the flash-attention kernels (attention_fwd.cu, attention_bwd.cu)
// against their CPU twins ko::attentionForward / ko::attentionBackward (FP32, native/attention.cpp) run on
// the same BF16-decoded inputs. q, k and v sit inside one fused qkv buffer (row width (Hq + 2 Hkv) D) as
// in the model, and dq, dk, dv are written into one poisoned dqkv buffer of the same layout.
// The host-validation test needs no GPU (the launchers check their arguments before any CUDA call).
#include "check.h"

#ifdef KO_CUDA
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels.h"
#include "ops.h"

namespace {

using ko::cuda::bf16;

struct AttnCase {
  int B, T, Hq, Hkv, D;
  int extraCols = 0;  // fused row stride = width + extraCols (odd values force the scalar load path)
  int offset = 0;     // elements every buffer is shifted by (misaligns the base pointers)
};

std::string describe(const AttnCase& c) {
  char s[160];
  std::snprintf(s, sizeof s, "B=%d T=%d Hq=%d Hkv=%d D=%d extraCols=%d offset=%d", c.B, c.T, c.Hq, c.Hkv, c.D,
                c.extraCols, c.offset);
  return s;
}

// ||got - ref|| / max(||ref||, floorNorm): a relative error that stays meaningful where the exact
// gradient is ~0 (T = 1: one key, so P = 1 and dS = P (dP - delta) = 0 for every query).
double relErrorFloor(const std::vector<float>& got, const std::vector<float>& ref, double floorNorm) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), floorNorm);
}

double norm(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += double(v) * double(v);
  return std::sqrt(s);
}

// The log-sum-exp of query (b, h, i)'s scaled scores, in double.
double lseReference(const std::vector<float>& qkv, int stride, int b, int h, int i, const AttnCase& c) {
  const int g = h / (c.Hq / c.Hkv);
  const double scale = 1.0 / std::sqrt(double(c.D));
  std::vector<double> s(size_t(i) + 1);
  double m = -INFINITY;
  for (int j = 0; j <= i; j++) {
    const float* qr = &qkv[(size_t(b) * c.T + i) * stride + size_t(h) * c.D];
    const float* kr = &qkv[(size_t(b) * c.T + j) * stride + size_t(c.Hq + g) * c.D];
    double acc = 0;
    for (int d = 0; d < c.D; d++) acc += double(qr[d]) * double(kr[d]);
    s[j] = acc * scale;
    m = std::max(m, s[j]);
  }
  double sum = 0;
  for (int j = 0; j <= i; j++) sum += std::exp(s[j] - m);
  return m + std::log(sum);
}

// Tolerances. BF16 keeps 8 significant bits: rounding the output alone costs ~1e-3 rms relative error,
// and P (forward) and P, dS (backward) are rounded to BF16 before the tensor-core products as in
// FlashAttention. A CPU emulation of these kernels (exact PTX fragment semantics) measured 1.7e-3 to
// 3e-3 on these cases; 1e-2 leaves a 3x margin. lse never passes through BF16 (FP32 scores from exact
// BF16 products, FP32 exp2/log): ~1e-7 expected, 1e-5 allowed.
constexpr double kTol = 1e-2;
constexpr double kLseTol = 1e-5;

void runCase(const AttnCase& c, uint64_t seed) {
  const std::string tag = describe(c);
  const int width = (c.Hq + 2 * c.Hkv) * c.D;
  const int stride = width + c.extraCols;
  const size_t rows = size_t(c.B) * c.T;
  const size_t n = rows * stride;
  const size_t outN = rows * c.Hq * c.D;
  const size_t lseN = size_t(c.B) * c.Hq * c.T;
  const int qCol = 0, kCol = c.Hq * c.D, vCol = (c.Hq + c.Hkv) * c.D;

  // Inputs ~U(-2, 2): scores of a few units, so the softmax is far from uniform. The fused buffer's
  // padding columns and the offset prefix hold poison (0xFFFF, a NaN) that must never be read as data.
  const std::vector<bf16> qkvBits = kocuda::toBf16(kocuda::randomFloats(n, seed, 2.f));
  std::vector<float> qkv = kocuda::fromBf16(qkvBits);
  std::vector<bf16> qkvHost(n + c.offset, 0xFFFF);
  for (size_t r = 0; r < rows; r++)
    for (int col = 0; col < width; col++) qkvHost[c.offset + r * stride + col] = qkvBits[r * stride + col];
  const std::vector<bf16> doutBits = kocuda::toBf16(kocuda::randomFloats(outN, seed + 1, 1.f));
  const std::vector<float> dout = kocuda::fromBf16(doutBits);
  std::vector<bf16> doutHost(outN + c.offset, 0xFFFF);
  std::memcpy(doutHost.data() + c.offset, doutBits.data(), outN * sizeof(bf16));

  kocuda::DeviceBuffer<bf16> dQkv(qkvHost);
  kocuda::DeviceBuffer<bf16> dOut(outN + c.offset);
  kocuda::DeviceBuffer<float> dLse(lseN);
  kocuda::DeviceBuffer<bf16> dDout(doutHost);
  kocuda::DeviceBuffer<bf16> dDqkv(n + c.offset);
  kocuda::DeviceBuffer<bf16> dDqkv2(n + c.offset);
  kocuda::DeviceBuffer<float> dScratch(ko::cuda::attentionBackwardScratchFloats(c.B, c.T, c.Hq, c.D));

  const bf16* q = dQkv.ptr + c.offset + qCol;
  const bf16* k = dQkv.ptr + c.offset + kCol;
  const bf16* v = dQkv.ptr + c.offset + vCol;
  bf16* out = dOut.ptr + c.offset;

  // ---- forward ----
  std::string err = ko::cuda::attentionForward(out, dLse.ptr, q, k, v, c.B, c.T, c.Hq, c.Hkv, c.D, stride, stride,
                                               nullptr);
  KO_CHECK_MSG(err.empty(), tag + ": " + err);
  KO_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<bf16> outHost = dOut.download();
  const std::vector<float> lse = dLse.download();
  KO_CHECK_MSG(dOut.guardIntact() && dLse.guardIntact(), tag + ": forward wrote past the end");
  for (int i = 0; i < c.offset; i++) KO_CHECK_MSG(outHost[i] == 0xFFFF, tag + ": forward wrote before out");
  std::vector<float> outGpu(outN);
  for (size_t i = 0; i < outN; i++) outGpu[i] = ko::floatFromBf16(outHost[c.offset + i]);
  KO_CHECK_MSG(kocuda::allFinite(outGpu), tag + ": non-finite out");
  KO_CHECK_MSG(kocuda::allFinite(lse), tag + ": non-finite lse");

  std::vector<float> outRef(outN), probs(size_t(c.B) * c.Hq * c.T * c.T);
  ko::attentionForward(outRef.data(), probs.data(), qkv.data() + qCol, qkv.data() + kCol, qkv.data() + vCol, c.B,
                       c.T, c.Hq, c.Hkv, c.D, stride, stride);
  const double outErr = kotest::relError(outGpu.data(), outRef.data(), outN);

  double lseNum = 0, lseDen = 0;
  for (int b = 0; b < c.B; b++)
    for (int h = 0; h < c.Hq; h++)
      for (int i = 0; i < c.T; i++) {
        const double ref = lseReference(qkv, stride, b, h, i, c);
        const double d = double(lse[(size_t(b) * c.Hq + h) * c.T + i]) - ref;
        lseNum += d * d;
        lseDen += ref * ref;
      }
  const double lseErr = std::sqrt(lseNum) / std::max(std::sqrt(lseDen), 1e-30);

  // ---- backward (twice: the results must be bit-identical) ----
  auto backward = [&](kocuda::DeviceBuffer<bf16>& dst) {
    bf16* base = dst.ptr + c.offset;
    return ko::cuda::attentionBackward(base + qCol, base + kCol, base + vCol, dDout.ptr + c.offset, out, dLse.ptr,
                                       q, k, v, c.B, c.T, c.Hq, c.Hkv, c.D, stride, stride, dScratch.ptr, nullptr);
  };
  err = backward(dDqkv);
  KO_CHECK_MSG(err.empty(), tag + ": " + err);
  dScratch.poison();  // the second run must not depend on the first one's scratch
  err = backward(dDqkv2);
  KO_CHECK_MSG(err.empty(), tag + ": " + err);
  KO_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<bf16> g1 = dDqkv.download();
  const std::vector<bf16> g2 = dDqkv2.download();
  KO_CHECK_MSG(dDqkv.guardIntact() && dDqkv2.guardIntact() && dScratch.guardIntact(),
               tag + ": backward wrote past the end");
  KO_CHECK_MSG(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(bf16)) == 0,
               tag + ": backward is not deterministic");
  for (int i = 0; i < c.offset; i++) KO_CHECK_MSG(g1[i] == 0xFFFF, tag + ": backward wrote before dqkv");

  std::vector<float> gradRef(n, 0.f);
  ko::attentionBackward(gradRef.data() + qCol, gradRef.data() + kCol, gradRef.data() + vCol, dout.data(),
                        probs.data(), qkv.data() + qCol, qkv.data() + kCol, qkv.data() + vCol, c.B, c.T, c.Hq, c.Hkv,
                        c.D, stride, stride);
  // Split into dq, dk, dv; every element of the row width must be written (finite), the padding
  // columns must keep their poison.
  const int c0[4] = {qCol, kCol, vCol, width};
  std::vector<float> got[3], ref[3];
  for (size_t r = 0; r < rows; r++) {
    const bf16* row = g1.data() + c.offset + r * stride;
    for (int part = 0; part < 3; part++)
      for (int col = c0[part]; col < c0[part + 1]; col++) {
        got[part].push_back(ko::floatFromBf16(row[col]));
        ref[part].push_back(gradRef[r * stride + col]);
      }
    for (int col = width; col < stride; col++)
      KO_CHECK_MSG(row[col] == 0xFFFF, tag + ": backward wrote a padding column");
  }
  const char* names[3] = {"dq", "dk", "dv"};
  double gradErr[3];
  // dv = P^T dO never vanishes: its norm sets the floor for dq and dk (which are exactly 0 at T = 1).
  const double floorNorm = 1e-2 * norm(ref[2]);
  for (int part = 0; part < 3; part++) {
    KO_CHECK_MSG(kocuda::allFinite(got[part]), tag + ": non-finite " + names[part]);
    gradErr[part] = relErrorFloor(got[part], ref[part], floorNorm);
  }
  std::printf("  %s: out %.2e  lse %.2e  dq %.2e  dk %.2e  dv %.2e\n", tag.c_str(), outErr, lseErr, gradErr[0],
              gradErr[1], gradErr[2]);
  KO_CHECK_MSG(outErr <= kTol, tag + ": out rel error " + std::to_string(outErr));
  KO_CHECK_MSG(lseErr <= kLseTol, tag + ": lse rel error " + std::to_string(lseErr));
  for (int part = 0; part < 3; part++)
    KO_CHECK_MSG(gradErr[part] <= kTol, tag + ": " + names[part] + " rel error " + std::to_string(gradErr[part]));
}

}  // namespace

// D in {32, 64, 128} x (GQA 4/2, MHA 8/8) x T in {1, 37, 128, 200}: odd T exercise the causal mask on
// partial tiles and the zero padding of the last tile; 128 is exactly two 64-row tiles.
KO_TEST(cuda, cuda_attention_matches_cpu) {
  kocuda::deviceOrSkip();
  uint64_t seed = 100;
  for (int D : {32, 64, 128})
    for (int T : {1, 37, 128, 200})
      for (auto hh : {std::pair<int, int>{4, 2}, std::pair<int, int>{8, 8}})
        runCase(AttnCase{2, T, hh.first, hh.second, D}, seed++);
}

// Strides that are not multiples of 8 and misaligned base pointers take the element-by-element load
// and store paths; the padding columns between rows must stay untouched.
KO_TEST(cuda, cuda_attention_unaligned) {
  kocuda::deviceOrSkip();
  runCase(AttnCase{2, 37, 4, 2, 64, 3, 1}, 7);
  runCase(AttnCase{1, 200, 4, 1, 128, 5, 3}, 8);
  runCase(AttnCase{2, 100, 2, 2, 32, 8, 4}, 9);  // stride multiple of 8 but base pointers 8-byte aligned
}

// A longer sequence (several key blocks per query block, several query heads per KV head).
KO_TEST(cuda, cuda_attention_long) {
  kocuda::deviceOrSkip();
  runCase(AttnCase{1, 700, 8, 2, 128}, 11);
  runCase(AttnCase{1, 513, 4, 4, 64}, 12);
}

// Pure host-side argument validation: every launcher checks its arguments before touching the GPU, so
// this runs (and must pass) without one. nullptr is fine where the shape check comes first.
KO_TEST(cuda, cuda_attention_validation) {
  using ko::cuda::attentionBackward;
  using ko::cuda::attentionForward;
  KO_CHECK(ko::cuda::attentionSupportsHeadDim(32));
  KO_CHECK(ko::cuda::attentionSupportsHeadDim(64));
  KO_CHECK(ko::cuda::attentionSupportsHeadDim(128));
  KO_CHECK(!ko::cuda::attentionSupportsHeadDim(48));
  KO_CHECK(!ko::cuda::attentionSupportsHeadDim(256));
  KO_CHECK(ko::cuda::attentionBackwardScratchFloats(2, 37, 4, 64) >= size_t(2) * 37 * 4);
  KO_CHECK(ko::cuda::attentionBackwardScratchFloats(0, 37, 4, 64) == 0);

  auto fwd = [](int B, int T, int Hq, int Hkv, int D, int qStride, int kvStride) {
    return attentionForward(nullptr, nullptr, nullptr, nullptr, nullptr, B, T, Hq, Hkv, D, qStride, kvStride,
                            nullptr);
  };
  auto bwd = [](int B, int T, int Hq, int Hkv, int D, int qStride, int kvStride) {
    return attentionBackward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, B, T,
                             Hq, Hkv, D, qStride, kvStride, nullptr, nullptr);
  };
  auto expectError = [](const std::string& err, const char* who, const char* word) {
    KO_CHECK_MSG(!err.empty(), std::string("expected an error mentioning '") + word + "'");
    KO_CHECK_MSG(err.find(who) != std::string::npos, err);
    KO_CHECK_MSG(err.find(word) != std::string::npos, err);
  };
  const int w = (4 + 2 * 2) * 64;  // fused row width for Hq = 4, Hkv = 2, D = 64
  for (int pass = 0; pass < 2; pass++) {
    auto call = pass == 0 ? +fwd : +bwd;
    const char* who = pass == 0 ? "attentionForward" : "attentionBackward";
    expectError(call(2, 37, 4, 2, 48, w, w), who, "head dim");
    expectError(call(2, 37, 4, 3, 64, w, w), who, "multiple of Hkv");
    expectError(call(2, 37, 0, 2, 64, w, w), who, "head counts");
    expectError(call(0, 37, 4, 2, 64, w, w), who, "positive");
    expectError(call(2, 0, 4, 2, 64, w, w), who, "positive");
    expectError(call(2, -5, 4, 2, 64, w, w), who, "positive");
    expectError(call(2, 37, 4, 2, 64, 4 * 64 - 1, w), who, "qStride");
    expectError(call(2, 37, 4, 2, 64, w, 2 * 64 - 8), who, "kvStride");
    // Valid shapes: the null pointers are reported (still before any CUDA call).
    expectError(call(2, 37, 4, 2, 64, w, w), who, "null pointer");
  }
}

#endif  // KO_CUDA
