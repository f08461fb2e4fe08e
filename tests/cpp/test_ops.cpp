// test_ops.cpp — group `ops`: every CPU op against a naive float64 reference written here (plain loops,
// independent of native/*.cpp), and every backward against central finite differences of that
// reference, with loss = sum(out * randomWeights) so that every output counts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "ops.h"
#include "rng.h"
#include "vec_math.h"

using Vec = std::vector<double>;
using FVec = std::vector<float>;

namespace {

FVec randomF(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  ko::Rng r(seed);
  FVec v(n);
  for (auto& x : v) x = float(lo + (hi - lo) * r.uniform());
  return v;
}
Vec toD(const FVec& v) { return Vec(v.begin(), v.end()); }
double dotD(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}
// Central differences of lossOf at x, one coordinate at a time.
template <class F>
Vec fdGrad(F lossOf, Vec x, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); i++) {
    const double s = x[i];
    x[i] = s + h;
    const double lp = lossOf(x);
    x[i] = s - h;
    const double lm = lossOf(x);
    x[i] = s;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}
Vec diff(const FVec& after, const FVec& before) {
  Vec d(after.size());
  for (size_t i = 0; i < after.size(); i++) d[i] = double(after[i]) - double(before[i]);
  return d;
}

// ---- float64 references ----------------------------------------------------------------------

Vec refLinear(const Vec& x, const Vec& w, int M, int K, int N) {
  Vec y(size_t(M) * N, 0.0);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++) y[size_t(m) * N + n] += x[size_t(m) * K + k] * w[size_t(n) * K + k];
  return y;
}

Vec refEmbedding(const Vec& table, const std::vector<uint32_t>& ids, int dim) {
  Vec out;
  for (uint32_t id : ids)
    for (int c = 0; c < dim; c++) out.push_back(table[size_t(id) * dim + c]);
  return out;
}

Vec refRmsnorm(const Vec& x, const Vec& w, int rows, int dim, double eps, Vec* rstd = nullptr) {
  Vec y(x.size());
  if (rstd) rstd->assign(rows, 0.0);
  for (int r = 0; r < rows; r++) {
    double ss = 0;
    for (int c = 0; c < dim; c++) ss += x[size_t(r) * dim + c] * x[size_t(r) * dim + c];
    const double s = 1.0 / std::sqrt(ss / dim + eps);
    if (rstd) (*rstd)[r] = s;
    for (int c = 0; c < dim; c++) y[size_t(r) * dim + c] = x[size_t(r) * dim + c] * s * w[c];
  }
  return y;
}

// x: contiguous [B,T,H,D]; pair (i, i + D/2) rotated by (pos * invFreq[i]), negated when inverse.
Vec refRope(const Vec& x, int B, int T, int H, int D, const FVec& invFreq, int posOffset, bool inverse) {
  Vec y(x.size());
  const int half = D / 2;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int h = 0; h < H; h++) {
        const size_t base = ((size_t(b) * T + t) * H + h) * D;
        for (int i = 0; i < half; i++) {
          double ang = double(posOffset + t) * double(invFreq[i]);
          if (inverse) ang = -ang;
          const double a = x[base + i], c = x[base + half + i];
          y[base + i] = a * std::cos(ang) - c * std::sin(ang);
          y[base + half + i] = c * std::cos(ang) + a * std::sin(ang);
        }
      }
  return y;
}

// q: [B,T,Hq,D], k,v: [B,T,Hkv,D] contiguous. Returns out [B,T,Hq,D]; probs [B,Hq,T,T] if asked.
Vec refAttention(const Vec& q, const Vec& k, const Vec& v, int B, int T, int Hq, int Hkv, int D,
                 Vec* probs = nullptr) {
  Vec out(size_t(B) * T * Hq * D, 0.0);
  if (probs) probs->assign(size_t(B) * Hq * T * T, 0.0);
  const double scale = 1.0 / std::sqrt(double(D));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < Hq; h++) {
      const int g = h / (Hq / Hkv);
      for (int i = 0; i < T; i++) {
        Vec s(i + 1);
        double mx = -1e300;
        for (int j = 0; j <= i; j++) {
          double d = 0;
          for (int e = 0; e < D; e++)
            d += q[((size_t(b) * T + i) * Hq + h) * D + e] * k[((size_t(b) * T + j) * Hkv + g) * D + e];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j <= i; j++) sum += std::exp(s[j] - mx);
        for (int j = 0; j <= i; j++) {
          const double p = std::exp(s[j] - mx) / sum;
          if (probs) (*probs)[((size_t(b) * Hq + h) * T + i) * T + j] = p;
          for (int e = 0; e < D; e++)
            out[((size_t(b) * T + i) * Hq + h) * D + e] += p * v[((size_t(b) * T + j) * Hkv + g) * D + e];
        }
      }
    }
  return out;
}

