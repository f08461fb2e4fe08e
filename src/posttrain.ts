// posttrain.ts — the per-step work of each train.mode. train.ts owns the loop (learning rate, logging,
// evaluation, checkpoints, resume); a ModeRunner says what one optimizer step and one evaluation are:
//   pretrain  token windows of the shards (net.trainStep, zero-copy)
//   sft       chat examples rendered with the chat template, loss on the assistant turns, packed rows
//   dpo       preference pairs against reference log-probs computed once and stored with the pairs
//   distill   token windows, the teacher's logits on the fly or its top-k precomputed to a shard
import fs from 'node:fs';
import path from 'node:path';
import { tableFromArrays, tableFromIPC, tableToIPC } from 'apache-arrow';
import type { Config } from './config.js';
import { describeIssues } from './jsonl.js';
import type { NativeAddon, NativeModel, StepOptions, TokenRows } from './native.js';
import { WindowSampler } from './sampler.js';
import { loadSftExamples, packSftRows, readSftShard, resolveChatTemplate, templateHash, writeSftShard, type SftExamples } from './sft_data.js';
import { dpoRows, loadDpoPairs, readDpoShard, withRefLogps, writeDpoShard, type DpoPair } from './dpo_data.js';
import type { TextTokenizer } from './tokenizer.js';
import type { TokenData } from './traindata.js';
import { loadModel } from './evaluate.js';

export interface StepOutcome {
  loss: number;
  gradNorm: number;
  tokens: number;
  extra?: Record<string, number>; // mode metrics, recorded in metrics.jsonl and logged
}
export interface EvalOutcome {
  loss: number;
  extra?: Record<string, number>;
}
export interface ModeRunner {
  describe: string; // the data, for the start-of-run line
  numExamples: number; // windows / rows / pairs in an epoch (trainer_state.data_windows)
  step(o: StepOptions): Promise<StepOutcome>;
  evaluate(): Promise<EvalOutcome | null>;
  close?(): void;
}

export interface RunnerContext {
  cfg: Config;
  addon: NativeAddon;
  net: NativeModel;
  tokenizer: TextTokenizer | null;
  tokenizerFile: string | null;
  onCuda: boolean;
  lora: boolean;
  log: (s: string) => void;
}

// Row indices of a 0-based step: a seeded permutation per epoch over n rows (WindowSampler over a stream of
// n rows of T tokens gives exactly the windows 0..n-1), so a resumed run draws the same rows.
function rowSampler(n: number, cfg: Config): (step: number, count: number) => number[] {
  const T = 1; // one "token" per row: window w starts at offset w
  const s = new WindowSampler([n + 1], T, cfg.run.seed, cfg.train.shuffle);
  return (step, count) => {
    const w = s.windowsForStep(step, count);
    const out: number[] = [];
    for (let i = 0; i < count; i++) out.push(w[2 * i + 1]);
    return out;
  };
}

function gatherRows(src: TokenRows, rows: number[], T: number): TokenRows {
  const inputs = new Uint32Array(rows.length * T), targets = new Int32Array(rows.length * T);
  const positions = src.positions ? new Int32Array(rows.length * T) : undefined;
  rows.forEach((r, i) => {
    inputs.set(src.inputs.subarray(r * T, (r + 1) * T), i * T);
    targets.set(src.targets.subarray(r * T, (r + 1) * T), i * T);
    if (positions) positions.set(src.positions!.subarray(r * T, (r + 1) * T), i * T);
  });
  return { inputs, targets, ...(positions ? { positions } : {}) };
}

// Token windows of pretraining shards as explicit rows (LoRA and distillation take rows, not windows).
function windowRows(data: TokenData, windows: Uint32Array, T: number): TokenRows {
  const n = windows.length / 2;
  const inputs = new Uint32Array(n * T), targets = new Int32Array(n * T);
  for (let r = 0; r < n; r++) {
    const s = data.streams[windows[2 * r]].subarray(windows[2 * r + 1], windows[2 * r + 1] + T + 1);
    inputs.set(s.subarray(0, T), r * T);
    for (let t = 0; t < T; t++) targets[r * T + t] = s[t + 1];
  }
  return { inputs, targets };
}

