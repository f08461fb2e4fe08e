// gemm_lt.cpp — ko::cuda::Gemm: row-major GEMMs (BF16 and FP8) through cuBLASLt, with a plan cache.
//
// cuBLASLt is column-major. A row-major matrix X [r, c] with row stride ld is, read column-major, the
// matrix X^T [c, r] with leading dimension ld. So instead of C = opA(A) · opB(B) we ask cuBLASLt for
//     C^T [N, M] = opB(B)^T · opA(A)^T
// i.e. cuBLASLt's "A" operand is OUR B buffer and its "B" operand is OUR A buffer:
//   * cuBLASLt A = our B:  stored [N, K] (transB)  -> col-major K x N, ld = ldb, transa = T
//                          stored [K, N]           -> col-major N x K, ld = ldb, transa = N
//   * cuBLASLt B = our A:  stored [M, K] (!transA) -> col-major K x M, ld = lda, transb = N
//                          stored [K, M]           -> col-major M x K, ld = lda, transb = T
//   * C and D (the same buffer): col-major N x M, ld = ldc.
// FP8 is only allowed as transA = false, transB = true, which is exactly cuBLASLt's required "TN" form
// (transa = T, transb = N). The FP8 dequantization scales swap with the operands: cuBLASLt's A scale is
// OUR scaleB and its B scale OUR scaleA.
//
// Compute type CUBLAS_COMPUTE_32F (fp32 accumulation), scale type CUDA_R_32F, alpha/beta are host floats.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <unordered_map>

#include "cublaslt.h"
#include "kernels.h"

namespace ko::cuda {

namespace {

using namespace lt;

bool isFp8(DType t) { return t == DType::E4M3 || t == DType::E5M2; }

size_t elemBytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::E4M3:
    case DType::E5M2: return 1;
  }
  return 1;
}

const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::E4M3: return "E4M3";
    case DType::E5M2: return "E5M2";
  }
  return "?";
}

cudaDataType_t cudaType(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::E4M3: return CUDA_R_8F_E4M3;
    case DType::E5M2: return CUDA_R_8F_E5M2;
  }
  return CUDA_R_32F;
}

// Largest power of two dividing the address, capped at 256 (cuBLASLt's default assumption). Part of the
// plan key: an algorithm chosen for 256-byte-aligned buffers may not run on less aligned ones.
uint32_t alignmentOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 1;
  while (align < 256 && (a & (2 * align - 1)) == 0) align *= 2;
  return align;
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

std::string shapeText(const MatmulArgs& a) {
  return "M=" + std::to_string(a.M) + " N=" + std::to_string(a.N) + " K=" + std::to_string(a.K) +
         " lda=" + std::to_string(a.lda) + " ldb=" + std::to_string(a.ldb) + " ldc=" + std::to_string(a.ldc) +
         " A=" + dtypeName(a.typeA) + " B=" + dtypeName(a.typeB) + " C=" + dtypeName(a.typeC) +
         " transA=" + std::to_string(int(a.transA)) + " transB=" + std::to_string(int(a.transB));
}

std::string statusText(const char* what, cublasStatus_t s) {
  return std::string(what) + " failed: " + statusName(s) + " (" + std::to_string(int(s)) + ")";
}

std::string cudaText(const char* what, cudaError_t e) {
  return std::string(what) + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

struct PlanKey {
  int M, N, K, lda, ldb, ldc;
  DType typeA, typeB, typeC;
  bool transA, transB, fastAccum;
  uint32_t alignA, alignB, alignC;
  auto tie() const {
    return std::tie(M, N, K, lda, ldb, ldc, typeA, typeB, typeC, transA, transB, fastAccum, alignA, alignB, alignC);
  }
  bool operator==(const PlanKey& o) const { return tie() == o.tie(); }
};

PlanKey keyOf(const MatmulArgs& a) {
  PlanKey k;
  k.M = a.M, k.N = a.N, k.K = a.K;
  k.lda = a.lda, k.ldb = a.ldb, k.ldc = a.ldc;
  k.typeA = a.typeA, k.typeB = a.typeB, k.typeC = a.typeC;
  k.transA = a.transA, k.transB = a.transB;
  k.fastAccum = isFp8(a.typeA) && a.fastAccum;
  k.alignA = alignmentOf(a.A), k.alignB = alignmentOf(a.B), k.alignC = alignmentOf(a.C);
  return k;
}

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    auto mix = [&](uint64_t v) {
      h ^= v;
      h *= 1099511628211ull;
    };
    mix(uint32_t(k.M));
    mix(uint32_t(k.N));
    mix(uint32_t(k.K));
    mix(uint32_t(k.lda));
    mix(uint32_t(k.ldb));
    mix(uint32_t(k.ldc));
    mix(uint64_t(k.typeA) | uint64_t(k.typeB) << 8 | uint64_t(k.typeC) << 16 | uint64_t(k.transA) << 24 |
        uint64_t(k.transB) << 25 | uint64_t(k.fastAccum) << 26);
    mix(uint64_t(k.alignA) | uint64_t(k.alignB) << 16 | uint64_t(k.alignC) << 32);
    return size_t(h);
  }
};