Vec refSwiglu(const Vec& gu, int rows, int F) {
  Vec h(size_t(rows) * F);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < F; c++) {
      const double g = gu[size_t(r) * 2 * F + c], u = gu[size_t(r) * 2 * F + F + c];
      h[size_t(r) * F + c] = g / (1.0 + std::exp(-g)) * u;
    }
  return h;
}

Vec refCrossEntropy(const Vec& logits, const std::vector<int32_t>& targets, int V) {
  Vec loss(targets.size(), 0.0);
  for (size_t r = 0; r < targets.size(); r++) {
    if (targets[r] < 0) continue;
    double mx = -1e300;
    for (int c = 0; c < V; c++) mx = std::max(mx, logits[r * V + c]);
    double sum = 0;
    for (int c = 0; c < V; c++) sum += std::exp(logits[r * V + c] - mx);
    loss[r] = mx + std::log(sum) - logits[r * V + targets[r]];
  }
  return loss;
}

// Packs contiguous [B,T,H,D] into rows of `stride` floats at column offset `col` of dst.
void scatterRows(FVec& dst, const FVec& src, int rows, int width, int stride, int col) {
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < width; c++) dst[size_t(r) * stride + col + c] = src[size_t(r) * width + c];
}
FVec gatherRows(const FVec& src, int rows, int width, int stride, int col) {
  FVec out(size_t(rows) * width);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < width; c++) out[size_t(r) * width + c] = src[size_t(r) * stride + col + c];
  return out;
}

FVec ropeInvFreq(int D, double theta) {
  FVec f(D / 2);
  for (int i = 0; i < D / 2; i++) f[i] = float(1.0 / std::pow(theta, 2.0 * i / D));
  return f;
}

}  // namespace

// ---- linear ---------------------------------------------------------------------------------------

KO_TEST(ops, ops_linear_forward) {
  const int M = 7, K = 13, N = 11;
  FVec x = randomF(size_t(M) * K, 1), w = randomF(size_t(N) * K, 2), y(size_t(M) * N, 123.f);
  ko::linearForward(y.data(), x.data(), w.data(), M, K, N);
  Vec ref = refLinear(toD(x), toD(w), M, K, N);
  KO_CHECK_REL(y.data(), ref.data(), ref.size(), 1e-5);
}

KO_TEST(ops, ops_linear_backward) {
  const int M = 7, K = 13, N = 11;
  FVec x = randomF(size_t(M) * K, 3), w = randomF(size_t(N) * K, 4), dy = randomF(size_t(M) * N, 5);
  FVec dx(size_t(M) * K, 77.f), dw0 = randomF(size_t(N) * K, 6), dw = dw0;
  ko::linearBackward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), M, K, N);
  const Vec W = toD(dy), xd = toD(x), wd = toD(w);
  Vec gx = fdGrad([&](const Vec& xx) { return dotD(refLinear(xx, wd, M, K, N), W); }, xd);
  Vec gw = fdGrad([&](const Vec& ww) { return dotD(refLinear(xd, ww, M, K, N), W); }, wd);
  KO_CHECK_REL(dx.data(), gx.data(), gx.size(), 1e-4);
  Vec dwDelta = diff(dw, dw0);  // dw accumulated on top of its previous contents
  KO_CHECK_REL(dwDelta.data(), gw.data(), gw.size(), 1e-4);
  // dx == nullptr skips dx and still accumulates dw a second time
  ko::linearBackward(nullptr, dw.data(), dy.data(), x.data(), w.data(), M, K, N);
  Vec two(gw.size());
  for (size_t i = 0; i < gw.size(); i++) two[i] = 2 * gw[i];
  dwDelta = diff(dw, dw0);
  KO_CHECK_REL(dwDelta.data(), two.data(), two.size(), 1e-4);
}

// ---- embedding ------------------------------------------------------------------------------------

