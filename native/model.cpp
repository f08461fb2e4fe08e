// model.cpp — the Llama / Qwen3 decoder on the CPU: layout, forward, backward, training step (decoding: model_decode.cpp).
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "lowp.h"
#include "rng.h"

namespace ko {

std::string validateConfig(const ModelConfig& c) {
  auto pos = [](const char* key, long v) -> std::string {
    return v > 0 ? "" : std::string("model.") + key + " must be a positive integer, got " + std::to_string(v);
  };
  std::string e;
  if (!(e = pos("vocab_size", c.vocabSize)).empty()) return e;
  if (!(e = pos("hidden_size", c.hiddenSize)).empty()) return e;
  if (!(e = pos("num_hidden_layers", c.numLayers)).empty()) return e;
  if (!(e = pos("num_attention_heads", c.numHeads)).empty()) return e;
  if (!(e = pos("num_key_value_heads", c.numKvHeads)).empty()) return e;
  if (!(e = pos("head_dim", c.headDim)).empty()) return e;
  if (!(e = pos("intermediate_size", c.intermediateSize)).empty()) return e;
  if (c.numHeads % c.numKvHeads != 0)
    return "model.num_attention_heads (" + std::to_string(c.numHeads) +
           ") must be a multiple of model.num_key_value_heads (" + std::to_string(c.numKvHeads) + ")";
  if (c.headDim % 2 != 0) return "model.head_dim must be even for RoPE, got " + std::to_string(c.headDim);
  if (!(c.ropeTheta > 0)) return "model.rope_theta must be > 0";
  if (!(c.rmsNormEps > 0)) return "model.rms_norm_eps must be > 0";
  return "";
}

std::vector<ParamInfo> paramLayout(const ModelConfig& c) {
  std::vector<ParamInfo> out;
  size_t off = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    ParamInfo p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.size = 1;
    for (auto s : p.shape) p.size *= size_t(s);
    p.offset = off;
    p.decay = p.shape.size() >= 2;
    off += p.size;
    out.push_back(std::move(p));
  };
  const int64_t H = c.hiddenSize, D = c.headDim, F = c.intermediateSize;
  add("model.embed_tokens.weight", {c.vocabSize, H});
  for (int l = 0; l < c.numLayers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {c.numHeads * D, H});
    add(p + "self_attn.k_proj.weight", {c.numKvHeads * D, H});
    add(p + "self_attn.v_proj.weight", {c.numKvHeads * D, H});
    if (c.type == ModelType::Qwen3) {
      add(p + "self_attn.q_norm.weight", {D});
      add(p + "self_attn.k_norm.weight", {D});
    }
    add(p + "self_attn.o_proj.weight", {H, c.numHeads * D});
    add(p + "post_attention_layernorm.weight", {H});
    // gate_proj and up_proj adjacent: one GEMM computes both.
    add(p + "mlp.gate_proj.weight", {F, H});
    add(p + "mlp.up_proj.weight", {F, H});
    add(p + "mlp.down_proj.weight", {H, F});
  }
  add("model.norm.weight", {H});
  if (!c.tieWordEmbeddings) add("lm_head.weight", {c.vocabSize, H});
  return out;
}

size_t tensorOffset(const std::vector<ParamInfo>& layout, const std::string& name) {
  for (const auto& p : layout)
    if (p.name == name) return p.offset;
  throw std::logic_error("missing tensor " + name);
}

size_t paramCount(const ModelConfig& c) {
  auto l = paramLayout(c);
  return l.back().offset + l.back().size;
}

double forwardFlopsPerToken(const ModelConfig& c, int T) {
  const double H = c.hiddenSize, D = c.headDim, F = c.intermediateSize;
  const double qkvo = H * D * (2.0 * c.numHeads + 2.0 * c.numKvHeads);
  const double mlp = 3.0 * H * F;
  const double attn = 2.0 * c.numHeads * D * T;  // QK^T and PV, full (non-causal) count as in PaLM's MFU
  return 2.0 * c.numLayers * (qkvo + mlp) + 2.0 * c.numLayers * attn + 2.0 * H * c.vocabSize;
}

