// CPU emulation of BF16 and FP8 training (model.h Precision): what the CUDA path computes, on the CPU.
// Checks properties that hold whatever the rounding: low-precision losses and gradients stay close to FP32,
// an all-BF16 site mask makes FP8 identical to BF16, the delayed-scaling update records the weights' amax,
// and a few FP8 training steps learn as FP32 does.
#include <algorithm>
#include <cmath>
#include <vector>

#include "check.h"
#include "lowp.h"
#include "model.h"
#include "rng.h"

using namespace ko;

namespace {

ModelConfig smallConfig() {
  ModelConfig c;
  c.type = ModelType::Qwen3;
  c.vocabSize = 64;
  c.hiddenSize = 32;
  c.numLayers = 2;
  c.numHeads = 4;
  c.numKvHeads = 2;
  c.headDim = 16;
  c.intermediateSize = 48;
  c.rmsNormEps = 1e-5f;
  c.tieWordEmbeddings = true;
  return c;
}

struct Batch {
  std::vector<uint32_t> in;
  std::vector<int32_t> tg;
};
Batch randomBatch(int n, int V, uint64_t seed) {
  Rng r(seed);
  Batch b;
  for (int i = 0; i < n; i++) {
    b.in.push_back(uint32_t(r.next() % V));
    b.tg.push_back(int32_t(r.next() % V));
  }
  return b;
}

// Loss and gradient of one batch under a precision.
double lossAndGrad(const ModelConfig& c, std::vector<float>& p, const Batch& b, int B, int T, Precision prec,
                   std::vector<float>& g, std::vector<uint8_t> sites = {}) {
  Model m(c, p.data());
  PrecisionOptions po;
  po.precision = prec;
  po.recipe.currentScaling = true;  // first step: no history yet
  po.fp8Sites = std::move(sites);
  m.setPrecision(po);
  int64_t cnt = 0;
  double loss = m.forward(b.in.data(), b.tg.data(), B, T, &cnt) / double(cnt);
  g.assign(p.size(), 0.f);
  m.backward(g.data(), float(1.0 / double(cnt)));
  return loss;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); i++) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

}  // namespace

KO_TEST(model, precision_losses_and_gradients_track_fp32) {
  ModelConfig c = smallConfig();
  std::vector<float> p(paramCount(c));
  initParams(c, p.data(), 5, 0.1f);
  const int B = 2, T = 16;
  Batch b = randomBatch(B * T, c.vocabSize, 9);
  std::vector<float> g32, g16, g8;
  const double l32 = lossAndGrad(c, p, b, B, T, Precision::FP32, g32);
  const double l16 = lossAndGrad(c, p, b, B, T, Precision::BF16, g16);
  const double l8 = lossAndGrad(c, p, b, B, T, Precision::FP8, g8);
  std::printf("  loss fp32 %.6f bf16 %.6f fp8 %.6f; grad cosine bf16 %.5f fp8 %.5f\n", l32, l16, l8,
              cosine(g16, g32), cosine(g8, g32));
  KO_CHECK(std::fabs(l16 - l32) / l32 < 2e-3);
  KO_CHECK(std::fabs(l8 - l32) / l32 < 2e-2);
  KO_CHECK(l16 != l32);  // the rounding really happens
  KO_CHECK(l8 != l16);
  KO_CHECK(cosine(g16, g32) > 0.999);
  KO_CHECK(cosine(g8, g32) > 0.98);
}

KO_TEST(model, precision_fp8_with_every_site_excluded_is_bf16) {
  ModelConfig c = smallConfig();
  std::vector<float> p(paramCount(c));
  initParams(c, p.data(), 6, 0.1f);
  const int B = 1, T = 12;
  Batch b = randomBatch(B * T, c.vocabSize, 10);
  std::vector<float> g16, g8;
  const double l16 = lossAndGrad(c, p, b, B, T, Precision::BF16, g16);
  const double l8 =
      lossAndGrad(c, p, b, B, T, Precision::FP8, g8, std::vector<uint8_t>(size_t(numLinearSites(c)), 0));
  KO_CHECK(l8 == l16);
  KO_CHECK(g8 == g16);
  // And excluding just the LM head changes the result (the mask is honoured per site).
  std::vector<uint8_t> sites(size_t(numLinearSites(c)), 1);
  sites.back() = 0;
  std::vector<float> gx, gall;
  const double lx = lossAndGrad(c, p, b, B, T, Precision::FP8, gx, sites);
  const double lall = lossAndGrad(c, p, b, B, T, Precision::FP8, gall);
  KO_CHECK(lx != lall);
}

