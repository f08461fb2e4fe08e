// cross_entropy.cpp — softmax cross-entropy over the vocabulary, targets < 0 ignored.
#include <algorithm>
#include <cmath>

#include "ops.h"

namespace ko {
namespace {

inline float rowMax(const float* x, int V) {
  float m = x[0];
  for (int c = 1; c < V; c++) m = std::max(m, x[c]);
  return m;
}

}  // namespace

// loss = logsumexp(x) - x[t] = (max + log(sum exp(x - max))) - x[t], the sum in double.
double crossEntropyForward(float* losses, const float* logits, const int32_t* targets, int n, int V) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; r++) {
    const int t = targets[r];
    if (t < 0 || V <= 0) {
      losses[r] = 0.0f;
      continue;
    }
    const float* x = logits + size_t(r) * V;
    const float mx = rowMax(x, V);
    double sum = 0;
    for (int c = 0; c < V; c++) sum += std::exp(x[c] - mx);
    losses[r] = float((double(mx) - double(x[t])) + std::log(sum));
  }
  double total = 0;
  for (int r = 0; r < n; r++)
    if (targets[r] >= 0) total += losses[r];
  return total;
}

// logits[r,:] <- (softmax(logits[r]) - onehot(t)) * dlossScale, ignored rows -> 0.
void crossEntropyBackward(float* logits, const int32_t* targets, int n, int V, float dlossScale) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; r++) {
    float* x = logits + size_t(r) * V;
    const int t = targets[r];
    if (t < 0) {
      std::fill(x, x + V, 0.0f);
      continue;
    }
    const float mx = rowMax(x, V);
    double sum = 0;
    for (int c = 0; c < V; c++) {
      const float e = std::exp(x[c] - mx);
      x[c] = e;
      sum += e;
    }
    const float f = float(double(dlossScale) / sum);
    for (int c = 0; c < V; c++) x[c] *= f;
    x[t] -= dlossScale;
  }
}

}  // namespace ko
