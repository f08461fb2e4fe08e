// attention_fwd.cu — causal grouped-query flash attention, forward (FlashAttention-2 style), BF16 tensor
// cores (mma.sync m16n8k16) with FP32 accumulation and an FP32 online softmax. The T x T scores never
// leave registers. Twin: ko::attentionForward (native/attention.cpp) on the BF16 inputs.
//
// One block = 8 warps = one (batch, query head) and kBr = 128 query rows; warp w owns rows 16w..16w+15.
// The block walks the key blocks (kBc = 64 keys) left of and on the diagonal; K and V tiles are double
// buffered with cp.async so the next block loads while this one is computed:
//   S = Q K^T (Q fragments stay in registers), causal/length mask, running max m and sum l per row,
//   O = O * exp(m_old - m_new) + P V  with P rounded to BF16 for the tensor cores.
// At the end O / l is rounded to BF16 and lse = m * scale + log(l) (natural log) is saved for backward.
//
// Why 128 query rows: every block streams all the K/V tiles left of its diagonal from L2, so the L2
// traffic per FLOP halves with each doubling of kBr (at 64 rows it would approach the H100's L2
// bandwidth). Shared memory stays at 2 x (K, V) + nothing for Q: Q is copied to registers first and
// its tile (kBr = 2 kBc rows) then serves as the second K/V buffer — 70 KB at D = 128, within the
// 99 KB that sm_86/89 allow per block.
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "attention_common.cuh"
#include "kernels.h"

