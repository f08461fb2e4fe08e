// cuda_model.cpp — the whole training step on one GPU; the order of operations and the rounding points
// follow ko::Model::forward/backward (native/model.cpp) one for one, so that file reads as this one's spec.
#include "cuda_model.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "cuda_api.h"
#include "embedding_segments.h"
#include "kernels.h"

namespace ko::cuda {

namespace {

void check(const std::string& err) {
  if (!err.empty()) throw std::runtime_error(err);
}
void cudaCheck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// The logits of at most this many bytes (FP32) exist at once; the LM head runs over chunks of rows.
constexpr size_t kLogitsChunkBytes = size_t(1) << 30;

}  // namespace

struct CudaModel::Impl {
  ModelConfig c;
  PrecisionOptions prec;
  int device = 0;
  cudaStream_t stream = nullptr;
  Gemm gemm;
  std::vector<void*> allocations;
  size_t bytes = 0;

  // Layout (offsets into the parameter arrays).
  struct Layer {
    size_t inNorm, q, qNorm, kNorm, o, postNorm, gateUp, down;
  };
  std::vector<Layer> layers;
  std::vector<ParamInfo> layout;
  size_t embedOff = 0, normOff = 0, lmHeadOff = 0, nParams = 0;
  struct Site {
    size_t off;     // weight offset in the parameter arrays
    int out, in;    // weight [out, in]
    bool fp8;
    uint8_t* w8 = nullptr;   // [out, in] E4M3
    uint8_t* w8T = nullptr;  // [in, out] E4M3 (the dgrad operand)
  };
  std::vector<Site> sites;

  // Persistent state.
  float *params = nullptr, *grads = nullptr, *m = nullptr, *v = nullptr, *invFreq = nullptr;
  bf16* wBf16 = nullptr;  // BF16 copy of every parameter (the embedding table and the BF16 linears read it)
  int nFp8 = 0;           // 3 tensors per site
  float *scale = nullptr, *scaleInv = nullptr, *amaxCur = nullptr, *history = nullptr, *amaxSaved = nullptr,
        *historyScratch = nullptr;
  uint8_t* formats = nullptr;
  double *sumsq = nullptr, *sumsqScratch = nullptr;

  // Activations, sized for capRows rows (capB x capT).
  int capB = 0, capT = 0, capRows = 0, chunkRows = 0;
  struct LayerActs {
    bf16 *xIn, *ln1, *qkvPre, *qkv, *att, *x1, *ln2, *gateUp, *h;
    float *rstd1, *rstd2, *qRstd, *kRstd, *lse;
    uint8_t *ln1T, *attT, *ln2T, *hT;  // FP8 transposed inputs of the FP8 sites (wgrad operands)
  };
  std::vector<LayerActs> acts;
  bf16 *xOut = nullptr, *lnf = nullptr, *tmp = nullptr, *dx = nullptr, *dtmp = nullptr, *dln = nullptr,
       *dqkv = nullptr, *dqkvPre = nullptr, *datt = nullptr, *dh = nullptr, *dgu = nullptr, *dlogits = nullptr;
  float *rstdf = nullptr, *losses = nullptr, *logits = nullptr, *rmsScratch = nullptr, *attnScratch = nullptr;
  uint8_t *lnfT = nullptr, *x8 = nullptr, *g8 = nullptr, *g8T = nullptr;
  uint32_t* ids = nullptr;
  int32_t *targets = nullptr, *segOrder = nullptr, *segStart = nullptr, *segToken = nullptr;
  std::vector<void*> actAllocations;

  ~Impl() {
    freeActivations();
    for (void* p : allocations) cudaFree(p);
    if (stream) cudaStreamDestroy(stream);
  }

  template <class T>
  T* alloc(size_t count, const char* what, std::vector<void*>& owner) {
    void* p = nullptr;
    const size_t n = std::max<size_t>(count, 1) * sizeof(T);
    cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error("out of GPU memory allocating " + std::to_string(n >> 20) + " MiB for " + what +
                               " (" + std::to_string(bytes >> 20) +
                               " MiB already held; lower train.batch_size or train.seq_len, or use grad_accum)");
    }
    owner.push_back(p);
    bytes += n;
    return static_cast<T*>(p);
  }
  template <class T>
  T* alloc(size_t count, const char* what) {
    return alloc<T>(count, what, allocations);
  }
  void freeActivations() {
    for (void* p : actAllocations) cudaFree(p);
    actAllocations.clear();
    acts.clear();
    capB = capT = capRows = 0;
  }

  int qd() const { return c.numHeads * c.headDim; }
  int kvd() const { return c.numKvHeads * c.headDim; }
  int qkvWidth() const { return qd() + 2 * kvd(); }
  bool qwen() const { return c.type == ModelType::Qwen3; }
  bool anyFp8() const {
    for (const auto& s : sites)
      if (s.fp8) return true;
    return false;
  }

