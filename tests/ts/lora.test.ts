// LoRA: the addon's merged weights W0 + (alpha/rank)·B·A give the per-token losses of the UNMERGED adapter
// computed independently in float64 (x·W0ᵀ + s·(x·Aᵀ)·Bᵀ at every adapted projection, through llamaRef's
// projection hook); attachLora's merge and its buffer checks; the PEFT files' round trip.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { ResolvedModel } from '../../src/config.js';
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, initLoraBuffers, loadLoraAdapter, loraLayout, mergedParams, saveLoraAdapter,
  type LoraConfig, type LoraSite,
} from '../../src/lora.js';
import { native } from '../../src/native.js';
import {
  gaussian, randomTokens, randomWeights, refTokenLosses, setLinearHook, type LinearHook, type RefConfig,
} from './reference/llamaRef.js';
import { readSafetensorsLite } from './reference/safetensorsLite.js';

const tinyLlama: RefConfig = {
  model_type: 'llama', vocab_size: 32, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2,
  num_key_value_heads: 1, head_dim: 8, intermediate_size: 24, rope_theta: 10000, rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
};
// head_dim 12: Hq*D = 24 != hidden 16, so an in/out mix-up of q_proj or o_proj cannot hide.
const tinyQwen: RefConfig = { ...tinyLlama, model_type: 'qwen3', head_dim: 12, tie_word_embeddings: true };
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function resolved(ref: RefConfig): ResolvedModel {
  return { ...ref, head_dim: ref.head_dim ?? ref.hidden_size / ref.num_attention_heads, max_position_embeddings: 64, rope_scaling: null };
}

function setup(ref: RefConfig, lora: LoraConfig, seed: number) {
  const cfg = resolved(ref);
  const layout = native().paramLayout(cfg);
  const last = layout[layout.length - 1];
  const w = randomWeights(ref, seed, 0.2);
  const base = new Float32Array(last.offset + last.size);
  for (const p of layout) base.set(w.get(p.name)!.data, p.offset);
  const { sites, size } = loraLayout(cfg, lora);
  const rnd = gaussian(seed + 1);
  const adapter = Float32Array.from({ length: size }, () => 0.3 * rnd()); // A and B both nonzero
  return { cfg, layout, w, base, sites, adapter };
}

// y += s·(x·Aᵀ)·Bᵀ at the adapted projections, in float64 from the float32 adapter.
function unmergedLora(sites: LoraSite[], adapter: Float32Array, rank: number, scale: number): LinearHook {
  const byName = new Map(sites.map((s) => [s.name, s]));
  return (name, x, T, nIn, y) => {
    const s = byName.get(name);
    if (!s) return;
    const nOut = y.length / T;
    assert.equal(nIn, s.in, `${name}: in`);
    assert.equal(nOut, s.out, `${name}: out`);
    const u = new Float64Array(rank);
    for (let t = 0; t < T; t++) {
      for (let r = 0; r < rank; r++) {
        let d = 0;
        for (let i = 0; i < nIn; i++) d += x[t * nIn + i] * adapter[s.aOffset + r * s.in + i];
        u[r] = d;
      }
      for (let o = 0; o < nOut; o++) {
        let d = 0;
        for (let r = 0; r < rank; r++) d += u[r] * adapter[s.bOffset + o * rank + r];
        y[t * nOut + o] += scale * d;
      }
    }
  };
}

// Per-position cross-entropy of the native model, from its logits (KV-cache decoding, one token at a time).
function nativeTokenLosses(cfg: ResolvedModel, params: Float32Array, tokens: number[]): Float64Array {
  const model = new (native().Model)(cfg, params);
  model.decodeReset(tokens.length);
  const out = new Float64Array(tokens.length - 1);
  for (let t = 0; t + 1 < tokens.length; t++) {
    const logits = model.decodeStep(tokens[t], t);
    let max = -Infinity;
    for (const l of logits) max = Math.max(max, l);
    let z = 0;
    for (const l of logits) z += Math.exp(l - max);
    out[t] = max + Math.log(z) - logits[tokens[t + 1]];
  }
  return out;
}

