// model_fixtures.h — the tiny model shapes and random batches shared by the whole-model C++ tests.
#pragma once
#include <cstdint>
#include <vector>

#include "model.h"
#include "rng.h"

namespace kotest {

// 4 query heads over 2 KV heads; for Qwen3 Hq*D != hidden, to catch layout mistakes. Qwen3 ties embeddings.
inline ko::ModelConfig gqaTestConfig(ko::ModelType t, int vocab) {
  ko::ModelConfig c;
  c.type = t;
  c.vocabSize = vocab;
  c.hiddenSize = 24;
  c.numLayers = 2;
  c.numHeads = 4;
  c.numKvHeads = 2;
  c.headDim = t == ko::ModelType::Qwen3 ? 8 : 6;
  c.intermediateSize = 40;
  c.ropeTheta = 10000.f;
  c.rmsNormEps = 1e-5f;
  c.tieWordEmbeddings = t == ko::ModelType::Qwen3;
  return c;
}

// Hidden 16, 2 query heads over 1 KV head: cheap enough for finite differences through the whole model.
inline ko::ModelConfig narrowTestConfig(ko::ModelType t, int vocab) {
  ko::ModelConfig c;
  c.type = t;
  c.vocabSize = vocab;
  c.hiddenSize = 16;
  c.numLayers = 2;
  c.numHeads = 2;
  c.numKvHeads = 1;
  c.headDim = 8;
  c.intermediateSize = 24;
  c.ropeTheta = 10000.f;
  c.rmsNormEps = 1e-5f;
  c.tieWordEmbeddings = t == ko::ModelType::Qwen3;
  return c;
}

// n random inputs and targets in [0, V).
inline void randomTokens(std::vector<uint32_t>& in, std::vector<int32_t>& tg, int n, int V, uint64_t seed) {
  ko::Rng r(seed);
  in.resize(n);
  tg.resize(n);
  for (int i = 0; i < n; i++) {
    in[i] = uint32_t(r.next() % V);
    tg[i] = int32_t(r.next() % V);
  }
}

}  // namespace kotest