  void ensureActivations(int B, int T) {
    if (B <= capB && T <= capT) return;
    freeActivations();
    capB = B;
    capT = T;
    capRows = B * T;
    auto& o = actAllocations;
    const size_t R = size_t(capRows), H = c.hiddenSize, F = c.intermediateSize, W = qkvWidth(), QD = qd(),
                 V = c.vocabSize;
    const int L = c.numLayers;
    acts.assign(L, LayerActs{});
    for (int l = 0; l < L; l++) {
      LayerActs& a = acts[l];
      a.xIn = alloc<bf16>(R * H, "activations", o);
      a.ln1 = alloc<bf16>(R * H, "activations", o);
      a.qkvPre = qwen() ? alloc<bf16>(R * W, "activations", o) : nullptr;
      a.qkv = alloc<bf16>(R * W, "activations", o);
      a.att = alloc<bf16>(R * QD, "activations", o);
      a.x1 = alloc<bf16>(R * H, "activations", o);
      a.ln2 = alloc<bf16>(R * H, "activations", o);
      a.gateUp = alloc<bf16>(R * 2 * F, "activations", o);
      a.h = alloc<bf16>(R * F, "activations", o);
      a.rstd1 = alloc<float>(R, "activations", o);
      a.rstd2 = alloc<float>(R, "activations", o);
      a.qRstd = qwen() ? alloc<float>(R * c.numHeads, "activations", o) : nullptr;
      a.kRstd = qwen() ? alloc<float>(R * c.numKvHeads, "activations", o) : nullptr;
      a.lse = alloc<float>(R * c.numHeads, "activations", o);
      a.ln1T = sites[4 * l + 0].fp8 ? alloc<uint8_t>(R * H, "FP8 activations", o) : nullptr;
      a.attT = sites[4 * l + 1].fp8 ? alloc<uint8_t>(R * QD, "FP8 activations", o) : nullptr;
      a.ln2T = sites[4 * l + 2].fp8 ? alloc<uint8_t>(R * H, "FP8 activations", o) : nullptr;
      a.hT = sites[4 * l + 3].fp8 ? alloc<uint8_t>(R * F, "FP8 activations", o) : nullptr;
    }
    xOut = alloc<bf16>(R * H, "activations", o);
    lnf = alloc<bf16>(R * H, "activations", o);
    rstdf = alloc<float>(R, "activations", o);
    lnfT = sites.back().fp8 ? alloc<uint8_t>(R * H, "FP8 activations", o) : nullptr;
    tmp = alloc<bf16>(R * H, "scratch", o);
    dx = alloc<bf16>(R * H, "scratch", o);
    dtmp = alloc<bf16>(R * H, "scratch", o);
    dln = alloc<bf16>(R * H, "scratch", o);
    dqkv = alloc<bf16>(R * W, "scratch", o);
    dqkvPre = qwen() ? alloc<bf16>(R * W, "scratch", o) : nullptr;
    datt = alloc<bf16>(R * QD, "scratch", o);
    dh = alloc<bf16>(R * F, "scratch", o);
    dgu = alloc<bf16>(R * 2 * F, "scratch", o);
    losses = alloc<float>(R, "losses", o);
    // LM head chunk: a multiple of 16 rows (FP8 GEMM rule) whose FP32 logits fit kLogitsChunkBytes.
    size_t rows = std::max<size_t>(16, kLogitsChunkBytes / (4 * V)) / 16 * 16;
    chunkRows = int(std::min(rows, R));
    logits = alloc<float>(size_t(chunkRows) * V, "LM head logits chunk", o);
    dlogits = alloc<bf16>(size_t(chunkRows) * V, "LM head logits chunk", o);
    if (anyFp8()) {
      // FP8 casts of one linear's input, and of its output gradient and that gradient's transpose (the LM
      // head's gradient is one chunk of rows x vocab).
      const size_t maxIn = std::max({H, QD, F});
      size_t maxGrad = R * std::max({W, H, 2 * F});
      if (sites.back().fp8) maxGrad = std::max(maxGrad, size_t(chunkRows) * V);
      x8 = alloc<uint8_t>(R * maxIn, "FP8 scratch", o);
      g8 = alloc<uint8_t>(maxGrad, "FP8 scratch", o);
      g8T = alloc<uint8_t>(maxGrad, "FP8 scratch", o);
    }
    const size_t groups = R * std::max(c.numHeads, 1);
    rmsScratch = alloc<float>(std::max(rmsnormBackwardScratchFloats(int(R), int(H)),
                                       rmsnormBackwardScratchFloats(int(groups), c.headDim)),
                              "scratch", o);
    attnScratch = alloc<float>(attentionBackwardScratchFloats(B, T, c.numHeads, c.headDim), "scratch", o);
    ids = alloc<uint32_t>(R, "token ids", o);
    targets = alloc<int32_t>(R, "token ids", o);
    segOrder = alloc<int32_t>(R, "token ids", o);
    segStart = alloc<int32_t>(R + 1, "token ids", o);
    segToken = alloc<int32_t>(R, "token ids", o);
  }

