// model.cpp — the Llama / Qwen3 decoder on the CPU: layout, forward, backward, decoding, training step.
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

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

static std::vector<float> ropeInvFreq(const ModelConfig& c) {
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
  auto find = [&](const std::string& name) -> size_t {
    for (const auto& p : layout)
      if (p.name == name) return p.offset;
    throw std::logic_error("missing tensor " + name);
  };
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

double Model::forward(const uint32_t* inputs, const int32_t* targets, int B, int T, int64_t* count) {
  if (B <= 0 || T <= 0) throw InputError("batch and sequence length must be positive");
  const size_t R = size_t(B) * T;
  checkTokens(inputs, targets, R);
  ensureActivations(B, T);
  inputs_.assign(inputs, inputs + R);
  targets_.assign(targets, targets + R);
  const int H = cfg_.hiddenSize, D = cfg_.headDim, Hq = cfg_.numHeads, Hkv = cfg_.numKvHeads,
            F = cfg_.intermediateSize, V = cfg_.vocabSize;
  const float eps = cfg_.rmsNormEps;
  const bool qk = cfg_.type == ModelType::Qwen3;
  const float* P = params_;

  embeddingForward(acts_[0].xIn.data(), inputs, P + embedOff_, int(R), H);
  for (int l = 0; l < cfg_.numLayers; l++) {
    LayerActs& a = acts_[l];
    const LayerWeights& w = layers_[l];
    float* xNext = (l + 1 < cfg_.numLayers) ? acts_[l + 1].xIn.data() : xOut_.data();
    rmsnormForward(a.ln1.data(), a.rstd1.data(), a.xIn.data(), P + w.inNormOff, int(R), H, eps);
    float* qOut = qk ? a.qPre.data() : a.q.data();
    float* kOut = qk ? a.kPre.data() : a.k.data();
    linearForward(qOut, a.ln1.data(), P + w.qOff, int(R), H, Hq * D);
    linearForward(kOut, a.ln1.data(), P + w.kOff, int(R), H, Hkv * D);
    linearForward(a.v.data(), a.ln1.data(), P + w.vOff, int(R), H, Hkv * D);
    if (qk) {  // Qwen3: RMSNorm over head_dim on every head of q and k, before RoPE
      rmsnormForward(a.q.data(), a.qRstd.data(), a.qPre.data(), P + w.qNormOff, int(R) * Hq, D, eps);
      rmsnormForward(a.k.data(), a.kRstd.data(), a.kPre.data(), P + w.kNormOff, int(R) * Hkv, D, eps);
    }
    ropeApply(a.q.data(), B, T, Hq, D, Hq * D, invFreq_.data(), 0, false);
    ropeApply(a.k.data(), B, T, Hkv, D, Hkv * D, invFreq_.data(), 0, false);
    attentionForward(a.att.data(), a.probs.data(), a.q.data(), a.k.data(), a.v.data(), B, T, Hq, Hkv, D, Hq * D,
                     Hkv * D);
    linearForward(a.x1.data(), a.att.data(), P + w.oOff, int(R), Hq * D, H);
    addInPlace(a.x1.data(), a.xIn.data(), R * H);
    rmsnormForward(a.ln2.data(), a.rstd2.data(), a.x1.data(), P + w.postNormOff, int(R), H, eps);
    linearForward(a.gateUp.data(), a.ln2.data(), P + w.gateUpOff, int(R), H, 2 * F);
    swigluForward(a.h.data(), a.gateUp.data(), int(R), F);
    linearForward(xNext, a.h.data(), P + w.downOff, int(R), F, H);
    addInPlace(xNext, a.x1.data(), R * H);
  }
  rmsnormForward(lnf_.data(), rstdf_.data(), xOut_.data(), P + normOff_, int(R), H, eps);
  linearForward(logits_.data(), lnf_.data(), P + lmHeadOff_, int(R), H, V);
  std::vector<float> losses(R);
  double sum = crossEntropyForward(losses.data(), logits_.data(), targets, int(R), V);
  int64_t n = 0;
  for (size_t i = 0; i < R; i++) n += targets[i] >= 0;
  if (count) *count = n;
  return sum;
}

void Model::backward(float* G, float dlossScale) {
  if (B_ == 0) throw std::logic_error("backward() before forward()");
  const int B = B_, T = T_;
  const size_t R = size_t(B) * T;
  const int H = cfg_.hiddenSize, D = cfg_.headDim, Hq = cfg_.numHeads, Hkv = cfg_.numKvHeads,
            F = cfg_.intermediateSize, V = cfg_.vocabSize;
  const bool qk = cfg_.type == ModelType::Qwen3;
  const float* P = params_;

  crossEntropyBackward(logits_.data(), targets_.data(), int(R), V, dlossScale);  // logits_ now holds dlogits
  linearBackward(dln_.data(), G + lmHeadOff_, logits_.data(), lnf_.data(), P + lmHeadOff_, int(R), H, V);
  rmsnormBackward(dx_.data(), G + normOff_, dln_.data(), xOut_.data(), P + normOff_, rstdf_.data(), int(R), H);

  // dx_ holds dLoss/d(output of layer l) on entry to each iteration.
  for (int l = cfg_.numLayers - 1; l >= 0; l--) {
    LayerActs& a = acts_[l];
    const LayerWeights& w = layers_[l];
    // MLP branch: out = x1 + down(swiglu(gate_up(ln2(x1))))
    linearBackward(dh_.data(), G + w.downOff, dx_.data(), a.h.data(), P + w.downOff, int(R), F, H);
    swigluBackward(dgu_.data(), dh_.data(), a.gateUp.data(), int(R), F);
    linearBackward(dln_.data(), G + w.gateUpOff, dgu_.data(), a.ln2.data(), P + w.gateUpOff, int(R), H, 2 * F);
    rmsnormBackward(dtmp_.data(), G + w.postNormOff, dln_.data(), a.x1.data(), P + w.postNormOff, a.rstd2.data(),
                    int(R), H);
    addInPlace(dx_.data(), dtmp_.data(), R * H);  // dx_ = dLoss/dx1
    // Attention branch: x1 = xIn + o(attn(rope(q), rope(k), v))
    linearBackward(datt_.data(), G + w.oOff, dx_.data(), a.att.data(), P + w.oOff, int(R), Hq * D, H);
    attentionBackward(dq_.data(), dk_.data(), dv_.data(), datt_.data(), a.probs.data(), a.q.data(), a.k.data(),
                      a.v.data(), B, T, Hq, Hkv, D, Hq * D, Hkv * D);
    ropeApply(dq_.data(), B, T, Hq, D, Hq * D, invFreq_.data(), 0, true);
    ropeApply(dk_.data(), B, T, Hkv, D, Hkv * D, invFreq_.data(), 0, true);
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
    }
    // dLn1 = dq Wq + dk Wk + dv Wv; weight gradients accumulate.
    linearBackward(nullptr, G + w.qOff, dqProj, qIn, P + w.qOff, int(R), H, Hq * D);
    linearBackward(nullptr, G + w.kOff, dkProj, qIn, P + w.kOff, int(R), H, Hkv * D);
    linearBackward(nullptr, G + w.vOff, dv_.data(), qIn, P + w.vOff, int(R), H, Hkv * D);
    gemm(false, false, int(R), H, Hq * D, 1.f, dqProj, Hq * D, P + w.qOff, H, 0.f, dln_.data(), H);
    gemm(false, false, int(R), H, Hkv * D, 1.f, dkProj, Hkv * D, P + w.kOff, H, 1.f, dln_.data(), H);
    gemm(false, false, int(R), H, Hkv * D, 1.f, dv_.data(), Hkv * D, P + w.vOff, H, 1.f, dln_.data(), H);
    rmsnormBackward(dtmp_.data(), G + w.inNormOff, dln_.data(), a.xIn.data(), P + w.inNormOff, a.rstd1.data(),
                    int(R), H);
    addInPlace(dx_.data(), dtmp_.data(), R * H);  // dx_ = dLoss/dxIn
  }
  embeddingBackward(G + embedOff_, inputs_.data(), dx_.data(), int(R), H);
}

