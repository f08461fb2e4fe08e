// test_lowp.cpp — group `ops`: the bit-exact BF16/FP8 rounding of native/lowp.h and the delayed-scaling
// recipe of native/fp8_recipe.h, against references written here from the format definitions alone
// (sign / exponent / mantissa / bias decoding, brute-force nearest-value search with ties to even).
// When the CUDA headers are available (KO_CUDA builds) the FP8 rounding is also compared with the host
// path of CUDA's own __nv_cvt_float_to_fp8, the conversion the GPU kernels use.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "fp8_recipe.h"
#include "lowp.h"
#include "rng.h"

#if defined(KO_CUDA) && defined(__has_include)
#if __has_include(<cuda_fp8.h>)
#include <cuda_fp8.h>
#define KO_TEST_HAVE_CUDA_FP8 1
#endif
#endif

namespace {

using ko::Fp8Format;

constexpr Fp8Format kFormats[2] = {Fp8Format::E4M3, Fp8Format::E5M2};
const char* formatName(Fp8Format f) { return f == Fp8Format::E4M3 ? "E4M3" : "E5M2"; }

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%X", v);
  return buf;
}
std::string fstr(float x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (%s)", double(x), hex(ko::floatBits(x)).c_str());
  return buf;
}

// ---- independent decoding, straight from the format definitions -------------------------------------
// E4M3 (OCP "fn"): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN.
// E5M2: 1 sign, 5 exponent bits (bias 15), 2 mantissa bits; S.11111.00 is inf, S.11111.{01,10,11} NaN.
// Subnormals (exponent field 0): 0.m * 2^(1 - bias).
double pow2(int e) {
  double v = 1.0;
  for (; e > 0; e--) v *= 2.0;
  for (; e < 0; e++) v *= 0.5;
  return v;
}
double refDecode(uint8_t code, Fp8Format f) {
  const bool e4m3 = f == Fp8Format::E4M3;
  const int manBits = e4m3 ? 3 : 2, expBits = e4m3 ? 4 : 5, bias = e4m3 ? 7 : 15;
  const int sign = code >> 7;
  const int e = (code >> manBits) & ((1 << expBits) - 1);
  const int m = code & ((1 << manBits) - 1);
  const int expMax = (1 << expBits) - 1;
  double v;
  if (e4m3 && e == expMax && m == (1 << manBits) - 1) {
    v = std::numeric_limits<double>::quiet_NaN();
  } else if (!e4m3 && e == expMax) {
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (e == 0) {
    v = (double(m) / double(1 << manBits)) * pow2(1 - bias);
  } else {
    v = (1.0 + double(m) / double(1 << manBits)) * pow2(e - bias);
  }
  return sign ? -v : v;
}

// Largest finite positive code (0x7E for E4M3, 0x7B for E5M2).
uint8_t maxCode(Fp8Format f) { return f == Fp8Format::E4M3 ? 0x7E : 0x7B; }

// Brute force: the finite code nearest to x in value, ties to the even code (= even mantissa: the code's
// lowest bit is the mantissa's lowest bit), |x| beyond the largest finite value saturates, the sign is
// kept (also for results that round to zero). NaN -> -1 (the caller expects a NaN code).
int refEncode(float x, Fp8Format f) {
  if (std::isnan(x)) return -1;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(double(x));
  const uint8_t top = maxCode(f);
  if (a >= refDecode(top, f)) return sign | top;
  int best = 0;
  double bestDist = a;  // code 0 (value 0)
  for (int c = 1; c <= top; c++) {
    const double d = std::fabs(refDecode(uint8_t(c), f) - a);
    if (d < bestDist || (d == bestDist && (c & 1) == 0 && (best & 1) == 1)) {
      best = c;
      bestDist = d;
    }
  }
  return sign | best;
}

// A float with a random sign, a random 23-bit mantissa and an exponent uniform in [eLo, eHi].
float randomSpanning(ko::Rng& rng, int eLo, int eHi) {
  const uint64_t r = rng.next();
  const int e = eLo + int(r % uint64_t(eHi - eLo + 1));
  const uint32_t mant = uint32_t(r >> 20) & 0x7FFFFFu;
  const uint32_t sign = uint32_t(r >> 63) << 31;
  return ko::bitsFloat(sign | (uint32_t(e + 127) << 23) | mant);
}

bool isFp8NaN(uint8_t q, Fp8Format f) {
  const uint8_t a = q & 0x7F;
  return f == Fp8Format::E4M3 ? a == 0x7F : a > 0x7C;
}

}  // namespace

