// attention_bwd.cu — causal grouped-query flash attention, backward, BF16 tensor cores (mma.sync
// m16n8k16) with FP32 accumulation. Deterministic: no atomics; every output element is written by one
// thread of one block, and sums run in a fixed order. Twin: ko::attentionBackward (native/attention.cpp).
//
// With P = exp(scale * S - lse) recomputed from the saved lse (S = Q K^T) and
// delta_i = sum_d dO_id O_id (= sum_j P_ij dP_ij):
//   dP = dO V^T,  dS = P * (dP - delta),  dV = P^T dO,  dK = scale * dS^T Q,  dQ = scale * dS K.
// Three kernels, all on `stream`:
//   1. attentionDeltaKernel: delta [B, Hq, T] (FP32, in the caller's scratch), one warp per row.
//   2. attentionDkDvKernel: one block per (batch, KV head, block of 64 keys). Warp w owns 16 keys and
//      accumulates their dK and dV rows in registers over every query head of the GQA group and every
//      query block at or right of the keys (causal), with Q, dO, lse and delta tiles double buffered.
//      It works on transposed scores, S^T = K Q^T, so the key rows sit in the accumulator rows.
//   3. attentionDqKernel: one block per (batch, query head, block of 64 queries); warp w owns 16 query
//      rows and accumulates dQ over the key blocks left of and on the diagonal (K, V double buffered).
// P and dS are rounded to BF16 for the tensor-core products, as FlashAttention does.
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "attention_common.cuh"
#include "kernels.h"

namespace ko::cuda::attn {

struct BwdParams {
  bf16raw* dq;
  bf16raw* dk;
  bf16raw* dv;
  const bf16raw* dout;
  const bf16raw* q;
  const bf16raw* k;
  const bf16raw* v;
  const float* lse;
  const float* delta;
  int T, Hq, Hkv;
  int qStride, kvStride;
  int numBlocks;    // query blocks (dQ kernel) or key blocks (dK/dV kernel) along T
  float scale;      // 1/sqrt(D)
  float scaleLog2;  // scale * log2(e)
  bool vec;         // every BF16 pointer and stride allows 16-byte accesses
};

// ---- 1. delta = rowsum(dO * O) ---------------------------------------------------------------------

constexpr int kDeltaWarps = 8;

// Row r of out/dout ([B, T, Hq, D] contiguous) is (b, t, h) with r = (b * T + t) * Hq + h.
__global__ void __launch_bounds__(kDeltaWarps * 32)
    attentionDeltaKernel(float* delta, const bf16raw* dout, const bf16raw* out, int T, int Hq, int D, int rows) {
  const int r = blockIdx.x * kDeltaWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // whole warps leave together (the shuffles below need all 32 lanes)
  const bf16raw* o = out + size_t(r) * D;
  const bf16raw* dO = dout + size_t(r) * D;
  float sum = 0.f;
  for (int d = lane; d < D; d += 32) sum += bf16ToFloat(dO[d]) * bf16ToFloat(o[d]);
  sum = warpSum(sum);
  const int h = r % Hq;
  const int bt = r / Hq;
  const int t = bt % T, b = bt / T;
  if (lane == 0) delta[(size_t(b) * Hq + h) * T + t] = sum;
}

// ---- 2. dK, dV per (batch, KV head, key block) -----------------------------------------------------

template <int D>
struct DkDvConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBc = 16 * kWarps;         // keys per block
  static constexpr int kBr = D == 128 ? 32 : 64;  // queries per inner step (D = 128: fewer, for registers)
  static constexpr int kRow = D + kPad;
  // K, V tiles; two (Q, dO) tile pairs; two (lse, delta) vectors.
  static constexpr size_t kSmemBytes =
      size_t(2 * kBc + 4 * kBr) * kRow * sizeof(bf16raw) + size_t(4 * kBr) * sizeof(float);
};

