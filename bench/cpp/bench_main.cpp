// bench_main.cpp — ko_bench: CPU kernel micro-benchmarks, printed as a table.
//   SGEMM through gemm (OpenBLAS when built with it) and through the built-in gemmBlocked, at the
//   shapes of a small Llama's linears (M = tokens, y[M,N] = x[M,K] · w[N,K]^T), plus causal attention
//   forward/backward. Ratios are against gemm in the same process (machines are noisy).
//   ko_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "ops.h"
#include "rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

std::vector<float> randomVec(size_t n, uint64_t seed) {
  ko::Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(r.uniform() - 0.5);
  return v;
}

// Best wall time in seconds of fn() over `reps` timed runs after `warmup` untimed ones.
template <class F>
double bestTime(F fn, int warmup, int reps) {
  for (int i = 0; i < warmup; i++) fn();
  double best = 1e300;
  for (int i = 0; i < reps; i++) {
    auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: ko_bench [--quick]\n");
      return 2;
    }
  }
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const int warmup = 1, reps = quick ? 1 : 3;
  std::printf("ko_bench: gemm backend = %s, OpenMP threads = %d%s\n\n", ko::gemmBackendName(), threads,
              quick ? " (--quick)" : "");

  struct Shape {
    int M, N, K;
    const char* what;
  };
  const int M = quick ? 256 : 1024;
  const Shape shapes[] = {{M, 768, 768, "attn proj"}, {M, 2048, 768, "mlp up"}, {M, 32000, 768, "lm head"}};
  std::printf("SGEMM  y[M,N] = x[M,K] * w[N,K]^T                  GFLOP/s\n");
  std::printf("%-10s %6s %6s %5s | %9s %12s %7s\n", "", "M", "N", "K", "gemm", "gemmBlocked", "ratio");
  for (const Shape& s : shapes) {
    auto x = randomVec(size_t(s.M) * s.K, 1), w = randomVec(size_t(s.N) * s.K, 2);
    std::vector<float> y(size_t(s.M) * s.N);
    const double flops = 2.0 * s.M * s.N * s.K;
    const double tBlas = bestTime(
        [&] { ko::gemm(false, true, s.M, s.N, s.K, 1.f, x.data(), s.K, w.data(), s.K, 0.f, y.data(), s.N); }, warmup,
        reps);
    const double tBlk = bestTime(
        [&] {
          ko::gemmBlocked(false, true, s.M, s.N, s.K, 1.f, x.data(), s.K, w.data(), s.K, 0.f, y.data(), s.N);
        },
        warmup, reps);
    std::printf("%-10s %6d %6d %5d | %9.1f %12.1f %6.2fx\n", s.what, s.M, s.N, s.K, flops / tBlas * 1e-9,
                flops / tBlk * 1e-9, tBlas / tBlk);
  }

  // causal attention, flops counted for the causal half only (j <= i)
  const int B = 4, T = quick ? 128 : 256, H = 12, Hkv = 12, D = 64, rows = B * T;
  auto q = randomVec(size_t(rows) * H * D, 3), k = randomVec(size_t(rows) * Hkv * D, 4);
  auto v = randomVec(size_t(rows) * Hkv * D, 5), dout = randomVec(size_t(rows) * H * D, 6);
  std::vector<float> out(q.size()), probs(size_t(B) * H * T * T), dq(q.size()), dk(k.size()), dv(v.size());
  const double pairs = double(B) * H * T * (T + 1) / 2;
  const double tFwd = bestTime(
      [&] {
        ko::attentionForward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, Hkv, D, H * D,
                             Hkv * D);
      },
      warmup, reps);
  const double tBwd = bestTime(
      [&] {
        ko::attentionBackward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(), k.data(),
                              v.data(), B, T, H, Hkv, D, H * D, Hkv * D);
      },
      warmup, reps);
  std::printf("\nattention B=%d T=%d H=%d Hkv=%d D=%d (causal)\n", B, T, H, Hkv, D);
  std::printf("%-10s %9s %9s\n", "", "ms", "GFLOP/s");
  std::printf("%-10s %9.2f %9.1f\n", "forward", tFwd * 1e3, 4.0 * pairs * D / tFwd * 1e-9);
  std::printf("%-10s %9.2f %9.1f\n", "backward", tBwd * 1e3, 8.0 * pairs * D / tBwd * 1e-9);
  return 0;
}