// ---- FP8 decoding ------------------------------------------------------------------------------------

KO_TEST(ops, lowp_fp8_decode_all_codes) {
  for (Fp8Format f : kFormats) {
    for (int c = 0; c < 256; c++) {
      const double ref = refDecode(uint8_t(c), f);
      const float got = ko::fp8ToFloat(uint8_t(c), f);
      const std::string what = std::string(formatName(f)) + " code " + hex(c) + ": got " + fstr(got);
      if (std::isnan(ref)) {
        KO_CHECK_MSG(std::isnan(got), what);
      } else {
        KO_CHECK_MSG(double(got) == ref, what + " want " + std::to_string(ref));
        KO_CHECK_MSG(std::signbit(got) == bool(c & 0x80), what);  // -0 for 0x80
      }
    }
  }
  // Spot values of the definitions.
  KO_CHECK(ko::fp8ToFloat(0x7E, Fp8Format::E4M3) == 448.f);
  KO_CHECK(ko::fp8ToFloat(0xFE, Fp8Format::E4M3) == -448.f);
  KO_CHECK(std::isnan(ko::fp8ToFloat(0x7F, Fp8Format::E4M3)));
  KO_CHECK(std::isnan(ko::fp8ToFloat(0xFF, Fp8Format::E4M3)));
  KO_CHECK(ko::fp8ToFloat(0x01, Fp8Format::E4M3) == std::ldexp(1.f, -9));
  KO_CHECK(ko::fp8ToFloat(0x08, Fp8Format::E4M3) == std::ldexp(1.f, -6));  // smallest normal
  KO_CHECK(ko::fp8ToFloat(0x7B, Fp8Format::E5M2) == 57344.f);
  KO_CHECK(ko::fp8ToFloat(0x7C, Fp8Format::E5M2) == INFINITY);
  KO_CHECK(ko::fp8ToFloat(0xFC, Fp8Format::E5M2) == -INFINITY);
  for (int c : {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF}) KO_CHECK(std::isnan(ko::fp8ToFloat(uint8_t(c), Fp8Format::E5M2)));
  KO_CHECK(ko::fp8ToFloat(0x01, Fp8Format::E5M2) == std::ldexp(1.f, -16));
  KO_CHECK(ko::fp8Max(Fp8Format::E4M3) == 448.f);
  KO_CHECK(ko::fp8Max(Fp8Format::E5M2) == 57344.f);
  // NaN count: E4M3 has 2 NaN codes and no inf; E5M2 has 6 NaN codes and 2 infinities.
  int nan4 = 0, nan5 = 0, inf5 = 0;
  for (int c = 0; c < 256; c++) {
    nan4 += std::isnan(ko::fp8ToFloat(uint8_t(c), Fp8Format::E4M3));
    nan5 += std::isnan(ko::fp8ToFloat(uint8_t(c), Fp8Format::E5M2));
    inf5 += std::isinf(ko::fp8ToFloat(uint8_t(c), Fp8Format::E5M2));
    KO_CHECK(!std::isinf(ko::fp8ToFloat(uint8_t(c), Fp8Format::E4M3)));
  }
  KO_CHECK(nan4 == 2 && nan5 == 6 && inf5 == 2);
}

KO_TEST(ops, lowp_fp8_roundtrip_all_codes) {
  for (Fp8Format f : kFormats) {
    for (int c = 0; c < 256; c++) {
      const float v = ko::fp8ToFloat(uint8_t(c), f);
      if (std::isnan(v)) continue;
      const uint8_t back = ko::fp8FromFloat(v, f);
      if (std::isinf(v)) {  // E5M2 +-inf: saturating conversion gives +-max
        KO_CHECK_MSG(back == ((c & 0x80) | maxCode(f)), std::string(formatName(f)) + " inf code " + hex(c));
        continue;
      }
      KO_CHECK_MSG(back == c, std::string(formatName(f)) + " code " + hex(c) + " -> " + fstr(v) + " -> " + hex(back));
    }
  }
}