void initParams(const ModelConfig& c, float* params, uint64_t seed, float std) {
  for (const auto& p : paramLayout(c)) {
    float* w = params + p.offset;
    if (p.shape.size() == 1) {
      std::fill(w, w + p.size, 1.0f);
      continue;
    }
    // One stream per tensor, keyed by its position, so adding a tensor does not reshuffle the others.
    Rng rng(seed ^ (0x9E3779B97F4A7C15ull * (p.offset + 1)));
    for (size_t i = 0; i < p.size; i++) w[i] = float(rng.normal()) * std;
  }
}

std::vector<float> ropeInvFreq(const ModelConfig& c) {
  const int half = c.headDim / 2;
  std::vector<float> f(half);
  for (int i = 0; i < half; i++) {
    double inv = 1.0 / std::pow(double(c.ropeTheta), 2.0 * i / c.headDim);
    if (c.ropeScalingFactor > 0) {  // transformers' _compute_llama3_parameters
      const double lowWavelen = c.ropeOriginalMaxPos / c.ropeLowFreqFactor;
      const double highWavelen = c.ropeOriginalMaxPos / c.ropeHighFreqFactor;
      const double wavelen = 2 * M_PI / inv;
      if (wavelen > lowWavelen) {
        inv = inv / c.ropeScalingFactor;
      } else if (wavelen >= highWavelen) {
        double smooth = (c.ropeOriginalMaxPos / wavelen - c.ropeLowFreqFactor) /
                        (c.ropeHighFreqFactor - c.ropeLowFreqFactor);
        inv = (1 - smooth) * inv / c.ropeScalingFactor + smooth * inv;
      }
    }
    f[i] = float(inv);
  }
  return f;
}

Model::Model(const ModelConfig& c, float* params) : cfg_(c), params_(params) {
  std::string err = validateConfig(c);
  if (!err.empty()) throw InputError(err);
  auto layout = paramLayout(c);
  nParams_ = layout.back().offset + layout.back().size;
  auto find = [&](const std::string& name) { return tensorOffset(layout, name); };
  embedOff_ = find("model.embed_tokens.weight");
  normOff_ = find("model.norm.weight");
  lmHeadOff_ = c.tieWordEmbeddings ? embedOff_ : find("lm_head.weight");
  for (int l = 0; l < c.numLayers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights w{};
    w.inNormOff = find(p + "input_layernorm.weight");
    w.qOff = find(p + "self_attn.q_proj.weight");
    w.kOff = find(p + "self_attn.k_proj.weight");
    w.vOff = find(p + "self_attn.v_proj.weight");
    if (c.type == ModelType::Qwen3) {
      w.qNormOff = find(p + "self_attn.q_norm.weight");
      w.kNormOff = find(p + "self_attn.k_norm.weight");
    }
    w.oOff = find(p + "self_attn.o_proj.weight");
    w.postNormOff = find(p + "post_attention_layernorm.weight");
    w.gateUpOff = find(p + "mlp.gate_proj.weight");
    w.downOff = find(p + "mlp.down_proj.weight");
    layers_.push_back(w);
  }
  invFreq_ = ropeInvFreq(c);
  const size_t H = c.hiddenSize, QD = size_t(c.numHeads) * c.headDim, KVD = size_t(c.numKvHeads) * c.headDim,
               F = c.intermediateSize;
  for (const auto& w : layers_) {
    if (w.kOff != w.qOff + QD * H || w.vOff != w.kOff + KVD * H) throw std::logic_error("q,k,v not contiguous");
    sites_.push_back({w.qOff, (QD + 2 * KVD) * H});
    sites_.push_back({w.oOff, H * QD});
    sites_.push_back({w.gateUpOff, 2 * F * H});
    sites_.push_back({w.downOff, H * F});
  }
  sites_.push_back({lmHeadOff_, size_t(c.vocabSize) * H});
}