KO_TEST(ops, ops_embedding_forward) {
  const int V = 9, dim = 37;
  FVec table = randomF(size_t(V) * dim, 10);
  std::vector<uint32_t> ids = {3, 1, 3, 0, 8, 1, 4};
  FVec out(ids.size() * dim);
  ko::embeddingForward(out.data(), ids.data(), table.data(), int(ids.size()), dim);
  Vec ref = refEmbedding(toD(table), ids, dim);
  for (size_t i = 0; i < ref.size(); i++) KO_CHECK(double(out[i]) == ref[i]);
}

KO_TEST(ops, ops_embedding_backward) {
  for (int dim : {5, 37, 100}) {
    const int V = 6;
    std::vector<uint32_t> ids = {3, 1, 3, 0, 3, 1, 5, 5, 3};
    const int n = int(ids.size());
    FVec table = randomF(size_t(V) * dim, 11), dout = randomF(size_t(n) * dim, 12);
    FVec dt0 = randomF(size_t(V) * dim, 13), dt = dt0;
    ko::embeddingBackward(dt.data(), ids.data(), dout.data(), n, dim);
    const Vec W = toD(dout);
    Vec g = fdGrad([&](const Vec& t) { return dotD(refEmbedding(t, ids, dim), W); }, toD(table));
    Vec delta = diff(dt, dt0);
    KO_CHECK_REL(delta.data(), g.data(), g.size(), 1e-5);
    // row 2 is never looked up: its gradient is untouched
    for (int c = 0; c < dim; c++) KO_CHECK(dt[size_t(2) * dim + c] == dt0[size_t(2) * dim + c]);
  }
}

// ---- rmsnorm --------------------------------------------------------------------------------------

KO_TEST(ops, ops_rmsnorm_forward) {
  const int rows = 5, dim = 37;
  const float eps = 1e-5f;
  FVec x = randomF(size_t(rows) * dim, 20, -2, 2), w = randomF(dim, 21, 0.5, 1.5);
  FVec y(x.size()), rstd(rows);
  ko::rmsnormForward(y.data(), rstd.data(), x.data(), w.data(), rows, dim, eps);
  Vec refR;
  Vec ref = refRmsnorm(toD(x), toD(w), rows, dim, eps, &refR);
  KO_CHECK_REL(y.data(), ref.data(), ref.size(), 1e-6);
  KO_CHECK_REL(rstd.data(), refR.data(), refR.size(), 1e-6);
}

KO_TEST(ops, ops_rmsnorm_backward) {
  const int rows = 5, dim = 37;
  const float eps = 1e-5f;
  FVec x = randomF(size_t(rows) * dim, 22, -2, 2), w = randomF(dim, 23, 0.5, 1.5);
  FVec y(x.size()), rstd(rows), dy = randomF(x.size(), 24);
  ko::rmsnormForward(y.data(), rstd.data(), x.data(), w.data(), rows, dim, eps);
  FVec dx(x.size(), 5.f), dw0 = randomF(dim, 25), dw = dw0;
  ko::rmsnormBackward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), rows, dim);
  const Vec W = toD(dy), xd = toD(x), wd = toD(w);
  Vec gx = fdGrad([&](const Vec& xx) { return dotD(refRmsnorm(xx, wd, rows, dim, eps), W); }, xd);
  Vec gw = fdGrad([&](const Vec& ww) { return dotD(refRmsnorm(xd, ww, rows, dim, eps), W); }, wd);
  KO_CHECK_REL(dx.data(), gx.data(), gx.size(), 1e-4);
  Vec delta = diff(dw, dw0);
  KO_CHECK_REL(delta.data(), gw.data(), gw.size(), 1e-4);
}

KO_TEST(ops, ops_rmsnorm_backward_deterministic) {
  const int rows = 203, dim = 333;
  FVec x = randomF(size_t(rows) * dim, 26, -2, 2), w = randomF(dim, 27, 0.5, 1.5), dy = randomF(x.size(), 28);
  FVec y(x.size()), rstd(rows);
  ko::rmsnormForward(y.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-6f);
  FVec dx1(x.size()), dx2(x.size()), dw1(dim, 0.25f), dw2(dim, 0.25f);
  ko::rmsnormBackward(dx1.data(), dw1.data(), dy.data(), x.data(), w.data(), rstd.data(), rows, dim);
  ko::rmsnormBackward(dx2.data(), dw2.data(), dy.data(), x.data(), w.data(), rstd.data(), rows, dim);
  KO_CHECK(std::memcmp(dx1.data(), dx2.data(), dx1.size() * sizeof(float)) == 0);
  KO_CHECK(std::memcmp(dw1.data(), dw2.data(), dw1.size() * sizeof(float)) == 0);
}