  // ---- GEMMs ------------------------------------------------------------------------------------
  void mm(void* C, DType tc, const void* A, DType ta, bool transA, int lda, const void* B, DType tb, bool transB,
          int ldb, int M, int N, int K, int ldc, float beta, const float* sA = nullptr, const float* sB = nullptr,
          bool fast = false) {
    MatmulArgs a;
    a.C = C;
    a.A = A;
    a.B = B;
    a.typeA = ta;
    a.typeB = tb;
    a.typeC = tc;
    a.transA = transA;
    a.transB = transB;
    a.M = M;
    a.N = N;
    a.K = K;
    a.lda = lda;
    a.ldb = ldb;
    a.ldc = ldc;
    a.beta = beta;
    a.scaleA = sA;
    a.scaleB = sB;
    a.fastAccum = fast;
    check(gemm.matmul(a));
  }

  // Current scaling: the tensor's scale from its own amax, before the cast (fp8_recipe.h).
  template <class In>
  void currentScale(int t, const In* x, int rows, int cols) {
    cudaCheck(cudaMemsetAsync(amaxCur + t, 0, sizeof(float), stream), "cudaMemsetAsync");
    check(castTransposeFp8(nullptr, nullptr, amaxCur + t, x, rows, cols, scale + t, Fp8Format(t % 3 == 2),
                           stream));
    check(fp8ScalingUpdate(scale + t, scaleInv + t, amaxCur + t, historyScratch, formats + t, 1, 1, 0,
                           prec.recipe.margin, false, stream));
  }
  template <class In>
  void castFp8(int t, uint8_t* out, uint8_t* outT, const In* x, int rows, int cols) {
    if (prec.recipe.currentScaling) currentScale(t, x, rows, cols);
    check(castTransposeFp8(out, outT, amaxCur + t, x, rows, cols, scale + t, Fp8Format(t % 3 == 2), stream));
  }

  // y [n, out] = x [n, in] · W^T. FP8: x is cast (x8 and, for the weight gradient, xT kept) first.
  void linearForward(int s, void* y, DType ty, int ldy, const bf16* x, uint8_t* xT, int n) {
    const Site& st = sites[s];
    if (st.fp8) {
      castFp8(3 * s, x8, xT, x, n, st.in);
      mm(y, ty, x8, DType::E4M3, false, st.in, st.w8, DType::E4M3, true, st.in, n, st.out, st.in, ldy, 0.f,
         scaleInv + 3 * s, scaleInv + 3 * s + 1, true);
    } else {
      mm(y, ty, x, DType::BF16, false, st.in, wBf16 + st.off, DType::BF16, true, st.in, n, st.out, st.in, ldy, 0.f);
    }
  }

  // dx [n, in] = dy [n, out] · W (overwritten); dW [out, in] += dy^T · x. For FP8 the weight gradient reads
  // the E4M3 transposed input xT [in, ldxT] (columns r0 .. r0 + n), and dy is cast to E5M2 here.
  void linearBackward(int s, bf16* dxOut, const bf16* dy, const bf16* x, const uint8_t* xT, int ldxT, int n) {
    const Site& st = sites[s];
    float* dW = grads + st.off;
    if (st.fp8) {
      const int t = 3 * s + 2;
      castFp8(t, g8, g8T, dy, n, st.out);
      mm(dxOut, DType::BF16, g8, DType::E5M2, false, st.out, st.w8T, DType::E4M3, true, st.out, n, st.in, st.out,
         st.in, 0.f, scaleInv + t, scaleInv + 3 * s + 1);
      mm(dW, DType::F32, g8T, DType::E5M2, false, n, xT, DType::E4M3, true, ldxT, st.out, st.in, n, st.in, 1.f,
         scaleInv + t, scaleInv + 3 * s);
    } else {
      mm(dxOut, DType::BF16, dy, DType::BF16, false, st.out, wBf16 + st.off, DType::BF16, false, st.in, n, st.in,
         st.out, st.in, 0.f);
      mm(dW, DType::F32, dy, DType::BF16, true, st.out, x, DType::BF16, false, st.in, st.out, st.in, n, st.in, 1.f);
    }
  }

  // The step's weights: BF16 copies of everything, FP8 casts (and transposes) of the FP8 sites.
  void prepareWeights() {
    check(castFloatToBf16(wBf16, params, nParams, stream));
    for (int s = 0; s < int(sites.size()); s++) {
      Site& st = sites[s];
      if (st.fp8) castFp8(3 * s + 1, st.w8, st.w8T, params + st.off, st.out, st.in);
    }
  }

  void uploadTokens(const uint32_t* in, const int32_t* tg, int R) {
    std::vector<int32_t> order, start, token;
    embeddingSegments(in, R, c.vocabSize, order, start, token);
    cudaCheck(cudaMemcpyAsync(ids, in, size_t(R) * 4, cudaMemcpyHostToDevice, stream), "upload ids");
    cudaCheck(cudaMemcpyAsync(targets, tg, size_t(R) * 4, cudaMemcpyHostToDevice, stream), "upload targets");
    cudaCheck(cudaMemcpyAsync(segOrder, order.data(), order.size() * 4, cudaMemcpyHostToDevice, stream), "upload");
    cudaCheck(cudaMemcpyAsync(segStart, start.data(), start.size() * 4, cudaMemcpyHostToDevice, stream), "upload");
    cudaCheck(cudaMemcpyAsync(segToken, token.data(), token.size() * 4, cudaMemcpyHostToDevice, stream), "upload");
    nSegments = int(token.size());
    // Pageable copies return once the host data is staged, but keep the vectors' lifetime obvious:
    cudaCheck(cudaStreamSynchronize(stream), "upload tokens");
  }
  int nSegments = 0;

