// gemm.cpp — FP32 GEMM: OpenBLAS when the build found it, else a built-in cache-blocked kernel.
//
// The built-in kernel follows the GotoBLAS/BLIS layout, kept to plain C++ that g++ -O3 -march=native
// vectorizes:
//   for each K block (KC):       pack op(A)[:, kblock] into MR-row micro-panels   (all threads)
//     for each N block (NC):     pack op(B)[kblock, nblock] into NR-column panels (all threads)
//       the MR×NR micro-tiles, in (MC row block, NR column panel, MR row panel) order, split into
//       equal contiguous ranges, one per thread; each tile is accumulated in registers over the K
//       block, then C = alpha*tile + beta*C.
// Every element of C is produced by exactly one thread with a fixed summation order, so results do not
// depend on the thread count. beta == 0 never reads C. Called from inside an OpenMP parallel region
// (attention calls it once per head), it runs serially on the calling thread.
#include <algorithm>
#include <cstring>
#include <new>

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
      release();
      data = static_cast<float*>(::operator new(n * sizeof(float), std::align_val_t(64)));
      capacity = n;
    }
    return data;
  }
  void release() {
    if (data) ::operator delete(data, std::align_val_t(64));
    data = nullptr;
    capacity = 0;
  }
  ~ScratchBuffer() { release(); }
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

// tile[MR*NR] = sum_k a[k*MR + r] * b[k*NR + c]. Fixed trip counts: the tile lives in 2*MR vector
// registers, and each (k, r) is one broadcast + two FMAs. GCC/Clang get it spelled with their generic
// vector types (robust whatever the flags); other compilers get the plain loops.
#if defined(__GNUC__) || defined(__clang__)
typedef float VecF __attribute__((vector_size(kVecFloats * sizeof(float))));
inline void microKernel(int kc, const float* __restrict a, const float* __restrict b, float* __restrict tile) {
  constexpr int NV = NR / kVecFloats;
  VecF acc[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = VecF{};
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
// Portable version of the same kernel; `omp simd` keeps the compiler from unrolling the column loop
// and vectorizing across rows instead.
inline void microKernel(int kc, const float* __restrict a, const float* __restrict b, float* __restrict tile) {
  float acc[MR * NR];
  for (int i = 0; i < MR * NR; i++) acc[i] = 0.0f;
  for (int k = 0; k < kc; k++) {
    const float* bk = b + k * NR;
    for (int r = 0; r < MR; r++) {
      const float av = a[k * MR + r];
      float* accr = acc + r * NR;
#pragma omp simd
      for (int c = 0; c < NR; c++) accr[c] += av * bk[c];
    }
  }
  for (int i = 0; i < MR * NR; i++) tile[i] = acc[i];
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
  constexpr int panelsPerBlock = MC / MR;
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

        // Micro-tiles (p, q) ordered by row block, then column panel, then row panel (the A block is
        // reused from L2 across the panels of B), split into equal contiguous ranges per thread.
        const int64_t blockUnits = int64_t(panelsPerBlock) * numPanelsB;
        const int64_t units = int64_t(numPanelsA) * numPanelsB;
        int nt = 1, tid = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        tid = omp_get_thread_num();
#endif
        const int64_t uEnd = units * (tid + 1) / nt;
        for (int64_t u = units * tid / nt; u < uEnd; u++) {
          const int mb = int(u / blockUnits);
          const int64_t rest = u - mb * blockUnits;
          const int inBlock = std::min(panelsPerBlock, numPanelsA - mb * panelsPerBlock);
          const int q = int(rest / inBlock), p = mb * panelsPerBlock + int(rest % inBlock);
          const int ii = p * MR, jj = j0 + q * NR;
          microKernel(kc, packedA + size_t(p) * MR * kc, packedB + size_t(q) * NR * kc, tile);
          storeTile(tile, C + size_t(ii) * ldc + jj, ldc, std::min(MR, M - ii), std::min(NR, N - jj), alpha,
                    betaNow);
        }
#pragma omp barrier
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
