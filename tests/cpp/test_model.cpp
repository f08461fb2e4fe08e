// Whole-model checks that need no Node: directional finite differences of the full loss, KV-cache decoding
// against the full forward pass, determinism, and bad token ids. (The float64 reference comparison of the
// whole model lives in tests/ts, against an independent implementation.)
#include <cstring>
#include <vector>

#include "check.h"
#include "model_fixtures.h"
#include "model.h"
#include "rng.h"

using namespace ko;
using kotest::randomTokens;

static ModelConfig tinyConfig(ModelType t) { return kotest::gqaTestConfig(t, 37); }

// d/dh L(p + h u) at h = 0 by central differences in float32 vs the analytic gradient projected on u.
static void directionalGradCheck(ModelType t) {
  ModelConfig c = tinyConfig(t);
  std::vector<float> p(paramCount(c)), g(p.size(), 0.f), u(p.size());
  initParams(c, p.data(), 7, 0.2f);
  Rng r(11);
  for (auto& x : p)
    if (x == 1.f) x = 1.f + 0.1f * float(r.normal());  // perturb norm weights so their gradients matter
  for (auto& x : u) x = float(r.normal());
  const int B = 2, T = 5;
  std::vector<uint32_t> in;
  std::vector<int32_t> tg;
  randomTokens(in, tg, B * T, c.vocabSize, 3);
  tg[4] = -1;  // one ignored target
  Model m(c, p.data());
  int64_t cnt = 0;
  m.forward(in.data(), tg.data(), B, T, &cnt);
  KO_CHECK(cnt == B * T - 1);
  m.backward(g.data(), 1.f);
  double analytic = 0;
  for (size_t i = 0; i < p.size(); i++) analytic += double(g[i]) * u[i];
  const float h = 1e-3f;
  std::vector<float> p0 = p;
  auto lossAt = [&](float s) {
    for (size_t i = 0; i < p.size(); i++) p[i] = p0[i] + s * u[i];
    return m.forward(in.data(), tg.data(), B, T, &cnt);
  };
  double fd = (lossAt(h) - lossAt(-h)) / (2.0 * h);
  KO_CHECK_MSG(std::fabs(fd - analytic) <= 2e-3 * std::fabs(analytic) + 1e-3,
               "fd " + std::to_string(fd) + " vs analytic " + std::to_string(analytic));
}

KO_TEST(model, model_llama_directional_gradient) { directionalGradCheck(ModelType::Llama); }
KO_TEST(model, model_qwen3_directional_gradient) { directionalGradCheck(ModelType::Qwen3); }

// The KV-cache decoder must reproduce the full causal forward pass position by position.
static void decodeMatchesForward(ModelType t) {
  ModelConfig c = tinyConfig(t);
  std::vector<float> p(paramCount(c));
  initParams(c, p.data(), 5, 0.2f);
  const int T = 9;
  std::vector<uint32_t> in;
  std::vector<int32_t> tg;
  randomTokens(in, tg, T, c.vocabSize, 8);
  Model m(c, p.data());
  int64_t cnt;
  m.forward(in.data(), tg.data(), 1, T, &cnt);
  std::vector<float> full(m.logits(), m.logits() + size_t(T) * c.vocabSize);
  m.decodeReset(16);
  for (int pos = 0; pos < T; pos++) {
    const float* lg = m.decodeStep(in[pos], pos);
    KO_CHECK_REL(lg, full.data() + size_t(pos) * c.vocabSize, size_t(c.vocabSize), 1e-5);
  }
}

KO_TEST(model, model_llama_decode_matches_forward) { decodeMatchesForward(ModelType::Llama); }
KO_TEST(model, model_qwen3_decode_matches_forward) { decodeMatchesForward(ModelType::Qwen3); }

