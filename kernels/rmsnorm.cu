// rmsnorm.cu — RMSNorm forward and backward over groups of `dim` BF16 values (twins: ko::rmsnormForward /
// ko::rmsnormBackward, native/rmsnorm.cpp), as HF Llama/Qwen3:
//   rstd = 1/sqrt(mean(x^2) + eps),  y = w * (x * rstd)
//   dx = rstd*(w*dy) - x * (rstd^3/dim * sum(dy*w*x)),   dw += sum over groups of dy * (x*rstd)
// Group (r, h) of x starts at x + r*xStride + h*dim: heads = 1 is the per-token norm over the hidden size,
// heads = H with dim = head_dim is Qwen3's q/k norm inside the fused qkv buffer.
//
// Work split: a "team" of TEAM threads owns one group at a time. TEAM is chosen from dim alone
// (teamFor): 8 / 16 / 32 lanes of a warp for dim <= 64 / 128 / 1024 (several groups per 256-thread block,
// reductions by xor shuffles inside the team), or the whole 256-thread block for dim > 1024 (shuffles plus
// a fixed-order pass over the 8 warp sums). Within a team, lane l owns the 8-value units l, l+TEAM, ...
// (16-byte loads, when every row start is 16-byte aligned) or the single values l, l+TEAM, ... (any
// alignment). The same ownership is used in every pass, so every reduction has a fixed order.
//
// Precision: products and sums in FP32 from the BF16-decoded inputs; the per-group scalars (rstd, the
// backward coefficient) are formed in double from the FP32 sums exactly as the CPU twin forms them from
// its double sums; each output is rounded once to BF16 (RNE, bit-exact ko::bf16FromFloat).
//
// dw (backward) is deterministic without atomics, in two stages:
//   1. rmsnormBackwardKernel: block b handles a contiguous range of groups; each lane keeps the dw terms
//      of its own columns in registers (FP32, in group order); at the end the teams of the block are
//      combined in team order through shared memory and the block writes scratch[b*dim .. b*dim+dim).
//   2. rmsnormDwReduceKernel: dw[c] += float(sum over b of scratch[b*dim + c]), summed in double in a
//      fixed tree (32 strided lanes, then lane order).
// The number of partial blocks depends only on (groups, dim), so rmsnormBackwardScratchFloats can size
// the scratch without a device.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "bf16_vec.cuh"
#include "kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 256;          // every block of both kernels
constexpr int kVecPerLane = 4;         // register slots per lane, 8-value units (Vec)
constexpr int kScalarPerLane = 32;     // register slots per lane, single values (!Vec)
constexpr int kMaxBackwardDim = 8192;  // = 256 lanes * 4 units * 8 values = 256 * 32
constexpr int kMaxPartials = 1024;     // stage-1 blocks (rows of scratch) at most
constexpr int kReduceCols = 32, kReduceLanes = 32;  // stage-2 block: 32 columns x 32 partial lanes