  // Forward (and, when train, the backward) of one micro-batch already uploaded; losses [R] on the device.
  void step(int B, int T, bool train, float dlossScale) {
    const int R = B * T, H = c.hiddenSize, D = c.headDim, Hq = c.numHeads, Hkv = c.numKvHeads,
              F = c.intermediateSize, V = c.vocabSize, W = qkvWidth(), QD = qd(), KVD = kvd(), L = c.numLayers;
    const float eps = c.rmsNormEps;
    cudaStream_t st = stream;

    check(embeddingForward(acts[0].xIn, ids, wBf16 + embedOff, R, H, st));
    for (int l = 0; l < L; l++) {
      LayerActs& a = acts[l];
      const Layer& w = layers[l];
      bf16* xNext = l + 1 < L ? acts[l + 1].xIn : xOut;
      check(rmsnormForward(a.ln1, a.rstd1, a.xIn, params + w.inNorm, R, 1, H, H, H, eps, st));
      bf16* qkvOut = qwen() ? a.qkvPre : a.qkv;
      linearForward(4 * l + 0, qkvOut, DType::BF16, W, a.ln1, a.ln1T, R);
      if (qwen()) {
        check(rmsnormForward(a.qkv, a.qRstd, a.qkvPre, params + w.qNorm, R, Hq, D, W, W, eps, st));
        check(rmsnormForward(a.qkv + QD, a.kRstd, a.qkvPre + QD, params + w.kNorm, R, Hkv, D, W, W, eps, st));
        cudaCheck(cudaMemcpy2DAsync(a.qkv + QD + KVD, size_t(W) * 2, a.qkvPre + QD + KVD, size_t(W) * 2,
                                    size_t(KVD) * 2, R, cudaMemcpyDeviceToDevice, st),
                  "copy v");
      }
      check(ropeApply(a.qkv, B, T, Hq, D, W, invFreq, 0, false, st));
      check(ropeApply(a.qkv + QD, B, T, Hkv, D, W, invFreq, 0, false, st));
      check(attentionForward(a.att, a.lse, a.qkv, a.qkv + QD, a.qkv + QD + KVD, B, T, Hq, Hkv, D, W, W, st));
      linearForward(4 * l + 1, tmp, DType::BF16, H, a.att, a.attT, R);
      check(addBf16(a.x1, tmp, a.xIn, size_t(R) * H, st));
      check(rmsnormForward(a.ln2, a.rstd2, a.x1, params + w.postNorm, R, 1, H, H, H, eps, st));
      linearForward(4 * l + 2, a.gateUp, DType::BF16, 2 * F, a.ln2, a.ln2T, R);
      check(swigluForward(a.h, a.gateUp, R, F, st));
      linearForward(4 * l + 3, tmp, DType::BF16, H, a.h, a.hT, R);
      check(addBf16(xNext, tmp, a.x1, size_t(R) * H, st));
    }
    check(rmsnormForward(lnf, rstdf, xOut, params + normOff, R, 1, H, H, H, eps, st));

    // LM head + cross-entropy over chunks of rows; in training each chunk's backward follows at once.
    const int sLm = 4 * L;
    const Site& lm = sites[sLm];
    if (lm.fp8) castFp8(3 * sLm, x8, lnfT, lnf, R, H);  // one cast (and scale) for every chunk
    for (int r0 = 0; r0 < R; r0 += chunkRows) {
      const int n = std::min(chunkRows, R - r0);
      if (lm.fp8)
        mm(logits, DType::F32, x8 + size_t(r0) * H, DType::E4M3, false, H, lm.w8, DType::E4M3, true, H, n, V, H, V,
           0.f, scaleInv + 3 * sLm, scaleInv + 3 * sLm + 1, true);
      else
        mm(logits, DType::F32, lnf + size_t(r0) * H, DType::BF16, false, H, wBf16 + lm.off, DType::BF16, true, H, n,
           V, H, V, 0.f);
      check(crossEntropyForwardBackward(losses + r0, dlogits, logits, targets + r0, n, V, dlossScale, st));
      if (train)
        linearBackward(sLm, dln + size_t(r0) * H, dlogits, lnf + size_t(r0) * H, lnfT ? lnfT + r0 : nullptr, R, n);
    }
    if (!train) return;

    check(rmsnormBackward(dx, grads + normOff, dln, xOut, params + normOff, rstdf, R, 1, H, H, H, rmsScratch, st));
    for (int l = L - 1; l >= 0; l--) {
      LayerActs& a = acts[l];
      const Layer& w = layers[l];
      // MLP branch
      linearBackward(4 * l + 3, dh, dx, a.h, a.hT, R, R);
      check(swigluBackward(dgu, dh, a.gateUp, R, F, st));
      linearBackward(4 * l + 2, dln, dgu, a.ln2, a.ln2T, R, R);
      check(rmsnormBackward(dtmp, grads + w.postNorm, dln, a.x1, params + w.postNorm, a.rstd2, R, 1, H, H, H,
                            rmsScratch, st));
      check(addBf16(dx, dx, dtmp, size_t(R) * H, st));
      // Attention branch
      linearBackward(4 * l + 1, datt, dx, a.att, a.attT, R, R);
      check(attentionBackward(dqkv, dqkv + QD, dqkv + QD + KVD, datt, a.att, a.lse, a.qkv, a.qkv + QD,
                              a.qkv + QD + KVD, B, T, Hq, Hkv, D, W, W, attnScratch, st));
      check(ropeApply(dqkv, B, T, Hq, D, W, invFreq, 0, true, st));
      check(ropeApply(dqkv + QD, B, T, Hkv, D, W, invFreq, 0, true, st));
      bf16* dProj = dqkv;
      if (qwen()) {
        check(rmsnormBackward(dqkvPre, grads + w.qNorm, dqkv, a.qkvPre, params + w.qNorm, a.qRstd, R, Hq, D, W, W,
                              rmsScratch, st));
        check(rmsnormBackward(dqkvPre + QD, grads + w.kNorm, dqkv + QD, a.qkvPre + QD, params + w.kNorm, a.kRstd, R,
                              Hkv, D, W, W, rmsScratch, st));
        cudaCheck(cudaMemcpy2DAsync(dqkvPre + QD + KVD, size_t(W) * 2, dqkv + QD + KVD, size_t(W) * 2,
                                    size_t(KVD) * 2, R, cudaMemcpyDeviceToDevice, st),
                  "copy dv");
        dProj = dqkvPre;
      }
      linearBackward(4 * l + 0, dln, dProj, a.ln1, a.ln1T, R, R);
      check(rmsnormBackward(dtmp, grads + w.inNorm, dln, a.xIn, params + w.inNorm, a.rstd1, R, 1, H, H, H,
                            rmsScratch, st));
      check(addBf16(dx, dx, dtmp, size_t(R) * H, st));
    }
    check(embeddingBackward(grads + embedOff, dx, segOrder, segStart, segToken, nSegments, H, st));
  }