void Model::decodeReset(int maxT) {
  if (maxT <= 0) throw InputError("decode length must be positive");
  cacheT_ = maxT;
  const size_t L = cfg_.numLayers, KV = size_t(cfg_.numKvHeads) * cfg_.headDim, H = cfg_.hiddenSize,
               QD = size_t(cfg_.numHeads) * cfg_.headDim, F = cfg_.intermediateSize;
  kCache_.assign(L * maxT * KV, 0.f);
  vCache_.assign(L * maxT * KV, 0.f);
  decX_.resize(H);
  decLn_.resize(H);
  decTmp_.resize(std::max(H, QD));
  decQ_.resize(QD);
  decK_.resize(KV);
  decV_.resize(KV);
  decAtt_.resize(QD);
  decGu_.resize(2 * F);
  decH_.resize(F);
  decLogits_.resize(cfg_.vocabSize);
  decScores_.resize(maxT);
  decRstd_.resize(std::max<size_t>(cfg_.numHeads, 1));
}

const float* Model::decodeStep(uint32_t token, int pos) {
  if (pos < 0 || pos >= cacheT_)
    throw InputError("decode position " + std::to_string(pos) + " outside the KV cache of " +
                     std::to_string(cacheT_) + " tokens");
  checkTokens(&token, nullptr, 1);
  const int H = cfg_.hiddenSize, D = cfg_.headDim, Hq = cfg_.numHeads, Hkv = cfg_.numKvHeads,
            F = cfg_.intermediateSize, V = cfg_.vocabSize;
  const size_t KV = size_t(Hkv) * D;
  const float eps = cfg_.rmsNormEps;
  const float* P = params_;
  float rstd;
  std::memcpy(decX_.data(), P + embedOff_ + size_t(token) * H, H * sizeof(float));
  for (int l = 0; l < cfg_.numLayers; l++) {
    const LayerWeights& w = layers_[l];
    float* kc = kCache_.data() + (size_t(l) * cacheT_ + pos) * KV;
    float* vc = vCache_.data() + (size_t(l) * cacheT_ + pos) * KV;
    rmsnormForward(decLn_.data(), &rstd, decX_.data(), P + w.inNormOff, 1, H, eps);
    linearForward(decQ_.data(), decLn_.data(), P + w.qOff, 1, H, Hq * D);
    linearForward(decK_.data(), decLn_.data(), P + w.kOff, 1, H, int(KV));
    linearForward(vc, decLn_.data(), P + w.vOff, 1, H, int(KV));
    if (cfg_.type == ModelType::Qwen3) {
      std::memcpy(decAtt_.data(), decQ_.data(), size_t(Hq) * D * sizeof(float));
      rmsnormForward(decQ_.data(), decRstd_.data(), decAtt_.data(), P + w.qNormOff, Hq, D, eps);
      std::memcpy(decAtt_.data(), decK_.data(), KV * sizeof(float));
      rmsnormForward(decK_.data(), decRstd_.data(), decAtt_.data(), P + w.kNormOff, Hkv, D, eps);
    }
    ropeApply(decQ_.data(), 1, 1, Hq, D, Hq * D, invFreq_.data(), pos, false);
    ropeApply(decK_.data(), 1, 1, Hkv, D, int(KV), invFreq_.data(), pos, false);
    std::memcpy(kc, decK_.data(), KV * sizeof(float));
    // Single-query attention over the cache.
    const float scale = 1.f / std::sqrt(float(D));
    const int group = Hq / Hkv;
    for (int h = 0; h < Hq; h++) {
      const float* q = decQ_.data() + size_t(h) * D;
      const int kvh = h / group;
      float mx = -INFINITY;
      for (int j = 0; j <= pos; j++) {
        const float* k = kCache_.data() + (size_t(l) * cacheT_ + j) * KV + size_t(kvh) * D;
        float s = 0;
        for (int d = 0; d < D; d++) s += q[d] * k[d];
        decScores_[j] = s * scale;
        mx = std::max(mx, decScores_[j]);
      }
      float sum = 0;
      for (int j = 0; j <= pos; j++) sum += (decScores_[j] = std::exp(decScores_[j] - mx));
      float* o = decAtt_.data() + size_t(h) * D;
      std::fill(o, o + D, 0.f);
      for (int j = 0; j <= pos; j++) {
        const float* v = vCache_.data() + (size_t(l) * cacheT_ + j) * KV + size_t(kvh) * D;
        const float p = decScores_[j] / sum;
        for (int d = 0; d < D; d++) o[d] += p * v[d];
      }
    }
    linearForward(decTmp_.data(), decAtt_.data(), P + w.oOff, 1, Hq * D, H);
    for (int i = 0; i < H; i++) decX_[i] += decTmp_[i];
    rmsnormForward(decLn_.data(), &rstd, decX_.data(), P + w.postNormOff, 1, H, eps);
    linearForward(decGu_.data(), decLn_.data(), P + w.gateUpOff, 1, H, 2 * F);
    swigluForward(decH_.data(), decGu_.data(), 1, F);
    linearForward(decTmp_.data(), decH_.data(), P + w.downOff, 1, F, H);
    for (int i = 0; i < H; i++) decX_[i] += decTmp_[i];
  }
  rmsnormForward(decLn_.data(), &rstd, decX_.data(), P + normOff_, 1, H, eps);
  linearForward(decLogits_.data(), decLn_.data(), P + lmHeadOff_, 1, H, V);
  return decLogits_.data();
}

