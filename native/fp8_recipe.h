// fp8_recipe.h — per-tensor FP8 scaling as in NVIDIA Transformer Engine's DelayedScaling, on the CPU.
// The CUDA twin is fp8ScalingUpdate (kernels/kernels.h); both keep the same arrays, so the state can be
// checkpointed and moved between devices as it is.
//
// Each scaled tensor i (a linear layer's input, weight or output gradient) has a scale, its inverse, the
// amax seen during the current optimizer step (the max over every cast of it, all micro-batches) and a
// history of the last `historyLen` steps' amaxes. After each optimizer step:
//   history[pos][i] = amaxCur[i];  amax = max(history[.][i]) ("max") or amaxCur[i] ("most_recent")
//   scale[i] = (fp8Max / amax) / 2^margin   when amax is finite and > 0, else unchanged
//   scaleInv[i] = 1 / scale[i];  amaxCur[i] = 0
// with pos = step % historyLen. Initial scales are 1. "Current" scaling (no history) computes the scale
// from the tensor's own amax just before each cast: scaleFromAmax(amax(x), 1, ...).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "lowp.h"

namespace ko {

struct Fp8Recipe {
  int historyLen = 1024;  // Transformer Engine's default amax_history_len
  int margin = 0;
  bool useMax = true;          // amax_compute_algo "max" (true) or "most_recent"
  bool currentScaling = false; // scale from the tensor's current amax instead of the history
};

// FP32 arithmetic in this order, as the CUDA kernel does it.
inline float fp8ScaleFromAmax(float amax, float previous, Fp8Format f, int margin) {
  if (!(amax > 0.f) || !std::isfinite(amax)) return previous;
  return (fp8Max(f) / amax) / std::ldexp(1.0f, margin);
}

struct Fp8ScalingState {
  int n = 0, historyLen = 1;
  std::vector<float> scale, scaleInv, amaxCur, history;  // history [historyLen, n]
  std::vector<uint8_t> formats;                          // Fp8Format per tensor

  void init(const std::vector<Fp8Format>& fmts, int histLen) {
    n = int(fmts.size());
    historyLen = histLen > 0 ? histLen : 1;
    formats.assign(n, 0);
    for (int i = 0; i < n; i++) formats[i] = uint8_t(fmts[i]);
    scale.assign(n, 1.f);
    scaleInv.assign(n, 1.f);
    amaxCur.assign(n, 0.f);
    history.assign(size_t(historyLen) * n, 0.f);
  }
  void record(int i, float amax) {
    if (amax > amaxCur[i]) amaxCur[i] = amax;
  }
  // After optimizer step `step` (0-based count of completed updates before this one).
  void update(int64_t step, int margin, bool useMax) {
    const int pos = int(step % historyLen);
    for (int i = 0; i < n; i++) {
      history[size_t(pos) * n + i] = amaxCur[i];
      float amax = amaxCur[i];
      if (useMax)
        for (int h = 0; h < historyLen; h++) amax = std::fmax(amax, history[size_t(h) * n + i]);
      scale[i] = fp8ScaleFromAmax(amax, scale[i], Fp8Format(formats[i]), margin);
      scaleInv[i] = 1.f / scale[i];
      amaxCur[i] = 0.f;
    }
  }
};

}  // namespace ko