__device__ __forceinline__ void load8(const float* p, float* f) {  // p 16-byte aligned
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// Sum over the TEAM lanes of a team; every lane of the team gets the same bits. TEAM <= 32: xor
// butterfly inside the warp (all 32 lanes must call it). TEAM == kThreads: butterfly in each warp, then
// every thread adds the 8 warp sums in warp order (all threads of the block must call it).
template <int TEAM>
__device__ __forceinline__ float teamSum(float v, float* red) {
#pragma unroll
  for (int off = (TEAM < 32 ? TEAM : 32) / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  if constexpr (TEAM > 32) {
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) red[warp] = v;
    __syncthreads();
    float t = 0.f;
#pragma unroll
    for (int i = 0; i < TEAM / 32; i++) t += red[i];
    __syncthreads();  // red is reused by the next call
    return t;
  } else {
    return v;
  }
}

// rstd from the FP32 sum of squares, formed as the twin does from its double sum.
__device__ __forceinline__ float rstdFromSum(float sumSq, int dim, float eps) {
  const double meanSq = double(sumSq) / dim;
  return float(1.0 / sqrt(meanSq + double(eps)));
}

// ---- forward --------------------------------------------------------------------------------------
// grid = ceil(groups / (kThreads / TEAM)); team t of block b owns group b*teams + t.
template <int TEAM, bool Vec>
__global__ void __launch_bounds__(kThreads)
    rmsnormForwardKernel(uint16_t* y, float* rstd, const uint16_t* x, const float* __restrict__ w, int groups,
                         int heads, int dim, int xStride, int yStride, float eps) {
  __shared__ float red[kThreads / 32];
  constexpr int kTeams = kThreads / TEAM;
  const int lane = threadIdx.x % TEAM;
  const int g = blockIdx.x * kTeams + threadIdx.x / TEAM;
  const bool active = g < groups;  // inactive lanes still take part in the shuffles
  const int r = active ? g / heads : 0, h = active ? g % heads : 0;
  const uint16_t* xg = x + size_t(r) * xStride + size_t(h) * dim;
  uint16_t* yg = y + size_t(r) * yStride + size_t(h) * dim;

  float ss = 0.f;  // x^2 of a BF16 value is exact in FP32; only the sum rounds
  if (active) {
    if constexpr (Vec) {
      for (int v = lane; v < dim / 8; v += TEAM) {
        float f[8];
        unpack8(reinterpret_cast<const uint4*>(xg)[v], f);
#pragma unroll
        for (int j = 0; j < 8; j++) ss += f[j] * f[j];
      }
    } else {
      for (int c = lane; c < dim; c += TEAM) {
        const float f = bf16ToFloat(xg[c]);
        ss += f * f;
      }
    }
  }
  ss = teamSum<TEAM>(ss, red);
  if (!active) return;  // no block-wide barrier follows
  const float s = rstdFromSum(ss, dim, eps);
  if (lane == 0 && rstd) rstd[g] = s;

  // y = w * (x * s), re-reading x (L1-resident: this team just read it).
  if constexpr (Vec) {
    for (int v = lane; v < dim / 8; v += TEAM) {
      float f[8], wf[8];
      unpack8(reinterpret_cast<const uint4*>(xg)[v], f);
      load8(w + 8 * v, wf);
#pragma unroll
      for (int j = 0; j < 8; j++) f[j] = __fmul_rn(wf[j], __fmul_rn(f[j], s));
      reinterpret_cast<uint4*>(yg)[v] = pack8(f);
    }
  } else {
    for (int c = lane; c < dim; c += TEAM)
      yg[c] = uint16_t(bf16Bits(__fmul_rn(w[c], __fmul_rn(bf16ToFloat(xg[c]), s))));
  }
}

// ---- backward, stage 1 ----------------------------------------------------------------------------
// Block b handles groups [g0, g1) = [b*groups/nb, (b+1)*groups/nb); its teams take them round-robin.
// Each lane holds the dw terms of its own columns in acc[] (fully unrolled, so acc stays in registers).
template <int TEAM, bool Vec>
__global__ void __launch_bounds__(kThreads, 4)
    rmsnormBackwardKernel(uint16_t* dx, float* __restrict__ partial, const uint16_t* dy, const uint16_t* x,
                          const float* __restrict__ w, const float* __restrict__ rstd, int groups, int heads,
                          int dim, int xStride, int yStride) {
  constexpr int kTeams = kThreads / TEAM;
  constexpr int kSlots = Vec ? kVecPerLane : kScalarPerLane;  // units per lane
  constexpr int kWidth = Vec ? 8 : 1;                          // values per unit
  __shared__ float red[kThreads / 32];
  extern __shared__ float teamDw[];  // [dim], only when kTeams > 1

  const int team = threadIdx.x / TEAM, lane = threadIdx.x % TEAM;
  const int units = Vec ? dim / 8 : dim;
  const int g0 = int(int64_t(blockIdx.x) * groups / gridDim.x);
  const int g1 = int(int64_t(blockIdx.x + 1) * groups / gridDim.x);

  float acc[kSlots * kWidth];
#pragma unroll
  for (int i = 0; i < kSlots * kWidth; i++) acc[i] = 0.f;

  // All lanes of a warp (all threads, for TEAM == kThreads) run the same number of iterations.
  for (int gBase = g0; gBase < g1; gBase += kTeams) {
    const int g = gBase + team;
    const bool active = g < g1;
    const int r = active ? g / heads : 0, h = active ? g % heads : 0;
    const size_t xOff = size_t(r) * xStride + size_t(h) * dim;
    const uint16_t* xg = x + xOff;
    const uint16_t* dyg = dy + size_t(r) * yStride + size_t(h) * dim;
    uint16_t* dxg = dx + xOff;

    // dot = sum dy*w*x over the group (FP32; the twin uses double).
    float dot = 0.f;
    if (active) {
#pragma unroll
      for (int k = 0; k < kSlots; k++) {
        const int u = lane + k * TEAM;
        if (u < units) {
          if constexpr (Vec) {
            float xf[8], dyf[8], wf[8];
            unpack8(reinterpret_cast<const uint4*>(xg)[u], xf);
            unpack8(reinterpret_cast<const uint4*>(dyg)[u], dyf);
            load8(w + 8 * u, wf);
#pragma unroll
            for (int j = 0; j < 8; j++) dot += __fmul_rn(__fmul_rn(dyf[j], wf[j]), xf[j]);
          } else {
            dot += __fmul_rn(__fmul_rn(bf16ToFloat(dyg[u]), w[u]), bf16ToFloat(xg[u]));
          }
        }
      }
    }
    dot = teamSum<TEAM>(dot, red);
    if (!active) continue;  // only TEAM <= 32 can get here (kTeams == 1 keeps every group active)

    const float s = rstd[g];
    const double sd = s;
    const float coef = float(sd * sd * sd * double(dot) / dim);
#pragma unroll
    for (int k = 0; k < kSlots; k++) {
      const int u = lane + k * TEAM;
      if (u < units) {
        if constexpr (Vec) {
          float xf[8], dyf[8], wf[8], out[8];
          unpack8(reinterpret_cast<const uint4*>(xg)[u], xf);
          unpack8(reinterpret_cast<const uint4*>(dyg)[u], dyf);
          load8(w + 8 * u, wf);
#pragma unroll
          for (int j = 0; j < 8; j++) {
            out[j] = __fsub_rn(__fmul_rn(s, __fmul_rn(wf[j], dyf[j])), __fmul_rn(xf[j], coef));
            acc[k * 8 + j] = __fadd_rn(acc[k * 8 + j], __fmul_rn(dyf[j], __fmul_rn(xf[j], s)));
          }
          reinterpret_cast<uint4*>(dxg)[u] = pack8(out);
        } else {
          const float xf = bf16ToFloat(xg[u]), dyf = bf16ToFloat(dyg[u]);
          dxg[u] = uint16_t(bf16Bits(__fsub_rn(__fmul_rn(s, __fmul_rn(w[u], dyf)), __fmul_rn(xf, coef))));
          acc[k] = __fadd_rn(acc[k], __fmul_rn(dyf, __fmul_rn(xf, s)));
        }
      }
    }
  }

  float* out = partial + size_t(blockIdx.x) * dim;
  if constexpr (kTeams == 1) {
    // One team: each thread writes its own columns.
#pragma unroll
    for (int k = 0; k < kSlots; k++) {
      const int u = lane + k * TEAM;
      if (u < units) {
#pragma unroll
        for (int j = 0; j < kWidth; j++) out[u * kWidth + j] = acc[k * kWidth + j];
      }
    }
  } else {
    // Combine the teams in team order: team 0 stores, then teams 1, 2, ... add, one per barrier.
    for (int t = 0; t < kTeams; t++) {
      if (team == t) {
#pragma unroll
        for (int k = 0; k < kSlots; k++) {
          const int u = lane + k * TEAM;
          if (u < units) {
#pragma unroll
            for (int j = 0; j < kWidth; j++) {
              const int c = u * kWidth + j;
              teamDw[c] = t == 0 ? acc[k * kWidth + j] : __fadd_rn(teamDw[c], acc[k * kWidth + j]);
            }
          }
        }
      }
      __syncthreads();
    }
    for (int c = threadIdx.x; c < dim; c += kThreads) out[c] = teamDw[c];
  }
}

// ---- backward, stage 2 ----------------------------------------------------------------------------
// block (kReduceCols, kReduceLanes); grid = ceil(dim / kReduceCols). Lane l sums partial rows
// l, l + 32, ... of its column in double; lane 0 then adds the 32 lane sums in lane order.
__global__ void __launch_bounds__(kReduceCols* kReduceLanes)
    rmsnormDwReduceKernel(float* __restrict__ dw, const float* __restrict__ partial, int nPartials, int dim) {
  __shared__ double sums[kReduceLanes][kReduceCols + 1];
  const int c = blockIdx.x * kReduceCols + threadIdx.x;
  double a = 0.0;
  if (c < dim)
    for (int b = threadIdx.y; b < nPartials; b += kReduceLanes) a += double(partial[size_t(b) * dim + c]);
  sums[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && c < dim) {
    double t = 0.0;
    for (int l = 0; l < kReduceLanes; l++) t += sums[l][threadIdx.x];
    dw[c] = dw[c] + float(t);  // as the twin: dw[c] += float(double sum)
  }
}

// ---- host helpers ---------------------------------------------------------------------------------

int teamFor(int dim) {
  if (dim > 1024) return kThreads;
  const int units = (dim + 7) / 8;
  return units <= 8 ? 8 : units <= 16 ? 16 : 32;
}

int partialBlocks(int groups, int dim) {
  const int teams = kThreads / teamFor(dim);
  const int64_t blocks = (int64_t(groups) + teams - 1) / teams;
  return int(blocks < kMaxPartials ? blocks : kMaxPartials);
}


std::string launchError(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  return std::string(kernel) + ": launch failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

// Shared argument checks; "" when fine. (rows == 0 is handled by the callers as a no-op.)
std::string checkShape(const char* name, int rows, int heads, int dim, int xStride, int yStride) {
  const std::string n(name);
  if (rows < 0) return n + ": rows must be >= 0, got " + std::to_string(rows);
  if (heads <= 0) return n + ": heads must be > 0, got " + std::to_string(heads);
  if (dim <= 0) return n + ": dim must be > 0, got " + std::to_string(dim);
  const int64_t width = int64_t(heads) * dim;
  if (xStride < width || yStride < width)
    return n + ": strides (" + std::to_string(xStride) + ", " + std::to_string(yStride) + ") must be >= heads*dim (" +
           std::to_string(width) + ")";
  if (int64_t(rows) * heads > INT32_MAX) return n + ": rows*heads too large";
  return "";
}

template <int TEAM>
void launchForward(bool vec, unsigned blocks, cudaStream_t s, uint16_t* y, float* rstd, const uint16_t* x,
                   const float* w, int groups, int heads, int dim, int xStride, int yStride, float eps) {
  if (vec)
    rmsnormForwardKernel<TEAM, true><<<blocks, kThreads, 0, s>>>(y, rstd, x, w, groups, heads, dim, xStride,
                                                                 yStride, eps);
  else
    rmsnormForwardKernel<TEAM, false><<<blocks, kThreads, 0, s>>>(y, rstd, x, w, groups, heads, dim, xStride,
                                                                  yStride, eps);
}

template <int TEAM>
void launchBackward(bool vec, unsigned blocks, cudaStream_t s, uint16_t* dx, float* partial, const uint16_t* dy,
                    const uint16_t* x, const float* w, const float* rstd, int groups, int heads, int dim,
                    int xStride, int yStride) {
  const size_t smem = kThreads / TEAM > 1 ? size_t(dim) * sizeof(float) : 0;
  if (vec)
    rmsnormBackwardKernel<TEAM, true><<<blocks, kThreads, smem, s>>>(dx, partial, dy, x, w, rstd, groups, heads, dim,
                                                                     xStride, yStride);
  else
    rmsnormBackwardKernel<TEAM, false><<<blocks, kThreads, smem, s>>>(dx, partial, dy, x, w, rstd, groups, heads,
                                                                      dim, xStride, yStride);
}

}  // namespace

std::string rmsnormForward(bf16* y, float* rstd, const bf16* x, const float* w, int rows, int heads, int dim,
                           int xStride, int yStride, float eps, void* stream) {
  std::string err = checkShape("rmsnormForward", rows, heads, dim, xStride, yStride);
  if (!err.empty()) return err;
  if (!(eps >= 0.f) || !std::isfinite(eps)) return "rmsnormForward: eps must be finite and >= 0";
  if (rows == 0) return "";
  if (!y || !x || !w) return "rmsnormForward: null pointer";  // rstd may be null (not stored)
  const int groups = rows * heads;
  const bool vec = dim % 8 == 0 && xStride % 8 == 0 && yStride % 8 == 0 && aligned16(x) && aligned16(y) &&
                   aligned16(w);
  const int team = teamFor(dim);
  const unsigned blocks = unsigned((int64_t(groups) + kThreads / team - 1) / (kThreads / team));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (team) {
    case 8: launchForward<8>(vec, blocks, s, y, rstd, x, w, groups, heads, dim, xStride, yStride, eps); break;
    case 16: launchForward<16>(vec, blocks, s, y, rstd, x, w, groups, heads, dim, xStride, yStride, eps); break;
    case 32: launchForward<32>(vec, blocks, s, y, rstd, x, w, groups, heads, dim, xStride, yStride, eps); break;
    default: launchForward<kThreads>(vec, blocks, s, y, rstd, x, w, groups, heads, dim, xStride, yStride, eps);
  }
  return launchError("rmsnormForward");
}

size_t rmsnormBackwardScratchFloats(int groups, int dim) {
  if (groups <= 0 || dim <= 0) return 0;
  return size_t(partialBlocks(groups, dim)) * size_t(dim);
}

std::string rmsnormBackward(bf16* dx, float* dw, const bf16* dy, const bf16* x, const float* w, const float* rstd,
                            int rows, int heads, int dim, int xStride, int yStride, float* scratch, void* stream) {
  std::string err = checkShape("rmsnormBackward", rows, heads, dim, xStride, yStride);
  if (!err.empty()) return err;
  if (dim > kMaxBackwardDim)
    return "rmsnormBackward: dim " + std::to_string(dim) + " > " + std::to_string(kMaxBackwardDim) + " is not supported";
  if (rows == 0) return "";
  if (!dx || !dw || !dy || !x || !w || !rstd || !scratch) return "rmsnormBackward: null pointer";
  const int groups = rows * heads;
  const bool vec = dim % 8 == 0 && xStride % 8 == 0 && yStride % 8 == 0 && aligned16(x) && aligned16(dx) &&
                   aligned16(dy) && aligned16(w);
  const int team = teamFor(dim);
  const int nb = partialBlocks(groups, dim);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (team) {
    case 8: launchBackward<8>(vec, nb, s, dx, scratch, dy, x, w, rstd, groups, heads, dim, xStride, yStride); break;
    case 16: launchBackward<16>(vec, nb, s, dx, scratch, dy, x, w, rstd, groups, heads, dim, xStride, yStride); break;
    case 32: launchBackward<32>(vec, nb, s, dx, scratch, dy, x, w, rstd, groups, heads, dim, xStride, yStride); break;
    default:
      launchBackward<kThreads>(vec, nb, s, dx, scratch, dy, x, w, rstd, groups, heads, dim, xStride, yStride);
  }
  err = launchError("rmsnormBackward (stage 1)");
  if (!err.empty()) return err;
  const dim3 block(kReduceCols, kReduceLanes);
  rmsnormDwReduceKernel<<<unsigned((dim + kReduceCols - 1) / kReduceCols), block, 0, s>>>(dw, scratch, nb, dim);
  return launchError("rmsnormBackward (dw reduction)");
}

}  // namespace ko::cuda
