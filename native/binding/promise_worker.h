// promise_worker.h — an AsyncWorker that resolves a promise: the base of the Model class's long calls.
#pragma once
#include <napi.h>

#include <atomic>

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

}  // namespace kob
