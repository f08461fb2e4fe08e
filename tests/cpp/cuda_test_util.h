// cuda_test_util.h — shared helpers of the `cuda` test group: skip without a GPU, device buffers that
// are poisoned before each run (0xFF bytes: NaN in FP32, BF16, E4M3 and E5M2), random inputs.
// Only included by files that are compiled when KO_CUDA is defined.
#pragma once
#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "cuda_api.h"
#include "lowp.h"
#include "rng.h"

namespace kocuda {

// Skips the calling test unless at least one CUDA device is usable; returns device 0's info.
inline ko::cuda::DeviceInfo deviceOrSkip() {
  std::string error;
  auto devices = ko::cuda::listDevices(&error);
  if (devices.empty())
    KO_SKIP("no CUDA device: " + (error.empty() ? std::string("listDevices() returned none") : error));
  return devices[0];
}

#define KO_CUDA_CHECK(expr)                                                                   \
  do {                                                                                         \
    cudaError_t e_ = (expr);                                                                   \
    KO_CHECK_MSG(e_ == cudaSuccess, std::string(#expr) + ": " + cudaGetErrorString(e_));       \
  } while (0)

// Owns count elements of T on the device, filled with 0xFF bytes at creation (poison).
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count = 0;
  explicit DeviceBuffer(size_t n) : count(n) {
    KO_CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(T) + 16));
    poison();
  }
  DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void poison() { KO_CUDA_CHECK(cudaMemset(ptr, 0xFF, count * sizeof(T) + 16)); }
  void upload(const std::vector<T>& host) {
    KO_CHECK(host.size() == count);
    KO_CUDA_CHECK(cudaMemcpy(ptr, host.data(), count * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(count);
    KO_CUDA_CHECK(cudaDeviceSynchronize());
    KO_CUDA_CHECK(cudaMemcpy(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // True when the 16 guard bytes after the end are still 0xFF (nothing wrote past the end).
  bool guardIntact() const {
    unsigned char g[16];
    cudaMemcpy(g, reinterpret_cast<const unsigned char*>(ptr) + count * sizeof(T), 16, cudaMemcpyDeviceToHost);
    for (unsigned char b : g)
      if (b != 0xFF) return false;
    return true;
  }
};

// Uniform in [-amp, amp), never exactly zero.
inline std::vector<float> randomFloats(size_t n, uint64_t seed, float amp = 1.f) {
  ko::Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = float((r.uniform() * 2 - 1) * amp);
    while (x == 0.f);
  }
  return v;
}
// BF16 bits of random values, and the same values decoded (the CPU twin's input).
inline std::vector<uint16_t> toBf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); i++) out[i] = ko::bf16FromFloat(x[i]);
  return out;
}
inline std::vector<float> fromBf16(const std::vector<uint16_t>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); i++) out[i] = ko::floatFromBf16(x[i]);
  return out;
}
inline bool allFinite(const std::vector<float>& x) {
  for (float v : x)
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace kocuda
