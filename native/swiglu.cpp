// swiglu.cpp — h = silu(gate) * up, with gate and up side by side in one [rows, 2F] buffer.
// sigmoid(g) = 1 / (1 + e^-g), with e^-g computed a block at a time by the vectorized vmath exp.
#include <algorithm>

#include "ops.h"
#include "vec_math.h"

namespace ko {
namespace {
constexpr int kBlock = 512;
}  // namespace

void swigluForward(float* h, const float* gateUp, int rows, int F) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float* g = gateUp + size_t(r) * 2 * F;
    const float* u = g + F;
    float* hr = h + size_t(r) * F;
    float e[kBlock];
    for (int c0 = 0; c0 < F; c0 += kBlock) {
      const int len = std::min(kBlock, F - c0);
      for (int c = 0; c < len; c++) e[c] = -g[c0 + c];
      vmath::expShifted(e, e, len, 0.0f);
      for (int c = 0; c < len; c++) hr[c0 + c] = g[c0 + c] / (1.0f + e[c]) * u[c0 + c];
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
    float e[kBlock];
    for (int c0 = 0; c0 < F; c0 += kBlock) {
      const int len = std::min(kBlock, F - c0);
      for (int c = 0; c < len; c++) e[c] = -g[c0 + c];
      vmath::expShifted(e, e, len, 0.0f);
      for (int c = 0; c < len; c++) {
        const int i = c0 + c;
        const float sig = 1.0f / (1.0f + e[c]);
        dg[i] = dhr[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
        du[i] = dhr[i] * (g[i] * sig);
      }
    }
  }
}

}  // namespace ko