// One cached matmul: descriptor, the three layouts (cuBLASLt's A = our B, its B = our A, C = D) and the
// algorithm the heuristic chose.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layoutA = nullptr, layoutB = nullptr, layoutC = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspaceSize = 0;
};

void destroyPlan(const Api* api, Plan& p) {
  if (p.desc) api->matmulDescDestroy(p.desc);
  if (p.layoutA) api->matrixLayoutDestroy(p.layoutA);
  if (p.layoutB) api->matrixLayoutDestroy(p.layoutB);
  if (p.layoutC) api->matrixLayoutDestroy(p.layoutC);
  p = Plan{};
}

}  // namespace

std::string validateMatmulArgs(const MatmulArgs& a) {
  const std::string pre = "Gemm::matmul: ";
  if (!a.C) return pre + "C is null";
  if (!a.A) return pre + "A is null";
  if (!a.B) return pre + "B is null";
  if (a.M <= 0 || a.N <= 0 || a.K <= 0)
    return pre + "M, N and K must be positive (M=" + std::to_string(a.M) + " N=" + std::to_string(a.N) +
           " K=" + std::to_string(a.K) + ")";
  if (a.typeC != DType::F32 && a.typeC != DType::BF16)
    return pre + "C type must be F32 or BF16 (got " + dtypeName(a.typeC) + ")";
  const bool fp8 = isFp8(a.typeA);
  if (a.typeA == DType::F32 || a.typeB == DType::F32 || isFp8(a.typeB) != fp8)
    return pre + "A and B must both be BF16 or both FP8 (got A=" + dtypeName(a.typeA) + " B=" + dtypeName(a.typeB) +
           ")";
  // Row widths of the stored matrices: A is [M, K] or [K, M]; B is [K, N] or [N, K]; C is [M, N].
  const int widthA = a.transA ? a.M : a.K;
  const int widthB = a.transB ? a.K : a.N;
  if (a.lda < widthA)
    return pre + "lda (" + std::to_string(a.lda) + ") must be >= the row width of the stored A (" +
           std::to_string(widthA) + ")";
  if (a.ldb < widthB)
    return pre + "ldb (" + std::to_string(a.ldb) + ") must be >= the row width of the stored B (" +
           std::to_string(widthB) + ")";
  if (a.ldc < a.N)
    return pre + "ldc (" + std::to_string(a.ldc) + ") must be >= N (" + std::to_string(a.N) + ")";
  if (!aligned(a.A, elemBytes(a.typeA)) || !aligned(a.B, elemBytes(a.typeB)) || !aligned(a.C, elemBytes(a.typeC)))
    return pre + "A, B and C must be aligned to their element size";
  if (fp8) {
    if (a.transA || !a.transB)
      return pre + "FP8 needs transA = false and transB = true (cuBLASLt's TN layout; got transA=" +
             std::to_string(int(a.transA)) + " transB=" + std::to_string(int(a.transB)) + ")";
    if (a.typeA == DType::E5M2 && a.typeB == DType::E5M2) return pre + "FP8 E5M2 x E5M2 is not supported";
    if (a.K % 16 != 0) return pre + "FP8 needs K % 16 == 0 (K=" + std::to_string(a.K) + ")";
    if (a.lda % 16 != 0) return pre + "FP8 needs lda % 16 == 0 (lda=" + std::to_string(a.lda) + ")";
    if (a.ldb % 16 != 0) return pre + "FP8 needs ldb % 16 == 0 (ldb=" + std::to_string(a.ldb) + ")";
    if (!aligned(a.A, 16) || !aligned(a.B, 16) || !aligned(a.C, 16))
      return pre + "FP8 needs 16-byte aligned A, B and C pointers";
    if (!a.scaleA || !a.scaleB)
      return pre + "FP8 needs scaleA and scaleB (device pointers to the dequantization scales)";
  }
  return "";
}