template <int D>
__global__ void __launch_bounds__(DkDvConfig<D>::kThreads) attentionDkDvKernel(const BwdParams p) {
  using C = DkDvConfig<D>;
  constexpr int kBr = C::kBr, kBc = C::kBc, kRow = C::kRow;
  constexpr int kKSteps = D / 16;  // k-steps of S^T = K Q^T and dP^T = V dO^T
  constexpr int kSTiles = kBr / 8;  // n8 tiles of S^T (query columns)
  constexpr int kDTiles = D / 8;    // n8 tiles of dK, dV

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;

  const int bg = blockIdx.x;  // b * Hkv + kvHead
  const int b = bg / p.Hkv, kvHead = bg % p.Hkv;
  const int rep = p.Hq / p.Hkv;
  const int T = p.T;
  const int k0 = int(blockIdx.y) * kBc;
  const int kValid = min(kBc, T - k0);
  const size_t outStride = size_t(p.Hq) * D;  // row stride of dout

  bf16raw* Ks = reinterpret_cast<bf16raw*>(dynamicSmem());
  bf16raw* Vs = Ks + kBc * kRow;
  bf16raw* Qs = Vs + kBc * kRow;       // [2][kBr][kRow]
  bf16raw* dOs = Qs + 2 * kBr * kRow;  // [2][kBr][kRow]
  float* lseS = reinterpret_cast<float*>(dOs + 2 * kBr * kRow);  // [2][kBr]
  float* deltaS = lseS + 2 * kBr;                                  // [2][kBr]

  const size_t kvOff = size_t(b) * T * size_t(p.kvStride) + size_t(k0) * p.kvStride + size_t(kvHead) * D;
  loadTile<kBc, D, C::kThreads>(Ks, p.k + kvOff, p.kvStride, kValid, p.vec);
  loadTile<kBc, D, C::kThreads>(Vs, p.v + kvOff, p.kvStride, kValid, p.vec);

  // Work list: the query heads of the group (outer) x the query blocks from the one holding key k0 to
  // the end (inner); queries before k0 see none of these keys.
  const int qbStart = k0 / kBr;
  const int numQB = (T + kBr - 1) / kBr - qbStart;
  const int total = rep * numQB;

  auto issue = [&](int it, int buf) {
    const int h = kvHead * rep + it / numQB;
    const int q0 = (qbStart + it % numQB) * kBr;
    const int qValid = min(kBr, T - q0);
    loadTile<kBr, D, C::kThreads>(Qs + buf * kBr * kRow,
                                  p.q + (size_t(b) * T + q0) * size_t(p.qStride) + size_t(h) * D, p.qStride, qValid,
                                  p.vec);
    loadTile<kBr, D, C::kThreads>(dOs + buf * kBr * kRow, p.dout + (size_t(b) * T + q0) * outStride + size_t(h) * D,
                                  outStride, qValid, p.vec);
    const size_t rowOff = (size_t(b) * p.Hq + h) * T + q0;
    for (int i = threadIdx.x; i < kBr; i += C::kThreads) {
      if (i < qValid) {
        cpAsync4(lseS + buf * kBr + i, p.lse + rowOff + i);
        cpAsync4(deltaS + buf * kBr + i, p.delta + rowOff + i);
      } else {
        lseS[buf * kBr + i] = INFINITY;  // P = exp(s - inf) = 0 for padded queries
        deltaS[buf * kBr + i] = 0.f;
      }
    }
  };

  issue(0, 0);
  cpAsyncCommit();  // group 0: K, V and the first query tile

  float dk[kDTiles][4], dv[kDTiles][4];
  zeroAcc(dk);
  zeroAcc(dv);
  const int kw0 = k0 + warp * 16;  // first key of this warp

  for (int it = 0; it < total; it++) {
    const int buf = it & 1;
    if (it + 1 < total) {
      issue(it + 1, buf ^ 1);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();

    const int q0 = (qbStart + it % numQB) * kBr;
    // Skip when every (key, query) pair of the warp is masked: all keys right of the last query, or
    // all keys past T (those dK/dV rows are never stored).
    if (kw0 <= q0 + kBr - 1 && kw0 < T) {
      const bf16raw* Qb = Qs + buf * kBr * kRow;
      const bf16raw* dOb = dOs + buf * kBr * kRow;
      const float* lseB = lseS + buf * kBr;
      const float* deltaB = deltaS + buf * kBr;

      // S^T = K Q^T (16 keys x kBr queries), then P^T = exp(scale * S^T - lse[query]).
      float s[kSTiles][4];
      zeroAcc(s);
      mmaABtSmem<kKSteps, kSTiles, D>(s, Ks + warp * 16 * kRow, Qb);
      const bool needMask = kw0 + 15 > q0;  // some key of the warp is right of some query
#pragma unroll
      for (int nt = 0; nt < kSTiles; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int lq = nt * 8 + 2 * t + (e & 1);  // query column within the tile
          float pe = exp2f(fmaf(s[nt][e], p.scaleLog2, -lseB[lq] * kLog2e));
          if (needMask && kw0 + g + (e >> 1) * 8 > q0 + lq) pe = 0.f;
          s[nt][e] = pe;
        }

      // dP^T = V dO^T, then dS^T = P^T * (dP^T - delta[query]) (the scale is applied to dK at the end).
      float ds[kSTiles][4];
      zeroAcc(ds);
      mmaABtSmem<kKSteps, kSTiles, D>(ds, Vs + warp * 16 * kRow, dOb);
#pragma unroll
      for (int nt = 0; nt < kSTiles; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int lq = nt * 8 + 2 * t + (e & 1);
          ds[nt][e] = s[nt][e] * (ds[nt][e] - deltaB[lq]);
        }

      // dV += P^T dO and dK += dS^T Q (k = queries; dO and Q are [query][d] tiles).
      mmaPV<kBr / 16, kDTiles, D>(dv, s, dOb);
      mmaPV<kBr / 16, kDTiles, D>(dk, ds, Qb);
    }
    __syncthreads();  // the next iteration's prefetch overwrites this buffer
  }

  // Stage through the K and V tiles (each warp only ever read its own 16 rows of them) and store.
  storeAccToSmem<kDTiles, D>(Ks, warp * 16, dk, p.scale);
  storeAccToSmem<kDTiles, D>(Vs, warp * 16, dv, 1.f);
  __syncthreads();
  storeTile<kBc, D, C::kThreads>(p.dk + kvOff, p.kvStride, Ks, kValid, p.vec);
  storeTile<kBc, D, C::kThreads>(p.dv + kvOff, p.kvStride, Vs, kValid, p.vec);
}

// ---- 3. dQ per (batch, query head, query block) ----------------------------------------------------

template <int D>
struct DqConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBr = 16 * kWarps;         // query rows per block
  static constexpr int kBc = D == 128 ? 32 : 64;  // keys per inner step (D = 128: fewer, for registers)
  static constexpr int kRow = D + kPad;
  // Q, dO tiles; two (K, V) tile pairs.
  static constexpr size_t kSmemBytes = size_t(2 * kBr + 4 * kBc) * kRow * sizeof(bf16raw);
};