int numLinearSites(const ModelConfig& c) { return 4 * c.numLayers + 1; }

void Model::setPrecision(const PrecisionOptions& p) {
  const int n = numLinearSites(cfg_);
  if (!p.fp8Sites.empty() && int(p.fp8Sites.size()) != n)
    throw InputError("fp8 site mask has " + std::to_string(p.fp8Sites.size()) + " entries, the model has " +
                     std::to_string(n) + " linear layers");
  if (p.recipe.historyLen < 1) throw InputError("train.fp8.amax_history_len must be >= 1");
  if (p.recipe.margin < 0) throw InputError("train.fp8.margin must be >= 0");
  prec_ = p;
  if (prec_.fp8Sites.empty()) prec_.fp8Sites.assign(n, 1);
  std::vector<Fp8Format> formats;
  for (int i = 0; i < n; i++)
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E4M3, Fp8Format::E5M2}) formats.push_back(f);
  fp8_.init(formats, p.recipe.historyLen);
  if (!lowp()) {
    wLow_.clear();
    embLow_.clear();
  }
}

bool Model::siteIsFp8(int site) const {
  return prec_.precision == Precision::FP8 && site >= 0 && site < int(prec_.fp8Sites.size()) &&
         prec_.fp8Sites[site] != 0;
}

void Model::endStep(int64_t step) {
  if (prec_.precision == Precision::FP8 && !prec_.recipe.currentScaling)
    fp8_.update(step, prec_.recipe.margin, prec_.recipe.useMax);
}

void Model::quantize(int site, Fp8Role role, std::initializer_list<std::pair<float*, size_t>> bufs) {
  const int t = 3 * site + role;
  const Fp8Format f = Fp8Format(fp8_.formats[t]);
  if (prec_.recipe.currentScaling) {  // scale from this tensor's own amax, before the cast
    float amax = 0.f;
    for (const auto& b : bufs)
      for (size_t i = 0; i < b.second; i++) amax = std::fmax(amax, std::fabs(b.first[i]));
    fp8_.scale[t] = fp8ScaleFromAmax(amax, fp8_.scale[t], f, prec_.recipe.margin);
    fp8_.scaleInv[t] = 1.f / fp8_.scale[t];
  }
  for (const auto& b : bufs) fp8_.record(t, fp8QuantizeInPlace(b.first, b.second, f, fp8_.scale[t], fp8_.scaleInv[t]));
}

// The weights as the step's GEMMs see them: linears rounded to BF16 or cast to FP8 (with the weight's scale),
// norms in FP32, and the embedding table in BF16 (its own copy: with tied embeddings the LM head's FP8 cast
// of the same matrix lives in wLow_).
void Model::prepareWeights() {
  wLow_.assign(params_, params_ + nParams_);
  const size_t embSize = size_t(cfg_.vocabSize) * cfg_.hiddenSize;
  embLow_.assign(params_ + embedOff_, params_ + embedOff_ + embSize);
  roundBf16InPlace(embLow_.data(), embSize);
  for (int s = 0; s < int(sites_.size()); s++) {
    float* w = wLow_.data() + sites_[s].off;
    if (siteIsFp8(s))
      quantize(s, kFp8Weight, {{w, sites_[s].size}});
    else
      roundBf16InPlace(w, sites_[s].size);
  }
}