// ---- rope -----------------------------------------------------------------------------------------

KO_TEST(ops, ops_rope_forward) {
  const int B = 2, T = 5, H = 3, D = 8;
  FVec inv = ropeInvFreq(D, 10000.0), x = randomF(size_t(B) * T * H * D, 30);
  FVec y = x;
  ko::ropeApply(y.data(), B, T, H, D, H * D, inv.data(), 0, false);
  Vec ref = refRope(toD(x), B, T, H, D, inv, 0, false);
  KO_CHECK_REL(y.data(), ref.data(), ref.size(), 1e-6);
}

KO_TEST(ops, ops_rope_inverse_roundtrip) {
  const int B = 2, T = 9, H = 3, D = 16;
  FVec inv = ropeInvFreq(D, 500000.0), x = randomF(size_t(B) * T * H * D, 31);
  FVec y = x;
  ko::ropeApply(y.data(), B, T, H, D, H * D, inv.data(), 3, false);
  ko::ropeApply(y.data(), B, T, H, D, H * D, inv.data(), 3, true);
  KO_CHECK_REL(y.data(), x.data(), x.size(), 1e-6);
}

KO_TEST(ops, ops_rope_backward) {
  const int B = 2, T = 5, H = 2, D = 8, pos0 = 4;
  FVec inv = ropeInvFreq(D, 10000.0), x = randomF(size_t(B) * T * H * D, 32), W = randomF(x.size(), 33);
  // backward of y = R x is dx = R^T dy = inverse rotation of dy
  FVec dx = W;
  ko::ropeApply(dx.data(), B, T, H, D, H * D, inv.data(), pos0, true);
  const Vec Wd = toD(W);
  Vec g = fdGrad([&](const Vec& xx) { return dotD(refRope(xx, B, T, H, D, inv, pos0, false), Wd); }, toD(x));
  KO_CHECK_REL(dx.data(), g.data(), g.size(), 1e-4);
}

KO_TEST(ops, ops_rope_strided_offset) {
  // q heads rotated in place inside a fused row of width H*D + 11 (e.g. [q | k | v]), positions from 7
  const int B = 2, T = 6, H = 3, D = 8, stride = H * D + 11, pos0 = 7;
  FVec inv = ropeInvFreq(D, 10000.0), q = randomF(size_t(B) * T * H * D, 34);
  FVec buf = randomF(size_t(B) * T * stride, 35);
  scatterRows(buf, q, B * T, H * D, stride, 0);
  const FVec before = buf;
  ko::ropeApply(buf.data(), B, T, H, D, stride, inv.data(), pos0, false);
  FVec got = gatherRows(buf, B * T, H * D, stride, 0);
  Vec ref = refRope(toD(q), B, T, H, D, inv, pos0, false);
  KO_CHECK_REL(got.data(), ref.data(), ref.size(), 1e-6);
  for (int r = 0; r < B * T; r++)
    for (int c = H * D; c < stride; c++) KO_CHECK(buf[size_t(r) * stride + c] == before[size_t(r) * stride + c]);
  ko::ropeApply(buf.data(), B, T, H, D, stride, inv.data(), pos0, true);
  KO_CHECK_REL(buf.data(), before.data(), buf.size(), 1e-6);
}

// ---- attention ------------------------------------------------------------------------------------

