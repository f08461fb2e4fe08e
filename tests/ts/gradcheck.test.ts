// Whole-model gradient check: the addon's analytic gradient of the mean loss (float32 forward/backward in
// C++) against central finite differences of an independent float64 TypeScript implementation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ResolvedModel } from '../../src/config.js';
import { native } from '../../src/native.js';
import { randomTokens, randomWeights, refBatchLoss, refGradientsFD, type RefConfig } from './reference/llamaRef.js';

function check(ref: RefConfig) {
  const cfg: ResolvedModel = {
    ...ref, head_dim: ref.head_dim ?? ref.hidden_size / ref.num_attention_heads, max_position_embeddings: 64, rope_scaling: null,
  };
  const addon = native();
  const layout = addon.paramLayout(cfg);
  const params = new Float32Array(layout[layout.length - 1].offset + layout[layout.length - 1].size);
  const w = randomWeights(ref, 17, 0.3); // large weights so every path carries gradient
  for (const p of layout) params.set(w.get(p.name)!.data, p.offset);
  const B = 2, T = 7;
  const seqs = [randomTokens(T + 1, ref.vocab_size, 5), randomTokens(T + 1, ref.vocab_size, 6)];
  const model = new addon.Model(cfg, params);
  const loss = model.forwardBackward(Uint32Array.from(seqs.flat()), B, T);
  assert.ok(Math.abs(loss - refBatchLoss(ref, w, seqs)) <= 1e-5 * Math.abs(loss), `loss ${loss} vs reference`);
  const g = model.gradients();
  const fd = refGradientsFD(ref, w, seqs, 1e-5, { order: 4 });
  let num = 0, den = 0;
  for (const p of layout) {
    const ga = g.subarray(p.offset, p.offset + p.size), gr = fd.get(p.name)!;
    let n = 0, d = 0;
    for (let i = 0; i < p.size; i++) {
      n += (ga[i] - gr[i]) ** 2;
      d += gr[i] ** 2;
    }
    assert.ok(d > 0, `${p.name}: the reference gradient is all zeros, the check would be empty`);
    assert.ok(Math.sqrt(n / d) <= 2e-3, `${p.name}: relative gradient error ${Math.sqrt(n / d)}`);
    num += n;
    den += d;
  }
  assert.ok(Math.sqrt(num / den) <= 1e-3, `overall relative gradient error ${Math.sqrt(num / den)}`);
}

const base = { vocab_size: 19, hidden_size: 8, num_hidden_layers: 2, intermediate_size: 12, rope_theta: 10000, rms_norm_eps: 1e-5 };

test('tiny llama: analytic gradient = finite differences of the float64 reference', () => {
  check({ ...base, model_type: 'llama', num_attention_heads: 2, num_key_value_heads: 1, tie_word_embeddings: false });
});

test('tiny qwen3 (q/k norm, tied, head_dim * heads != hidden): analytic gradient = finite differences', () => {
  check({ ...base, model_type: 'qwen3', num_attention_heads: 4, num_key_value_heads: 2, head_dim: 6, tie_word_embeddings: true });
});
