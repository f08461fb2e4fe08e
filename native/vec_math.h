// vec_math.h — internal helpers for the CPU ops (not part of the public ops.h contract): an exp over
// arrays that g++ -O3 vectorizes (glibc's expf stays a scalar call without -ffast-math), and row
// reductions written as independent lanes so that they vectorize with a FIXED summation order.
#pragma once
#include <cstdint>
#include <cstring>

namespace ko {
namespace vmath {

constexpr float kExpLo = -86.5f, kExpHi = 88.72283f;

// Clamp to [kExpLo, kExpHi]; NaN passes through.
inline float expClamp(float x) {
  x = x < kExpLo ? kExpLo : x;
  return x > kExpHi ? kExpHi : x;
}

// e^x for x already clamped by expClamp (Cephes expf: range reduction by ln2, degree-6 polynomial,
// 2^n added to the exponent bits; ~1 ulp). x == kExpLo gives 0. No selects and no float->int
// conversion: GCC (default -ftrapping-math) vectorizes a loop over it only when the loop body has no
// branches, which is why the clamp lives in a separate loop (see expShifted).
inline float expClamped(float x) {
  const float t = x * 1.44269504088896341f + 12582912.0f;  // 1.5*2^23 + round(x/ln2)
  const float n = t - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;  // e^r, r in [-ln2/2, ln2/2]
  uint32_t pb, tb;
  std::memcpy(&pb, &p, sizeof pb);
  std::memcpy(&tb, &t, sizeof tb);
  pb += (tb - 0x4B400000u) << 23;  // times 2^n, n = low bits of t's mantissa, in [-125, 128]
  float y;
  std::memcpy(&y, &pb, sizeof y);
  return y * float(x > kExpLo);  // flush the clamped-low end to 0 (keeps NaN)
}

// y[i] = e^(x[i] - shift); y may equal x. Inputs below kExpLo give 0; above kExpHi saturate at
// ~3.4e38; NaN gives NaN.
inline void expShifted(float* y, const float* x, int n, float shift) {
  for (int i = 0; i < n; i++) y[i] = expClamp(x[i] - shift);
  for (int i = 0; i < n; i++) y[i] = expClamped(y[i]);
}

// max of x[0..n), n >= 1. `omp simd` lets the compiler keep vector lanes of maxima (max is exact, so
// the result does not depend on the lane order; a NaN need not win here: e^(NaN - max) is NaN, so the
// softmax sums that use the max still turn NaN).
inline float rowMax(const float* x, int n) {
  float m = x[0];
#pragma omp simd reduction(max : m)
  for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

// Sum of x[0..n) in double over 8 lanes (fixed order).
inline double sumDouble(const float* x, int n) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) lanes[l] += double(x[i + l]);
  double tail = 0;
  for (; i < n; i++) tail += double(x[i]);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
}

// x[i] <- e^(x[i] - shift) in place; returns the sum of the new values in double.
inline double expShiftSum(float* x, int n, float shift) {
  expShifted(x, x, n, shift);
  return sumDouble(x, n);
}

// Sum of e^(x[i] - shift) in double without writing x (through a small stack buffer).
inline double expShiftSumConst(const float* x, int n, float shift) {
  constexpr int kBlock = 512;
  float buf[kBlock];
  double sum = 0;
  for (int i0 = 0; i0 < n; i0 += kBlock) {
    const int len = n - i0 < kBlock ? n - i0 : kBlock;
    expShifted(buf, x + i0, len, shift);
    sum += sumDouble(buf, len);
  }
  return sum;
}

}  // namespace vmath
}  // namespace ko