const CASES: [string, RefConfig, LoraConfig, number][] = [
  ['llama, every projection', tinyLlama, { rank: 4, alpha: 8, targets: ALL }, 31],
  ['qwen3 (tied), q/o/up/down', tinyQwen, { rank: 3, alpha: 5, targets: ['up_proj', 'q_proj', 'down_proj', 'o_proj'] }, 47],
];

for (const [label, ref, lora, seed] of CASES) {
  test(`merged LoRA weights give the unmerged adapter's losses: ${label}`, async () => {
    const { cfg, layout, w, base, sites, adapter } = setup(ref, lora, seed);
    const params = mergedParams(cfg, lora, base, adapter);
    const siteNames = new Set(sites.map((s) => s.name));
    for (const p of layout) {
      if (siteNames.has(p.name)) continue;
      assert.deepEqual(params.subarray(p.offset, p.offset + p.size), base.subarray(p.offset, p.offset + p.size), `${p.name} was touched`);
    }
    const tokens = randomTokens(12, ref.vocab_size, seed + 2);
    const plain = refTokenLosses(ref, w, tokens);
    setLinearHook(w, unmergedLora(sites, adapter, lora.rank, lora.alpha / lora.rank));
    let want: Float64Array;
    try {
      want = refTokenLosses(ref, w, tokens);
    } finally {
      setLinearHook(w, null);
    }
    // The adapter must move the losses far beyond the tolerance, or the comparison would prove nothing.
    const moved = Math.max(...want.map((x, i) => Math.abs(x - plain[i])));
    assert.ok(moved > 0.05, `the adapter changes the reference losses by only ${moved}`);
    const got = nativeTokenLosses(cfg, params, tokens);
    for (let t = 0; t < want.length; t++)
      assert.ok(Math.abs(got[t] - want[t]) <= 1e-4 * Math.abs(want[t]), `position ${t}: native ${got[t]} vs unmerged reference ${want[t]}`);
    // The training forward (evalLoss) over the same merged weights.
    const model = new (native().Model)(cfg, params);
    const r = await model.evalLoss(Uint32Array.from(tokens), Uint32Array.from([0, tokens.length]), 64);
    const wantSum = want.reduce((a, b) => a + b, 0);
    assert.equal(r.count, tokens.length - 1);
    assert.ok(Math.abs(r.sum - wantSum) <= 1e-4 * wantSum, `evalLoss sum ${r.sum} vs unmerged reference ${wantSum}`);
  });
}

test('attachLora merges the adapter into params and checks its buffers', () => {
  const lora: LoraConfig = { rank: 2, alpha: 4, targets: ['v_proj', 'gate_proj'] };
  const { cfg, base, adapter } = setup(tinyLlama, lora, 5);
  const addon = native();
  const fresh = initLoraBuffers(cfg, lora, 9);
  for (const s of fresh.layout.sites) {
    const A = fresh.adapter.subarray(s.aOffset, s.bOffset), B = fresh.adapter.subarray(s.bOffset, s.bOffset + s.out * lora.rank);
    assert.ok(A.every((x) => x !== 0 && Math.abs(x) <= 1 / Math.sqrt(s.in)), `${s.name}: A outside ±1/sqrt(in)`);
    assert.ok(B.every((x) => x === 0), `${s.name}: B is not zero`);
  }
  const opts = (o: object = {}) => ({ ...lora, base, adapter, m: new Float32Array(adapter.length), v: new Float32Array(adapter.length), ...o });

  // params as a trainer hands them over: the base weights, whatever is at the sites is overwritten.
  const stale = () => {
    const p = Float32Array.from(base);
    for (const s of fresh.layout.sites) p.fill(3, s.weightOffset, s.weightOffset + s.out * s.in);
    return p;
  };
  // B = 0: the attached model is exactly the base.
  const p0 = stale();
  new addon.Model(cfg, p0).attachLora(opts({ adapter: fresh.adapter }));
  assert.deepEqual(p0, base);

  const params = stale();
  const model = new addon.Model(cfg, params);
  model.attachLora(opts());
  assert.deepEqual(params, mergedParams(cfg, lora, base, adapter));

  assert.throws(() => model.attachLora(opts({ adapter: adapter.subarray(1) })), /attachLora\.adapter has length/);
  assert.throws(() => model.attachLora(opts({ m: new Float64Array(adapter.length) })), /attachLora\.m must be a Float32Array/);
  assert.throws(() => model.attachLora(opts({ base: base.subarray(1) })), /attachLora\.base has length/);
  assert.throws(() => model.attachLora(opts({ base: params })), /attachLora\.base.*overlap/);
  assert.throws(() => model.attachLora(opts({ targets: ['q_proj', 'qkv'] })), /unknown LoRA target 'qkv'/);
  assert.throws(() => model.attachLora(opts({ rank: 0 })), /attachLora\.rank must be a positive integer/);
  assert.throws(() => addon.loraLayout(cfg, 2, ['mlp']), /unknown LoRA target 'mlp'/);
});