  double downloadLossSum(int R, const int32_t* hostTargets) {
    std::vector<float> l(R);
    cudaCheck(cudaMemcpyAsync(l.data(), losses, size_t(R) * 4, cudaMemcpyDeviceToHost, stream), "download losses");
    cudaCheck(cudaStreamSynchronize(stream), "training step");
    double s = 0;
    for (int i = 0; i < R; i++)
      if (hostTargets[i] >= 0) s += double(l[i]);
    return s;
  }
};

CudaModel::CudaModel(const ModelConfig& c, int device, const PrecisionOptions& precision)
    : impl_(new Impl), cfg_(c) {
  std::string err = validateConfig(c);
  if (!err.empty()) throw InputError(err);
  Impl& I = *impl_;
  I.c = c;
  I.prec = precision;
  I.device = device;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw std::runtime_error("no CUDA device is available (driver missing, or no GPU visible)");
  }
  if (device < 0 || device >= count)
    throw InputError("run.device cuda:" + std::to_string(device) + " does not exist; this machine has " +
                     std::to_string(count) + " CUDA device(s) (cuda:0 .. cuda:" + std::to_string(count - 1) + ")");
  cudaCheck(cudaSetDevice(device), "cudaSetDevice");
  cudaDeviceProp prop{};
  cudaCheck(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  deviceName_ = prop.name;
  const int cc = prop.major * 10 + prop.minor;
  if (cc < 80)
    throw std::runtime_error(deviceName_ + " (compute capability " + std::to_string(prop.major) + "." +
                             std::to_string(prop.minor) + ") has no BF16 tensor cores; ko-train needs 8.0+ (Ampere)");
  if (precision.precision == Precision::FP8 && cc < 89)
    throw std::runtime_error(deviceName_ + " (compute capability " + std::to_string(prop.major) + "." +
                             std::to_string(prop.minor) + ") has no FP8 tensor cores (8.9+: Ada, Hopper); use "
                             "train.precision: bf16");
  if (precision.precision == Precision::FP32)
    throw InputError("train.precision fp32 runs on the CPU only; on CUDA use bf16 or fp8");
  for (int D : {c.headDim})
    if (!attentionSupportsHeadDim(D))
      throw InputError("model.head_dim " + std::to_string(D) + " is not supported by the CUDA attention kernel " +
                       "(supported: 32, 64, 128)");
  cudaCheck(cudaStreamCreateWithFlags(&I.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(I.gemm.init(I.stream));

  I.layout = paramLayout(c);
  nParams_ = I.nParams = paramCount(c);
  auto find = [&](const std::string& name) { return tensorOffset(I.layout, name); };
  I.embedOff = find("model.embed_tokens.weight");
  I.normOff = find("model.norm.weight");
  I.lmHeadOff = c.tieWordEmbeddings ? I.embedOff : find("lm_head.weight");
  const int H = c.hiddenSize, F = c.intermediateSize;
  const int nSites = numLinearSites(c);
  std::vector<uint8_t> mask = precision.fp8Sites;
  if (mask.empty()) mask.assign(nSites, 1);
  if (int(mask.size()) != nSites) throw InputError("fp8 site mask does not match the model's linear layers");
  const bool fp8 = precision.precision == Precision::FP8;
  auto addSite = [&](size_t off, int out, int in) {
    Impl::Site s{};
    s.off = off;
    s.out = out;
    s.in = in;
    s.fp8 = fp8 && mask[I.sites.size()] != 0;
    I.sites.push_back(s);
  };
  for (int l = 0; l < c.numLayers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Impl::Layer w{};
    w.inNorm = find(p + "input_layernorm.weight");
    w.q = find(p + "self_attn.q_proj.weight");
    if (c.type == ModelType::Qwen3) {
      w.qNorm = find(p + "self_attn.q_norm.weight");
      w.kNorm = find(p + "self_attn.k_norm.weight");
    }
    w.o = find(p + "self_attn.o_proj.weight");
    w.postNorm = find(p + "post_attention_layernorm.weight");
    w.gateUp = find(p + "mlp.gate_proj.weight");
    w.down = find(p + "mlp.down_proj.weight");
    I.layers.push_back(w);
    addSite(w.q, I.qkvWidth(), H);
    addSite(w.o, H, I.qd());
    addSite(w.gateUp, 2 * F, H);
    addSite(w.down, H, F);
  }
  addSite(I.lmHeadOff, c.vocabSize, H);
  for (const auto& s : I.sites)
    if (s.fp8 && (s.in % 16 != 0 || s.out % 16 != 0))
      throw InputError("FP8 GEMMs need every linear layer's sizes to be multiples of 16; a layer is " +
                       std::to_string(s.out) + " x " + std::to_string(s.in) +
                       " (name it in train.fp8.exclude, or use train.precision: bf16)");

  const size_t N = I.nParams;
  I.params = I.alloc<float>(N, "master weights");
  I.grads = I.alloc<float>(N, "gradients");
  I.m = I.alloc<float>(N, "AdamW moments");
  I.v = I.alloc<float>(N, "AdamW moments");
  I.wBf16 = I.alloc<bf16>(N, "BF16 weights");
  cudaCheck(cudaMemsetAsync(I.m, 0, N * 4, I.stream), "memset");
  cudaCheck(cudaMemsetAsync(I.v, 0, N * 4, I.stream), "memset");
  for (auto& s : I.sites)
    if (s.fp8) {
      s.w8 = I.alloc<uint8_t>(size_t(s.out) * s.in, "FP8 weights");
      s.w8T = I.alloc<uint8_t>(size_t(s.out) * s.in, "FP8 weights");
    }
  // RoPE frequencies: the CPU model's, so both round the same angles.
  const std::vector<float> freq = ropeInvFreq(c);
  I.invFreq = I.alloc<float>(freq.size(), "RoPE table");
  cudaCheck(cudaMemcpy(I.invFreq, freq.data(), freq.size() * 4, cudaMemcpyHostToDevice), "upload RoPE table");

  I.nFp8 = 3 * nSites;
  Fp8ScalingState st;
  std::vector<Fp8Format> fmts;
  for (int i = 0; i < nSites; i++)
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E4M3, Fp8Format::E5M2}) fmts.push_back(f);
  st.init(fmts, precision.recipe.historyLen);
  I.scale = I.alloc<float>(I.nFp8, "FP8 scales");
  I.scaleInv = I.alloc<float>(I.nFp8, "FP8 scales");
  I.amaxCur = I.alloc<float>(I.nFp8, "FP8 scales");
  I.amaxSaved = I.alloc<float>(I.nFp8, "FP8 scales");
  I.history = I.alloc<float>(size_t(I.nFp8) * st.historyLen, "FP8 amax history");
  I.historyScratch = I.alloc<float>(1, "FP8 scales");
  I.formats = I.alloc<uint8_t>(I.nFp8, "FP8 scales");
  cudaCheck(cudaMemcpy(I.formats, st.formats.data(), I.nFp8, cudaMemcpyHostToDevice), "upload");
  uploadFp8State(st);
  I.sumsq = I.alloc<double>(1, "reduction");
  I.sumsqScratch = I.alloc<double>(sumSquaresScratchDoubles(N), "reduction");
  cudaCheck(cudaStreamSynchronize(I.stream), "CudaModel init");
}

