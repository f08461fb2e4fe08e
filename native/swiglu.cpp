// swiglu.cpp — h = silu(gate) * up, with gate and up side by side in one [rows, 2F] buffer.
#include <cmath>

#include "ops.h"
#include "vec_math.h"

namespace ko {

void swigluForward(float* h, const float* gateUp, int rows, int F) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float* g = gateUp + size_t(r) * 2 * F;
    const float* u = g + F;
    float* hr = h + size_t(r) * F;
    for (int c = 0; c < F; c++) {
      const float sig = 1.0f / (1.0f + vmath::exp(-g[c]));
      hr[c] = g[c] * sig * u[c];
    }
  }
}

// d gate = dh * up * sig * (1 + gate * (1 - sig)),  d up = dh * silu(gate).
void swigluBackward(float* dGateUp, const float* dh, const float* gateUp, int rows, int F) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float* g = gateUp + size_t(r) * 2 * F;
    const float* u = g + F;
    const float* dhr = dh + size_t(r) * F;
    float* dg = dGateUp + size_t(r) * 2 * F;
    float* du = dg + F;
    for (int c = 0; c < F; c++) {
      const float sig = 1.0f / (1.0f + vmath::exp(-g[c]));
      const float silu = g[c] * sig;
      dg[c] = dhr[c] * u[c] * sig * (1.0f + g[c] * (1.0f - sig));
      du[c] = dhr[c] * silu;
    }
  }
}

}  // namespace ko
