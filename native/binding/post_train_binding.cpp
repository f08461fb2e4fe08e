// post_train_binding.cpp — the Model class's post-training calls: explicit-token steps (SFT with packed rows,
// LoRA), reference log-probs and DPO steps, distillation steps and the teacher's top-k logits. Each runs on a
// worker thread and resolves a promise; every buffer is validated here and copied before the worker starts.
#include <cstring>
#include <vector>

#include "buffers.h"
#include "model_wrap.h"
#include "post_train.h"
#include "promise_worker.h"

namespace kob {
namespace {

// Token rows handed in by JS: inputs and targets [rows * T], positions optional (packed examples).
struct TokenRows {
  std::vector<uint32_t> inputs;
  std::vector<int32_t> targets, positions;
};

// targetsOptional: a call that only reads logits (top-k) may leave `targets` out (all ignored).
TokenRows readRows(const Napi::Env& env, const Napi::Object& o, int64_t n, int vocab, const std::string& w,
                   bool targetsOptional = false) {
  TokenRows r;
  const uint32_t* in = typedArrayData<uint32_t>(env, o.Get("inputs"), w + ".inputs", n);
  std::vector<int32_t> none;
  const int32_t* tg;
  if (targetsOptional && o.Get("targets").IsUndefined()) {
    none.assign(size_t(n), -1);
    tg = none.data();
  } else {
    tg = typedArrayData<int32_t>(env, o.Get("targets"), w + ".targets", n);
  }
  for (int64_t i = 0; i < n; i++) {
    if (in[i] >= uint32_t(vocab))
      throw Napi::RangeError::New(env, w + ".inputs[" + std::to_string(i) + "] = " + std::to_string(in[i]) +
                                           " is outside the vocabulary of " + std::to_string(vocab));
    if (tg[i] >= vocab)
      throw Napi::RangeError::New(env, w + ".targets[" + std::to_string(i) + "] = " + std::to_string(tg[i]) +
                                           " is outside the vocabulary of " + std::to_string(vocab));
  }
  r.inputs.assign(in, in + n);
  r.targets.assign(tg, tg + n);
  Napi::Value pv = o.Get("positions");
  if (!pv.IsUndefined() && !pv.IsNull()) {
    const int32_t* p = typedArrayData<int32_t>(env, pv, w + ".positions", n);
    r.positions.assign(p, p + n);  // shape rules are checked by Model::forward (an InputError)
  }
  return r;
}

// seqLen of a call taking whole rows, and the number of tokens in its `inputs` (a positive multiple of it).
int64_t rowTokens(const Napi::Env& env, const Napi::Object& o, const std::string& w, int* T) {
  *T = intField(env, o, "seqLen", w);
  if (*T <= 0) throw Napi::RangeError::New(env, w + ".seqLen must be positive");
  size_t n = 0;
  typedArrayData<uint32_t>(env, o.Get("inputs"), w + ".inputs", -1, &n);
  if (n == 0 || n % size_t(*T) != 0)
    throw Napi::RangeError::New(env, w + ".inputs has " + std::to_string(n) + " tokens, not a positive multiple of seqLen " +
                                         std::to_string(*T));
  return int64_t(n);
}

template <typename Worker>
Napi::Value queued(Worker* w) {
  auto p = w->promise();
  w->Queue();
  return p;
}

Napi::Object stepResult(Napi::Env env, double loss, double gradNorm, int64_t tokens) {
  auto r = Napi::Object::New(env);
  r.Set("loss", loss);
  r.Set("gradNorm", gradNorm);
  r.Set("tokens", double(tokens));
  return r;
}

}  // namespace

class TokensStepWorker : public PromiseWorker {
 public:
  TokensStepWorker(Napi::Env env, ModelWrap* m, TokenRows rows, ko::TrainStepOptions o)
      : PromiseWorker(env, m, &m->busy_), m_(m), rows_(std::move(rows)), o_(o) {}