CudaModel::~CudaModel() = default;

bool CudaModel::siteIsFp8(int site) const {
  return site >= 0 && site < int(impl_->sites.size()) && impl_->sites[site].fp8;
}

void CudaModel::uploadParams(const float* p) {
  cudaCheck(cudaSetDevice(impl_->device), "cudaSetDevice");  // the calling thread may have another current device
  cudaCheck(cudaStreamSynchronize(impl_->stream), "sync");  // no step may still be reading them
  cudaCheck(cudaMemcpy(impl_->params, p, nParams_ * 4, cudaMemcpyHostToDevice), "upload weights");
}
void CudaModel::downloadParams(float* p) const {
  cudaCheck(cudaSetDevice(impl_->device), "cudaSetDevice");  // the calling thread may have another current device
  cudaCheck(cudaStreamSynchronize(impl_->stream), "sync");
  cudaCheck(cudaMemcpy(p, impl_->params, nParams_ * 4, cudaMemcpyDeviceToHost), "download weights");
}
void CudaModel::uploadMoments(const float* m, const float* v) {
  cudaCheck(cudaSetDevice(impl_->device), "cudaSetDevice");  // the calling thread may have another current device
  cudaCheck(cudaStreamSynchronize(impl_->stream), "sync");  // no step may still be reading them
  cudaCheck(cudaMemcpy(impl_->m, m, nParams_ * 4, cudaMemcpyHostToDevice), "upload optimizer state");
  cudaCheck(cudaMemcpy(impl_->v, v, nParams_ * 4, cudaMemcpyHostToDevice), "upload optimizer state");
}
void CudaModel::downloadMoments(float* m, float* v) const {
  cudaCheck(cudaSetDevice(impl_->device), "cudaSetDevice");  // the calling thread may have another current device
  cudaCheck(cudaStreamSynchronize(impl_->stream), "sync");
  cudaCheck(cudaMemcpy(m, impl_->m, nParams_ * 4, cudaMemcpyDeviceToHost), "download optimizer state");
  cudaCheck(cudaMemcpy(v, impl_->v, nParams_ * 4, cudaMemcpyDeviceToHost), "download optimizer state");
}
void CudaModel::uploadFp8State(const Fp8ScalingState& s) {
  cudaCheck(cudaSetDevice(impl_->device), "cudaSetDevice");  // the calling thread may have another current device
  Impl& I = *impl_;
  if (s.n != I.nFp8 || s.history.size() != size_t(I.nFp8) * std::max(I.prec.recipe.historyLen, 1))
    throw InputError("FP8 scaling state has " + std::to_string(s.n) + " tensors x " + std::to_string(s.historyLen) +
                     " history; this model needs " + std::to_string(I.nFp8) + " x " +
                     std::to_string(I.prec.recipe.historyLen));
  cudaCheck(cudaStreamSynchronize(I.stream), "sync");
  cudaCheck(cudaMemcpy(I.scale, s.scale.data(), I.nFp8 * 4, cudaMemcpyHostToDevice), "upload FP8 state");
  cudaCheck(cudaMemcpy(I.scaleInv, s.scaleInv.data(), I.nFp8 * 4, cudaMemcpyHostToDevice), "upload FP8 state");
  cudaCheck(cudaMemcpy(I.amaxCur, s.amaxCur.data(), I.nFp8 * 4, cudaMemcpyHostToDevice), "upload FP8 state");
  cudaCheck(cudaMemcpy(I.history, s.history.data(), s.history.size() * 4, cudaMemcpyHostToDevice), "upload FP8 state");
}
void CudaModel::downloadFp8State(Fp8ScalingState& s) const {
  cudaCheck(cudaSetDevice(impl_->device), "cudaSetDevice");  // the calling thread may have another current device
  const Impl& I = *impl_;
  cudaCheck(cudaStreamSynchronize(I.stream), "sync");
  s.n = I.nFp8;
  s.historyLen = std::max(I.prec.recipe.historyLen, 1);
  s.scale.resize(I.nFp8);
  s.scaleInv.resize(I.nFp8);
  s.amaxCur.resize(I.nFp8);
  s.history.resize(size_t(I.nFp8) * s.historyLen);
  s.formats.resize(I.nFp8);
  cudaCheck(cudaMemcpy(s.scale.data(), I.scale, I.nFp8 * 4, cudaMemcpyDeviceToHost), "download FP8 state");
  cudaCheck(cudaMemcpy(s.scaleInv.data(), I.scaleInv, I.nFp8 * 4, cudaMemcpyDeviceToHost), "download FP8 state");
  cudaCheck(cudaMemcpy(s.amaxCur.data(), I.amaxCur, I.nFp8 * 4, cudaMemcpyDeviceToHost), "download FP8 state");
  cudaCheck(cudaMemcpy(s.history.data(), I.history, s.history.size() * 4, cudaMemcpyDeviceToHost),
            "download FP8 state");
  cudaCheck(cudaMemcpy(s.formats.data(), I.formats, I.nFp8, cudaMemcpyDeviceToHost), "download FP8 state");
}

