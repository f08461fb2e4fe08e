// cublaslt.cpp — loads cuBLASLt at run time (dlopen + dlsym), once, thread-safely.
//
// The library is not linked: the build machines have no cuBLAS, and users without it still get every
// other kernel. Search order: $KO_CUBLASLT_PATH when set (then ONLY that file: an explicit choice that
// fails should say so, not be replaced silently), else libcublasLt.so.13, then libcublasLt.so.12, through
// the dynamic loader's usual search (LD_LIBRARY_PATH, ld.so.cache, ...), and last the same two files in
// $CUDA_HOME/lib64, $CUDA_PATH/lib64 and /usr/local/cuda/lib64.
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "cublaslt.h"
#include "kernels.h"

namespace ko::cuda {

namespace {

struct Loaded {
  void* handle = nullptr;
  lt::Api api;
  std::string error;        // "" when loaded
  std::string description;  // "cuBLASLt 13.1.1 (libcublasLt.so.13)"
};

const char* kInstallHint =
    "cuBLASLt is needed for the CUDA GEMMs. Install it with the CUDA toolkit's cuBLAS (e.g. apt packages "
    "libcublas-13-0 or libcublas-12-x from NVIDIA's CUDA repository, or the full toolkit), or with pip "
    "(`pip install nvidia-cublas` for CUDA 13: lib dir site-packages/nvidia/cu13/lib; `pip install "
    "nvidia-cublas-cu12` for CUDA 12: lib dir site-packages/nvidia/cublas/lib) and add that lib directory to "
    "LD_LIBRARY_PATH, or set KO_CUBLASLT_PATH to the full path of libcublasLt.so.13 / libcublasLt.so.12.";

// dlopen one candidate; on failure append the loader's message to *why.
void* openLibrary(const std::string& name, std::string* why) {
  dlerror();  // clear a stale message
  void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    *why += "\n  dlopen(" + name + "): " + (e ? e : "failed");
  }
  return h;
}

// Resolves every entry point; "" or the name of the first missing one.
std::string resolveAll(void* h, lt::Api* api) {
  std::string missing;
  auto get = [&](auto& fn, const char* name) {
    dlerror();
    void* p = dlsym(h, name);
    if (!p && missing.empty()) missing = name;
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
  };
  get(api->create, "cublasLtCreate");
  get(api->destroy, "cublasLtDestroy");
  get(api->getVersion, "cublasLtGetVersion");
  get(api->matmulDescCreate, "cublasLtMatmulDescCreate");
  get(api->matmulDescDestroy, "cublasLtMatmulDescDestroy");
  get(api->matmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
  get(api->matrixLayoutCreate, "cublasLtMatrixLayoutCreate");
  get(api->matrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
  get(api->matmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
  get(api->matmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
  get(api->matmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
  get(api->matmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
  get(api->matmul, "cublasLtMatmul");
  return missing;
}

void load(Loaded* L) {
  std::string why;
  std::string name;
  const char* env = std::getenv("KO_CUBLASLT_PATH");
  if (env && *env) {
    name = env;
    L->handle = openLibrary(name, &why);
    if (!L->handle) {
      L->error = "cuBLASLt could not be loaded from KO_CUBLASLT_PATH:" + why + "\n" + kInstallHint;
      return;
    }
  } else {
    // The sonames first (LD_LIBRARY_PATH, ld.so.cache); then the toolkit's lib64, for a CUDA install that
    // is not registered with the dynamic loader.
    std::vector<std::string> candidates = {"libcublasLt.so.13", "libcublasLt.so.12"};
    for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
      const char* dir = std::getenv(var);
      if (dir && *dir)
        for (const char* so : {"/lib64/libcublasLt.so.13", "/lib64/libcublasLt.so.12"})
          candidates.push_back(std::string(dir) + so);
    }
    candidates.push_back("/usr/local/cuda/lib64/libcublasLt.so.13");
    candidates.push_back("/usr/local/cuda/lib64/libcublasLt.so.12");
    for (const std::string& candidate : candidates) {
      name = candidate;
      L->handle = openLibrary(name, &why);
      if (L->handle) break;
    }
    if (!L->handle) {
      L->error = "cuBLASLt not found:" + why + "\n" + kInstallHint;
      return;
    }
  }
  const std::string missing = resolveAll(L->handle, &L->api);
  if (!missing.empty()) {
    // An unusable library: unload it and report, rather than crash later on a null pointer.
    dlclose(L->handle);
    L->handle = nullptr;
    L->api = lt::Api{};
    L->error = name + " lacks the symbol " + missing + " (cuBLASLt 12 or newer is required).\n" + kInstallHint;
    return;
  }
  L->description = "cuBLASLt " + lt::versionString(L->api.getVersion()) + " (" + name + ")";
}

Loaded& loaded() {
  static Loaded L;
  static std::once_flag once;
  std::call_once(once, [] { load(&L); });
  return L;
}

}  // namespace

namespace lt {

const Api* api() {
  const Loaded& L = loaded();
  return L.error.empty() ? &L.api : nullptr;
}

const char* statusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

std::string versionString(size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

}  // namespace lt

std::string cublasLtLoad() { return loaded().error; }

std::string cublasLtDescription() { return loaded().description; }

}  // namespace ko::cuda
