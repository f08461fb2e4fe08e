// The addon validates every buffer it is handed: wrong type, length or a bad window is a JS error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { native } from '../../src/native.js';
import type { ResolvedModel } from '../../src/config.js';

const cfg: ResolvedModel = {
  model_type: 'qwen3', vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
  num_key_value_heads: 1, head_dim: 8, intermediate_size: 24, max_position_embeddings: 64, rope_theta: 10000,
  rope_scaling: null, rms_norm_eps: 1e-6, tie_word_embeddings: true,
};

function count(): number {
  const l = native().paramLayout(cfg);
  return l[l.length - 1].offset + l[l.length - 1].size;
}

test('wrong-length, wrong-type and misaligned buffers are JS errors', () => {
  const a = native();
  const n = count();
  assert.throws(() => new a.Model(cfg, new Float32Array(n - 1)), { name: 'RangeError', message: /params has length \d+, expected \d+/ });
  assert.throws(() => new a.Model(cfg, new Float64Array(n) as unknown as Float32Array), { name: 'TypeError', message: /params must be a Float32Array/ });
  assert.throws(() => a.initParams(cfg, new Float32Array(3), 1), /params has length 3/);
  const m = new a.Model(cfg, new Float32Array(n));
  assert.throws(() => m.attachOptimizer(new Float32Array(n), new Float32Array(n + 1)), /optimizer v has length/);
  assert.throws(() => m.attachData([new Int32Array(10) as unknown as Uint32Array]), /shard 0 must be a Uint32Array/);
  assert.throws(() => m.forwardBackward(new Uint32Array(5), 1, 8), /tokens has length 5, expected 9/);
  // A Uint32Array view at an odd byte offset cannot exist, but a Float32Array over a shared buffer at offset 4 is fine.
  const buf = new ArrayBuffer(4 * (n + 1));
  assert.doesNotThrow(() => new a.Model(cfg, new Float32Array(buf, 4, n)));
});

test('training windows are bounds-checked and token ids range-checked', async () => {
  const a = native();
  const n = count();
  const params = new Float32Array(n);
  a.initParams(cfg, params, 1);
  const m = new a.Model(cfg, params);
  m.attachOptimizer(new Float32Array(n), new Float32Array(n));
  m.attachData([Uint32Array.from({ length: 20 }, (_, i) => i % 50)]);
  const base = { batchSize: 1, seqLen: 8, accum: 1, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, gradClip: 1, step: 1 };
  assert.throws(() => m.trainStep({ ...base, windows: Uint32Array.from([0, 12]) }), /runs past the end of shard 0/);
  assert.throws(() => m.trainStep({ ...base, windows: Uint32Array.from([1, 0]) }), /names shard 1 but 1 are attached/);
  assert.throws(() => m.trainStep({ ...base, windows: Uint32Array.from([0, 0, 0, 1]) }), /windows has length 4, expected 2/);
  const ok = await m.trainStep({ ...base, windows: Uint32Array.from([0, 3]) });
  assert.ok(Number.isFinite(ok.loss) && ok.tokens === 8);
  m.attachData([Uint32Array.from({ length: 20 }, (_, i) => (i === 6 ? 77 : i))]);
  await assert.rejects(m.trainStep({ ...base, windows: Uint32Array.from([0, 0]) }), /token id 77 .*out of range for vocab_size 50/);
  assert.throws(() => m.decodeStep(0, 0), /outside the KV cache/);
  m.decodeReset(4);
  assert.throws(() => m.decodeStep(50, 0), /out of range/);
  assert.equal(m.decodeStep(3, 0).length, 50);
});

test('a second call while a step is running is refused, not raced', async () => {
  const a = native();
  const n = count();
  const m = new a.Model(cfg, new Float32Array(n));
  m.attachOptimizer(new Float32Array(n), new Float32Array(n));
  m.attachData([new Uint32Array(64)]);
  const p = m.trainStep({ windows: Uint32Array.from([0, 0]), batchSize: 1, seqLen: 8, accum: 1, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, gradClip: 0, step: 1 });
  assert.throws(() => m.gradients(), /busy/);
  await p;
  assert.equal(m.gradients().length, n);
});
