// attention_common.cuh — device helpers shared by attention_fwd.cu and attention_bwd.cu: the PTX
// wrappers (ldmatrix, BF16 mma.sync, cp.async, warp shuffles) and the shared-memory tile copies.
//
// Tiles live in shared memory as [rows][D + kPad] BF16: the 8-element (16-byte) pad shifts each row by
// 4 banks, so the 8 row addresses of one ldmatrix phase hit 8 distinct 16-byte bank groups (no bank
// conflicts) for D = 32, 64 and 128, and every row start stays 16-byte aligned (cp.async and ldmatrix
// need that).
//
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 fragments (PTX ISA, "Matrix Fragments for
// mma.m16n8k16 with floating point type"), with g = lane / 4 and t = lane % 4:
//   A (16x16, 4 regs of 2 BF16, low half = lower column):  a[0] = (row g,   cols 2t, 2t+1)
//                                                          a[1] = (row g+8, cols 2t, 2t+1)
//                                                          a[2] = (row g,   cols 2t+8, 2t+9)
//                                                          a[3] = (row g+8, cols 2t+8, 2t+9)
//   B (16x8, 2 regs):  b[0] = (rows 2t, 2t+1 ; col g),  b[1] = (rows 2t+8, 2t+9 ; col g)
//   C (16x8 FP32):     c[0], c[1] = (row g, cols 2t, 2t+1),  c[2], c[3] = (row g+8, cols 2t, 2t+1)
// So the C fragments of two adjacent n8 tiles (2j, 2j+1) are exactly the A fragment of the 16x16 tile
// they form, after packing pairs to BF16 (the FlashAttention-2 register trick for P·V).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels.h"

namespace ko::cuda::attn {

using bf16raw = uint16_t;

constexpr int kPad = 8;  // BF16 elements of padding per shared-memory row
constexpr float kLog2e = 1.4426950408889634f;

// ---- PTX wrappers begin (sm_80+) ------------------------------------------------------------------
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define KO_ATTN_UNSUPPORTED_ARCH 1
#endif

__device__ __forceinline__ uint32_t smemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 BF16 matrices: lane l gives the address of row (l % 8) of matrix (l / 8) (16 bytes, 16-byte
// aligned); r[j] receives matrix j, row lane/4, columns 2*(lane%4) and +1.
__device__ __forceinline__ void ldsm4(uint32_t r[4], const bf16raw* p) {
#ifndef KO_ATTN_UNSUPPORTED_ARCH
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
#else
  __trap();
#endif
}
// The same, transposed: r[j] receives rows 2*(lane%4) and +1 of matrix j, column lane/4.
__device__ __forceinline__ void ldsm4t(uint32_t r[4], const bf16raw* p) {
#ifndef KO_ATTN_UNSUPPORTED_ARCH
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
#else
  __trap();
#endif
}

// d += A(16x16) · B(16x8), BF16 inputs, FP32 accumulation.
__device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#ifndef KO_ATTN_UNSUPPORTED_ARCH
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();
#endif
}

// Two floats rounded to nearest-even BF16, `lo` in the low 16 bits (the lower column of a fragment).
__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ bf16raw bf16Bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
__device__ __forceinline__ float bf16ToFloat(bf16raw x) { return __uint_as_float(uint32_t(x) << 16); }

// 16-byte asynchronous global -> shared copy (both addresses 16-byte aligned), cached in L2 only.
__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem) {
#ifndef KO_ATTN_UNSUPPORTED_ARCH
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smemAddr(smem)), "l"(gmem));
#else
  __trap();
#endif
}
// 4-byte asynchronous copy (both addresses 4-byte aligned).
__device__ __forceinline__ void cpAsync4(void* smem, const void* gmem) {
#ifndef KO_ATTN_UNSUPPORTED_ARCH
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smemAddr(smem)), "l"(gmem));
#else
  __trap();