struct Gemm::Impl {
  const Api* api = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspaceBytes = 0;
  void* stream = nullptr;
  int device = 0;
  int cc = 0;  // compute capability, major * 10 + minor
  std::unordered_map<PlanKey, Plan, PlanKeyHash> plans;

  ~Impl() {
    if (workspace) cudaFree(workspace);  // synchronizes the device: no matmul still uses it
    if (api) {
      for (auto& kv : plans) destroyPlan(api, kv.second);
      if (handle) api->destroy(handle);
    }
  }

  std::string buildPlan(const MatmulArgs& a, Plan* out) {
    Plan p;
    auto fail = [&](const std::string& msg) {
      destroyPlan(api, p);
      return "Gemm::matmul: " + msg + " [" + shapeText(a) + "]";
    };
    cublasStatus_t s = api->matmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(statusText("cublasLtMatmulDescCreate", s));
    const int32_t opA = a.transB ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A is our B
    const int32_t opB = a.transA ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's B is our A
    s = api->matmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB));
    if (s != CUBLAS_STATUS_SUCCESS) return fail(statusText("cublasLtMatmulDescSetAttribute(TRANSA/B)", s));
    if (isFp8(a.typeA)) {
      const int8_t fast = a.fastAccum ? 1 : 0;
      s = api->matmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast));
      if (s != CUBLAS_STATUS_SUCCESS) return fail(statusText("cublasLtMatmulDescSetAttribute(FAST_ACCUM)", s));
      // The scale pointers are set again before every call (they may change); set here so that the
      // heuristic sees a scaled FP8 matmul.
      std::string e = setScales(p.desc, a);
      if (!e.empty()) return fail(e);
    }
    // Column-major views (see the top of the file).
    const uint64_t rowsA = a.transB ? uint64_t(a.K) : uint64_t(a.N), colsA = a.transB ? uint64_t(a.N) : uint64_t(a.K);
    const uint64_t rowsB = a.transA ? uint64_t(a.M) : uint64_t(a.K), colsB = a.transA ? uint64_t(a.K) : uint64_t(a.M);
    s = api->matrixLayoutCreate(&p.layoutA, cudaType(a.typeB), rowsA, colsA, int64_t(a.ldb));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matrixLayoutCreate(&p.layoutB, cudaType(a.typeA), rowsB, colsB, int64_t(a.lda));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matrixLayoutCreate(&p.layoutC, cudaType(a.typeC), uint64_t(a.N), uint64_t(a.M), int64_t(a.ldc));
    if (s != CUBLAS_STATUS_SUCCESS) return fail(statusText("cublasLtMatrixLayoutCreate", s));

    cublasLtMatmulPreference_t pref = nullptr;
    s = api->matmulPreferenceCreate(&pref);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(statusText("cublasLtMatmulPreferenceCreate", s));
    const uint64_t maxWs = workspaceBytes;
    const uint32_t alignA = alignmentOf(a.B), alignB = alignmentOf(a.A), alignC = alignmentOf(a.C);
    s = api->matmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &maxWs, sizeof(maxWs));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignA, sizeof(alignA));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alignB, sizeof(alignB));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alignC, sizeof(alignC));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alignC, sizeof(alignC));
    if (s != CUBLAS_STATUS_SUCCESS) {
      api->matmulPreferenceDestroy(pref);
      return fail(statusText("cublasLtMatmulPreferenceSetAttribute", s));
    }
    cublasLtMatmulHeuristicResult_t result;
    std::memset(&result, 0, sizeof(result));
    int found = 0;
    s = api->matmulAlgoGetHeuristic(handle, p.desc, p.layoutA, p.layoutB, p.layoutC, p.layoutC, pref, 1, &result,
                                    &found);
    api->matmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(statusText("cublasLtMatmulAlgoGetHeuristic", s));
    if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS)
      return fail(std::string("cuBLASLt has no algorithm for this matmul (") +
                  (found < 1 ? std::string("the heuristic returned none") : statusName(result.state)) +
                  "; FP8 may also need M and N to be multiples of 16)");
    p.algo = result.algo;
    p.workspaceSize = result.workspaceSize;
    *out = p;
    return "";
  }

  // cuBLASLt's A is our B: its A scale is our scaleB, and its B scale our scaleA.
  std::string setScales(cublasLtMatmulDesc_t desc, const MatmulArgs& a) {
    const void* sA = a.scaleB;
    const void* sB = a.scaleA;
    cublasStatus_t s = api->matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sA, sizeof(sA));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = api->matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sB, sizeof(sB));
    if (s != CUBLAS_STATUS_SUCCESS) return statusText("cublasLtMatmulDescSetAttribute(A/B_SCALE_POINTER)", s);
    return "";
  }
};

