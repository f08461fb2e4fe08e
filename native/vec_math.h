// vec_math.h — internal helpers for the CPU ops (not part of the public ops.h contract): an exp that the
// compiler inlines and vectorizes (glibc's expf is a scalar call unless -ffast-math), and row
// reductions written as independent lanes so that they vectorize with a FIXED summation order.
#pragma once
#include <cstdint>
#include <cstring>

namespace ko {
namespace vmath {

// e^x within ~1 ulp over the normal range (Cephes expf: range reduction by ln2, degree-6 polynomial,
// the exponent added to the bits). Results below ~2.7e-38 flush to 0; overflow gives +inf; NaN stays NaN.
inline float exp(float x) {
  constexpr float kLo = -86.5f, kHi = 88.72283f;
  float xc = x > kLo ? x : kLo;  // also maps NaN to kLo, so the int conversion below stays defined
  xc = xc < kHi ? xc : kHi;
  // n = round(x / ln2) via the 1.5*2^23 trick (no libm call, vectorizes on plain SSE2)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;  // e^r in [0.7, 1.42]
  int32_t bits, xbits;
  std::memcpy(&bits, &p, sizeof bits);
  std::memcpy(&xbits, &x, sizeof xbits);
  bits += int32_t(n) * (1 << 23);  // times 2^n: n in [-125, 128] keeps the exponent field in range
  // Out-of-range and NaN inputs are patched with INTEGER selects: GCC (with its default -ftrapping-math)
  // will not if-convert floating-point selects whose operands it sank into a branch, which would
  // stop the calling loops from vectorizing.
  bits = x < kLo ? 0 : bits;
  bits = x > kHi ? 0x7f800000 : bits;  // +inf
  bits = x != x ? xbits : bits;
  float y;
  std::memcpy(&y, &bits, sizeof y);
  return y;
}

// max of x[0..n), n >= 1, over 8 lanes.
inline float rowMax(const float* x, int n) {
  float m[8];
  for (int l = 0; l < 8; l++) m[l] = x[0];
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
  for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
  float r = m[0];
  for (int l = 1; l < 8; l++) r = m[l] > r ? m[l] : r;
  return r;
}

// x[i] <- e^(x[i] - shift) in place; returns the sum of the new values in double (8 lanes, fixed order).
inline double expShiftSum(float* x, int n, float shift) {
  for (int i = 0; i < n; i++) x[i] = exp(x[i] - shift);
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) lanes[l] += double(x[i + l]);
  double tail = 0;
  for (; i < n; i++) tail += double(x[i]);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
}

// Sum of e^(x[i] - shift) in double without writing x (through a small stack buffer).
inline double expShiftSumConst(const float* x, int n, float shift) {
  constexpr int kBlock = 512;
  float buf[kBlock];
  double sum = 0;
  for (int i0 = 0; i0 < n; i0 += kBlock) {
    const int len = n - i0 < kBlock ? n - i0 : kBlock;
    std::memcpy(buf, x + i0, sizeof(float) * size_t(len));
    sum += expShiftSum(buf, len, shift);
  }
  return sum;
}

}  // namespace vmath
}  // namespace ko
