// bench_cuda_elementwise.cpp — the memory-bound kernels of kernels.h (RMSNorm, RoPE, SwiGLU, add, casts,
// embedding) in GB/s of bytes read + written, each as a fraction of the device-to-device copy bandwidth
// (cudaMemcpyAsync, also read + write) measured in the same run. Also defines copyBandwidthGBs, the
// reference the other CUDA bench sections may use.
#ifdef KO_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench_cuda.h"
#include "embedding_segments.h"
#include "kernels.h"
#include "lowp.h"
#include "rng.h"

namespace kobench {

namespace {

// One device allocation, freed on scope exit.
struct DevMem {
  void* p = nullptr;
  DevMem() = default;
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  ~DevMem() {
    if (p) cudaFree(p);
  }
  bool alloc(size_t bytes, const char* what) {
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      p = nullptr;
      std::printf("  cudaMalloc(%s, %.2f GiB) failed: %s\n", what, double(bytes) / double(1u << 30),
                  cudaGetErrorString(e));
      return false;
    }
    return true;
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Fills `bytes` of device memory with copies of a random host pattern (BF16 or FP32 values in
// [-amp, amp)): one upload, then doubling device-to-device copies.
bool fillRandom(void* dst, size_t bytes, bool bf16, uint64_t seed, float amp) {
  const size_t chunkBytes = std::min(bytes, size_t(4) << 20);
  std::vector<unsigned char> host(chunkBytes);
  ko::Rng r(seed);
  if (bf16) {
    for (size_t i = 0; i + 2 <= chunkBytes; i += 2) {
      const uint16_t v = ko::bf16FromFloat(float((r.uniform() * 2 - 1) * amp));
      std::memcpy(&host[i], &v, 2);
    }
  } else {
    for (size_t i = 0; i + 4 <= chunkBytes; i += 4) {
      const float v = float((r.uniform() * 2 - 1) * amp);
      std::memcpy(&host[i], &v, 4);
    }
  }
  unsigned char* d = static_cast<unsigned char*>(dst);
  if (cudaMemcpy(d, host.data(), chunkBytes, cudaMemcpyHostToDevice) != cudaSuccess) return false;
  for (size_t filled = chunkBytes; filled < bytes;) {
    const size_t n = std::min(filled, bytes - filled);
    if (cudaMemcpy(d + filled, d, n, cudaMemcpyDeviceToDevice) != cudaSuccess) return false;
    filled += n;
  }
  return cudaDeviceSynchronize() == cudaSuccess;
}

struct Row {
  std::string name, shape;
  double ms, bytes;
};

}  // namespace

double copyBandwidthGBs(bool quick) {
  static double cached[2] = {0, 0};
  double& c = cached[quick ? 1 : 0];
  if (c > 0) return c;
  const size_t bytes = quick ? size_t(256) << 20 : size_t(1) << 30;
  DevMem src, dst;
  if (!src.alloc(bytes, "copy src") || !dst.alloc(bytes, "copy dst")) return 0;
  if (cudaMemset(src.p, 0x3F, bytes) != cudaSuccess) return 0;
  std::string err;
  const double ms = cudaBestMs([&] { err = ko::cuda::copyBytes(dst.p, src.p, bytes, nullptr); }, 2, quick ? 3 : 10);
  if (!err.empty() || cudaDeviceSynchronize() != cudaSuccess) {
    std::printf("  copy failed: %s\n", err.c_str());
    return 0;
  }
  c = 2.0 * double(bytes) / (ms * 1e6);
  return c;
}

bool benchCudaElementwise(bool quick) {
  std::printf("CUDA elementwise / normalization kernels (GB/s = bytes read + written; vs = fraction of D2D copy)%s\n",
              quick ? " (--quick)" : "");
  const double copyBw = copyBandwidthGBs(quick);
  if (!(copyBw > 0)) {
    std::printf("  could not measure the copy bandwidth; skipped\n");
    return false;
  }
  const int warmup = 2, reps = quick ? 3 : 10;
  const int rows = quick ? 4096 : 16384;
  std::vector<Row> table;
  std::string err;
  bool ok = true;
  // Runs fn once to check its error string, then times it.
  auto timeIt = [&](const std::string& name, const std::string& shape, double bytes,
                    const std::function<std::string()>& fn) {
    err = fn();
    if (err.empty() && cudaDeviceSynchronize() != cudaSuccess) err = cudaGetErrorString(cudaGetLastError());
    if (!err.empty()) {
      std::printf("  %s failed: %s\n", name.c_str(), err.c_str());
      ok = false;
      return;
    }
    const double ms = cudaBestMs([&] { fn(); }, warmup, reps);
    table.push_back({name, shape, ms, bytes});
  };

  // ---- RMSNorm, rows x 1024 (per-token norm of a 0.6B-class model) ----
  {
    const int dim = 1024;
    const size_t n = size_t(rows) * dim;
    const size_t scratch = ko::cuda::rmsnormBackwardScratchFloats(rows, dim);
    DevMem x, y, dy, dx, w, dw, rstd, sc;
    if (x.alloc(n * 2, "x") && y.alloc(n * 2, "y") && dy.alloc(n * 2, "dy") && dx.alloc(n * 2, "dx") &&
        w.alloc(dim * 4, "w") && dw.alloc(dim * 4, "dw") && rstd.alloc(size_t(rows) * 4, "rstd") &&
        sc.alloc(scratch * 4, "scratch") && fillRandom(x.p, n * 2, true, 1, 2.f) &&
        fillRandom(dy.p, n * 2, true, 2, 1.f) && fillRandom(w.p, dim * 4, false, 3, 1.f) &&
        cudaMemset(dw.p, 0, dim * 4) == cudaSuccess) {
      const std::string shape = std::to_string(rows) + " x " + std::to_string(dim);
      timeIt("rmsnorm fwd", shape, 2.0 * n * 2 + rows * 4.0 + dim * 4.0, [&] {
        return ko::cuda::rmsnormForward(y.as<uint16_t>(), rstd.as<float>(), x.as<uint16_t>(), w.as<float>(), rows, 1,
                                        dim, dim, dim, 1e-6f, nullptr);
      });
      timeIt("rmsnorm bwd", shape, 3.0 * n * 2 + rows * 4.0 + 3.0 * dim * 4 + 2.0 * scratch * 4, [&] {
        return ko::cuda::rmsnormBackward(dx.as<uint16_t>(), dw.as<float>(), dy.as<uint16_t>(), x.as<uint16_t>(),
                                         w.as<float>(), rstd.as<float>(), rows, 1, dim, dim, dim, sc.as<float>(),
                                         nullptr);
      });
      // q-norm inside a fused qkv row of a Qwen3-0.6B-like layer: 16 q heads of 128, row stride 4096.
      const int heads = 16, hd = 128, qkvStride = (16 + 2 * 8) * 128;
      DevMem qkv, qn;
      if (qkv.alloc(size_t(rows) * qkvStride * 2, "qkv") && qn.alloc(size_t(rows) * heads * 4, "rstd q") &&
          fillRandom(qkv.p, size_t(rows) * qkvStride * 2, true, 4, 2.f)) {
        const double qBytes = 2.0 * rows * heads * hd * 2 + rows * heads * 4.0;
        timeIt("rmsnorm fwd (q heads)", std::to_string(rows) + " x 16 x 128", qBytes, [&] {
          return ko::cuda::rmsnormForward(qkv.as<uint16_t>(), qn.as<float>(), qkv.as<uint16_t>(), w.as<float>(), rows,
                                          heads, hd, qkvStride, qkvStride, 1e-6f, nullptr);
        });
      }
    } else {
      ok = false;
    }
  }

  // ---- RoPE, rows x 16 heads x 128 (T = 2048 positions) ----
  {
    const int H = 16, D = 128, T = std::min(rows, 2048), B = rows / T;
    const size_t n = size_t(B) * T * H * D;
    DevMem x, f;
    std::vector<float> invFreq(D / 2);
    for (int i = 0; i < D / 2; i++) invFreq[size_t(i)] = float(1.0 / std::pow(1e6, 2.0 * i / D));
    if (x.alloc(n * 2, "x") && f.alloc(invFreq.size() * 4, "invFreq") && fillRandom(x.p, n * 2, true, 5, 2.f) &&
        cudaMemcpy(f.p, invFreq.data(), invFreq.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess) {
      timeIt("rope", std::to_string(B * T) + " x 16 x 128", 2.0 * n * 2, [&] {
        return ko::cuda::ropeApply(x.as<uint16_t>(), B, T, H, D, H * D, f.as<float>(), 0, false, nullptr);
      });
    } else {
      ok = false;
    }
  }

  // ---- SwiGLU, rows x 3072 ----
  {
    const int F = 3072;
    const size_t n1 = size_t(rows) * F, n2 = 2 * n1;
    DevMem gu, h, dh, dgu;
    if (gu.alloc(n2 * 2, "gateUp") && h.alloc(n1 * 2, "h") && dh.alloc(n1 * 2, "dh") && dgu.alloc(n2 * 2, "dGateUp") &&
        fillRandom(gu.p, n2 * 2, true, 6, 4.f) && fillRandom(dh.p, n1 * 2, true, 7, 1.f)) {
      const std::string shape = std::to_string(rows) + " x " + std::to_string(F);
      timeIt("swiglu fwd", shape, double(n2) * 2 + double(n1) * 2, [&] {
        return ko::cuda::swigluForward(h.as<uint16_t>(), gu.as<uint16_t>(), rows, F, nullptr);
      });
      timeIt("swiglu bwd", shape, double(n1) * 2 + 2.0 * n2 * 2, [&] {
        return ko::cuda::swigluBackward(dgu.as<uint16_t>(), dh.as<uint16_t>(), gu.as<uint16_t>(), rows, F, nullptr);
      });
      // add on the same buffers (the residual adds are rows x hidden; this is a larger flat array).
      timeIt("add bf16", std::to_string(n1), 3.0 * n1 * 2, [&] {
        return ko::cuda::addBf16(h.as<uint16_t>(), dh.as<uint16_t>(), gu.as<uint16_t>(), n1, nullptr);
      });
    } else {
      ok = false;
    }
  }

  // ---- casts: the FP32 master weights of a 0.6B model -> BF16 copies (and back) ----
  {
    const size_t n = quick ? size_t(60000000) : size_t(600000000);
    DevMem in, out;
    if (in.alloc(n * 4, "fp32 weights") && out.alloc(n * 2, "bf16 weights") && fillRandom(in.p, n * 4, false, 8, 1.f)) {
      timeIt("cast fp32->bf16", std::to_string(n), 6.0 * n, [&] {
        return ko::cuda::castFloatToBf16(out.as<uint16_t>(), in.as<float>(), n, nullptr);
      });
      timeIt("cast bf16->fp32", std::to_string(n), 6.0 * n, [&] {
        return ko::cuda::castBf16ToFloat(in.as<float>(), out.as<uint16_t>(), n, nullptr);
      });
    } else {
      ok = false;
    }
  }

  // ---- embedding, rows tokens x 1024, vocabulary 151936 (Qwen3) ----
  {
    const int vocab = 151936, dim = 1024;
    std::vector<uint32_t> ids(static_cast<size_t>(rows));
    ko::Rng r(9);
    for (auto& id : ids) id = uint32_t(r.next() % uint64_t(vocab));
    std::vector<int32_t> order, segStart, segToken;
    ko::cuda::embeddingSegments(ids.data(), rows, vocab, order, segStart, segToken);
    const int nSeg = int(segToken.size());
    const size_t tableN = size_t(vocab) * dim, outN = size_t(rows) * dim;
    DevMem tab, dtab, out, dids, dord, dstart, dtok;
    if (tab.alloc(tableN * 2, "table") && dtab.alloc(tableN * 4, "dtable") && out.alloc(outN * 2, "out") &&
        dids.alloc(ids.size() * 4, "ids") && dord.alloc(order.size() * 4, "order") &&
        dstart.alloc(segStart.size() * 4, "segStart") && dtok.alloc(segToken.size() * 4, "segToken") &&
        fillRandom(tab.p, tableN * 2, true, 10, 1.f) && cudaMemset(dtab.p, 0, tableN * 4) == cudaSuccess &&
        cudaMemcpy(dids.p, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
        cudaMemcpy(dord.p, order.data(), order.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
        cudaMemcpy(dstart.p, segStart.data(), segStart.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
        cudaMemcpy(dtok.p, segToken.data(), segToken.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess) {
      const std::string shape = std::to_string(rows) + " x " + std::to_string(dim);
      timeIt("embedding fwd", shape, 2.0 * outN * 2 + rows * 4.0, [&] {
        return ko::cuda::embeddingForward(out.as<uint16_t>(), dids.as<uint32_t>(), tab.as<uint16_t>(), rows, dim,
                                          nullptr);
      });
      // dout = the forward output; dtable rows of the nSeg distinct tokens are read and written.
      timeIt("embedding bwd", shape + " (" + std::to_string(nSeg) + " tokens)",
             double(outN) * 2 + 2.0 * nSeg * dim * 4 + rows * 4.0 + nSeg * 8.0, [&] {
               return ko::cuda::embeddingBackward(dtab.as<float>(), out.as<uint16_t>(), dord.as<int32_t>(),
                                                  dstart.as<int32_t>(), dtok.as<int32_t>(), nSeg, dim, nullptr);
             });
    } else {
      ok = false;
    }
  }

  std::printf("  %-24s %-28s %10s %10s %8s\n", "kernel", "shape", "ms", "GB/s", "vs copy");
  std::printf("  %-24s %-28s %10s %10.1f %8.2f\n", "D2D copy (reference)", quick ? "256 MiB" : "1 GiB", "", copyBw, 1.0);
  for (const Row& t : table) {
    const double gbs = t.bytes / (t.ms * 1e6);
    std::printf("  %-24s %-28s %10.4f %10.1f %8.2f\n", t.name.c_str(), t.shape.c_str(), t.ms, gbs, gbs / copyBw);
  }
  std::printf("\n");
  return ok;
}

}  // namespace kobench

#endif  // KO_CUDA
