// post_train.cpp — DPO and distillation steps over Model (see post_train.h for the formulas).
#include "post_train.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ops.h"

namespace ko {
namespace {

// log σ(x) without overflow for either sign.
double logSigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }
double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }

}  // namespace

DpoPair dpoPairLoss(double pc, double pr, double rc, double rr, double beta, double ls) {
  DpoPair p;
  const double z = beta * ((pc - pr) - (rc - rr));
  p.loss = -(1 - ls) * logSigmoid(z) - ls * logSigmoid(-z);
  const double dz = -(1 - ls) * sigmoid(-z) + ls * sigmoid(z);
  p.dChosen = beta * dz;
  p.dRejected = -beta * dz;
  p.chosenReward = beta * (pc - rc);
  p.rejectedReward = beta * (pr - rr);
  return p;
}

void rowLogps(const Model& model, int rows, int T, double* out) {
  const float* losses = model.tokenLosses();  // 0 at ignored targets
  for (int r = 0; r < rows; r++) {
    double s = 0;
    for (int t = 0; t < T; t++) s -= losses[size_t(r) * T + t];
    out[r] = s;
  }
}

DpoStepResult dpoTrainStep(Model& model, float* grads, float* m, float* v, const uint32_t* inputs,
                           const int32_t* targets, const double* refLogps, const TrainStepOptions& o,
                           const DpoOptions& d) {
  if (!(d.beta > 0)) throw InputError("train.dpo.beta must be > 0");
  if (d.labelSmoothing < 0 || d.labelSmoothing >= 0.5)
    throw InputError("train.dpo.label_smoothing must be in [0, 0.5)");
  const int P = o.batchSize, rows = 2 * P, T = o.seqLen;
  const size_t micro = size_t(rows) * T;
  const double pairs = double(P) * o.accum;
  std::fill(grads, grads + model.numParams(), 0.f);
  DpoStepResult r;
  std::vector<double> lp(rows);
  std::vector<float> rowScale(micro);
  for (int a = 0; a < o.accum; a++) {
    int64_t cnt = 0;
    model.forward(inputs + a * micro, targets + a * micro, rows, T, &cnt);
    r.tokens += cnt;
    rowLogps(model, rows, T, lp.data());
    for (int p = 0; p < P; p++) {
      const size_t i = size_t(a) * P + p;
      const DpoPair q = dpoPairLoss(lp[2 * p], lp[2 * p + 1], refLogps[2 * i], refLogps[2 * i + 1], d.beta,
                                    d.labelSmoothing);
      r.loss += q.loss / pairs;
      r.chosenLogp += lp[2 * p] / pairs;
      r.rejectedLogp += lp[2 * p + 1] / pairs;
      r.chosenReward += q.chosenReward / pairs;
      r.rejectedReward += q.rejectedReward / pairs;
      r.margin += (q.chosenReward - q.rejectedReward) / pairs;
      r.accuracy += (q.chosenReward > q.rejectedReward ? 1.0 : 0.0) / pairs;
      // logp = −Σ CE_t, so each response token's CE carries weight −dloss/dlogp (mean over the step's pairs).
      std::fill(rowScale.begin() + size_t(2 * p) * T, rowScale.begin() + size_t(2 * p + 1) * T,
                float(-q.dChosen / pairs));
      std::fill(rowScale.begin() + size_t(2 * p + 1) * T, rowScale.begin() + size_t(2 * p + 2) * T,
                float(-q.dRejected / pairs));
    }
    model.backward(grads, 1.f, rowScale.data());
  }
  r.gradNorm = optimizerStep(model, grads, m, v, o);
  return r;
}

