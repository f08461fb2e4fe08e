// test_cuda_fp8.cpp — group `cuda`: the FP8 casts (fp8_cast.cu), the delayed-scaling update
// (fp8_scaling.cu), the fused cross-entropy (cross_entropy.cu) and the gradient-norm reduction
// (reduce.cu) against their CPU twins in native/ (lowp.h, fp8_recipe.h, ops.h).
// FP8 bytes, transposes, amax and scales must be bit-identical to the twins; the cross-entropy and the
// sum of squares are compared by relative error. Output buffers start poisoned (0xFF), so an element the
// kernel forgot shows up as a NaN / 0xFF byte. Tests skip without a GPU, except the host-side argument
// checks, which never touch the device.
#ifdef KO_CUDA
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "cuda_test_util.h"
#include "fp8_recipe.h"
#include "kernels.h"
#include "lowp.h"
#include "ops.h"
#include "rng.h"

namespace {

using ko::Fp8Format;
using kocuda::DeviceBuffer;

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%X", v);
  return buf;
}
std::string shapeStr(int rows, int cols) { return std::to_string(rows) + "x" + std::to_string(cols); }
const char* fmtName(Fp8Format f) { return f == Fp8Format::E4M3 ? "E4M3" : "E5M2"; }

// Non-zero values sign * (1 + u) * 2^e, e uniform in [eLo, eHi]: spans the subnormal, normal and
// saturating ranges of the FP8 formats once multiplied by the scale.
std::vector<float> spanningFloats(size_t n, uint64_t seed, int eLo, int eHi) {
  ko::Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) {
    const int e = eLo + int(r.next() % uint64_t(eHi - eLo + 1));
    const float m = float(1.0 + r.uniform());
    x = std::ldexp((r.next() & 1) ? -m : m, e);
  }
  return v;
}

float hostAmax(const std::vector<float>& x) {
  float m = 0.f;
  for (float v : x) m = std::fmax(m, std::fabs(v));  // fmax drops NaN, as the kernels' fmaxf
  return m;
}

// The expected FP8 bytes of x * scale (row-major [rows, cols]) and their transpose.
void fp8Reference(const std::vector<float>& x, int rows, int cols, float scale, Fp8Format f, std::vector<uint8_t>& q,
                  std::vector<uint8_t>& qT) {
  q.assign(size_t(rows) * cols, 0);
  qT.assign(size_t(rows) * cols, 0);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) {
      const float prod = x[size_t(r) * cols + c] * scale;  // one FP32 multiply, as on the GPU
      const uint8_t b = ko::fp8FromFloat(prod, f);
      q[size_t(r) * cols + c] = b;
      qT[size_t(c) * rows + r] = b;
    }
}

// First index where two byte arrays differ, or -1.
long long firstDiff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, size_t offset = 0) {
  for (size_t i = 0; i < b.size(); i++)
    if (a[offset + i] != b[i]) return (long long)i;
  return -1;
}

