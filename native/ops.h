// ops.h — the CPU kernels of the transformer, FP32, row-major, over caller-owned buffers.
//
// Conventions shared by every op:
//   * "rows" is the flattened batch × time dimension (B*T).
//   * Backward functions OVERWRITE the input gradient (dx) and ACCUMULATE (+=) into
//     parameter gradients (dw), so gradient accumulation over micro-batches needs no extra copy.
//   * Every op is deterministic for a fixed thread count: no floating-point atomics and no
//     OpenMP reductions whose combining order can vary between runs.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ko {

// ---- GEMM ---------------------------------------------------------------------------------
// C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, row-major, op = transpose when the flag is set.
// Goes to OpenBLAS's cblas_sgemm when the build found it (KO_HAVE_BLAS), else to gemmBlocked.
void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
// The built-in cache-blocked, OpenMP-parallel kernel; always compiled so it can be tested.
void gemmBlocked(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc);
const char* gemmBackendName();  // "openblas" or "builtin"

// ---- Linear (HF layout: weight is [out, in]) ----------------------------------------------------
// y[M,N] = x[M,K] · w[N,K]^T
void linearForward(float* y, const float* x, const float* w, int M, int K, int N);
// dx[M,K] = dy[M,N] · w[N,K]   (overwritten; skipped when dx == nullptr)
// dw[N,K] += dy[M,N]^T · x[M,K]
void linearBackward(float* dx, float* dw, const float* dy, const float* x, const float* w, int M, int K, int N);

// ---- Embedding ----------------------------------------------------------------------------------
// out[n, dim] = table[ids[n], :]. ids are validated by the caller (model) against vocab.
void embeddingForward(float* out, const uint32_t* ids, const float* table, int n, int dim);
// dtable[ids[i], :] += dout[i, :]
void embeddingBackward(float* dtable, const uint32_t* ids, const float* dout, int n, int dim);

// ---- RMSNorm (HF Llama/Qwen3: y = x / sqrt(mean(x^2) + eps) * w) --------------------------------
// rstd[rows] receives 1/sqrt(mean(x^2)+eps) for the backward pass.
void rmsnormForward(float* y, float* rstd, const float* x, const float* w, int rows, int dim, float eps);
// dx overwritten, dw accumulated.
void rmsnormBackward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                     int rows, int dim);

// ---- RoPE (HF "rotate_half" convention: pairs (i, i + D/2)) ------------------------------------------
// invFreq[D/2] = 1 / theta^(2i/D) (possibly rescaled, e.g. Llama 3.1 rope_scaling).
// x: [B, T, H, D] with row stride `rowStride` floats between consecutive (b,t) rows (so q and k can
// be rotated in place inside a fused qkv buffer); heads are contiguous (stride D) within a row.
// Position of (b,t) is posOffset + t, or positions[b*T + t] when given (packed examples restart at 0; every
// value must lie in [0, T)). inverse = rotate by -angle (this is exactly the backward pass).
void ropeApply(float* x, int B, int T, int H, int D, int rowStride, const float* invFreq, int posOffset,
               bool inverse, const int32_t* positions = nullptr);

// ---- Causal grouped-query attention --------------------------------------------------------------
// q: [B,T,Hq,D] (row stride qStride), k,v: [B,T,Hkv,D] (row stride kvStride), Hq % Hkv == 0.
// out: [B,T,Hq,D] contiguous (row stride Hq*D). probs: [B,Hq,T,T] softmax probabilities saved for
// backward (entries above the diagonal are written as 0). scale = 1/sqrt(D).
// keyStart[b*T + i] (optional): the first key query i may attend to, so several examples packed in one row
// stay apart; the probabilities left of it are 0, which is all the backward pass needs to respect the mask.
void attentionForward(float* out, float* probs, const float* q, const float* k, const float* v, int B, int T,
                      int Hq, int Hkv, int D, int qStride, int kvStride, const int32_t* keyStart = nullptr);
// dq, dk, dv use the same strides as q, k, v and are OVERWRITTEN.
void attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                       const float* k, const float* v, int B, int T, int Hq, int Hkv, int D, int qStride,
                       int kvStride);

// ---- SwiGLU: h = silu(gate) * up -------------------------------------------------------------------
// gateUp: [rows, 2F] with gate in columns [0,F) and up in [F,2F) (gate_proj and up_proj are stored
// contiguously, so one GEMM produces both). h: [rows, F].
void swigluForward(float* h, const float* gateUp, int rows, int F);
// dGateUp: [rows, 2F] overwritten.
void swigluBackward(float* dGateUp, const float* dh, const float* gateUp, int rows, int F);

// ---- Cross-entropy over the vocabulary ------------------------------------------------------------
// losses[n] = -log softmax(logits[n])[targets[n]]; targets < 0 are ignored (loss 0).
// Returns the sum of losses over non-ignored rows (accumulated in double, in row order).
double crossEntropyForward(float* losses, const float* logits, const int32_t* targets, int n, int V);
// In place: logits[n,:] <- (softmax(logits[n]) - onehot(targets[n])) * dlossScale * rowScale[n] (rowScale
// optional: per-position loss weights, e.g. DPO's per-sequence weights); ignored rows -> 0.
void crossEntropyBackward(float* logits, const int32_t* targets, int n, int V, float dlossScale,
                          const float* rowScale = nullptr);

// ---- AdamW (PyTorch semantics, decoupled weight decay) ---------------------------------------------------
// p <- p - lr*wd*p; m <- b1*m + (1-b1)*g; v <- b2*v + (1-b2)*g^2;
// p <- p - lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps), with g = grad * gradScale (gradScale carries
// the global-norm clipping factor). step t starts at 1.
struct AdamWParams {
  float lr, beta1, beta2, eps;
  int64_t step;
};
void adamwUpdate(float* p, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp,
                 float weightDecay, float gradScale);

// Sum of squares of g[0..n) in double, computed deterministically.
double sumSquares(const float* g, size_t n);

}  // namespace ko
