// attention.cpp — causal grouped-query attention over [B, T, H, D] rows with explicit row strides.
// Query head h reads KV head h / (Hq / Hkv) (HF repeat_kv). Only j <= i is ever computed.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ops.h"

namespace ko {
namespace {

// Dot product of length n in float over 8 independent lanes (vectorizable, fixed summation order).
inline float dot8(const float* __restrict a, const float* __restrict b, int n) {
  float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; u++) l[u] += a[i + u] * b[i + u];
  float tail = 0;
  for (; i < n; i++) tail += a[i] * b[i];
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])) + tail;
}

}  // namespace

void attentionForward(float* out, float* probs, const float* q, const float* k, const float* v, int B, int T,
                      int Hq, int Hkv, int D, int qStride, int kvStride) {
  if (B <= 0 || T <= 0 || Hq <= 0 || D <= 0) return;
  const int rep = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(D));
  const size_t outStride = size_t(Hq) * D;
#pragma omp parallel
  {
    std::vector<float> accBuf(D);
    float* acc = accBuf.data();
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < Hq; h++) {
        const int g = h / rep;
        const float* kBase = k + size_t(b) * T * kvStride + size_t(g) * D;
        const float* vBase = v + size_t(b) * T * kvStride + size_t(g) * D;
        for (int i = 0; i < T; i++) {
          const float* qi = q + (size_t(b) * T + i) * qStride + size_t(h) * D;
          float* p = probs + ((size_t(b) * Hq + h) * T + i) * T;
          // scores and their max
          float mx = -std::numeric_limits<float>::infinity();
          for (int j = 0; j <= i; j++) {
            const float s = dot8(qi, kBase + size_t(j) * kvStride, D) * scale;
            p[j] = s;
            mx = std::max(mx, s);
          }
          // softmax: exp relative to the max (the diagonal term makes sum >= 1), sum in double
          double sum = 0;
          for (int j = 0; j <= i; j++) {
            const float e = std::exp(p[j] - mx);
            p[j] = e;
            sum += e;
          }
          const float inv = float(1.0 / sum);
          for (int j = 0; j <= i; j++) p[j] *= inv;
          for (int j = i + 1; j < T; j++) p[j] = 0.0f;
          // out_i = sum_j p_j v_j
          std::fill(acc, acc + D, 0.0f);
          for (int j = 0; j <= i; j++) {
            const float pj = p[j];
            const float* vj = vBase + size_t(j) * kvStride;
            for (int d = 0; d < D; d++) acc[d] += pj * vj[d];
          }
          std::memcpy(out + (size_t(b) * T + i) * outStride + size_t(h) * D, acc, sizeof(float) * D);
        }
      }
    }
  }
}

// With P the saved probabilities and S = scale * q·k:
//   dP_ij = do_i · v_j,   dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'),
//   dq_i = scale * sum_j dS_ij k_j,   dk_j += scale * dS_ij q_i,   dv_j += P_ij do_i.
// One task per (b, kv head) owns dk/dv of that head and dq of its query heads: no write races, and
// every sum runs in a fixed order.
void attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                       const float* k, const float* v, int B, int T, int Hq, int Hkv, int D, int qStride,
                       int kvStride) {
  if (B <= 0 || T <= 0 || Hq <= 0 || D <= 0) return;
  const int rep = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(D));
  const size_t outStride = size_t(Hq) * D;
#pragma omp parallel
  {
    std::vector<float> scratch(size_t(T) + D);
    float* dS = scratch.data();
    float* acc = dS + T;
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int g = 0; g < Hkv; g++) {
        const size_t kvOff = size_t(b) * T * kvStride + size_t(g) * D;
        const float* kBase = k + kvOff;
        const float* vBase = v + kvOff;
        float* dkBase = dk + kvOff;
        float* dvBase = dv + kvOff;
        for (int j = 0; j < T; j++) {
          std::fill(dkBase + size_t(j) * kvStride, dkBase + size_t(j) * kvStride + D, 0.0f);
          std::fill(dvBase + size_t(j) * kvStride, dvBase + size_t(j) * kvStride + D, 0.0f);
        }
        for (int h = g * rep; h < (g + 1) * rep; h++) {
          for (int i = 0; i < T; i++) {
            const float* qi = q + (size_t(b) * T + i) * qStride + size_t(h) * D;
            const float* doi = dout + (size_t(b) * T + i) * outStride + size_t(h) * D;
            const float* p = probs + ((size_t(b) * Hq + h) * T + i) * T;
            double rowDot = 0;
            for (int j = 0; j <= i; j++) {
              const float dp = dot8(doi, vBase + size_t(j) * kvStride, D);
              dS[j] = dp;
              rowDot += double(p[j]) * dp;
            }
            const float rd = float(rowDot);
            std::fill(acc, acc + D, 0.0f);
            for (int j = 0; j <= i; j++) {
              const float pj = p[j];
              const float ds = pj * (dS[j] - rd);
              const float dss = ds * scale;
              const float* kj = kBase + size_t(j) * kvStride;
              float* dkj = dkBase + size_t(j) * kvStride;
              float* dvj = dvBase + size_t(j) * kvStride;
              for (int d = 0; d < D; d++) {
                acc[d] += ds * kj[d];
                dkj[d] += dss * qi[d];
                dvj[d] += pj * doi[d];
              }
            }
            float* dqi = dq + (size_t(b) * T + i) * qStride + size_t(h) * D;
            for (int d = 0; d < D; d++) dqi[d] = acc[d] * scale;
          }
        }
      }
    }
  }
}

}  // namespace ko