// One castTransposeFp8 case: input values `x` (already BF16-representable when bf16Input), given
// layout offset (elements of misalignment of the input), checked for out+outT+amax, out only, outT only
// and amax only, with *amax preset below and above the true amax.
void checkCastTranspose(const std::vector<float>& x, int rows, int cols, bool bf16Input, float scale, Fp8Format f,
                        size_t inOffset) {
  const size_t n = size_t(rows) * cols;
  const std::string what = std::string(bf16Input ? "bf16 " : "fp32 ") + fmtName(f) + " " + shapeStr(rows, cols) +
                           " offset " + std::to_string(inOffset) + " scale " + std::to_string(scale);
  std::vector<uint8_t> q, qT;
  fp8Reference(x, rows, cols, scale, f, q, qT);
  const float trueAmax = hostAmax(x);

  // Input with `inOffset` leading pad elements (they hold a huge value that must not reach the amax).
  std::vector<uint16_t> hb(inOffset + n, ko::bf16FromFloat(1e30f));
  std::vector<float> hf(inOffset + n, 1e30f);
  for (size_t i = 0; i < n; i++) {
    hb[inOffset + i] = ko::bf16FromFloat(x[i]);
    hf[inOffset + i] = x[i];
  }
  DeviceBuffer<uint16_t> dinB(bf16Input ? hb.size() : 1);
  DeviceBuffer<float> dinF(bf16Input ? 1 : hf.size());
  if (bf16Input)
    dinB.upload(hb);
  else
    dinF.upload(hf);
  DeviceBuffer<float> dscale(std::vector<float>{scale});
  DeviceBuffer<uint8_t> out(n), outT(n);
  DeviceBuffer<float> amax(1);

  auto launch = [&](uint8_t* o, uint8_t* oT, float* a) {
    return bf16Input ? ko::cuda::castTransposeFp8(o, oT, a, dinB.ptr + inOffset, rows, cols, dscale.ptr, f, nullptr)
                     : ko::cuda::castTransposeFp8(o, oT, a, dinF.ptr + inOffset, rows, cols, dscale.ptr, f, nullptr);
  };

  for (int mode = 0; mode < 4; mode++) {  // 0: all three, 1: out only, 2: outT only, 3: amax only
    const bool wantOut = mode == 0 || mode == 1, wantT = mode == 0 || mode == 2, wantAmax = mode == 0 || mode == 3;
    for (float preset : {trueAmax * 0.5f, trueAmax * 2.0f}) {
      out.poison();
      outT.poison();
      amax.upload({preset});
      const std::string err = launch(wantOut ? out.ptr : nullptr, wantT ? outT.ptr : nullptr, wantAmax ? amax.ptr : nullptr);
      const std::string m = what + " mode " + std::to_string(mode);
      KO_CHECK_MSG(err.empty(), m + ": " + err);
      const std::vector<uint8_t> go = out.download(), gT = outT.download();
      const std::vector<float> ga = amax.download();
      if (wantOut) {
        const long long d = firstDiff(go, q);
        KO_CHECK_MSG(d < 0, m + ": out[" + std::to_string(d) + "] = " + hex(d < 0 ? 0 : go[d]) + " want " +
                                hex(d < 0 ? 0 : q[d]) + " (x = " + std::to_string(d < 0 ? 0.f : x[d]) + ")");
      } else {
        for (uint8_t b : go) KO_CHECK_MSG(b == 0xFF, m + ": out written although null");
      }
      if (wantT) {
        const long long d = firstDiff(gT, qT);
        KO_CHECK_MSG(d < 0, m + ": outT[" + std::to_string(d) + "] = " + hex(d < 0 ? 0 : gT[d]) + " want " +
                                hex(d < 0 ? 0 : qT[d]));
      } else {
        for (uint8_t b : gT) KO_CHECK_MSG(b == 0xFF, m + ": outT written although null");
      }
      const float wantA = wantAmax ? std::fmax(preset, trueAmax) : preset;
      KO_CHECK_MSG(ko::floatBits(ga[0]) == ko::floatBits(wantA),
                   m + ": amax " + std::to_string(ga[0]) + " want " + std::to_string(wantA));
      KO_CHECK_MSG(out.guardIntact() && outT.guardIntact() && amax.guardIntact(), m + ": wrote past the end");
      if (mode != 0) break;  // the preset variants matter for the amax only; once is enough for the others
    }
  }
}

}  // namespace

// ---- host-side argument checks (no device memory needed; run without a GPU too) ------------------------