// ---- pretrain -------------------------------------------------------------------------------------------
export function pretrainRunner(
  ctx: RunnerContext,
  data: TokenData,
  sampler: { numWindows: number; windowsForStep(step: number, rows: number): Uint32Array },
  evaluate: () => Promise<number | null>,
): ModeRunner {
  const { cfg, net } = ctx;
  const rows = cfg.train.batch_size * cfg.train.grad_accum;
  return {
    describe: `${data.source}: ${sampler.numWindows} windows of ${cfg.train.seq_len + 1} tokens`,
    numExamples: sampler.numWindows,
    async step(o) {
      const windows = sampler.windowsForStep(o.step - 1, rows);
      if (ctx.lora) return net.trainStepTokens({ ...o, ...windowRows(data, windows, o.seqLen) });
      return net.trainStep({ ...o, windows });
    },
    async evaluate() {
      const l = await evaluate();
      return l === null ? null : { loss: l };
    },
  };
}

// ---- SFT ------------------------------------------------------------------------------------------------
async function sftExamplesOf(ctx: RunnerContext, file: string, split: string): Promise<SftExamples> {
  const { cfg, tokenizer, log } = ctx;
  if (/\.arrow$/i.test(file)) {
    return readSftShard(file, { tokenizerHash: tokenizer?.hash });
  }
  if (!tokenizer || !ctx.tokenizerFile) throw new Error('train.mode sft needs a tokenizer (tokenizer.path, or model.init_from with a tokenizer.json)');
  const template = resolveChatTemplate(ctx.tokenizerFile, cfg.train.sft.chat_template);
  const ex = await loadSftExamples(file, tokenizer, template, { maxLen: cfg.train.seq_len + 1 });
  if (ex.issues.malformed) log(`${file}: ${describeIssues(ex.issues)}`);
  if (ex.truncated) log(`${file}: ${ex.truncated} example(s) longer than seq_len + 1 = ${cfg.train.seq_len + 1} tokens were cut`);
  const shard = path.join(cfg.run.out_dir, 'data', `sft-${split}.arrow`);
  fs.mkdirSync(path.dirname(shard), { recursive: true });
  writeSftShard(shard, ex, { tokenizerHash: tokenizer.hash, templateHash: templateHash(template) });
  return ex;
}

export async function sftRunner(ctx: RunnerContext): Promise<ModeRunner> {
  const { cfg, net } = ctx;
  const T = cfg.train.seq_len, B = cfg.train.batch_size, accum = cfg.train.grad_accum;
  if (!cfg.data.train) throw new Error('train.mode sft needs data.train: a JSONL of chat examples ({"messages": [...]} or {"prompt", "response"}) or an SFT .arrow shard');
  const pack = cfg.train.sft.pack && !ctx.onCuda;
  if (cfg.train.sft.pack && ctx.onCuda) ctx.log('train.sft.pack: packed rows train on the CPU only; on CUDA each example gets its own padded row');
  const train = await sftExamplesOf(ctx, cfg.data.train, 'train');
  const padId = ctx.tokenizer?.eosId ?? 0;
  const rows = packSftRows(train, T, { pack, seed: cfg.run.seed, padId });
  if (rows.rows === 0) throw new Error(`${cfg.data.train}: no usable SFT examples`);
  const nEx = train.offsets.length - 1;
  let val: TokenRows | null = null;
  if (cfg.data.val) {
    const v = packSftRows(await sftExamplesOf(ctx, cfg.data.val, 'val'), T, { pack: false, seed: cfg.run.seed, padId });
    val = { inputs: v.inputs, targets: v.targets };
  }
  const pick = rowSampler(rows.rows, cfg);
  return {
    describe: `${cfg.data.train}: ${nEx} examples in ${rows.rows} rows of ${T} tokens (${pack ? `packed, ${rows.examplesPerRow.toFixed(2)} per row` : 'one per row'})`,
    numExamples: rows.rows,
    async step(o) {
      return net.trainStepTokens({ ...o, ...gatherRows(rows, pick(o.step - 1, B * accum), T) });
    },
    async evaluate() {
      if (!val) return null;
      if (ctx.onCuda) net.syncToHost();
      const lp = await net.sequenceLogps({ ...val, seqLen: T });
      let n = 0;
      for (const t of val.targets) n += t >= 0 ? 1 : 0;
      return { loss: -lp.reduce((a, b) => a + b, 0) / Math.max(1, n) };
    },
  };
}