// ---- FP8 rounding --------------------------------------------------------------------------------------

KO_TEST(ops, lowp_fp8_round_nearest_even_midpoints) {
  for (Fp8Format f : kFormats) {
    const uint8_t top = maxCode(f);
    // Positive finite codes are ordered by value; consecutive codes c, c+1 are adjacent values and exactly
    // one of them has an even mantissa.
    for (int c = 0; c < top; c++) {
      for (int sign : {0, 0x80}) {
        const float lo = ko::fp8ToFloat(uint8_t(c), f), hi = ko::fp8ToFloat(uint8_t(c + 1), f);
        const float mid = (lo + hi) * 0.5f;  // exact: a 5-bit significand at most
        KO_CHECK(double(mid) == (double(lo) + double(hi)) * 0.5);
        const float s = sign ? -1.f : 1.f;
        const int even = (c & 1) == 0 ? c : c + 1;
        const std::string what = std::string(formatName(f)) + " between " + hex(c) + " and " + hex(c + 1);
        KO_CHECK_MSG(ko::fp8FromFloat(s * mid, f) == (sign | even), what + " midpoint");
        KO_CHECK_MSG(ko::fp8FromFloat(s * std::nextafter(mid, 0.f), f) == (sign | c), what + " below midpoint");
        KO_CHECK_MSG(ko::fp8FromFloat(s * std::nextafter(mid, INFINITY), f) == (sign | (c + 1)),
                     what + " above midpoint");
        KO_CHECK_MSG(ko::fp8FromFloat(s * std::nextafter(hi, 0.f), f) == (sign | (c + 1)), what + " just below hi");
        if (c > 0)
          KO_CHECK_MSG(ko::fp8FromFloat(s * std::nextafter(lo, INFINITY), f) == (sign | c), what + " just above lo");
      }
    }
  }
}