KO_TEST(cuda, cuda_fp8_argument_validation) {
  namespace kc = ko::cuda;
  const ko::cuda::bf16* nb = nullptr;
  const float* nf = nullptr;
  uint8_t* nq = nullptr;
  float* na = nullptr;
  auto bad = [](const std::string& e) { return !e.empty(); };
  // castTransposeFp8: negative shapes, unknown format, missing input / scale; empty work is a no-op.
  KO_CHECK(bad(kc::castTransposeFp8(nq, nq, na, nb, -1, 4, nf, Fp8Format::E4M3, nullptr)));
  KO_CHECK(bad(kc::castTransposeFp8(nq, nq, na, nf, 4, -3, nf, Fp8Format::E5M2, nullptr)));
  KO_CHECK(bad(kc::castTransposeFp8(nq, nq, na, nb, 4, 4, nf, Fp8Format(7), nullptr)));
  KO_CHECK(kc::castTransposeFp8(nq, nq, na, nb, 0, 4, nf, Fp8Format::E4M3, nullptr).empty());
  KO_CHECK(kc::castTransposeFp8(nq, nq, na, nf, 4, 4, nf, Fp8Format::E4M3, nullptr).empty());  // nothing asked
  // Fake non-null pointers: the launcher rejects the call before touching them.
  uint8_t* fakeQ = reinterpret_cast<uint8_t*>(uintptr_t(256));
  float* fakeF = reinterpret_cast<float*>(uintptr_t(256));
  KO_CHECK(bad(kc::castTransposeFp8(fakeQ, nq, na, nb, 4, 4, fakeF, Fp8Format::E4M3, nullptr)));      // null input
  KO_CHECK(bad(kc::castTransposeFp8(fakeQ, nq, na, fakeF, 4, 4, nf, Fp8Format::E4M3, nullptr)));      // null scale
  KO_CHECK(bad(kc::transposeBf16(nullptr, nb, -2, 3, nullptr)));
  KO_CHECK(bad(kc::transposeBf16(nullptr, nb, 2, 3, nullptr)));
  KO_CHECK(kc::transposeBf16(nullptr, nb, 0, 3, nullptr).empty());
  KO_CHECK(kc::amaxBf16(na, nb, 0, nullptr).empty());
  KO_CHECK(bad(kc::amaxBf16(na, nb, 10, nullptr)));
  // fp8ScalingUpdate: count, history length and position.
  KO_CHECK(bad(kc::fp8ScalingUpdate(na, na, na, na, nullptr, -1, 4, 0, 0, true, nullptr)));
  KO_CHECK(bad(kc::fp8ScalingUpdate(na, na, na, na, nullptr, 3, 0, 0, 0, true, nullptr)));
  KO_CHECK(bad(kc::fp8ScalingUpdate(na, na, na, na, nullptr, 3, 4, 4, 0, true, nullptr)));
  KO_CHECK(bad(kc::fp8ScalingUpdate(na, na, na, na, nullptr, 3, 4, -1, 0, true, nullptr)));
  KO_CHECK(bad(kc::fp8ScalingUpdate(na, na, na, na, nullptr, 3, 4, 1, 0, true, nullptr)));  // null arrays
  KO_CHECK(kc::fp8ScalingUpdate(na, na, na, na, nullptr, 0, 4, 1, 0, true, nullptr).empty());
  // crossEntropyForwardBackward: shapes.
  KO_CHECK(bad(kc::crossEntropyForwardBackward(na, nullptr, nf, nullptr, 2, 0, 1.f, nullptr)));
  KO_CHECK(bad(kc::crossEntropyForwardBackward(na, nullptr, nf, nullptr, -1, 10, 1.f, nullptr)));
  KO_CHECK(bad(kc::crossEntropyForwardBackward(na, nullptr, nf, nullptr, 2, 10, 1.f, nullptr)));  // null arrays
  KO_CHECK(kc::crossEntropyForwardBackward(na, nullptr, nf, nullptr, 0, 10, 1.f, nullptr).empty());
  // sumSquares: output required; data required when n > 0; scratch sizes.
  KO_CHECK(bad(kc::sumSquares(nullptr, nf, 10, nullptr, false, nullptr)));
  KO_CHECK(bad(kc::sumSquares(reinterpret_cast<double*>(uintptr_t(256)), nf, 10, nullptr, false, nullptr)));
  KO_CHECK(kc::sumSquaresScratchDoubles(0) == 1);
  KO_CHECK(kc::sumSquaresScratchDoubles(1) == 1);
  KO_CHECK(kc::sumSquaresScratchDoubles(4096) == 1);
  KO_CHECK(kc::sumSquaresScratchDoubles(4097) == 2);
  KO_CHECK(kc::sumSquaresScratchDoubles(size_t(4096) * 1024) == 1024);
  KO_CHECK(kc::sumSquaresScratchDoubles(size_t(600000000)) == 1024);
}

