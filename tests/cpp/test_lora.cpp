// LoRA (native/lora.cpp): adapter gradients against finite differences of the loss through the model, the merge
// against plain loops, a training step that touches only the adapted tensors, and the site layout's errors.
#include <algorithm>
#include <cstring>
#include <vector>

#include "check.h"
#include "model_fixtures.h"
#include "lora.h"
#include "model.h"
#include "rng.h"

using namespace ko;

static const std::vector<std::string> kAllTargets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};

// Both A and B nonzero, so each of dA = s·Bᵀ·G and dB = s·G·Aᵀ is exercised.
static std::vector<float> randomAdapter(size_t n, uint64_t seed, float std) {
  std::vector<float> a(n);
  Rng r(seed);
  for (auto& x : a) x = float(r.normal()) * std;
  return a;
}

// dLoss/d(adapter entry) by central differences (re-merge, forward) against loraGradients, on the entries of
// A and of B with the largest analytic gradient in every site, plus one random direction over the whole adapter.
static void loraGradCheck(ModelType t) {
  const ModelConfig c = kotest::narrowTestConfig(t, 32);
  const int rank = 3;
  const float scale = 5.f / rank;  // alpha 5: a missing or doubled scale factor shows
  const auto sites = loraSites(c, kAllTargets, rank);
  KO_CHECK(sites.size() == size_t(7 * c.numLayers));
  std::vector<float> base(paramCount(c)), params(base.size()), grads(base.size());
  initParams(c, base.data(), 7, 0.2f);
  std::vector<float> adapter = randomAdapter(loraAdapterSize(sites, rank), 9, 0.2f);
  std::vector<float> dAdapter(adapter.size());
  params = base;
  loraMerge(params.data(), base.data(), adapter.data(), sites, rank, scale);
  const int B = 2, T = 6;
  std::vector<uint32_t> in;
  std::vector<int32_t> tg;
  kotest::randomTokens(in, tg, B * T, c.vocabSize, 3);
  tg[5] = -1;
  Model m(c, params.data());
  TrainStepOptions o;
  o.batchSize = B;
  o.seqLen = T;
  accumulateGradients(m, grads.data(), in.data(), tg.data(), o);
  loraGradients(dAdapter.data(), grads.data(), adapter.data(), sites, rank, scale);

  auto lossAt = [&](const std::vector<float>& a) {
    loraMerge(params.data(), base.data(), a.data(), sites, rank, scale);
    int64_t cnt = 0;
    const double sum = m.forward(in.data(), tg.data(), B, T, &cnt);
    return sum / double(cnt);
  };
  const float h = 1e-2f;
  auto fdAt = [&](size_t i) {
    std::vector<float> a = adapter;
    a[i] = adapter[i] + h;
    const double lp = lossAt(a);
    a[i] = adapter[i] - h;
    const double lm = lossAt(a);
    return (lp - lm) / (double(adapter[i] + h) - double(adapter[i] - h));
  };
  int checked = 0;
  for (const auto& s : sites) {
    const size_t parts[2][2] = {{s.aOffset, size_t(rank) * s.in}, {s.bOffset, size_t(s.out) * rank}};
    for (const auto& part : parts) {
      const float* g = dAdapter.data() + part[0];
      const size_t best = size_t(std::max_element(g, g + part[1], [](float x, float y) {
                                   return std::fabs(x) < std::fabs(y);
                                 }) - g);
      const size_t i = part[0] + best;
      const double fd = fdAt(i), an = dAdapter[i];
      KO_CHECK_MSG(std::fabs(an) > 1e-4, s.name + ": the largest adapter gradient is ~0, the check would be empty");
      KO_CHECK_MSG(std::fabs(fd - an) <= 1e-2 * std::fabs(an) + 2e-5,
                   s.name + " entry " + std::to_string(i) + ": fd " + std::to_string(fd) + " vs analytic " +
                       std::to_string(an));
      checked++;
    }
  }
  KO_CHECK(checked == int(2 * sites.size()));

  Rng r(13);
  std::vector<float> u(adapter.size()), ap(adapter.size()), am(adapter.size());
  for (auto& x : u) x = float(r.normal());
  double analytic = 0;
  for (size_t i = 0; i < u.size(); i++) analytic += double(dAdapter[i]) * u[i];
  const float hd = 1e-3f;
  for (size_t i = 0; i < u.size(); i++) ap[i] = adapter[i] + hd * u[i], am[i] = adapter[i] - hd * u[i];
  const double fd = (lossAt(ap) - lossAt(am)) / (2.0 * hd);
  KO_CHECK_MSG(std::fabs(fd - analytic) <= 1e-2 * std::fabs(analytic),
               "directional fd " + std::to_string(fd) + " vs analytic " + std::to_string(analytic));
}

