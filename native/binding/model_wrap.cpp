// model_wrap.cpp — JS class `Model`. Long work (a training step, an eval pass) runs on a libuv worker thread
// through Napi::AsyncWorker and resolves a promise; no JS value is touched off the main thread, and every
// JS buffer the worker reads is held by a Reference owned by this object.
#include "model_wrap.h"

#include <algorithm>
#include <cstring>

#include "buffers.h"
#include "promise_worker.h"

namespace kob {

ko::ModelConfig parseModelConfig(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, "model config must be an object");
  auto o = v.As<Napi::Object>();
  ko::ModelConfig c;
  std::string type = o.Get("model_type").IsString() ? o.Get("model_type").As<Napi::String>().Utf8Value() : "";
  if (type == "llama")
    c.type = ko::ModelType::Llama;
  else if (type == "qwen3")
    c.type = ko::ModelType::Qwen3;
  else
    throw Napi::TypeError::New(env, "model.model_type must be 'llama' or 'qwen3', got '" + type + "'");
  const std::string w = "model";
  c.vocabSize = intField(env, o, "vocab_size", w);
  c.hiddenSize = intField(env, o, "hidden_size", w);
  c.numLayers = intField(env, o, "num_hidden_layers", w);
  c.numHeads = intField(env, o, "num_attention_heads", w);
  c.numKvHeads = intField(env, o, "num_key_value_heads", w);
  c.headDim = intField(env, o, "head_dim", w);
  c.intermediateSize = intField(env, o, "intermediate_size", w);
  c.ropeTheta = float(numberField(env, o, "rope_theta", w));
  c.rmsNormEps = float(numberField(env, o, "rms_norm_eps", w));
  Napi::Value tie = o.Get("tie_word_embeddings");
  if (!tie.IsBoolean()) throw Napi::TypeError::New(env, "model.tie_word_embeddings must be a boolean");
  c.tieWordEmbeddings = tie.As<Napi::Boolean>().Value();
  Napi::Value rs = o.Get("rope_scaling");
  if (rs.IsObject()) {
    auto r = rs.As<Napi::Object>();
    c.ropeScalingFactor = float(numberField(env, r, "factor", "model.rope_scaling"));
    c.ropeLowFreqFactor = float(numberFieldOr(env, r, "low_freq_factor", 1.0, "model.rope_scaling"));
    c.ropeHighFreqFactor = float(numberFieldOr(env, r, "high_freq_factor", 4.0, "model.rope_scaling"));
    c.ropeOriginalMaxPos =
        int(numberFieldOr(env, r, "original_max_position_embeddings", 8192, "model.rope_scaling"));
  }
  std::string err = ko::validateConfig(c);
  if (!err.empty()) throw Napi::RangeError::New(env, err);
  return c;
}

class TrainStepWorker : public PromiseWorker {
 public:
  TrainStepWorker(Napi::Env env, ModelWrap* m, std::vector<uint32_t> windows, ko::TrainStepOptions o)
      : PromiseWorker(env, m, &m->busy_), m_(m), windows_(std::move(windows)), o_(o) {}

 protected:
  void work() override {
    const size_t T = size_t(o_.seqLen), rows = windows_.size() / 2;
    std::vector<uint32_t> inputs(rows * T);
    std::vector<int32_t> targets(rows * T);
    for (size_t r = 0; r < rows; r++) {  // windows were bounds-checked on the main thread
      const uint32_t* src = m_->data_[windows_[2 * r]].first + windows_[2 * r + 1];
      std::memcpy(&inputs[r * T], src, T * sizeof(uint32_t));
      for (size_t t = 0; t < T; t++) targets[r * T + t] = int32_t(src[t + 1]);
    }
    for (size_t i = 0; i < targets.size(); i++)
      if (uint32_t(targets[i]) >= uint32_t(m_->model_->config().vocabSize))
        throw ko::InputError("token id " + std::to_string(uint32_t(targets[i])) + " in shard " +
                             std::to_string(windows_[2 * (i / T)]) + " at offset " +
                             std::to_string(windows_[2 * (i / T) + 1] + i % T + 1) +
                             " is out of range for vocab_size " +
                             std::to_string(m_->model_->config().vocabSize));
#ifdef KO_CUDA
    if (m_->cuda_) {
      result_ = m_->cuda_->trainStep(inputs.data(), targets.data(), o_);
      return;
    }
#endif
    result_ = ko::trainStep(*m_->model_, m_->grads_.data(), m_->m_, m_->v_, inputs.data(), targets.data(), o_);
  }
  Napi::Value finish(Napi::Env env) override {
    auto r = Napi::Object::New(env);
    r.Set("loss", result_.loss);
    r.Set("gradNorm", result_.gradNorm);
    r.Set("tokens", double(result_.tokens));
    return r;
  }

