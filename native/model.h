// model.h — Llama / Qwen3 decoder: parameter layout, forward, backward, KV-cache decoding, training step.
// Parameters live in one caller-owned float buffer laid out by paramLayout(); the model never owns them,
// so the TS layer can write checkpoints straight from that memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fp8_recipe.h"
#include "ops.h"

namespace ko {

enum class ModelType { Llama, Qwen3 };

struct ModelConfig {
  ModelType type = ModelType::Llama;
  int vocabSize = 0, hiddenSize = 0, numLayers = 0, numHeads = 0, numKvHeads = 0, headDim = 0,
      intermediateSize = 0;
  float ropeTheta = 10000.f, rmsNormEps = 1e-6f;
  bool tieWordEmbeddings = false;
  // Llama 3.1 "llama3" rope scaling; factor 0 = none.
  float ropeScalingFactor = 0.f, ropeLowFreqFactor = 1.f, ropeHighFreqFactor = 4.f;
  int ropeOriginalMaxPos = 8192;
};

// Thrown for bad input (bad config, token id out of range, bad sizes): the binding turns it into a JS error.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "" when valid, else a message naming the offending key.
std::string validateConfig(const ModelConfig& c);

struct ParamInfo {
  std::string name;  // Hugging Face tensor name
  std::vector<int64_t> shape;
  size_t offset = 0, size = 0;
  bool decay = false;  // AdamW weight decay applies to matrices only, not to norm weights
};
std::vector<ParamInfo> paramLayout(const ModelConfig& c);
size_t paramCount(const ModelConfig& c);
// Offset of the tensor `name` in a layout (std::logic_error when absent: a layout bug, not bad input).
size_t tensorOffset(const std::vector<ParamInfo>& layout, const std::string& name);
// Forward FLOPs per token of the linears + attention at sequence length T (6x this for a training step's
// forward+backward is the usual MFU convention; the embedding lookup is not counted).
double forwardFlopsPerToken(const ModelConfig& c, int T);

// RoPE inverse frequencies [head_dim / 2] (with Llama 3.1 rope_scaling when set), in FP32.
std::vector<float> ropeInvFreq(const ModelConfig& c);

// Normal(0, std) for matrices, 1 for norm weights; deterministic in seed.
void initParams(const ModelConfig& c, float* params, uint64_t seed, float std = 0.02f);

// Numerics of the forward and backward passes (see README "Precision"): FP32 everywhere, or BF16 activations
// with linears in BF16 or FP8 (E4M3 inputs and weights, E5M2 output gradients, per-tensor scales).
// The CPU emulates the rounding of the CUDA path exactly (lowp.h); master weights stay FP32 either way.
enum class Precision { FP32 = 0, BF16 = 1, FP8 = 2 };

// The linear layers ("sites") in a fixed order: layer l has 4*l + {0 qkv (q,k,v fused), 1 o_proj,
// 2 gate_up (gate,up fused), 3 down_proj}; site 4*numLayers is the LM head. Each FP8 site scales three
// tensors: 3*site + {0 input (E4M3), 1 weight (E4M3), 2 output gradient (E5M2)}.
int numLinearSites(const ModelConfig& c);
enum Fp8Role { kFp8Input = 0, kFp8Weight = 1, kFp8Grad = 2 };
struct PrecisionOptions {
  Precision precision = Precision::FP32;
  Fp8Recipe recipe{};
  std::vector<uint8_t> fp8Sites;  // numLinearSites entries, 1 = FP8 (0 = kept in BF16); empty = all FP8
};

class Model {
 public:
  Model(const ModelConfig& c, float* params);
  const ModelConfig& config() const { return cfg_; }
  size_t numParams() const { return nParams_; }
  float* params() { return params_; }