// ---- castTransposeFp8 ------------------------------------------------------------------------------------

KO_TEST(cuda, cuda_fp8_cast_transpose_bit_exact) {
  kocuda::deviceOrSkip();
  struct Shape {
    int rows, cols;
  };
  // Odd shapes (partial tiles, odd columns -> element-wise path, rows % 4 != 0 -> byte-wise transpose),
  // a single element, a tall-thin one, and aligned multiples of the 64 x 64 tile (vector paths).
  const Shape shapes[] = {{37, 200}, {1, 1}, {1000, 48}, {130, 67}, {64, 64}, {256, 320}, {3, 5}};
  uint64_t seed = 1;
  for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
    // x * scale covers underflow, subnormals, normals and saturation of the format.
    const int eLo = f == Fp8Format::E4M3 ? -14 : -20, eHi = f == Fp8Format::E4M3 ? 8 : 15;
    const float scale = 3.7f;  // not a power of two: the FP32 product's rounding matters
    for (const Shape& s : shapes) {
      for (bool bf16Input : {true, false}) {
        std::vector<float> x = spanningFloats(size_t(s.rows) * s.cols, seed++, eLo, eHi);
        if (bf16Input) x = kocuda::fromBf16(kocuda::toBf16(x));
        checkCastTranspose(x, s.rows, s.cols, bf16Input, scale, f, 0);
      }
    }
    // Misaligned input (one element in): the element-wise load path with even columns.
    for (bool bf16Input : {true, false}) {
      std::vector<float> x = spanningFloats(size_t(96) * 130, seed++, eLo, eHi);
      if (bf16Input) x = kocuda::fromBf16(kocuda::toBf16(x));
      checkCastTranspose(x, 96, 130, bf16Input, 0.25f, f, 1);
    }
  }
}

// Every FP8 value, the midpoints between neighbours (ties to even) and their float neighbours, both
// signs, through the kernel with scale 1: the device conversion against ko::fp8FromFloat on the
// interesting inputs rather than random ones.
KO_TEST(cuda, cuda_fp8_cast_rounding_edges) {
  kocuda::deviceOrSkip();
  for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
    const int top = f == Fp8Format::E4M3 ? 0x7E : 0x7B;
    std::vector<float> x;
    for (int c = 0; c <= top; c++) {
      const float v = ko::fp8ToFloat(uint8_t(c), f);
      const float next = c < top ? ko::fp8ToFloat(uint8_t(c + 1), f) : v * 2.f;
      const float mid = (v + next) * 0.5f;
      for (float y : {v, mid, std::nextafter(mid, 0.f), std::nextafter(mid, INFINITY), std::nextafter(v, INFINITY)})
        for (float sgn : {1.f, -1.f}) x.push_back(sgn * y);
    }
    x.push_back(1e30f);
    x.push_back(-1e30f);
    x.push_back(std::numeric_limits<float>::max());
    while (x.size() % 64) x.push_back(0.5f);
    const int cols = 64, rows = int(x.size() / 64);
    checkCastTranspose(x, rows, cols, false, 1.0f, f, 0);
  }
}