static void checkBatch(const ModelConfig& c, bool fp8, const uint32_t* in, const int32_t* tg, int B, int T) {
  if (B <= 0 || T <= 0) throw InputError("batch and sequence length must be positive");
  const size_t R = size_t(B) * T;
  if (fp8 && R % 16 != 0)
    throw InputError("FP8 training needs batch_size x seq_len to be a multiple of 16, got " + std::to_string(R));
  for (size_t i = 0; i < R; i++) {
    if (in[i] >= uint32_t(c.vocabSize))
      throw InputError("token id " + std::to_string(in[i]) + " at position " + std::to_string(i) +
                       " is out of range for vocab_size " + std::to_string(c.vocabSize));
    if (tg[i] >= c.vocabSize)
      throw InputError("target id " + std::to_string(tg[i]) + " at position " + std::to_string(i) +
                       " is out of range for vocab_size " + std::to_string(c.vocabSize));
  }
}

TrainStepResult CudaModel::trainStep(const uint32_t* inputs, const int32_t* targets, const TrainStepOptions& o) {
  Impl& I = *impl_;
  cudaCheck(cudaSetDevice(I.device), "cudaSetDevice");
  const int B = o.batchSize, T = o.seqLen, R = B * T;
  if (o.accum < 1) throw InputError("grad_accum must be >= 1");
  for (int a = 0; a < o.accum; a++)
    checkBatch(cfg_, I.anyFp8(), inputs + size_t(a) * R, targets + size_t(a) * R, B, T);
  int64_t total = 0;
  for (size_t i = 0; i < size_t(R) * o.accum; i++) total += targets[i] >= 0;
  TrainStepResult r;
  r.tokens = total;
  if (total == 0) return r;
  I.ensureActivations(B, T);
  cudaCheck(cudaMemsetAsync(I.grads, 0, I.nParams * 4, I.stream), "zero gradients");
  I.prepareWeights();
  double lossSum = 0;
  for (int a = 0; a < o.accum; a++) {
    I.uploadTokens(inputs + size_t(a) * R, targets + size_t(a) * R, R);
    I.step(B, T, true, float(1.0 / double(total)));
    lossSum += I.downloadLossSum(R, targets + size_t(a) * R);
  }
  r.loss = lossSum / double(total);
  const OptimizerPlan plan = optimizerPlan(cfg_, I.layout, o);
  for (const auto& f : plan.frozen)
    cudaCheck(cudaMemsetAsync(I.grads + f.first, 0, f.second * 4, I.stream), "zero frozen gradients");
  check(sumSquares(I.sumsq, I.grads, I.nParams, I.sumsqScratch, false, I.stream));
  double sq = 0;
  cudaCheck(cudaMemcpyAsync(&sq, I.sumsq, sizeof(double), cudaMemcpyDeviceToHost, I.stream), "download norm");
  cudaCheck(cudaStreamSynchronize(I.stream), "training step");
  r.gradNorm = std::sqrt(sq);
  float scale = 1.f;
  if (o.gradClip > 0 && r.gradNorm > 0) scale = float(std::min(1.0, o.gradClip / (r.gradNorm + 1e-6)));
  for (const auto& u : plan.update)
    adamwUpdateDevice(I.params + u.offset, I.grads + u.offset, I.m + u.offset, I.v + u.offset, u.size, o.adam.lr,
                      o.adam.beta1, o.adam.beta2, o.adam.eps, u.step, u.decay ? o.weightDecay : 0.f, scale,
                      I.stream);
  check(checkLastError("adamwUpdateDevice"));
  if (I.anyFp8() && !I.prec.recipe.currentScaling) {
    const int L = std::max(I.prec.recipe.historyLen, 1);
    check(fp8ScalingUpdate(I.scale, I.scaleInv, I.amaxCur, I.history, I.formats, I.nFp8, L,
                           int((o.adam.step - 1) % L), I.prec.recipe.margin, I.prec.recipe.useMax, I.stream));
  }
  cudaCheck(cudaStreamSynchronize(I.stream), "optimizer step");
  return r;
}