  // inputs [B*T] token ids, targets [B*T] (negative = ignored). Returns the summed cross-entropy over
  // non-ignored targets; *count receives their number. Keeps activations for backward().
  // positions [B*T] (optional) packs several examples into a row: each token's position inside its example,
  // 0 at an example's first token and +1 after; attention then stays inside each example and RoPE restarts.
  double forward(const uint32_t* inputs, const int32_t* targets, int B, int T, int64_t* count,
                 const int32_t* positions = nullptr);
  // Logits [B*T, vocab] of the last forward(), valid until backward() (which overwrites them in place).
  const float* logits() const { return logits_.data(); }
  // Cross-entropy of each position in the last forward() (0 where the target is ignored).
  const float* tokenLosses() const { return losses_.data(); }
  // Accumulates d(dlossScale * summed loss)/d(params) into grads (same layout as params). rowScale [B*T]
  // (optional) weights each position's loss: d(dlossScale * sum_i rowScale[i] * loss_i)/d(params).
  void backward(float* grads, float dlossScale, const float* rowScale = nullptr);
  // For losses other than cross-entropy (distillation): write dLoss/dlogits [B*T, vocab] into logitGrad()
  // (it starts out holding the logits), then backwardFromLogitGrad() accumulates the parameter gradients.
  float* logitGrad() { return logits_.data(); }
  void backwardFromLogitGrad(float* grads);

  // Precision of forward()/backward() (decoding always runs in FP32). Resets the FP8 scaling state.
  void setPrecision(const PrecisionOptions& p);
  const PrecisionOptions& precision() const { return prec_; }
  bool siteIsFp8(int site) const;
  // FP8 per-tensor scaling state (3 tensors per site), checkpointed by the caller for exact resume.
  Fp8ScalingState& fp8State() { return fp8_; }
  // Ends optimizer step `step` (0-based): the FP8 delayed-scaling update. No-op unless precision is FP8.
  void endStep(int64_t step);

  // KV-cache decoding in FP32. decodeReset() makes `batch` cache slots of maxT positions each (all empty).
  // decodeBatch() runs n rows at once (one GEMM per linear over the n rows): row i feeds tokens[i] at position
  // pos[i] of slot slots[i] (slots == nullptr: slot i) and attends to that slot's positions 0..pos[i].
  // Several rows may share a slot (prefill of a prompt in one call) when their positions count up by 1.
  // A slot's first row in a call may start anywhere in 0..(positions the slot holds), so a cached prefix can
  // be kept and the rest overwritten. Returns logits [n, vocab], valid until the next decode call.
  void decodeReset(int maxT, int batch = 1);
  const float* decodeBatch(const uint32_t* tokens, const int32_t* pos, int n, const int32_t* slots = nullptr);
  const float* decodeStep(uint32_t token, int pos) { return decodeBatch(&token, &pos, 1); }  // slot 0

 private:
  struct LayerWeights {
    const float *inNorm, *q, *k, *v, *qNorm, *kNorm, *o, *postNorm, *gateUp, *down;
    size_t inNormOff, qOff, kOff, vOff, qNormOff, kNormOff, oOff, postNormOff, gateUpOff, downOff;
  };
  void ensureActivations(int B, int T);
  bool lowp() const { return prec_.precision != Precision::FP32; }
  void act(float* x, size_t n) const {  // activations and their gradients are BF16 under lowp precision
    if (lowp()) roundBf16InPlace(x, n);
  }
  void prepareWeights();
  // FP8 sites: fake-quantizes the buffers (one shared scale) in place for tensor 3*site + role.
  void quantize(int site, Fp8Role role, std::initializer_list<std::pair<float*, size_t>> bufs);
  const float* weights(size_t off) const { return (lowp() ? wLow_.data() : params_) + off; }
  void checkTokens(const uint32_t* ids, const int32_t* targets, size_t n) const;

  ModelConfig cfg_;
  float* params_;
  size_t nParams_;
  std::vector<LayerWeights> layers_;
  size_t embedOff_, normOff_, lmHeadOff_;
  std::vector<float> invFreq_;

  PrecisionOptions prec_;
  Fp8ScalingState fp8_;
  std::vector<float> wLow_, embLow_;  // BF16/FP8-rounded weights (lowp only), refreshed every forward()
  struct Site {
    size_t off, size;
  };
  std::vector<Site> sites_;