namespace {

// Forward + backward in a fused [q | k | v] row layout (strides > H*D) when `fused`, contiguous otherwise;
// checks out/probs against the float64 reference and dq/dk/dv against finite differences.
void attentionCase(int B, int T, int Hq, int Hkv, int D, bool fused, uint64_t seed) {
  const int rows = B * T, qW = Hq * D, kvW = Hkv * D;
  FVec q = randomF(size_t(rows) * qW, seed), k = randomF(size_t(rows) * kvW, seed + 1);
  FVec v = randomF(size_t(rows) * kvW, seed + 2), dout = randomF(size_t(rows) * qW, seed + 3);
  const int stride = fused ? qW + 2 * kvW : 0;
  FVec qkv, dqkv;
  const float *qp, *kp, *vp;
  float *dqp, *dkp, *dvp;
  FVec dq(q.size()), dk(k.size()), dv(v.size());
  int qStride = qW, kvStride = kvW;
  if (fused) {
    qkv.assign(size_t(rows) * stride, 0.f);
    scatterRows(qkv, q, rows, qW, stride, 0);
    scatterRows(qkv, k, rows, kvW, stride, qW);
    scatterRows(qkv, v, rows, kvW, stride, qW + kvW);
    dqkv.assign(qkv.size(), 1e30f);  // garbage: every slot must be overwritten
    qp = qkv.data();
    kp = qp + qW;
    vp = qp + qW + kvW;
    dqp = dqkv.data();
    dkp = dqp + qW;
    dvp = dqp + qW + kvW;
    qStride = kvStride = stride;
  } else {
    std::fill(dq.begin(), dq.end(), 1e30f);
    std::fill(dk.begin(), dk.end(), 1e30f);
    std::fill(dv.begin(), dv.end(), 1e30f);
    qp = q.data(), kp = k.data(), vp = v.data();
    dqp = dq.data(), dkp = dk.data(), dvp = dv.data();
  }
  FVec out(size_t(rows) * qW, 9.f), probs(size_t(B) * Hq * T * T, 9.f);
  ko::attentionForward(out.data(), probs.data(), qp, kp, vp, B, T, Hq, Hkv, D, qStride, kvStride);
  Vec refP;
  const Vec qd = toD(q), kd = toD(k), vd = toD(v), W = toD(dout);
  Vec ref = refAttention(qd, kd, vd, B, T, Hq, Hkv, D, &refP);
  KO_CHECK_REL(out.data(), ref.data(), ref.size(), 1e-5);
  KO_CHECK_REL(probs.data(), refP.data(), refP.size(), 1e-5);
  for (int bh = 0; bh < B * Hq; bh++)
    for (int i = 0; i < T; i++)
      for (int j = i + 1; j < T; j++) KO_CHECK(probs[(size_t(bh) * T + i) * T + j] == 0.0f);

  ko::attentionBackward(dqp, dkp, dvp, dout.data(), probs.data(), qp, kp, vp, B, T, Hq, Hkv, D, qStride, kvStride);
  if (fused) {
    dq = gatherRows(dqkv, rows, qW, stride, 0);
    dk = gatherRows(dqkv, rows, kvW, stride, qW);
    dv = gatherRows(dqkv, rows, kvW, stride, qW + kvW);
  }
  Vec gq = fdGrad([&](const Vec& x) { return dotD(refAttention(x, kd, vd, B, T, Hq, Hkv, D), W); }, qd);
  Vec gk = fdGrad([&](const Vec& x) { return dotD(refAttention(qd, x, vd, B, T, Hq, Hkv, D), W); }, kd);
  Vec gv = fdGrad([&](const Vec& x) { return dotD(refAttention(qd, kd, x, B, T, Hq, Hkv, D), W); }, vd);
  KO_CHECK_REL(dq.data(), gq.data(), gq.size(), 1e-4);
  KO_CHECK_REL(dk.data(), gk.data(), gk.size(), 1e-4);
  KO_CHECK_REL(dv.data(), gv.data(), gv.size(), 1e-4);
}

}  // namespace

KO_TEST(ops, ops_attention_gqa) { attentionCase(2, 6, 4, 2, 8, false, 40); }
KO_TEST(ops, ops_attention_gqa_fused_strides) { attentionCase(2, 7, 4, 2, 8, true, 50); }
KO_TEST(ops, ops_attention_mha) { attentionCase(2, 5, 3, 3, 8, false, 60); }
KO_TEST(ops, ops_attention_odd_head_dim) { attentionCase(1, 5, 2, 1, 6, true, 70); }

