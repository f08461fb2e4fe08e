// gemm.cpp — FP32 GEMM: OpenBLAS when the build found it, else a built-in cache-blocked kernel.
//
// The built-in kernel follows the GotoBLAS/BLIS layout, kept to plain C++ so that g++ -O3 -march=native
// vectorizes it:
//   for each K block (KC):       pack op(A)[:, kblock] into MR-row micro-panels   (all threads)
//     for each N block (NC):     pack op(B)[kblock, nblock] into NR-column panels (all threads)
//       parallel over (MC row block × NR column panel) tasks:
//         MR×NR register tile accumulated over the K block, then C = alpha*tile + beta*C.
// Every element of C is produced by exactly one task with a fixed summation order, so results do not
// depend on the thread count. beta == 0 never reads C.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "ops.h"

#ifdef KO_HAVE_BLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace ko {
namespace {

#if defined(__AVX512F__)
constexpr int kVecFloats = 16;
#elif defined(__AVX__)
constexpr int kVecFloats = 8;
#else
constexpr int kVecFloats = 4;
#endif
constexpr int MR = 6;                // micro-tile rows
constexpr int NR = 2 * kVecFloats;   // micro-tile columns: two vector registers per row
constexpr int KC = 256;              // K block: an A micro-panel + a B micro-panel stay in L1
constexpr int MC = 16 * MR;          // rows per task: the task's A block stays in L2
constexpr int NC = 128 * NR;         // N block: the packed B block stays in the shared L3

// A growable 64-byte-aligned buffer owned by the calling thread (kept between calls).
struct ScratchBuffer {
  float* data = nullptr;
  size_t capacity = 0;
  float* get(size_t n) {
    if (n > capacity) {
      std::free(data);
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      capacity = data ? n : 0;
    }
    return data;
  }
  ~ScratchBuffer() { std::free(data); }
};

// C[M,N] *= beta (beta == 0 writes zeros without reading C).
void scaleC(int M, int N, float beta, float* C, int ldc) {
  if (beta == 1.0f) return;
  for (int i = 0; i < M; i++) {
    float* c = C + size_t(i) * ldc;
    if (beta == 0.0f) {
      std::fill(c, c + N, 0.0f);
    } else {
      for (int j = 0; j < N; j++) c[j] *= beta;
    }
  }
}

// Pack rows [i0, i0+MR) × columns [k0, k0+kc) of op(A) as dst[kk*MR + r]; rows past M are zero.
inline void packA(float* __restrict dst, bool transA, const float* A, int lda, int M, int i0, int k0, int kc) {
  const int mr = std::min(MR, M - i0);
  if (!transA) {
    for (int r = 0; r < mr; r++) {
      const float* src = A + size_t(i0 + r) * lda + k0;
      for (int kk = 0; kk < kc; kk++) dst[kk * MR + r] = src[kk];
    }
  } else {
    for (int kk = 0; kk < kc; kk++) {
      const float* src = A + size_t(k0 + kk) * lda + i0;
      for (int r = 0; r < mr; r++) dst[kk * MR + r] = src[r];
    }
  }
  if (mr < MR)
    for (int kk = 0; kk < kc; kk++)
      for (int r = mr; r < MR; r++) dst[kk * MR + r] = 0.0f;
}

// Pack rows [k0, k0+kc) × columns [j0, j0+NR) of op(B) as dst[kk*NR + c]; columns past N are zero.
inline void packB(float* __restrict dst, bool transB, const float* B, int ldb, int N, int j0, int k0, int kc) {
  const int nr = std::min(NR, N - j0);
  if (!transB) {
    if (nr == NR) {
      for (int kk = 0; kk < kc; kk++) std::memcpy(dst + kk * NR, B + size_t(k0 + kk) * ldb + j0, sizeof(float) * NR);
    } else {
      for (int kk = 0; kk < kc; kk++) {
        const float* src = B + size_t(k0 + kk) * ldb + j0;
        for (int c = 0; c < nr; c++) dst[kk * NR + c] = src[c];
        for (int c = nr; c < NR; c++) dst[kk * NR + c] = 0.0f;
      }
    }
  } else {
    for (int c = 0; c < nr; c++) {
      const float* src = B + size_t(j0 + c) * ldb + k0;
      for (int kk = 0; kk < kc; kk++) dst[kk * NR + c] = src[kk];
    }
    for (int c = nr; c < NR; c++)
      for (int kk = 0; kk < kc; kk++) dst[kk * NR + c] = 0.0f;
  }
}

// tile[MR*NR] = sum_k a[k*MR + r] * b[k*NR + c]. Fixed trip counts: the compiler keeps the tile in
// vector registers and emits one broadcast + two FMAs per (k, r).
#if defined(__GNUC__) || defined(__clang__)
typedef float VecF __attribute__((vector_size(kVecFloats * sizeof(float))));
inline void microKernel(int kc, const float* __restrict a, const float* __restrict b, float* __restrict tile) {
  constexpr int NV = NR / kVecFloats;
  VecF acc[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = VecF{} ;
  for (int k = 0; k < kc; k++) {
    VecF bv[NV];
    for (int v = 0; v < NV; v++) std::memcpy(&bv[v], b + k * NR + v * kVecFloats, sizeof(VecF));
    const float* ak = a + k * MR;
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      const float av = ak[r];
      for (int v = 0; v < NV; v++) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) std::memcpy(tile + r * NR + v * kVecFloats, &acc[r][v], sizeof(VecF));
}
#else
inline void microKernel(int kc, const float* __restrict a, const float* __restrict b, float* __restrict tile) {
  float acc[MR][NR] = {};
  for (int k = 0; k < kc; k++)
    for (int r = 0; r < MR; r++) {
      const float av = a[k * MR + r];
      for (int c = 0; c < NR; c++) acc[r][c] += av * b[k * NR + c];
    }
  for (int r = 0; r < MR; r++)
    for (int c = 0; c < NR; c++) tile[r * NR + c] = acc[r][c];
}
#endif

// C[i0.., j0..] (mr × nr) = alpha * tile + beta * C, where beta == 0 does not read C.
inline void storeTile(const float* __restrict tile, float* C, int ldc, int mr, int nr, float alpha, float beta) {
  for (int r = 0; r < mr; r++) {
    float* c = C + size_t(r) * ldc;
    const float* t = tile + r * NR;
    if (beta == 0.0f) {
      for (int j = 0; j < nr; j++) c[j] = alpha * t[j];
    } else if (beta == 1.0f) {
      for (int j = 0; j < nr; j++) c[j] += alpha * t[j];
    } else {
      for (int j = 0; j < nr; j++) c[j] = alpha * t[j] + beta * c[j];
    }
  }
}

}  // namespace

void gemmBlocked(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scaleC(M, N, beta, C, ldc);
    return;
  }
  const int numPanelsA = (M + MR - 1) / MR;
  const int numBlocksM = (M + MC - 1) / MC;
  const int kcMax = std::min(K, KC);
  const int ncMax = std::min(((N + NR - 1) / NR) * NR, NC);