 private:
  ModelWrap* m_;
  std::vector<uint32_t> windows_;
  ko::TrainStepOptions o_;
  ko::TrainStepResult result_;
};

class EvalWorker : public PromiseWorker {
 public:
  EvalWorker(Napi::Env env, ModelWrap* m, std::vector<uint32_t> tokens, std::vector<uint32_t> offsets, int maxLen)
      : PromiseWorker(env, m, &m->busy_), m_(m), tokens_(std::move(tokens)), offsets_(std::move(offsets)),
        maxLen_(maxLen) {}

 protected:
  // Each sequence is scored on its own; one longer than maxLen predictions is cut into consecutive chunks
  // (the context restarts at each chunk).
  void work() override {
    Fp8AmaxGuard amax(*m_->model_);
    for (size_t s = 0; s + 1 < offsets_.size(); s++) {
      const size_t begin = offsets_[s], end = offsets_[s + 1];
      for (size_t c = begin; c + 1 < end; c += size_t(maxLen_)) {
        const size_t n = std::min(size_t(maxLen_), end - c - 1);
        std::vector<int32_t> targets(n);
        for (size_t t = 0; t < n; t++) targets[t] = int32_t(tokens_[c + t + 1]);
        int64_t cnt = 0;
#ifdef KO_CUDA
        if (m_->cuda_) {
          sum_ += m_->cuda_->evalLoss(&tokens_[c], targets.data(), 1, int(n), &cnt);
          count_ += cnt;
          continue;
        }
#endif
        sum_ += m_->model_->forward(&tokens_[c], targets.data(), 1, int(n), &cnt);
        count_ += cnt;
      }
    }
  }
  Napi::Value finish(Napi::Env env) override {
    auto r = Napi::Object::New(env);
    r.Set("sum", sum_);
    r.Set("count", double(count_));
    return r;
  }

 private:
  ModelWrap* m_;
  std::vector<uint32_t> tokens_, offsets_;
  int maxLen_;
  double sum_ = 0;
  int64_t count_ = 0;
};

// Log-likelihood of continuations (eval harness): request r is tokens[offsets[r], offsets[r+1]) whose last
// contLen[r] tokens are the continuation. Scored on the CPU model in FP32; a request longer than maxLen + 1
// tokens keeps its last maxLen + 1 (the context is cut from the left, as lm-evaluation-harness does).
class ContinuationWorker : public PromiseWorker {
 public:
  ContinuationWorker(Napi::Env env, ModelWrap* m, std::vector<uint32_t> tokens, std::vector<uint32_t> offsets,
                     std::vector<uint32_t> contLen, int maxLen)
      : PromiseWorker(env, m, &m->busy_), m_(m), tokens_(std::move(tokens)), offsets_(std::move(offsets)),
        contLen_(std::move(contLen)), maxLen_(maxLen) {}

 protected:
  void work() override {
    Fp8AmaxGuard amax(*m_->model_);
    const size_t R = contLen_.size();
    logLik_.assign(R, 0.0);
    greedy_.assign(R, 1);
    const int V = m_->model_->config().vocabSize;
    for (size_t r = 0; r < R; r++) {
      size_t begin = offsets_[r];
      const size_t end = offsets_[r + 1];
      if (end - begin > size_t(maxLen_) + 1) begin = end - size_t(maxLen_) - 1;
      const size_t n = end - begin - 1;  // predictions
      std::vector<int32_t> targets(n, -1);
      for (size_t t = n - contLen_[r]; t < n; t++) targets[t] = int32_t(tokens_[begin + t + 1]);
      int64_t cnt = 0;
      logLik_[r] = -m_->model_->forward(&tokens_[begin], targets.data(), 1, int(n), &cnt);
      const float* logits = m_->model_->logits();
      for (size_t t = n - contLen_[r]; t < n; t++) {
        const float* row = logits + t * size_t(V);
        const int best = int(std::max_element(row, row + V) - row);
        if (best != targets[t]) greedy_[r] = 0;
      }
    }
  }
  Napi::Value finish(Napi::Env env) override {
    auto r = Napi::Object::New(env);
    auto ll = Napi::Float64Array::New(env, logLik_.size());
    auto g = Napi::Uint8Array::New(env, greedy_.size());
    for (size_t i = 0; i < logLik_.size(); i++) ll[i] = logLik_[i], g[i] = greedy_[i];
    r.Set("logLik", ll);
    r.Set("greedy", g);
    return r;
  }

