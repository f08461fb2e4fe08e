// model_decode.cpp — KV-cache decoding on the CPU in FP32 (generation, chat and the eval harness's greedy
// generation). Kept apart from the training forward/backward in model.cpp.
//
// A call runs n rows through the model at once, so every linear layer is one GEMM over n rows instead of n
// matrix-vector products: that is what makes batched sampling and prompt prefill cheap (the weights are read
// once per call, not once per row). Rows belong to cache slots; a row writes its key/value at its position in
// its slot, then attends to that slot's positions 0..pos. All rows' keys/values of a layer are written before
// that layer's attention runs, so rows of the same slot at consecutive positions (a prompt) see each other
// exactly as the causal forward pass would.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "model.h"

namespace ko {

void Model::decodeReset(int maxT, int batch) {
  if (maxT <= 0) throw InputError("decode length must be positive");
  if (batch <= 0) throw InputError("decode batch must be positive");
  const size_t L = cfg_.numLayers, KV = size_t(cfg_.numKvHeads) * cfg_.headDim;
  cacheT_ = maxT;
  cacheB_ = batch;
  cacheLen_.assign(batch, 0);
  // Zeroed so that nothing uninitialised is ever read, though cacheLen_ keeps reads inside written positions.
  kCache_.assign(L * batch * maxT * KV, 0.f);
  vCache_.assign(L * batch * maxT * KV, 0.f);
}

// Rotates n rows of H heads (row stride `stride`) by per-row angles: cs[row] holds cos[D/2] then sin[D/2].
// Same arithmetic as ropeApply, whose table is per time step rather than per row.
static void ropeRows(float* x, int n, int H, int D, int stride, const float* cs) {
  const int half = D / 2;
  for (int r = 0; r < n; r++) {
    const float* cosv = cs + size_t(r) * D;
    const float* sinv = cosv + half;
    for (int h = 0; h < H; h++) {
      float* x1 = x + size_t(r) * stride + size_t(h) * D;
      float* x2 = x1 + half;
      for (int i = 0; i < half; i++) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * cosv[i] - b * sinv[i];
        x2[i] = b * cosv[i] + a * sinv[i];
      }
    }
  }
}

