// cublaslt.h — the small part of cuBLASLt that gemm_lt.cpp uses, declared by hand because cuBLASLt is
// loaded at run time (dlopen, cublaslt.cpp): the build machines have no cuBLAS headers or libraries.
//
// Every type, struct layout and enum value below was copied from the cuBLAS 13.1.1 headers (cublasLt.h,
// cublas_api.h; CUDA 13.x) and checked against the cuBLAS 12.6.4 headers (CUDA 12.6): they agree, so one
// binary can load libcublasLt.so.13 or libcublasLt.so.12. cudaDataType_t values are from CUDA 13.0's
// library_types.h (same in 12.x). A wrong value here would not fail to compile; it would silently compute
// garbage on the GPU, so change nothing without checking both header versions.
//
// Everything lives in ko::cuda::lt, so a translation unit that also includes the real headers sees no
// clash. Plain C++: no CUDA headers needed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels.h"

namespace ko::cuda {

namespace lt {

// ---- cublas_api.h / library_types.h --------------------------------------------------------------
enum cublasStatus_t : int {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16,
};

enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

enum cublasComputeType_t : int { CUBLAS_COMPUTE_32F = 68 };  // fp32 accumulation, no down-conversion

enum cudaDataType_t : int {
  CUDA_R_32F = 0,
  CUDA_R_16BF = 14,
  CUDA_R_8F_E4M3 = 28,
  CUDA_R_8F_E5M2 = 29,
};

// ---- cublasLt.h ----------------------------------------------------------------------------------
typedef struct cublasLtContext* cublasLtHandle_t;

// Opaque descriptors: cuBLASLt's own types are pointers to fixed-size "semi-opaque" structs; only the
// pointers cross the API, so incomplete types are enough here.
typedef struct cublasLtMatrixLayoutOpaque* cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulDescOpaque* cublasLtMatmulDesc_t;
typedef struct cublasLtMatmulPreferenceOpaque* cublasLtMatmulPreference_t;

// These two ARE passed by value / filled in by the library: layouts must match exactly.
typedef struct {
  uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

static_assert(sizeof(cublasLtMatmulAlgo_t) == 64, "cublasLtMatmulAlgo_t is uint64_t[8]");
static_assert(sizeof(cublasStatus_t) == 4, "C enums are 4 bytes");
static_assert(offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize) == 64, "layout of the heuristic result");
static_assert(offsetof(cublasLtMatmulHeuristicResult_t, state) == 72, "layout of the heuristic result");
static_assert(offsetof(cublasLtMatmulHeuristicResult_t, wavesCount) == 76, "layout of the heuristic result");
static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96, "layout of the heuristic result");

// cublasLtMatmulDescAttributes_t (only the ones used; the type of each value in brackets). The compute
// and scale types are given to cublasLtMatmulDescCreate; the pointer mode stays at its default (host).
enum cublasLtMatmulDescAttributes_t : int {
  CUBLASLT_MATMUL_DESC_TRANSA = 3,            // [int32_t] cublasOperation_t
  CUBLASLT_MATMUL_DESC_TRANSB = 4,            // [int32_t] cublasOperation_t
  CUBLASLT_MATMUL_DESC_A_SCALE_POINTER = 17,  // [const void*] device float, multiplies A
  CUBLASLT_MATMUL_DESC_B_SCALE_POINTER = 18,  // [const void*] device float, multiplies B
  CUBLASLT_MATMUL_DESC_FAST_ACCUM = 25,       // [int8_t] FP8 fast accumulation
};

// cublasLtMatmulPreferenceAttributes_t
enum cublasLtMatmulPreferenceAttributes_t : int {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,    // [uint64_t]
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,  // [uint32_t] default 256
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,  // [uint32_t]
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,  // [uint32_t]
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,  // [uint32_t]
};

// ---- function pointer types (signatures as in cublasLt.h; cudaStream_t passed as void*) ----------
using PFN_cublasLtCreate = cublasStatus_t (*)(cublasLtHandle_t* handle);
using PFN_cublasLtDestroy = cublasStatus_t (*)(cublasLtHandle_t handle);
using PFN_cublasLtGetVersion = size_t (*)();
using PFN_cublasLtMatmulDescCreate = cublasStatus_t (*)(cublasLtMatmulDesc_t* desc, cublasComputeType_t computeType,
                                                        cudaDataType_t scaleType);
using PFN_cublasLtMatmulDescDestroy = cublasStatus_t (*)(cublasLtMatmulDesc_t desc);
using PFN_cublasLtMatmulDescSetAttribute = cublasStatus_t (*)(cublasLtMatmulDesc_t desc,
                                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                                              size_t sizeInBytes);
using PFN_cublasLtMatrixLayoutCreate = cublasStatus_t (*)(cublasLtMatrixLayout_t* layout, cudaDataType_t type,
                                                          uint64_t rows, uint64_t cols, int64_t ld);
using PFN_cublasLtMatrixLayoutDestroy = cublasStatus_t (*)(cublasLtMatrixLayout_t layout);
using PFN_cublasLtMatmulPreferenceCreate = cublasStatus_t (*)(cublasLtMatmulPreference_t* pref);
using PFN_cublasLtMatmulPreferenceDestroy = cublasStatus_t (*)(cublasLtMatmulPreference_t pref);
using PFN_cublasLtMatmulPreferenceSetAttribute = cublasStatus_t (*)(cublasLtMatmulPreference_t pref,
                                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                                    const void* buf, size_t sizeInBytes);
using PFN_cublasLtMatmulAlgoGetHeuristic = cublasStatus_t (*)(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
    cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t pref,
    int requestedAlgoCount, cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount);
using PFN_cublasLtMatmul = cublasStatus_t (*)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha,
                                              const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
                                              cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C,
                                              cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
                                              const cublasLtMatmulAlgo_t* algo, void* workspace,
                                              size_t workspaceSizeInBytes, void* stream);