// T larger than the kernel's query block (64), so several query blocks and their key ranges are
// exercised; gradients checked along random directions (a full coordinate-wise check would be slow).
KO_TEST(ops, ops_attention_multi_block) {
  const int B = 2, T = 150, Hq = 4, Hkv = 2, D = 16, rows = B * T, qW = Hq * D, kvW = Hkv * D;
  const int stride = qW + 2 * kvW + 3;
  FVec q = randomF(size_t(rows) * qW, 75), k = randomF(size_t(rows) * kvW, 76);
  FVec v = randomF(size_t(rows) * kvW, 77), dout = randomF(size_t(rows) * qW, 78);
  FVec qkv(size_t(rows) * stride, 0.f), dqkv(qkv.size(), 1e30f);
  scatterRows(qkv, q, rows, qW, stride, 0);
  scatterRows(qkv, k, rows, kvW, stride, qW);
  scatterRows(qkv, v, rows, kvW, stride, qW + kvW);
  FVec out(size_t(rows) * qW), probs(size_t(B) * Hq * T * T, 9.f);
  const float* base = qkv.data();
  ko::attentionForward(out.data(), probs.data(), base, base + qW, base + qW + kvW, B, T, Hq, Hkv, D, stride, stride);
  const Vec qd = toD(q), kd = toD(k), vd = toD(v), W = toD(dout);
  Vec refP;
  Vec ref = refAttention(qd, kd, vd, B, T, Hq, Hkv, D, &refP);
  KO_CHECK_REL(out.data(), ref.data(), ref.size(), 1e-5);
  KO_CHECK_REL(probs.data(), refP.data(), refP.size(), 1e-5);
  ko::attentionBackward(dqkv.data(), dqkv.data() + qW, dqkv.data() + qW + kvW, dout.data(), probs.data(), base,
                        base + qW, base + qW + kvW, B, T, Hq, Hkv, D, stride, stride);
  const FVec dq = gatherRows(dqkv, rows, qW, stride, 0), dk = gatherRows(dqkv, rows, kvW, stride, qW);
  const FVec dv = gatherRows(dqkv, rows, kvW, stride, qW + kvW);
  const double h = 1e-4;
  for (int which = 0; which < 3; which++) {
    const Vec& x0 = which == 0 ? qd : which == 1 ? kd : vd;
    const FVec& g = which == 0 ? dq : which == 1 ? dk : dv;
    for (int dir = 0; dir < 2; dir++) {
      Vec u = toD(randomF(x0.size(), 1000 + 10 * which + dir)), xp = x0, xm = x0;
      for (size_t i = 0; i < u.size(); i++) xp[i] += h * u[i], xm[i] -= h * u[i];
      auto lossAt = [&](const Vec& x) {
        return dotD(refAttention(which == 0 ? x : qd, which == 1 ? x : kd, which == 2 ? x : vd, B, T, Hq, Hkv, D),
                    W);
      };
      const double fd = (lossAt(xp) - lossAt(xm)) / (2 * h);
      double an = 0;
      for (size_t i = 0; i < u.size(); i++) an += double(g[i]) * u[i];
      KO_CHECK_NEAR(an, fd, 1e-4 * (std::fabs(fd) + 1.0));
    }
  }
}

KO_TEST(ops, ops_attention_backward_deterministic) {
  const int B = 2, T = 33, Hq = 4, Hkv = 2, D = 16, rows = B * T;
  FVec q = randomF(size_t(rows) * Hq * D, 80), k = randomF(size_t(rows) * Hkv * D, 81);
  FVec v = randomF(size_t(rows) * Hkv * D, 82), dout = randomF(size_t(rows) * Hq * D, 83);
  FVec out(q.size()), probs(size_t(B) * Hq * T * T);
  ko::attentionForward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, Hq, Hkv, D, Hq * D, Hkv * D);
  FVec dq[2], dk[2], dv[2];
  for (int run = 0; run < 2; run++) {
    dq[run].assign(q.size(), 0.f);
    dk[run].assign(k.size(), 0.f);
    dv[run].assign(v.size(), 0.f);
    ko::attentionBackward(dq[run].data(), dk[run].data(), dv[run].data(), dout.data(), probs.data(), q.data(),
                          k.data(), v.data(), B, T, Hq, Hkv, D, Hq * D, Hkv * D);
  }
  KO_CHECK(std::memcmp(dq[0].data(), dq[1].data(), q.size() * sizeof(float)) == 0);
  KO_CHECK(std::memcmp(dk[0].data(), dk[1].data(), k.size() * sizeof(float)) == 0);
  KO_CHECK(std::memcmp(dv[0].data(), dv[1].data(), v.size() * sizeof(float)) == 0);
}

// ---- swiglu ---------------------------------------------------------------------------------------

KO_TEST(ops, ops_swiglu_forward) {
  const int rows = 4, F = 19;
  FVec gu = randomF(size_t(rows) * 2 * F, 90, -4, 4), h(size_t(rows) * F);
  gu[0] = -100.f;  // exp overflow side: silu -> 0 without NaN
  gu[1] = 100.f;
  ko::swigluForward(h.data(), gu.data(), rows, F);
  Vec ref = refSwiglu(toD(gu), rows, F);
  KO_CHECK_REL(h.data(), ref.data(), ref.size(), 1e-6);
}