// NaN and infinity: NaN gives a NaN code and is ignored by the amax; infinity saturates and makes the
// amax infinite.
KO_TEST(cuda, cuda_fp8_cast_nan_inf) {
  kocuda::deviceOrSkip();
  const int rows = 8, cols = 64;
  for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
    std::vector<float> x = spanningFloats(size_t(rows) * cols, 99, -6, 6);
    x[3] = std::numeric_limits<float>::quiet_NaN();
    x[70] = -std::numeric_limits<float>::quiet_NaN();
    DeviceBuffer<float> in(x), scale(std::vector<float>{1.f}), amax(std::vector<float>{0.f});
    DeviceBuffer<uint8_t> out(x.size()), outT(x.size());
    std::string err = ko::cuda::castTransposeFp8(out.ptr, outT.ptr, amax.ptr, in.ptr, rows, cols, scale.ptr, f, nullptr);
    KO_CHECK_MSG(err.empty(), err);
    std::vector<uint8_t> q = out.download(), qT = outT.download();
    const uint8_t nanMask = 0x7F;
    auto isNaN = [&](uint8_t b) { return f == Fp8Format::E4M3 ? (b & nanMask) == 0x7F : (b & nanMask) > 0x7C; };
    KO_CHECK(isNaN(q[3]) && isNaN(q[70]));
    KO_CHECK(isNaN(qT[size_t(3) * rows + 0]) && isNaN(qT[size_t(70 - 64) * rows + 1]));
    for (size_t i = 0; i < x.size(); i++)
      if (i != 3 && i != 70) KO_CHECK(q[i] == ko::fp8FromFloat(x[i], f));
    std::vector<float> a = amax.download();
    x[3] = 0.f;
    x[70] = 0.f;
    KO_CHECK_MSG(a[0] == hostAmax(x), "amax with NaN: " + std::to_string(a[0]));
    // With an infinity.
    std::vector<float> y = x;
    y[10] = -INFINITY;
    in.upload(y);
    amax.upload({0.f});
    err = ko::cuda::castTransposeFp8(out.ptr, outT.ptr, amax.ptr, in.ptr, rows, cols, scale.ptr, f, nullptr);
    KO_CHECK_MSG(err.empty(), err);
    q = out.download();
    KO_CHECK(q[10] == (f == Fp8Format::E4M3 ? 0xFE : 0xFB));
    KO_CHECK(std::isinf(amax.download()[0]));
  }
}

// ---- amaxBf16 / transposeBf16 -------------------------------------------------------------------------

KO_TEST(cuda, cuda_fp8_amax_bf16) {
  kocuda::deviceOrSkip();
  for (size_t n : {size_t(1), size_t(7), size_t(1000), size_t(1) << 20, (size_t(3) << 20) + 5}) {
    std::vector<float> x = kocuda::fromBf16(kocuda::toBf16(spanningFloats(n, 1000 + n, -10, 10)));
    const float want = hostAmax(x);
    std::vector<uint16_t> hb(n + 1, ko::bf16FromFloat(1e30f));  // element 0 is a pad (misaligned variant)
    for (size_t i = 0; i < n; i++) hb[1 + i] = ko::bf16FromFloat(x[i]);
    DeviceBuffer<uint16_t> aligned(kocuda::toBf16(x)), shifted(hb);
    DeviceBuffer<float> amax(1);
    for (int variant = 0; variant < 2; variant++) {
      const uint16_t* in = variant == 0 ? aligned.ptr : shifted.ptr + 1;
      for (float preset : {0.f, want * 0.5f, want * 4.f}) {
        amax.upload({preset});
        const std::string err = ko::cuda::amaxBf16(amax.ptr, in, n, nullptr);
        KO_CHECK_MSG(err.empty(), err);
        const float got = amax.download()[0];
        KO_CHECK_MSG(got == std::fmax(preset, want), "n=" + std::to_string(n) + " variant " + std::to_string(variant) +
                                                         ": " + std::to_string(got) + " want " + std::to_string(want));
      }
    }
  }
}