KO_TEST(ops, lowp_fp8_saturation_nan_subnormals) {
  const Fp8Format e4 = Fp8Format::E4M3, e5 = Fp8Format::E5M2;
  // E4M3: everything above 448 saturates to 0x7E (the next would-be value 480 is the NaN slot).
  for (float x : {448.f, 449.f, 463.99f, 464.f, 464.01f, 479.f, 480.f, 500.f, 1e6f, 1e30f, FLT_MAX, INFINITY}) {
    KO_CHECK_MSG(ko::fp8FromFloat(x, e4) == 0x7E, fstr(x));
    KO_CHECK_MSG(ko::fp8FromFloat(-x, e4) == 0xFE, fstr(-x));
  }
  // E5M2: everything above 57344 saturates to 0x7B, infinities included.
  for (float x : {57344.f, 57345.f, 61439.f, 61440.f, 65536.f, 1e30f, FLT_MAX, INFINITY}) {
    KO_CHECK_MSG(ko::fp8FromFloat(x, e5) == 0x7B, fstr(x));
    KO_CHECK_MSG(ko::fp8FromFloat(-x, e5) == 0xFB, fstr(-x));
  }
  // Just below the saturation threshold still rounds normally.
  KO_CHECK(ko::fp8FromFloat(432.f, e4) == 0x7E);  // 416 .. 448 midpoint -> even (448 has mantissa 6)
  KO_CHECK(ko::fp8FromFloat(431.f, e4) == 0x7D);
  // NaN -> a NaN code (any sign, any payload).
  const float nans[3] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                         ko::bitsFloat(0x7F800001u)};
  for (float x : nans) {
    KO_CHECK(isFp8NaN(ko::fp8FromFloat(x, e4), e4));
    KO_CHECK(isFp8NaN(ko::fp8FromFloat(x, e5), e5));
    // lowp.h returns the canonical NaN 0x7F whatever the sign, as CUDA's conversion does.
    KO_CHECK(ko::fp8FromFloat(x, e4) == 0x7F && ko::fp8FromFloat(x, e5) == 0x7F);
  }
  // Zeros keep their sign.
  KO_CHECK(ko::fp8FromFloat(0.f, e4) == 0x00 && ko::fp8FromFloat(-0.f, e4) == 0x80);
  KO_CHECK(ko::fp8FromFloat(0.f, e5) == 0x00 && ko::fp8FromFloat(-0.f, e5) == 0x80);
  // E4M3 subnormals: smallest 2^-9; half of it is a tie between 0 (even) and 2^-9 (odd) -> 0;
  // 0.75 * 2^-9 rounds up; 1.5 * 2^-9 is a tie between 0x01 and 0x02 -> 0x02.
  const float s4 = std::ldexp(1.f, -9);
  KO_CHECK(ko::fp8FromFloat(s4, e4) == 0x01);
  KO_CHECK(ko::fp8FromFloat(0.5f * s4, e4) == 0x00);
  KO_CHECK(ko::fp8FromFloat(-0.5f * s4, e4) == 0x80);
  KO_CHECK(ko::fp8FromFloat(std::nextafter(0.5f * s4, 1.f), e4) == 0x01);
  KO_CHECK(ko::fp8FromFloat(0.75f * s4, e4) == 0x01);
  KO_CHECK(ko::fp8FromFloat(1.5f * s4, e4) == 0x02);
  KO_CHECK(ko::fp8FromFloat(2.5f * s4, e4) == 0x02);
  KO_CHECK(ko::fp8FromFloat(7.5f * s4, e4) == 0x08);  // largest subnormal .. smallest normal tie -> 0x08 (even)
  KO_CHECK(ko::fp8FromFloat(1e-30f, e4) == 0x00 && ko::fp8FromFloat(-1e-30f, e4) == 0x80);
  KO_CHECK(ko::fp8FromFloat(ko::bitsFloat(1u), e4) == 0x00);  // FP32 denormal
  // E5M2 subnormals: smallest 2^-16.
  const float s5 = std::ldexp(1.f, -16);
  KO_CHECK(ko::fp8FromFloat(s5, e5) == 0x01);
  KO_CHECK(ko::fp8FromFloat(0.5f * s5, e5) == 0x00);
  KO_CHECK(ko::fp8FromFloat(0.75f * s5, e5) == 0x01);
  KO_CHECK(ko::fp8FromFloat(1.5f * s5, e5) == 0x02);
}

KO_TEST(ops, lowp_fp8_random_vs_brute_force) {
  ko::Rng rng(20240611);
  for (Fp8Format f : kFormats) {
    int mismatches = 0;
    std::string first;
    for (int i = 0; i < 1000000; i++) {
      const float x = randomSpanning(rng, -20, 20);
      const int want = refEncode(x, f);
      const uint8_t got = ko::fp8FromFloat(x, f);
      if (got != want) {
        if (mismatches++ == 0) first = fstr(x) + " -> " + hex(got) + ", want " + hex(want);
      }
    }
    KO_CHECK_MSG(mismatches == 0, std::string(formatName(f)) + ": " + std::to_string(mismatches) +
                                      " mismatches, first " + first);
  }
}

#ifdef KO_TEST_HAVE_CUDA_FP8
// CUDA's host implementation of __nv_cvt_float_to_fp8 (the software path the pre-sm_89 GPUs also run;
// sm_89+ use cvt.rn.satfinite, which NVIDIA specifies identically): bit-identical to ko::fp8FromFloat on
// a sweep over the whole FP32 bit space and on random values in the FP8 range, NaN included.
KO_TEST(ops, lowp_fp8_matches_cuda_host_conversion) {
  const __nv_fp8_interpretation_t interp[2] = {__NV_E4M3, __NV_E5M2};
  ko::Rng rng(77);
  for (int fi = 0; fi < 2; fi++) {
    const Fp8Format f = kFormats[fi];
    int mismatches = 0;
    std::string first;
    auto check = [&](float x) {
      const uint8_t want = uint8_t(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, interp[fi]));
      const uint8_t got = ko::fp8FromFloat(x, f);
      if (got != want && mismatches++ == 0) first = fstr(x) + " -> " + hex(got) + ", CUDA " + hex(want);
    };
    for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 1021) check(ko::bitsFloat(uint32_t(u)));
    for (int i = 0; i < 300000; i++) check(randomSpanning(rng, -26, 17));
    KO_CHECK_MSG(mismatches == 0, std::string(formatName(f)) + ": " + std::to_string(mismatches) +
                                      " mismatches with __nv_cvt_float_to_fp8, first " + first);
  }
}
#endif

