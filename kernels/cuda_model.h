// cuda_model.h — the Llama / Qwen3 training step with every tensor on one GPU (twin: ko::Model + ko::trainStep).
//
// FP32 master weights, gradients and AdamW moments live on the device; activations and their gradients are
// BF16; the linear layers run through cuBLASLt in BF16 or FP8 (E4M3 inputs/weights, E5M2 output gradients,
// per-tensor scales from fp8_recipe.h) exactly where the CPU emulation (PrecisionOptions) rounds, so the
// CPU path is this class's reference. Attention is the flash kernel (no T x T matrix in memory); the LM head
// and cross-entropy run over chunks of rows so the B x T x V logits never exist at once.
//
// Unlike the kernel launchers, this class throws: ko::InputError for bad input, std::runtime_error for CUDA
// or cuBLASLt failures (the binding turns both into JS errors).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model.h"

namespace ko::cuda {

class CudaModel {
 public:
  // Binds to `device`, allocates master weights, gradients and moments (zeroed) on it and loads cuBLASLt.
  // FP8 needs compute capability 8.9+: on older GPUs it throws (the caller may retry with BF16).
  CudaModel(const ModelConfig& c, int device, const PrecisionOptions& precision);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  size_t numParams() const { return nParams_; }
  std::string deviceName() const { return deviceName_; }
  // Linear sites that run in FP8 (the others, and every site under BF16, run in BF16).
  bool siteIsFp8(int site) const;

  void uploadParams(const float* params);
  void downloadParams(float* params) const;
  void uploadMoments(const float* m, const float* v);
  void downloadMoments(float* m, float* v) const;
  void uploadFp8State(const Fp8ScalingState& s);
  void downloadFp8State(Fp8ScalingState& s) const;

  // One optimizer step over o.accum micro-batches of host token ids (validated against the vocabulary
  // here), as ko::trainStep: loss normalized over every target of the step, global-norm clipping, AdamW.
  TrainStepResult trainStep(const uint32_t* inputs, const int32_t* targets, const TrainStepOptions& o);
  // Summed cross-entropy over non-ignored targets of one batch (no gradients); *count gets their number.
  double evalLoss(const uint32_t* inputs, const int32_t* targets, int B, int T, int64_t* count);

  // Bytes of device memory held (weights, optimizer, activations, workspaces).
  size_t deviceBytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ModelConfig cfg_;
  size_t nParams_ = 0;
  std::string deviceName_;
};

}  // namespace ko::cuda