const float* Model::decodeBatch(const uint32_t* tokens, const int32_t* pos, int n, const int32_t* slots) {
  if (n <= 0) throw InputError("decode needs at least one row");
  for (int i = 0; i < n; i++)
    if (pos[i] < 0 || pos[i] >= cacheT_)
      throw InputError("decode position " + std::to_string(pos[i]) + " (row " + std::to_string(i) +
                       ") outside the KV cache of " + std::to_string(cacheT_) + " tokens");
  // Each slot's rows must continue its cached positions without a gap (a gap would attend to keys never
  // written) and count up by 1 within the call (two rows writing one position would race).
  std::vector<int32_t> next(cacheLen_.begin(), cacheLen_.end()), seen(cacheB_, 0);
  for (int i = 0; i < n; i++) {
    const int s = slots ? slots[i] : i;
    if (s < 0 || s >= cacheB_)
      throw InputError("decode slot " + std::to_string(s) + " (row " + std::to_string(i) + ") outside the " +
                       std::to_string(cacheB_) + " slots of the KV cache");
    const bool first = !seen[s];
    if (first ? pos[i] > next[s] : pos[i] != next[s])
      throw InputError("decode position " + std::to_string(pos[i]) + " (row " + std::to_string(i) + ", slot " +
                       std::to_string(s) + ") must be " + (first ? "at most " : "") + std::to_string(next[s]) +
                       (first ? ", the positions the slot holds" : ", one after the slot's previous row"));
    seen[s] = 1;
    next[s] = pos[i] + 1;
  }
  checkTokens(tokens, nullptr, size_t(n));

  const int H = cfg_.hiddenSize, D = cfg_.headDim, Hq = cfg_.numHeads, Hkv = cfg_.numKvHeads,
            F = cfg_.intermediateSize, V = cfg_.vocabSize, L = cfg_.numLayers;
  const size_t KV = size_t(Hkv) * D, QD = size_t(Hq) * D, N = size_t(n);
  const float eps = cfg_.rmsNormEps;
  const float* P = params_;
  decX_.resize(N * H);
  decLn_.resize(N * H);
  decTmp_.resize(N * H);
  decQ_.resize(N * QD);
  decK_.resize(N * KV);
  decV_.resize(N * KV);
  decAtt_.resize(N * QD);
  decGu_.resize(N * 2 * F);
  decH_.resize(N * F);
  decRope_.resize(N * D);
  decLogits_.resize(N * V);
  decRstd_.resize(N * Hq);
  // Rows' slot and the offset of (slot, pos) in a layer's cache.
  std::vector<int32_t> slotOf(n);
  std::vector<size_t> cacheRow(n);
  int maxPos = 0;
  for (int i = 0; i < n; i++) {
    slotOf[i] = slots ? slots[i] : i;
    cacheRow[i] = (size_t(slotOf[i]) * cacheT_ + pos[i]) * KV;
    maxPos = std::max(maxPos, int(pos[i]));
  }
  const size_t layerStride = size_t(cacheB_) * cacheT_ * KV;

  // cos/sin per row once, shared by q and k of every layer (angle formed in float as in ropeApply / HF).
  const int half = D / 2;
  for (int i = 0; i < n; i++) {
    float* cs = decRope_.data() + size_t(i) * D;
    const float p = float(pos[i]);
    for (int j = 0; j < half; j++) {
      const float angle = p * invFreq_[j];
      cs[j] = float(std::cos(double(angle)));
      cs[half + j] = float(std::sin(double(angle)));
    }
  }

  for (int i = 0; i < n; i++) std::memcpy(decX_.data() + size_t(i) * H, P + embedOff_ + size_t(tokens[i]) * H, H * sizeof(float));
  for (int l = 0; l < L; l++) {
    const LayerWeights& w = layers_[l];
    float* kc = kCache_.data() + size_t(l) * layerStride;
    float* vc = vCache_.data() + size_t(l) * layerStride;
    rmsnormForward(decLn_.data(), decRstd_.data(), decX_.data(), P + w.inNormOff, n, H, eps);
    linearForward(decQ_.data(), decLn_.data(), P + w.qOff, n, H, int(QD));
    linearForward(decK_.data(), decLn_.data(), P + w.kOff, n, H, int(KV));
    linearForward(decV_.data(), decLn_.data(), P + w.vOff, n, H, int(KV));
    if (cfg_.type == ModelType::Qwen3) {  // per-head RMSNorm of q and k before RoPE (decAtt_ as scratch)
      std::memcpy(decAtt_.data(), decQ_.data(), N * QD * sizeof(float));
      rmsnormForward(decQ_.data(), decRstd_.data(), decAtt_.data(), P + w.qNormOff, n * Hq, D, eps);
      std::memcpy(decAtt_.data(), decK_.data(), N * KV * sizeof(float));
      rmsnormForward(decK_.data(), decRstd_.data(), decAtt_.data(), P + w.kNormOff, n * Hkv, D, eps);
    }
    ropeRows(decQ_.data(), n, Hq, D, int(QD), decRope_.data());
    ropeRows(decK_.data(), n, Hkv, D, int(KV), decRope_.data());
    for (int i = 0; i < n; i++) {
      std::memcpy(kc + cacheRow[i], decK_.data() + size_t(i) * KV, KV * sizeof(float));
      std::memcpy(vc + cacheRow[i], decV_.data() + size_t(i) * KV, KV * sizeof(float));
    }
    // Single-query attention of every (row, head) over its slot's cache; one (row, head) per iteration, so
    // each output is summed by one thread in a fixed order whatever the thread count.
    const float scale = 1.f / std::sqrt(float(D));
    const int group = Hq / Hkv;
#pragma omp parallel
    {
      std::vector<float> sc(size_t(maxPos) + 1);
#pragma omp for schedule(static)
      for (int rh = 0; rh < n * Hq; rh++) {
        const int i = rh / Hq, h = rh % Hq, kvh = h / group, T = pos[i] + 1;
        const float* q = decQ_.data() + size_t(i) * QD + size_t(h) * D;
        const float* kb = kc + size_t(slotOf[i]) * cacheT_ * KV + size_t(kvh) * D;
        const float* vb = vc + size_t(slotOf[i]) * cacheT_ * KV + size_t(kvh) * D;
        float mx = -INFINITY;
        for (int j = 0; j < T; j++) {
          const float* k = kb + size_t(j) * KV;
          float s = 0;
          for (int d = 0; d < D; d++) s += q[d] * k[d];
          sc[j] = s * scale;
          mx = std::max(mx, sc[j]);
        }
        float sum = 0;
        for (int j = 0; j < T; j++) sum += (sc[j] = std::exp(sc[j] - mx));
        float* o = decAtt_.data() + size_t(i) * QD + size_t(h) * D;
        std::fill(o, o + D, 0.f);
        for (int j = 0; j < T; j++) {
          const float* v = vb + size_t(j) * KV;
          const float p = sc[j] / sum;
          for (int d = 0; d < D; d++) o[d] += p * v[d];
        }
      }
    }
    linearForward(decTmp_.data(), decAtt_.data(), P + w.oOff, n, int(QD), H);
    for (size_t e = 0; e < N * H; e++) decX_[e] += decTmp_[e];
    rmsnormForward(decLn_.data(), decRstd_.data(), decX_.data(), P + w.postNormOff, n, H, eps);
    linearForward(decGu_.data(), decLn_.data(), P + w.gateUpOff, n, H, 2 * F);
    swigluForward(decH_.data(), decGu_.data(), n, F);
    linearForward(decTmp_.data(), decH_.data(), P + w.downOff, n, F, H);
    for (size_t e = 0; e < N * H; e++) decX_[e] += decTmp_[e];
  }
  rmsnormForward(decLn_.data(), decRstd_.data(), decX_.data(), P + normOff_, n, H, eps);
  linearForward(decLogits_.data(), decLn_.data(), P + lmHeadOff_, n, H, V);
  // A slot now holds exactly the positions up to its last row: later ones belonged to an overwritten history.
  for (int i = 0; i < n; i++) cacheLen_[slotOf[i]] = pos[i] + 1;
  return decLogits_.data();
}

}  // namespace ko