// ---- DPO ------------------------------------------------------------------------------------------------
// The reference model is the policy before its first DPO step; its log-probs are stored in the pairs shard
// under this id, so a resumed run (whose weights have moved) reuses them instead of recomputing.
function referenceId(cfg: Config): string {
  return `${cfg.model.init_from ?? 'init'}|seq_len=${cfg.train.seq_len}`;
}

// Row log-probs of every pair's chosen and rejected response, 64 pairs per call (bounded memory).
async function refLogpsOf(net: NativeModel, pairs: DpoPair[], T: number): Promise<{ chosen: Float64Array; rejected: Float64Array }> {
  const chosen = new Float64Array(pairs.length), rejected = new Float64Array(pairs.length);
  for (let p0 = 0; p0 < pairs.length; p0 += 64) {
    const idx = Array.from({ length: Math.min(64, pairs.length - p0) }, (_, i) => p0 + i);
    const rows = dpoRows(pairs, idx, T);
    const lp = await net.sequenceLogps({ inputs: rows.inputs, targets: rows.targets, seqLen: T });
    idx.forEach((p, i) => {
      chosen[p] = lp[2 * i];
      rejected[p] = lp[2 * i + 1];
    });
  }
  return { chosen, rejected };
}

// A resumed run reads the pairs (and their reference log-probs) back from the run's shard; a fresh run
// tokenizes data.train again, so edited data or a new template never meets a stale shard.
async function dpoPairsOf(ctx: RunnerContext, file: string, split: string, resuming: boolean): Promise<{ shard: string; pairs: DpoPair[] }> {
  const { cfg, tokenizer, log } = ctx;
  const shard = path.join(cfg.run.out_dir, 'data', `dpo-${split}.arrow`);
  if (resuming && fs.existsSync(shard)) return { shard, pairs: readDpoShard(shard, { tokenizerHash: tokenizer?.hash }).pairs };
  if (/\.arrow$/i.test(file)) {
    fs.mkdirSync(path.dirname(shard), { recursive: true });
    fs.copyFileSync(file, shard);
    return { shard, pairs: readDpoShard(shard, { tokenizerHash: tokenizer?.hash }).pairs };
  }
  if (!tokenizer || !ctx.tokenizerFile) throw new Error('train.mode dpo needs a tokenizer (tokenizer.path, or model.init_from with a tokenizer.json)');
  const template = resolveChatTemplate(ctx.tokenizerFile, cfg.train.dpo.chat_template);
  const r = await loadDpoPairs(file, tokenizer, template);
  if (r.issues.malformed) log(`${file}: ${describeIssues(r.issues)}`);
  if (r.pairs.length === 0) throw new Error(`${file}: no usable DPO pairs`);
  fs.mkdirSync(path.dirname(shard), { recursive: true });
  writeDpoShard(shard, r.pairs, { tokenizerHash: tokenizer.hash, templateHash: templateHash(template) });
  return { shard, pairs: r.pairs };
}

async function withReference(ctx: RunnerContext, p: { shard: string; pairs: DpoPair[] }, startStep: number) {
  const T = ctx.cfg.train.seq_len;
  const s = readDpoShard(p.shard);
  const id = referenceId(ctx.cfg);
  if (s.ref && s.ref.model === id) return s.ref;
  if (startStep > 0) throw new Error(`${p.shard}: no reference log-probs for ${id}; they must be computed before the first step (delete the run's checkpoints to start over)`);
  const t0 = Date.now();
  const ref = await refLogpsOf(ctx.net, p.pairs, T);
  withRefLogps(p.shard, { ...ref, model: id });
  ctx.log(`reference log-probs of ${p.pairs.length} pairs computed in ${((Date.now() - t0) / 1000).toFixed(1)} s and stored in ${p.shard}`);
  return ref;
}

