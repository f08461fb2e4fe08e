// Tests of the float64 reference model (tests/ts/reference/llamaRef.ts) itself, so that the
// equivalence tests that compare the product against it can be trusted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  applyRope, mulberry32, paramShapes, randomTokens, randomWeights, refAdamWStep, refBatchLoss,
  refGradientsFD, refGradientsFDParallel, refSequenceLoss, refTokenLosses, writeHfCheckpoint,
  type RefConfig, type Weights,
} from './reference/llamaRef.js';
import { readSafetensorsLite } from './reference/safetensorsLite.js';

const tinyLlama: RefConfig = {
  model_type: 'llama', vocab_size: 12, hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2,
  num_key_value_heads: 1, head_dim: 4, intermediate_size: 12, rope_theta: 10000, rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
};
const tinyQwen: RefConfig = { ...tinyLlama, model_type: 'qwen3', num_attention_heads: 4, num_key_value_heads: 2, head_dim: 6, tie_word_embeddings: true };

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}

function flatten(g: Map<string, Float64Array>): Float64Array {
  return Float64Array.from([...g.values()].flatMap((a) => [...a]));
}

function cloneWeights(w: Weights): Weights {
  return new Map([...w].map(([k, t]) => [k, { shape: [...t.shape], data: Float64Array.from(t.data) }]));
}

test('(a) zero embeddings and projections give loss ln(V) exactly', () => {
  for (const cfg of [tinyLlama, tinyQwen]) {
    const w = randomWeights(cfg, 1);
    for (const t of w.values()) if (t.shape.length >= 2) t.data.fill(0); // norm weights stay random
    const one = refSequenceLoss(cfg, w, [3, 5]);
    assert.equal(one.count, 1);
    assert.equal(one.sum, Math.log(cfg.vocab_size));
    for (const l of refTokenLosses(cfg, w, [0, 11, 4, 4, 7, 2])) assert.equal(l, Math.log(cfg.vocab_size));
    const mean = refBatchLoss(cfg, w, [[1, 2, 3, 4, 5], [6, 7, 8]]);
    assert.ok(Math.abs(mean - Math.log(cfg.vocab_size)) <= 4 * Number.EPSILON * mean, `${mean}`);
  }
});

test('(b) RoPE: identity at position 0, norm-preserving, relative (rotate_half convention)', () => {
  const T = 7, nHeads = 3, D = 8, theta = 10000;
  const u = mulberry32(5);
  const x = Float64Array.from({ length: T * nHeads * D }, () => u() * 2 - 1);
  const y = Float64Array.from(x);
  applyRope(y, T, nHeads, D, theta);
  for (let i = 0; i < nHeads * D; i++) assert.equal(y[i], x[i]); // position 0
  for (let t = 1; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const b = (t * nHeads + h) * D;
      for (let i = 0; i < D / 2; i++) {
        const before = Math.hypot(x[b + i], x[b + i + D / 2]);
        const after = Math.hypot(y[b + i], y[b + i + D / 2]);
        assert.ok(Math.abs(before - after) <= 1e-14, `t=${t} h=${h} i=${i}`);
      }
    }
  }
  // Position 1, pair 0 rotates by angle 1; pair 1 by theta^(-2/D) = 10000^(-1/4) = 0.1.
  assert.ok(Math.abs(y[nHeads * D + 0] - (x[nHeads * D + 0] * Math.cos(1) - x[nHeads * D + 4] * Math.sin(1))) < 1e-15);
  assert.ok(Math.abs(y[nHeads * D + 4] - (x[nHeads * D + 4] * Math.cos(1) + x[nHeads * D + 0] * Math.sin(1))) < 1e-15);
  assert.ok(Math.abs(y[nHeads * D + 1] - (x[nHeads * D + 1] * Math.cos(0.1) - x[nHeads * D + 5] * Math.sin(0.1))) < 1e-15);
  // <rope(q, t1), rope(k, t2)> depends only on t1 - t2.
  const q = Float64Array.from({ length: D }, () => u() - 0.5), k = Float64Array.from({ length: D }, () => u() - 0.5);
  const at = (v: Float64Array, t: number) => {
    const z = new Float64Array((t + 1) * D);
    z.set(v, t * D);
    applyRope(z, t + 1, 1, D, theta);
    return z.subarray(t * D);
  };
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, ai, i) => s + ai * b[i], 0);
  assert.ok(Math.abs(dot(at(q, 5), at(k, 2)) - dot(at(q, 3), at(k, 0))) < 1e-14);
});

