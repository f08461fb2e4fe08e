// bench_cuda_train.cpp — end-to-end training on the GPU without Node: the Qwen3-0.6B shape (or fewer
// layers) trained on a token file in BF16 and in FP8 from the same initial weights on the same batches,
// printing tokens/s and MFU per precision and writing metrics-<precision>.jsonl for the loss comparison.
//
//   ko_bench --train-cuda TOKENS.bin [--steps 200] [--batch 4] [--seq 2048] [--precisions bf16,fp8]
//            [--out DIR] [--layers 28] [--lr 3e-4] [--warmup 20] [--peak-tflops 989] [--log-every 10]
//
// TOKENS.bin is raw little-endian uint32 token ids (e.g. written by bench/gpu/make-tokens.mjs from prep
// shards); ids >= the vocabulary (151,936) are an error. Batches are consecutive windows of seq+1 tokens,
// wrapping around the file, identical for every precision.
#ifdef KO_CUDA
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bench_cuda.h"
#include "cuda_model.h"
#include "model.h"

namespace kobench {

namespace {

ko::ModelConfig qwen3_0_6b(int layers) {
  ko::ModelConfig c;
  c.type = ko::ModelType::Qwen3;
  c.vocabSize = 151936;
  c.hiddenSize = 1024;
  c.numLayers = layers;
  c.numHeads = 16;
  c.numKvHeads = 8;
  c.headDim = 128;
  c.intermediateSize = 3072;
  c.ropeTheta = 1000000.f;
  c.rmsNormEps = 1e-6f;
  c.tieWordEmbeddings = true;
  return c;
}

// Linear warmup then cosine to lr/10, as ko-train's default schedule.
float lrAt(int step, int steps, int warmup, float lr) {
  if (step < warmup) return lr * float(step + 1) / float(warmup);
  const double t = double(step - warmup) / std::max(1, steps - warmup);
  return float(lr * 0.1 + 0.5 * (lr - lr * 0.1) * (1 + std::cos(M_PI * t)));
}

}  // namespace

int benchCudaTrain(int argc, char** argv) {
  std::string tokensFile, outDir = ".", precisions = "bf16,fp8";
  int steps = 200, B = 4, T = 2048, layers = 28, warmup = 20, logEvery = 10;
  float lr = 3e-4f;
  double peakTflops = 989;  // H100 SXM dense BF16
  for (int i = 1; i < argc; i++) {
    auto next = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ko_bench: %s needs a value\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--train-cuda")) tokensFile = next("--train-cuda");
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(next("--steps"));
    else if (!std::strcmp(argv[i], "--batch")) B = std::atoi(next("--batch"));
    else if (!std::strcmp(argv[i], "--seq")) T = std::atoi(next("--seq"));
    else if (!std::strcmp(argv[i], "--layers")) layers = std::atoi(next("--layers"));
    else if (!std::strcmp(argv[i], "--warmup")) warmup = std::atoi(next("--warmup"));
    else if (!std::strcmp(argv[i], "--log-every")) logEvery = std::atoi(next("--log-every"));
    else if (!std::strcmp(argv[i], "--lr")) lr = float(std::atof(next("--lr")));
    else if (!std::strcmp(argv[i], "--peak-tflops")) peakTflops = std::atof(next("--peak-tflops"));
    else if (!std::strcmp(argv[i], "--precisions")) precisions = next("--precisions");
    else if (!std::strcmp(argv[i], "--out")) outDir = next("--out");
    else {
      std::fprintf(stderr, "ko_bench --train-cuda: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (steps <= 0 || B <= 0 || T <= 0 || layers <= 0 || logEvery <= 0) {
    std::fprintf(stderr, "ko_bench --train-cuda: steps, batch, seq, layers and log-every must be positive\n");
    return 2;
  }
  std::ifstream f(tokensFile, std::ios::binary | std::ios::ate);
  if (!f) {
    std::fprintf(stderr, "ko_bench: cannot read %s\n", tokensFile.c_str());
    return 2;
  }
  const size_t bytes = size_t(f.tellg());
  if (bytes % 4 != 0 || bytes / 4 < size_t(T) + 1) {
    std::fprintf(stderr, "ko_bench: %s: %zu bytes is not a uint32 stream of at least seq+1 tokens\n",
                 tokensFile.c_str(), bytes);
    return 2;
  }
  std::vector<uint32_t> tokens(bytes / 4);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(tokens.data()), std::streamsize(bytes));

  const ko::ModelConfig cfg = qwen3_0_6b(layers);
  const size_t n = ko::paramCount(cfg);
  std::vector<float> init(n);
  ko::initParams(cfg, init.data(), 1234, 0.02f);
  const double flopsPerToken = 3 * ko::forwardFlopsPerToken(cfg, T);
  const size_t R = size_t(B) * T;
  std::printf("qwen3 shape: %d layers, %.1f M params, batch %d x %d, %zu tokens in %s, %d steps\n", layers,
              double(n) / 1e6, B, T, tokens.size(), tokensFile.c_str(), steps);

  struct Result {
    std::string precision;
    double tokPerS, msPerStep, mfu, lastLoss;
  };
  std::vector<Result> results;
  size_t start = 0;
  while (start < precisions.size()) {
    size_t comma = precisions.find(',', start);
    if (comma == std::string::npos) comma = precisions.size();
    const std::string name = precisions.substr(start, comma - start);
    start = comma + 1;
    ko::PrecisionOptions po;
    if (name == "bf16") po.precision = ko::Precision::BF16;
    else if (name == "fp8") po.precision = ko::Precision::FP8;
    else {
      std::fprintf(stderr, "ko_bench: precision %s is not bf16 or fp8\n", name.c_str());
      return 2;
    }
    std::vector<float> params = init;
    double msTotal = 0, lastLoss = NAN;
    int timed = 0;
    try {
      ko::cuda::CudaModel model(cfg, 0, po);
      model.uploadParams(params.data());
      std::printf("%s: %s, %.2f GiB of device memory before activations\n", name.c_str(),
                  model.deviceName().c_str(), double(model.deviceBytes()) / (1u << 30));
      const std::string metrics = outDir + "/metrics-" + name + ".jsonl";
      FILE* mf = std::fopen(metrics.c_str(), "w");
      if (!mf) {
        std::fprintf(stderr, "ko_bench: cannot write %s\n", metrics.c_str());
        return 2;
      }
      std::vector<uint32_t> in(R);
      std::vector<int32_t> tg(R);
      for (int s = 0; s < steps; s++) {
        for (int b = 0; b < B; b++) {
          const size_t base = ((size_t(s) * B + b) * (T + 1)) % (tokens.size() - T);
          for (int t = 0; t < T; t++) {
            in[size_t(b) * T + t] = tokens[base + t];
            tg[size_t(b) * T + t] = int32_t(tokens[base + t + 1]);
          }
        }
        ko::TrainStepOptions o;
        o.batchSize = B;
        o.seqLen = T;
        o.adam = ko::AdamWParams{lrAt(s, steps, warmup, lr), 0.9f, 0.95f, 1e-8f, s + 1};
        o.weightDecay = 0.1f;
        o.gradClip = 1.f;
        const auto t0 = std::chrono::steady_clock::now();
        const ko::TrainStepResult r = model.trainStep(in.data(), tg.data(), o);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (s >= 2) {  // the first steps allocate and pick cuBLASLt plans
          msTotal += ms;
          timed++;
        }
        lastLoss = r.loss;
        const double tps = double(R) * 1000 / ms;
        std::fprintf(mf, "{\"step\":%d,\"loss\":%.6f,\"grad_norm\":%.6f,\"ms\":%.3f,\"tokens_per_s\":%.1f}\n", s + 1,
                     r.loss, r.gradNorm, ms, tps);
        if ((s + 1) % logEvery == 0 || s == 0)
          std::printf("  %s step %d/%d | loss %.4f | grad norm %.3f | %.1f ms | %.0f tok/s | MFU %.1f%%\n",
                      name.c_str(), s + 1, steps, r.loss, r.gradNorm, ms, tps,
                      100 * tps * flopsPerToken / (peakTflops * 1e12));
        if (!std::isfinite(r.loss)) {
          std::fprintf(stderr, "  %s: loss is not finite at step %d\n", name.c_str(), s + 1);
          break;
        }
      }
      std::fclose(mf);
    } catch (const std::exception& e) {
      std::printf("%s: FAILED: %s\n", name.c_str(), e.what());
      results.push_back({name, 0, 0, 0, NAN});
      continue;
    }
    const double msPerStep = timed ? msTotal / timed : NAN;
    const double tps = double(R) * 1000 / msPerStep;
    results.push_back({name, tps, msPerStep, tps * flopsPerToken / (peakTflops * 1e12), lastLoss});
  }
  std::printf("\nend to end (steps 3..%d timed), MFU against %.0f TFLOP/s dense BF16\n", steps, peakTflops);
  std::printf("%-9s | %10s | %9s | %6s | %9s\n", "precision", "tokens/s", "ms/step", "MFU", "last loss");
  for (const auto& r : results)
    std::printf("%-9s | %10.0f | %9.1f | %5.1f%% | %9.4f\n", r.precision.c_str(), r.tokPerS, r.msPerStep,
                100 * r.mfu, r.lastLoss);
  if (results.size() == 2 && results[0].tokPerS > 0)
    std::printf("%s / %s tokens/s: %.2fx\n", results[1].precision.c_str(), results[0].precision.c_str(),
                results[1].tokPerS / results[0].tokPerS);
  return 0;
}

}  // namespace kobench
#endif
