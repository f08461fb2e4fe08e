// Post-training checks: DPO's loss and gradient against a hand computation and finite differences through the
// model, the distillation logit gradient and step by finite differences, packed rows (positions) against the
// same examples run one per row, and per-position loss weights.
#include <cmath>
#include <vector>

#include "check.h"
#include "model_fixtures.h"
#include "model.h"
#include "post_train.h"
#include "rng.h"

using namespace ko;

static std::vector<float> postParams(const ModelConfig& c, uint64_t seed) {
  std::vector<float> p(paramCount(c));
  initParams(c, p.data(), seed, 0.3f);
  return p;
}

static TrainStepOptions noUpdate(int B, int T) {  // lr 0: the step leaves the weights alone, grads stay readable
  TrainStepOptions o;
  o.batchSize = B;
  o.seqLen = T;
  o.accum = 1;
  o.adam = {0.f, 0.9f, 0.999f, 1e-8f, 1};
  return o;
}

// Values worked out by hand (Python, math module): z = 0.1 · ((−10 + 12.5) − (−11 + 11.25)) = 0.225.
KO_TEST(model, dpo_pair_loss_by_hand) {
  DpoPair p = dpoPairLoss(-10.0, -12.5, -11.0, -11.25, 0.1, 0.0);
  KO_CHECK_NEAR(p.loss, 0.5869620020497037, 1e-12);
  KO_CHECK_NEAR(p.dChosen, -0.04439861094553801, 1e-12);
  KO_CHECK_NEAR(p.dRejected, 0.04439861094553801, 1e-12);
  KO_CHECK_NEAR(p.chosenReward, 0.1, 1e-12);
  KO_CHECK_NEAR(p.rejectedReward, -0.125, 1e-12);
  DpoPair s = dpoPairLoss(-10.0, -12.5, -11.0, -11.25, 0.1, 0.2);  // label smoothing 0.2
  KO_CHECK_NEAR(s.loss, 0.6319620020497038, 1e-12);
  KO_CHECK_NEAR(s.dChosen, -0.02439861094553801, 1e-12);
  // Extreme margins stay finite.
  DpoPair big = dpoPairLoss(0, -5000, 0, 0, 1.0, 0.0);
  KO_CHECK(std::isfinite(big.loss) && big.loss < 1e-300 + 1e-12);
  DpoPair bad = dpoPairLoss(-5000, 0, 0, 0, 1.0, 0.0);
  KO_CHECK_NEAR(bad.loss, 5000.0, 1e-9);
}

// The DPO loss of two pairs as a function of the weights: forward, row log-probs, the pair losses.
static double dpoLossAt(Model& m, const std::vector<uint32_t>& in, const std::vector<int32_t>& tg,
                        const std::vector<double>& ref, int P, int T, const DpoOptions& d) {
  int64_t cnt = 0;
  m.forward(in.data(), tg.data(), 2 * P, T, &cnt);
  std::vector<double> lp(2 * P);
  rowLogps(m, 2 * P, T, lp.data());
  double L = 0;
  for (int p = 0; p < P; p++) L += dpoPairLoss(lp[2 * p], lp[2 * p + 1], ref[2 * p], ref[2 * p + 1], d.beta, d.labelSmoothing).loss / P;
  return L;
}

KO_TEST(model, dpo_step_gradient_matches_finite_differences) {
  ModelConfig c = kotest::narrowTestConfig(ModelType::Llama, 29);
  std::vector<float> p = postParams(c, 5), g(p.size()), m(p.size()), v(p.size());
  const int P = 2, T = 6;
  Rng r(9);
  std::vector<uint32_t> in(2 * P * T);
  std::vector<int32_t> tg(in.size(), -1);
  for (auto& x : in) x = uint32_t(r.next() % c.vocabSize);
  for (int row = 0; row < 2 * P; row++)
    for (int t = 2; t < T - (row % 2); t++) tg[row * T + t] = int32_t(r.next() % c.vocabSize);  // response part
  const std::vector<double> ref = {-20.0, -19.0, -21.5, -22.0};
  DpoOptions d;
  d.beta = 0.5;
  d.labelSmoothing = 0.1;
  Model model(c, p.data());
  const std::vector<float> before = p;
  DpoStepResult res = dpoTrainStep(model, g.data(), m.data(), v.data(), in.data(), tg.data(), ref.data(), noUpdate(P, T), d);
  KO_CHECK(p == before);  // lr 0
  KO_CHECK_NEAR(res.loss, dpoLossAt(model, in, tg, ref, P, T, d), 1e-6);
  std::vector<float> u(p.size());
  for (auto& x : u) x = float(r.normal());
  double analytic = 0;
  for (size_t i = 0; i < p.size(); i++) analytic += double(g[i]) * u[i];
  const float h = 1e-3f;
  auto at = [&](float s) {
    for (size_t i = 0; i < p.size(); i++) p[i] = before[i] + s * u[i];
    return dpoLossAt(model, in, tg, ref, P, T, d);
  };
  const double fd = (at(h) - at(-h)) / (2.0 * h);
  KO_CHECK_MSG(std::fabs(fd - analytic) <= 2e-2 * std::fabs(analytic) + 1e-4,
               "fd " + std::to_string(fd) + " vs analytic " + std::to_string(analytic));
  KO_CHECK(res.accuracy == 0.0 || res.accuracy == 0.5 || res.accuracy == 1.0);
}