 protected:
  void work() override {
    const int32_t* pos = rows_.positions.empty() ? nullptr : rows_.positions.data();
#ifdef KO_CUDA
    if (m_->cuda_) {
      if (pos) throw ko::InputError("packed rows (positions) train on the CPU only; unpack them on CUDA");
      result_ = m_->cuda_->trainStep(rows_.inputs.data(), rows_.targets.data(), o_);
      return;
    }
#endif
    if (m_->lora_)
      result_ = ko::loraTrainStep(*m_->model_, *m_->lora_, m_->grads_.data(), rows_.inputs.data(),
                                  rows_.targets.data(), o_, pos);
    else
      result_ = ko::trainStep(*m_->model_, m_->grads_.data(), m_->m_, m_->v_, rows_.inputs.data(),
                              rows_.targets.data(), o_, pos);
  }
  Napi::Value finish(Napi::Env env) override { return stepResult(env, result_.loss, result_.gradNorm, result_.tokens); }

 private:
  ModelWrap* m_;
  TokenRows rows_;
  ko::TrainStepOptions o_;
  ko::TrainStepResult result_;
};

// Row log-probabilities (sum of log p(target) over non-ignored targets) of rows of T tokens, in FP32 on the
// CPU model: DPO's reference values and its evaluation.
class LogpsWorker : public PromiseWorker {
 public:
  LogpsWorker(Napi::Env env, ModelWrap* m, TokenRows rows, int T)
      : PromiseWorker(env, m, &m->busy_), m_(m), rows_(std::move(rows)), T_(T) {}

 protected:
  void work() override {
    Fp8AmaxGuard amax(*m_->model_);
    const int rows = int(rows_.inputs.size() / size_t(T_));
    out_.assign(rows, 0.0);
    constexpr int kChunk = 8;  // rows per forward: bounds the activation memory
    for (int r0 = 0; r0 < rows; r0 += kChunk) {
      const int n = std::min(kChunk, rows - r0);
      int64_t cnt = 0;
      m_->model_->forward(&rows_.inputs[size_t(r0) * T_], &rows_.targets[size_t(r0) * T_], n, T_, &cnt);
      ko::rowLogps(*m_->model_, n, T_, &out_[r0]);
    }
  }
  Napi::Value finish(Napi::Env env) override {
    auto a = Napi::Float64Array::New(env, out_.size());
    std::copy(out_.begin(), out_.end(), a.Data());
    return a;
  }

 private:
  ModelWrap* m_;
  TokenRows rows_;
  int T_;
  std::vector<double> out_;
};

class DpoStepWorker : public PromiseWorker {
 public:
  DpoStepWorker(Napi::Env env, ModelWrap* m, TokenRows rows, std::vector<double> ref, ko::TrainStepOptions o,
                ko::DpoOptions d)
      : PromiseWorker(env, m, &m->busy_), m_(m), rows_(std::move(rows)), ref_(std::move(ref)), o_(o), d_(d) {}

 protected:
  void work() override {
    r_ = ko::dpoTrainStep(*m_->model_, m_->grads_.data(), m_->m_, m_->v_, rows_.inputs.data(), rows_.targets.data(),
                          ref_.data(), o_, d_);
  }
  Napi::Value finish(Napi::Env env) override {
    auto r = stepResult(env, r_.loss, r_.gradNorm, r_.tokens);
    r.Set("chosenLogp", r_.chosenLogp);
    r.Set("rejectedLogp", r_.rejectedLogp);
    r.Set("chosenReward", r_.chosenReward);
    r.Set("rejectedReward", r_.rejectedReward);
    r.Set("margin", r_.margin);
    r.Set("accuracy", r_.accuracy);
    return r;
  }

 private:
  ModelWrap* m_;
  TokenRows rows_;
  std::vector<double> ref_;
  ko::TrainStepOptions o_;
  ko::DpoOptions d_;
  ko::DpoStepResult r_;
};

class DistillStepWorker : public PromiseWorker {
 public:
  DistillStepWorker(Napi::Env env, ModelWrap* m, ModelWrap* teacher, TokenRows rows, std::vector<uint32_t> topIds,
                    std::vector<float> topLogits, int k, ko::TrainStepOptions o, ko::DistillOptions d)
      : PromiseWorker(env, m, &m->busy_), m_(m), teacher_(teacher), rows_(std::move(rows)),
        topIds_(std::move(topIds)), topLogits_(std::move(topLogits)), k_(k), o_(o), d_(d) {}