 private:
  ModelWrap* m_;
  std::vector<uint32_t> tokens_, offsets_, contLen_;
  int maxLen_;
  std::vector<double> logLik_;
  std::vector<uint8_t> greedy_;
};

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(env, "Model",
                     {InstanceMethod("attachOptimizer", &ModelWrap::AttachOptimizer),
                      InstanceMethod("attachData", &ModelWrap::AttachData),
                      InstanceMethod("trainStep", &ModelWrap::TrainStep),
                      InstanceMethod("evalLoss", &ModelWrap::EvalLoss),
                      InstanceMethod("scoreContinuations", &ModelWrap::ScoreContinuations),
                      InstanceMethod("forwardBackward", &ModelWrap::ForwardBackward),
                      InstanceMethod("gradients", &ModelWrap::Gradients),
                      InstanceMethod("decodeReset", &ModelWrap::DecodeReset),
                      InstanceMethod("decodeStep", &ModelWrap::DecodeStep),
                      InstanceMethod("decodeBatch", &ModelWrap::DecodeBatch),
                      InstanceMethod("setPrecision", &ModelWrap::SetPrecision),
                      InstanceMethod("useDevice", &ModelWrap::UseDevice),
                      InstanceMethod("syncToHost", &ModelWrap::SyncToHost),
                      InstanceMethod("fp8State", &ModelWrap::Fp8State),
                      InstanceMethod("setFp8State", &ModelWrap::SetFp8State),
                      InstanceMethod("trainStepTokens", &ModelWrap::TrainStepTokens),
                      InstanceMethod("sequenceLogps", &ModelWrap::SequenceLogps),
                      InstanceMethod("dpoStep", &ModelWrap::DpoStep),
                      InstanceMethod("distillStep", &ModelWrap::DistillStep),
                      InstanceMethod("distillEval", &ModelWrap::DistillEval),
                      InstanceMethod("topkLogits", &ModelWrap::TopkLogits),
                      InstanceMethod("attachLora", &ModelWrap::AttachLora)});
}

// new Model(config, params: Float32Array)
ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  Napi::Env env = info.Env();
  ko::ModelConfig c = parseModelConfig(env, info[0]);
  const size_t n = ko::paramCount(c);
  float* p = typedArrayData<float>(env, info[1], "params", int64_t(n));
  paramsRef_ = Napi::Persistent(info[1].As<Napi::Float32Array>());
  model_ = std::make_unique<ko::Model>(c, p);
}

void ModelWrap::checkIdle(const Napi::Env& env) {
  if (busy_.load()) throw Napi::Error::New(env, "the model is busy with a previous asynchronous call");
}

// attachOptimizer(m: Float32Array, v: Float32Array) — AdamW moments, JS-owned so checkpoints write them directly.
Napi::Value ModelWrap::AttachOptimizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  const int64_t n = int64_t(model_->numParams());
  m_ = typedArrayData<float>(env, info[0], "optimizer m", n);
  v_ = typedArrayData<float>(env, info[1], "optimizer v", n);
  mRef_ = Napi::Persistent(info[0].As<Napi::Float32Array>());
  vRef_ = Napi::Persistent(info[1].As<Napi::Float32Array>());
  grads_.assign(size_t(n), 0.f);
  return env.Undefined();
}

// attachData(shards: Uint32Array[]) — token streams read in place (zero-copy) by later trainStep calls.
Napi::Value ModelWrap::AttachData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "attachData expects an array of Uint32Array");
  auto arr = info[0].As<Napi::Array>();
  std::vector<Napi::Reference<Napi::Uint32Array>> refs;
  std::vector<std::pair<const uint32_t*, size_t>> data;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    size_t len = 0;
    const uint32_t* p = typedArrayData<uint32_t>(env, arr.Get(i), "shard " + std::to_string(i), -1, &len);
    refs.push_back(Napi::Persistent(arr.Get(i).As<Napi::Uint32Array>()));
    data.emplace_back(p, len);
  }
  dataRefs_ = std::move(refs);
  data_ = std::move(data);
  return env.Undefined();
}