test('(c) causality: a later token does not change earlier positions', () => {
  for (const cfg of [tinyLlama, tinyQwen]) {
    const w = randomWeights(cfg, 2, 0.3);
    const tokens = randomTokens(10, cfg.vocab_size, 3);
    const base = refTokenLosses(cfg, w, tokens);
    const k = 6;
    const changed = [...tokens];
    changed[k] = (changed[k] + 5) % cfg.vocab_size;
    const after = refTokenLosses(cfg, w, changed);
    // Position t predicts tokens[t+1] from tokens[0..t]: positions < k-1 see neither change.
    for (let t = 0; t < k - 1; t++) assert.equal(after[t], base[t], `position ${t}`);
    for (let t = k - 1; t < base.length; t++) assert.notEqual(after[t], base[t], `position ${t}`);
    // And the sequence loss is the sum of those contributions.
    assert.equal(refSequenceLoss(cfg, w, tokens).sum, base.reduce((a, b) => a + b, 0));
  }
});

test('(d) finite-difference gradient: step-size consistency, directional derivative, sharding', async () => {
  for (const cfg of [tinyLlama, tinyQwen]) {
    const w = randomWeights(cfg, 4, 0.1);
    const batch = [randomTokens(7, cfg.vocab_size, 5), randomTokens(5, cfg.vocab_size, 6)];
    const g6 = refGradientsFD(cfg, w, batch, 1e-6);
    const g5 = refGradientsFD(cfg, w, batch, 1e-5);
    const e = relErr(flatten(g5), flatten(g6));
    assert.ok(e <= 1e-6, `${cfg.model_type}: |g(1e-5) - g(1e-6)| / |g| = ${e}`);
    assert.deepEqual([...g6.keys()], paramShapes(cfg).map(([n]) => n));

    // Directional derivative through plain refBatchLoss (no caching) along a random direction.
    const u = mulberry32(7);
    const dir = new Map([...w].map(([k, t]) => [k, Float64Array.from(t.data, () => u() - 0.5)]));
    const shifted = (s: number) => {
      const v = cloneWeights(w);
      for (const [k, t] of v) { const dk = dir.get(k)!; for (let i = 0; i < t.data.length; i++) t.data[i] += s * dk[i]; }
      return refBatchLoss(cfg, v, batch);
    };
    const s = 1e-5;
    const fdDir = (shifted(s) - shifted(-s)) / (2 * s);
    let gDotDir = 0;
    for (const [k, g] of g6) { const dk = dir.get(k)!; for (let i = 0; i < g.length; i++) gDotDir += g[i] * dk[i]; }
    assert.ok(Math.abs(fdDir - gDotDir) <= 1e-6 * Math.abs(fdDir), `${cfg.model_type}: ${fdDir} vs ${gDotDir}`);

    // The cached evaluation is exact: single entries by plain refBatchLoss give the same bits.
    const inputsOf = new Set(batch.flatMap((b) => b.slice(0, -1)));
    const present = [...inputsOf][0], absent = [...Array(cfg.vocab_size).keys()].find((v) => !inputsOf.has(v))!;
    const probes: [string, number][] = [
      ['model.embed_tokens.weight', present * cfg.hidden_size + 1], ['model.embed_tokens.weight', absent * cfg.hidden_size + 2],
      ['model.layers.0.self_attn.q_proj.weight', 3], ['model.layers.0.input_layernorm.weight', 1],
      ['model.layers.1.mlp.up_proj.weight', 5], ['model.layers.0.post_attention_layernorm.weight', 0],
      ['model.layers.1.self_attn.v_proj.weight', 7], ['model.norm.weight', 2],
    ];
    if (!cfg.tie_word_embeddings) probes.push(['lm_head.weight', 9]);
    for (const [name, i] of probes) {
      const at = (delta: number) => {
        const v = cloneWeights(w);
        v.get(name)!.data[i] += delta;
        return [refBatchLoss(cfg, v, batch), v.get(name)!.data[i]];
      };
      const [lp, ap] = at(1e-6), [lm, am] = at(-1e-6);
      assert.equal(g6.get(name)![i], (lp - lm) / (ap - am), `${name}[${i}]`);
    }

    // Embedding rows of tokens that are never inputs: exactly zero untied, nonzero tied (lm_head use).
    const inputs = new Set(batch.flatMap((b) => b.slice(0, -1)));
    const unused = [...Array(cfg.vocab_size).keys()].find((v) => !inputs.has(v))!;
    const H = cfg.hidden_size;
    const row = g6.get('model.embed_tokens.weight')!.subarray(unused * H, (unused + 1) * H);
    if (cfg.tie_word_embeddings) assert.ok(row.some((x) => x !== 0));
    else assert.ok(row.every((x) => x === 0));

    // Sharded and threaded versions give the same numbers.
    const a = refGradientsFD(cfg, w, batch, 1e-6, { shard: { index: 0, count: 2 } });
    const b = refGradientsFD(cfg, w, batch, 1e-6, { shard: { index: 1, count: 2 } });
    for (const [k, g] of g6) for (let i = 0; i < g.length; i++) assert.equal(a.get(k)![i] + b.get(k)![i], g[i]);
    const par = await refGradientsFDParallel(cfg, w, batch, 1e-6, { workers: 2 });
    for (const [k, g] of g6) assert.deepEqual(par.get(k), g);
  }
});