KO_TEST(model, lora_llama_gradients_match_finite_differences) { loraGradCheck(ModelType::Llama); }
KO_TEST(model, lora_qwen3_gradients_match_finite_differences) { loraGradCheck(ModelType::Qwen3); }

KO_TEST(model, lora_merge_matches_loops) {
  const ModelConfig c = kotest::narrowTestConfig(ModelType::Qwen3, 32);
  const int rank = 4;
  const float scale = 0.75f;
  const auto sites = loraSites(c, {"down_proj", "q_proj", "up_proj", "v_proj"}, rank);
  const auto layout = paramLayout(c);
  std::vector<float> base(paramCount(c)), params(base.size(), -7.f);
  initParams(c, base.data(), 2, 0.3f);
  const std::vector<float> adapter = randomAdapter(loraAdapterSize(sites, rank), 4, 0.5f);
  loraMerge(params.data(), base.data(), adapter.data(), sites, rank, scale);
  std::vector<bool> adapted(base.size(), false);
  for (const auto& s : sites) {
    const auto& p = *std::find_if(layout.begin(), layout.end(), [&](const ParamInfo& q) { return q.name == s.name; });
    KO_CHECK(p.offset == s.weightOffset && p.shape[0] == s.out && p.shape[1] == s.in);
    std::vector<double> want(size_t(s.out) * s.in);
    for (int o = 0; o < s.out; o++)
      for (int i = 0; i < s.in; i++) {
        double d = 0;
        for (int r = 0; r < rank; r++)
          d += double(adapter[s.bOffset + size_t(o) * rank + r]) * adapter[s.aOffset + size_t(r) * s.in + i];
        want[size_t(o) * s.in + i] = base[s.weightOffset + size_t(o) * s.in + i] + scale * d;
      }
    KO_CHECK_REL(params.data() + s.weightOffset, want.data(), want.size(), 1e-6);
    std::fill(adapted.begin() + s.weightOffset, adapted.begin() + s.weightOffset + want.size(), true);
  }
  for (size_t i = 0; i < params.size(); i++)
    if (!adapted[i]) KO_CHECK(params[i] == -7.f);  // only the sites are written
}

// Sites come in layout order whatever the order of `targets`, each A [rank, in] then B [out, rank], packed.
KO_TEST(model, lora_sites_layout) {
  const ModelConfig c = kotest::narrowTestConfig(ModelType::Llama, 32);
  const int rank = 2;
  const auto sites = loraSites(c, {"v_proj", "gate_proj", "q_proj", "v_proj"}, rank);
  KO_CHECK(sites.size() == 6);
  const char* order[] = {"self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj"};
  size_t off = 0;
  for (size_t k = 0; k < sites.size(); k++) {
    const auto& s = sites[k];
    KO_CHECK(s.name == "model.layers." + std::to_string(k / 3) + "." + order[k % 3] + ".weight");
    KO_CHECK(s.aOffset == off);
    KO_CHECK(s.bOffset == off + size_t(rank) * s.in);
    off = s.bOffset + size_t(s.out) * rank;
  }
  KO_CHECK(sites[1].out == c.numKvHeads * c.headDim && sites[1].in == c.hiddenSize);
  KO_CHECK(sites[2].out == c.intermediateSize && sites[2].in == c.hiddenSize);
  KO_CHECK(loraAdapterSize(sites, rank) == off);
}