// loss(z) = alpha·tau²·KL(p_t^tau ∥ p_s^tau) + (1 − alpha)·CE, in double, written out independently.
static double distillRowLoss(const std::vector<double>& z, const std::vector<double>& pt, int tgt, double alpha,
                             double tau) {
  const int V = int(z.size());
  double mx = -1e300;
  for (double x : z) mx = std::max(mx, x);
  double s1 = 0, st = 0;
  for (double x : z) s1 += std::exp(x - mx), st += std::exp((x - mx) / tau);
  double kl = 0;
  for (int j = 0; j < V; j++)
    if (pt[j] > 0) kl += pt[j] * (std::log(pt[j]) - ((z[j] - mx) / tau - std::log(st)));
  const double ce = mx + std::log(s1) - z[tgt];
  return alpha * tau * tau * kl + (1 - alpha) * ce;
}

KO_TEST(model, distill_logit_gradient_matches_finite_differences) {
  const int n = 3, V = 11, k = 4;
  const double alpha = 0.7, tau = 2.0;
  Rng r(21);
  std::vector<float> z(n * V), t(n * V);
  for (auto& x : z) x = float(2.0 * r.normal());
  for (auto& x : t) x = float(2.0 * r.normal());
  const std::vector<int32_t> tg = {3, -1, 7};
  for (int topk = 0; topk < 2; topk++) {
    TeacherLogits tl;
    std::vector<uint32_t> ids(n * k);
    std::vector<float> vals(n * k);
    if (topk) {
      topkOfLogits(t.data(), n, V, k, ids.data(), vals.data());
      tl.topIds = ids.data(), tl.topLogits = vals.data(), tl.k = k;
    } else {
      tl.full = t.data();
    }
    DistillOptions d;
    d.alpha = float(alpha), d.temperature = float(tau);
    std::vector<float> grad = z;
    double kl = 0, ce = 0;
    distillLogitGrad(grad.data(), tl, tg.data(), n, V, d, 1.f, &kl, &ce);
    for (int row = 0; row < n; row++) {
      if (tg[row] < 0) {
        for (int j = 0; j < V; j++) KO_CHECK(grad[row * V + j] == 0.f);
        continue;
      }
      // The teacher distribution at tau (over the top k only when distilling from top-k).
      std::vector<double> pt(V, 0.0);
      double s = 0;
      if (topk) {
        for (int i = 0; i < k; i++) s += std::exp(vals[row * k + i] / tau);
        for (int i = 0; i < k; i++) pt[ids[row * k + i]] = std::exp(vals[row * k + i] / tau) / s;
      } else {
        for (int j = 0; j < V; j++) s += std::exp(t[row * V + j] / tau);
        for (int j = 0; j < V; j++) pt[j] = std::exp(t[row * V + j] / tau) / s;
      }
      std::vector<double> zr(z.begin() + row * V, z.begin() + (row + 1) * V);
      for (int j = 0; j < V; j++) {
        const double h = 1e-5;
        std::vector<double> a = zr, b = zr;
        a[j] += h, b[j] -= h;
        const double fd = (distillRowLoss(a, pt, tg[row], alpha, tau) - distillRowLoss(b, pt, tg[row], alpha, tau)) / (2 * h);
        KO_CHECK_MSG(std::fabs(fd - grad[row * V + j]) <= 1e-4,
                     (topk ? "top-k" : "full") + std::string(" row ") + std::to_string(row) + " j " + std::to_string(j) +
                         ": fd " + std::to_string(fd) + " vs " + std::to_string(grad[row * V + j]));
      }
    }
  }
}