test('(e) AdamW step on a hand-computed 2-element example', () => {
  // "w" is a [1,1] matrix (decayed), "n" a 1-D norm weight (not decayed).
  const w: Weights = new Map([
    ['w', { shape: [1, 1], data: Float64Array.from([0.5]) }],
    ['n', { shape: [1], data: Float64Array.from([2.0]) }],
  ]);
  const close = (got: number, want: number) => assert.ok(Math.abs(got - want) <= 1e-14 * Math.abs(want), `${got} vs ${want}`);

  // Step 1, no clipping: lr 0.1, b1 0.9, b2 0.999, eps 1e-8, wd 0.01, g = (0.3, -0.4), |g| = 0.5.
  //  w: 0.5 - 0.1*0.01*0.5 = 0.4995; m = 0.03, v = 0.00009; m^ = 0.3, v^ = 0.09;
  //     0.4995 - 0.1*0.3/(0.3 + 1e-8) = 0.399500003333333322222...
  //  n: m = -0.04, v = 0.00016; 2 - 0.1*(-0.4)/(0.4 + 1e-8) = 2.099999997500000062499...
  const g1 = new Map([['w', Float64Array.from([0.3])], ['n', Float64Array.from([-0.4])]]);
  const s1 = refAdamWStep(w, g1, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 0, step: 1 });
  close(s1.gradNorm, 0.5);
  close(s1.weights.get('w')!.data[0], 0.3995000033333332222222259);
  close(s1.weights.get('n')!.data[0], 2.0999999975000000624999984);
  close(s1.m.get('w')![0], 0.03); close(s1.v.get('w')![0], 0.00009);
  close(s1.m.get('n')![0], -0.04); close(s1.v.get('n')![0], 0.00016);
  assert.equal(w.get('w')!.data[0], 0.5, 'inputs are not modified');

  // Step 2 with clipping: g = (-0.6, 0.8), |g| = 1, clip 0.5 -> coefficient 0.5/(1 + 1e-6) = 0.4999995000005;
  //  g' = (-0.2999997000003, 0.3999996000004); bias corrections 1 - 0.9^2 = 0.19, 1 - 0.999^2 = 0.001999.
  //  w: m = 0.9*0.03 + 0.1*g'0 = -0.0029999700000299999700, v = 0.999*0.00009 + 0.001*g'0^2 = 0.00017990982000026999964;
  //     p = w1*(1 - 0.001) - 0.1*(m/0.19)/(sqrt(v/0.001999) + 1e-8) = 0.40436361105064049595...
  //  n: m = 0.9*(-0.04) + 0.1*g'1 = 0.0039999600000399999600, v = 0.999*0.00016 + 0.001*g'1^2 = 0.00031983968000047999936;
  //     p = n1 - 0.1*(m/0.19)/(sqrt(v/0.001999) + 1e-8) = 2.09473688973550020369...
  const g2 = new Map([['w', Float64Array.from([-0.6])], ['n', Float64Array.from([0.8])]]);
  const s2 = refAdamWStep(s1.weights, g2, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 0.5, step: 2, m: s1.m, v: s1.v });
  close(s2.gradNorm, 1);
  close(s2.m.get('w')![0], -0.0029999700000299999700);
  close(s2.v.get('w')![0], 0.00017990982000026999964);
  close(s2.m.get('n')![0], 0.0039999600000399999600);
  close(s2.v.get('n')![0], 0.00031983968000047999936);
  close(s2.weights.get('w')!.data[0], 0.40436361105064049595);
  close(s2.weights.get('n')!.data[0], 2.09473688973550020369);
});

