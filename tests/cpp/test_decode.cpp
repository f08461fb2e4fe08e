// Batched KV-cache decoding (Model::decodeBatch) against the full causal forward pass of each sequence and
// against one-sequence decodeStep: rows advancing together, a whole batch prefilled in one call, a cached
// prefix kept while the rest is overwritten, and bad rows rejected without touching the cache.
#include <string>
#include <vector>

#include "check.h"
#include "model_fixtures.h"
#include "model.h"
#include "rng.h"

using namespace ko;

static std::vector<uint32_t> randomSeq(int n, int V, uint64_t seed) {
  Rng r(seed);
  std::vector<uint32_t> s(n);
  for (auto& x : s) x = uint32_t(r.next() % V);
  return s;
}

// Logits [T, V] of the whole sequence through forward() (targets are needed by forward, not used here).
static std::vector<float> forwardLogits(Model& m, const std::vector<uint32_t>& seq) {
  std::vector<int32_t> tg(seq.size(), 0);
  int64_t cnt;
  m.forward(seq.data(), tg.data(), 1, int(seq.size()), &cnt);
  return std::vector<float>(m.logits(), m.logits() + seq.size() * m.config().vocabSize);
}

static void batchedDecodeMatches(ModelType t) {
  ModelConfig c = kotest::gqaTestConfig(t, 41);
  const int V = c.vocabSize;
  std::vector<float> p(paramCount(c));
  initParams(c, p.data(), 9, 0.2f);
  Model m(c, p.data());
  // Longest first, so that rows 0..n-1 stay slots 0..n-1 as the shorter ones finish.
  const std::vector<std::vector<uint32_t>> seqs = {randomSeq(11, V, 1), randomSeq(7, V, 2), randomSeq(4, V, 3)};
  std::vector<std::vector<float>> ref;
  for (const auto& s : seqs) ref.push_back(forwardLogits(m, s));
  const float* row;

  // 1. All sequences advance together, one row each (default slots 0..n-1).
  m.decodeReset(16, 3);
  for (int pos = 0; pos < int(seqs[0].size()); pos++) {
    std::vector<uint32_t> tok;
    std::vector<int32_t> ps;
    for (const auto& s : seqs)
      if (pos < int(s.size())) {
        tok.push_back(s[pos]);
        ps.push_back(pos);
      }
    const float* lg = m.decodeBatch(tok.data(), ps.data(), int(tok.size()));
    for (size_t i = 0; i < tok.size(); i++) KO_CHECK_REL(lg + i * V, ref[i].data() + size_t(pos) * V, size_t(V), 1e-5);
  }

  // 2. One sequence at a time with decodeStep (slot 0, batch 1).
  for (size_t i = 0; i < seqs.size(); i++) {
    m.decodeReset(16);
    for (int pos = 0; pos < int(seqs[i].size()); pos++) {
      row = m.decodeStep(seqs[i][pos], pos);
      KO_CHECK_REL(row, ref[i].data() + size_t(pos) * V, size_t(V), 1e-5);
    }
  }

  // 3. The whole batch prefilled in one call, rows of the three slots interleaved, in reversed slot order.
  m.decodeReset(16, 3);
  std::vector<uint32_t> tok;
  std::vector<int32_t> ps, sl, which;
  for (int pos = 0; pos < 11; pos++)
    for (int s = 2; s >= 0; s--)
      if (pos < int(seqs[s].size())) {
        tok.push_back(seqs[s][pos]);
        ps.push_back(pos);
        sl.push_back(s);
      }
  const float* lg = m.decodeBatch(tok.data(), ps.data(), int(tok.size()), sl.data());
  for (size_t r = 0; r < tok.size(); r++)
    KO_CHECK_REL(lg + r * V, ref[sl[r]].data() + size_t(ps[r]) * V, size_t(V), 1e-5);

  // 4. Keep slot 1's first 3 positions and continue it with other tokens (as chat reuses a cached history):
  // the logits are those of the prefix + new tokens, and the overwritten history is gone.
  std::vector<uint32_t> alt(seqs[1].begin(), seqs[1].begin() + 3);
  for (uint32_t x : randomSeq(5, V, 4)) alt.push_back(x);
  const std::vector<float> altRef = forwardLogits(m, alt);
  for (int pos = 3; pos < int(alt.size()); pos++) {
    const int32_t slot = 1;
    row = m.decodeBatch(&alt[pos], &pos, 1, &slot);
    KO_CHECK_REL(row, altRef.data() + size_t(pos) * V, size_t(V), 1e-5);
  }
  // Slots 0 and 2 were left alone: continuing them still matches their own sequences.
  {
    const uint32_t t2[2] = {seqs[0][10], seqs[2][3]};
    const int32_t p2[2] = {10, 3}, s2[2] = {0, 2};
    lg = m.decodeBatch(t2, p2, 2, s2);
    KO_CHECK_REL(lg, ref[0].data() + size_t(10) * V, size_t(V), 1e-5);
    KO_CHECK_REL(lg + V, ref[2].data() + size_t(3) * V, size_t(V), 1e-5);
  }
}