void Model::checkTokens(const uint32_t* ids, const int32_t* targets, size_t n) const {
  for (size_t i = 0; i < n; i++) {
    if (ids[i] >= uint32_t(cfg_.vocabSize))
      throw InputError("token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                       " is out of range for vocab_size " + std::to_string(cfg_.vocabSize));
    if (targets && targets[i] >= cfg_.vocabSize)
      throw InputError("target id " + std::to_string(targets[i]) + " at position " + std::to_string(i) +
                       " is out of range for vocab_size " + std::to_string(cfg_.vocabSize));
  }
}

void Model::ensureActivations(int B, int T) {
  B_ = B;
  T_ = T;
  if (B <= capB_ && T <= capT_ && B * T <= capRows_) return;
  capB_ = std::max(B, capB_);
  capT_ = std::max(T, capT_);
  capRows_ = capB_ * capT_;
  const size_t R = size_t(capRows_), H = cfg_.hiddenSize, D = cfg_.headDim, Hq = cfg_.numHeads,
               Hkv = cfg_.numKvHeads, F = cfg_.intermediateSize, V = cfg_.vocabSize;
  const bool qk = cfg_.type == ModelType::Qwen3;
  acts_.assign(cfg_.numLayers, LayerActs{});
  for (auto& a : acts_) {
    a.xIn.resize(R * H);
    a.ln1.resize(R * H);
    a.rstd1.resize(R);
    if (qk) {
      a.qPre.resize(R * Hq * D);
      a.kPre.resize(R * Hkv * D);
      a.qRstd.resize(R * Hq);
      a.kRstd.resize(R * Hkv);
    }
    a.q.resize(R * Hq * D);
    a.k.resize(R * Hkv * D);
    a.v.resize(R * Hkv * D);
    a.probs.resize(size_t(capB_) * Hq * capT_ * capT_);
    a.att.resize(R * Hq * D);
    a.x1.resize(R * H);
    a.ln2.resize(R * H);
    a.rstd2.resize(R);
    a.gateUp.resize(R * 2 * F);
    a.h.resize(R * F);
  }
  xOut_.resize(R * H);
  lnf_.resize(R * H);
  rstdf_.resize(R);
  logits_.resize(R * V);
  dx_.resize(R * H);
  dtmp_.resize(R * H);
  dln_.resize(R * H);
  dh_.resize(R * F);
  dgu_.resize(R * 2 * F);
  datt_.resize(R * Hq * D);
  dq_.resize(R * Hq * D);
  dk_.resize(R * Hkv * D);
  dv_.resize(R * Hkv * D);
  if (qk) {
    dqPre_.resize(R * Hq * D);
    dkPre_.resize(R * Hkv * D);
  }
}

static void addInPlace(float* y, const float* x, size_t n) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < long(n); i++) y[i] += x[i];
}

// Packed rows: positions restart at 0 at each example and count up by one; keyStart_ is where each token's
// example begins, for the attention mask.
static void checkPositions(const int32_t* pos, int B, int T, std::vector<int32_t>& keyStart) {
  keyStart.resize(size_t(B) * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const size_t i = size_t(b) * T + t;
      const int32_t p = pos[i];
      if (!(p == 0 || (t > 0 && p == pos[i - 1] + 1)))
        throw InputError("positions[" + std::to_string(i) + "] = " + std::to_string(p) + " (row " +
                         std::to_string(b) + ", column " + std::to_string(t) +
                         "): a packed row's positions must be 0 at each example's start and count up by 1");
      keyStart[i] = t - p;
    }
}

