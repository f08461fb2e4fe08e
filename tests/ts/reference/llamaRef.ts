// llamaRef.ts — an independent float64 reference of the Hugging Face Llama / Qwen3 causal-LM forward
// pass, its mean next-token cross-entropy, its gradient by central finite differences, and one
// PyTorch-style AdamW step. Used by tests to check the product's numbers; imports nothing from src/.
//
// Equations (transformers' modeling_llama.py / modeling_qwen3.py, attention_bias = mlp_bias = false):
//   h = embed[tokens]
//   per layer:  a = RMSNorm_in(h);  q = a Wq^T, k = a Wk^T, v = a Wv^T   (split into heads of D)
//               Qwen3 only: q, k = RMSNorm over each head's D values (q_norm, k_norm weights)
//               q, k = RoPE (rotate_half convention, positions 0..T-1)
//               o = softmax(q k^T / sqrt(D) + causal mask) v, query head h reads kv head h / (Hq/Hkv)
//               h = h + o Wo^T
//               b = RMSNorm_post(h);  h = h + (silu(b Wg^T) * (b Wu^T)) Wd^T
//   logits = RMSNorm_final(h) W_lm^T   (W_lm = embed when tie_word_embeddings)
//   loss = mean over predicted positions of logsumexp(logits) - logits[target]
// RMSNorm(x) = w * x / sqrt(mean(x^2) + eps).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { writeSafetensorsLite } from './safetensorsLite.js';

export interface RefConfig {
  model_type: 'llama' | 'qwen3';
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number; // default hidden_size / num_attention_heads
  intermediate_size: number;
  rope_theta: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
}

export type Weights = Map<string, { shape: number[]; data: Float64Array }>;

interface Dims {
  V: number; H: number; L: number; Hq: number; Hkv: number; D: number; F: number;
  eps: number; theta: number; qkNorm: boolean; tied: boolean;
}

function dimsOf(cfg: RefConfig): Dims {
  const D = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  if (!Number.isInteger(D) || D % 2 !== 0) throw new Error(`llamaRef: head_dim ${D} must be an even integer`);
  if (cfg.num_attention_heads % cfg.num_key_value_heads !== 0) {
    throw new Error(`llamaRef: num_attention_heads ${cfg.num_attention_heads} not a multiple of num_key_value_heads ${cfg.num_key_value_heads}`);
  }
  return {
    V: cfg.vocab_size, H: cfg.hidden_size, L: cfg.num_hidden_layers, Hq: cfg.num_attention_heads,
    Hkv: cfg.num_key_value_heads, D, F: cfg.intermediate_size, eps: cfg.rms_norm_eps, theta: cfg.rope_theta,
    qkNorm: cfg.model_type === 'qwen3', tied: cfg.tie_word_embeddings,
  };
}

/** Tensor names and shapes of a model, in canonical (checkpoint) order. */
export function paramShapes(cfg: RefConfig): [string, number[]][] {
  const d = dimsOf(cfg);
  const out: [string, number[]][] = [['model.embed_tokens.weight', [d.V, d.H]]];
  for (let l = 0; l < d.L; l++) {
    const p = `model.layers.${l}.`;
    out.push([p + 'input_layernorm.weight', [d.H]]);
    out.push([p + 'self_attn.q_proj.weight', [d.Hq * d.D, d.H]]);
    out.push([p + 'self_attn.k_proj.weight', [d.Hkv * d.D, d.H]]);
    out.push([p + 'self_attn.v_proj.weight', [d.Hkv * d.D, d.H]]);
    out.push([p + 'self_attn.o_proj.weight', [d.H, d.Hq * d.D]]);
    if (d.qkNorm) {
      out.push([p + 'self_attn.q_norm.weight', [d.D]]);
      out.push([p + 'self_attn.k_norm.weight', [d.D]]);
    }
    out.push([p + 'post_attention_layernorm.weight', [d.H]]);
    out.push([p + 'mlp.gate_proj.weight', [d.F, d.H]]);
    out.push([p + 'mlp.up_proj.weight', [d.F, d.H]]);
    out.push([p + 'mlp.down_proj.weight', [d.H, d.F]]);
  }
  out.push(['model.norm.weight', [d.H]]);
  if (!d.tied) out.push(['lm_head.weight', [d.V, d.H]]);
  return out;
}