// ---- BF16 --------------------------------------------------------------------------------------------

namespace {
// Brute force BF16 RNE: the two candidates around x (truncation and the next code up in magnitude),
// nearest in value, ties to the even code; overflow past the largest finite value follows IEEE (the
// code after 0x7F7F, i.e. inf, counts as 2^128 when measuring distances).
uint16_t refBf16(float x) {
  const uint32_t u = ko::floatBits(x);
  if (std::isinf(x)) return uint16_t(u >> 16);
  const uint16_t lo = uint16_t(u >> 16);
  const uint16_t hi = uint16_t(lo + 1);
  auto value = [](uint16_t h) {
    if ((h & 0x7FFF) == 0x7F80) return std::ldexp((h & 0x8000) ? -1.0 : 1.0, 128);
    return double(ko::bitsFloat(uint32_t(h) << 16));
  };
  const double dl = std::fabs(double(x) - value(lo)), dh = std::fabs(double(x) - value(hi));
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}
}  // namespace

KO_TEST(ops, lowp_bf16_round_nearest_even) {
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x3F808000u)) == 0x3F80);  // tie, 0x3F80 even: down
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x3F818000u)) == 0x3F82);  // tie, 0x3F81 odd: up
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x3F808001u)) == 0x3F81);  // above the tie
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x3F807FFFu)) == 0x3F80);  // below the tie
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0xBF818000u)) == 0xBF82);  // negative tie
  KO_CHECK(ko::bf16FromFloat(1.0f) == 0x3F80);
  KO_CHECK(ko::bf16FromFloat(-2.0f) == 0xC000);
  KO_CHECK(ko::bf16FromFloat(0.f) == 0x0000 && ko::bf16FromFloat(-0.f) == 0x8000);
  KO_CHECK(ko::bf16FromFloat(INFINITY) == 0x7F80 && ko::bf16FromFloat(-INFINITY) == 0xFF80);
  KO_CHECK(ko::bf16FromFloat(FLT_MAX) == 0x7F80);                        // rounds up past the largest
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x7F7F7FFFu)) == 0x7F7F);     // stays finite
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x00000001u)) == 0x0000);     // FP32 denormals round
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x00008000u)) == 0x0000);     // tie to even (0)
  KO_CHECK(ko::bf16FromFloat(ko::bitsFloat(0x00018000u)) == 0x0002);     // tie to even (2)
  // NaN stays NaN and quiet, sign kept; signalling payloads that would truncate to inf stay NaN.
  for (uint32_t nanBits : {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7F80FFFFu}) {
    const uint16_t h = ko::bf16FromFloat(ko::bitsFloat(nanBits));
    KO_CHECK_MSG(std::isnan(ko::floatFromBf16(h)), hex(nanBits) + " -> " + hex(h));
    KO_CHECK_MSG((h & 0x0040) != 0, hex(nanBits) + " -> " + hex(h) + " not quiet");
    KO_CHECK_MSG((h & 0x8000) == ((nanBits >> 16) & 0x8000), hex(nanBits) + " sign");
  }
  // Round trip of every BF16 code that is not NaN.
  for (uint32_t h = 0; h < 0x10000; h++) {
    const float v = ko::floatFromBf16(uint16_t(h));
    if (std::isnan(v)) continue;
    KO_CHECK_MSG(ko::bf16FromFloat(v) == h, hex(h));
  }
  // Random bit patterns (every exponent) and random values near 1 against the brute force.
  ko::Rng rng(4242);
  int mismatches = 0;
  std::string first;
  for (int i = 0; i < 1000000; i++) {
    const float x = (i & 1) ? ko::bitsFloat(uint32_t(rng.next() >> 32)) : randomSpanning(rng, -20, 20);
    if (std::isnan(x)) continue;
    const uint16_t got = ko::bf16FromFloat(x), want = refBf16(x);
    if (got != want && mismatches++ == 0) first = fstr(x) + " -> " + hex(got) + ", want " + hex(want);
  }
  KO_CHECK_MSG(mismatches == 0, std::to_string(mismatches) + " mismatches, first " + first);
  KO_CHECK(ko::roundBf16(1.00390625f) == 1.0f);  // 1 + 2^-8: tie -> 1
}