KO_TEST(model, distill_step_gradient_matches_finite_differences) {
  ModelConfig c = kotest::narrowTestConfig(ModelType::Llama, 29);
  std::vector<float> ps = postParams(c, 3), pt = postParams(c, 4), g(ps.size()), m(ps.size()), v(ps.size());
  const int B = 2, T = 5;
  Rng r(33);
  std::vector<uint32_t> in(B * T);
  std::vector<int32_t> tg(B * T);
  for (auto& x : in) x = uint32_t(r.next() % c.vocabSize);
  for (auto& x : tg) x = int32_t(r.next() % c.vocabSize);
  tg[2] = -1;
  Model student(c, ps.data()), teacher(c, pt.data());
  DistillOptions d;
  d.alpha = 0.6f, d.temperature = 1.5f;
  const std::vector<float> before = ps;
  DistillStepResult res = distillTrainStep(student, &teacher, g.data(), m.data(), v.data(), in.data(), tg.data(),
                                           nullptr, nullptr, nullptr, 0, noUpdate(B, T), d);
  KO_CHECK(res.tokens == B * T - 1);
  KO_CHECK(res.kl > 0);
  auto lossAt = [&]() {
    int64_t cnt = 0;
    teacher.forward(in.data(), tg.data(), B, T, &cnt);
    std::vector<float> tl(teacher.logits(), teacher.logits() + size_t(B) * T * c.vocabSize);
    student.forward(in.data(), tg.data(), B, T, &cnt);
    TeacherLogits t;
    t.full = tl.data();
    double kl = 0, ce = 0;
    distillLogitGrad(student.logitGrad(), t, tg.data(), B * T, c.vocabSize, d, 1.f, &kl, &ce);
    return (d.alpha * d.temperature * d.temperature * kl + (1 - d.alpha) * ce) / double(cnt);
  };
  KO_CHECK_NEAR(lossAt(), res.loss, 1e-5);
  std::vector<float> u(ps.size());
  for (auto& x : u) x = float(r.normal());
  double analytic = 0;
  for (size_t i = 0; i < ps.size(); i++) analytic += double(g[i]) * u[i];
  const float h = 1e-3f;
  auto at = [&](float s) {
    for (size_t i = 0; i < ps.size(); i++) ps[i] = before[i] + s * u[i];
    return lossAt();
  };
  const double fd = (at(h) - at(-h)) / (2.0 * h);
  KO_CHECK_MSG(std::fabs(fd - analytic) <= 2e-2 * std::fabs(analytic) + 1e-4,
               "fd " + std::to_string(fd) + " vs analytic " + std::to_string(analytic));
}

// Two examples packed into one row (positions restart at the second) give the same per-token losses and the
// same gradients as the examples run as separate rows.
KO_TEST(model, packed_rows_match_separate_examples) {
  ModelConfig c = kotest::narrowTestConfig(ModelType::Llama, 29);
  std::vector<float> p = postParams(c, 8), gPacked(p.size(), 0.f), gSep(p.size(), 0.f);
  const int T = 8, n1 = 3, n2 = 5;
  Rng r(4);
  std::vector<uint32_t> in(T);
  std::vector<int32_t> tg(T), pos(T);
  for (int t = 0; t < T; t++) {
    in[t] = uint32_t(r.next() % c.vocabSize);
    tg[t] = int32_t(r.next() % c.vocabSize);
    pos[t] = t < n1 ? t : t - n1;
  }
  tg[n1 - 1] = -1;  // no target across the example boundary (what the SFT packer writes)
  Model m(c, p.data());
  int64_t cnt = 0;
  m.forward(in.data(), tg.data(), 1, T, &cnt, pos.data());
  std::vector<float> packed(m.tokenLosses(), m.tokenLosses() + T);
  m.backward(gPacked.data(), 1.f);
  m.forward(in.data(), tg.data(), 1, n1, &cnt);
  std::vector<float> sep(m.tokenLosses(), m.tokenLosses() + n1);
  m.backward(gSep.data(), 1.f);
  m.forward(in.data() + n1, tg.data() + n1, 1, n2, &cnt);
  sep.insert(sep.end(), m.tokenLosses(), m.tokenLosses() + n2);
  m.backward(gSep.data(), 1.f);
  KO_CHECK_REL(packed.data(), sep.data(), size_t(T), 1e-5);
  KO_CHECK_REL(gPacked.data(), gSep.data(), p.size(), 1e-4);
  // Without positions the second example sees the first: the losses differ.
  m.forward(in.data(), tg.data(), 1, T, &cnt);
  double diff = 0;
  for (int t = n1; t < T; t++) diff += std::fabs(m.tokenLosses()[t] - packed[t]);
  KO_CHECK(diff > 1e-4);
  // Malformed positions are an input error, not bad memory.
  pos[5] = 7;
  bool threw = false;
  try {
    m.forward(in.data(), tg.data(), 1, T, &cnt, pos.data());
  } catch (const InputError& e) {
    threw = std::string(e.what()).find("positions[5]") != std::string::npos;
  }
  KO_CHECK(threw);
}

KO_TEST(model, weighted_backward_matches_scaled_losses) {
  ModelConfig c = kotest::narrowTestConfig(ModelType::Llama, 29);
  std::vector<float> p = postParams(c, 12), gW(p.size(), 0.f), gRef(p.size(), 0.f);
  const int B = 2, T = 4;
  Rng r(6);
  std::vector<uint32_t> in(B * T);
  std::vector<int32_t> tg(B * T);
  for (auto& x : in) x = uint32_t(r.next() % c.vocabSize);
  for (auto& x : tg) x = int32_t(r.next() % c.vocabSize);
  std::vector<float> w(B * T);
  for (int i = 0; i < B * T; i++) w[i] = i < T ? 0.5f : -2.f;  // row weights
  Model m(c, p.data());
  int64_t cnt = 0;
  m.forward(in.data(), tg.data(), B, T, &cnt);
  m.backward(gW.data(), 1.f, w.data());
  // Reference: each row on its own with the plain backward scaled by its weight.
  for (int b = 0; b < B; b++) {
    m.forward(in.data() + b * T, tg.data() + b * T, 1, T, &cnt);
    m.backward(gRef.data(), w[b * T]);
  }
  KO_CHECK_REL(gW.data(), gRef.data(), p.size(), 1e-5);
}