double Model::forward(const uint32_t* inputs, const int32_t* targets, int B, int T, int64_t* count,
                      const int32_t* positions) {
  if (B <= 0 || T <= 0) throw InputError("batch and sequence length must be positive");
  const size_t R = size_t(B) * T;
  checkTokens(inputs, targets, R);
  if (positions) {
    checkPositions(positions, B, T, keyStart_);
    positions_.assign(positions, positions + R);
  } else {
    positions_.clear();
    keyStart_.clear();
  }
  const int32_t* pos = positions ? positions_.data() : nullptr;
  const int32_t* keyStart = positions ? keyStart_.data() : nullptr;
  ensureActivations(B, T);
  inputs_.assign(inputs, inputs + R);
  targets_.assign(targets, targets + R);
  const int H = cfg_.hiddenSize, D = cfg_.headDim, Hq = cfg_.numHeads, Hkv = cfg_.numKvHeads,
            F = cfg_.intermediateSize, V = cfg_.vocabSize;
  const float eps = cfg_.rmsNormEps;
  const bool qk = cfg_.type == ModelType::Qwen3;
  const float* P = params_;
  const size_t QD = size_t(Hq) * D, KVD = size_t(Hkv) * D;
  if (lowp()) prepareWeights();
  const int L = cfg_.numLayers;
  // A linear layer's input under FP8 is cast in place: these buffers feed nothing but the linear(s)
  // (and their weight gradients), exactly what the GPU keeps in FP8.
  auto castInput = [&](int site, float* x, size_t n) {
    if (siteIsFp8(site)) quantize(site, kFp8Input, {{x, n}});
  };

  embeddingForward(acts_[0].xIn.data(), inputs, lowp() ? embLow_.data() : P + embedOff_, int(R), H);
  for (int l = 0; l < L; l++) {
    LayerActs& a = acts_[l];
    const LayerWeights& w = layers_[l];
    float* xNext = (l + 1 < L) ? acts_[l + 1].xIn.data() : xOut_.data();
    rmsnormForward(a.ln1.data(), a.rstd1.data(), a.xIn.data(), P + w.inNormOff, int(R), H, eps);
    act(a.ln1.data(), R * H);
    castInput(4 * l + 0, a.ln1.data(), R * H);
    float* qOut = qk ? a.qPre.data() : a.q.data();
    float* kOut = qk ? a.kPre.data() : a.k.data();
    linearForward(qOut, a.ln1.data(), weights(w.qOff), int(R), H, Hq * D);
    linearForward(kOut, a.ln1.data(), weights(w.kOff), int(R), H, Hkv * D);
    linearForward(a.v.data(), a.ln1.data(), weights(w.vOff), int(R), H, Hkv * D);
    act(qOut, R * QD);
    act(kOut, R * KVD);
    act(a.v.data(), R * KVD);
    if (qk) {  // Qwen3: RMSNorm over head_dim on every head of q and k, before RoPE
      rmsnormForward(a.q.data(), a.qRstd.data(), a.qPre.data(), P + w.qNormOff, int(R) * Hq, D, eps);
      rmsnormForward(a.k.data(), a.kRstd.data(), a.kPre.data(), P + w.kNormOff, int(R) * Hkv, D, eps);
      act(a.q.data(), R * QD);
      act(a.k.data(), R * KVD);
    }
    ropeApply(a.q.data(), B, T, Hq, D, Hq * D, invFreq_.data(), 0, false, pos);
    ropeApply(a.k.data(), B, T, Hkv, D, Hkv * D, invFreq_.data(), 0, false, pos);
    act(a.q.data(), R * QD);
    act(a.k.data(), R * KVD);
    attentionForward(a.att.data(), a.probs.data(), a.q.data(), a.k.data(), a.v.data(), B, T, Hq, Hkv, D, Hq * D,
                     Hkv * D, keyStart);
    act(a.att.data(), R * QD);
    castInput(4 * l + 1, a.att.data(), R * QD);
    linearForward(a.x1.data(), a.att.data(), weights(w.oOff), int(R), Hq * D, H);
    act(a.x1.data(), R * H);
    addInPlace(a.x1.data(), a.xIn.data(), R * H);
    act(a.x1.data(), R * H);
    rmsnormForward(a.ln2.data(), a.rstd2.data(), a.x1.data(), P + w.postNormOff, int(R), H, eps);
    act(a.ln2.data(), R * H);
    castInput(4 * l + 2, a.ln2.data(), R * H);
    linearForward(a.gateUp.data(), a.ln2.data(), weights(w.gateUpOff), int(R), H, 2 * F);
    act(a.gateUp.data(), R * 2 * F);
    swigluForward(a.h.data(), a.gateUp.data(), int(R), F);
    act(a.h.data(), R * F);
    castInput(4 * l + 3, a.h.data(), R * F);
    linearForward(xNext, a.h.data(), weights(w.downOff), int(R), F, H);
    act(xNext, R * H);
    addInPlace(xNext, a.x1.data(), R * H);
    act(xNext, R * H);
  }
  rmsnormForward(lnf_.data(), rstdf_.data(), xOut_.data(), P + normOff_, int(R), H, eps);
  act(lnf_.data(), R * H);
  castInput(4 * L, lnf_.data(), R * H);
  linearForward(logits_.data(), lnf_.data(), weights(lmHeadOff_), int(R), H, V);  // logits stay FP32
  losses_.resize(R);
  double sum = crossEntropyForward(losses_.data(), logits_.data(), targets, int(R), V);
  int64_t n = 0;
  for (size_t i = 0; i < R; i++) n += targets[i] >= 0;
  if (count) *count = n;
  return sum;
}

