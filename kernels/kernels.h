// kernels.h — host launchers of the training kernels (library ko_cuda). The contract between the
// kernel files and their users (cuda_model.cpp, the tests, the bench).
//
// Conventions (as cuda_api.h): plain C++, no CUDA types, so g++-compiled code can include it.
//   * Device pointers are ordinary pointers; BF16 data is passed as `bf16` (uint16_t raw bits), FP8 as
//     uint8_t; streams are `void*` (cudaStream_t, nullptr = legacy default stream).
//   * Launchers are asynchronous and never throw or exit: they return "" or an error string (a bad
//     argument found on the host, or a launch error), naming the kernel.
//   * Row-major throughout; "rows" is the flattened batch x time dimension (B*T), as in native/ops.h.
//   * Every kernel has a CPU twin in native/ (named in its comment); the ctest group `cuda` compares them.
//   * Backward kernels OVERWRITE activation gradients and ACCUMULATE (+=) into FP32 parameter gradients,
//     as the CPU ops do. All reductions are deterministic (no float atomics except where stated).
//   * BF16 outputs are rounded to nearest even from an FP32 value computed in FP32 (ko::roundBf16).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "lowp.h"

namespace ko::cuda {

using bf16 = uint16_t;

// ============ elementwise.cu / norms.cu / rope.cu / embedding.cu =================================

// out[n, dim] = table[ids[n], :]  (twin: ko::embeddingForward). ids must be < vocab (checked on the host).
std::string embeddingForward(bf16* out, const uint32_t* ids, const bf16* table, int n, int dim, void* stream);
// Deterministic scatter-add: dtable[tok, :] += sum of dout[r, :] over the rows r with ids[r] == tok, summed
// in increasing r. The caller passes the rows grouped by token (built on the host by a stable counting
// sort): `order` [n] = row indices sorted by token, stable; segments s in [0, nSeg) cover
// order[segStart[s] .. segStart[s+1]) and all hold token segToken[s]. (twin: ko::embeddingBackward)
std::string embeddingBackward(float* dtable, const bf16* dout, const int32_t* order, const int32_t* segStart,
                              const int32_t* segToken, int nSeg, int dim, void* stream);

// RMSNorm over groups of `dim` values: element (r, h, d) of x is at x[r*xStride + h*dim + d] for r < rows,
// h < heads; y likewise with yStride. rstd[r*heads + h] = 1/sqrt(mean(x^2) + eps). w [dim] is FP32.
// heads = 1 is the ordinary per-token RMSNorm; heads = Hq with dim = head_dim is Qwen3's q/k norm inside
// the fused qkv buffer. (twin: ko::rmsnormForward on each group)
std::string rmsnormForward(bf16* y, float* rstd, const bf16* x, const float* w, int rows, int heads, int dim,
                           int xStride, int yStride, float eps, void* stream);
// dx (same layout as x, stride xStride) overwritten; dw [dim] FP32 accumulated (+=) through a
// deterministic two-stage reduction that uses `scratch` (rmsnormBackwardScratchFloats(rows*heads, dim)
// floats). dy has stride yStride. (twin: ko::rmsnormBackward)
size_t rmsnormBackwardScratchFloats(int groups, int dim);
std::string rmsnormBackward(bf16* dx, float* dw, const bf16* dy, const bf16* x, const float* w, const float* rstd,
                            int rows, int heads, int dim, int xStride, int yStride, float* scratch, void* stream);

// RoPE in place, HF rotate_half, as ko::ropeApply: x [B, T, H, D] with row stride rowStride (elements);
// invFreq [D/2] FP32 on the device; position of (b, t) = posOffset + t; inverse = backward.
// The angle is float(pos) * invFreq[i] in FP32; cos and sin of it are computed in double precision and
// rounded to float, so the twin matches to the last bit before the BF16 rounding of the outputs.
std::string ropeApply(bf16* x, int B, int T, int H, int D, int rowStride, const float* invFreq, int posOffset,
                      bool inverse, void* stream);

// SwiGLU: h[rows, F] = silu(gate) * up, gateUp [rows, 2F] (gate first). (twin: ko::swigluForward)
std::string swigluForward(bf16* h, const bf16* gateUp, int rows, int F, void* stream);
// dGateUp [rows, 2F] overwritten. (twin: ko::swigluBackward)
std::string swigluBackward(bf16* dGateUp, const bf16* dh, const bf16* gateUp, int rows, int F, void* stream);

// y[i] = bf16(a[i] + b[i]); y may alias a or b.
std::string addBf16(bf16* y, const bf16* a, const bf16* b, size_t n, void* stream);
// out[i] = bf16(in[i]) (FP32 master weights -> BF16 copies).
std::string castFloatToBf16(bf16* out, const float* in, size_t n, void* stream);
// out[i] = float(in[i]).
std::string castBf16ToFloat(float* out, const bf16* in, size_t n, void* stream);
// Device-to-device copy bandwidth reference for the bench (cudaMemcpyAsync).
std::string copyBytes(void* dst, const void* src, size_t bytes, void* stream);

// ============ fp8_cast.cu / fp8_scaling.cu ========================================================

// Fused cast + transpose + amax, for what cuBLASLt's FP8 "TN" layout needs:
//   out [rows, cols]  = fp8(in * (*scale))          (skipped when out == nullptr)
//   outT [cols, rows] = the transpose of out         (skipped when outT == nullptr)
//   *amax = max(*amax, max |in|)  (atomicMax on the float's bits; |in| >= 0 so the order is exact;
//                                  NaN ignored as fmaxf does)      (skipped when amax == nullptr)
// Input BF16 (activations, gradients) or FP32 (master weights). `scale` is a device pointer.
// (twin: ko::fp8FromFloat(x * scale) element by element; the amax of fp8QuantizeInPlace)
std::string castTransposeFp8(uint8_t* out, uint8_t* outT, float* amax, const bf16* in, int rows, int cols,
                             const float* scale, Fp8Format format, void* stream);
std::string castTransposeFp8(uint8_t* out, uint8_t* outT, float* amax, const float* in, int rows, int cols,
                             const float* scale, Fp8Format format, void* stream);
// *amax = max(*amax, max |in|) only (for current scaling, which needs the amax before the cast).
std::string amaxBf16(float* amax, const bf16* in, size_t n, void* stream);
// out[i, j] = bf16(in[j, i]): in [rows, cols] -> out [cols, rows] (the BF16 operands' transposes).
std::string transposeBf16(bf16* out, const bf16* in, int rows, int cols, void* stream);

// Delayed scaling (Transformer Engine's recipe), for n tensors at once, after every optimizer step:
//   history[pos * n + i] = amaxCur[i];   amax = useMax ? max over the historyLen slots : amaxCur[i]
//   if amax is finite and > 0:  scale[i] = (fp8Max(format_i) / amax) / 2^margin   (FP32 arithmetic)
//   scaleInv[i] = 1 / scale[i];  amaxCur[i] = 0
// formats[i] is 0 (E4M3) or 1 (E5M2), on the device. (twin: ko::Fp8ScalingState::update in fp8_recipe.h)
std::string fp8ScalingUpdate(float* scale, float* scaleInv, float* amaxCur, float* history, const uint8_t* formats,
                             int n, int historyLen, int pos, int margin, bool useMax, void* stream);

// ============ cross_entropy.cu / reduce.cu =========================================================

// Cross-entropy on a chunk of rows of FP32 logits [n, V], fused forward + backward:
//   losses[r] = logsumexp(logits[r]) - logits[r, t]  (0 when targets[r] < 0)
//   dlogits[r, :] = bf16((softmax(logits[r]) - onehot(t)) * dlossScale)   (0 rows when ignored)
// dlogits may alias neither logits nor losses. (twin: ko::crossEntropyForward / crossEntropyBackward)
std::string crossEntropyForwardBackward(float* losses, bf16* dlogits, const float* logits, const int32_t* targets,
                                        int n, int V, float dlossScale, void* stream);

// The global gradient norm's square: *out (device double) = sum of g[0..n)^2, in double, deterministic (fixed two-stage tree). scratch holds
// sumSquaresScratchDoubles(n) doubles. When accumulate is true, the sum is added to *out.
size_t sumSquaresScratchDoubles(size_t n);
std::string sumSquares(double* out, const float* g, size_t n, double* scratch, bool accumulate, void* stream);

// ============ attention.cu =========================================================================

// Causal grouped-query attention in BF16, flash-style: online softmax in FP32, the T x T scores never
// leave on-chip memory. q [B, T, Hq, D] with row stride qStride, k and v [B, T, Hkv, D] with row stride
// kvStride (so they can sit inside the fused qkv buffer); out [B, T, Hq, D] contiguous (row stride Hq*D).
// lse [B, Hq, T] FP32 = the log-sum-exp of each query's scaled scores, saved for the backward pass.
// scale = 1/sqrt(D). Supported D: attentionSupportsHeadDim(D) (64 and 128, plus 32 for tiny models).
// (twin: ko::attentionForward on the BF16 inputs in FP32, output rounded to BF16)
bool attentionSupportsHeadDim(int D);
std::string attentionForward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T,
                             int Hq, int Hkv, int D, int qStride, int kvStride, void* stream);