KO_TEST(model, model_train_step_deterministic) {
  ModelConfig c = tinyConfig(ModelType::Llama);
  std::vector<uint32_t> in;
  std::vector<int32_t> tg;
  randomTokens(in, tg, 2 * 2 * 6, c.vocabSize, 21);
  TrainStepOptions o;
  o.batchSize = 2;
  o.seqLen = 6;
  o.accum = 2;
  o.adam = {1e-2f, 0.9f, 0.95f, 1e-8f, 1};
  o.weightDecay = 0.1f;
  o.gradClip = 1.f;
  std::vector<float> results[2];
  double losses[2][3];
  for (int run = 0; run < 2; run++) {
    std::vector<float> p(paramCount(c)), g(p.size()), mm(p.size(), 0.f), vv(p.size(), 0.f);
    initParams(c, p.data(), 1);
    Model m(c, p.data());
    for (int s = 0; s < 3; s++) {
      o.adam.step = s + 1;
      losses[run][s] = trainStep(m, g.data(), mm.data(), vv.data(), in.data(), tg.data(), o).loss;
    }
    results[run] = p;
  }
  KO_CHECK(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
  for (int s = 0; s < 3; s++) KO_CHECK(losses[0][s] == losses[1][s]);
  KO_CHECK(losses[0][2] < losses[0][0]);  // three steps on the same batch must lower its loss
}

KO_TEST(model, model_rejects_out_of_range_tokens) {
  ModelConfig c = tinyConfig(ModelType::Llama);
  std::vector<float> p(paramCount(c));
  initParams(c, p.data(), 1);
  Model m(c, p.data());
  std::vector<uint32_t> in = {1, 2, uint32_t(c.vocabSize), 3};
  std::vector<int32_t> tg = {1, 2, 3, 4};
  bool threw = false;
  try {
    int64_t cnt;
    m.forward(in.data(), tg.data(), 1, 4, &cnt);
  } catch (const InputError& e) {
    threw = std::string(e.what()).find("out of range") != std::string::npos;
  }
  KO_CHECK(threw);
}

KO_TEST(model, model_config_validation_names_key) {
  ModelConfig c = tinyConfig(ModelType::Llama);
  c.numKvHeads = 3;
  KO_CHECK(validateConfig(c).find("num_key_value_heads") != std::string::npos);
  c = tinyConfig(ModelType::Llama);
  c.headDim = 5;
  KO_CHECK(validateConfig(c).find("head_dim") != std::string::npos);
}

// Embedding warm-up after a vocabulary resize: for adam.step <= freezeSteps only rows >= newRowsFrom of
// embed_tokens (and of an untied lm_head) change; every other weight and moment stays bit-identical.
static void embeddingWarmup(ModelType t) {
  ModelConfig c = tinyConfig(t);
  const int newFrom = 30;  // rows 30..36 are "new"
  std::vector<uint32_t> in;
  std::vector<int32_t> tg;
  randomTokens(in, tg, 2 * 6, c.vocabSize, 5);
  for (size_t i = 0; i < in.size(); i += 3) in[i] = uint32_t(newFrom + i % 7);  // new tokens get gradients
  TrainStepOptions o;
  o.batchSize = 2;
  o.seqLen = 6;
  o.adam = {1e-2f, 0.9f, 0.95f, 1e-8f, 1};
  o.weightDecay = 0.1f;
  o.gradClip = 1.f;
  o.newRowsFrom = newFrom;
  o.freezeSteps = 2;
  const auto layout = paramLayout(c);
  std::vector<float> p(paramCount(c)), g(p.size()), mm(p.size(), 0.f), vv(p.size(), 0.f);
  initParams(c, p.data(), 3);
  const std::vector<float> p0 = p;
  Model m(c, p.data());
  // isNew(i): whether flat index i lies in a new row of embed_tokens / lm_head.
  auto isNew = [&](size_t i) {
    for (const auto& q : layout)
      if ((q.name == "model.embed_tokens.weight" || q.name == "lm_head.weight") && i >= q.offset &&
          i < q.offset + q.size)
        return i - q.offset >= size_t(newFrom) * size_t(c.hiddenSize);
    return false;
  };
  for (int s = 1; s <= 3; s++) {
    o.adam.step = s;
    trainStep(m, g.data(), mm.data(), vv.data(), in.data(), tg.data(), o);
    size_t oldChanged = 0, newChanged = 0, oldMoments = 0;
    for (size_t i = 0; i < p.size(); i++) {
      const bool changed = std::memcmp(&p[i], &p0[i], sizeof(float)) != 0;
      if (isNew(i)) newChanged += changed;
      else {
        oldChanged += changed;
        oldMoments += mm[i] != 0.f || vv[i] != 0.f;
      }
    }
    KO_CHECK(newChanged > 0);
    if (s <= 2) {
      KO_CHECK(oldChanged == 0);
      KO_CHECK(oldMoments == 0);
    } else {
      KO_CHECK(oldChanged > p.size() / 2);
    }
  }
  // After the warm-up the once-frozen weights count their AdamW steps from the end of it.
  o.adam.step = 3;
  const OptimizerPlan plan = optimizerPlan(c, layout, o);
  KO_CHECK(plan.frozen.empty());
  size_t covered = 0;
  for (const auto& u : plan.update) {
    covered += u.size;
    KO_CHECK(u.step == (isNew(u.offset) ? 3 : 1));
  }
  KO_CHECK(covered == p.size());
  o.newRowsFrom = c.vocabSize + 1;
  bool threw = false;
  try {
    optimizerPlan(c, layout, o);
  } catch (const InputError&) {
    threw = true;
  }
  KO_CHECK(threw);
}

KO_TEST(model, embedding_warmup_llama_untied) { embeddingWarmup(ModelType::Llama); }
KO_TEST(model, embedding_warmup_qwen3_tied) { embeddingWarmup(ModelType::Qwen3); }