function get(w: Weights, name: string, size: number): Float64Array {
  const t = w.get(name);
  if (!t) throw new Error(`llamaRef: missing weight ${name}`);
  if (t.data.length !== size) throw new Error(`llamaRef: ${name} has ${t.data.length} values, expected ${size}`);
  return t.data;
}

// ---------------------------------------------------------------------------------------------
// Primitives on row-major float64 matrices.

/**
 * y[T, out] = x[T, in] W^T, W is [out, in]. Every output is one dot product summed in index order;
 * four rows of x are processed together only to reuse each loaded weight (same results).
 */
function linear(x: Float64Array, T: number, nIn: number, W: Float64Array, nOut: number): Float64Array {
  const y = new Float64Array(T * nOut);
  let t = 0;
  for (; t + 3 < T; t += 4) {
    const xa = t * nIn, xb = xa + nIn, xc = xb + nIn, xd = xc + nIn;
    for (let o = 0; o < nOut; o++) {
      const wo = o * nIn;
      let sa = 0, sb = 0, sc = 0, sd = 0;
      for (let i = 0; i < nIn; i++) {
        const wv = W[wo + i];
        sa += x[xa + i] * wv;
        sb += x[xb + i] * wv;
        sc += x[xc + i] * wv;
        sd += x[xd + i] * wv;
      }
      const yo = t * nOut + o;
      y[yo] = sa;
      y[yo + nOut] = sb;
      y[yo + 2 * nOut] = sc;
      y[yo + 3 * nOut] = sd;
    }
  }
  for (; t < T; t++) {
    const xo = t * nIn;
    for (let o = 0; o < nOut; o++) {
      const wo = o * nIn;
      let s = 0;
      for (let i = 0; i < nIn; i++) s += x[xo + i] * W[wo + i];
      y[t * nOut + o] = s;
    }
  }
  return y;
}

/** RMSNorm over consecutive groups of `dim` values (rows), weight of length dim. */
function rmsnorm(x: Float64Array, dim: number, w: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length; r += dim) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r + i] * x[r + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r + i] = w[i] * (x[r + i] * inv);
  }
  return y;
}

/**
 * RoPE in place on x[T, nHeads*D] (positions 0..T-1), rotate_half convention:
 * out[i] = x[i] cos - x[i+D/2] sin, out[i+D/2] = x[i+D/2] cos + x[i] sin, angle t * theta^(-2i/D).
 */
export function applyRope(x: Float64Array, T: number, nHeads: number, D: number, theta: number): void {
  const half = D / 2;
  const { cos, sin } = ropeTable(T, D, theta);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const c = cos[t * half + i], s = sin[t * half + i];
      for (let h = 0; h < nHeads; h++) {
        const b = (t * nHeads + h) * D;
        const x1 = x[b + i], x2 = x[b + i + half];
        x[b + i] = x1 * c - x2 * s;
        x[b + i + half] = x2 * c + x1 * s;
      }
    }
  }
}

let ropeCache: { T: number; D: number; theta: number; cos: Float64Array; sin: Float64Array } | null = null;

/** cos/sin of t * theta^(-2i/D) at [t * D/2 + i] for t < T, i < D/2 (a table for a longer T is reused). */
function ropeTable(T: number, D: number, theta: number): { cos: Float64Array; sin: Float64Array } {
  if (!ropeCache || ropeCache.D !== D || ropeCache.theta !== theta || ropeCache.T < T) {
    const n = Math.max(T, ropeCache && ropeCache.D === D && ropeCache.theta === theta ? ropeCache.T : 0);
    const half = D / 2;
    const cos = new Float64Array(n * half), sin = new Float64Array(n * half);
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < half; i++) {
        const ang = t * Math.pow(theta, (-2 * i) / D);
        cos[t * half + i] = Math.cos(ang);
        sin[t * half + i] = Math.sin(ang);
      }
    }
    ropeCache = { T: n, D, theta, cos, sin };
  }
  return ropeCache;
}

