// promise_worker.h — an AsyncWorker that resolves a promise: the base of the Model class's long calls.
#pragma once
#include <napi.h>

#include <atomic>
#include <vector>

#include "model_wrap.h"

namespace kob {

// Resolves a promise with the JS value made by `finish` on the main thread, or rejects with the message of
// any exception thrown by `work` on the worker thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, ModelWrap* owner, std::atomic<bool>* busy)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), busy_(busy) {
    owner_ = Napi::Persistent(owner->Value());  // keep the model (and its buffers) alive while working
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual void work() = 0;
  virtual Napi::Value finish(Napi::Env env) = 0;
  void Execute() override {
    try {
      work();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    busy_->store(false);
    deferred_.Resolve(finish(Env()));
  }
  void OnError(const Napi::Error& e) override {
    busy_->store(false);
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  std::atomic<bool>* busy_;
};

// Forward passes that are not training steps (evaluation, scoring, reference log-probs) must not feed the FP8
// delayed-scaling amaxes of the next step: the guard restores them when its scope ends, by return or throw.
class Fp8AmaxGuard {
 public:
  explicit Fp8AmaxGuard(ko::Model& m) : m_(m), saved_(m.fp8State().amaxCur) {}
  ~Fp8AmaxGuard() { m_.fp8State().amaxCur = std::move(saved_); }
  Fp8AmaxGuard(const Fp8AmaxGuard&) = delete;
  Fp8AmaxGuard& operator=(const Fp8AmaxGuard&) = delete;

 private:
  ko::Model& m_;
  std::vector<float> saved_;
};

// A second Model (the distillation teacher) that a worker reads: kept alive and marked busy from the call on
// the main thread until the worker finishes, so no other call can run on it meanwhile.
class TeacherLease {
 public:
  explicit TeacherLease(ModelWrap* t) : t_(t) {
    if (t_) {
      ref_ = Napi::Persistent(t_->Value());
      t_->busy_ = true;
    }
  }
  ~TeacherLease() {
    if (t_) t_->busy_ = false;  // workers are destroyed on the main thread, after OnOK/OnError
  }
  ModelWrap* get() const { return t_; }

 private:
  ModelWrap* t_;
  Napi::ObjectReference ref_;
};

}  // namespace kob
