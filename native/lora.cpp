// lora.cpp — LoRA adapters over the decoder's linears (see lora.h): site layout, init, merge, gradients, step.
#include "lora.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>

#include "rng.h"

namespace ko {

namespace {

// Module names in the order paramLayout stores them inside a layer, with the HF sub-path of each.
struct TargetModule {
  const char* module;
  const char* path;
};
constexpr TargetModule kTargets[] = {
    {"q_proj", "self_attn.q_proj"}, {"k_proj", "self_attn.k_proj"}, {"v_proj", "self_attn.v_proj"},
    {"o_proj", "self_attn.o_proj"}, {"gate_proj", "mlp.gate_proj"},  {"up_proj", "mlp.up_proj"},
    {"down_proj", "mlp.down_proj"},
};

std::string knownTargets() {
  std::string s;
  for (const auto& t : kTargets) s += std::string(s.empty() ? "" : ", ") + t.module;
  return s;
}

}  // namespace

std::vector<LoraSite> loraSites(const ModelConfig& c, const std::vector<std::string>& targets, int rank) {
  if (rank <= 0) throw InputError("lora.rank must be a positive integer, got " + std::to_string(rank));
  if (targets.empty()) throw InputError("lora.targets is empty: name at least one of " + knownTargets());
  bool want[std::size(kTargets)] = {};
  for (const auto& t : targets) {
    size_t i = 0;
    while (i < std::size(kTargets) && t != kTargets[i].module) i++;
    if (i == std::size(kTargets))
      throw InputError("unknown LoRA target '" + t + "' (allowed: " + knownTargets() + ")");
    want[i] = true;
  }
  const std::vector<ParamInfo> layout = paramLayout(c);
  std::vector<LoraSite> sites;
  size_t off = 0;
  for (int l = 0; l < c.numLayers; l++) {
    for (size_t i = 0; i < std::size(kTargets); i++) {
      if (!want[i]) continue;
      const std::string name = "model.layers." + std::to_string(l) + "." + kTargets[i].path + ".weight";
      const auto it = std::find_if(layout.begin(), layout.end(), [&](const ParamInfo& p) { return p.name == name; });
      if (it == layout.end()) throw std::logic_error("missing tensor " + name);
      LoraSite s;
      s.name = name;
      s.weightOffset = it->offset;
      s.out = int(it->shape[0]);
      s.in = int(it->shape[1]);
      s.aOffset = off;
      off += size_t(rank) * size_t(s.in);
      s.bOffset = off;
      off += size_t(s.out) * size_t(rank);
      sites.push_back(std::move(s));
    }
  }
  return sites;
}

size_t loraAdapterSize(const std::vector<LoraSite>& sites, int rank) {
  size_t n = 0;
  for (const auto& s : sites) n += size_t(rank) * size_t(s.in + s.out);
  return n;
}

void loraInit(const std::vector<LoraSite>& sites, int rank, float* adapter, uint64_t seed) {
  for (const auto& s : sites) {
    // One stream per site keyed by its place in the buffer, as initParams does per tensor.
    Rng rng(seed ^ (0x9E3779B97F4A7C15ull * (s.aOffset + 1)));
    const double bound = 1.0 / std::sqrt(double(s.in));
    float* A = adapter + s.aOffset;
    for (size_t i = 0; i < size_t(rank) * size_t(s.in); i++) A[i] = float((2.0 * rng.uniform() - 1.0) * bound);
    std::fill(adapter + s.bOffset, adapter + s.bOffset + size_t(s.out) * size_t(rank), 0.f);
  }
}

void loraMerge(float* params, const float* base, const float* adapter, const std::vector<LoraSite>& sites,
               int rank, float scale) {
  for (const auto& s : sites) {
    float* W = params + s.weightOffset;
    std::memcpy(W, base + s.weightOffset, size_t(s.out) * size_t(s.in) * sizeof(float));
    // W[out, in] += scale · B[out, rank] · A[rank, in]
    gemm(false, false, s.out, s.in, rank, scale, adapter + s.bOffset, rank, adapter + s.aOffset, s.in, 1.f, W,
         s.in);
  }
}

void loraGradients(float* adapterGrads, const float* grads, const float* adapter, const std::vector<LoraSite>& sites,
                   int rank, float scale) {
  for (const auto& s : sites) {
    const float* G = grads + s.weightOffset;  // [out, in]
    // dA[rank, in] = scale · Bᵀ · G
    gemm(true, false, rank, s.in, s.out, scale, adapter + s.bOffset, rank, G, s.in, 0.f, adapterGrads + s.aOffset,
         s.in);
    // dB[out, rank] = scale · G · Aᵀ
    gemm(false, true, s.out, rank, s.in, scale, G, s.in, adapter + s.aOffset, s.in, 0.f, adapterGrads + s.bOffset,
         rank);
  }
}

TrainStepResult loraTrainStep(Model& model, LoraState& lora, float* grads, const uint32_t* inputs,
                              const int32_t* targets, const TrainStepOptions& o, const int32_t* positions) {
  const size_t n = loraAdapterSize(lora.sites, lora.rank);
  lora.adapterGrads.resize(n);
  // Merging first makes the step independent of what was in params() (a checkpoint load, an eval).
  loraMerge(model.params(), lora.base, lora.adapter, lora.sites, lora.rank, lora.scale);
  TrainStepResult r = accumulateGradients(model, grads, inputs, targets, o, positions);
  if (r.tokens == 0) return r;
  loraGradients(lora.adapterGrads.data(), grads, lora.adapter, lora.sites, lora.rank, lora.scale);
  r.gradNorm = std::sqrt(sumSquares(lora.adapterGrads.data(), n));
  float clip = 1.f;
  if (o.gradClip > 0 && r.gradNorm > 0) clip = float(std::min(1.0, o.gradClip / (r.gradNorm + 1e-6)));
  adamwUpdate(lora.adapter, lora.adapterGrads.data(), lora.m, lora.v, n, o.adam, o.weightDecay, clip);
  loraMerge(model.params(), lora.base, lora.adapter, lora.sites, lora.rank, lora.scale);
  model.endStep(o.adam.step - 1);
  return r;
}

}  // namespace ko