// dq, dk, dv with the same strides as q, k, v, OVERWRITTEN. Deterministic (dk/dv summed over the query
// heads of a group inside one block; no atomics). scratch: attentionBackwardScratchFloats(B, T, Hq, D).
// (twin: ko::attentionBackward)
size_t attentionBackwardScratchFloats(int B, int T, int Hq, int D);
std::string attentionBackward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                              const bf16* q, const bf16* k, const bf16* v, int B, int T, int Hq, int Hkv, int D,
                              int qStride, int kvStride, float* scratch, void* stream);

// ============ cublaslt.cpp / gemm_lt.cpp ===========================================================

enum class DType : uint8_t { F32, BF16, E4M3, E5M2 };

// cuBLASLt, loaded at run time with dlopen (libcublasLt.so.13, then .so.12; KO_CUBLASLT_PATH overrides).
// "" when loaded; otherwise an error saying how to install it. Thread-safe, loads once.
std::string cublasLtLoad();
// e.g. "cuBLASLt 13.0.2 (libcublasLt.so.13)"; "" when not loaded.
std::string cublasLtDescription();

// Row-major GEMM through cuBLASLt:
//   C[M, N] = alpha * sA * sB * opA(A)[M, K] · opB(B)[K, N] + beta * C
// opA(A) = A [M, K] (transA = false) or the transpose of A [K, M]; opB(B) = B [K, N] (transB = false) or the
// transpose of B [N, K] (transB = true). lda/ldb/ldc are the row strides of the stored matrices.
// sA, sB: device pointers to the FP8 dequantization scales (scaleInv), required for FP8 inputs, ignored
// otherwise. FP8 needs transA = false, transB = true (cuBLASLt's "TN"), K, lda, ldb multiples of 16 and
// 16-byte aligned pointers; E5M2 x E5M2 is not supported. C is F32 or BF16; beta != 0 accumulates.
// fastAccum: FP8 fast accumulation (forward pass, as Transformer Engine does).
struct MatmulArgs {
  void* C = nullptr;
  const void* A = nullptr;
  const void* B = nullptr;
  DType typeA = DType::BF16, typeB = DType::BF16, typeC = DType::BF16;
  bool transA = false, transB = true;
  int M = 0, N = 0, K = 0;
  int lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.f, beta = 0.f;
  const float* scaleA = nullptr;
  const float* scaleB = nullptr;
  bool fastAccum = false;
};

// One cuBLASLt handle, a workspace and a cache of matmul plans (descriptors + the heuristic's algorithm)
// keyed by shape and types; bound to one stream and the current device at creation.
class Gemm {
 public:
  Gemm();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  // "" or an error (cuBLASLt missing, out of memory).
  std::string init(void* stream, size_t workspaceBytes = size_t(32) << 20);
  std::string matmul(const MatmulArgs& a);

 private:
  struct Impl;
  Impl* impl_ = nullptr;
};

}  // namespace ko::cuda
