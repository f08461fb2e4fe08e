// cuda_api.h — the host-side interface of the CUDA kernels (library ko_cuda, built when KO_CUDA=1).
//
// Plain C++: no CUDA types appear here, so code compiled by g++ (the tests, the Node addon) can
// include it. Device pointers are passed as ordinary pointers and streams as `void*`
// (a cudaStream_t; nullptr = the legacy default stream).
//
// Nothing here throws or exits: failures come back as strings (empty = success).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ko::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int ccMajor = 0, ccMinor = 0;  // compute capability
  size_t totalMemory = 0;        // bytes
  size_t freeMemory = 0;         // bytes (0 when it could not be queried)
  int multiprocessors = 0;
  bool fp8Supported = false;   // cc >= 8.9 (Ada, Hopper and newer)
  bool bf16Supported = false;  // cc >= 8.0 (Ampere and newer)
};

// CUDA runtime version this library was linked with, e.g. 13000 for 13.0.
int runtimeVersion();
// Newest CUDA version the installed driver supports, e.g. 12080; 0 when no driver is installed.
int driverVersion();

// All visible CUDA devices. When there is no usable driver or GPU the result is empty and *error
// (if non-null) says why. A non-empty result may still carry a note in *error (e.g. free memory
// of a device could not be read). Querying free memory creates the primary context of each device.
std::vector<DeviceInfo> listDevices(std::string* error);

// Makes `device` current on the calling thread (work on the libuv pool may start on any device).
// "" or why it failed.
std::string setCurrentDevice(int device);

// "" when no CUDA error is pending on this thread; otherwise "<what>: <name>: <description>", and
// the (non-sticky) error is cleared. Use after launching kernels from host code compiled by g++.
std::string checkLastError(const char* what);

// ---- AdamW (device twin of ko::adamwUpdate in native/ops.h) -------------------------------------
// PyTorch AdamW, decoupled weight decay, in place over device arrays of n floats:
//   g = grad * gradScale;  p -= lr*wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps),   t = step >= 1.
// The bias corrections are computed on the host in double. Asynchronous on `stream`; launch errors
// are reported by checkLastError() (or by the next synchronizing call). n == 0 is a no-op.
void adamwUpdateDevice(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                       float eps, int64_t step, float weightDecay, float gradScale, void* stream);

// Runs 3 AdamW steps on the current device and with ko::adamwUpdate on the CPU from the same random
// inputs (seeded), both with 16-byte-aligned and misaligned arrays, and compares. Returns "" on
// success or what went wrong (CUDA errors, non-finite results, writes past the end, m/v mismatch);
// *relErr (if non-null) = ||p_gpu - p_cpu|| / ||p_cpu||, the worse of the two layouts, which the
// caller judges (expected <= 1e-6; -1 when the test could not run).
std::string adamwSelfTest(size_t n, uint64_t seed, double* relErr);

}  // namespace ko::cuda