KO_TEST(model, precision_bad_site_mask_is_an_error) {
  ModelConfig c = smallConfig();
  std::vector<float> p(paramCount(c));
  Model m(c, p.data());
  PrecisionOptions po;
  po.precision = Precision::FP8;
  po.fp8Sites.assign(3, 1);
  bool threw = false;
  try {
    m.setPrecision(po);
  } catch (const InputError& e) {
    threw = std::string(e.what()).find("linear layers") != std::string::npos;
  }
  KO_CHECK(threw);
}

// Delayed scaling: step 1 casts with scale 1; after endStep the weight tensor's scale is 448 / max|W| of
// the site's weights (fused q,k,v for site 0), and the input tensor's is 448 / max|ln1 output|.
KO_TEST(model, precision_delayed_scaling_records_weight_amax) {
  ModelConfig c = smallConfig();
  std::vector<float> p(paramCount(c)), g(p.size()), mo(p.size(), 0.f), vo(p.size(), 0.f);
  initParams(c, p.data(), 7, 0.1f);
  auto layout = paramLayout(c);
  float amaxQkv = 0;
  for (const auto& t : layout)
    if (t.name == "model.layers.0.self_attn.q_proj.weight" || t.name == "model.layers.0.self_attn.k_proj.weight" ||
        t.name == "model.layers.0.self_attn.v_proj.weight")
      for (size_t i = 0; i < t.size; i++) amaxQkv = std::max(amaxQkv, std::fabs(p[t.offset + i]));
  Model m(c, p.data());
  PrecisionOptions po;
  po.precision = Precision::FP8;
  po.recipe.historyLen = 4;
  m.setPrecision(po);
  KO_CHECK(m.fp8State().scale[kFp8Weight] == 1.f);
  const int B = 2, T = 8;
  Batch b = randomBatch(B * T, c.vocabSize, 11);
  TrainStepOptions o;
  o.batchSize = B;
  o.seqLen = T;
  o.adam = AdamWParams{1e-3f, 0.9f, 0.95f, 1e-8f, 1};
  trainStep(m, g.data(), mo.data(), vo.data(), b.in.data(), b.tg.data(), o);
  const auto& st = m.fp8State();
  KO_CHECK(st.history[kFp8Weight] == amaxQkv);
  KO_CHECK(st.scale[kFp8Weight] == 448.f / amaxQkv);
  KO_CHECK(st.scaleInv[kFp8Weight] == 1.f / st.scale[kFp8Weight]);
  KO_CHECK(st.amaxCur[kFp8Weight] == 0.f);
  // ln1 outputs of a fresh model are ~unit RMS: amax well above 1, and the gradient scale is large.
  KO_CHECK(st.history[kFp8Input] > 1.f);
  KO_CHECK(st.scale[kFp8Grad] > 1e3f);
  // Every tensor of every site got a recorded amax.
  for (int t = 0; t < 3 * numLinearSites(c); t++) KO_CHECK_MSG(st.history[t] > 0.f, "tensor " + std::to_string(t));
}

KO_TEST(model, precision_fp8_training_learns_like_fp32) {
  ModelConfig c = smallConfig();
  std::vector<float> p0(paramCount(c));
  initParams(c, p0.data(), 8, 0.05f);
  const int B = 4, T = 16, steps = 30;
  // A learnable stream: token t+1 = (3 t + 1) mod V.
  Batch b;
  for (int i = 0; i < B * T; i++) {
    uint32_t x = uint32_t((i * 7 + i / T) % c.vocabSize);
    b.in.push_back(x);
    b.tg.push_back(int32_t((3 * x + 1) % c.vocabSize));
  }
  double finalLoss[2];
  for (int run = 0; run < 2; run++) {
    std::vector<float> p = p0, g(p.size()), mo(p.size(), 0.f), vo(p.size(), 0.f);
    Model m(c, p.data());
    PrecisionOptions po;
    po.precision = run == 0 ? Precision::FP32 : Precision::FP8;
    po.recipe.historyLen = 16;
    m.setPrecision(po);
    TrainStepOptions o;
    o.batchSize = B;
    o.seqLen = T;
    o.gradClip = 1.f;
    TrainStepResult r;
    for (int s = 1; s <= steps; s++) {
      o.adam = AdamWParams{1e-2f, 0.9f, 0.95f, 1e-8f, s};
      r = trainStep(m, g.data(), mo.data(), vo.data(), b.in.data(), b.tg.data(), o);
    }
    finalLoss[run] = r.loss;
  }
  std::printf("  loss after 30 steps: fp32 %.4f fp8 %.4f (start ~%.2f)\n", finalLoss[0], finalLoss[1],
              std::log(double(c.vocabSize)));
  KO_CHECK(finalLoss[0] < 1.0);
  KO_CHECK(std::fabs(finalLoss[1] - finalLoss[0]) < 0.1 + 0.1 * finalLoss[0]);
}