// ---- the delayed-scaling recipe ------------------------------------------------------------------------

KO_TEST(ops, lowp_fp8_scale_from_amax) {
  const Fp8Format e4 = Fp8Format::E4M3, e5 = Fp8Format::E5M2;
  KO_CHECK(ko::fp8ScaleFromAmax(448.f, 7.f, e4, 0) == 1.f);
  KO_CHECK(ko::fp8ScaleFromAmax(2.f, 7.f, e4, 0) == 224.f);
  KO_CHECK(ko::fp8ScaleFromAmax(2.f, 7.f, e4, 1) == 112.f);  // margin 1 halves the scale
  KO_CHECK(ko::fp8ScaleFromAmax(2.f, 7.f, e4, 3) == 28.f);
  KO_CHECK(ko::fp8ScaleFromAmax(57344.f, 7.f, e5, 0) == 1.f);
  KO_CHECK(ko::fp8ScaleFromAmax(0.5f, 7.f, e5, 0) == 114688.f);
  volatile float three = 3.f;  // FP32 division, as the recipe does it
  KO_CHECK(ko::fp8ScaleFromAmax(3.f, 7.f, e4, 0) == 448.f / three);
  KO_CHECK(ko::fp8ScaleFromAmax(3.f, 7.f, e4, 2) == (448.f / three) / 4.f);
  // No usable amax: the previous scale is kept.
  KO_CHECK(ko::fp8ScaleFromAmax(0.f, 7.f, e4, 0) == 7.f);
  KO_CHECK(ko::fp8ScaleFromAmax(-0.f, 7.f, e4, 0) == 7.f);
  KO_CHECK(ko::fp8ScaleFromAmax(INFINITY, 7.f, e4, 0) == 7.f);
  KO_CHECK(ko::fp8ScaleFromAmax(std::numeric_limits<float>::quiet_NaN(), 7.f, e4, 0) == 7.f);
  KO_CHECK(ko::fp8ScaleFromAmax(-1.f, 7.f, e4, 0) == 7.f);
}

