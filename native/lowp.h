// lowp.h — bit-exact BF16 and FP8 (E4M3, E5M2) rounding on the CPU, the twin of CUDA's conversions.
//
//   * BF16: round-to-nearest-even from FP32 (as __float2bfloat16_rn); NaN stays NaN (quiet).
//   * FP8 E4M3 ("fn": bias 7, no infinities, max ±448, NaN = 0x7F/0xFF) and
//     FP8 E5M2 (bias 15, max ±57344, ±inf = 0x7C/0xFC), both round-to-nearest-even with
//     saturation to the largest finite value (as __nv_cvt_float_to_fp8(x, __NV_SATFINITE, ...) and the
//     PTX cvt.rn.satfinite): |x| beyond the largest finite value, infinities included, becomes ±max;
//     NaN becomes the canonical NaN 0x7F; subnormals are kept (E4M3 down to 2^-9, E5M2 down to 2^-16).
//   * Scaling follows NVIDIA Transformer Engine: q = fp8(x * scale), x ≈ decode(q) * scaleInv with
//     scaleInv = 1/scale; the recipe that chooses `scale` is in fp8_recipe.h.
// Header-only and constexpr-free on purpose: the CUDA tests compare GPU bytes against these functions.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ko {

enum class Fp8Format : uint8_t { E4M3 = 0, E5M2 = 1 };

inline uint32_t floatBits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float bitsFloat(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// ---- BF16 ----------------------------------------------------------------------------------------
inline uint16_t bf16FromFloat(float x) {
  uint32_t u = floatBits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN: keep sign, force quiet
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float floatFromBf16(uint16_t h) { return bitsFloat(uint32_t(h) << 16); }
inline float roundBf16(float x) { return floatFromBf16(bf16FromFloat(x)); }
inline void roundBf16InPlace(float* x, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (long i = 0; i < long(n); i++) x[i] = roundBf16(x[i]);
}

// ---- FP8 -----------------------------------------------------------------------------------------
struct Fp8Spec {
  int manBits, bias;
  float maxFinite;
  uint8_t nanCode;
};
inline Fp8Spec fp8Spec(Fp8Format f) {
  return f == Fp8Format::E4M3 ? Fp8Spec{3, 7, 448.f, 0x7f} : Fp8Spec{2, 15, 57344.f, 0x7f};
}
inline float fp8Max(Fp8Format f) { return fp8Spec(f).maxFinite; }

// Decoded value of an FP8 byte (E4M3 0x7F/0xFF -> NaN; E5M2 0x7C -> inf, 0x7D..0x7F -> NaN).
inline float fp8ToFloat(uint8_t q, Fp8Format f) {
  const Fp8Spec s = fp8Spec(f);
  const bool neg = q & 0x80;
  const int expBits = 7 - s.manBits;
  const int e = (q >> s.manBits) & ((1 << expBits) - 1);
  const int m = q & ((1 << s.manBits) - 1);
  float v;
  if (f == Fp8Format::E4M3 && e == 15 && m == 7) {
    v = NAN;
  } else if (f == Fp8Format::E5M2 && e == 31) {
    v = m == 0 ? INFINITY : NAN;
  } else if (e == 0) {
    v = std::ldexp(float(m), 1 - s.bias - s.manBits);
  } else {
    v = std::ldexp(float((1 << s.manBits) | m), e - s.bias - s.manBits);
  }
  return neg ? -v : v;
}

// Round-to-nearest-even with saturation (see the header comment). Bit manipulation rather than
// ldexp/nearbyint because the CPU emulation casts every weight and activation of a step through it.
inline uint8_t fp8FromFloat(float x, Fp8Format f) {
  const Fp8Spec s = fp8Spec(f);
  uint32_t u = floatBits(x);
  const uint8_t sign = uint8_t((u >> 24) & 0x80);
  u &= 0x7fffffffu;
  // NaN -> the canonical NaN 0x7F whatever its sign, as CUDA's conversion (its software path canonicalizes
  // NaN before converting; checked against __nv_cvt_float_to_fp8 in tests/cpp/test_lowp.cpp).
  if (u > 0x7f800000u) return s.nanCode;
  const int shift = 23 - s.manBits;
  const uint32_t minNormalBits = uint32_t(127 + 1 - s.bias) << 23;  // 2^(1 - bias)
  uint32_t code;
  if (u >= minNormalBits) {
    // Round the FP32 mantissa to manBits bits, ties to even; a carry moves into the exponent as it should.
    uint32_t r = u + ((1u << (shift - 1)) - 1) + ((u >> shift) & 1u);
    r &= ~((1u << shift) - 1);
    const uint32_t maxBits = floatBits(s.maxFinite);
    if (r > maxBits) r = maxBits;  // saturate (infinity included)
    code = ((((r >> 23) - 127) + uint32_t(s.bias)) << s.manBits) | ((r >> shift) & ((1u << s.manBits) - 1));
  } else {
    // Subnormal range: adding 2^(24 - bias - manBits) makes FP32's own rounding (to nearest even) round to
    // the FP8 subnormal quantum 2^(1 - bias - manBits); the result is exact after subtracting it back.
    const float magic = bitsFloat(uint32_t(127 + 24 - s.bias - s.manBits) << 23);
    volatile float sum = bitsFloat(u) + magic;  // volatile: the compiler must not fold (a + c) - c into a
    const float r = sum - magic;
    // r / quantum is 0 .. 2^manBits; 2^manBits is exactly the code of the smallest normal.
    code = uint32_t(r * bitsFloat(uint32_t(127 + s.bias - 1 + s.manBits) << 23));
  }
  return uint8_t(sign | code);
}

inline float roundFp8(float x, Fp8Format f) { return fp8ToFloat(fp8FromFloat(x, f), f); }

// The 256 decoded values of a format, built once: the emulation decodes every cast element, and
// fp8ToFloat's ldexp would dominate its cost.
inline const float* fp8DecodeTable(Fp8Format f) {
  struct Tables {
    float v[2][256];
    Tables() {
      for (int fmt = 0; fmt < 2; fmt++)
        for (int q = 0; q < 256; q++) v[fmt][q] = fp8ToFloat(uint8_t(q), Fp8Format(fmt));
    }
  };
  static const Tables tables;
  return tables.v[int(f)];
}

// In place x[i] <- decode(fp8(x[i] * scale)) * scaleInv (fake quantization) and returns max|x[i]| of the
// input (the amax the delayed-scaling recipe records). The amax ignores NaN, as CUDA's fmaxf does; an
// infinite amax makes the recipe keep its previous scale.
inline float fp8QuantizeInPlace(float* x, size_t n, Fp8Format f, float scale, float scaleInv) {
  const float* decode = fp8DecodeTable(f);
  float amax = 0.f;
  // A max is exact in any order, so the reduction stays deterministic across thread counts.
#pragma omp parallel for schedule(static) reduction(max : amax) if (n > 65536)
  for (long i = 0; i < long(n); i++) {
    const float a = std::fabs(x[i]);
    if (a > amax) amax = a;
    x[i] = decode[fp8FromFloat(x[i] * scale, f)] * scaleInv;
  }
  return amax;
}

}  // namespace ko