KO_TEST(cuda, cuda_transpose_bf16) {
  kocuda::deviceOrSkip();
  const int shapes[][2] = {{37, 200}, {1, 1}, {1000, 48}, {63, 129}, {128, 256}, {2, 7}, {65, 64}};
  for (const auto& s : shapes) {
    const int rows = s[0], cols = s[1];
    const size_t n = size_t(rows) * cols;
    const std::vector<uint16_t> x = kocuda::toBf16(kocuda::randomFloats(n, 7 + n, 3.f));
    std::vector<uint16_t> want(n);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) want[size_t(c) * rows + r] = x[size_t(r) * cols + c];
    DeviceBuffer<uint16_t> in(x), out(n);
    const std::string err = ko::cuda::transposeBf16(out.ptr, in.ptr, rows, cols, nullptr);
    KO_CHECK_MSG(err.empty(), err);
    KO_CHECK_MSG(out.download() == want, "transposeBf16 " + shapeStr(rows, cols));
    KO_CHECK(out.guardIntact());
  }
}

// ---- fp8ScalingUpdate --------------------------------------------------------------------------------

KO_TEST(cuda, cuda_fp8_scaling_update_bit_exact) {
  kocuda::deviceOrSkip();
  const int n = 300, historyLen = 5;  // 300 tensors: more than one block
  ko::Rng rng(31);
  std::vector<Fp8Format> fmts(n);
  for (int i = 0; i < n; i++) fmts[i] = (rng.next() % 3 == 0) ? Fp8Format::E5M2 : Fp8Format::E4M3;
  ko::Fp8ScalingState cpu;
  cpu.init(fmts, historyLen);
  DeviceBuffer<float> scale(cpu.scale), scaleInv(cpu.scaleInv), amaxCur(cpu.amaxCur), history(cpu.history);
  DeviceBuffer<uint8_t> formats(cpu.formats);
  for (int64_t step = 0; step < 13; step++) {  // wraps the 5-slot history twice
    // Amaxes over many magnitudes, with zeros (nothing recorded) and the odd infinity.
    for (int i = 0; i < n; i++) {
      const uint64_t r = rng.next();
      if (r % 17 == 0) continue;  // stays 0
      const float a = (r % 101 == 1) ? INFINITY : std::ldexp(float(1.0 + rng.uniform()), int(rng.next() % 40) - 20);
      cpu.record(i, a);
    }
    amaxCur.upload(cpu.amaxCur);
    const int margin = int(step % 3);  // 0, 1, 2
    const bool useMax = step % 4 != 3;
    const int pos = int(step % historyLen);
    const std::string err = ko::cuda::fp8ScalingUpdate(scale.ptr, scaleInv.ptr, amaxCur.ptr, history.ptr, formats.ptr,
                                                       n, historyLen, pos, margin, useMax, nullptr);
    KO_CHECK_MSG(err.empty(), err);
    cpu.update(step, margin, useMax);
    const std::vector<float> gs = scale.download(), gi = scaleInv.download(), ga = amaxCur.download(),
                             gh = history.download();
    const std::string at = "step " + std::to_string(step);
    for (int i = 0; i < n; i++) {
      KO_CHECK_MSG(ko::floatBits(gs[i]) == ko::floatBits(cpu.scale[i]),
                   at + " scale[" + std::to_string(i) + "] " + std::to_string(gs[i]) + " vs " + std::to_string(cpu.scale[i]));
      KO_CHECK_MSG(ko::floatBits(gi[i]) == ko::floatBits(cpu.scaleInv[i]), at + " scaleInv[" + std::to_string(i) + "]");
      KO_CHECK_MSG(ga[i] == 0.f, at + " amaxCur not reset");
    }
    for (size_t k = 0; k < gh.size(); k++)
      KO_CHECK_MSG(ko::floatBits(gh[k]) == ko::floatBits(cpu.history[k]), at + " history[" + std::to_string(k) + "]");
  }
  KO_CHECK(scale.guardIntact() && scaleInv.guardIntact() && history.guardIntact() && amaxCur.guardIntact());
}

// ---- crossEntropyForwardBackward --------------------------------------------------------------------