/** Causal GQA attention: q[T, Hq*D], k/v[T, Hkv*D] -> [T, Hq*D]. */
function attention(q: Float64Array, k: Float64Array, v: Float64Array, T: number, d: Dims): Float64Array {
  const { Hq, Hkv, D } = d;
  const group = Hq / Hkv;
  const scale = 1 / Math.sqrt(D);
  const out = new Float64Array(T * Hq * D);
  const p = new Float64Array(T);
  for (let h = 0; h < Hq; h++) {
    const g = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      const qo = (t * Hq + h) * D;
      let max = -Infinity;
      for (let u = 0; u <= t; u++) {
        const ko = (u * Hkv + g) * D;
        let s = 0;
        for (let i = 0; i < D; i++) s += q[qo + i] * k[ko + i];
        p[u] = s * scale;
        if (p[u] > max) max = p[u];
      }
      let z = 0;
      for (let u = 0; u <= t; u++) { p[u] = Math.exp(p[u] - max); z += p[u]; }
      for (let u = 0; u <= t; u++) {
        const pu = p[u] / z;
        const vo = (u * Hkv + g) * D;
        for (let i = 0; i < D; i++) out[qo + i] += pu * v[vo + i];
      }
    }
  }
  return out;
}

/**
 * Called after each projection of a transformer block (q/k/v/o, gate/up/down) with its weight's name, input
 * x [T, nIn] and output y [T, nOut], which it may change in place: e.g. to add an unmerged LoRA term.
 */
export type LinearHook = (weight: string, x: Float64Array, T: number, nIn: number, y: Float64Array) => void;
const linearHooks = new WeakMap<Weights, LinearHook>();

/** Installs (or with null removes) the projection hook used whenever these weights run. */
export function setLinearHook(w: Weights, hook: LinearHook | null): void {
  if (hook) linearHooks.set(w, hook);
  else linearHooks.delete(w);
}

/** y = x W^T for the named block weight, then its hook. */
function proj(w: Weights, name: string, x: Float64Array, T: number, nIn: number, nOut: number): Float64Array {
  const y = linear(x, T, nIn, get(w, name, nOut * nIn), nOut);
  linearHooks.get(w)?.(name, x, T, nIn, y);
  return y;
}

// ---------------------------------------------------------------------------------------------
// Model stages on one sequence of T input positions.

function embedTokens(d: Dims, w: Weights, inputs: number[]): Float64Array {
  const E = get(w, 'model.embed_tokens.weight', d.V * d.H);
  const x = new Float64Array(inputs.length * d.H);
  inputs.forEach((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= d.V) throw new Error(`llamaRef: token id ${id} outside [0, ${d.V})`);
    x.set(E.subarray(id * d.H, (id + 1) * d.H), t * d.H);
  });
  return x;
}

/** x + self_attn(input_layernorm(x)). */
function attnBlock(d: Dims, w: Weights, l: number, x: Float64Array, T: number): Float64Array {
  const p = `model.layers.${l}.`;
  const { H, Hq, Hkv, D } = d;
  const a = rmsnorm(x, H, get(w, p + 'input_layernorm.weight', H), d.eps);
  let q = proj(w, p + 'self_attn.q_proj.weight', a, T, H, Hq * D);
  let k = proj(w, p + 'self_attn.k_proj.weight', a, T, H, Hkv * D);
  const v = proj(w, p + 'self_attn.v_proj.weight', a, T, H, Hkv * D);
  if (d.qkNorm) {
    q = rmsnorm(q, D, get(w, p + 'self_attn.q_norm.weight', D), d.eps);
    k = rmsnorm(k, D, get(w, p + 'self_attn.k_norm.weight', D), d.eps);
  }
  applyRope(q, T, Hq, D, d.theta);
  applyRope(k, T, Hkv, D, d.theta);
  const o = attention(q, k, v, T, d);
  const y = proj(w, p + 'self_attn.o_proj.weight', o, T, Hq * D, H);
  for (let i = 0; i < y.length; i++) y[i] += x[i];
  return y;
}