#endif
}
__device__ __forceinline__ void cpAsyncCommit() {
#ifndef KO_ATTN_UNSUPPORTED_ARCH
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
#ifndef KO_ATTN_UNSUPPORTED_ARCH
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

__device__ __forceinline__ float shflXor(float v, int laneMask) { return __shfl_xor_sync(0xffffffffu, v, laneMask); }

// The dynamic shared memory of the block (16-byte aligned at least).
__device__ __forceinline__ unsigned char* dynamicSmem() {
  extern __shared__ __align__(16) unsigned char koAttnSmem[];
  return koAttnSmem;
}
// ---- PTX wrappers end -----------------------------------------------------------------------------

// Max / sum over the 4 lanes of a quad (the lanes holding one accumulator row).
__device__ __forceinline__ float quadMax(float v) {
  v = fmaxf(v, shflXor(v, 1));
  return fmaxf(v, shflXor(v, 2));
}
__device__ __forceinline__ float quadSum(float v) {
  v += shflXor(v, 1);
  return v + shflXor(v, 2);
}
__device__ __forceinline__ float warpSum(float v) {
  for (int m = 16; m >= 1; m >>= 1) v += shflXor(v, m);
  return v;
}

// Copies a ROWS x D BF16 tile from global memory (row r at src + r * stride) into shared memory
// (row stride D + kPad). Rows >= validRows are zero-filled: padded keys/values/queries must be finite
// (0 * NaN would poison P·V even where P is 0). vec: 16-byte cp.async, which needs src and stride
// 16-byte aligned (checked on the host); otherwise element by element (synchronous, any alignment).
// Either way the tile is ready after cpAsyncWait + __syncthreads.
template <int ROWS, int D, int NTHREADS>
__device__ __forceinline__ void loadTile(bf16raw* dst, const bf16raw* src, size_t stride, int validRows, bool vec) {
  static_assert(D % 8 == 0, "D must be a multiple of 8");
  if (vec) {
    constexpr int kChunksPerRow = D / 8;
    constexpr int kChunks = ROWS * kChunksPerRow;
    for (int c = threadIdx.x; c < kChunks; c += NTHREADS) {
      const int r = c / kChunksPerRow;
      const int col = (c % kChunksPerRow) * 8;
      bf16raw* d = dst + r * (D + kPad) + col;
      if (r < validRows)
        cpAsync16(d, src + size_t(r) * stride + col);
      else
        *reinterpret_cast<uint4*>(d) = make_uint4(0u, 0u, 0u, 0u);
    }
  } else {
    for (int e = threadIdx.x; e < ROWS * D; e += NTHREADS) {
      const int r = e / D;
      const int col = e % D;
      dst[r * (D + kPad) + col] = r < validRows ? src[size_t(r) * stride + col] : bf16raw(0);
    }
  }
}

// Copies rows [0, validRows) of a ROWS x D shared tile (row stride D + kPad) to global memory (row r at
// dst + r * stride); only those D columns are written. vec: 16-byte stores (dst and stride 16-byte
// aligned), else element by element. Call after a __syncthreads that makes the tile complete.
template <int ROWS, int D, int NTHREADS>
__device__ __forceinline__ void storeTile(bf16raw* dst, size_t stride, const bf16raw* src, int validRows, bool vec) {
  if (vec) {
    constexpr int kChunksPerRow = D / 8;
    const int chunks = validRows * kChunksPerRow;
    for (int c = threadIdx.x; c < chunks; c += NTHREADS) {
      const int r = c / kChunksPerRow;
      const int col = (c % kChunksPerRow) * 8;
      *reinterpret_cast<uint4*>(dst + size_t(r) * stride + col) =
          *reinterpret_cast<const uint4*>(src + r * (D + kPad) + col);
    }
  } else {
    for (int e = threadIdx.x; e < validRows * D; e += NTHREADS) {
      const int r = e / D;
      const int col = e % D;
      dst[size_t(r) * stride + col] = src[r * (D + kPad) + col];
    }
  }
}

// Writes a warp's 16 x (8 * NT) FP32 accumulator (times `mul`) as BF16 into rows row0.. of a shared
// tile with row stride D + kPad (each lane stores its 2-element pairs as one 32-bit word).
template <int NT, int D>
__device__ __forceinline__ void storeAccToSmem(bf16raw* tile, int row0, const float (&acc)[NT][4], float mul) {
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
    const int col = nt * 8 + 2 * t;
    *reinterpret_cast<uint32_t*>(tile + (row0 + g) * (D + kPad) + col) = packBf16(acc[nt][0] * mul, acc[nt][1] * mul);
    *reinterpret_cast<uint32_t*>(tile + (row0 + g + 8) * (D + kPad) + col) =
        packBf16(acc[nt][2] * mul, acc[nt][3] * mul);
  }
}

// ---- warp-level products over shared tiles (row stride D + kPad) ----------------------------------
//
// acc[16 x 8*NT] += A[16 rows at aRows, K = 16*KSTEPS columns] · B^T where B is [8*NT rows at bRows][K]
// (both "K-contiguous", i.e. S = Q·K^T with Q and K stored as [token][d]).
// A comes from registers (aFrag[KSTEPS][4]) — see loadAFrags.
template <int KSTEPS, int NT, int D>
__device__ __forceinline__ void mmaABt(float (&acc)[NT][4], const uint32_t (&aFrag)[KSTEPS][4], const bf16raw* bRows) {
  static_assert(NT % 2 == 0, "NT must be even");
  const int lane = threadIdx.x & 31;
  // x4 load of B for two n8 tiles: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
  // (n 8-15, k 8-15) -> b[0], b[1] of tile 2np and b[0], b[1] of tile 2np+1.
  const int bRow = (lane >> 4) * 8 + (lane & 7);
  const int bCol = ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ks++) {
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
      uint32_t b[4];
      ldsm4(b, bRows + (np * 16 + bRow) * (D + kPad) + ks * 16 + bCol);
      mma16816(acc[2 * np], aFrag[ks], b[0], b[1]);
      mma16816(acc[2 * np + 1], aFrag[ks], b[2], b[3]);
    }
  }
}

