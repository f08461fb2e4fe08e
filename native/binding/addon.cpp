// addon.cpp — module entry: the Model class plus free functions (layout, init, build info, threads, bench).
#include <napi.h>

#include <chrono>
#include <vector>

#include "buffers.h"
#include "cuda_binding.h"
#include "model.h"
#include "model_wrap.h"
#include "prep_binding.h"
#include "rng.h"
#include "tokenizer_binding.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace kob {

// paramLayout(config) → [{name, shape, offset, size, decay}]
static Napi::Value ParamLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto layout = ko::paramLayout(parseModelConfig(env, info[0]));
  auto out = Napi::Array::New(env, layout.size());
  for (size_t i = 0; i < layout.size(); i++) {
    auto o = Napi::Object::New(env);
    o.Set("name", layout[i].name);
    auto shape = Napi::Array::New(env, layout[i].shape.size());
    for (size_t d = 0; d < layout[i].shape.size(); d++) shape.Set(uint32_t(d), double(layout[i].shape[d]));
    o.Set("shape", shape);
    o.Set("offset", double(layout[i].offset));
    o.Set("size", double(layout[i].size));
    o.Set("decay", layout[i].decay);
    out.Set(uint32_t(i), o);
  }
  return out;
}

// modelStats(config, seqLen) → {params, flopsPerToken (forward)}
static Napi::Value ModelStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = parseModelConfig(env, info[0]);
  auto o = Napi::Object::New(env);
  o.Set("params", double(ko::paramCount(c)));
  o.Set("forwardFlopsPerToken", ko::forwardFlopsPerToken(c, info[1].As<Napi::Number>().Int32Value()));
  return o;
}

// initParams(config, params: Float32Array, seed, std?)
static Napi::Value InitParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = parseModelConfig(env, info[0]);
  float* p = typedArrayData<float>(env, info[1], "params", int64_t(ko::paramCount(c)));
  const double seed = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
  const double std = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : 0.02;
  ko::initParams(c, p, uint64_t(seed), float(std));
  return env.Undefined();
}

static Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  ko::setNumThreads(info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0);
  return Napi::Number::New(info.Env(), ko::numThreads());
}

static Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("gemm", ko::gemmBackendName());
#ifdef _OPENMP
  o.Set("openmp", true);
#else
  o.Set("openmp", false);
#endif
#ifdef KO_CUDA
  o.Set("cuda", true);
#else
  o.Set("cuda", false);
#endif
  o.Set("threads", ko::numThreads());
  o.Set("compiler", __VERSION__);
  return o;
}

// benchGemm(M, N, K, iters) → GFLOP/s of the GEMM backend on C = A·B^T (the linear-layer shape).
static Napi::Value BenchGemm(const Napi::CallbackInfo& info) {
  const int M = info[0].As<Napi::Number>().Int32Value(), N = info[1].As<Napi::Number>().Int32Value(),
            K = info[2].As<Napi::Number>().Int32Value(), iters = info[3].As<Napi::Number>().Int32Value();
  if (M <= 0 || N <= 0 || K <= 0 || iters <= 0) throw Napi::RangeError::New(info.Env(), "sizes must be positive");
  std::vector<float> a(size_t(M) * K), b(size_t(N) * K), c(size_t(M) * N);
  ko::Rng r(1);
  for (auto& x : a) x = float(r.normal());
  for (auto& x : b) x = float(r.normal());
  ko::linearForward(c.data(), a.data(), b.data(), M, K, N);  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; i++) ko::linearForward(c.data(), a.data(), b.data(), M, K, N);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Napi::Number::New(info.Env(), 2.0 * M * N * K * iters / s / 1e9);
}

void registerLora(Napi::Env env, Napi::Object exports);  // lora_binding.cpp

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Model", ModelWrap::Define(env));
  exports.Set("paramLayout", Napi::Function::New(env, ParamLayout));
  exports.Set("modelStats", Napi::Function::New(env, ModelStats));
  exports.Set("initParams", Napi::Function::New(env, InitParams));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("benchGemm", Napi::Function::New(env, BenchGemm));
  registerRules(env, exports);
  registerDedup(env, exports);
  registerNgram(env, exports);
  registerTokenizer(env, exports);
  registerCudaBindings(env, exports);
  registerLora(env, exports);
  return exports;
}

}  // namespace kob

static Napi::Object InitKoTrain(Napi::Env env, Napi::Object exports) { return kob::Init(env, exports); }
NODE_API_MODULE(ko_train, InitKoTrain)