/** x + mlp(post_attention_layernorm(x)), mlp(b) = down(silu(gate(b)) * up(b)). */
function mlpBlock(d: Dims, w: Weights, l: number, x: Float64Array, T: number): Float64Array {
  const p = `model.layers.${l}.`;
  const { H, F } = d;
  const b = rmsnorm(x, H, get(w, p + 'post_attention_layernorm.weight', H), d.eps);
  const g = proj(w, p + 'mlp.gate_proj.weight', b, T, H, F);
  const u = proj(w, p + 'mlp.up_proj.weight', b, T, H, F);
  for (let i = 0; i < g.length; i++) g[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
  const y = proj(w, p + 'mlp.down_proj.weight', g, T, F, H);
  for (let i = 0; i < y.length; i++) y[i] += x[i];
  return y;
}

/** Per-position cross-entropy of the final hidden states x[T, H] against targets. */
function headLosses(d: Dims, w: Weights, x: Float64Array, targets: number[]): Float64Array {
  const T = targets.length;
  const { V, H } = d;
  const n = rmsnorm(x, H, get(w, 'model.norm.weight', H), d.eps);
  const Wl = get(w, d.tied ? 'model.embed_tokens.weight' : 'lm_head.weight', V * H);
  const logits = linear(n, T, H, Wl, V);
  const ce = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    const tgt = targets[t];
    if (!Number.isInteger(tgt) || tgt < 0 || tgt >= V) throw new Error(`llamaRef: token id ${tgt} outside [0, ${V})`);
    const o = t * V;
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j] > max) max = logits[o + j];
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[o + j] - max);
    ce[t] = max + Math.log(z) - logits[o + tgt];
  }
  return ce;
}

