// test_cuda_model.cpp — group `cuda`: the whole training step on the GPU (ko::cuda::CudaModel) against the
// CPU emulation of the same precision (ko::Model + ko::trainStep), from the same weights on the same batch.
// Both round activations to BF16 and cast to FP8 at the same points; what differs is summation order inside
// GEMMs and attention, so the comparison is by relative error, loosest for FP8.
#ifdef KO_CUDA
#include <cmath>
#include <vector>

#include "check.h"
#include "cuda_model.h"
#include "cuda_test_util.h"
#include "kernels.h"
#include "model.h"

using namespace ko;

namespace {

ModelConfig parityConfig(ModelType t) {
  ModelConfig c;
  c.type = t;
  c.vocabSize = 512;
  c.hiddenSize = 128;
  c.numLayers = 2;
  c.numHeads = 4;
  c.numKvHeads = 2;
  c.headDim = 64;  // Hq*D = 256 != hidden: catches layout mistakes
  c.intermediateSize = 256;
  c.ropeTheta = 10000.f;
  c.rmsNormEps = 1e-5f;
  c.tieWordEmbeddings = t == ModelType::Qwen3;
  return c;
}

void requireGpuAndLt(bool fp8) {
  const auto d = kocuda::deviceOrSkip();
  if (d.ccMajor * 10 + d.ccMinor < (fp8 ? 89 : 80)) KO_SKIP(d.name + " lacks " + (fp8 ? "FP8" : "BF16") + " tensor cores");
  const std::string lt = cuda::cublasLtLoad();
  if (!lt.empty()) KO_SKIP("cuBLASLt not available: " + lt);
}

void parity(ModelType type, Precision prec, double lossTol, double updateTol) {
  requireGpuAndLt(prec == Precision::FP8);
  const ModelConfig c = parityConfig(type);
  const size_t n = paramCount(c);
  std::vector<float> p0(n);
  initParams(c, p0.data(), 21, 0.05f);
  const int B = 2, T = 48, steps = 3;
  std::vector<uint32_t> in(size_t(steps) * B * T);
  std::vector<int32_t> tg(in.size());
  Rng r(5);
  for (size_t i = 0; i < in.size(); i++) {
    in[i] = uint32_t(r.next() % c.vocabSize);
    tg[i] = i % 17 == 3 ? -1 : int32_t(r.next() % c.vocabSize);  // some ignored targets
  }
  PrecisionOptions po;
  po.precision = prec;
  po.recipe.historyLen = 4;

  std::vector<float> pc = p0, g(n), m(n, 0.f), v(n, 0.f);
  Model cpu(c, pc.data());
  cpu.setPrecision(po);
  cuda::CudaModel gpu(c, 0, po);
  gpu.uploadParams(p0.data());
  for (int s = 0; s < steps; s++) {
    TrainStepOptions o;
    o.batchSize = B;
    o.seqLen = T;
    o.gradClip = 1.f;
    o.weightDecay = 0.1f;
    o.adam = AdamWParams{1e-3f, 0.9f, 0.95f, 1e-8f, s + 1};
    const size_t off = size_t(s) * B * T;
    const TrainStepResult rc = trainStep(cpu, g.data(), m.data(), v.data(), in.data() + off, tg.data() + off, o);
    const TrainStepResult rg = gpu.trainStep(in.data() + off, tg.data() + off, o);
    std::printf("  step %d: loss cpu %.6f gpu %.6f | grad norm cpu %.5f gpu %.5f\n", s + 1, rc.loss, rg.loss,
                rc.gradNorm, rg.gradNorm);
    KO_CHECK(rg.tokens == rc.tokens);
    KO_CHECK(std::isfinite(rg.loss));
    KO_CHECK_MSG(std::fabs(rg.loss - rc.loss) / rc.loss < lossTol, "loss differs at step " + std::to_string(s + 1));
    KO_CHECK_MSG(std::fabs(rg.gradNorm - rc.gradNorm) / rc.gradNorm < 10 * lossTol,
                 "grad norm differs at step " + std::to_string(s + 1));
  }
  // The parameter updates (p - p0) agree.
  std::vector<float> pg(n), du(n), dc(n);
  gpu.downloadParams(pg.data());
  for (size_t i = 0; i < n; i++) {
    du[i] = pg[i] - p0[i];
    dc[i] = pc[i] - p0[i];
  }
  const double err = kotest::relError(du.data(), dc.data(), n);
  std::printf("  update rel error %.3g\n", err);
  KO_CHECK(err < updateTol);
  // Evaluation of a sequence whose length is not a multiple of 16 (the GPU pads FP8 batches) matches the CPU.
  {
    const int Te = 37;
    int64_t cc = 0, cg = 0;
    const double lc = cpu.forward(in.data(), tg.data(), 1, Te, &cc);
    const double lg = gpu.evalLoss(in.data(), tg.data(), 1, Te, &cg);
    std::printf("  eval T=%d: cpu %.6f gpu %.6f\n", Te, lc / double(cc), lg / double(cg));
    KO_CHECK(cc == cg);
    KO_CHECK(std::fabs(lg - lc) / lc < lossTol);
  }
  if (prec == Precision::FP8) {
    // Step 1's weight amaxes come from the same FP32 weights: the recorded history slot 0 matches exactly.
    Fp8ScalingState st;
    gpu.downloadFp8State(st);
    const Fp8ScalingState& sc = cpu.fp8State();
    for (int i = 0; i < numLinearSites(c); i++)
      KO_CHECK_MSG(st.history[3 * i + kFp8Weight] == sc.history[3 * i + kFp8Weight],
                   "weight amax of site " + std::to_string(i));
    for (int t = 0; t < st.n; t++) KO_CHECK(std::fabs(st.scale[t] - sc.scale[t]) <= 0.05f * sc.scale[t]);
  }
}

}  // namespace

KO_TEST(cuda, cuda_model_bf16_step_matches_cpu_emulation_llama) { parity(ModelType::Llama, Precision::BF16, 2e-3, 5e-2); }
KO_TEST(cuda, cuda_model_bf16_step_matches_cpu_emulation_qwen3) { parity(ModelType::Qwen3, Precision::BF16, 2e-3, 5e-2); }
KO_TEST(cuda, cuda_model_fp8_step_matches_cpu_emulation_qwen3) { parity(ModelType::Qwen3, Precision::FP8, 5e-3, 1e-1); }

KO_TEST(cuda, cuda_model_rejects_bad_input) {
  requireGpuAndLt(false);
  const ModelConfig c = parityConfig(ModelType::Llama);
  PrecisionOptions po;
  po.precision = Precision::BF16;
  cuda::CudaModel gpu(c, 0, po);
  std::vector<uint32_t> in(32, 1);
  std::vector<int32_t> tg(32, 1);
  in[7] = uint32_t(c.vocabSize);
  TrainStepOptions o;
  o.batchSize = 2;
  o.seqLen = 16;
  o.adam = AdamWParams{1e-3f, 0.9f, 0.95f, 1e-8f, 1};
  bool threw = false;
  try {
    gpu.trainStep(in.data(), tg.data(), o);
  } catch (const InputError& e) {
    threw = std::string(e.what()).find("position 7") != std::string::npos;
  }
  KO_CHECK(threw);
  threw = false;
  try {
    cuda::CudaModel bad(c, 99, po);
  } catch (const InputError& e) {
    threw = std::string(e.what()).find("cuda:99") != std::string::npos;
  }
  KO_CHECK(threw);
}
#endif
