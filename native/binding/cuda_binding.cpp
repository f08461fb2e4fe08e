// cuda_binding.cpp — cudaInfo() and cudaAdamwSelfTest() for JS.
//
//   cudaInfo() → { built, runtimeVersion, driverVersion, error: string|null,
//                  devices: [{ index, name, computeCapability: "9.0", totalMemoryBytes, freeMemoryBytes,
//                              multiprocessors, fp8, bf16 }],
//                  cublasLt: string|null (e.g. "cuBLASLt 13.0.2 (libcublasLt.so.13)"),
//                  cublasLtError: string|null (why it could not be loaded, and how to install it) }
//   cudaAdamwSelfTest(n = 2^20 + 3, seed = 1234) → { ok, relErr, error: string|null }
//     (throws when the addon was built without CUDA)
#include "cuda_binding.h"

#include <cmath>
#include <string>

#ifdef KO_CUDA
#include "cuda_api.h"
#include "kernels.h"
#endif

namespace kob {

namespace {

constexpr const char* kNotBuilt = "this build of ko-train has no CUDA support";
constexpr double kAdamwTolerance = 1e-6;  // ||p_gpu - p_cpu|| / ||p_cpu|| after 3 steps

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
#ifdef KO_CUDA
  std::string error;
  const auto devices = ko::cuda::listDevices(&error);
  out.Set("built", true);
  out.Set("runtimeVersion", ko::cuda::runtimeVersion());
  out.Set("driverVersion", ko::cuda::driverVersion());
  out.Set("error", error.empty() ? env.Null() : Napi::String::New(env, error));
  auto arr = Napi::Array::New(env, devices.size());
  for (size_t i = 0; i < devices.size(); i++) {
    const auto& d = devices[i];
    auto o = Napi::Object::New(env);
    o.Set("index", d.index);
    o.Set("name", d.name);
    o.Set("computeCapability", std::to_string(d.ccMajor) + "." + std::to_string(d.ccMinor));
    o.Set("totalMemoryBytes", double(d.totalMemory));
    o.Set("freeMemoryBytes", double(d.freeMemory));
    o.Set("multiprocessors", d.multiprocessors);
    o.Set("fp8", d.fp8Supported);
    o.Set("bf16", d.bf16Supported);
    arr.Set(uint32_t(i), o);
  }
  out.Set("devices", arr);
  const std::string ltError = ko::cuda::cublasLtLoad();
  out.Set("cublasLt", ltError.empty() ? Napi::Value(Napi::String::New(env, ko::cuda::cublasLtDescription()))
                                      : env.Null());
  out.Set("cublasLtError", ltError.empty() ? env.Null() : Napi::String::New(env, ltError));
#else
  out.Set("built", false);
  out.Set("runtimeVersion", 0);
  out.Set("driverVersion", 0);
  out.Set("error", kNotBuilt);
  out.Set("devices", Napi::Array::New(env, 0));
  out.Set("cublasLt", env.Null());
  out.Set("cublasLtError", kNotBuilt);
#endif
  return out;
}

// A positive integer argument, or `dflt` when undefined.
double integerArg(const Napi::CallbackInfo& info, size_t i, const char* what, double dflt, double lo, double hi) {
  if (info.Length() <= i || info[i].IsUndefined()) return dflt;
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  const double x = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(x) || x != std::floor(x) || x < lo || x > hi)
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer in [" + std::to_string(int64_t(lo)) +
                                                ", " + std::to_string(int64_t(hi)) + "], got " + std::to_string(x));
  return x;
}

Napi::Value CudaAdamwSelfTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double n = integerArg(info, 0, "n", double((1 << 20) + 3), 1, double(1 << 26));
  const double seed = integerArg(info, 1, "seed", 1234, 0, 9007199254740991.0);
#ifdef KO_CUDA
  double relErr = -1;
  std::string error = ko::cuda::adamwSelfTest(size_t(n), uint64_t(seed), &relErr);
  if (error.empty() && !(relErr <= kAdamwTolerance))
    error = "AdamW GPU/CPU relative error " + std::to_string(relErr) + " exceeds " + std::to_string(kAdamwTolerance);
  auto out = Napi::Object::New(env);
  out.Set("ok", error.empty());
  out.Set("relErr", relErr);
  out.Set("error", error.empty() ? env.Null() : Napi::String::New(env, error));
  return out;
#else
  (void)n;
  (void)seed;
  throw Napi::Error::New(env, kNotBuilt);
#endif
}

}  // namespace

void registerCudaBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
  exports.Set("cudaAdamwSelfTest", Napi::Function::New(env, CudaAdamwSelfTest, "cudaAdamwSelfTest"));
}

}  // namespace kob