function sum(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/** Cross-entropy at each position t = 0..n-2 of predicting tokens[t+1] from tokens[0..t]. */
export function refTokenLosses(cfg: RefConfig, w: Weights, tokens: number[]): Float64Array {
  const d = dimsOf(cfg);
  if (tokens.length < 2) return new Float64Array(0);
  const T = tokens.length - 1;
  let x = embedTokens(d, w, tokens.slice(0, T));
  for (let l = 0; l < d.L; l++) x = mlpBlock(d, w, l, attnBlock(d, w, l, x, T), T);
  return headLosses(d, w, x, tokens.slice(1));
}

/** Sum of next-token cross-entropies of one sequence, and how many positions were predicted. */
export function refSequenceLoss(cfg: RefConfig, w: Weights, tokens: number[]): { sum: number; count: number } {
  return { sum: sum(refTokenLosses(cfg, w, tokens)), count: Math.max(0, tokens.length - 1) };
}

/** Mean cross-entropy over all predicted tokens of all sequences (each sequence independent). */
export function refBatchLoss(cfg: RefConfig, w: Weights, batch: number[][]): number {
  let total = 0, count = 0;
  for (const seq of batch) {
    const r = refSequenceLoss(cfg, w, seq);
    total += r.sum;
    count += r.count;
  }
  if (count === 0) throw new Error('llamaRef: batch predicts no tokens');
  return total / count;
}

// ---------------------------------------------------------------------------------------------
// Gradient by central finite differences.

interface SeqCache {
  inputs: number[];
  targets: number[];
  inputSet: Set<number>;
  layerIn: Float64Array[]; // residual stream entering layer l; layerIn[L] = final hidden states
  mid: Float64Array[]; // residual stream after layer l's attention
  sum: number;
}

type Stage = { kind: 'embed' } | { kind: 'attn'; l: number } | { kind: 'mlp'; l: number } | { kind: 'head' };

/** Loss sum of one sequence recomputed from `stage` on, reusing the cached earlier activations. */
function seqSumFrom(d: Dims, w: Weights, c: SeqCache, stage: Stage): number {
  const T = c.inputs.length;
  let x: Float64Array;
  let l0: number;
  switch (stage.kind) {
    case 'embed': x = embedTokens(d, w, c.inputs); l0 = 0; break;
    case 'attn': x = c.layerIn[stage.l]; l0 = stage.l; break;
    case 'mlp': x = mlpBlock(d, w, stage.l, c.mid[stage.l], T); l0 = stage.l + 1; break;
    case 'head': x = c.layerIn[d.L]; l0 = d.L; break;
  }
  for (let l = l0; l < d.L; l++) x = mlpBlock(d, w, l, attnBlock(d, w, l, x, T), T);
  return sum(headLosses(d, w, x, c.targets));
}

export interface FDOptions {
  order?: 2 | 4;
  shard?: { index: number; count: number };
}

/**
 * Gradient of refBatchLoss with respect to every tensor in `w`, by central differences
 * (L(p+h) - L(p-h)) / ((p+h) - (p-h)) per scalar parameter, in float64.
 *
 * Only the part of the forward pass that a parameter can influence is recomputed; everything
 * before it is reused from a cache, and so are whole sequences it cannot influence (an embedding
 * row of a token absent from a sequence's inputs, untied). Because the reused values are exactly
 * what a full recomputation would produce, each loss value is bit-for-bit refBatchLoss at the
 * perturbed weights. `order: 4` uses the fourth-order stencil
 * (8(L(p+h) - L(p-h)) - (L(p+2h) - L(p-2h))) / 12h. `shard: {index, count}` computes only the
 * scalars whose position in the concatenation of all tensors (in `w`'s order) is index mod count,
 * leaving the others 0 (see refGradientsFDParallel).
 *
 * `w`'s arrays are perturbed in place during the call and restored exactly.
 *
 * Accuracy on the tiny test models (std 0.02): with h = 1e-6 about 1e-9 absolute per entry, all
 * rounding (eps * loss / h); with h = 1e-4 about 1e-11 on most entries, but truncation reaches
 * ~1e-7 on embedding entries (large gradients: the loss is strongly curved there through RMSNorm).
 */
export function refGradientsFD(
  cfg: RefConfig, w: Weights, batch: number[][], h = 1e-6, opts: FDOptions = {},
): Map<string, Float64Array> {
  const d = dimsOf(cfg);
  const order = opts.order ?? 2;
  const shard = opts.shard ?? { index: 0, count: 1 };
  let flat = 0; // index of the current scalar across all tensors, for sharding
  const caches: SeqCache[] = [];
  let count = 0;
  for (const seq of batch) {
    if (seq.length < 2) continue;
    const T = seq.length - 1;
    const inputs = seq.slice(0, T);
    const c: SeqCache = { inputs, targets: seq.slice(1), inputSet: new Set(inputs), layerIn: [], mid: [], sum: 0 };
    let x = embedTokens(d, w, inputs);
    for (let l = 0; l < d.L; l++) {
      c.layerIn.push(x);
      const m = attnBlock(d, w, l, x, T);
      c.mid.push(m);
      x = mlpBlock(d, w, l, m, T);
    }
    c.layerIn.push(x);
    c.sum = sum(headLosses(d, w, x, c.targets));
    caches.push(c);
    count += T;
  }
  if (count === 0) throw new Error('llamaRef: batch predicts no tokens');

  const grads = new Map<string, Float64Array>();
  for (const [name, t] of w) {
    const data = t.data;
    const g = new Float64Array(data.length);
    let stageOf: (i: number, c: SeqCache) => Stage | null;
    const m = /^model\.layers\.(\d+)\.(.*)$/.exec(name);
    if (name === 'model.embed_tokens.weight') {
      stageOf = (i, c) => (c.inputSet.has(Math.floor(i / d.H)) ? { kind: 'embed' } : d.tied ? { kind: 'head' } : null);
    } else if (name === 'model.norm.weight' || name === 'lm_head.weight') {
      stageOf = () => ({ kind: 'head' });
    } else if (m && (m[2].startsWith('self_attn.') || m[2] === 'input_layernorm.weight')) {
      const st: Stage = { kind: 'attn', l: Number(m[1]) };
      stageOf = () => st;
    } else if (m && (m[2].startsWith('mlp.') || m[2] === 'post_attention_layernorm.weight')) {
      const st: Stage = { kind: 'mlp', l: Number(m[1]) };
      stageOf = () => st;
    } else {
      throw new Error(`llamaRef: unexpected weight ${name}`);
    }
    const lossAt = (i: number, value: number): number => {
      data[i] = value;
      let total = 0;
      for (const c of caches) {
        const st = stageOf(i, c);
        total += st ? seqSumFrom(d, w, c, st) : c.sum;
      }
      return total / count;
    };
    for (let i = 0; i < data.length; i++, flat++) {
      if (flat % shard.count !== shard.index) continue;
      const p0 = data[i];
      const ap = p0 + h, am = p0 - h;
      const lp = lossAt(i, ap), lm = lossAt(i, am);
      if (order === 4) {
        const bp = p0 + 2 * h, bm = p0 - 2 * h;
        const lp2 = lossAt(i, bp), lm2 = lossAt(i, bm);
        // Steps as represented: p0 +- h and p0 +- 2h are not exact; use the nominal h (error ~1e-16/h relative).
        g[i] = (8 * (lp - lm) - (lp2 - lm2)) / (12 * h);
      } else {
        g[i] = (lp - lm) / (ap - am);
      }
      data[i] = p0;
    }
    grads.set(name, g);
  }
  return grads;
}

/**
 * refGradientsFD split over worker threads (each computes every `workers`-th scalar; the parts are
 * summed). The result is identical to refGradientsFD's. `workers` defaults to the number of CPUs (at
 * most 8); 1 runs in this thread.
 */
export async function refGradientsFDParallel(
  cfg: RefConfig, w: Weights, batch: number[][], h = 1e-6, opts: { order?: 2 | 4; workers?: number } = {},
): Promise<Map<string, Float64Array>> {
  const workers = Math.max(1, Math.floor(opts.workers ?? Math.min(8, os.availableParallelism())));
  if (workers === 1) return refGradientsFD(cfg, w, batch, h, { order: opts.order });
  const url = new URL('./fdWorker.js', import.meta.url);
  const parts = await Promise.all(
    Array.from({ length: workers }, (_, index) => new Promise<[string, Float64Array][]>((resolve, reject) => {
      const worker = new Worker(url, {
        workerData: { cfg, weights: [...w], batch, h, order: opts.order ?? 2, shard: { index, count: workers } },
      });
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`refGradientsFDParallel: worker exited with code ${code}`)));
    })),
  );
  const grads = new Map<string, Float64Array>();
  for (const [name, t] of w) {
    const g = new Float64Array(t.data.length);
    for (const part of parts) {
      const p = part.find(([n]) => n === name)![1];
      for (let i = 0; i < g.length; i++) g[i] += p[i]; // exactly one part is nonzero per entry
    }
    grads.set(name, g);
  }
  return grads;
}

