// attention.cpp — causal grouped-query attention over [B, T, H, D] rows with explicit row strides.
// Query head h reads KV head h / (Hq / Hkv) (HF repeat_kv).
//
// Each (b, head) task works through blocks of kQueryBlock query rows; a block [i0, i1) only needs keys
// [0, i1), so the products below skip everything right of the diagonal block. The products go through
// gemmBlocked, which runs serially on the calling thread inside the parallel region (a fixed
// summation order, so the results do not depend on the thread count).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops.h"
#include "vec_math.h"

namespace ko {
namespace {

constexpr int kQueryBlock = 64;

}  // namespace

// S = scale * Q K^T, P = softmax over j <= i (written to probs, zero above the diagonal), O = P V.
void attentionForward(float* out, float* probs, const float* q, const float* k, const float* v, int B, int T,
                      int Hq, int Hkv, int D, int qStride, int kvStride, const int32_t* keyStart) {
  if (B <= 0 || T <= 0 || Hq <= 0 || D <= 0) return;
  const int rep = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(D));
  const int outStride = Hq * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < Hq; h++) {
      const int g = h / rep;
      const float* Q = q + size_t(b) * T * qStride + size_t(h) * D;
      const float* K = k + size_t(b) * T * kvStride + size_t(g) * D;
      const float* V = v + size_t(b) * T * kvStride + size_t(g) * D;
      float* P = probs + (size_t(b) * Hq + h) * T * T;
      float* O = out + size_t(b) * T * outStride + size_t(h) * D;
      for (int i0 = 0; i0 < T; i0 += kQueryBlock) {
        const int i1 = std::min(T, i0 + kQueryBlock), nb = i1 - i0;
        gemmBlocked(false, true, nb, i1, D, scale, Q + size_t(i0) * qStride, qStride, K, kvStride, 0.0f,
                    P + size_t(i0) * T, T);
        for (int i = i0; i < i1; i++) {
          float* p = P + size_t(i) * T;
          const int j0 = keyStart ? keyStart[size_t(b) * T + i] : 0;
          const float mx = vmath::rowMax(p + j0, i + 1 - j0);
          const double sum = vmath::expShiftSum(p + j0, i + 1 - j0, mx);  // >= 1: the max term is e^0
          const float inv = float(1.0 / sum);
          std::fill(p, p + j0, 0.0f);
          for (int j = j0; j <= i; j++) p[j] *= inv;
          std::fill(p + i + 1, p + T, 0.0f);
        }
        gemmBlocked(false, false, nb, D, i1, 1.0f, P + size_t(i0) * T, T, V, kvStride, 0.0f,
                    O + size_t(i0) * outStride, outStride);
      }
    }
  }
}

// With P the saved probabilities:
//   dP = dO V^T,  dS_ij = scale * P_ij (dP_ij - sum_j' P_ij' dP_ij'),
//   dQ = dS K,    dK = dS^T Q,    dV = P^T dO.
// One task per (b, kv head) owns dK/dV of that head and dQ of its query heads: no write races, and the
// contributions of the query heads and query blocks are added in a fixed order.
void attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                       const float* k, const float* v, int B, int T, int Hq, int Hkv, int D, int qStride,
                       int kvStride) {
  if (B <= 0 || T <= 0 || Hq <= 0 || D <= 0) return;
  const int rep = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(D));
  const int outStride = Hq * D;
#pragma omp parallel
  {
    std::vector<float> scratch(size_t(std::min(T, kQueryBlock)) * T);
    float* dS = scratch.data();  // [nb, T] block of dP, then dS
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int g = 0; g < Hkv; g++) {
        const size_t kvOff = size_t(b) * T * kvStride + size_t(g) * D;
        const float* K = k + kvOff;
        const float* V = v + kvOff;
        float* dK = dk + kvOff;
        float* dV = dv + kvOff;
        for (int j = 0; j < T; j++) {
          std::fill(dK + size_t(j) * kvStride, dK + size_t(j) * kvStride + D, 0.0f);
          std::fill(dV + size_t(j) * kvStride, dV + size_t(j) * kvStride + D, 0.0f);
        }
        for (int h = g * rep; h < (g + 1) * rep; h++) {
          const float* Q = q + size_t(b) * T * qStride + size_t(h) * D;
          float* dQ = dq + size_t(b) * T * qStride + size_t(h) * D;
          const float* dO = dout + size_t(b) * T * outStride + size_t(h) * D;
          const float* P = probs + (size_t(b) * Hq + h) * T * T;
          for (int i0 = 0; i0 < T; i0 += kQueryBlock) {
            const int i1 = std::min(T, i0 + kQueryBlock), nb = i1 - i0;
            const float* Pb = P + size_t(i0) * T;
            const float* dOb = dO + size_t(i0) * outStride;
            // dP[I, 0:i1] = dO[I] V[0:i1]^T
            gemmBlocked(false, true, nb, i1, D, 1.0f, dOb, outStride, V, kvStride, 0.0f, dS, T);
            for (int r = 0; r < nb; r++) {
              const int i = i0 + r;
              const float* p = Pb + size_t(r) * T;
              float* ds = dS + size_t(r) * T;
              double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // sum_j P_ij dP_ij in double, fixed order
              int j = 0;
              for (; j + 8 <= i + 1; j += 8)
                for (int l = 0; l < 8; l++) lanes[l] += double(p[j + l]) * double(ds[j + l]);
              for (; j <= i; j++) lanes[0] += double(p[j]) * double(ds[j]);
              const float rd = float(((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                                     ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])));
              for (int j = 0; j <= i; j++) ds[j] = scale * (p[j] * (ds[j] - rd));
              std::fill(ds + i + 1, ds + i1, 0.0f);
            }
            // dQ[I] = dS[I, 0:i1] K[0:i1]
            gemmBlocked(false, false, nb, D, i1, 1.0f, dS, T, K, kvStride, 0.0f, dQ + size_t(i0) * qStride,
                        qStride);
            // dK[0:i1] += dS[I, 0:i1]^T Q[I];  dV[0:i1] += P[I, 0:i1]^T dO[I]
            gemmBlocked(true, false, i1, D, nb, 1.0f, dS, T, Q + size_t(i0) * qStride, qStride, 1.0f, dK,
                        kvStride);
            gemmBlocked(true, false, i1, D, nb, 1.0f, Pb, T, dOb, outStride, 1.0f, dV, kvStride);
          }
        }
      }
    }
  }
}

}  // namespace ko