// DPO metrics of the current policy over a set of pairs (no update).
async function dpoMetrics(net: NativeModel, pairs: DpoPair[], ref: { chosen: Float64Array; rejected: Float64Array }, T: number, beta: number, ls: number): Promise<EvalOutcome> {
  const cur = await refLogpsOf(net, pairs, T);
  let loss = 0, acc = 0, margin = 0;
  for (let i = 0; i < pairs.length; i++) {
    const rc = beta * (cur.chosen[i] - ref.chosen[i]), rr = beta * (cur.rejected[i] - ref.rejected[i]);
    const z = rc - rr;
    const logSig = (x: number) => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)));
    loss += -(1 - ls) * logSig(z) - ls * logSig(-z);
    acc += rc > rr ? 1 : 0;
    margin += z;
  }
  const n = Math.max(1, pairs.length);
  return { loss: loss / n, extra: { reward_accuracy: acc / n, reward_margin: margin / n } };
}

export async function dpoRunner(ctx: RunnerContext, startStep: number): Promise<ModeRunner> {
  const { cfg, net } = ctx;
  const T = cfg.train.seq_len, B = cfg.train.batch_size, accum = cfg.train.grad_accum;
  if (!cfg.data.train) throw new Error('train.mode dpo needs data.train: a JSONL of {"prompt", "chosen", "rejected"} (see `ko-train dpo-pairs`) or a DPO .arrow shard');
  const train = await dpoPairsOf(ctx, cfg.data.train, 'train', startStep > 0);
  const ref = await withReference(ctx, train, startStep);
  const val = cfg.data.val ? await dpoPairsOf(ctx, cfg.data.val, 'val', startStep > 0) : null;
  const valRef = val ? await withReference(ctx, val, startStep) : null;
  const pick = rowSampler(train.pairs.length, cfg);
  const { beta, label_smoothing: ls } = cfg.train.dpo;
  return {
    describe: `${cfg.data.train}: ${train.pairs.length} preference pairs, rows of ${T} tokens, beta ${beta}${ls ? `, label smoothing ${ls}` : ''}`,
    numExamples: train.pairs.length,
    async step(o) {
      const idx = pick(o.step - 1, B * accum);
      const rows = dpoRows(train.pairs, idx, T);
      const refLogps = new Float64Array(2 * idx.length);
      idx.forEach((p, i) => {
        refLogps[2 * i] = ref.chosen[p];
        refLogps[2 * i + 1] = ref.rejected[p];
      });
      const r = await net.dpoStep({ ...o, inputs: rows.inputs, targets: rows.targets, refLogps, beta, labelSmoothing: ls });
      return {
        loss: r.loss, gradNorm: r.gradNorm, tokens: r.tokens,
        extra: {
          chosen_logp: r.chosenLogp, rejected_logp: r.rejectedLogp, chosen_reward: r.chosenReward,
          rejected_reward: r.rejectedReward, reward_margin: r.margin, reward_accuracy: r.accuracy,
        },
      };
    },
    // Held-out pairs when data.val is given; else the training pairs (the reward accuracy there is what the
    // DPO literature reports as "train rewards/accuracies").
    async evaluate() {
      return val && valRef ? dpoMetrics(net, val.pairs, valRef, T, beta, ls) : dpoMetrics(net, train.pairs, ref, T, beta, ls);
    },
  };
}

// ---- distillation ---------------------------------------------------------------------------------------
function loadTeacher(ctx: RunnerContext): { net: NativeModel; dir: string } {
  const dir = ctx.cfg.train.distill.teacher;
  if (!dir) throw new Error('train.mode distill needs train.distill.teacher: a checkpoint dir with the same tokenizer');
  if (!fs.existsSync(path.join(dir, 'config.json'))) throw new Error(`train.distill.teacher: ${dir} has no config.json (not a checkpoint dir)`);
  const t = loadModel(dir);
  if (ctx.tokenizer && t.tokenizer && t.tokenizer.hash !== ctx.tokenizer.hash)
    throw new Error(`train.distill.teacher: ${dir} uses tokenizer ${t.tokenizer.hash}, this run ${ctx.tokenizer.hash}; distillation needs the same tokenizer`);
  return { net: t.net, dir };
}