namespace ko::cuda::attn {

struct FwdParams {
  bf16raw* out;
  float* lse;
  const bf16raw* q;
  const bf16raw* k;
  const bf16raw* v;
  int T, Hq, Hkv;
  int qStride, kvStride;
  int numQBlocks;
  float scale;      // 1/sqrt(D)
  float scaleLog2;  // scale * log2(e): exp(scale * x) = exp2(scaleLog2 * x)
  bool vec;         // q, k, v, out and their strides allow 16-byte accesses
};

template <int D>
struct FwdConfig {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBr = 16 * kWarps;  // query rows per block
  static constexpr int kBc = 64;           // keys per inner step
  static constexpr int kRow = D + kPad;    // shared row stride (elements)
  // Region A: the Q tile, later (K, V) buffer 1; region B: (K, V) buffer 0.
  static constexpr int kRegionARows = kBr > 2 * kBc ? kBr : 2 * kBc;
  static constexpr size_t kSmemBytes = size_t(kRegionARows + 2 * kBc) * kRow * sizeof(bf16raw);
};

template <int D>
__global__ void __launch_bounds__(FwdConfig<D>::kThreads) attentionFwdKernel(const FwdParams p) {
  using C = FwdConfig<D>;
  constexpr int kBr = C::kBr, kBc = C::kBc, kRow = C::kRow;
  constexpr int kKSteps = D / 16;   // k-steps of S = Q K^T
  constexpr int kSTiles = kBc / 8;  // n8 tiles of S
  constexpr int kOTiles = D / 8;    // n8 tiles of O

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;

  // Heaviest query blocks (most keys) first.
  const int qBlock = p.numQBlocks - 1 - int(blockIdx.y);
  const int bh = blockIdx.x;  // b * Hq + h
  const int b = bh / p.Hq, h = bh % p.Hq;
  const int kvHead = h / (p.Hq / p.Hkv);
  const int T = p.T;
  const int q0 = qBlock * kBr;
  const int qValid = min(kBr, T - q0);

  const bf16raw* qBase = p.q + (size_t(b) * T + q0) * size_t(p.qStride) + size_t(h) * D;
  const bf16raw* kBase = p.k + size_t(b) * T * size_t(p.kvStride) + size_t(kvHead) * D;
  const bf16raw* vBase = p.v + size_t(b) * T * size_t(p.kvStride) + size_t(kvHead) * D;

  bf16raw* regionA = reinterpret_cast<bf16raw*>(dynamicSmem());
  bf16raw* regionB = regionA + C::kRegionARows * kRow;
  bf16raw* Qs = regionA;
  // (K, V) buffer `buf`: K at kvBuf(buf), V kBc rows after it.
  auto kvBuf = [&](int buf) { return buf == 0 ? regionB : regionA; };

  // Causal: the last query row of the block sees keys up to min(q0 + kBr, T) - 1.
  const int numKBlocks = (q0 + qValid - 1) / kBc + 1;

  loadTile<kBr, D, C::kThreads>(Qs, qBase, p.qStride, qValid, p.vec);
  loadTile<kBc, D, C::kThreads>(kvBuf(0), kBase, p.kvStride, min(kBc, T), p.vec);
  loadTile<kBc, D, C::kThreads>(kvBuf(0) + kBc * kRow, vBase, p.kvStride, min(kBc, T), p.vec);
  cpAsyncCommit();
  cpAsyncWait<0>();
  __syncthreads();
  // Q to registers; the barrier after it frees region A for the (K, V) prefetches.
  uint32_t qFrag[kKSteps][4];
  loadAFrags<kKSteps, D>(qFrag, Qs + warp * 16 * kRow);
  __syncthreads();

  float o[kOTiles][4];
  zeroAcc(o);
  // Row state of this lane's two rows (g and g + 8 of the warp's 16): running max of the raw scores
  // and the lane's partial sum of exp (the quad's 4 partial sums are added at the end).
  float mRow[2] = {-INFINITY, -INFINITY};
  float lRow[2] = {0.f, 0.f};
  const int rowA = q0 + warp * 16 + g;  // query index of fragment rows g (and rowA + 8)

  for (int j = 0; j < numKBlocks; j++) {
    const int buf = j & 1;
    if (j + 1 < numKBlocks) {
      const int kNext = (j + 1) * kBc;
      bf16raw* next = kvBuf(buf ^ 1);
      loadTile<kBc, D, C::kThreads>(next, kBase + size_t(kNext) * p.kvStride, p.kvStride, min(kBc, T - kNext),
                                    p.vec);
      loadTile<kBc, D, C::kThreads>(next + kBc * kRow, vBase + size_t(kNext) * p.kvStride, p.kvStride,
                                    min(kBc, T - kNext), p.vec);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const bf16raw* Kb = kvBuf(buf);
    const bf16raw* Vb = Kb + kBc * kRow;

    const int k0 = j * kBc;
    // A warp whose 16 rows all lie left of this key block has nothing to add (only possible when
    // kBc < kBr); it still takes part in the block's barriers.
    if (k0 <= q0 + warp * 16 + 15) {
      // S = Q K^T for the warp's 16 rows and the block's kBc keys (raw, unscaled scores).
      float s[kSTiles][4];
      zeroAcc(s);
      mmaABt<kKSteps, kSTiles, D>(s, qFrag, Kb);

      // Mask keys right of the diagonal and past T (only blocks that reach them need the test).
      if (k0 + kBc - 1 > q0 + warp * 16 || k0 + kBc > T) {
#pragma unroll
        for (int nt = 0; nt < kSTiles; nt++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int key = k0 + nt * 8 + 2 * t + (e & 1);
            const int row = rowA + (e >> 1) * 8;
            if (key > row || key >= T) s[nt][e] = -INFINITY;
          }
      }

      // Online softmax, per row half hf (rows g and g + 8).
#pragma unroll
      for (int hf = 0; hf < 2; hf++) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kSTiles; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * hf], s[nt][2 * hf + 1]));
        mx = quadMax(mx);
        const float mNew = fmaxf(mRow[hf], mx);
        // Key 0 is visible to every row, so mNew is finite from the first block on; the guard only keeps
        // a fully masked row (impossible here) from producing inf - inf = NaN.
        const float mScaled = mNew == -INFINITY ? 0.f : mNew * p.scaleLog2;
        const float alpha = exp2f(mRow[hf] * p.scaleLog2 - mScaled);  // 0 on the first block (m = -inf)
        mRow[hf] = mNew;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kSTiles; nt++)
#pragma unroll
          for (int e = 0; e < 2; e++) {
            const float pe = exp2f(fmaf(s[nt][2 * hf + e], p.scaleLog2, -mScaled));  // masked: exp2(-inf) = 0
            s[nt][2 * hf + e] = pe;
            sum += pe;
          }
        lRow[hf] = lRow[hf] * alpha + sum;
#pragma unroll
        for (int dt = 0; dt < kOTiles; dt++) {
          o[dt][2 * hf] *= alpha;
          o[dt][2 * hf + 1] *= alpha;
        }
      }

      // O += P V (P rounded to BF16).
      mmaPV<kBc / 16, kOTiles, D>(o, s, Vb);
    }
    __syncthreads();  // the next iteration's prefetch overwrites this buffer
  }

  // Normalize, stage O through region A (free: the loop ended with a barrier), then store coalesced.
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const float l = quadSum(lRow[hf]);  // >= 1: the row max contributes exp(0)
    const float inv = 1.f / l;