  // Activations kept for backward (sized for capB_ x capT_).
  int B_ = 0, T_ = 0, capRows_ = 0, capB_ = 0, capT_ = 0;
  std::vector<uint32_t> inputs_;
  std::vector<int32_t> targets_, positions_, keyStart_;  // positions_ empty = unpacked rows
  std::vector<float> losses_;
  struct LayerActs {
    std::vector<float> xIn, ln1, rstd1, qPre, kPre, qRstd, kRstd, q, k, v, probs, att, x1, ln2, rstd2, gateUp, h;
  };
  std::vector<LayerActs> acts_;
  std::vector<float> xOut_, lnf_, rstdf_, logits_;
  // Backward scratch.
  std::vector<float> dx_, dtmp_, dln_, dh_, dgu_, datt_, dq_, dk_, dv_, dqPre_, dkPre_;

  // KV cache: [layer][slot][pos][Hkv*D]; cacheLen_[slot] = positions 0..len-1 hold valid keys/values.
  int cacheT_ = 0, cacheB_ = 0;
  std::vector<int32_t> cacheLen_;
  std::vector<float> kCache_, vCache_;
  // Decode scratch for n rows (grown on demand): activations, per-row RoPE cos/sin, logits.
  std::vector<float> decX_, decLn_, decQ_, decK_, decV_, decAtt_, decGu_, decH_, decTmp_, decRope_, decLogits_,
      decRstd_;
};

// One optimizer step over `accum` micro-batches: zero grads, forward/backward each micro-batch with the loss
// normalised by the number of targets over all micro-batches, global-norm clipping, AdamW.
struct TrainStepOptions {
  int batchSize = 1, seqLen = 1, accum = 1;
  AdamWParams adam{};
  float weightDecay = 0.f, gradClip = 0.f;
  // Embedding warm-up after a vocabulary resize (train.freeze_old_embeddings_steps). Rows >= newRowsFrom of
  // embed_tokens (and of an untied lm_head) are the new tokens' (-1 = no resize: everything trains). While
  // adam.step <= freezeSteps only those rows are updated: every other weight, row and AdamW moment stays
  // bit-identical (their gradients are zeroed before the norm, so clipping sees only the trainable ones).
  // Afterwards all train; the once-frozen weights take AdamW step adam.step - freezeSteps (their moments
  // started at zero then, as with torch's per-parameter step counts). The step number alone decides, so a
  // resumed run continues exactly.
  int64_t newRowsFrom = -1;
  int64_t freezeSteps = 0;
};
// One contiguous piece of the parameter buffer that AdamW updates in a step.
struct AdamWRange {
  size_t offset = 0, size = 0;
  bool decay = false;
  int64_t step = 1;  // the AdamW step (bias correction) for this piece
};
struct OptimizerPlan {
  std::vector<AdamWRange> update;                    // in offset order
  std::vector<std::pair<size_t, size_t>> frozen;     // [offset, size) pieces left untouched this step
};
// What trainStep (CPU and CUDA) updates for options o: every tensor, or during the embedding warm-up only
// the new rows. Throws InputError for a newRowsFrom beyond the vocabulary.
OptimizerPlan optimizerPlan(const ModelConfig& c, const std::vector<ParamInfo>& layout, const TrainStepOptions& o);
struct TrainStepResult {
  double loss = 0, gradNorm = 0;
  int64_t tokens = 0;
};
// inputs/targets (and positions, optional: packed examples, see Model::forward): accum * batchSize * seqLen
// each. grads: scratch of numParams floats.
TrainStepResult trainStep(Model& model, float* grads, float* m, float* v, const uint32_t* inputs,
                          const int32_t* targets, const TrainStepOptions& o, const int32_t* positions = nullptr);
// The two halves of trainStep, for steps with other losses or other trainable weights (LoRA):
// zeroes grads, then forward/backward of the accum micro-batches with the cross-entropy normalised by the
// number of targets of the whole step (loss and tokens set; gradNorm left 0).
TrainStepResult accumulateGradients(Model& model, float* grads, const uint32_t* inputs, const int32_t* targets,
                                    const TrainStepOptions& o, const int32_t* positions = nullptr);
// Zeroes the frozen pieces of grads, clips by global norm, AdamW over optimizerPlan, FP8 endStep. Returns
// the gradient norm before clipping.
double optimizerStep(Model& model, float* grads, float* m, float* v, const TrainStepOptions& o);

// Threads used by OpenMP loops and OpenBLAS; 0 = all cores.
void setNumThreads(int n);
int numThreads();

}  // namespace ko