test('saveLoraAdapter / loadLoraAdapter: PEFT names, shapes, config, moments round trip', () => {
  const lora: LoraConfig = { rank: 3, alpha: 6, targets: ['down_proj', 'q_proj'] };
  const { cfg, sites, adapter } = setup(tinyLlama, lora, 11);
  const rnd = gaussian(12);
  const m = Float32Array.from(adapter, () => rnd()), v = Float32Array.from(adapter, () => rnd() ** 2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-lora-'));
  try {
    saveLoraAdapter(dir, lora, sites, adapter, { baseModel: 'tiny-base', moments: { m, v } });
    const c = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
    assert.equal(c.peft_type, 'LORA');
    assert.equal(c.task_type, 'CAUSAL_LM');
    assert.equal(c.r, 3);
    assert.equal(c.lora_alpha, 6);
    assert.deepEqual(c.target_modules, ['q_proj', 'down_proj']);
    assert.equal(c.base_model_name_or_path, 'tiny-base');
    assert.equal(c.use_rslora, false);

    const t = readSafetensorsLite(path.join(dir, ADAPTER_WEIGHTS_FILE));
    assert.equal(t.size, 2 * 2 * cfg.num_hidden_layers);
    const a = t.get('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight')!;
    const b = t.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')!;
    assert.deepEqual(a.shape, [3, cfg.intermediate_size]); // A [rank, in]
    assert.deepEqual(b.shape, [cfg.hidden_size, 3]); // B [out, rank]
    const s = sites.find((x) => x.name === 'model.layers.1.mlp.down_proj.weight')!;
    assert.equal(a.data[2 * s.in + 5], adapter[s.aOffset + 2 * s.in + 5]);
    assert.equal(b.data[7 * 3 + 1], adapter[s.bOffset + 7 * 3 + 1]);

    const back = loadLoraAdapter(dir, sites);
    assert.deepEqual(back.config, { rank: 3, alpha: 6, targets: ['q_proj', 'down_proj'] });
    assert.deepEqual(back.adapter, adapter);
    assert.deepEqual(back.moments, { m, v });

    const fewer = loraLayout(cfg, { ...lora, targets: ['q_proj'] }).sites;
    assert.throws(() => loadLoraAdapter(dir, fewer), /down_proj\.lora_A\.weight' adapts a module outside this LoRA layout/);
    const more = loraLayout(cfg, { ...lora, targets: ['q_proj', 'down_proj', 'k_proj'] }).sites;
    assert.throws(() => loadLoraAdapter(dir, more), /no tensor 'base_model\.model\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight'/);
    const otherRank = loraLayout(cfg, { ...lora, rank: 2 }).sites;
    assert.throws(() => loadLoraAdapter(dir, otherRank), /rank 3/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
