// cuda_binding.h — the CUDA part of the addon's exports (cudaInfo, cudaAdamwSelfTest).
// Compiles with and without KO_CUDA; without it the functions report that CUDA is not built in.
#pragma once
#include <napi.h>

namespace kob {

// Adds cudaInfo() and cudaAdamwSelfTest(n?, seed?) to `exports`.
void registerCudaBindings(Napi::Env env, Napi::Object exports);

}  // namespace kob
