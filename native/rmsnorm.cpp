// rmsnorm.cpp — RMSNorm as in HF Llama/Qwen3: y = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps).
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"
#include "parallel.h"

namespace ko {
namespace {

// Sum of a[i]*b[i]*c[i] (c may be null) in double over 8 independent lanes (vectorizable, fixed order).
inline double dotDouble(const float* a, const float* b, const float* c, int n) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  if (c) {
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; l++) lanes[l] += double(a[i + l]) * double(b[i + l]) * double(c[i + l]);
  } else {
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; l++) lanes[l] += double(a[i + l]) * double(b[i + l]);
  }
  double tail = 0;
  for (; i < n; i++) tail += double(a[i]) * double(b[i]) * (c ? double(c[i]) : 1.0);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
}

}  // namespace

void rmsnormForward(float* y, float* rstd, const float* x, const float* w, int rows, int dim, float eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float* xr = x + size_t(r) * dim;
    float* yr = y + size_t(r) * dim;
    const double meanSq = dotDouble(xr, xr, nullptr, dim) / dim;
    const float s = float(1.0 / std::sqrt(meanSq + double(eps)));
    rstd[r] = s;
    for (int c = 0; c < dim; c++) yr[c] = w[c] * (xr[c] * s);
  }
}

// dx = s*w*dy - x * s^3/dim * sum(dy*w*x);  dw += sum_rows dy * (x*s).
void rmsnormBackward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                     int rows, int dim) {
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
      const float* xr = x + size_t(r) * dim;
      const float* dyr = dy + size_t(r) * dim;
      float* dxr = dx + size_t(r) * dim;
      const double s = rstd[r];
      const double dot = dotDouble(dyr, w, xr, dim);
      const float coef = float(s * s * s * dot / dim);
      const float sf = rstd[r];
      for (int c = 0; c < dim; c++) dxr[c] = sf * (w[c] * dyr[c]) - xr[c] * coef;
    }
  }
  if (dw && rows > 0 && dim > 0) {
    // Threads own column ranges and sum rows in order: deterministic for any thread count.
#pragma omp parallel
    {
      int c0, c1;
      threadColumnRange(dim, &c0, &c1);
      if (c0 < c1) {
        const int width = c1 - c0;
        std::vector<double> acc(width, 0.0);
        double* a = acc.data();
        for (int r = 0; r < rows; r++) {
          const float* xr = x + size_t(r) * dim + c0;
          const float* dyr = dy + size_t(r) * dim + c0;
          const float s = rstd[r];
          for (int c = 0; c < width; c++) a[c] += double(dyr[c] * (xr[c] * s));
        }
        for (int c = 0; c < width; c++) dw[c0 + c] += float(a[c]);
      }
    }
  }
}

}  // namespace ko