void Model::backward(float* G, float dlossScale, const float* rowScale) {
  if (B_ == 0) throw std::logic_error("backward() before forward()");
  crossEntropyBackward(logits_.data(), targets_.data(), B_ * T_, cfg_.vocabSize, dlossScale, rowScale);
  backwardFromLogitGrad(G);  // logits_ now holds dlogits
}

void Model::backwardFromLogitGrad(float* G) {
  if (B_ == 0) throw std::logic_error("backward() before forward()");
  const int B = B_, T = T_;
  const size_t R = size_t(B) * T;
  const int H = cfg_.hiddenSize, D = cfg_.headDim, Hq = cfg_.numHeads, Hkv = cfg_.numKvHeads,
            F = cfg_.intermediateSize, V = cfg_.vocabSize;
  const bool qk = cfg_.type == ModelType::Qwen3;
  const float* P = params_;
  const size_t QD = size_t(Hq) * D, KVD = size_t(Hkv) * D;
  const int L = cfg_.numLayers;
  // Output gradients are BF16, then E5M2 (one scale per site) where the site is FP8.
  auto castGrad = [&](int site, std::initializer_list<std::pair<float*, size_t>> bufs) {
    if (siteIsFp8(site)) quantize(site, kFp8Grad, bufs);
  };

  act(logits_.data(), R * V);
  castGrad(4 * L, {{logits_.data(), R * V}});
  linearBackward(dln_.data(), G + lmHeadOff_, logits_.data(), lnf_.data(), weights(lmHeadOff_), int(R), H, V);
  act(dln_.data(), R * H);
  rmsnormBackward(dx_.data(), G + normOff_, dln_.data(), xOut_.data(), P + normOff_, rstdf_.data(), int(R), H);
  act(dx_.data(), R * H);

  // dx_ holds dLoss/d(output of layer l) on entry to each iteration.
  for (int l = L - 1; l >= 0; l--) {
    LayerActs& a = acts_[l];
    const LayerWeights& w = layers_[l];
    // MLP branch: out = x1 + down(swiglu(gate_up(ln2(x1)))). dx_ is also the residual's gradient, so the
    // down projection gets its FP8 copy in dtmp_.
    float* dDown = dx_.data();
    if (siteIsFp8(4 * l + 3)) {
      std::copy(dx_.begin(), dx_.begin() + R * H, dtmp_.begin());
      dDown = dtmp_.data();
      castGrad(4 * l + 3, {{dDown, R * H}});
    }
    linearBackward(dh_.data(), G + w.downOff, dDown, a.h.data(), weights(w.downOff), int(R), F, H);
    act(dh_.data(), R * F);
    swigluBackward(dgu_.data(), dh_.data(), a.gateUp.data(), int(R), F);
    act(dgu_.data(), R * 2 * F);
    castGrad(4 * l + 2, {{dgu_.data(), R * 2 * F}});
    linearBackward(dln_.data(), G + w.gateUpOff, dgu_.data(), a.ln2.data(), weights(w.gateUpOff), int(R), H, 2 * F);
    act(dln_.data(), R * H);
    rmsnormBackward(dtmp_.data(), G + w.postNormOff, dln_.data(), a.x1.data(), P + w.postNormOff, a.rstd2.data(),
                    int(R), H);
    act(dtmp_.data(), R * H);
    addInPlace(dx_.data(), dtmp_.data(), R * H);  // dx_ = dLoss/dx1
    act(dx_.data(), R * H);
    // Attention branch: x1 = xIn + o(attn(rope(q), rope(k), v))
    float* dO = dx_.data();
    if (siteIsFp8(4 * l + 1)) {
      std::copy(dx_.begin(), dx_.begin() + R * H, dtmp_.begin());
      dO = dtmp_.data();
      castGrad(4 * l + 1, {{dO, R * H}});
    }
    linearBackward(datt_.data(), G + w.oOff, dO, a.att.data(), weights(w.oOff), int(R), Hq * D, H);
    act(datt_.data(), R * QD);
    attentionBackward(dq_.data(), dk_.data(), dv_.data(), datt_.data(), a.probs.data(), a.q.data(), a.k.data(),
                      a.v.data(), B, T, Hq, Hkv, D, Hq * D, Hkv * D);
    act(dq_.data(), R * QD);
    act(dk_.data(), R * KVD);
    act(dv_.data(), R * KVD);
    const int32_t* pos = positions_.empty() ? nullptr : positions_.data();
    ropeApply(dq_.data(), B, T, Hq, D, Hq * D, invFreq_.data(), 0, true, pos);
    ropeApply(dk_.data(), B, T, Hkv, D, Hkv * D, invFreq_.data(), 0, true, pos);
    act(dq_.data(), R * QD);
    act(dk_.data(), R * KVD);
    const float* qIn = a.ln1.data();
    float* dqProj = dq_.data();  // gradient w.r.t. the q/k projections' outputs
    float* dkProj = dk_.data();
    if (qk) {
      rmsnormBackward(dqPre_.data(), G + w.qNormOff, dq_.data(), a.qPre.data(), P + w.qNormOff, a.qRstd.data(),
                      int(R) * Hq, D);
      rmsnormBackward(dkPre_.data(), G + w.kNormOff, dk_.data(), a.kPre.data(), P + w.kNormOff, a.kRstd.data(),
                      int(R) * Hkv, D);
      dqProj = dqPre_.data();
      dkProj = dkPre_.data();
      act(dqProj, R * QD);
      act(dkProj, R * KVD);
    }
    castGrad(4 * l + 0, {{dqProj, R * QD}, {dkProj, R * KVD}, {dv_.data(), R * KVD}});
    // dLn1 = dq Wq + dk Wk + dv Wv; weight gradients accumulate.
    linearBackward(nullptr, G + w.qOff, dqProj, qIn, weights(w.qOff), int(R), H, Hq * D);
    linearBackward(nullptr, G + w.kOff, dkProj, qIn, weights(w.kOff), int(R), H, Hkv * D);
    linearBackward(nullptr, G + w.vOff, dv_.data(), qIn, weights(w.vOff), int(R), H, Hkv * D);
    gemm(false, false, int(R), H, Hq * D, 1.f, dqProj, Hq * D, weights(w.qOff), H, 0.f, dln_.data(), H);
    gemm(false, false, int(R), H, Hkv * D, 1.f, dkProj, Hkv * D, weights(w.kOff), H, 1.f, dln_.data(), H);
    gemm(false, false, int(R), H, Hkv * D, 1.f, dv_.data(), Hkv * D, weights(w.vOff), H, 1.f, dln_.data(), H);
    act(dln_.data(), R * H);
    rmsnormBackward(dtmp_.data(), G + w.inNormOff, dln_.data(), a.xIn.data(), P + w.inNormOff, a.rstd1.data(),
                    int(R), H);
    act(dtmp_.data(), R * H);
    addInPlace(dx_.data(), dtmp_.data(), R * H);  // dx_ = dLoss/dxIn
    act(dx_.data(), R * H);
  }
  embeddingBackward(G + embedOff_, inputs_.data(), dx_.data(), int(R), H);
}

