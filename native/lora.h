// lora.h — LoRA adapters (Hu et al. 2021) on the decoder's linear layers: W_eff = W0 + (alpha / rank) · B · A,
// A [rank, in], B [out, rank]; only A and B train, W0 and every other weight stay frozen.
//
// The training step runs the ordinary forward/backward over the merged weights and forms the adapters'
// gradients from the full weight gradient G = dL/dW_eff:  dB = s · G · Aᵀ,  dA = s · Bᵀ · G  (s = alpha/rank),
// which is the exact gradient of the unmerged computation x·W0ᵀ + s·(x·Aᵀ)·Bᵀ. It saves the AdamW moments of
// the base (8 bytes per frozen parameter) but still forms G; a fused adapter path that skips G is future work.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model.h"

namespace ko {

// One adapted matrix: the HF weight it adapts and where A and B live in the adapter buffer.
struct LoraSite {
  std::string name;        // e.g. "model.layers.0.self_attn.q_proj.weight"
  size_t weightOffset = 0; // in the model's parameter buffer (paramLayout)
  int out = 0, in = 0;     // W is [out, in]
  size_t aOffset = 0, bOffset = 0;  // in the adapter buffer: A [rank, in], then B [out, rank]
};

// Sites for `targets` (module names: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj), in layout
// order. Throws InputError for an unknown target name or rank <= 0.
std::vector<LoraSite> loraSites(const ModelConfig& c, const std::vector<std::string>& targets, int rank);
// Floats in the adapter buffer for these sites.
size_t loraAdapterSize(const std::vector<LoraSite>& sites, int rank);

// A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming-uniform with a = sqrt(5)), B = 0: the adapted model starts
// exactly at the base model. Deterministic in seed.
void loraInit(const std::vector<LoraSite>& sites, int rank, float* adapter, uint64_t seed);

// params[site] = base[site] + scale · B · A for every site (other tensors untouched).
void loraMerge(float* params, const float* base, const float* adapter, const std::vector<LoraSite>& sites,
               int rank, float scale);

// Adapter gradients from the full weight gradients: dA = scale · Bᵀ · G, dB = scale · G · Aᵀ (overwritten).
void loraGradients(float* adapterGrads, const float* grads, const float* adapter, const std::vector<LoraSite>& sites,
                   int rank, float scale);

struct LoraState {
  std::vector<LoraSite> sites;
  int rank = 0;
  float scale = 0;  // alpha / rank
  float* base = nullptr;     // frozen W0: numParams floats (caller-owned)
  float* adapter = nullptr;  // loraAdapterSize floats (caller-owned), and its AdamW moments:
  float *m = nullptr, *v = nullptr;
  std::vector<float> adapterGrads;  // scratch
};

// One optimizer step of LoRA training on the cross-entropy (the same batches as trainStep): merge, forward and
// backward (accumulateGradients), adapter gradients, global-norm clipping over the adapters, AdamW on the
// adapters (weight decay applies to A and B), merge again so model.params() holds the updated W_eff.
TrainStepResult loraTrainStep(Model& model, LoraState& lora, float* grads, const uint32_t* inputs,
                              const int32_t* targets, const TrainStepOptions& o, const int32_t* positions = nullptr);

}  // namespace ko