// ---------------------------------------------------------------------------------------------
// AdamW (torch.optim.AdamW after torch.nn.utils.clip_grad_norm_).

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradClip: number; // 0 = off
  step: number; // t, 1-based
  m?: Map<string, Float64Array>;
  v?: Map<string, Float64Array>;
}

/**
 * One AdamW step. Global grad norm = sqrt(sum of all g^2); when gradClip > 0 all gradients are
 * scaled by min(1, gradClip / (norm + 1e-6)). Per parameter: p -= lr*wd*p (only tensors with
 * >= 2 dims), m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
 * p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). Inputs are not modified.
 */
export function refAdamWStep(
  w: Weights, grads: Map<string, Float64Array>, opts: AdamWOptions,
): { weights: Weights; m: Map<string, Float64Array>; v: Map<string, Float64Array>; gradNorm: number } {
  const { lr, beta1, beta2, eps, weightDecay, gradClip, step } = opts;
  if (!(step >= 1)) throw new Error(`refAdamWStep: step must be >= 1, got ${step}`);
  let ss = 0;
  for (const [name, t] of w) {
    const g = grads.get(name);
    if (!g || g.length !== t.data.length) throw new Error(`refAdamWStep: missing or mis-sized gradient for ${name}`);
    for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
  }
  const gradNorm = Math.sqrt(ss);
  const clip = gradClip > 0 ? Math.min(1, gradClip / (gradNorm + 1e-6)) : 1;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2 = 1 - Math.pow(beta2, step);
  const weights: Weights = new Map();
  const mOut = new Map<string, Float64Array>();
  const vOut = new Map<string, Float64Array>();
  for (const [name, t] of w) {
    const g = grads.get(name)!;
    const m0 = opts.m?.get(name), v0 = opts.v?.get(name);
    const p = Float64Array.from(t.data);
    const m = new Float64Array(p.length), v = new Float64Array(p.length);
    const decay = t.shape.length >= 2 ? weightDecay : 0;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] * clip;
      p[i] -= lr * decay * p[i];
      m[i] = beta1 * (m0 ? m0[i] : 0) + (1 - beta1) * gi;
      v[i] = beta2 * (v0 ? v0[i] : 0) + (1 - beta2) * gi * gi;
      p[i] -= (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
    }
    weights.set(name, { shape: [...t.shape], data: p });
    mOut.set(name, m);
    vOut.set(name, v);
  }
  return { weights, m: mOut, v: vOut, gradNorm };
}