KO_TEST(ops, ops_swiglu_backward) {
  const int rows = 4, F = 19;
  FVec gu = randomF(size_t(rows) * 2 * F, 91, -4, 4), dh = randomF(size_t(rows) * F, 92);
  FVec dgu(gu.size(), 3.f);
  ko::swigluBackward(dgu.data(), dh.data(), gu.data(), rows, F);
  const Vec W = toD(dh);
  Vec g = fdGrad([&](const Vec& x) { return dotD(refSwiglu(x, rows, F), W); }, toD(gu));
  KO_CHECK_REL(dgu.data(), g.data(), g.size(), 1e-4);
  // saturated gates give finite gradients
  FVec gu2 = {-100.f, 100.f, 2.f, 3.f}, dh2 = {1.f, 1.f}, d2(4);
  ko::swigluBackward(d2.data(), dh2.data(), gu2.data(), 1, 2);
  for (float x : d2) KO_CHECK(std::isfinite(x));
}

// ---- cross-entropy --------------------------------------------------------------------------------

KO_TEST(ops, ops_cross_entropy_forward) {
  const int n = 6, V = 29;
  FVec logits = randomF(size_t(n) * V, 100, -3, 3);
  for (int c = 0; c < V; c++) logits[size_t(2) * V + c] += 80.f;  // large logits: needs max subtraction
  std::vector<int32_t> targets = {3, 0, 28, -1, 7, 7};
  FVec losses(n, 42.f);
  const double total = ko::crossEntropyForward(losses.data(), logits.data(), targets.data(), n, V);
  Vec ref = refCrossEntropy(toD(logits), targets, V);
  KO_CHECK_REL(losses.data(), ref.data(), ref.size(), 1e-6);
  KO_CHECK(losses[3] == 0.0f);
  double refTotal = 0;
  for (double l : ref) refTotal += l;
  KO_CHECK_NEAR(total, refTotal, 1e-6 * refTotal);
}

KO_TEST(ops, ops_cross_entropy_backward) {
  const int n = 5, V = 23;
  const float scale = 0.37f;
  FVec logits = randomF(size_t(n) * V, 101, -3, 3);
  for (int c = 0; c < V; c++) logits[size_t(1) * V + c] += 60.f;
  std::vector<int32_t> targets = {4, 22, -1, 0, 4};
  FVec grad = logits;
  ko::crossEntropyBackward(grad.data(), targets.data(), n, V, scale);
  Vec g = fdGrad(
      [&](const Vec& x) {
        Vec l = refCrossEntropy(x, targets, V);
        double s = 0;
        for (double v : l) s += v;
        return s * scale;
      },
      toD(logits));
  KO_CHECK_REL(grad.data(), g.data(), g.size(), 1e-4);
  for (int c = 0; c < V; c++) KO_CHECK(grad[size_t(2) * V + c] == 0.0f);  // ignored row
  // each non-ignored row sums to ~0 (softmax minus one-hot)
  for (int r : {0, 1, 3, 4}) {
    double s = 0;
    for (int c = 0; c < V; c++) s += grad[size_t(r) * V + c];
    KO_CHECK_NEAR(s, 0.0, 1e-6);
  }
}

// ---- adamw ----------------------------------------------------------------------------------------