ko::TrainStepOptions parseTrainStepOptions(const Napi::Env& env, const Napi::Object& o, const std::string& w) {
  ko::TrainStepOptions opt;
  opt.batchSize = intField(env, o, "batchSize", w);
  opt.seqLen = intField(env, o, "seqLen", w);
  opt.accum = intField(env, o, "accum", w);
  if (opt.batchSize <= 0 || opt.seqLen <= 0 || opt.accum <= 0)
    throw Napi::RangeError::New(env, "batchSize, seqLen and accum must be positive");
  opt.adam.lr = float(numberField(env, o, "lr", w));
  opt.adam.beta1 = float(numberField(env, o, "beta1", w));
  opt.adam.beta2 = float(numberField(env, o, "beta2", w));
  opt.adam.eps = float(numberField(env, o, "eps", w));
  opt.adam.step = int64_t(numberField(env, o, "step", w));
  if (opt.adam.step < 1) throw Napi::RangeError::New(env, w + ".step must be >= 1");
  opt.weightDecay = float(numberField(env, o, "weightDecay", w));
  opt.gradClip = float(numberField(env, o, "gradClip", w));
  opt.newRowsFrom = int64_t(numberFieldOr(env, o, "newRowsFrom", -1, w));
  opt.freezeSteps = int64_t(numberFieldOr(env, o, "freezeSteps", 0, w));
  return opt;
}

// trainStep({windows: Uint32Array [shard, offset]*, batchSize, seqLen, accum, lr, beta1, beta2, eps,
//            weightDecay, gradClip, step, newRowsFrom?, freezeSteps?}) → Promise<{loss, gradNorm, tokens}>
Napi::Value ModelWrap::TrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!m_) throw Napi::Error::New(env, "trainStep before attachOptimizer");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "trainStep expects an options object");
  ko::TrainStepOptions opt = parseTrainStepOptions(env, info[0].As<Napi::Object>(), "trainStep");
  auto o = info[0].As<Napi::Object>();
  const int64_t rows = int64_t(opt.batchSize) * opt.accum;
  const uint32_t* win = typedArrayData<uint32_t>(env, o.Get("windows"), "trainStep.windows", 2 * rows);
  for (int64_t r = 0; r < rows; r++) {
    const uint32_t shard = win[2 * r], off = win[2 * r + 1];
    if (shard >= data_.size())
      throw Napi::RangeError::New(env, "window " + std::to_string(r) + " names shard " + std::to_string(shard) +
                                           " but " + std::to_string(data_.size()) + " are attached");
    if (uint64_t(off) + uint64_t(opt.seqLen) + 1 > data_[shard].second)
      throw Napi::RangeError::New(env, "window " + std::to_string(r) + " [" + std::to_string(off) + ", +" +
                                           std::to_string(opt.seqLen + 1) + ") runs past the end of shard " +
                                           std::to_string(shard) + " (" + std::to_string(data_[shard].second) +
                                           " tokens)");
  }
  busy_ = true;
  auto* worker = new TrainStepWorker(env, this, std::vector<uint32_t>(win, win + 2 * rows), opt);
  auto promise = worker->promise();
  worker->Queue();
  return promise;
}

// evalLoss(tokens: Uint32Array, offsets: Uint32Array (nSeq+1), maxLen) → Promise<{sum, count}>
Napi::Value ModelWrap::EvalLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  size_t nTok = 0, nOff = 0;
  const uint32_t* tok = typedArrayData<uint32_t>(env, info[0], "evalLoss tokens", -1, &nTok);
  const uint32_t* off = typedArrayData<uint32_t>(env, info[1], "evalLoss offsets", -1, &nOff);
  if (!info[2].IsNumber() || info[2].As<Napi::Number>().Int32Value() <= 0)
    throw Napi::TypeError::New(env, "evalLoss maxLen must be a positive integer");
  if (nOff < 1 || off[0] != 0 || off[nOff - 1] != nTok)
    throw Napi::RangeError::New(env, "evalLoss offsets must start at 0 and end at tokens.length");
  for (size_t i = 1; i < nOff; i++)
    if (off[i] < off[i - 1]) throw Napi::RangeError::New(env, "evalLoss offsets must be non-decreasing");
  // The sequences are small next to the model; copying them frees the caller's buffers immediately.
  busy_ = true;
  auto* worker = new EvalWorker(env, this, std::vector<uint32_t>(tok, tok + nTok),
                                std::vector<uint32_t>(off, off + nOff), info[2].As<Napi::Number>().Int32Value());
  auto promise = worker->promise();
  worker->Queue();
  return promise;
}

