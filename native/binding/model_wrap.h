// model_wrap.h — the JS class `Model`: a ko::Model over a JS-owned Float32Array of parameters, the
// optimizer moments (also JS-owned), the attached token shards, and async training/eval steps.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <vector>

#include "lora.h"
#include "model.h"
#ifdef KO_CUDA
#include "cuda_model.h"
#endif

namespace kob {

ko::ModelConfig parseModelConfig(const Napi::Env& env, const Napi::Value& v);
// The optimizer-step fields shared by trainStep and the post-training steps (batchSize, seqLen, accum, lr,
// beta1, beta2, eps, weightDecay, gradClip, step, newRowsFrom?, freezeSteps?); `w` names the call in errors.
ko::TrainStepOptions parseTrainStepOptions(const Napi::Env& env, const Napi::Object& o, const std::string& w);

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);

 private:
  friend class TrainStepWorker;
  friend class EvalWorker;
  friend class ContinuationWorker;
  friend class TokensStepWorker;
  friend class LogpsWorker;
  friend class DpoStepWorker;
  friend class DistillStepWorker;
  friend class TopkWorker;
  friend class DistillEvalWorker;
  friend class TeacherLease;
  Napi::Value AttachOptimizer(const Napi::CallbackInfo& info);
  Napi::Value AttachData(const Napi::CallbackInfo& info);
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value EvalLoss(const Napi::CallbackInfo& info);
  Napi::Value ScoreContinuations(const Napi::CallbackInfo& info);
  Napi::Value ForwardBackward(const Napi::CallbackInfo& info);
  Napi::Value Gradients(const Napi::CallbackInfo& info);
  Napi::Value DecodeReset(const Napi::CallbackInfo& info);
  Napi::Value DecodeStep(const Napi::CallbackInfo& info);
  Napi::Value DecodeBatch(const Napi::CallbackInfo& info);
  Napi::Value SetPrecision(const Napi::CallbackInfo& info);
  Napi::Value UseDevice(const Napi::CallbackInfo& info);
  Napi::Value SyncToHost(const Napi::CallbackInfo& info);
  Napi::Value Fp8State(const Napi::CallbackInfo& info);
  Napi::Value SetFp8State(const Napi::CallbackInfo& info);
  // Post-training (post_train_binding.cpp): explicit-token steps (SFT, packed rows), DPO, distillation.
  Napi::Value TrainStepTokens(const Napi::CallbackInfo& info);
  Napi::Value SequenceLogps(const Napi::CallbackInfo& info);
  Napi::Value DpoStep(const Napi::CallbackInfo& info);
  Napi::Value DistillStep(const Napi::CallbackInfo& info);
  Napi::Value DistillEval(const Napi::CallbackInfo& info);
  Napi::Value TopkLogits(const Napi::CallbackInfo& info);
  // LoRA (lora_binding.cpp): attachLora() makes trainStepTokens train the adapters only.
  Napi::Value AttachLora(const Napi::CallbackInfo& info);
  void checkIdle(const Napi::Env& env);
  ModelWrap* teacherArg(const Napi::Env& env, const Napi::Value& v, const std::string& w);

  std::unique_ptr<ko::Model> model_;
#ifdef KO_CUDA
  std::unique_ptr<ko::cuda::CudaModel> cuda_;  // set by useDevice(): steps then run on the GPU
#endif
  bool onGpu() const {
#ifdef KO_CUDA
    return cuda_ != nullptr;
#else
    return false;
#endif
  }
  Napi::Reference<Napi::Float32Array> paramsRef_, mRef_, vRef_;
  float* m_ = nullptr;
  float* v_ = nullptr;
  std::vector<float> grads_;
  std::vector<Napi::Reference<Napi::Uint32Array>> dataRefs_;
  std::vector<std::pair<const uint32_t*, size_t>> data_;
  std::atomic<bool> busy_{false};
  std::unique_ptr<ko::LoraState> lora_;  // set by attachLora()
  Napi::Reference<Napi::Float32Array> loraBaseRef_, loraAdapterRef_, loraMRef_, loraVRef_;
};

}  // namespace kob
