// test_gemm.cpp — group `gemm`: gemm (the dispatching entry) and gemmBlocked (the built-in kernel)
// against a naive float64 product, over all transpose combinations, odd sizes, padded leading
// dimensions, alpha/beta, and beta == 0 with NaN in C.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "ops.h"
#include "rng.h"

namespace {

using GemmFn = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);

std::vector<float> randomVec(size_t n, uint64_t seed) {
  ko::Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(r.uniform() * 2.0 - 1.0);
  return v;
}

// Runs one case: A stored as [M,K] (or [K,M] when transA) with leading dim lda >= minimal, etc.
void checkCase(GemmFn fn, const char* fnName, bool tA, bool tB, int M, int N, int K, int padA, int padB, int padC,
               float alpha, float beta, bool nanC, uint64_t seed) {
  const int rowsA = tA ? K : M, colsA = tA ? M : K;
  const int rowsB = tB ? N : K, colsB = tB ? K : N;
  const int lda = colsA + padA, ldb = colsB + padB, ldc = N + padC;
  auto A = randomVec(size_t(rowsA) * lda + 1, seed);
  auto B = randomVec(size_t(rowsB) * ldb + 1, seed + 1);
  auto C = randomVec(size_t(M) * ldc + 1, seed + 2);
  if (nanC) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[size_t(i) * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  }
  const std::vector<float> C0 = C;
  // float64 reference
  std::vector<double> ref(size_t(M) * N);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) {
        double a = tA ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k];
        double b = tB ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j];
        s += a * b;
      }
      double c = beta == 0.0f ? 0.0 : double(beta) * C0[size_t(i) * ldc + j];
      ref[size_t(i) * N + j] = double(alpha) * s + c;
    }
  fn(tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  std::vector<float> got(size_t(M) * N);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      got[size_t(i) * N + j] = C[size_t(i) * ldc + j];
      KO_CHECK_MSG(std::isfinite(got[size_t(i) * N + j]), std::string(fnName) + " produced a non-finite value");
    }
  // the padding between rows of C is untouched
  for (int i = 0; i < M; i++)
    for (int j = N; j < ldc; j++)
      KO_CHECK_MSG(std::memcmp(&C[size_t(i) * ldc + j], &C0[size_t(i) * ldc + j], sizeof(float)) == 0,
                   std::string(fnName) + " wrote into the ldc padding");
  const double tol = 1e-5 * std::sqrt(double(std::max(K, 1)));
  const double err = kotest::relError(got.data(), ref.data(), got.size());
  KO_CHECK_MSG(err <= tol, std::string(fnName) + " tA=" + std::to_string(tA) + " tB=" + std::to_string(tB) + " " +
                               std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                               " rel error " + std::to_string(err));
}

void allTransposes(GemmFn fn, const char* name, int M, int N, int K, int pad, float alpha, float beta, bool nanC,
                   uint64_t seed) {
  for (int t = 0; t < 4; t++)
    checkCase(fn, name, t & 1, t & 2, M, N, K, pad, pad + 1, pad + 2, alpha, beta, nanC, seed + 10 * t);
}

}  // namespace

KO_TEST(gemm, gemm_backend_name) {
  std::string name = ko::gemmBackendName();
  KO_CHECK(name == "openblas" || name == "builtin");
}

KO_TEST(gemm, gemm_odd_sizes_all_transposes) {
  allTransposes(ko::gemm, "gemm", 37, 53, 29, 0, 1.0f, 0.0f, false, 100);
  allTransposes(ko::gemmBlocked, "gemmBlocked", 37, 53, 29, 0, 1.0f, 0.0f, false, 100);
}

KO_TEST(gemm, gemm_padded_leading_dims_alpha) {
  allTransposes(ko::gemm, "gemm", 37, 53, 29, 5, 0.5f, 0.0f, false, 200);
  allTransposes(ko::gemmBlocked, "gemmBlocked", 37, 53, 29, 5, 0.5f, 0.0f, false, 200);
}