// scoreContinuations(tokens: Uint32Array, offsets: Uint32Array [R+1], contLen: Uint32Array [R], maxLen)
// → Promise<{logLik: Float64Array, greedy: Uint8Array}> (see ContinuationWorker).
Napi::Value ModelWrap::ScoreContinuations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  size_t nTok = 0, nOff = 0, nCont = 0;
  const uint32_t* tok = typedArrayData<uint32_t>(env, info[0], "scoreContinuations tokens", -1, &nTok);
  const uint32_t* off = typedArrayData<uint32_t>(env, info[1], "scoreContinuations offsets", -1, &nOff);
  const uint32_t* cont = typedArrayData<uint32_t>(env, info[2], "scoreContinuations contLen", -1, &nCont);
  if (!info[3].IsNumber() || info[3].As<Napi::Number>().Int32Value() <= 0)
    throw Napi::TypeError::New(env, "scoreContinuations maxLen must be a positive integer");
  const int maxLen = info[3].As<Napi::Number>().Int32Value();
  if (nOff != nCont + 1 || off[0] != 0 || off[nOff - 1] != nTok)
    throw Napi::RangeError::New(env, "scoreContinuations: offsets must have contLen.length + 1 entries, from 0 to tokens.length");
  const uint32_t V = uint32_t(model_->config().vocabSize);
  for (size_t i = 0; i < nTok; i++)
    if (tok[i] >= V) throw Napi::RangeError::New(env, "scoreContinuations: token " + std::to_string(tok[i]) + " at " + std::to_string(i) + " is outside the vocabulary");
  for (size_t r = 0; r < nCont; r++) {
    if (off[r + 1] < off[r]) throw Napi::RangeError::New(env, "scoreContinuations offsets must be non-decreasing");
    const uint32_t len = off[r + 1] - off[r];
    if (cont[r] < 1 || cont[r] >= len || cont[r] > uint32_t(maxLen))
      throw Napi::RangeError::New(env, "scoreContinuations: request " + std::to_string(r) + " has a continuation of " +
                                           std::to_string(cont[r]) + " tokens in " + std::to_string(len) +
                                           " (needs 1 <= continuation < length and <= maxLen)");
  }
  busy_ = true;
  auto* worker = new ContinuationWorker(env, this, std::vector<uint32_t>(tok, tok + nTok), std::vector<uint32_t>(off, off + nOff),
                                        std::vector<uint32_t>(cont, cont + nCont), maxLen);
  auto promise = worker->promise();
  worker->Queue();
  return promise;
}

// forwardBackward(tokens: Uint32Array [B*(T+1)], B, T) → mean loss; gradients of the mean loss are then
// available from gradients(). Synchronous: meant for tests and small models.
Napi::Value ModelWrap::ForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  const int B = info[1].As<Napi::Number>().Int32Value(), T = info[2].As<Napi::Number>().Int32Value();
  if (B <= 0 || T <= 0) throw Napi::RangeError::New(env, "B and T must be positive");
  const uint32_t* tok = typedArrayData<uint32_t>(env, info[0], "tokens", int64_t(B) * (T + 1));
  std::vector<uint32_t> in(size_t(B) * T);
  std::vector<int32_t> tg(size_t(B) * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      in[size_t(b) * T + t] = tok[size_t(b) * (T + 1) + t];
      tg[size_t(b) * T + t] = int32_t(tok[size_t(b) * (T + 1) + t + 1]);
    }
  grads_.assign(model_->numParams(), 0.f);
  int64_t cnt = 0;
  double sum;
  try {
    sum = model_->forward(in.data(), tg.data(), B, T, &cnt);
    model_->backward(grads_.data(), float(1.0 / double(cnt)));
  } catch (const ko::InputError& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  return Napi::Number::New(env, sum / double(cnt));
}

Napi::Value ModelWrap::Gradients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  auto out = Napi::Float32Array::New(env, grads_.size());
  std::copy(grads_.begin(), grads_.end(), out.Data());
  return out;
}

