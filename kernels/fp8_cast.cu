// fp8_cast.cu — casts for the FP8 GEMMs: the fused cast + transpose + amax (castTransposeFp8, BF16 or
// FP32 input), the amax alone (amaxBf16) and the BF16 transpose (transposeBf16).
//
// Every FP8 byte is __nv_cvt_float_to_fp8(x * scale, __NV_SATFINITE, format), with x * scale one FP32
// multiply: cvt.rn.satfinite on sm_89+ and CUDA's software conversion on sm_80, both round to nearest
// even and saturate, bit-identical to ko::fp8FromFloat(x * scale) (native/lowp.h; the CPU test
// lowp_fp8_matches_cuda_host_conversion checks lowp.h against CUDA's own conversion).
//
// The amax is max |x| with fmaxf (NaN ignored) per thread, then per block, then one atomicMax per block
// on the float's bits read as an int: for non-negative floats the int order is the float order, so the
// result is exact and independent of the block order (*amax must hold a non-negative value).
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>

#include "kernels.h"

namespace ko::cuda {

namespace {

std::string launchError(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  return std::string(kernel) + ": launch failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

bool alignedTo(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

// ---- element access -------------------------------------------------------------------------------
// BF16 -> FP32 is exact: the 16 bits become the high half of the float.
template <typename T>
struct Load;
template <>
struct Load<uint16_t> {
  static __device__ __forceinline__ float one(const uint16_t* p) { return __uint_as_float(uint32_t(*p) << 16); }
  // Two consecutive elements; p must be 4-byte aligned.
  static __device__ __forceinline__ float2 two(const uint16_t* p) {
    const uint32_t w = *reinterpret_cast<const uint32_t*>(p);
    return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
  }
};
template <>
struct Load<float> {
  static __device__ __forceinline__ float one(const float* p) { return *p; }
  // p must be 8-byte aligned.
  static __device__ __forceinline__ float2 two(const float* p) { return *reinterpret_cast<const float2*>(p); }
};

// fp8(a) in the low byte, fp8(b) in the high byte (memory order when stored as a uint16_t).
template <__nv_fp8_interpretation_t F>
__device__ __forceinline__ uint32_t fp8x2(float a, float b) {
  return uint32_t(__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, F));
}

// ---- block max --------------------------------------------------------------------------------------
// Max over the block of the threads' v (blockDim.x == Threads); *amax = max(*amax, it) by one atomic.
template <int Threads>
__device__ __forceinline__ void blockAmaxToGlobal(float v, float* amax) {
  __shared__ float warpMax[Threads / 32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (threadIdx.x % 32 == 0) warpMax[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = warpMax[0];
#pragma unroll
    for (int w = 1; w < Threads / 32; w++) m = fmaxf(m, warpMax[w]);
    // m >= 0 and never NaN (fmaxf drops NaN against the initial 0); zero changes nothing.
    if (m > 0.f) atomicMax(reinterpret_cast<int*>(amax), __float_as_int(m));
  }
}

// ---- cast + transpose + amax -------------------------------------------------------------------------
// One block per 64 x 64 tile (blocks numbered row-tile-major), 256 threads.
//   Phase 1: warp w reads tile rows w, w+8, ..., w+56; lane l the columns 2l, 2l+1 (a 64-element row is one
//            warp-wide coalesced read: 128 B for BF16, 256 B for FP32). Each pair is converted with one
//            cvt ...x2, written to `out` as 2 bytes (a 64-byte segment per warp) and into shared memory.
//   Phase 2: thread idx writes 4 consecutive bytes of an outT row: tile column idx/16, tile rows
//            4*(idx%16) .. +3; a warp writes 2 outT rows of 64 bytes.
// Shared-memory row stride 66 bytes: the phase-2 reads (16 row quads x 2 adjacent columns per warp) fall
// into distinct banks or the same word (66 = 2 mod 32 words per 4 rows), the phase-1 writes are
// contiguous.
// VecRow: cols even, `in` aligned to 2 elements, `out` 2-byte aligned -> paired loads/stores (a pair is
//         entirely inside or outside the matrix). VecT: rows % 4 == 0, outT 4-byte aligned -> 4-byte
//         stores. Otherwise element by element, every index bounds-checked.
constexpr int kTile = 64;
constexpr int kCastThreads = 256;
constexpr int kCastWarps = kCastThreads / 32;
constexpr int kTileStride = kTile + 2;

template <typename T, bool VecRow, bool VecT, __nv_fp8_interpretation_t F>
__global__ void __launch_bounds__(kCastThreads)
    castTransposeFp8Kernel(uint8_t* __restrict__ out, uint8_t* __restrict__ outT, float* __restrict__ amax,
                           const T* __restrict__ in, int rows, int cols, int tilesC,
                           const float* __restrict__ scalePtr) {
  __shared__ __align__(16) uint8_t tile[kTile * kTileStride];
  const int tileR = int(blockIdx.x) / tilesC, tileC = int(blockIdx.x) % tilesC;
  const int row0 = tileR * kTile, col0 = tileC * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool convert = out != nullptr || outT != nullptr;
  const float scale = convert ? *scalePtr : 1.f;

  // Phase 1: all loads first (8 independent loads in flight per thread); elements outside the matrix
  // read as 0, which changes neither the amax nor anything written.
  constexpr int kPasses = kTile / kCastWarps;
  const int c = col0 + 2 * lane;
  float2 v[kPasses];
#pragma unroll
  for (int p = 0; p < kPasses; p++) {
    const int r = row0 + warp + p * kCastWarps;
    v[p] = make_float2(0.f, 0.f);
    if (r < rows) {
      const T* src = in + size_t(r) * size_t(cols) + c;
      if (VecRow) {
        if (c < cols) v[p] = Load<T>::two(src);
      } else {
        if (c < cols) v[p].x = Load<T>::one(src);
        if (c + 1 < cols) v[p].y = Load<T>::one(src + 1);
      }
    }
  }

  float localMax = 0.f;
#pragma unroll
  for (int p = 0; p < kPasses; p++) {
    localMax = fmaxf(localMax, fmaxf(fabsf(v[p].x), fabsf(v[p].y)));
    if (!convert) continue;
    const int rt = warp + p * kCastWarps;
    const int r = row0 + rt;
    const uint32_t q = fp8x2<F>(v[p].x * scale, v[p].y * scale);
    if (outT) *reinterpret_cast<uint16_t*>(tile + rt * kTileStride + 2 * lane) = uint16_t(q);
    if (out && r < rows) {
      uint8_t* dst = out + size_t(r) * size_t(cols) + c;
      if (VecRow) {
        if (c < cols) *reinterpret_cast<uint16_t*>(dst) = uint16_t(q);
      } else {
        if (c < cols) dst[0] = uint8_t(q);
        if (c + 1 < cols) dst[1] = uint8_t(q >> 8);
      }
    }
  }

  // Phase 2: the transposed tile.
  if (outT) {
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kTile * kTile / 4 / kCastThreads; p++) {
      const int idx = p * kCastThreads + threadIdx.x;
      const int ct = idx >> 4;         // tile column = outT row
      const int rt = (idx & 15) * 4;   // first of 4 tile rows = outT columns
      const int gc = col0 + ct, gr = row0 + rt;
      if (gc >= cols) continue;
      const uint8_t* s = tile + rt * kTileStride + ct;
      uint8_t* dst = outT + size_t(gc) * size_t(rows) + gr;
      if (VecT) {
        if (gr < rows)
          *reinterpret_cast<uint32_t*>(dst) = uint32_t(s[0]) | (uint32_t(s[kTileStride]) << 8) |
                                              (uint32_t(s[2 * kTileStride]) << 16) |
                                              (uint32_t(s[3 * kTileStride]) << 24);
      } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
          if (gr + k < rows) dst[k] = s[k * kTileStride];
      }
    }
  }

  if (amax) blockAmaxToGlobal<kCastThreads>(localMax, amax);
}

template <typename T, bool VecRow, bool VecT>
void launchCastTranspose(uint8_t* out, uint8_t* outT, float* amax, const T* in, int rows, int cols, int tilesC,
                         unsigned blocks, const float* scale, Fp8Format format, cudaStream_t s) {
  if (format == Fp8Format::E4M3)
    castTransposeFp8Kernel<T, VecRow, VecT, __NV_E4M3>
        <<<blocks, kCastThreads, 0, s>>>(out, outT, amax, in, rows, cols, tilesC, scale);
  else
    castTransposeFp8Kernel<T, VecRow, VecT, __NV_E5M2>
        <<<blocks, kCastThreads, 0, s>>>(out, outT, amax, in, rows, cols, tilesC, scale);
}

template <typename T>
std::string castTransposeImpl(uint8_t* out, uint8_t* outT, float* amax, const T* in, int rows, int cols,
                              const float* scale, Fp8Format format, void* stream) {
  const char* name = "castTransposeFp8";
  if (rows < 0 || cols < 0)
    return std::string(name) + ": bad shape " + std::to_string(rows) + " x " + std::to_string(cols);
  if (format != Fp8Format::E4M3 && format != Fp8Format::E5M2)
    return std::string(name) + ": unknown FP8 format " + std::to_string(int(format));
  if (rows == 0 || cols == 0 || (!out && !outT && !amax)) return "";
  if (!in) return std::string(name) + ": null input";
  if ((out || outT) && !scale) return std::string(name) + ": null scale";
  const long long tilesR = (rows + kTile - 1) / kTile, tilesC = (cols + kTile - 1) / kTile;
  if (tilesR * tilesC > INT_MAX) return std::string(name) + ": matrix too large";
  const bool vecRow = cols % 2 == 0 && alignedTo(in, 2 * sizeof(T)) && (!out || alignedTo(out, 2));
  const bool vecT = rows % 4 == 0 && (!outT || alignedTo(outT, 4));
  const unsigned blocks = unsigned(tilesR * tilesC);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int tc = int(tilesC);
  if (vecRow && vecT)
    launchCastTranspose<T, true, true>(out, outT, amax, in, rows, cols, tc, blocks, scale, format, s);
  else if (vecRow)
    launchCastTranspose<T, true, false>(out, outT, amax, in, rows, cols, tc, blocks, scale, format, s);
  else if (vecT)
    launchCastTranspose<T, false, true>(out, outT, amax, in, rows, cols, tc, blocks, scale, format, s);
  else
    launchCastTranspose<T, false, false>(out, outT, amax, in, rows, cols, tc, blocks, scale, format, s);
  return launchError(name);
}

// ---- amax alone ------------------------------------------------------------------------------------
// Grid-stride over 16-byte loads (8 BF16) when `in` is 16-byte aligned, then the scalar tail.
constexpr int kAmaxThreads = 256;
constexpr size_t kAmaxMaxBlocks = 2048;  // one wave of 256-thread blocks on the largest GPUs, roughly

template <bool Vec>
__global__ void __launch_bounds__(kAmaxThreads) amaxBf16Kernel(float* __restrict__ amax, const uint16_t* __restrict__ in,
                                                            size_t n) {
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  float m = 0.f;
  size_t done = 0;
  if (Vec) {
    const size_t n8 = n / 8;
    const uint4* in8 = reinterpret_cast<const uint4*>(in);
    for (size_t i = tid; i < n8; i += stride) {
      const uint4 w = in8[i];
      // |x| of a BF16 value is its bits without the sign; as a float it is exact.
      m = fmaxf(m, fmaxf(fabsf(__uint_as_float(w.x << 16)), fabsf(__uint_as_float(w.x & 0xffff0000u))));
      m = fmaxf(m, fmaxf(fabsf(__uint_as_float(w.y << 16)), fabsf(__uint_as_float(w.y & 0xffff0000u))));
      m = fmaxf(m, fmaxf(fabsf(__uint_as_float(w.z << 16)), fabsf(__uint_as_float(w.z & 0xffff0000u))));
      m = fmaxf(m, fmaxf(fabsf(__uint_as_float(w.w << 16)), fabsf(__uint_as_float(w.w & 0xffff0000u))));
    }
    done = n8 * 8;
  }
  for (size_t i = done + tid; i < n; i += stride) m = fmaxf(m, fabsf(__uint_as_float(uint32_t(in[i]) << 16)));
  blockAmaxToGlobal<kAmaxThreads>(m, amax);
}

// ---- BF16 transpose ------------------------------------------------------------------------------------
// One block per 64 x 64 tile, 256 threads. Phase 1: warp w reads tile rows w, w+8, ...; lane l columns
// 2l, 2l+1 (128 B per warp). Phase 2: warp k writes outT row (tile column) 8p + k: lane j writes tile rows
// 2j, 2j+1 as one 4-byte word (128 B per warp). Shared stride 65 elements: the phase-2 column reads hit 32
// distinct banks. VecRow: cols even and `in` 4-byte aligned; VecT: rows even and `out` 4-byte aligned.
constexpr int kTrThreads = 256;
constexpr int kTrStride = kTile + 1;

template <bool VecRow, bool VecT>
__global__ void __launch_bounds__(kTrThreads)
    transposeBf16Kernel(uint16_t* __restrict__ out, const uint16_t* __restrict__ in, int rows, int cols, int tilesC) {
  __shared__ uint16_t tile[kTile * kTrStride];
  const int tileR = int(blockIdx.x) / tilesC, tileC = int(blockIdx.x) % tilesC;
  const int row0 = tileR * kTile, col0 = tileC * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  constexpr int kWarps = kTrThreads / 32;

  const int c = col0 + 2 * lane;
#pragma unroll
  for (int p = 0; p < kTile / kWarps; p++) {
    const int rt = warp + p * kWarps;
    const int r = row0 + rt;
    uint16_t a = 0, b = 0;
    if (r < rows) {
      const uint16_t* src = in + size_t(r) * size_t(cols) + c;
      if (VecRow) {
        if (c < cols) {
          const uint32_t w = *reinterpret_cast<const uint32_t*>(src);
          a = uint16_t(w);
          b = uint16_t(w >> 16);
        }
      } else {
        if (c < cols) a = src[0];
        if (c + 1 < cols) b = src[1];
      }
    }
    tile[rt * kTrStride + 2 * lane] = a;
    tile[rt * kTrStride + 2 * lane + 1] = b;
  }
  __syncthreads();
#pragma unroll
  for (int p = 0; p < kTile / kWarps; p++) {
    const int ct = warp + p * kWarps;  // tile column = out row
    const int gc = col0 + ct;
    const int gr = row0 + 2 * lane;     // out columns gr, gr + 1
    if (gc >= cols) continue;
    const uint16_t a = tile[(2 * lane) * kTrStride + ct];
    const uint16_t b = tile[(2 * lane + 1) * kTrStride + ct];
    uint16_t* dst = out + size_t(gc) * size_t(rows) + gr;
    if (VecT) {
      if (gr < rows) *reinterpret_cast<uint32_t*>(dst) = uint32_t(a) | (uint32_t(b) << 16);
    } else {
      if (gr < rows) dst[0] = a;
      if (gr + 1 < rows) dst[1] = b;
    }
  }
}

}  // namespace

std::string castTransposeFp8(uint8_t* out, uint8_t* outT, float* amax, const bf16* in, int rows, int cols,
                             const float* scale, Fp8Format format, void* stream) {
  return castTransposeImpl<uint16_t>(out, outT, amax, in, rows, cols, scale, format, stream);
}

std::string castTransposeFp8(uint8_t* out, uint8_t* outT, float* amax, const float* in, int rows, int cols,
                             const float* scale, Fp8Format format, void* stream) {
  return castTransposeImpl<float>(out, outT, amax, in, rows, cols, scale, format, stream);
}

std::string amaxBf16(float* amax, const bf16* in, size_t n, void* stream) {
  if (n == 0) return "";
  if (!amax || !in) return "amaxBf16: null pointer";
  const bool vec = alignedTo(in, 16);
  const size_t work = vec ? (n / 8 > 0 ? n / 8 : n) : n;
  size_t blocks = (work + kAmaxThreads - 1) / kAmaxThreads;
  if (blocks > kAmaxMaxBlocks) blocks = kAmaxMaxBlocks;
  if (blocks == 0) blocks = 1;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vec)
    amaxBf16Kernel<true><<<unsigned(blocks), kAmaxThreads, 0, s>>>(amax, in, n);
  else
    amaxBf16Kernel<false><<<unsigned(blocks), kAmaxThreads, 0, s>>>(amax, in, n);
  return launchError("amaxBf16");
}

