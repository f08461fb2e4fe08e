// bench_cuda_fp8.cpp — bandwidth of the memory-bound kernels around the FP8 GEMMs and the loss:
// castTransposeFp8 (BF16 activations 16384 x 1024 and 16384 x 3072, with and without the transposed copy;
// FP32 master weights 6144 x 1024), amaxBf16, the fused cross-entropy (4096 x 151936 FP32 logits; 1024
// rows with --quick) and the gradient-norm sumSquares (6e8 floats; 1e8 with --quick).
// GB/s counts the minimum traffic (every input byte read once, every output byte written once) and is
// shown as a fraction of the device-to-device copy bandwidth measured in the same run
// (kobench::copyBandwidthGBs). Buffers are filled with a constant byte pattern (0x3C: finite everywhere).
#ifdef KO_CUDA
#include <cuda_runtime.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench_cuda.h"
#include "cuda_api.h"
#include "kernels.h"

namespace kobench {

namespace {

// Device memory released at scope exit; ptr stays null when the allocation failed.
struct Mem {
  void* ptr = nullptr;
  explicit Mem(size_t bytes) {
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) {
      cudaGetLastError();
      ptr = nullptr;
      return;
    }
    cudaMemset(ptr, 0x3C, bytes);
  }
  ~Mem() {
    if (ptr) cudaFree(ptr);
  }
  Mem(const Mem&) = delete;
  Mem& operator=(const Mem&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

struct Row {
  std::string name;
  double bytes = 0;  // minimum traffic of one call
  std::function<std::string()> run;
};

}  // namespace

bool benchCudaFp8(bool quick) {
  std::string why;
  const auto devices = ko::cuda::listDevices(&why);
  if (devices.empty()) {
    std::printf("cuda fp8/cast/loss: skipped: %s\n", why.c_str());
    return false;
  }
  const double copyGBs = copyBandwidthGBs(quick);
  const int reps = quick ? 3 : 10;
  std::printf("cuda casts, amax, cross-entropy, grad norm on %s; best of %d; copy %.0f GB/s\n",
              devices[0].name.c_str(), reps, copyGBs);
  std::printf("%-44s %9s %9s %8s\n", "kernel", "ms", "GB/s", "vs copy");

  bool ok = true;
  Mem scale(sizeof(float)), amax(sizeof(float));
  if (!scale.ptr || !amax.ptr) {
    std::printf("  cudaMalloc failed\n");
    return false;
  }
  const float one = 1.f;
  cudaMemcpy(scale.ptr, &one, sizeof one, cudaMemcpyHostToDevice);
  cudaMemset(amax.ptr, 0, sizeof(float));

  auto report = [&](const Row& row) {
    std::string err = row.run();  // once outside the timing (and to catch argument errors)
    if (err.empty()) err = ko::cuda::checkLastError(row.name.c_str());
    if (!err.empty()) {
      std::printf("%-44s error: %s\n", row.name.c_str(), err.c_str());
      ok = false;
      return;
    }
    std::string timedErr;
    const double ms = cudaBestMs(
        [&] {
          const std::string e = row.run();
          if (!e.empty() && timedErr.empty()) timedErr = e;
        },
        1, reps);
    if (timedErr.empty()) timedErr = ko::cuda::checkLastError(row.name.c_str());
    if (!timedErr.empty()) {
      std::printf("%-44s error: %s\n", row.name.c_str(), timedErr.c_str());
      ok = false;
      return;
    }
    const double gbs = row.bytes / (ms * 1e6);
    char ratio[32];
    if (copyGBs > 0)
      std::snprintf(ratio, sizeof ratio, "%7.2f", gbs / copyGBs);
    else
      std::snprintf(ratio, sizeof ratio, "%7s", "-");
    std::printf("%-44s %9.3f %9.0f %8s\n", row.name.c_str(), ms, gbs, ratio);
  };

  // ---- castTransposeFp8 ----
  struct CastShape {
    int rows, cols;
    bool fp32;
    const char* what;
  };
  const CastShape casts[] = {{16384, 1024, false, "bf16 act"}, {16384, 3072, false, "bf16 act"},
                             {6144, 1024, true, "fp32 weight"}};
  for (const CastShape& c : casts) {
    const size_t n = size_t(c.rows) * c.cols;
    const size_t inBytes = n * (c.fp32 ? 4 : 2);
    Mem in(inBytes), out(n), outT(n);
    if (!in.ptr || !out.ptr || !outT.ptr) {
      std::printf("%s %dx%d: out of device memory\n", c.what, c.rows, c.cols);
      ok = false;
      continue;
    }
    for (bool withT : {false, true}) {
      Row row;
      row.name = std::string("castTransposeFp8 ") + c.what + " " + std::to_string(c.rows) + "x" +
                 std::to_string(c.cols) + (withT ? " out+outT+amax" : " out+amax");
      row.bytes = double(inBytes) + double(n) * (withT ? 2 : 1);
      const int rows = c.rows, cols = c.cols;
      const bool fp32 = c.fp32;
      uint8_t* o = out.as<uint8_t>();
      uint8_t* oT = withT ? outT.as<uint8_t>() : nullptr;
      float* a = amax.as<float>();
      const float* s = scale.as<float>();
      const void* src = in.ptr;
      row.run = [=] {
        return fp32 ? ko::cuda::castTransposeFp8(o, oT, a, static_cast<const float*>(src), rows, cols, s,
                                                 ko::Fp8Format::E4M3, nullptr)
                    : ko::cuda::castTransposeFp8(o, oT, a, static_cast<const ko::cuda::bf16*>(src), rows, cols, s,
                                                 ko::Fp8Format::E4M3, nullptr);
      };
      report(row);
    }
  }

  // ---- amaxBf16 ----
  {
    const size_t n = size_t(16384) * 3072;
    Mem in(n * 2);
    if (in.ptr) {
      Row row;
      row.name = "amaxBf16 16384x3072";
      row.bytes = double(n) * 2;
      const ko::cuda::bf16* src = in.as<ko::cuda::bf16>();
      float* a = amax.as<float>();
      row.run = [=] { return ko::cuda::amaxBf16(a, src, n, nullptr); };
      report(row);
    } else {
      std::printf("amaxBf16: out of device memory\n");
      ok = false;
    }
  }

  // ---- cross-entropy ----
  {
    const int n = quick ? 1024 : 4096, V = 151936;
    const size_t nv = size_t(n) * V;
    Mem logits(nv * 4), dlogits(nv * 2), losses(size_t(n) * 4), targets(size_t(n) * 4);
    if (logits.ptr && dlogits.ptr && losses.ptr && targets.ptr) {
      std::vector<int32_t> t(n);
      for (int r = 0; r < n; r++) t[r] = int32_t((size_t(r) * 7919u) % size_t(V));
      cudaMemcpy(targets.ptr, t.data(), t.size() * 4, cudaMemcpyHostToDevice);
      Row row;
      row.name = "crossEntropyForwardBackward " + std::to_string(n) + "x" + std::to_string(V);
      row.bytes = double(nv) * (4 + 2);  // logits read once, BF16 dlogits written
      float* l = losses.as<float>();
      ko::cuda::bf16* d = dlogits.as<ko::cuda::bf16>();
      const float* x = logits.as<float>();
      const int32_t* tg = targets.as<int32_t>();
      row.run = [=] { return ko::cuda::crossEntropyForwardBackward(l, d, x, tg, n, V, 1.f / float(n), nullptr); };
      report(row);
    } else {
      std::printf("cross-entropy %dx%d: out of device memory\n", n, V);
      ok = false;
    }
  }

  // ---- sumSquares ----
  {
    const size_t n = quick ? size_t(100000000) : size_t(600000000);
    Mem g(n * 4), out(sizeof(double)), scratch(ko::cuda::sumSquaresScratchDoubles(n) * sizeof(double));
    if (g.ptr && out.ptr && scratch.ptr) {
      Row row;
      row.name = "sumSquares " + std::to_string(n / 1000000) + "M floats";
      row.bytes = double(n) * 4;
      double* o = out.as<double>();
      double* sc = scratch.as<double>();
      const float* src = g.as<float>();
      row.run = [=] { return ko::cuda::sumSquares(o, src, n, sc, false, nullptr); };
      report(row);
    } else {
      std::printf("sumSquares %zu: out of device memory\n", n);
      ok = false;
    }
  }
  std::printf("  (GB/s = minimum traffic / time; cross-entropy reads its logits twice, counted once)\n\n");
  return ok;
}

}  // namespace kobench

#endif  // KO_CUDA
