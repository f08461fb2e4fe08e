// bench_main.cpp — ko_bench: CPU kernel micro-benchmarks, printed as a table.
//   SGEMM through gemm (OpenBLAS when built with it) and through the built-in gemmBlocked, at the
//   shapes of a small Llama's linears (M = tokens, y[M,N] = x[M,K] · w[N,K]^T), plus causal attention
//   forward/backward. Ratios are against gemm in the same process (machines are noisy).
//   ko_bench [--quick] [--cpu | --cuda] [--train-cuda TOKENS.bin [--steps N] [--batch B] [--seq T]
//            [--precisions bf16,fp8] [--out DIR] [--layers L]]
//   Without --cpu/--cuda both sections run (CUDA only when built with it and a GPU is present).
//   --train-cuda runs the end-to-end CUDA training benchmark (bench_cuda_train.cpp) instead.
//   --prep runs the data-pipeline sections (rule filter, MinHash, n-gram LM; bench_registry.h) instead.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "bench_cuda.h"
#include "bench_registry.h"
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

static int benchCpu(bool quick);

int main(int argc, char** argv) {
  bool quick = false, cpu = true, cuda = true;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--cpu") == 0) {
      cuda = false;
    } else if (std::strcmp(argv[i], "--cuda") == 0) {
      cpu = false;
    } else if (std::strcmp(argv[i], "--prep") == 0) {
      bool quickPrep = false;
      for (int j = 1; j < argc; j++) quickPrep = quickPrep || std::strcmp(argv[j], "--quick") == 0;
      bool ok = true;
      for (auto& sec : kobench::sections())
        if (std::strcmp(sec.group, "prep") == 0) ok = sec.fn(quickPrep) && ok;
      return ok ? 0 : 1;
    } else if (std::strcmp(argv[i], "--train-cuda") == 0) {
#ifdef KO_CUDA
      return kobench::benchCudaTrain(argc, argv);
#else
      std::fprintf(stderr, "ko_bench: --train-cuda needs a build with CUDA (KO_CUDA)\n");
      return 2;
#endif
    } else {
      std::fprintf(stderr, "usage: ko_bench [--quick] [--cpu | --cuda] | --prep [--quick] | --train-cuda TOKENS.bin [options]\n");
      return 2;
    }
  }
  if (cpu) {
    int rc = benchCpu(quick);
    if (rc != 0) return rc;
  }
  if (cuda) {
#ifdef KO_CUDA
    std::printf("\n==== CUDA ====\n");
    const double copy = kobench::copyBandwidthGBs(quick);
    std::printf("device copy bandwidth: %.0f GB/s (read + write)\n\n", copy);
    bool ok = kobench::benchCudaGemm(quick);
    ok = kobench::benchCudaAttention(quick) && ok;
    ok = kobench::benchCudaElementwise(quick) && ok;
    ok = kobench::benchCudaFp8(quick) && ok;
    if (!ok) std::printf("(some CUDA sections could not run; see above)\n");
#else
    if (!cpu) std::printf("this ko_bench was built without CUDA\n");
#endif
  }
  return 0;
}