double CudaModel::evalLoss(const uint32_t* inputs, const int32_t* targets, int B, int T, int64_t* count) {
  Impl& I = *impl_;
  cudaCheck(cudaSetDevice(I.device), "cudaSetDevice");
  if (B <= 0 || T <= 0) throw InputError("batch and sequence length must be positive");
  // FP8 GEMMs need a multiple of 16 rows: pad each sequence at its end with ignored positions (causal
  // attention keeps them from changing the real ones).
  const int Tp = I.anyFp8() ? (T + 15) / 16 * 16 : T;
  std::vector<uint32_t> in(size_t(B) * Tp, 0);
  std::vector<int32_t> tg(size_t(B) * Tp, -1);
  for (int b = 0; b < B; b++) {
    std::copy(inputs + size_t(b) * T, inputs + size_t(b + 1) * T, in.begin() + size_t(b) * Tp);
    std::copy(targets + size_t(b) * T, targets + size_t(b + 1) * T, tg.begin() + size_t(b) * Tp);
  }
  checkBatch(cfg_, I.anyFp8(), in.data(), tg.data(), B, Tp);
  const int R = B * Tp;
  I.ensureActivations(B, Tp);
  // Evaluation must not leak into the next step's delayed-scaling amaxes.
  cudaCheck(cudaMemcpyAsync(I.amaxSaved, I.amaxCur, I.nFp8 * 4, cudaMemcpyDeviceToDevice, I.stream), "save amax");
  I.prepareWeights();
  I.uploadTokens(in.data(), tg.data(), R);
  I.step(B, Tp, false, 0.f);
  cudaCheck(cudaMemcpyAsync(I.amaxCur, I.amaxSaved, I.nFp8 * 4, cudaMemcpyDeviceToDevice, I.stream), "restore amax");
  int64_t n = 0;
  for (int i = 0; i < R; i++) n += tg[i] >= 0;
  if (count) *count = n;
  return I.downloadLossSum(R, tg.data());
}

size_t CudaModel::deviceBytes() const { return impl_->bytes; }

}  // namespace ko::cuda