void distillLogitGrad(float* z, const TeacherLogits& teacher, const int32_t* targets, int n, int V,
                      const DistillOptions& d, float scale, double* klOut, double* ceOut) {
  const double tau = d.temperature, alpha = d.alpha;
  if (!(tau > 0)) throw InputError("train.distill.temperature must be > 0");
  if (alpha < 0 || alpha > 1) throw InputError("train.distill.alpha must be in [0, 1]");
  std::vector<double> kl(n, 0.0), ce(n, 0.0);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; r++) {
    float* x = z + size_t(r) * V;
    const int tgt = targets[r];
    if (tgt < 0) {
      std::fill(x, x + V, 0.f);
      continue;
    }
    // Student: softmax(z) and softmax(z / tau), both from the row max.
    const float mx = *std::max_element(x, x + V);
    double s1 = 0, sTau = 0;
    for (int j = 0; j < V; j++) {
      s1 += std::exp(double(x[j]) - mx);
      sTau += std::exp((double(x[j]) - mx) / tau);
    }
    const double logS1 = std::log(s1), logSTau = std::log(sTau);
    ce[r] = double(mx) + logS1 - double(x[tgt]);
    auto logPsTau = [&](int j) { return (double(x[j]) - mx) / tau - logSTau; };
    // Teacher at tau, and KL(p_t ∥ p_s) over its support.
    double klr = 0;
    if (teacher.full) {
      const float* t = teacher.full + size_t(r) * V;
      const float tm = *std::max_element(t, t + V);
      double st = 0;
      for (int j = 0; j < V; j++) st += std::exp((double(t[j]) - tm) / tau);
      const double logSt = std::log(st);
      for (int j = 0; j < V; j++) {
        const double logPt = (double(t[j]) - tm) / tau - logSt;
        const double pt = std::exp(logPt);
        if (pt > 0) klr += pt * (logPt - logPsTau(j));
      }
      for (int j = 0; j < V; j++) {
        const double pt = std::exp((double(t[j]) - tm) / tau - logSt);
        const double ps = std::exp((double(x[j]) - mx) - logS1);
        const double psTau = std::exp(logPsTau(j));
        x[j] = float(scale * (alpha * tau * (psTau - pt) + (1 - alpha) * (ps - (j == tgt ? 1.0 : 0.0))));
      }
    } else {
      const uint32_t* ids = teacher.topIds + size_t(r) * teacher.k;
      const float* tl = teacher.topLogits + size_t(r) * teacher.k;
      const float tm = *std::max_element(tl, tl + teacher.k);
      double st = 0;
      for (int i = 0; i < teacher.k; i++) st += std::exp((double(tl[i]) - tm) / tau);
      const double logSt = std::log(st);
      for (int i = 0; i < teacher.k; i++) {
        const double logPt = (double(tl[i]) - tm) / tau - logSt;
        klr += std::exp(logPt) * (logPt - logPsTau(int(ids[i])));
      }
      for (int j = 0; j < V; j++) {
        const double ps = std::exp((double(x[j]) - mx) - logS1);
        const double psTau = std::exp(logPsTau(j));
        x[j] = float(scale * (alpha * tau * psTau + (1 - alpha) * (ps - (j == tgt ? 1.0 : 0.0))));
      }
      for (int i = 0; i < teacher.k; i++)
        x[ids[i]] -= float(scale * alpha * tau * std::exp((double(tl[i]) - tm) / tau - logSt));
    }
    kl[r] = klr;
  }
  // Row order, serially: the sums do not depend on the thread count.
  for (int r = 0; r < n; r++) {
    *klOut += kl[r];
    *ceOut += ce[r];
  }
}

