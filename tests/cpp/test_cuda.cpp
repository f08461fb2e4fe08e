// test_cuda.cpp — group `cuda`: device query and the AdamW kernel against its CPU twin.
// Every test skips (never fails) when the build has no CUDA or the machine has no usable GPU.
#include <string>

#include "check.h"
#ifdef KO_CUDA
#include "cuda_api.h"
#endif

namespace {

#ifdef KO_CUDA
// Skips the calling test unless at least one CUDA device is usable.
std::vector<ko::cuda::DeviceInfo> devicesOrSkip() {
  std::string error;
  auto devices = ko::cuda::listDevices(&error);
  if (devices.empty())
    KO_SKIP("no CUDA device: " + (error.empty() ? std::string("listDevices() returned none") : error));
  return devices;
}
#endif

}  // namespace

KO_TEST(cuda, cuda_list_devices) {
#ifndef KO_CUDA
  KO_SKIP("no CUDA device: this build has no CUDA support (KO_CUDA is off)");
#else
  auto devices = devicesOrSkip();
  KO_CHECK(ko::cuda::runtimeVersion() > 0);
  KO_CHECK(ko::cuda::driverVersion() > 0);
  for (size_t i = 0; i < devices.size(); i++) {
    const auto& d = devices[i];
    std::printf("  device %d: %s, cc %d.%d, %d SMs, %.1f GiB (%.1f GiB free), bf16=%d fp8=%d\n", d.index,
                d.name.c_str(), d.ccMajor, d.ccMinor, d.multiprocessors, double(d.totalMemory) / (1u << 30),
                double(d.freeMemory) / (1u << 30), int(d.bf16Supported), int(d.fp8Supported));
    KO_CHECK(d.index == int(i));
    KO_CHECK(!d.name.empty());
    KO_CHECK(d.ccMajor >= 5);
    KO_CHECK(d.ccMinor >= 0);
    KO_CHECK(d.totalMemory > 0);
    KO_CHECK(d.freeMemory <= d.totalMemory);
    KO_CHECK(d.multiprocessors > 0);
    KO_CHECK(d.bf16Supported == (d.ccMajor >= 8));
    KO_CHECK(d.fp8Supported == (d.ccMajor * 10 + d.ccMinor >= 89));
  }
#endif
}

KO_TEST(cuda, cuda_adamw_matches_cpu) {
#ifndef KO_CUDA
  KO_SKIP("no CUDA device: this build has no CUDA support (KO_CUDA is off)");
#else
  devicesOrSkip();
  double relErr = -1;
  // Odd size: exercises the float4 body and the scalar tail (the self-test also runs misaligned).
  const std::string err = ko::cuda::adamwSelfTest((size_t(1) << 20) + 3, 1234, &relErr);
  KO_CHECK_MSG(err.empty(), err);
  std::printf("  adamw rel error (p, 3 steps): %.3g\n", relErr);
  KO_CHECK(relErr >= 0);
  KO_CHECK(relErr <= 1e-6);
#endif
}

KO_TEST(cuda, cuda_adamw_tiny_sizes) {
#ifndef KO_CUDA
  KO_SKIP("no CUDA device: this build has no CUDA support (KO_CUDA is off)");
#else
  devicesOrSkip();
  for (size_t n : {size_t(1), size_t(3), size_t(4), size_t(5), size_t(257)}) {
    double relErr = -1;
    const std::string err = ko::cuda::adamwSelfTest(n, 99 + n, &relErr);
    KO_CHECK_MSG(err.empty(), "n=" + std::to_string(n) + ": " + err);
    KO_CHECK_MSG(relErr >= 0 && relErr <= 1e-6, "n=" + std::to_string(n) + ": rel error " + std::to_string(relErr));
  }
#endif
}