KO_TEST(gemm, gemm_beta_zero_ignores_nan) {
  allTransposes(ko::gemm, "gemm", 19, 41, 23, 3, 1.0f, 0.0f, true, 300);
  allTransposes(ko::gemmBlocked, "gemmBlocked", 19, 41, 23, 3, 1.0f, 0.0f, true, 300);
  allTransposes(ko::gemmBlocked, "gemmBlocked", 19, 41, 23, 3, 0.5f, 0.0f, true, 310);
}

KO_TEST(gemm, gemm_beta_accumulates) {
  allTransposes(ko::gemm, "gemm", 37, 53, 29, 2, 1.0f, 1.0f, false, 400);
  allTransposes(ko::gemmBlocked, "gemmBlocked", 37, 53, 29, 2, 1.0f, 1.0f, false, 400);
  allTransposes(ko::gemm, "gemm", 37, 53, 29, 2, 0.5f, 0.25f, false, 410);
  allTransposes(ko::gemmBlocked, "gemmBlocked", 37, 53, 29, 2, 0.5f, 0.25f, false, 410);
}

// Large enough for several K blocks (K > 256), several row blocks and partial edge tiles, and
// (for the N = 4500 case) several N blocks of the built-in kernel.
KO_TEST(gemm, gemm_multi_block) {
  allTransposes(ko::gemmBlocked, "gemmBlocked", 203, 301, 613, 1, 1.0f, 1.0f, false, 500);
  allTransposes(ko::gemm, "gemm", 203, 301, 613, 1, 1.0f, 1.0f, false, 500);
  checkCase(ko::gemmBlocked, "gemmBlocked", false, true, 13, 4500, 300, 0, 0, 0, 1.0f, 0.0f, true, 510);
  checkCase(ko::gemmBlocked, "gemmBlocked", true, false, 13, 4500, 300, 0, 0, 0, 0.5f, 1.0f, false, 520);
}

KO_TEST(gemm, gemm_degenerate_shapes) {
  // vectors and single elements
  for (GemmFn fn : {GemmFn(ko::gemm), GemmFn(ko::gemmBlocked)}) {
    allTransposes(fn, "degenerate", 1, 1, 1, 0, 1.0f, 0.0f, true, 600);
    allTransposes(fn, "degenerate", 1, 77, 5, 0, 1.0f, 1.0f, false, 610);
    allTransposes(fn, "degenerate", 77, 1, 5, 0, 1.0f, 1.0f, false, 620);
    allTransposes(fn, "degenerate", 7, 9, 1, 0, 2.0f, 0.5f, false, 630);
  }
  // K == 0: C = beta * C (beta == 0 writes zeros without reading C)
  for (GemmFn fn : {GemmFn(ko::gemm), GemmFn(ko::gemmBlocked)}) {
    std::vector<float> C(12, std::numeric_limits<float>::quiet_NaN());
    float dummy = 0;
    fn(false, false, 3, 4, 0, 1.0f, &dummy, 1, &dummy, 4, 0.0f, C.data(), 4);
    for (float c : C) KO_CHECK(c == 0.0f);
    std::vector<float> D(12, 2.0f);
    fn(false, false, 3, 4, 0, 1.0f, &dummy, 1, &dummy, 4, 0.5f, D.data(), 4);
    for (float d : D) KO_CHECK(d == 1.0f);
  }
}

KO_TEST(gemm, gemm_blocked_deterministic) {
  const int M = 150, N = 170, K = 530;
  auto A = randomVec(size_t(M) * K, 700), B = randomVec(size_t(K) * N, 701);
  std::vector<float> C1(size_t(M) * N), C2(size_t(M) * N);
  ko::gemmBlocked(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C1.data(), N);
  ko::gemmBlocked(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C2.data(), N);
  KO_CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) == 0);
}