 protected:
  void work() override {
    r_ = ko::distillTrainStep(*m_->model_, teacher_.get() ? teacher_.get()->model_.get() : nullptr, m_->grads_.data(), m_->m_,
                              m_->v_, rows_.inputs.data(), rows_.targets.data(),
                              rows_.positions.empty() ? nullptr : rows_.positions.data(), topIds_.data(),
                              topLogits_.data(), k_, o_, d_);
  }
  Napi::Value finish(Napi::Env env) override {
    auto r = stepResult(env, r_.loss, r_.gradNorm, r_.tokens);
    r.Set("kl", r_.kl);
    r.Set("ce", r_.ce);
    return r;
  }

 private:
  ModelWrap* m_;
  TeacherLease teacher_;  // none with precomputed top-k logits
  TokenRows rows_;
  std::vector<uint32_t> topIds_;
  std::vector<float> topLogits_;
  int k_;
  ko::TrainStepOptions o_;
  ko::DistillOptions d_;
  ko::DistillStepResult r_;
};

class DistillEvalWorker : public PromiseWorker {
 public:
  DistillEvalWorker(Napi::Env env, ModelWrap* m, ModelWrap* teacher, TokenRows rows, int T, float tau)
      : PromiseWorker(env, m, &m->busy_), m_(m), teacher_(teacher), rows_(std::move(rows)), T_(T), tau_(tau) {}

 protected:
  void work() override {
    Fp8AmaxGuard amax(*m_->model_);
    ko::distillEval(*m_->model_, *teacher_.get()->model_, rows_.inputs.data(), rows_.targets.data(),
                    int(rows_.inputs.size() / size_t(T_)), T_, tau_, &kl_, &ce_, &count_);
  }
  Napi::Value finish(Napi::Env env) override {
    auto r = Napi::Object::New(env);
    r.Set("kl", kl_);
    r.Set("ce", ce_);
    r.Set("count", double(count_));
    return r;
  }

 private:
  ModelWrap* m_;
  TeacherLease teacher_;
  TokenRows rows_;
  int T_;
  float tau_;
  double kl_ = 0, ce_ = 0;
  int64_t count_ = 0;
};

// The teacher's top-k logits for rows of T tokens (for distillation from shards).
class TopkWorker : public PromiseWorker {
 public:
  TopkWorker(Napi::Env env, ModelWrap* m, TokenRows rows, int T, int k)
      : PromiseWorker(env, m, &m->busy_), m_(m), rows_(std::move(rows)), T_(T), k_(k) {}

 protected:
  void work() override {
    Fp8AmaxGuard amax(*m_->model_);
    const int rows = int(rows_.inputs.size() / size_t(T_)), V = m_->model_->config().vocabSize;
    ids_.resize(rows_.inputs.size() * size_t(k_));
    vals_.resize(ids_.size());
    for (int r = 0; r < rows; r++) {
      const size_t off = size_t(r) * T_;
      int64_t cnt = 0;
      m_->model_->forward(&rows_.inputs[off], &rows_.targets[off], 1, T_, &cnt,
                          rows_.positions.empty() ? nullptr : &rows_.positions[off]);
      ko::topkOfLogits(m_->model_->logits(), size_t(T_), V, k_, &ids_[off * k_], &vals_[off * k_]);
    }
  }
  Napi::Value finish(Napi::Env env) override {
    auto r = Napi::Object::New(env);
    auto ids = Napi::Uint32Array::New(env, ids_.size());
    auto vals = Napi::Float32Array::New(env, vals_.size());
    std::copy(ids_.begin(), ids_.end(), ids.Data());
    std::copy(vals_.begin(), vals_.end(), vals.Data());
    r.Set("ids", ids);
    r.Set("logits", vals);
    return r;
  }