#pragma unroll
    for (int dt = 0; dt < kOTiles; dt++) {
      o[dt][2 * hf] *= inv;
      o[dt][2 * hf + 1] *= inv;
    }
    const int row = rowA + hf * 8;
    if (t == 0 && row < T) p.lse[size_t(bh) * T + row] = mRow[hf] * p.scale + logf(l);
  }
  storeAccToSmem<kOTiles, D>(Qs, warp * 16, o, 1.f);
  __syncthreads();
  const size_t outStride = size_t(p.Hq) * D;
  storeTile<kBr, D, C::kThreads>(p.out + (size_t(b) * T + q0) * outStride + size_t(h) * D, outStride, Qs, qValid,
                                 p.vec);
}

// Runs the kernel for one head dimension: raises the dynamic shared memory limit, launches, checks.
template <int D>
std::string launchForward(const FwdParams& p, int B, cudaStream_t stream) {
  using C = FwdConfig<D>;
  cudaError_t e = cudaFuncSetAttribute(attentionFwdKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(C::kSmemBytes));
  if (e != cudaSuccess)
    return std::string("attentionForward: cudaFuncSetAttribute(") + std::to_string(C::kSmemBytes) +
           " bytes of shared memory): " + cudaGetErrorString(e);
  const dim3 grid(unsigned(B) * unsigned(p.Hq), unsigned(p.numQBlocks));
  attentionFwdKernel<D><<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  e = cudaGetLastError();
  if (e != cudaSuccess) return std::string("attentionForward: launch failed: ") + cudaGetErrorString(e);
  return "";
}

}  // namespace ko::cuda::attn

namespace ko::cuda {

bool attentionSupportsHeadDim(int D) { return D == 32 || D == 64 || D == 128; }

std::string attentionForward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T,
                             int Hq, int Hkv, int D, int qStride, int kvStride, void* stream) {
  const std::string shapeError = attn::checkShapes("attentionForward", B, T, Hq, Hkv, D, qStride, kvStride);
  if (!shapeError.empty()) return shapeError;
  if (!out || !lse || !q || !k || !v) return "attentionForward: null pointer (out, lse, q, k and v are required)";
  const int64_t numQBlocks = (int64_t(T) + attn::FwdConfig<64>::kBr - 1) / attn::FwdConfig<64>::kBr;
  static_assert(attn::FwdConfig<32>::kBr == attn::FwdConfig<64>::kBr &&
                    attn::FwdConfig<64>::kBr == attn::FwdConfig<128>::kBr,
                "the grid below assumes one kBr for every D");
  if (numQBlocks > 65535) return "attentionForward: T = " + std::to_string(T) + " is too long (grid limit)";

  attn::FwdParams p;
  p.out = out;
  p.lse = lse;
  p.q = q;
  p.k = k;
  p.v = v;
  p.T = T;
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.qStride = qStride;
  p.kvStride = kvStride;
  p.numQBlocks = int(numQBlocks);
  p.scale = 1.0f / std::sqrt(float(D));
  p.scaleLog2 = p.scale * attn::kLog2e;
  p.vec = attn::aligned16(q) && attn::aligned16(k) && attn::aligned16(v) && attn::aligned16(out) &&
          qStride % 8 == 0 && kvStride % 8 == 0;  // (Hq * D is a multiple of 8: D is)
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (D) {
    case 32: return attn::launchForward<32>(p, B, s);
    case 64: return attn::launchForward<64>(p, B, s);
    default: return attn::launchForward<128>(p, B, s);
  }
}

}  // namespace ko::cuda