template <int D>
__global__ void __launch_bounds__(DqConfig<D>::kThreads) attentionDqKernel(const BwdParams p) {
  using C = DqConfig<D>;
  constexpr int kBr = C::kBr, kBc = C::kBc, kRow = C::kRow;
  constexpr int kKSteps = D / 16;   // k-steps of S = Q K^T and dP = dO V^T
  constexpr int kSTiles = kBc / 8;  // n8 tiles of S (key columns)
  constexpr int kDTiles = D / 8;    // n8 tiles of dQ

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;

  const int qBlock = p.numBlocks - 1 - int(blockIdx.y);  // heaviest (most keys) first
  const int bh = blockIdx.x;                            // b * Hq + h
  const int b = bh / p.Hq, h = bh % p.Hq;
  const int kvHead = h / (p.Hq / p.Hkv);
  const int T = p.T;
  const int q0 = qBlock * kBr;
  const int qValid = min(kBr, T - q0);
  const size_t outStride = size_t(p.Hq) * D;

  bf16raw* Qs = reinterpret_cast<bf16raw*>(dynamicSmem());
  bf16raw* dOs = Qs + kBr * kRow;
  bf16raw* Ks = dOs + kBr * kRow;     // [2][kBc][kRow]
  bf16raw* Vs = Ks + 2 * kBc * kRow;  // [2][kBc][kRow]

  const bf16raw* kBase = p.k + size_t(b) * T * size_t(p.kvStride) + size_t(kvHead) * D;
  const bf16raw* vBase = p.v + size_t(b) * T * size_t(p.kvStride) + size_t(kvHead) * D;
  const size_t qOff = (size_t(b) * T + q0) * size_t(p.qStride) + size_t(h) * D;

  loadTile<kBr, D, C::kThreads>(Qs, p.q + qOff, p.qStride, qValid, p.vec);
  loadTile<kBr, D, C::kThreads>(dOs, p.dout + (size_t(b) * T + q0) * outStride + size_t(h) * D, outStride, qValid,
                                p.vec);
  loadTile<kBc, D, C::kThreads>(Ks, kBase, p.kvStride, min(kBc, T), p.vec);
  loadTile<kBc, D, C::kThreads>(Vs, vBase, p.kvStride, min(kBc, T), p.vec);
  cpAsyncCommit();

  // This lane's rows (g and g + 8 of the warp's 16): lse in log2 units and delta; padded rows get
  // lse = +inf so that their P (and dS) is 0.
  const int rowA = q0 + warp * 16 + g;
  float lseL2[2], deltaRow[2];
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const int row = rowA + hf * 8;
    lseL2[hf] = row < T ? p.lse[size_t(bh) * T + row] * kLog2e : INFINITY;
    deltaRow[hf] = row < T ? p.delta[size_t(bh) * T + row] : 0.f;
  }

  const int numKBlocks = (q0 + qValid - 1) / kBc + 1;
  uint32_t qFrag[kKSteps][4], doFrag[kKSteps][4];
  float dq[kDTiles][4];
  zeroAcc(dq);

  for (int j = 0; j < numKBlocks; j++) {
    const int buf = j & 1;
    if (j + 1 < numKBlocks) {
      const int kNext = (j + 1) * kBc;
      loadTile<kBc, D, C::kThreads>(Ks + (buf ^ 1) * kBc * kRow, kBase + size_t(kNext) * p.kvStride, p.kvStride,
                                    min(kBc, T - kNext), p.vec);
      loadTile<kBc, D, C::kThreads>(Vs + (buf ^ 1) * kBc * kRow, vBase + size_t(kNext) * p.kvStride, p.kvStride,
                                    min(kBc, T - kNext), p.vec);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    if (j == 0) {
      loadAFrags<kKSteps, D>(qFrag, Qs + warp * 16 * kRow);
      loadAFrags<kKSteps, D>(doFrag, dOs + warp * 16 * kRow);
    }

    const int k0 = j * kBc;
    if (k0 <= q0 + warp * 16 + 15) {  // else every key of the block is right of the warp's rows
      const bf16raw* Kb = Ks + buf * kBc * kRow;
      const bf16raw* Vb = Vs + buf * kBc * kRow;
      // S = Q K^T, P = exp(scale * S - lse), masked right of the diagonal and past T.
      float s[kSTiles][4];
      zeroAcc(s);
      mmaABt<kKSteps, kSTiles, D>(s, qFrag, Kb);
      const bool needMask = k0 + kBc - 1 > q0 + warp * 16 || k0 + kBc > T;
#pragma unroll
      for (int nt = 0; nt < kSTiles; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int hf = e >> 1;
          float pe = exp2f(fmaf(s[nt][e], p.scaleLog2, -lseL2[hf]));
          const int key = k0 + nt * 8 + 2 * t + (e & 1);
          if (needMask && (key > rowA + hf * 8 || key >= T)) pe = 0.f;
          s[nt][e] = pe;
        }
      // dP = dO V^T, dS = P * (dP - delta).
      float ds[kSTiles][4];
      zeroAcc(ds);
      mmaABt<kKSteps, kSTiles, D>(ds, doFrag, Vb);
#pragma unroll
      for (int nt = 0; nt < kSTiles; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) ds[nt][e] = s[nt][e] * (ds[nt][e] - deltaRow[e >> 1]);
      // dQ += dS K (K is a [key][d] tile: k = keys).
      mmaPV<kBc / 16, kDTiles, D>(dq, ds, Kb);
    }
    __syncthreads();  // the next iteration's prefetch overwrites this buffer
  }

  // Stage through the Q tile (each warp only read its own 16 rows) and store.
  storeAccToSmem<kDTiles, D>(Qs, warp * 16, dq, p.scale);
  __syncthreads();
  storeTile<kBr, D, C::kThreads>(p.dq + qOff, p.qStride, Qs, qValid, p.vec);
}

