// cross_entropy.cpp — softmax cross-entropy over the vocabulary, targets < 0 ignored.
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "vec_math.h"

namespace ko {

// loss = logsumexp(x) - x[t] = (max - x[t]) + log(sum exp(x - max)), the sum in double.
double crossEntropyForward(float* losses, const float* logits, const int32_t* targets, int n, int V) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; r++) {
    const int t = targets[r];
    if (t < 0 || V <= 0) {
      losses[r] = 0.0f;
      continue;
    }
    const float* x = logits + size_t(r) * V;
    const float mx = vmath::rowMax(x, V);
    const double sum = vmath::expShiftSumConst(x, V, mx);
    losses[r] = float((double(mx) - double(x[t])) + std::log(sum));
  }
  double total = 0;
  for (int r = 0; r < n; r++)
    if (targets[r] >= 0) total += losses[r];
  return total;
}

// logits[r,:] <- (softmax(logits[r]) - onehot(t)) * dlossScale (* rowScale[r]), ignored rows -> 0.
void crossEntropyBackward(float* logits, const int32_t* targets, int n, int V, float dlossScale,
                          const float* rowScale) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; r++) {
    float* x = logits + size_t(r) * V;
    const int t = targets[r];
    if (t < 0) {
      std::fill(x, x + V, 0.0f);
      continue;
    }
    const float scale = rowScale ? dlossScale * rowScale[r] : dlossScale;
    const float mx = vmath::rowMax(x, V);
    const double sum = vmath::expShiftSum(x, V, mx);
    const float f = float(double(scale) / sum);
    for (int c = 0; c < V; c++) x[c] *= f;
    x[t] -= scale;
  }
}

}  // namespace ko