// decodeReset(maxTokens, batch = 1): `batch` empty cache slots of maxTokens positions each.
Napi::Value ModelWrap::DecodeReset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "decodeReset(maxTokens, batch?) needs a number");
  const bool hasBatch = info.Length() > 1 && !info[1].IsUndefined();
  if (hasBatch && !info[1].IsNumber()) throw Napi::TypeError::New(env, "decodeReset: batch must be a number");
  const double maxT = info[0].As<Napi::Number>().DoubleValue(),
               batch = hasBatch ? info[1].As<Napi::Number>().DoubleValue() : 1;
  if (!(maxT >= 1 && maxT <= INT32_MAX && maxT == double(int64_t(maxT))))
    throw Napi::RangeError::New(env, "decodeReset: maxTokens must be a positive integer");
  if (!(batch >= 1 && batch <= INT32_MAX && batch == double(int64_t(batch))))
    throw Napi::RangeError::New(env, "decodeReset: batch must be a positive integer");
  try {
    model_->decodeReset(int(maxT), int(batch));
  } catch (const ko::InputError& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  return env.Undefined();
}

// decodeBatch(tokens: Uint32Array, positions: Int32Array, slots?: Int32Array) → Float32Array [n * vocab]
// (a copy): row i feeds tokens[i] at positions[i] of cache slot slots[i] (default: slot i). The model checks
// ids, positions and slots before touching the cache; a bad one is a RangeError.
Napi::Value ModelWrap::DecodeBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  size_t n = 0;
  const uint32_t* tok = typedArrayData<uint32_t>(env, info[0], "decodeBatch tokens", -1, &n);
  if (n == 0) throw Napi::RangeError::New(env, "decodeBatch: tokens is empty");
  if (n > size_t(INT32_MAX) / size_t(model_->config().vocabSize))
    throw Napi::RangeError::New(env, "decodeBatch: too many rows for one call");
  const int32_t* pos = typedArrayData<int32_t>(env, info[1], "decodeBatch positions", int64_t(n));
  const int32_t* slots = nullptr;
  if (info.Length() > 2 && !info[2].IsUndefined())
    slots = typedArrayData<int32_t>(env, info[2], "decodeBatch slots", int64_t(n));
  const float* logits;
  try {
    logits = model_->decodeBatch(tok, pos, int(n), slots);
  } catch (const ko::InputError& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  const size_t V = size_t(model_->config().vocabSize);
  auto out = Napi::Float32Array::New(env, n * V);
  std::copy(logits, logits + n * V, out.Data());
  return out;
}

// decodeStep(token, pos) → Float32Array logits (a copy; the cache keeps the state).
Napi::Value ModelWrap::DecodeStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsNumber() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "decodeStep(token, pos) needs two numbers");
  const double tok = info[0].As<Napi::Number>().DoubleValue();
  if (tok < 0 || tok != double(uint32_t(tok))) throw Napi::RangeError::New(env, "token id must be a uint32");
  const float* logits;
  try {
    logits = model_->decodeStep(uint32_t(tok), info[1].As<Napi::Number>().Int32Value());
  } catch (const ko::InputError& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  const int V = model_->config().vocabSize;
  auto out = Napi::Float32Array::New(env, size_t(V));
  std::copy(logits, logits + V, out.Data());
  return out;
}

// setPrecision({precision: 'fp32'|'bf16'|'fp8', historyLen, margin, amaxAlgo: 'max'|'most_recent',
//               currentScaling, fp8Sites?: Uint8Array}) — numerics of later steps (CPU emulation, or the
// GPU model created by useDevice()). Resets the FP8 scaling state.
Napi::Value ModelWrap::SetPrecision(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (onGpu()) throw Napi::Error::New(env, "setPrecision must come before useDevice");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "setPrecision expects an options object");
  auto o = info[0].As<Napi::Object>();
  const std::string w = "setPrecision";
  ko::PrecisionOptions p;
  const std::string prec = o.Get("precision").IsString() ? o.Get("precision").As<Napi::String>().Utf8Value() : "";
  if (prec == "fp32")
    p.precision = ko::Precision::FP32;
  else if (prec == "bf16")
    p.precision = ko::Precision::BF16;
  else if (prec == "fp8")
    p.precision = ko::Precision::FP8;
  else
    throw Napi::TypeError::New(env, "train.precision must be fp32, bf16 or fp8, got '" + prec + "'");
  p.recipe.historyLen = intField(env, o, "historyLen", w);
  p.recipe.margin = intField(env, o, "margin", w);
  const std::string algo = o.Get("amaxAlgo").IsString() ? o.Get("amaxAlgo").As<Napi::String>().Utf8Value() : "";
  if (algo != "max" && algo != "most_recent")
    throw Napi::TypeError::New(env, "train.fp8.amax_compute_algo must be max or most_recent, got '" + algo + "'");
  p.recipe.useMax = algo == "max";
  p.recipe.currentScaling = o.Get("currentScaling").ToBoolean().Value();
  if (o.Has("fp8Sites") && !o.Get("fp8Sites").IsUndefined()) {
    const int64_t n = ko::numLinearSites(model_->config());
    const uint8_t* m = typedArrayData<uint8_t>(env, o.Get("fp8Sites"), "setPrecision.fp8Sites", n);
    p.fp8Sites.assign(m, m + n);
  }
  try {
    model_->setPrecision(p);
  } catch (const ko::InputError& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  return env.Undefined();
}