// From loraInit (B = 0) the merged weights are W0 exactly; a step then moves only the adapted tensors.
KO_TEST(model, lora_train_step_changes_only_adapted_tensors) {
  const ModelConfig c = kotest::narrowTestConfig(ModelType::Llama, 32);
  const auto layout = paramLayout(c);
  LoraState lora;
  lora.rank = 4;
  lora.scale = 8.f / lora.rank;
  lora.sites = loraSites(c, {"q_proj", "v_proj", "down_proj"}, lora.rank);
  const size_t n = loraAdapterSize(lora.sites, lora.rank);
  std::vector<float> base(paramCount(c)), params(base.size(), 0.f), grads(base.size());
  std::vector<float> adapter(n, 1.f), mm(n, 0.f), vv(n, 0.f);
  initParams(c, base.data(), 5);
  const std::vector<float> base0 = base;
  loraInit(lora.sites, lora.rank, adapter.data(), 21);
  for (const auto& s : lora.sites) {
    const float bound = 1.f / std::sqrt(float(s.in));
    for (size_t i = 0; i < size_t(lora.rank) * s.in; i++)
      KO_CHECK(std::fabs(adapter[s.aOffset + i]) <= bound && adapter[s.aOffset + i] != 0.f);
    for (size_t i = 0; i < size_t(s.out) * lora.rank; i++) KO_CHECK(adapter[s.bOffset + i] == 0.f);
  }
  std::vector<float> again(n);
  loraInit(lora.sites, lora.rank, again.data(), 21);
  KO_CHECK(again == adapter);
  lora.base = base.data();
  lora.adapter = adapter.data();
  lora.m = mm.data();
  lora.v = vv.data();

  params = base;
  loraMerge(params.data(), base.data(), adapter.data(), lora.sites, lora.rank, lora.scale);
  KO_CHECK(std::memcmp(params.data(), base.data(), params.size() * sizeof(float)) == 0);

  std::vector<uint32_t> in;
  std::vector<int32_t> tg;
  kotest::randomTokens(in, tg, 2 * 2 * 5, c.vocabSize, 6);
  TrainStepOptions o;
  o.batchSize = 2;
  o.seqLen = 5;
  o.accum = 2;
  o.adam = {1e-2f, 0.9f, 0.95f, 1e-8f, 1};
  o.weightDecay = 0.1f;
  o.gradClip = 1e-3f;  // small enough to clip, so the clipped path runs
  Model m(c, params.data());
  const std::vector<float> adapter0 = adapter;
  const TrainStepResult r = loraTrainStep(m, lora, grads.data(), in.data(), tg.data(), o);
  KO_CHECK(r.tokens == 20 && r.loss > 0 && r.gradNorm > o.gradClip);
  // The reported norm is the adapters' (B = 0 makes dA zero, so it is dB's alone), not the full model's.
  KO_CHECK(r.gradNorm < std::sqrt(sumSquares(grads.data(), grads.size())));

  std::vector<bool> adapted(params.size(), false);
  for (const auto& s : lora.sites)
    std::fill(adapted.begin() + s.weightOffset, adapted.begin() + s.weightOffset + size_t(s.out) * s.in, true);
  for (const auto& p : layout) {
    bool isSite = adapted[p.offset];
    const bool same = std::memcmp(params.data() + p.offset, base0.data() + p.offset, p.size * sizeof(float)) == 0;
    KO_CHECK_MSG(isSite ? !same : same, p.name + (isSite ? " did not change" : " changed but is not adapted"));
  }
  KO_CHECK(base == base0);  // W0 stays frozen
  for (const auto& s : lora.sites) {
    bool bMoved = false;
    for (size_t i = 0; i < size_t(s.out) * lora.rank; i++) bMoved |= adapter[s.bOffset + i] != 0.f;
    KO_CHECK_MSG(bMoved, s.name + ": B did not move");
  }
  // params() holds exactly the merge of the updated adapter.
  std::vector<float> want = base;
  loraMerge(want.data(), base.data(), adapter.data(), lora.sites, lora.rank, lora.scale);
  KO_CHECK(want == params);

  // A second step on the same batch lowers its loss.
  o.adam.step = 2;
  o.gradClip = 0.f;
  const double loss1 = loraTrainStep(m, lora, grads.data(), in.data(), tg.data(), o).loss;
  o.adam.step = 3;
  const double loss2 = loraTrainStep(m, lora, grads.data(), in.data(), tg.data(), o).loss;
  KO_CHECK(loss2 < loss1 && loss1 < r.loss);
}

KO_TEST(model, lora_rejects_bad_targets_and_rank) {
  const ModelConfig c = kotest::narrowTestConfig(ModelType::Llama, 32);
  auto message = [&](const std::vector<std::string>& targets, int rank) -> std::string {
    try {
      loraSites(c, targets, rank);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  const std::string bad = message({"q_proj", "qkv_proj"}, 4);
  KO_CHECK_MSG(bad.find("'qkv_proj'") != std::string::npos && bad.find("down_proj") != std::string::npos, bad);
  KO_CHECK(message({"q_proj"}, 0).find("rank") != std::string::npos);
  KO_CHECK(message({}, 4).find("targets") != std::string::npos);
}