// ---- launch --------------------------------------------------------------------------------------------

inline std::string setSmem(const void* kernel, size_t bytes, const char* name) {
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess)
    return std::string("attentionBackward: cudaFuncSetAttribute(") + name + ", " + std::to_string(bytes) +
           " bytes of shared memory): " + cudaGetErrorString(e);
  return "";
}

template <int D>
std::string launchBackward(BwdParams p, int B, float* delta, const bf16raw* out, cudaStream_t stream) {
  using KV = DkDvConfig<D>;
  using Q = DqConfig<D>;
  // Blocks along T go on the grid's y (limit 65535).
  if ((p.T + KV::kBc - 1) / KV::kBc > 65535 || (p.T + Q::kBr - 1) / Q::kBr > 65535)
    return "attentionBackward: T = " + std::to_string(p.T) + " is too long (grid limit)";
  std::string err = setSmem(reinterpret_cast<const void*>(attentionDkDvKernel<D>), KV::kSmemBytes, "dK/dV kernel");
  if (!err.empty()) return err;
  err = setSmem(reinterpret_cast<const void*>(attentionDqKernel<D>), Q::kSmemBytes, "dQ kernel");
  if (!err.empty()) return err;

  // 1. delta (read by both kernels below).
  const int rows = B * p.T * p.Hq;  // checkShapes bounds B * Hq * T by INT32_MAX
  const unsigned deltaBlocks = unsigned((rows + kDeltaWarps - 1) / kDeltaWarps);
  attentionDeltaKernel<<<deltaBlocks, kDeltaWarps * 32, 0, stream>>>(delta, p.dout, out, p.T, p.Hq, D, rows);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return std::string("attentionBackward: delta kernel launch failed: ") + cudaGetErrorString(e);

  // 2. dK, dV.
  p.delta = delta;
  p.numBlocks = (p.T + KV::kBc - 1) / KV::kBc;
  attentionDkDvKernel<D><<<dim3(unsigned(B) * unsigned(p.Hkv), unsigned(p.numBlocks)), KV::kThreads, KV::kSmemBytes,
                           stream>>>(p);
  e = cudaGetLastError();
  if (e != cudaSuccess) return std::string("attentionBackward: dK/dV kernel launch failed: ") + cudaGetErrorString(e);

  // 3. dQ.
  p.numBlocks = (p.T + Q::kBr - 1) / Q::kBr;
  attentionDqKernel<D><<<dim3(unsigned(B) * unsigned(p.Hq), unsigned(p.numBlocks)), Q::kThreads, Q::kSmemBytes,
                         stream>>>(p);
  e = cudaGetLastError();
  if (e != cudaSuccess) return std::string("attentionBackward: dQ kernel launch failed: ") + cudaGetErrorString(e);
  return "";
}

}  // namespace ko::cuda::attn