// useDevice(index) → {name, bytes}: moves training to CUDA device `index` (weights, moments and FP8 state are
// uploaded; trainStep/evalLoss then run there; syncToHost() brings them back for checkpoints).
Napi::Value ModelWrap::UseDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "useDevice(index) needs a device index");
#ifndef KO_CUDA
  throw Napi::Error::New(env, "this build of ko-train has no CUDA support (it was built without nvcc); "
                              "rebuild on a machine with the CUDA toolkit, or use run.device: cpu");
#else
  const int index = info[0].As<Napi::Number>().Int32Value();
  try {
    auto cm = std::make_unique<ko::cuda::CudaModel>(model_->config(), index, model_->precision());
    cm->uploadParams(model_->params());
    if (m_) cm->uploadMoments(m_, v_);
    cm->uploadFp8State(model_->fp8State());
    cuda_ = std::move(cm);
  } catch (const ko::InputError& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto r = Napi::Object::New(env);
  r.Set("name", cuda_->deviceName());
  r.Set("bytes", double(cuda_->deviceBytes()));
  return r;
#endif
}

// syncToHost() — copies the GPU's weights, AdamW moments and FP8 state into the JS-owned buffers (before a
// checkpoint, or before decoding, which runs on the CPU). A no-op on the CPU.
Napi::Value ModelWrap::SyncToHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
#ifdef KO_CUDA
  if (cuda_) {
    try {
      cuda_->downloadParams(model_->params());
      if (m_) cuda_->downloadMoments(m_, v_);
      cuda_->downloadFp8State(model_->fp8State());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }
#endif
  return env.Undefined();
}

// fp8State() → {historyLen, scale, scaleInv, amaxCur, history} (copies; call syncToHost() first on a GPU).
Napi::Value ModelWrap::Fp8State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  const ko::Fp8ScalingState& s = model_->fp8State();
  auto copy = [&](const std::vector<float>& v) {
    auto a = Napi::Float32Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
  };
  auto r = Napi::Object::New(env);
  r.Set("historyLen", s.historyLen);
  r.Set("scale", copy(s.scale));
  r.Set("scaleInv", copy(s.scaleInv));
  r.Set("amaxCur", copy(s.amaxCur));
  r.Set("history", copy(s.history));
  return r;
}

// setFp8State({scale, scaleInv, amaxCur, history}) — restores a checkpointed FP8 scaling state (after
// setPrecision, with the same history length).
Napi::Value ModelWrap::SetFp8State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "setFp8State expects an object");
  auto o = info[0].As<Napi::Object>();
  ko::Fp8ScalingState& s = model_->fp8State();
  const int64_t n = s.n, h = int64_t(s.history.size());
  const float* scale = typedArrayData<float>(env, o.Get("scale"), "fp8 state scale", n);
  const float* scaleInv = typedArrayData<float>(env, o.Get("scaleInv"), "fp8 state scaleInv", n);
  const float* amaxCur = typedArrayData<float>(env, o.Get("amaxCur"), "fp8 state amaxCur", n);
  const float* history = typedArrayData<float>(env, o.Get("history"), "fp8 state history", h);
  s.scale.assign(scale, scale + n);
  s.scaleInv.assign(scaleInv, scaleInv + n);
  s.amaxCur.assign(amaxCur, amaxCur + n);
  s.history.assign(history, history + h);
#ifdef KO_CUDA
  if (cuda_) {
    try {
      cuda_->uploadFp8State(s);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }
#endif
  return env.Undefined();
}

}  // namespace kob