// ------------------------------------------------------------------------------------------------
// (f) A second, deliberately plain implementation (arrays of rows, full T x T masked score matrix,
// HF-style rotate_half with cat(freqs, freqs), explicit repeat_kv), compared with the reference.

type Row = number[];

function naiveLinear(X: Row[], W: Float64Array, nOut: number): Row[] {
  const nIn = X[0].length;
  return X.map((x) => Array.from({ length: nOut }, (_, o) => x.reduce((s, xi, i) => s + xi * W[o * nIn + i], 0)));
}
function naiveRms(x: Row, w: ArrayLike<number>, eps: number): Row {
  const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
  return x.map((v, i) => w[i] * v / Math.sqrt(ms + eps));
}
function naiveRope(x: Row, t: number, theta: number): Row {
  const D = x.length;
  const invFreq = Array.from({ length: D / 2 }, (_, i) => 1 / theta ** ((2 * i) / D));
  const emb = [...invFreq, ...invFreq].map((f) => t * f);
  const rotated = [...x.slice(D / 2).map((v) => -v), ...x.slice(0, D / 2)];
  return x.map((v, i) => v * Math.cos(emb[i]) + rotated[i] * Math.sin(emb[i]));
}

function naiveBatchLoss(cfg: RefConfig, w: Weights, batch: number[][]): number {
  const H = cfg.hidden_size, Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads;
  const D = cfg.head_dim ?? H / Hq, eps = cfg.rms_norm_eps, F = cfg.intermediate_size, V = cfg.vocab_size;
  const P = (n: string) => w.get(n)!.data;
  let total = 0, count = 0;
  for (const seq of batch) {
    const T = seq.length - 1;
    let X: Row[] = seq.slice(0, T).map((id) => Array.from(P('model.embed_tokens.weight').subarray(id * H, (id + 1) * H)));
    for (let l = 0; l < cfg.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      const A = X.map((x) => naiveRms(x, P(p + 'input_layernorm.weight'), eps));
      const Q = naiveLinear(A, P(p + 'self_attn.q_proj.weight'), Hq * D);
      const K = naiveLinear(A, P(p + 'self_attn.k_proj.weight'), Hkv * D);
      const Vv = naiveLinear(A, P(p + 'self_attn.v_proj.weight'), Hkv * D);
      // heads[h][t] = that head's D values at position t
      const split = (M: Row[], n: number) => Array.from({ length: n }, (_, h) => M.map((r) => r.slice(h * D, (h + 1) * D)));
      let q = split(Q, Hq), k = split(K, Hkv);
      const v = split(Vv, Hkv);
      if (cfg.model_type === 'qwen3') {
        q = q.map((hd) => hd.map((r) => naiveRms(r, P(p + 'self_attn.q_norm.weight'), eps)));
        k = k.map((hd) => hd.map((r) => naiveRms(r, P(p + 'self_attn.k_norm.weight'), eps)));
      }
      q = q.map((hd) => hd.map((r, t) => naiveRope(r, t, cfg.rope_theta)));
      k = k.map((hd) => hd.map((r, t) => naiveRope(r, t, cfg.rope_theta)));
      // repeat_kv: kv head g serves query heads g*nRep .. g*nRep + nRep - 1
      const nRep = Hq / Hkv;
      const kr: Row[][] = [], vr: Row[][] = [];
      for (let g = 0; g < Hkv; g++) for (let r = 0; r < nRep; r++) { kr.push(k[g]); vr.push(v[g]); }
      const O: Row[] = Array.from({ length: T }, () => []);
      for (let h = 0; h < Hq; h++) {
        const S = q[h].map((qt, t) => kr[h].map((ku, u) => (u > t ? -Infinity : qt.reduce((s, x, i) => s + x * ku[i], 0) / Math.sqrt(D))));
        const Pm = S.map((row) => { const e = row.map(Math.exp); const z = e.reduce((a, b) => a + b, 0); return e.map((x) => x / z); });
        Pm.forEach((row, t) => O[t].push(...Array.from({ length: D }, (_, i) => row.reduce((s, pu, u) => s + pu * vr[h][u][i], 0))));
      }
      const attnOut = naiveLinear(O, P(p + 'self_attn.o_proj.weight'), H);
      X = X.map((x, t) => x.map((xi, i) => xi + attnOut[t][i]));
      const B = X.map((x) => naiveRms(x, P(p + 'post_attention_layernorm.weight'), eps));
      const G = naiveLinear(B, P(p + 'mlp.gate_proj.weight'), F), U = naiveLinear(B, P(p + 'mlp.up_proj.weight'), F);
      const act = G.map((g, t) => g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * U[t][i]));
      const mlpOut = naiveLinear(act, P(p + 'mlp.down_proj.weight'), H);
      X = X.map((x, t) => x.map((xi, i) => xi + mlpOut[t][i]));
    }
    const N = X.map((x) => naiveRms(x, P('model.norm.weight'), eps));
    const logits = naiveLinear(N, P(cfg.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'), V);
    logits.forEach((z, t) => { total += Math.log(z.reduce((s, x) => s + Math.exp(x), 0)) - z[seq[t + 1]]; count++; });
  }
  return total / count;
}

test('(f) GQA with Hkv == Hq is standard MHA; GQA and Qwen3 match a plain second implementation', () => {
  const mha: RefConfig = { ...tinyLlama, num_attention_heads: 2, num_key_value_heads: 2 };
  const batch = [randomTokens(9, 12, 8), randomTokens(4, 12, 9)];
  for (const cfg of [mha, tinyLlama, tinyQwen, { ...tinyQwen, tie_word_embeddings: false }]) {
    const w = randomWeights(cfg, 10, 0.3);
    const ref = refBatchLoss(cfg, w, batch), naive = naiveBatchLoss(cfg, w, batch);
    assert.ok(Math.abs(ref - naive) <= 1e-12 * ref, `${cfg.model_type} Hq=${cfg.num_attention_heads} Hkv=${cfg.num_key_value_heads}: ${ref} vs ${naive}`);
  }
  // GQA equals MHA whose k/v projections repeat each kv head for its group of query heads.
  const gqa: RefConfig = { ...tinyQwen, num_attention_heads: 4, num_key_value_heads: 2 };
  const full: RefConfig = { ...gqa, num_key_value_heads: 4 };
  const wg = randomWeights(gqa, 11, 0.3);
  const wf = cloneWeights(wg);
  const D = gqa.head_dim!, H = gqa.hidden_size;
  for (let l = 0; l < gqa.num_hidden_layers; l++) {
    for (const n of ['k_proj', 'v_proj']) {
      const name = `model.layers.${l}.self_attn.${n}.weight`;
      const src = wg.get(name)!.data, dst = new Float64Array(4 * D * H);
      for (let h = 0; h < 4; h++) dst.set(src.subarray(Math.floor(h / 2) * D * H, (Math.floor(h / 2) + 1) * D * H), h * D * H);
      wf.set(name, { shape: [4 * D, H], data: dst });
    }
  }
  const lg = refBatchLoss(gqa, wg, batch), lf = refBatchLoss(full, wf, batch);
  assert.ok(Math.abs(lg - lf) <= 1e-13 * lg, `${lg} vs ${lf}`);
});

test('HF checkpoint writer: config.json keys and F32 tensors read back', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-ref-'));
  try {
    for (const cfg of [tinyLlama, tinyQwen]) {
      const w = randomWeights(cfg, 12);
      writeHfCheckpoint(dir, cfg, w);
      const c = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      assert.deepEqual(c.architectures, [cfg.model_type === 'llama' ? 'LlamaForCausalLM' : 'Qwen3ForCausalLM']);
      assert.equal(c.torch_dtype, 'float32');
      assert.equal(c.head_dim, cfg.head_dim);
      for (const k of Object.keys(cfg) as (keyof RefConfig)[]) assert.equal(c[k], cfg[k], k);
      const back = readSafetensorsLite(path.join(dir, 'model.safetensors'));
      assert.deepEqual([...back.keys()], paramShapes(cfg).map(([n]) => n));
      assert.equal(back.has('lm_head.weight'), !cfg.tie_word_embeddings);
      for (const [k, t] of back) {
        assert.deepEqual(t.shape, w.get(k)!.shape);
        assert.deepEqual(t.data, w.get(k)!.data, `${k}: randomWeights values are F32-exact`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