TrainStepResult accumulateGradients(Model& model, float* grads, const uint32_t* inputs, const int32_t* targets,
                                    const TrainStepOptions& o, const int32_t* positions) {
  const size_t micro = size_t(o.batchSize) * o.seqLen;
  int64_t total = 0;
  for (size_t i = 0; i < micro * o.accum; i++) total += targets[i] >= 0;
  std::fill(grads, grads + model.numParams(), 0.f);
  TrainStepResult r;
  r.tokens = total;
  if (total == 0) return r;
  double lossSum = 0;
  for (int a = 0; a < o.accum; a++) {
    int64_t cnt = 0;
    lossSum += model.forward(inputs + a * micro, targets + a * micro, o.batchSize, o.seqLen, &cnt,
                             positions ? positions + a * micro : nullptr);
    model.backward(grads, float(1.0 / double(total)));
  }
  r.loss = lossSum / double(total);
  return r;
}

double optimizerStep(Model& model, float* grads, float* m, float* v, const TrainStepOptions& o) {
  const OptimizerPlan plan = optimizerPlan(model.config(), paramLayout(model.config()), o);
  for (const auto& f : plan.frozen) std::fill(grads + f.first, grads + f.first + f.second, 0.f);
  const double gradNorm = std::sqrt(sumSquares(grads, model.numParams()));
  float scale = 1.f;
  if (o.gradClip > 0 && gradNorm > 0) scale = float(std::min(1.0, o.gradClip / (gradNorm + 1e-6)));
  for (const auto& u : plan.update) {
    AdamWParams hp = o.adam;
    hp.step = u.step;
    adamwUpdate(model.params() + u.offset, grads + u.offset, m + u.offset, v + u.offset, u.size, hp,
                u.decay ? o.weightDecay : 0.f, scale);
  }
  model.endStep(o.adam.step - 1);
  return gradNorm;
}