TrainStepResult trainStep(Model& model, float* grads, float* m, float* v, const uint32_t* inputs,
                          const int32_t* targets, const TrainStepOptions& o) {
  const size_t n = model.numParams();
  const size_t micro = size_t(o.batchSize) * o.seqLen;
  int64_t total = 0;
  for (size_t i = 0; i < micro * o.accum; i++) total += targets[i] >= 0;
  std::fill(grads, grads + n, 0.f);
  TrainStepResult r;
  r.tokens = total;
  if (total == 0) return r;
  double lossSum = 0;
  for (int a = 0; a < o.accum; a++) {
    int64_t cnt = 0;
    lossSum += model.forward(inputs + a * micro, targets + a * micro, o.batchSize, o.seqLen, &cnt);
    model.backward(grads, float(1.0 / double(total)));
  }
  r.loss = lossSum / double(total);
  r.gradNorm = std::sqrt(sumSquares(grads, n));
  float scale = 1.f;
  if (o.gradClip > 0 && r.gradNorm > 0) scale = float(std::min(1.0, o.gradClip / (r.gradNorm + 1e-6)));
  for (const auto& p : paramLayout(model.config()))
    adamwUpdate(model.params() + p.offset, grads + p.offset, m + p.offset, v + p.offset, p.size, o.adam,
                p.decay ? o.weightDecay : 0.f, scale);
  return r;
}

}  // namespace ko