namespace ko::cuda {

size_t attentionBackwardScratchFloats(int B, int T, int Hq, int D) {
  (void)D;  // only delta [B, Hq, T] is needed
  if (B <= 0 || T <= 0 || Hq <= 0) return 0;
  return size_t(B) * size_t(Hq) * size_t(T);
}

std::string attentionBackward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                              const bf16* q, const bf16* k, const bf16* v, int B, int T, int Hq, int Hkv, int D,
                              int qStride, int kvStride, float* scratch, void* stream) {
  const std::string shapeError = attn::checkShapes("attentionBackward", B, T, Hq, Hkv, D, qStride, kvStride);
  if (!shapeError.empty()) return shapeError;
  if (!dq || !dk || !dv || !dout || !out || !lse || !q || !k || !v || !scratch)
    return "attentionBackward: null pointer (dq, dk, dv, dout, out, lse, q, k, v and scratch are required)";

  attn::BwdParams p;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  p.dout = dout;
  p.q = q;
  p.k = k;
  p.v = v;
  p.lse = lse;
  p.delta = nullptr;  // set by launchBackward (scratch)
  p.T = T;
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.qStride = qStride;
  p.kvStride = kvStride;
  p.numBlocks = 0;
  p.scale = 1.0f / std::sqrt(float(D));
  p.scaleLog2 = p.scale * attn::kLog2e;
  p.vec = attn::aligned16(dq) && attn::aligned16(dk) && attn::aligned16(dv) && attn::aligned16(dout) &&
          attn::aligned16(q) && attn::aligned16(k) && attn::aligned16(v) && qStride % 8 == 0 && kvStride % 8 == 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (D) {
    case 32: return attn::launchBackward<32>(p, B, scratch, out, s);
    case 64: return attn::launchBackward<64>(p, B, scratch, out, s);
    default: return attn::launchBackward<128>(p, B, scratch, out, s);
  }
}

}  // namespace ko::cuda