KO_TEST(ops, lowp_fp8_scaling_state_update) {
  ko::Fp8ScalingState st;
  st.init({Fp8Format::E4M3, Fp8Format::E5M2}, 3);
  KO_CHECK(st.n == 2 && st.historyLen == 3 && st.history.size() == 6);
  KO_CHECK(st.scale[0] == 1.f && st.scale[1] == 1.f && st.scaleInv[0] == 1.f);
  KO_CHECK(st.formats[0] == 0 && st.formats[1] == 1);

  // step 0 (history slot 0): amax max over micro-batches.
  st.record(0, 2.f);
  st.record(0, 4.f);
  st.record(0, 1.f);
  st.record(1, 8.f);
  st.update(0, 0, true);
  KO_CHECK(st.history[0 * 2 + 0] == 4.f && st.history[0 * 2 + 1] == 8.f);
  KO_CHECK(st.scale[0] == 112.f && st.scaleInv[0] == 1.f / 112.f);
  KO_CHECK(st.scale[1] == 7168.f && st.scaleInv[1] == 1.f / 7168.f);
  KO_CHECK(st.amaxCur[0] == 0.f && st.amaxCur[1] == 0.f);

  // step 1 (slot 1): a smaller amax; "max" keeps the history's max (4 and 8).
  st.record(0, 1.f);
  st.record(1, 2.f);
  st.update(1, 0, true);
  KO_CHECK(st.history[1 * 2 + 0] == 1.f && st.history[1 * 2 + 1] == 2.f);
  KO_CHECK(st.scale[0] == 112.f && st.scale[1] == 7168.f);

  // step 2 (slot 2): nothing recorded for tensor 1 (amax 0 enters the history), margin 1.
  st.record(0, 0.5f);
  st.update(2, 1, true);
  KO_CHECK(st.history[2 * 2 + 0] == 0.5f && st.history[2 * 2 + 1] == 0.f);
  KO_CHECK(st.scale[0] == 56.f && st.scale[1] == 3584.f);

  // step 3 wraps to slot 0 and overwrites 4 and 8: the max is now 1 (slot 1) and 2 (slot 1).
  st.record(0, 0.25f);
  st.record(1, 0.5f);
  st.update(3, 0, true);
  KO_CHECK(st.history[0 * 2 + 0] == 0.25f && st.history[0 * 2 + 1] == 0.5f);
  KO_CHECK(st.scale[0] == 448.f && st.scale[1] == 28672.f);

  // "most_recent": only this step's amax; tensor 1 saw nothing (0) and keeps its scale.
  st.record(0, 16.f);
  st.update(4, 0, false);  // slot 1
  KO_CHECK(st.history[1 * 2 + 0] == 16.f && st.history[1 * 2 + 1] == 0.f);
  KO_CHECK(st.scale[0] == 28.f && st.scaleInv[0] == 1.f / 28.f);
  KO_CHECK(st.scale[1] == 28672.f && st.scaleInv[1] == 1.f / 28672.f);

  // An infinite amax keeps the previous scale (the step overflowed), also under "max".
  st.record(0, INFINITY);
  st.update(5, 0, true);  // slot 2
  KO_CHECK(st.scale[0] == 28.f);
  KO_CHECK(std::isinf(st.history[2 * 2 + 0]));
  KO_CHECK(st.amaxCur[0] == 0.f);

  // historyLen <= 0 is treated as 1.
  ko::Fp8ScalingState one;
  one.init({Fp8Format::E4M3}, 0);
  KO_CHECK(one.historyLen == 1 && one.history.size() == 1);
  one.record(0, 7.f);
  one.update(41, 0, true);
  KO_CHECK(one.scale[0] == 64.f);
}

KO_TEST(ops, lowp_fp8_quantize_in_place) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {nan, 1.f, -2.f, 0.3f, 500.f, -0.f, 1e-5f, -1000.f};
  const float amax = ko::fp8QuantizeInPlace(x.data(), x.size(), Fp8Format::E4M3, 0.5f, 2.f);
  KO_CHECK(amax == 1000.f);  // NaN ignored
  KO_CHECK(std::isnan(x[0]));
  KO_CHECK(x[1] == 1.f);
  KO_CHECK(x[2] == -2.f);
  KO_CHECK(x[3] == 0.3125f);   // 0.15 -> 0.15625 (step 2^-6 in [0.125, 0.25)), times 2
  KO_CHECK(x[4] == 512.f);     // 250 -> 256 (step 16 in [128, 256)), times 2
  KO_CHECK(x[5] == 0.f && std::signbit(x[5]));
  KO_CHECK(x[6] == 0.f);       // 5e-6 underflows
  KO_CHECK(x[7] == -896.f);    // -500 saturates to -448, times 2
  // E5M2, and an array without NaN: every element against the brute force.
  ko::Rng rng(5);
  std::vector<float> y(4096), y0;
  for (auto& v : y) v = float((rng.uniform() * 2 - 1) * 100);
  y0 = y;
  const float scale = 3.f, scaleInv = 1.f / scale;
  const float a2 = ko::fp8QuantizeInPlace(y.data(), y.size(), Fp8Format::E5M2, scale, scaleInv);
  float wantAmax = 0;
  for (size_t i = 0; i < y.size(); i++) {
    wantAmax = std::fmax(wantAmax, std::fabs(y0[i]));
    const int code = refEncode(y0[i] * scale, Fp8Format::E5M2);
    KO_CHECK(code >= 0);
    KO_CHECK(y[i] == float(refDecode(uint8_t(code), Fp8Format::E5M2)) * scaleInv);
  }
  KO_CHECK(a2 == wantAmax);
  // Empty input.
  KO_CHECK(ko::fp8QuantizeInPlace(nullptr, 0, Fp8Format::E4M3, 1.f, 1.f) == 0.f);
}