// The teacher's top-k logits of every window, computed once and kept in an Arrow file; the teacher is loaded
// only when that file is missing or stale, and not kept.
async function teacherTopk(ctx: RunnerContext, dir: string, data: TokenData, sampler: WindowSampler, k: number) {
  const T = ctx.cfg.train.seq_len;
  const file = path.join(ctx.cfg.run.out_dir, 'data', `teacher-top${k}.arrow`);
  const key = `${path.resolve(dir)}|k=${k}|T=${T}|windows=${sampler.numWindows}`;
  if (fs.existsSync(file)) {
    const t = tableFromIPC(fs.readFileSync(file));
    if (t.schema.metadata.get('ko_train_teacher') === key)
      return { ids: t.getChild('ids')!.toArray() as Uint32Array, logits: t.getChild('logits')!.toArray() as Float32Array };
    ctx.log(`${file}: made for another teacher or data; recomputing`);
  }
  const teacher = loadTeacher(ctx).net;
  const n = sampler.numWindows;
  const ids = new Uint32Array(n * T * k), logits = new Float32Array(n * T * k);
  const t0 = Date.now();
  const chunk = 16;
  for (let w0 = 0; w0 < n; w0 += chunk) {
    const ws = Array.from({ length: Math.min(chunk, n - w0) }, (_, i) => w0 + i);
    const rows = windowRows(data, sampler.windowsAt(ws), T);
    const r = await teacher.topkLogits({ inputs: rows.inputs, seqLen: T, k });
    ids.set(r.ids, w0 * T * k);
    logits.set(r.logits, w0 * T * k);
  }
  const table = tableFromArrays({ ids, logits });
  table.schema.metadata.set('ko_train_teacher', key);
  table.schema.metadata.set('ko_train_format', 'teacher-topk-v1');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file + '.partial', tableToIPC(table, 'file'));
  fs.renameSync(file + '.partial', file);
  ctx.log(`teacher top-${k} logits of ${n} windows written to ${file} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { ids, logits };
}

export async function distillRunner(
  ctx: RunnerContext,
  data: TokenData,
  sampler: WindowSampler,
  valRows: TokenRows | null,
  evaluate: () => Promise<number | null>,
): Promise<ModeRunner> {
  const { cfg, net } = ctx;
  const T = cfg.train.seq_len, rowsPerStep = cfg.train.batch_size * cfg.train.grad_accum;
  const { alpha, temperature, top_k: k } = cfg.train.distill;
  // On the fly the teacher stays beside the student; with top-k it is loaded only to fill the logits file
  // and, for the held-out KL, during an evaluation.
  const teacher = k > 0 ? null : loadTeacher(ctx);
  const top = k > 0 ? await teacherTopk(ctx, cfg.train.distill.teacher!, data, sampler, k) : null;
  return {
    describe: `${data.source}: ${sampler.numWindows} windows of ${T + 1} tokens; teacher ${cfg.train.distill.teacher} ` +
      `(${top ? `top-${k} logits from a shard` : 'logits on the fly'}), alpha ${alpha}, temperature ${temperature}`,
    numExamples: sampler.numWindows,
    async step(o) {
      const windows = sampler.windowsForStep(o.step - 1, rowsPerStep);
      const rows = windowRows(data, windows, T);
      let r;
      if (top) {
        const n = windows.length / 2, topIds = new Uint32Array(n * T * k), topLogits = new Float32Array(n * T * k);
        for (let i = 0; i < n; i++) {
          const w = sampler.indexOf(windows[2 * i], windows[2 * i + 1]);
          topIds.set(top.ids.subarray(w * T * k, (w + 1) * T * k), i * T * k);
          topLogits.set(top.logits.subarray(w * T * k, (w + 1) * T * k), i * T * k);
        }
        r = await net.distillStep({ ...o, ...rows, alpha, temperature, topIds, topLogits, k });
      } else {
        r = await net.distillStep({ ...o, ...rows, alpha, temperature, teacher: teacher!.net });
      }
      return { loss: r.loss, gradNorm: r.gradNorm, tokens: r.tokens, extra: { kl: r.kl, ce: r.ce } };
    },
    // Held-out cross-entropy, and KL(teacher ∥ student) at temperature 1: how close the student has come.
    async evaluate() {
      const ce = await evaluate();
      if (ce === null || !valRows) return null;
      const d = await net.distillEval({ ...valRows, seqLen: T, teacher: (teacher ?? loadTeacher(ctx)).net, temperature: 1 });
      return { loss: ce, extra: { eval_kl: d.kl / Math.max(1, d.count) } };
    },
  };
}