namespace {
void checkCrossEntropy(int n, int V, float amp, float dlossScale, size_t logitOffset, uint64_t seed) {
  const size_t nv = size_t(n) * V;
  const std::string what = "n=" + std::to_string(n) + " V=" + std::to_string(V) + " offset " + std::to_string(logitOffset);
  std::vector<float> logits = kocuda::randomFloats(nv, seed, amp);
  std::vector<int32_t> targets(n);
  ko::Rng rng(seed + 1);
  for (int r = 0; r < n; r++) targets[r] = (r % 3 == 1) ? -1 : int32_t(rng.next() % uint64_t(V));
  targets[0] = V - 1;  // the last column (the scalar tail of a float4 row)
  // CPU twins: FP32 logits, double sums.
  std::vector<float> lossCpu(n), gradCpu = logits;
  ko::crossEntropyForward(lossCpu.data(), logits.data(), targets.data(), n, V);
  ko::crossEntropyBackward(gradCpu.data(), targets.data(), n, V, dlossScale);

  std::vector<float> hl(logitOffset + nv, 0.f);
  std::memcpy(hl.data() + logitOffset, logits.data(), nv * sizeof(float));
  const size_t nRows = size_t(n);
  DeviceBuffer<float> dlogitsIn(hl), losses(nRows);
  DeviceBuffer<int32_t> dtargets(targets);
  DeviceBuffer<uint16_t> dgrad(nv);
  std::vector<float> firstLoss;
  std::vector<uint16_t> firstGrad;
  for (int run = 0; run < 2; run++) {
    losses.poison();
    dgrad.poison();
    const std::string err = ko::cuda::crossEntropyForwardBackward(losses.ptr, dgrad.ptr, dlogitsIn.ptr + logitOffset,
                                                                  dtargets.ptr, n, V, dlossScale, nullptr);
    KO_CHECK_MSG(err.empty(), what + ": " + err);
    const std::vector<float> gl = losses.download();
    const std::vector<uint16_t> gg = dgrad.download();
    KO_CHECK_MSG(losses.guardIntact() && dgrad.guardIntact(), what + ": wrote past the end");
    if (run == 1) {  // deterministic: bit-identical reruns
      KO_CHECK_MSG(std::memcmp(gl.data(), firstLoss.data(), n * sizeof(float)) == 0, what + ": losses differ between runs");
      KO_CHECK_MSG(gg == firstGrad, what + ": dlogits differ between runs");
      break;
    }
    firstLoss = gl;
    firstGrad = gg;
    KO_CHECK_MSG(kocuda::allFinite(gl), what + ": non-finite loss");
    const std::vector<float> g = kocuda::fromBf16(gg);
    KO_CHECK_MSG(kocuda::allFinite(g), what + ": non-finite / unwritten dlogits");
    for (int r = 0; r < n; r++) {
      if (targets[r] >= 0) continue;
      KO_CHECK_MSG(gl[r] == 0.f, what + ": ignored row's loss");
      for (int c = 0; c < V; c++) KO_CHECK_MSG(gg[size_t(r) * V + c] == 0, what + ": ignored row's dlogits");
    }
    const double eLoss = kotest::relError(gl.data(), lossCpu.data(), size_t(n));
    const double eGrad = kotest::relError(g.data(), gradCpu.data(), nv);
    std::printf("  cross-entropy %s: loss rel err %.3g, dlogits rel err %.3g\n", what.c_str(), eLoss, eGrad);
    KO_CHECK_MSG(eLoss <= 1e-5, what + ": loss rel err " + std::to_string(eLoss));
    KO_CHECK_MSG(eGrad <= 4e-3, what + ": dlogits rel err " + std::to_string(eGrad));
    // Per row as well: every valid row's loss to 1e-5 relative (a single bad row must not hide in the norm).
    for (int r = 0; r < n; r++)
      if (targets[r] >= 0)
        KO_CHECK_MSG(std::fabs(gl[r] - lossCpu[r]) <= 1e-5 * std::fabs(lossCpu[r]) + 1e-6,
                     what + ": row " + std::to_string(r) + " loss " + std::to_string(gl[r]) + " vs " +
                         std::to_string(lossCpu[r]));
  }
}
}  // namespace