KO_TEST(model, decode_batch_llama_matches_forward) { batchedDecodeMatches(ModelType::Llama); }
KO_TEST(model, decode_batch_qwen3_matches_forward) { batchedDecodeMatches(ModelType::Qwen3); }

// Every malformed call is an InputError naming the problem, raised before anything is written.
KO_TEST(model, decode_batch_rejects_bad_rows) {
  ModelConfig c = kotest::gqaTestConfig(ModelType::Llama, 41);
  const int V = c.vocabSize;
  std::vector<float> p(paramCount(c));
  initParams(c, p.data(), 9, 0.2f);
  Model m(c, p.data());
  const std::vector<uint32_t> seq = randomSeq(6, V, 5);
  const std::vector<float> ref = forwardLogits(m, seq);
  auto throwsWith = [&](const std::vector<uint32_t>& tok, const std::vector<int32_t>& ps, const std::vector<int32_t>& sl,
                        const std::string& what) {
    try {
      m.decodeBatch(tok.data(), ps.data(), int(tok.size()), sl.empty() ? nullptr : sl.data());
    } catch (const InputError& e) {
      KO_CHECK_MSG(std::string(e.what()).find(what) != std::string::npos, e.what());
      return;
    }
    KO_CHECK_MSG(false, "no error for: " + what);
  };
  throwsWith({1}, {0}, {}, "outside the KV cache");  // before decodeReset
  m.decodeReset(8, 2);
  const int32_t zero = 0, slot0 = 0;
  m.decodeBatch(&seq[0], &zero, 1, &slot0);
  throwsWith({1}, {8}, {0}, "outside the KV cache");
  throwsWith({1}, {-1}, {0}, "outside the KV cache");
  throwsWith({1}, {2}, {0}, "must be at most 1");     // a gap after the cached position 0
  throwsWith({1, 2}, {1, 3}, {0, 0}, "one after");    // same slot must count up by 1
  throwsWith({1, 2}, {1, 1}, {0, 0}, "one after");    // two rows writing one position
  throwsWith({1}, {0}, {2}, "outside the 2 slots");
  throwsWith({1}, {0}, {-1}, "outside the 2 slots");
  throwsWith({uint32_t(V)}, {1}, {0}, "out of range");
  throwsWith({1, 2, 3}, {0, 0, 0}, {}, "outside the 2 slots");  // default slots: row 2 has no slot
  // None of that touched slot 0: continuing it still matches the forward pass.
  for (int pos = 1; pos < 6; pos++) {
    const float* row = m.decodeBatch(&seq[pos], &pos, 1, &slot0);
    KO_CHECK_REL(row, ref.data() + size_t(pos) * V, size_t(V), 1e-5);
  }
}