KO_TEST(ops, ops_adamw_three_steps) {
  const size_t n = 3001;
  FVec p = randomF(n, 110), m(n, 0.f), v(n, 0.f);
  Vec pr = toD(p), mr(n, 0.0), vr(n, 0.0);
  ko::AdamWParams hp{};
  hp.lr = 1e-2f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.95f;
  hp.eps = 1e-8f;
  const float wd = 0.1f;
  const float gradScales[3] = {1.0f, 0.5f, 0.8f};
  for (int step = 1; step <= 3; step++) {
    FVec g = randomF(n, 120 + step, -2, 2);
    hp.step = step;
    ko::adamwUpdate(p.data(), g.data(), m.data(), v.data(), n, hp, wd, gradScales[step - 1]);
    // PyTorch AdamW, float64
    const double lr = hp.lr, b1 = hp.beta1, b2 = hp.beta2, eps = hp.eps;
    for (size_t i = 0; i < n; i++) {
      const double gi = double(g[i]) * gradScales[step - 1];
      pr[i] *= 1.0 - lr * wd;
      mr[i] = b1 * mr[i] + (1 - b1) * gi;
      vr[i] = b2 * vr[i] + (1 - b2) * gi * gi;
      const double mhat = mr[i] / (1 - std::pow(b1, step)), vhat = vr[i] / (1 - std::pow(b2, step));
      pr[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
    KO_CHECK_REL(p.data(), pr.data(), n, 1e-6);
    KO_CHECK_REL(m.data(), mr.data(), n, 1e-6);
    KO_CHECK_REL(v.data(), vr.data(), n, 1e-6);
  }
  // the update itself (p - p0), not just p, matches
  FVec p0 = randomF(n, 130), p1 = p0, m1(n, 0.f), v1(n, 0.f), g = randomF(n, 131);
  hp.step = 1;
  ko::adamwUpdate(p1.data(), g.data(), m1.data(), v1.data(), n, hp, wd, 1.0f);
  Vec upd = diff(p1, p0), refUpd(n);
  for (size_t i = 0; i < n; i++) {
    const double gi = g[i];
    const double mh = (1 - double(hp.beta1)) * gi / (1 - double(hp.beta1));
    const double vh = (1 - double(hp.beta2)) * gi * gi / (1 - double(hp.beta2));
    refUpd[i] = -double(hp.lr) * double(wd) * p0[i] - double(hp.lr) * mh / (std::sqrt(vh) + double(hp.eps));
  }
  KO_CHECK_REL(upd.data(), refUpd.data(), n, 1e-4);
}

KO_TEST(ops, ops_sum_squares) {
  for (size_t n : {size_t(0), size_t(1), size_t(13), size_t(200003)}) {
    FVec g = randomF(n, 140 + n, -3, 3);
    double ref = 0;
    for (float x : g) ref += double(x) * x;
    const double a = ko::sumSquares(g.data(), n), b = ko::sumSquares(g.data(), n);
    KO_CHECK(std::memcmp(&a, &b, sizeof a) == 0);
    KO_CHECK_NEAR(a, ref, 1e-12 * (ref + 1));
  }
}

// ---- internal vectorized exp (vec_math.h) ------------------------------------------------------------

KO_TEST(ops, ops_vec_exp) {
  const int n = 2000001;
  FVec x(n), y(n);
  for (int i = 0; i < n; i++) x[i] = float(-86.0 + 174.5 * i / (n - 1.0));
  ko::vmath::expShifted(y.data(), x.data(), n, 0.0f);
  double worst = 0;
  for (int i = 0; i < n; i++) {
    const double ref = std::exp(double(x[i]));
    worst = std::max(worst, std::fabs(double(y[i]) - ref) / ref);
  }
  KO_CHECK_MSG(worst < 3e-7, "max relative error " + std::to_string(worst));
  const float inf = std::numeric_limits<float>::infinity();
  FVec s = {0.0f, -1000.0f, -inf, 100.0f, inf, std::numeric_limits<float>::quiet_NaN(), 88.7f, 1.0f}, t(s.size());
  ko::vmath::expShifted(t.data(), s.data(), int(s.size()), 0.0f);
  KO_CHECK(t[0] == 1.0f);
  KO_CHECK(t[1] == 0.0f && t[2] == 0.0f);
  KO_CHECK(t[3] > 3.3e38f && t[4] > 3.3e38f);  // saturates
  KO_CHECK(std::isnan(t[5]));
  KO_CHECK(std::isfinite(t[6]) && t[6] > 3e38f);
  KO_CHECK_NEAR(t[7], std::exp(1.0), 1e-6);
  // shifted: e^(x - 2)
  ko::vmath::expShifted(t.data(), s.data(), int(s.size()), 2.0f);
  KO_CHECK_NEAR(t[7], std::exp(-1.0), 1e-7);
  FVec m = {1.f, 5.f, -3.f, 2.f, 0.f, 0.f, 0.f, 0.f, 9.f, 1.f, 11.f};
  KO_CHECK(ko::vmath::rowMax(m.data(), int(m.size())) == 11.f);
  KO_CHECK(ko::vmath::rowMax(m.data(), 10) == 9.f);
  KO_CHECK(ko::vmath::rowMax(m.data(), 3) == 5.f);
}