// ---------------------------------------------------------------------------------------------
// Random models and HF checkpoints.

/** mulberry32: a tiny deterministic 32-bit PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples by Box-Muller on mulberry32. */
export function gaussian(seed: number): () => number {
  const u = mulberry32(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) { const s = spare; spare = null; return s; }
    let a = 0;
    while (a === 0) a = u();
    const b = u();
    const r = Math.sqrt(-2 * Math.log(a));
    spare = r * Math.sin(2 * Math.PI * b);
    return r * Math.cos(2 * Math.PI * b);
  };
}

/** `n` uniform random token ids in [0, vocab). */
export function randomTokens(n: number, vocab: number, seed: number): number[] {
  const u = mulberry32(seed);
  return Array.from({ length: n }, () => Math.floor(u() * vocab));
}

/**
 * Deterministic random weights: matrices N(0, std^2), norm weights 1 + N(0, 0.1^2). Values are
 * rounded to float32, so they survive an F32 checkpoint unchanged.
 */
export function randomWeights(cfg: RefConfig, seed: number, std = 0.02): Weights {
  const rnd = gaussian(seed);
  const w: Weights = new Map();
  for (const [name, shape] of paramShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float64Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.fround(shape.length === 1 ? 1 + 0.1 * rnd() : std * rnd());
    w.set(name, { shape, data });
  }
  return w;
}

/** The config.json a Hugging Face checkpoint of this model carries. */
export function hfConfig(cfg: RefConfig): Record<string, unknown> {
  const d = dimsOf(cfg);
  const c: Record<string, unknown> = {
    architectures: [cfg.model_type === 'qwen3' ? 'Qwen3ForCausalLM' : 'LlamaForCausalLM'],
    model_type: cfg.model_type,
    vocab_size: d.V,
    hidden_size: d.H,
    intermediate_size: d.F,
    num_hidden_layers: d.L,
    num_attention_heads: d.Hq,
    num_key_value_heads: d.Hkv,
    head_dim: d.D, // always explicit: Qwen3Config's default is 128, not hidden/heads
    hidden_act: 'silu',
    max_position_embeddings: 2048,
    rms_norm_eps: d.eps,
    rope_theta: d.theta,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    tie_word_embeddings: d.tied,
    bos_token_id: 0,
    eos_token_id: 1,
    torch_dtype: 'float32',
    use_cache: true,
  };
  if (cfg.model_type === 'llama') c.mlp_bias = false;
  else c.use_sliding_window = false;
  return c;
}

/** Writes config.json and model.safetensors (F32; no lm_head.weight when tied) into `dir`. */
export function writeHfCheckpoint(dir: string, cfg: RefConfig, w: Weights): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfig(cfg), null, 2) + '\n');
  const tensors: Weights = new Map();
  for (const [name, shape] of paramShapes(cfg)) {
    const t = w.get(name);
    if (!t) throw new Error(`writeHfCheckpoint: missing weight ${name}`);
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`writeHfCheckpoint: ${name} has shape [${t.shape}], expected [${shape}]`);
    tensors.set(name, t);
  }
  writeSafetensorsLite(path.join(dir, 'model.safetensors'), tensors);
}