// The same product with A read from shared memory one k-step at a time (A rows at aRows), for the
// backward kernels whose registers are taken by the dK/dV accumulators.
template <int KSTEPS, int NT, int D>
__device__ __forceinline__ void mmaABtSmem(float (&acc)[NT][4], const bf16raw* aRows, const bf16raw* bRows) {
  static_assert(NT % 2 == 0, "NT must be even");
  const int lane = threadIdx.x & 31;
  const int aRow = ((lane >> 3) & 1) * 8 + (lane & 7);
  const int aCol = (lane >> 4) * 8;
  const int bRow = (lane >> 4) * 8 + (lane & 7);
  const int bCol = ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ks++) {
    uint32_t a[4];
    ldsm4(a, aRows + aRow * (D + kPad) + ks * 16 + aCol);
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
      uint32_t b[4];
      ldsm4(b, bRows + (np * 16 + bRow) * (D + kPad) + ks * 16 + bCol);
      mma16816(acc[2 * np], a, b[0], b[1]);
      mma16816(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// A fragments of a 16 x (16*KSTEPS) block of a shared tile (rows aRows..aRows+15, columns from 0):
// matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a[0..3].
template <int KSTEPS, int D>
__device__ __forceinline__ void loadAFrags(uint32_t (&aFrag)[KSTEPS][4], const bf16raw* aRows) {
  const int lane = threadIdx.x & 31;
  const int aRow = ((lane >> 3) & 1) * 8 + (lane & 7);
  const int aCol = (lane >> 4) * 8;
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ks++) ldsm4(aFrag[ks], aRows + aRow * (D + kPad) + ks * 16 + aCol);
}

// acc[16 x 8*NT] += P[16 x 16*KSTEPS] · V[16*KSTEPS rows at vRows][8*NT columns], where P is held as
// FP32 accumulator fragments p[2*KSTEPS][4] (rounded to BF16 here) and V is stored [k][n] (row-major,
// n contiguous), read with ldmatrix.trans.
template <int KSTEPS, int NT, int D>
__device__ __forceinline__ void mmaPV(float (&acc)[NT][4], const float (&p)[2 * KSTEPS][4], const bf16raw* vRows) {
  static_assert(NT % 2 == 0, "NT must be even");
  const int lane = threadIdx.x & 31;
  // x4.trans load: matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
  // -> b[0], b[1] of tile 2np and b[0], b[1] of tile 2np+1.
  const int vRow = ((lane >> 3) & 1) * 8 + (lane & 7);
  const int vCol = (lane >> 4) * 8;
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ks++) {
    uint32_t a[4];
    a[0] = packBf16(p[2 * ks][0], p[2 * ks][1]);
    a[1] = packBf16(p[2 * ks][2], p[2 * ks][3]);
    a[2] = packBf16(p[2 * ks + 1][0], p[2 * ks + 1][1]);
    a[3] = packBf16(p[2 * ks + 1][2], p[2 * ks + 1][3]);
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
      uint32_t b[4];
      ldsm4t(b, vRows + (ks * 16 + vRow) * (D + kPad) + np * 16 + vCol);
      mma16816(acc[2 * np], a, b[0], b[1]);
      mma16816(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

template <int NT>
__device__ __forceinline__ void zeroAcc(float (&acc)[NT][4]) {
#pragma unroll
  for (int i = 0; i < NT; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
}

// ---- host helpers ----------------------------------------------------------------------------------

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The shape checks of both launchers (before any pointer or CUDA call): "" or "<who>: <problem>".
inline std::string checkShapes(const char* who, int B, int T, int Hq, int Hkv, int D, int qStride, int kvStride) {
  const std::string w = std::string(who) + ": ";
  if (B <= 0 || T <= 0)
    return w + "B and T must be positive (B = " + std::to_string(B) + ", T = " + std::to_string(T) + ")";
  if (Hq <= 0 || Hkv <= 0)
    return w + "head counts must be positive (Hq = " + std::to_string(Hq) + ", Hkv = " + std::to_string(Hkv) + ")";
  if (Hq % Hkv != 0)
    return w + "Hq = " + std::to_string(Hq) + " is not a multiple of Hkv = " + std::to_string(Hkv);
  if (!attentionSupportsHeadDim(D))
    return w + "unsupported head dim D = " + std::to_string(D) + " (supported: 32, 64, 128)";
  if (int64_t(qStride) < int64_t(Hq) * D)
    return w + "qStride = " + std::to_string(qStride) + " is less than Hq * D = " + std::to_string(int64_t(Hq) * D);
  if (int64_t(kvStride) < int64_t(Hkv) * D)
    return w + "kvStride = " + std::to_string(kvStride) + " is less than Hkv * D = " +
           std::to_string(int64_t(Hkv) * D);
  if (int64_t(Hq) * D > INT32_MAX) return w + "Hq * D overflows int";
  if (int64_t(B) * Hq > INT32_MAX) return w + "B * Hq overflows int";
  if (int64_t(B) * Hq * T > INT32_MAX) return w + "B * Hq * T overflows int (too many rows for lse)";
  return "";
}

}  // namespace ko::cuda::attn