KO_TEST(cuda, cuda_cross_entropy_matches_cpu) {
  kocuda::deviceOrSkip();
  checkCrossEntropy(7, 1001, 6.f, 0.37f, 0, 11);      // odd V: scalar path; rows 1 and 4 ignored
  checkCrossEntropy(9, 1024, 6.f, 1.f / 6, 0, 12);    // V % 4 == 0: float4 path
  checkCrossEntropy(5, 1024, 6.f, 0.5f, 1, 13);       // misaligned logits: scalar path with V % 4 == 0
  checkCrossEntropy(3, 151936, 10.f, 1.f / 3, 0, 14); // Qwen vocabulary, large rows
  checkCrossEntropy(2, 3, 2.f, 1.f, 0, 15);           // V smaller than a warp
  checkCrossEntropy(4, 32000, 30.f, 0.25f, 0, 16);    // peaked softmax (logits up to +-30)
}

// ---- sumSquares ----------------------------------------------------------------------------------------

KO_TEST(cuda, cuda_sum_squares_matches_cpu) {
  kocuda::deviceOrSkip();
  for (size_t n : {size_t(1), size_t(3), size_t(4096), size_t(4097), (size_t(1) << 20) + 5, size_t(5000003)}) {
    const std::vector<float> g = kocuda::randomFloats(n + 1, 500 + n, 2.f);  // g[0] is the misaligned variant's pad
    long double ref = 0;  // extended precision reference
    for (size_t i = 1; i <= n; i++) ref += (long double)g[i] * (long double)g[i];
    DeviceBuffer<float> dg(g);
    DeviceBuffer<double> out(1), scratch(ko::cuda::sumSquaresScratchDoubles(n));
    // Aligned data: copy g[1..] to an aligned buffer.
    DeviceBuffer<float> dAligned(std::vector<float>(g.begin() + 1, g.end()));
    const std::string at = "n=" + std::to_string(n);
    double results[3];
    for (int run = 0; run < 3; run++) {  // runs 0 and 1 aligned (determinism), run 2 misaligned
      const float* src = run < 2 ? dAligned.ptr : dg.ptr + 1;
      out.poison();
      const std::string err = ko::cuda::sumSquares(out.ptr, src, n, scratch.ptr, false, nullptr);
      KO_CHECK_MSG(err.empty(), at + ": " + err);
      results[run] = out.download()[0];
      const double rel = std::fabs(double((results[run] - ref) / ref));
      KO_CHECK_MSG(rel <= 1e-12, at + " run " + std::to_string(run) + ": rel err " + std::to_string(rel));
    }
    KO_CHECK_MSG(std::memcmp(&results[0], &results[1], sizeof(double)) == 0, at + ": not bit-identical across runs");
    KO_CHECK(scratch.guardIntact() && out.guardIntact());
    // accumulate: *out += sum.
    out.upload({1.5});
    std::string err = ko::cuda::sumSquares(out.ptr, dAligned.ptr, n, scratch.ptr, true, nullptr);
    KO_CHECK_MSG(err.empty(), err);
    const double acc = out.download()[0];
    KO_CHECK_MSG(acc == 1.5 + results[0], at + ": accumulate " + std::to_string(acc));
  }
  // n == 0: 0 when overwriting, unchanged when accumulating.
  DeviceBuffer<double> out(std::vector<double>{7.0}), scratch(1);
  KO_CHECK(ko::cuda::sumSquares(out.ptr, nullptr, 0, scratch.ptr, true, nullptr).empty());
  KO_CHECK(out.download()[0] == 7.0);
  KO_CHECK(ko::cuda::sumSquares(out.ptr, nullptr, 0, scratch.ptr, false, nullptr).empty());
  KO_CHECK(out.download()[0] == 0.0);
}

#endif  // KO_CUDA
