// device_query.cpp — CUDA runtime/driver versions and the list of devices (host code, g++ + cudart).
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "cuda_api.h"

namespace ko::cuda {

static std::string describe(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

int runtimeVersion() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

int driverVersion() {
  int v = 0;  // cudaDriverGetVersion reports 0 (with success) when no driver is installed
  if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

std::string checkLastError(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  return std::string(what ? what : "CUDA") + ": " + describe(e);
}

std::vector<DeviceInfo> listDevices(std::string* error) {
  std::vector<DeviceInfo> out;
  std::string note;
  auto fail = [&](const std::string& msg) {
    if (error) *error = msg;
    return std::vector<DeviceInfo>{};
  };
  if (error) error->clear();

  const int drv = driverVersion();
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it so later calls on this thread start clean
    if (drv == 0) return fail("no NVIDIA driver found (libcuda.so could not be loaded; cudaGetDeviceCount: " + describe(e) + ")");
    const int rt = runtimeVersion();
    std::string msg = "cudaGetDeviceCount failed: " + describe(e);
    if (e == cudaErrorInsufficientDriver)
      msg += " (driver supports CUDA " + std::to_string(drv / 1000) + "." + std::to_string(drv % 1000 / 10) +
             ", this build needs " + std::to_string(rt / 1000) + "." + std::to_string(rt % 1000 / 10) + ")";
    return fail(msg);
  }
  if (count <= 0) return fail("the NVIDIA driver reports no CUDA devices");

  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) {
    cudaGetLastError();
    previous = -1;
  }
  for (int i = 0; i < count; i++) {
    cudaDeviceProp prop{};
    e = cudaGetDeviceProperties(&prop, i);
    if (e != cudaSuccess) {
      cudaGetLastError();
      note += (note.empty() ? "" : "; ") + std::string("device ") + std::to_string(i) + ": cudaGetDeviceProperties: " + describe(e);
      continue;
    }
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.ccMajor = prop.major;
    d.ccMinor = prop.minor;
    d.totalMemory = prop.totalGlobalMem;
    d.multiprocessors = prop.multiProcessorCount;
    d.bf16Supported = d.ccMajor >= 8;
    d.fp8Supported = d.ccMajor > 8 || (d.ccMajor == 8 && d.ccMinor >= 9);

    size_t freeB = 0, totalB = 0;
    e = cudaSetDevice(i);
    if (e == cudaSuccess) e = cudaMemGetInfo(&freeB, &totalB);
    if (e == cudaSuccess) {
      d.freeMemory = freeB;
    } else {
      cudaGetLastError();
      note += (note.empty() ? "" : "; ") + std::string("device ") + std::to_string(i) + ": free memory unknown (" + describe(e) + ")";
    }
    out.push_back(std::move(d));
  }
  if (previous >= 0) cudaSetDevice(previous);
  cudaGetLastError();

  if (out.empty()) return fail(note.empty() ? std::string("no usable CUDA device") : note);
  if (error) *error = note;
  return out;
}

std::string setCurrentDevice(int device) {
  const cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) return "";
  cudaGetLastError();
  return std::string("cudaSetDevice(") + std::to_string(device) + "): " + cudaGetErrorString(e);
}

}  // namespace ko::cuda