TrainStepResult trainStep(Model& model, float* grads, float* m, float* v, const uint32_t* inputs,
                          const int32_t* targets, const TrainStepOptions& o, const int32_t* positions) {
  TrainStepResult r = accumulateGradients(model, grads, inputs, targets, o, positions);
  if (r.tokens == 0) return r;
  r.gradNorm = optimizerStep(model, grads, m, v, o);
  return r;
}

OptimizerPlan optimizerPlan(const ModelConfig& c, const std::vector<ParamInfo>& layout, const TrainStepOptions& o) {
  OptimizerPlan plan;
  const int64_t step = o.adam.step;
  if (o.newRowsFrom < 0 || o.freezeSteps <= 0) {
    for (const auto& p : layout) plan.update.push_back({p.offset, p.size, p.decay, step});
    return plan;
  }
  if (o.newRowsFrom > c.vocabSize)
    throw InputError("newRowsFrom " + std::to_string(o.newRowsFrom) + " is beyond vocab_size " +
                     std::to_string(c.vocabSize));
  const bool warmup = step <= o.freezeSteps;
  const int64_t oldStep = step - o.freezeSteps;  // steps the once-frozen weights have been trained
  auto old = [&](size_t off, size_t size, bool decay) {
    if (size == 0) return;
    if (warmup) plan.frozen.push_back({off, size});
    else plan.update.push_back({off, size, decay, oldStep});
  };
  for (const auto& p : layout) {
    if (p.name == "model.embed_tokens.weight" || p.name == "lm_head.weight") {
      const size_t oldSize = size_t(o.newRowsFrom) * size_t(c.hiddenSize);
      old(p.offset, oldSize, p.decay);
      if (p.size > oldSize) plan.update.push_back({p.offset + oldSize, p.size - oldSize, p.decay, step});
    } else {
      old(p.offset, p.size, p.decay);
    }
  }
  return plan;
}

}  // namespace ko