std::string transposeBf16(bf16* out, const bf16* in, int rows, int cols, void* stream) {
  if (rows < 0 || cols < 0)
    return "transposeBf16: bad shape " + std::to_string(rows) + " x " + std::to_string(cols);
  if (rows == 0 || cols == 0) return "";
  if (!out || !in) return "transposeBf16: null pointer";
  const long long tilesR = (rows + kTile - 1) / kTile, tilesC = (cols + kTile - 1) / kTile;
  if (tilesR * tilesC > INT_MAX) return "transposeBf16: matrix too large";
  const bool vecRow = cols % 2 == 0 && alignedTo(in, 4);
  const bool vecT = rows % 2 == 0 && alignedTo(out, 4);
  const unsigned blocks = unsigned(tilesR * tilesC);
  const int tc = int(tilesC);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (vecRow && vecT)
    transposeBf16Kernel<true, true><<<blocks, kTrThreads, 0, s>>>(out, in, rows, cols, tc);
  else if (vecRow)
    transposeBf16Kernel<true, false><<<blocks, kTrThreads, 0, s>>>(out, in, rows, cols, tc);
  else if (vecT)
    transposeBf16Kernel<false, true><<<blocks, kTrThreads, 0, s>>>(out, in, rows, cols, tc);
  else
    transposeBf16Kernel<false, false><<<blocks, kTrThreads, 0, s>>>(out, in, rows, cols, tc);
  return launchError("transposeBf16");
}

}  // namespace ko::cuda
