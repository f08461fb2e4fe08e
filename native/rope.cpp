// rope.cpp — rotary position embedding, HF "rotate_half" convention: element i pairs with i + D/2.
//   out[i]       = x[i] * cos - x[i+D/2] * sin
//   out[i + D/2] = x[i+D/2] * cos + x[i] * sin,     angle = float(pos) * invFreq[i]
// The inverse rotation (sin -> -sin) is the transpose, i.e. the backward pass.
#include <cmath>
#include <vector>

#include "ops.h"

namespace ko {

void ropeApply(float* x, int B, int T, int H, int D, int rowStride, const float* invFreq, int posOffset,
               bool inverse, const int32_t* positions) {
  if (B <= 0 || T <= 0 || H <= 0 || D <= 0) return;
  const int half = D / 2;
  // cos/sin table for the T positions, shared by every batch row and head. The angle is formed in
  // float like HF (inv_freq.float() @ position_ids.float()); cos/sin of it are correctly rounded.
  std::vector<float> table(size_t(T) * 2 * half);
  const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
  for (int t = 0; t < T; t++) {
    float* cs = table.data() + size_t(t) * 2 * half;
    const float pos = float(posOffset + t);
    for (int i = 0; i < half; i++) {
      const float angle = pos * invFreq[i];
      cs[i] = float(std::cos(double(angle)));
      cs[half + i] = sign * float(std::sin(double(angle)));
    }
  }
  const int rows = B * T;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const int t = positions ? positions[r] : r % T;  // positions[] index the same 0..T-1 table (posOffset 0)
    const float* cosv = table.data() + size_t(t) * 2 * half;
    const float* sinv = cosv + half;
    float* row = x + size_t(r) * rowStride;
    for (int h = 0; h < H; h++) {
      float* x1 = row + size_t(h) * D;
      float* x2 = x1 + half;
      for (int i = 0; i < half; i++) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * cosv[i] - b * sinv[i];
        x2[i] = b * cosv[i] + a * sinv[i];
      }
    }
  }
}

}  // namespace ko