DistillStepResult distillTrainStep(Model& student, Model* teacher, float* grads, float* m, float* v,
                                   const uint32_t* inputs, const int32_t* targets, const int32_t* positions,
                                   const uint32_t* topIds, const float* topLogits, int k,
                                   const TrainStepOptions& o, const DistillOptions& d) {
  const int V = student.config().vocabSize;
  if (teacher && teacher->config().vocabSize != V)
    throw InputError("the teacher's vocab_size " + std::to_string(teacher->config().vocabSize) +
                     " differs from the student's " + std::to_string(V) + " (distillation needs one tokenizer)");
  if (!teacher && (!topIds || !topLogits || k <= 0)) throw InputError("distillation needs a teacher or its top-k logits");
  const size_t micro = size_t(o.batchSize) * o.seqLen;
  int64_t total = 0;
  for (size_t i = 0; i < micro * o.accum; i++) total += targets[i] >= 0;
  std::fill(grads, grads + student.numParams(), 0.f);
  DistillStepResult r;
  r.tokens = total;
  if (total == 0) return r;
  double kl = 0, ce = 0;
  for (int a = 0; a < o.accum; a++) {
    const uint32_t* in = inputs + a * micro;
    const int32_t* tg = targets + a * micro;
    const int32_t* pos = positions ? positions + a * micro : nullptr;
    TeacherLogits tl;
    int64_t cnt = 0;
    if (teacher) {
      teacher->forward(in, tg, o.batchSize, o.seqLen, &cnt, pos);
      tl.full = teacher->logits();
    } else {
      tl.topIds = topIds + a * micro * size_t(k);
      tl.topLogits = topLogits + a * micro * size_t(k);
      tl.k = k;
      for (size_t i = 0; i < micro * size_t(k); i++)
        if (tl.topIds[i] >= uint32_t(V)) throw InputError("teacher top-k id " + std::to_string(tl.topIds[i]) + " is outside the vocabulary");
    }
    student.forward(in, tg, o.batchSize, o.seqLen, &cnt, pos);
    distillLogitGrad(student.logitGrad(), tl, tg, int(micro), V, d, float(1.0 / double(total)), &kl, &ce);
    student.backwardFromLogitGrad(grads);
  }
  const double tau = d.temperature;
  r.kl = kl / double(total);
  r.ce = ce / double(total);
  r.loss = d.alpha * tau * tau * r.kl + (1 - d.alpha) * r.ce;
  r.gradNorm = optimizerStep(student, grads, m, v, o);
  return r;
}

void distillEval(Model& student, Model& teacher, const uint32_t* inputs, const int32_t* targets, int rows, int T,
                 float temperature, double* kl, double* ce, int64_t* count) {
  const int V = student.config().vocabSize;
  if (teacher.config().vocabSize != V) throw InputError("the teacher's vocab_size differs from the student's");
  DistillOptions d;
  d.alpha = 1.f;
  d.temperature = temperature;
  constexpr int kChunk = 4;  // rows per forward: bounds the activation memory
  for (int r0 = 0; r0 < rows; r0 += kChunk) {
    const int n = std::min(kChunk, rows - r0);
    const size_t off = size_t(r0) * T;
    int64_t cnt = 0;
    teacher.forward(inputs + off, targets + off, n, T, &cnt);
    TeacherLogits tl;
    tl.full = teacher.logits();
    student.forward(inputs + off, targets + off, n, T, &cnt);
    *count += cnt;
    distillLogitGrad(student.logitGrad(), tl, targets + off, n * T, V, d, 0.f, kl, ce);  // the gradient is unused
  }
}

void topkOfLogits(const float* logits, size_t rows, int V, int k, uint32_t* ids, float* vals) {
  if (k <= 0 || k > V) throw InputError("top-k needs 1 <= k <= vocab_size, got k = " + std::to_string(k));
#pragma omp parallel
  {
    std::vector<uint32_t> idx(V);
#pragma omp for schedule(static)
    for (long r = 0; r < long(rows); r++) {
      const float* x = logits + size_t(r) * V;
      std::iota(idx.begin(), idx.end(), 0u);
      auto before = [x](uint32_t a, uint32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), before);
      for (int i = 0; i < k; i++) {
        ids[size_t(r) * k + i] = idx[i];
        vals[size_t(r) * k + i] = x[idx[i]];
      }
    }
  }
}

}  // namespace ko