 private:
  ModelWrap* m_;
  TokenRows rows_;
  int T_, k_;
  std::vector<uint32_t> ids_;
  std::vector<float> vals_;
};

// trainStepTokens({inputs: Uint32Array, targets: Int32Array, positions?: Int32Array, ...step options})
//   → Promise<{loss, gradNorm, tokens}>. Rows are accum · batchSize · seqLen; with attachLora() only the adapters train.
Napi::Value ModelWrap::TrainStepTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!m_ && !lora_) throw Napi::Error::New(env, "trainStepTokens before attachOptimizer");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "trainStepTokens expects an options object");
  auto o = info[0].As<Napi::Object>();
  ko::TrainStepOptions opt = parseTrainStepOptions(env, o, "trainStepTokens");
  const int64_t n = int64_t(opt.batchSize) * opt.accum * opt.seqLen;
  TokenRows rows = readRows(env, o, n, model_->config().vocabSize, "trainStepTokens");
  if (lora_ && onGpu()) throw Napi::Error::New(env, "LoRA trains on the CPU in this version");
  if (grads_.size() != model_->numParams()) grads_.assign(model_->numParams(), 0.f);  // LoRA needs no attachOptimizer
  busy_ = true;
  return queued(new TokensStepWorker(env, this, std::move(rows), opt));
}

// sequenceLogps({inputs, targets, seqLen}) → Promise<Float64Array> (one value per row).
Napi::Value ModelWrap::SequenceLogps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "sequenceLogps expects an options object");
  auto o = info[0].As<Napi::Object>();
  int T = 0;
  const int64_t n = rowTokens(env, o, "sequenceLogps", &T);
  TokenRows rows = readRows(env, o, n, model_->config().vocabSize, "sequenceLogps");
  rows.positions.clear();
  busy_ = true;
  return queued(new LogpsWorker(env, this, std::move(rows), T));
}

// dpoStep({inputs, targets, refLogps: Float64Array, beta, labelSmoothing, ...step options}) with batchSize
// counting pairs (rows are 2 · batchSize · accum, chosen/rejected interleaved) → Promise<{loss, gradNorm,
// tokens, chosenLogp, rejectedLogp, chosenReward, rejectedReward, margin, accuracy}>.
Napi::Value ModelWrap::DpoStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!m_) throw Napi::Error::New(env, "dpoStep before attachOptimizer");
  if (onGpu()) throw Napi::Error::New(env, "DPO trains on the CPU in this version");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "dpoStep expects an options object");
  auto o = info[0].As<Napi::Object>();
  ko::TrainStepOptions opt = parseTrainStepOptions(env, o, "dpoStep");
  const int64_t rowsN = 2 * int64_t(opt.batchSize) * opt.accum;
  TokenRows rows = readRows(env, o, rowsN * opt.seqLen, model_->config().vocabSize, "dpoStep");
  if (!rows.positions.empty()) throw Napi::TypeError::New(env, "dpoStep takes unpacked rows (no positions)");
  const double* ref = typedArrayData<double>(env, o.Get("refLogps"), "dpoStep.refLogps", rowsN);
  ko::DpoOptions d;
  d.beta = numberField(env, o, "beta", "dpoStep");
  d.labelSmoothing = numberFieldOr(env, o, "labelSmoothing", 0.0, "dpoStep");
  busy_ = true;
  return queued(new DpoStepWorker(env, this, std::move(rows), std::vector<double>(ref, ref + rowsN), opt, d));
}

// The `teacher` argument of the distillation calls: another, idle Model with the student's vocabulary.
ModelWrap* ModelWrap::teacherArg(const Napi::Env& env, const Napi::Value& v, const std::string& w) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Napi::ObjectWrap<ModelWrap>::Value().Get("constructor").As<Napi::Function>()))
    throw Napi::TypeError::New(env, w + ".teacher must be a Model");
  ModelWrap* t = Napi::ObjectWrap<ModelWrap>::Unwrap(v.As<Napi::Object>());
  if (t == this) throw Napi::Error::New(env, w + ": the teacher must be another Model");
  t->checkIdle(env);
  const int V = model_->config().vocabSize, tv = t->model_->config().vocabSize;
  if (tv != V)
    throw Napi::RangeError::New(env, w + ": the teacher's vocabulary (" + std::to_string(tv) + ") differs from the student's (" +
                                         std::to_string(V) + ")");
  return t;
}

