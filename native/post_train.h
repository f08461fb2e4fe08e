// post_train.h — the losses of post-training on top of Model: DPO (Rafailov et al. 2023, sigmoid loss with
// label smoothing as in TRL) and knowledge distillation (Hinton et al. 2015: alpha · tau² · KL(teacher ∥ student)
// at temperature tau + (1 − alpha) · cross-entropy). SFT needs nothing new: it is trainStep with masked targets
// and packed positions.
#pragma once
#include <cstddef>
#include <cstdint>

#include "model.h"

namespace ko {

// ---- DPO ------------------------------------------------------------------------------------------------
// For one pair, with sequence log-probabilities (sums over the response tokens) of the policy (pc, pr) and
// of the frozen reference (rc, rr):
//   z = beta · ((pc − pr) − (rc − rr)),  loss = −(1 − ls) · log σ(z) − ls · log σ(−z)
// dChosen = dloss/dpc, dRejected = dloss/dpr; rewards are beta · (policy − reference).
struct DpoPair {
  double loss = 0, dChosen = 0, dRejected = 0, chosenReward = 0, rejectedReward = 0;
};
DpoPair dpoPairLoss(double pc, double pr, double rc, double rr, double beta, double labelSmoothing);

// Per-row log-probabilities sum_t log p(target_t) of the last forward (rows of T positions, ignored targets
// skipped).
void rowLogps(const Model& model, int rows, int T, double* out);

struct DpoOptions {
  double beta = 0.1, labelSmoothing = 0.0;
};
struct DpoStepResult {
  double loss = 0, gradNorm = 0;
  double chosenLogp = 0, rejectedLogp = 0;  // policy, mean over the step's pairs
  double margin = 0, accuracy = 0;          // mean reward margin, share of pairs with chosen reward > rejected
  double chosenReward = 0, rejectedReward = 0;
  int64_t tokens = 0;
};
// One optimizer step over o.accum micro-batches of o.batchSize PAIRS: each micro-batch is 2·batchSize rows of
// seqLen, interleaved [chosen_0, rejected_0, chosen_1, ...], targets −1 outside the responses. refLogps
// [2 · batchSize · accum] are the reference model's row log-probs in the same order. The loss is the mean over
// the step's pairs; its gradient reaches each response token's cross-entropy with weight −dloss/dlogp.
DpoStepResult dpoTrainStep(Model& model, float* grads, float* m, float* v, const uint32_t* inputs,
                           const int32_t* targets, const double* refLogps, const TrainStepOptions& o,
                           const DpoOptions& d);

// ---- Distillation ---------------------------------------------------------------------------------------
struct DistillOptions {
  float alpha = 0.5f, temperature = 2.0f;
};
// The teacher's distribution for each position: full logits [n, V], or its top k (ids and logits [n, k]; the
// distribution is renormalised over those k, at the temperature).
struct TeacherLogits {
  const float* full = nullptr;
  const uint32_t* topIds = nullptr;
  const float* topLogits = nullptr;
  int k = 0;
};
// In place on the student's logits z [n, V]: for every position with target >= 0,
//   loss = alpha · tau² · KL(p_t^tau ∥ p_s^tau) + (1 − alpha) · CE(z, target)
//   dz   = scale · (alpha · tau · (p_s^tau − p_t^tau) + (1 − alpha) · (softmax(z) − onehot(target)))
// (positions with target < 0 get dz = 0). Adds the summed KL (at tau, without the tau² factor) and CE to *kl
// and *ce.
void distillLogitGrad(float* z, const TeacherLogits& teacher, const int32_t* targets, int n, int V,
                      const DistillOptions& d, float scale, double* kl, double* ce);

struct DistillStepResult {
  double loss = 0, gradNorm = 0, kl = 0, ce = 0;  // means per target token
  int64_t tokens = 0;
};
// One optimizer step: the teacher runs forward on the same micro-batch (teacher != nullptr), or its top-k
// logits come precomputed (topIds/topLogits: [accum · batchSize · seqLen, k]).
DistillStepResult distillTrainStep(Model& student, Model* teacher, float* grads, float* m, float* v,
                                   const uint32_t* inputs, const int32_t* targets, const int32_t* positions,
                                   const uint32_t* topIds, const float* topLogits, int k,
                                   const TrainStepOptions& o, const DistillOptions& d);

// Held-out distillation metrics without training: summed KL(p_t^tau ∥ p_s^tau) and CE of the student over the
// non-ignored targets of rows [rows, T] (run in chunks of a few rows), *count their number.
void distillEval(Model& student, Model& teacher, const uint32_t* inputs, const int32_t* targets, int rows, int T,
                 float temperature, double* kl, double* ce, int64_t* count);

// Top-k logits of every position of the last forward(): ids [rows, k] by descending logit (ties: lower id
// first), logits [rows, k].
void topkOfLogits(const float* logits, size_t rows, int V, int k, uint32_t* ids, float* vals);

}  // namespace ko