// The loaded entry points (all non-null once cublasLtLoad() returned "").
struct Api {
  PFN_cublasLtCreate create = nullptr;
  PFN_cublasLtDestroy destroy = nullptr;
  PFN_cublasLtGetVersion getVersion = nullptr;
  PFN_cublasLtMatmulDescCreate matmulDescCreate = nullptr;
  PFN_cublasLtMatmulDescDestroy matmulDescDestroy = nullptr;
  PFN_cublasLtMatmulDescSetAttribute matmulDescSetAttribute = nullptr;
  PFN_cublasLtMatrixLayoutCreate matrixLayoutCreate = nullptr;
  PFN_cublasLtMatrixLayoutDestroy matrixLayoutDestroy = nullptr;
  PFN_cublasLtMatmulPreferenceCreate matmulPreferenceCreate = nullptr;
  PFN_cublasLtMatmulPreferenceDestroy matmulPreferenceDestroy = nullptr;
  PFN_cublasLtMatmulPreferenceSetAttribute matmulPreferenceSetAttribute = nullptr;
  PFN_cublasLtMatmulAlgoGetHeuristic matmulAlgoGetHeuristic = nullptr;
  PFN_cublasLtMatmul matmul = nullptr;
};

// The entry points, or nullptr when cuBLASLt is not loaded (call cublasLtLoad() first).
const Api* api();

// "CUBLAS_STATUS_NOT_SUPPORTED" etc. (from a built-in table: works without the library).
const char* statusName(cublasStatus_t status);

// 130101 -> "13.1.1" (cublasLtGetVersion() is major * 10000 + minor * 100 + patch, as CUBLAS_VERSION).
std::string versionString(size_t version);

}  // namespace lt

// Host-side checks of a GEMM request against the rules of kernels.h (Gemm::matmul runs them first).
// "" when valid; otherwise an error that names the violated rule. Touches no memory and needs no GPU.
std::string validateMatmulArgs(const MatmulArgs& a);

}  // namespace ko::cuda