// distillStep({inputs, targets, positions?, teacher?: Model, topIds?: Uint32Array, topLogits?: Float32Array,
//              k?, alpha, temperature, ...step options}) → Promise<{loss, gradNorm, tokens, kl, ce}>.
Napi::Value ModelWrap::DistillStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!m_) throw Napi::Error::New(env, "distillStep before attachOptimizer");
  if (onGpu()) throw Napi::Error::New(env, "distillation trains on the CPU in this version");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "distillStep expects an options object");
  auto o = info[0].As<Napi::Object>();
  ko::TrainStepOptions opt = parseTrainStepOptions(env, o, "distillStep");
  const int64_t n = int64_t(opt.batchSize) * opt.accum * opt.seqLen;
  const int V = model_->config().vocabSize;
  TokenRows rows = readRows(env, o, n, V, "distillStep");
  ko::DistillOptions d;
  d.alpha = float(numberField(env, o, "alpha", "distillStep"));
  d.temperature = float(numberField(env, o, "temperature", "distillStep"));
  ModelWrap* teacher = nullptr;
  std::vector<uint32_t> ids;
  std::vector<float> vals;
  int k = 0;
  if (o.Get("teacher").IsObject()) {
    teacher = teacherArg(env, o.Get("teacher"), "distillStep");
  } else {
    k = intField(env, o, "k", "distillStep");
    if (k <= 0 || k > V) throw Napi::RangeError::New(env, "distillStep.k must be in [1, vocab_size]");
    const uint32_t* ip = typedArrayData<uint32_t>(env, o.Get("topIds"), "distillStep.topIds", n * k);
    const float* vp = typedArrayData<float>(env, o.Get("topLogits"), "distillStep.topLogits", n * k);
    ids.assign(ip, ip + n * k);
    vals.assign(vp, vp + n * k);
  }
  busy_ = true;
  return queued(new DistillStepWorker(env, this, teacher, std::move(rows), std::move(ids), std::move(vals), k, opt, d));
}

// distillEval({inputs, targets, seqLen, teacher: Model, temperature}) → Promise<{kl, ce, count}> (sums; CPU).
Napi::Value ModelWrap::DistillEval(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "distillEval expects an options object");
  auto o = info[0].As<Napi::Object>();
  int T = 0;
  const int64_t n = rowTokens(env, o, "distillEval", &T);
  const int V = model_->config().vocabSize;
  TokenRows rows = readRows(env, o, n, V, "distillEval");
  ModelWrap* teacher = teacherArg(env, o.Get("teacher"), "distillEval");
  const float tau = float(numberFieldOr(env, o, "temperature", 1.0, "distillEval"));
  if (!(tau > 0)) throw Napi::RangeError::New(env, "distillEval.temperature must be > 0");
  busy_ = true;
  return queued(new DistillEvalWorker(env, this, teacher, std::move(rows), T, tau));
}

// topkLogits({inputs, positions?, seqLen, k}) → Promise<{ids: Uint32Array, logits: Float32Array}> ([rows·T, k]).
Napi::Value ModelWrap::TopkLogits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "topkLogits expects an options object");
  auto o = info[0].As<Napi::Object>();
  int T = 0;
  const int64_t n = rowTokens(env, o, "topkLogits", &T);
  const int k = intField(env, o, "k", "topkLogits");
  if (k <= 0 || k > model_->config().vocabSize) throw Napi::RangeError::New(env, "topkLogits.k must be in [1, vocab_size]");
  TokenRows rows = readRows(env, o, n, model_->config().vocabSize, "topkLogits", true);
  busy_ = true;
  return queued(new TopkWorker(env, this, std::move(rows), T, k));
}

}  // namespace kob
