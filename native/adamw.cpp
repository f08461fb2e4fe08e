// adamw.cpp — AdamW with PyTorch semantics (decoupled weight decay), and a deterministic sum of squares.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"

namespace ko {

// Mirrors torch.optim.AdamW's single-tensor path for float32 parameters:
//   p *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g*g;
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), bias corrections bc = 1 - beta^t in double.
void adamwUpdate(float* p, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp,
                 float weightDecay, float gradScale) {
  const double t = double(hp.step);
  const double bc1 = 1.0 - std::pow(double(hp.beta1), t);
  const double bc2 = 1.0 - std::pow(double(hp.beta2), t);
  const float stepSize = float(double(hp.lr) / bc1);
  const float bc2Sqrt = float(std::sqrt(bc2));
  const float decay = float(1.0 - double(hp.lr) * double(weightDecay));
  const float b1 = hp.beta1, b2 = hp.beta2, eps = hp.eps;
  const float oneMinusB1 = 1.0f - b1, oneMinusB2 = 1.0f - b2;
  const int64_t count = int64_t(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; i++) {
    const float g = grad[i] * gradScale;
    const float mi = m[i] + oneMinusB1 * (g - m[i]);  // torch lerp_: m + w*(g - m)
    const float vi = b2 * v[i] + oneMinusB2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2Sqrt + eps;
    p[i] = p[i] * decay - stepSize * (mi / denom);
  }
}

// Fixed chunks (independent of the thread count), each summed in double over 8 lanes, then the
// chunk sums added in order: the same bits on every run and every thread count.
double sumSquares(const float* g, size_t n) {
  constexpr size_t kChunk = 1 << 16;
  const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
  if (chunks == 0) return 0.0;
  std::vector<double> partial(size_t(chunks), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; c++) {
    const size_t begin = size_t(c) * kChunk, end = std::min(n, begin + kChunk);
    double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = begin;
    for (; i + 8 <= end; i += 8)
      for (int l = 0; l < 8; l++) lanes[l] += double(g[i + l]) * double(g[i + l]);
    double tail = 0;
    for (; i < end; i++) tail += double(g[i]) * double(g[i]);
    partial[size_t(c)] =
        ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace ko