Gemm::Gemm() = default;

Gemm::~Gemm() { delete impl_; }

std::string Gemm::init(void* stream, size_t workspaceBytes) {
  if (impl_) return "Gemm::init: already initialized";
  const std::string loadError = cublasLtLoad();
  if (!loadError.empty()) return "Gemm::init: " + loadError;
  Impl* im = new Impl;
  im->api = lt::api();
  im->stream = stream;
  cudaError_t e = cudaGetDevice(&im->device);
  int major = 0, minor = 0;
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, im->device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, im->device);
  if (e != cudaSuccess) {
    cudaGetLastError();
    delete im;
    return "Gemm::init: " + cudaText("querying the current device", e);
  }
  im->cc = major * 10 + minor;
  if (workspaceBytes > 0) {
    e = cudaMalloc(&im->workspace, workspaceBytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      im->workspace = nullptr;
      delete im;
      const std::string what = "cudaMalloc of the " + std::to_string(workspaceBytes) + "-byte workspace";
      return "Gemm::init: " + cudaText(what.c_str(), e);
    }
    im->workspaceBytes = workspaceBytes;
  }
  const cublasStatus_t s = im->api->create(&im->handle);
  if (s != CUBLAS_STATUS_SUCCESS) {
    im->handle = nullptr;
    delete im;
    return "Gemm::init: " + statusText("cublasLtCreate", s);
  }
  impl_ = im;
  return "";
}

std::string Gemm::matmul(const MatmulArgs& a) {
  std::string err = validateMatmulArgs(a);
  if (!err.empty()) return err;
  if (!impl_) return "Gemm::matmul: not initialized (call init() first)";
  Impl& im = *impl_;
  if (isFp8(a.typeA) && im.cc < 89)
    return "Gemm::matmul: FP8 GEMMs need a GPU with compute capability >= 8.9 (this one is " +
           std::to_string(im.cc / 10) + "." + std::to_string(im.cc % 10) + ")";
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev != im.device)
    return "Gemm::matmul: the current device (" + std::to_string(dev) + ") is not the one this Gemm was created on (" +
           std::to_string(im.device) + ")";

  const PlanKey key = keyOf(a);
  auto it = im.plans.find(key);
  if (it == im.plans.end()) {
    Plan p;
    err = im.buildPlan(a, &p);
    if (!err.empty()) return err;
    it = im.plans.emplace(key, p).first;
  }
  Plan& p = it->second;
  if (isFp8(a.typeA)) {
    err = im.setScales(p.desc, a);
    if (!err.empty()) return "Gemm::matmul: " + err;
  }
  const float alpha = a.alpha, beta = a.beta;
  // cuBLASLt's A = our B, its B = our A; C and D are the same buffer (in place when beta != 0).
  const cublasStatus_t s = im.api->matmul(im.handle, p.desc, &alpha, a.B, p.layoutA, a.A, p.layoutB, &beta, a.C,
                                          p.layoutC, a.C, p.layoutC, &p.algo, im.workspace, im.workspaceBytes,
                                          im.stream);
  if (s != CUBLAS_STATUS_SUCCESS) return "Gemm::matmul: " + statusText("cublasLtMatmul", s) + " [" + shapeText(a) + "]";
  return "";
}

}  // namespace ko::cuda