  static thread_local ScratchBuffer bufA, bufB;
  float* packedA = bufA.get(size_t(numPanelsA) * MR * kcMax);
  float* packedB = bufB.get(size_t(ncMax) * kcMax);

  // Tiny products are not worth waking the thread pool; called from inside a parallel region (e.g. by
  // attention, one task per head) the product runs on the calling thread alone.
  bool parallel = double(M) * N * K >= 64.0 * 64.0 * 64.0;
#ifdef _OPENMP
  if (omp_in_parallel()) parallel = false;
#endif

  for (int k0 = 0; k0 < K; k0 += KC) {
    const int kc = std::min(KC, K - k0);
    const float betaNow = k0 == 0 ? beta : 1.0f;
#pragma omp parallel if (parallel)
    {
      float tile[MR * NR];
#pragma omp for schedule(static)
      for (int p = 0; p < numPanelsA; p++) packA(packedA + size_t(p) * MR * kc, transA, A, lda, M, p * MR, k0, kc);

      for (int j0 = 0; j0 < N; j0 += NC) {
        const int nc = std::min(NC, N - j0);
        const int numPanelsB = (nc + NR - 1) / NR;
#pragma omp for schedule(static)
        for (int q = 0; q < numPanelsB; q++)
          packB(packedB + size_t(q) * NR * kc, transB, B, ldb, N, j0 + q * NR, k0, kc);

#pragma omp for collapse(2) schedule(static)
        for (int mb = 0; mb < numBlocksM; mb++) {
          for (int q = 0; q < numPanelsB; q++) {
            const float* bPanel = packedB + size_t(q) * NR * kc;
            const int jj = j0 + q * NR;
            const int nr = std::min(NR, N - jj);
            const int pEnd = std::min(numPanelsA, (mb + 1) * (MC / MR));
            for (int p = mb * (MC / MR); p < pEnd; p++) {
              microKernel(kc, packedA + size_t(p) * MR * kc, bPanel, tile);
              const int ii = p * MR;
              storeTile(tile, C + size_t(ii) * ldc + jj, ldc, std::min(MR, M - ii), nr, alpha, betaNow);
            }
          }
        }
      }
    }
  }
}

void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
#ifdef KO_HAVE_BLAS
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    scaleC(M, N, beta, C, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
#else
  gemmBlocked(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

const char* gemmBackendName() {
#ifdef KO_HAVE_BLAS
  return "openblas";
#else
  return "builtin";
#endif
}

}  // namespace ko