static int benchCpu(bool quick) {
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const int warmup = 1, reps = quick ? 1 : 2;
  std::printf("ko_bench: gemm backend = %s, OpenMP threads = %d%s\n\n", ko::gemmBackendName(), threads,
              quick ? " (--quick)" : "");

  struct Shape {
    int M, N, K;
    const char* what;
  };
  const int M = quick ? 256 : 1024;
  const Shape shapes[] = {{M, 768, 768, "attn proj"}, {M, 2048, 768, "mlp up"}, {M, 32000, 768, "lm head"}};
  const int numShapes = 3;
  std::vector<std::vector<float>> xs, ws, ys;
  for (const Shape& s : shapes) {
    xs.push_back(randomVec(size_t(s.M) * s.K, 1));
    ws.push_back(randomVec(size_t(s.N) * s.K, 2));
    ys.emplace_back(size_t(s.M) * s.N);
  }
  auto runGemm = [&](bool builtin, int i) {
    const Shape& s = shapes[i];
    auto fn = builtin ? ko::gemmBlocked : ko::gemm;
    fn(false, true, s.M, s.N, s.K, 1.f, xs[i].data(), s.K, ws[i].data(), s.K, 0.f, ys[i].data(), s.N);
  };
  // All built-in runs first, then all `gemm` runs: an OpenBLAS (pthreads) build's worker threads keep
  // spinning for a while after each call and would steal the cores from the OpenMP kernel.
  double tBlocked[numShapes], tGemm[numShapes];
  for (int i = 0; i < numShapes; i++) tBlocked[i] = bestTime([&] { runGemm(true, i); }, warmup, reps);
  for (int i = 0; i < numShapes; i++) tGemm[i] = bestTime([&] { runGemm(false, i); }, warmup, reps);
  // ... and that interference, measured: the built-in kernel timed right after a `gemm` call.
  double tAfter = 1e300;
  for (int r = 0; r < 3; r++) {
    runGemm(false, 0);
    tAfter = std::min(tAfter, bestTime([&] { runGemm(true, 0); }, 0, 1));
  }
  std::printf("SGEMM  y[M,N] = x[M,K] * w[N,K]^T                  GFLOP/s\n");
  std::printf("%-10s %6s %6s %5s | %9s %12s %7s\n", "", "M", "N", "K", "gemm", "gemmBlocked", "ratio");
  for (int i = 0; i < numShapes; i++) {
    const Shape& s = shapes[i];
    const double flops = 2.0 * s.M * s.N * s.K;
    std::printf("%-10s %6d %6d %5d | %9.1f %12.1f %6.2fx\n", s.what, s.M, s.N, s.K, flops / tGemm[i] * 1e-9,
                flops / tBlocked[i] * 1e-9, tGemm[i] / tBlocked[i]);
  }
  std::printf("gemmBlocked (%s) timed right after a gemm call: %.1f GFLOP/s\n", shapes[0].what,
              2.0 * shapes[0].M * shapes[0].N * shapes[0].K / tAfter * 1e-9);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let BLAS threads park before OpenMP work

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

  // row-wise ops at the same token count as the GEMMs, for scale against them
  const int hidden = 768, F = 2048, V = 32000;
  const size_t params = quick ? (size_t(1) << 20) : (size_t(1) << 22);
  auto x = randomVec(size_t(M) * hidden, 7), w = randomVec(hidden, 8), dy = randomVec(size_t(M) * hidden, 9);
  std::vector<float> y(x.size()), rstd(M), dx(x.size()), dw(hidden, 0.f);
  auto gu = randomVec(size_t(M) * 2 * F, 10), dh = randomVec(size_t(M) * F, 11);
  std::vector<float> hbuf(size_t(M) * F), dgu(gu.size());
  auto logits = randomVec(size_t(M) * V, 12);
  std::vector<float> grad(logits.size()), losses(M);
  std::vector<int32_t> targets(M);
  for (int i = 0; i < M; i++) targets[i] = int32_t((i * 7919) % V);
  auto p = randomVec(params, 13), g = randomVec(params, 14);
  std::vector<float> m1(params, 0.f), v1(params, 0.f);
  ko::AdamWParams hp{1e-3f, 0.9f, 0.95f, 1e-8f, 1};
  struct Row {
    const char* name;
    double ms;
    double bytes;
  };
  const double f4 = 4.0;
  std::vector<Row> table = {
      {"rmsnorm fwd", bestTime([&] { ko::rmsnormForward(y.data(), rstd.data(), x.data(), w.data(), M, hidden, 1e-5f); },
                               warmup, reps),
       f4 * 2 * x.size()},
      {"rmsnorm bwd",
       bestTime([&] { ko::rmsnormBackward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), M, hidden); },
                warmup, reps),
       f4 * 5 * x.size()},
      {"swiglu fwd", bestTime([&] { ko::swigluForward(hbuf.data(), gu.data(), M, F); }, warmup, reps),
       f4 * 3 * hbuf.size()},
      {"swiglu bwd", bestTime([&] { ko::swigluBackward(dgu.data(), dh.data(), gu.data(), M, F); }, warmup, reps),
       f4 * 5 * hbuf.size()},
      {"xent fwd",
       bestTime([&] { ko::crossEntropyForward(losses.data(), logits.data(), targets.data(), M, V); }, warmup, reps),
       f4 * logits.size()},
      {"xent bwd",
       bestTime(
           [&] {
             std::memcpy(grad.data(), logits.data(), logits.size() * sizeof(float));
             ko::crossEntropyBackward(grad.data(), targets.data(), M, V, 1.0f / M);
           },
           warmup, reps),
       f4 * 4 * logits.size()},
      {"adamw", bestTime([&] { ko::adamwUpdate(p.data(), g.data(), m1.data(), v1.data(), params, hp, 0.1f, 1.f); },
                         warmup, reps),
       f4 * 7 * params},
  };
  std::printf("\nrow ops (rows = %d, hidden %d, ffn %d, vocab %d; adamw %zu params)\n", M, hidden, F, V, params);
  std::printf("%-12s %9s %9s\n", "", "ms", "GB/s");
  for (const Row& r : table) std::printf("%-12s %9.2f %9.1f\n", r.name, r.ms * 1e3, r.bytes / r.ms * 1e-9);
  std::printf("(xent bwd includes copying the logits; GB/s counts the minimal traffic)\n");
  return 0;
}
