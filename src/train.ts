// train.ts — the training loop: each optimizer step runs in the addon on a worker thread; this file only
// chooses batches, the learning rate, logging, evaluation and checkpoints.
import fs from 'node:fs';
import path from 'node:path';
import type { Fp8Tensors } from './checkpoint.js';
import { configToYaml, resolveModel, type Config, type ResolvedModel } from './config.js';
import {
  latestCheckpoint,
  loadTrainerState,
  loadWeights,
  modelFromHfConfig,
  pruneCheckpoints,
  saveCheckpoint,
  type TrainerState,
} from './checkpoint.js';
import { chooseDevice, native, resolvePrecision, type NativeModel } from './native.js';
import { precisionOptions } from './precision.js';
import { peakBf16Flops } from './gpu_peaks.js';
import { ProgressBar, fmtDuration, formatStep } from './progress.js';
import { MixedSampler, type MixSource } from './mixing.js';
import { WindowSampler, learningRate } from './sampler.js';
import { loadRunTokenizer, loadTokenData, runTokenizerFile, shardDirOf, type TokenData } from './traindata.js';
import { packSequences, type TokenSequences } from './jsonl.js';
import { loadResizedWeights, planVocabResize } from './vocab_resize.js';
import { distillRunner, dpoRunner, pretrainRunner, sftRunner, type ModeRunner, type RunnerContext } from './posttrain.js';
import type { TokenRows } from './native.js';
import { initLoraBuffers, loadLoraAdapter, saveLoraAdapter, type LoraBuffers } from './lora.js';

export interface MetricRow {
  step: number;
  loss?: number;
  eval_loss?: number;
  lr?: number;
  grad_norm?: number;
  ms?: number;
  tokens_per_s?: number;
  tokens?: number;
  [key: string]: unknown;
}

export interface TrainOutcome {
  outDir: string;
  step: number;
  checkpoint: string;
  firstEvalLoss: number | null;
  lastEvalLoss: number | null;
  metricsFile: string;
}

export function readMetrics(file: string): MetricRow[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as MetricRow);
}

// A fixed validation set: the first `n` windows of seqLen+1 tokens of the validation streams, in order.
function validationWindows(d: TokenData, seqLen: number, n: number): TokenSequences {
  const windows: Uint32Array[] = [];
  for (const s of d.streams)
    for (let off = 0; off + seqLen + 1 <= s.length && windows.length < n; off += seqLen)
      windows.push(s.subarray(off, off + seqLen + 1));
  return packSequences(windows);
}

// Several sources in the shards (prep with data.sources): a seeded mix by data.sources' weights (or the
// weights prep recorded). One source: the plain window sampler.
function mixedSamplerFor(cfg: Config, data: TokenData, T: number): MixedSampler | null {
  if (!data.streamSources) return null;
  const names = [...new Set(data.streamSources)];
  if (names.length < 2) return null;
  const cfgWeights = Object.fromEntries(cfg.data.sources.map((s) => [s.name, s.weight]));
  const sources: MixSource[] = names.map((name) => {
    const streams = data.streamSources!.map((s, i) => (s === name ? i : -1)).filter((i) => i >= 0);
    return { name, weight: cfgWeights[name] ?? data.sourceWeights?.[name] ?? 1, streams, lengths: streams.map((i) => data.streams[i].length) };
  });
  return new MixedSampler(sources, T, cfg.run.seed, cfg.train.shuffle);
}

// " | chosen reward 0.1234 | ..." for a step's mode metrics.
function formatExtra(extra: Record<string, number>): string {
  return Object.entries(extra).map(([k, v]) => ` | ${k.replace(/_/g, ' ')} ${Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(4)}`).join('');
}

// Rows of seqLen inputs/targets from validation windows (distillation's held-out KL).
function windowsAsRows(v: TokenSequences, T: number): TokenRows | null {
  const n = v.offsets.length - 1;
  if (n < 1) return null;
  const inputs = new Uint32Array(n * T), targets = new Int32Array(n * T);
  for (let r = 0; r < n; r++) {
    const w = v.tokens.subarray(v.offsets[r], v.offsets[r + 1]);
    inputs.set(w.subarray(0, T), r * T);
    for (let t = 0; t < T; t++) targets[r * T + t] = w[t + 1];
  }
  return { inputs, targets };
}

export async function runTrain(cfg: Config, log: (s: string) => void = console.log): Promise<TrainOutcome> {
  const addon = native();
  const threads = addon.setThreads(cfg.run.threads);
  const mode = cfg.train.mode;
  const lora = cfg.train.lora.rank > 0;
  // What each mode needs, checked before anything is loaded.
  if ((mode === 'sft' || mode === 'dpo') && !cfg.data.train)
    throw new Error(mode === 'sft'
      ? 'train.mode sft needs data.train: a JSONL of chat examples ({"messages": [...]} or {"prompt", "response"}) or an SFT .arrow shard'
      : 'train.mode dpo needs data.train: a JSONL of {"prompt", "chosen", "rejected"} (see `ko-train dpo-pairs`) or a DPO .arrow shard');
  if (mode === 'distill' && !cfg.train.distill.teacher)
    throw new Error('train.mode distill needs train.distill.teacher: a checkpoint dir with the same tokenizer');
  if (lora && (mode === 'dpo' || mode === 'distill'))
    throw new Error(`train.lora works with train.mode pretrain or sft in this version, not ${mode}`);
  // DPO, distillation and LoRA have CPU steps only so far (their CUDA steps are future work).
  const cpuOnly = mode === 'dpo' || mode === 'distill' || lora;
  let device = cfg.run.device;
  if (cpuOnly && device !== 'cpu') {
    if (device.startsWith('cuda')) log(`${lora ? 'train.lora' : `train.mode ${mode}`} trains on the CPU in this version; using the CPU`);
    device = 'cpu';
  }
  const dev = chooseDevice(device, addon.cudaInfo());
  const prec = resolvePrecision(cfg.train.precision, dev);
  if (prec.note) log(prec.note);
  const outDir = cfg.run.out_dir;
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'config.yaml'), configToYaml(cfg));

  const tokenizer = loadRunTokenizer(cfg);
  const hash = tokenizer?.hash ?? null;
  // sft and dpo read chat examples / preference pairs (posttrain.ts); pretrain and distill read token shards.
  const tokenModes = mode === 'pretrain' || mode === 'distill';
  const trainWhere = cfg.data.train ?? shardDirOf(cfg);
  const data: TokenData | null = tokenModes ? await loadTokenData(trainWhere, 'train', hash, log) : null;
  let valData: TokenData | null = null;
  if (!tokenModes) valData = null;
  else if (cfg.data.val) valData = await loadTokenData(cfg.data.val, 'val', hash, log);
  else if (!cfg.data.train && fs.existsSync(path.join(trainWhere, 'manifest.json'))) {
    try {
      valData = await loadTokenData(trainWhere, 'val', hash, log);
    } catch {
      valData = null; // no validation split was written
    }
  }

  // Continual pretraining: init_from's config.json defines the model, with the vocabulary grown to the run's
  // tokenizer when that is larger (src/vocab_resize.ts; resumed runs have the grown size in their layout).
  const baseModel = cfg.model.init_from ? modelFromHfConfig(path.join(cfg.model.init_from, 'config.json')) : null;
  const resize = baseModel ? planVocabResize(baseModel, tokenizer) : null;
  const model: ResolvedModel = baseModel
    ? { ...baseModel, vocab_size: resize?.newVocab ?? baseModel.vocab_size }
    : resolveModel(cfg.model, tokenizer?.vocabSize ?? data?.vocabSize ?? null);
  const freezeSteps = resize ? cfg.train.freeze_old_embeddings_steps : 0;
  if (cfg.train.freeze_old_embeddings_steps > 0 && !resize)
    log(`warning: train.freeze_old_embeddings_steps is ${cfg.train.freeze_old_embeddings_steps} but the vocabulary was not resized (it needs model.init_from and a larger tokenizer); ignored`);
  const layout = addon.paramLayout(model);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].size;
  const T = cfg.train.seq_len, B = cfg.train.batch_size, accum = cfg.train.grad_accum;
  if (T > model.max_position_embeddings)
    throw new Error(`train.seq_len ${T} exceeds model.max_position_embeddings ${model.max_position_embeddings}`);

  const latest = latestCheckpoint(outDir);
  if (latest && !cfg.train.resume)
    throw new Error(
      `${outDir} already holds checkpoints (latest ${path.basename(latest.dir)}); set train.resume: true ` +
        `(--train.resume true) to continue that run, or choose another run.out_dir`,
    );
  // The starting weights: init_from's (resized when the vocabulary grew), else a seeded initialisation.
  const initialParams = async (): Promise<Float32Array> => {
    if (!cfg.model.init_from) {
      const p = new Float32Array(total);
      addon.initParams(model, p, cfg.run.seed, cfg.model.init_std);
      return p;
    }
    return resize && baseModel && tokenizer
      ? loadResizedWeights({
          dir: cfg.model.init_from, baseModel, resize, layout, total, paramLayout: (m) => addon.paramLayout(m),
          runTokenizer: tokenizer, mode: cfg.model.new_token_init, seed: cfg.run.seed, log,
        })
      : loadWeights(cfg.model.init_from, layout, total);
  };
  // LoRA trains adapters only: no full-size AdamW moments (the adapter has its own, in src/lora.ts buffers).
  const loraCfg = { rank: cfg.train.lora.rank, alpha: cfg.train.lora.alpha, targets: [...cfg.train.lora.targets] };
  let loraBufs: LoraBuffers | null = null;
  let params: Float32Array, m: Float32Array, v: Float32Array;
  let startStep = 0, tokensSeen = 0;
  let loadedCursor: Record<string, number> | undefined;
  let loadedWindows = 0;
  let fp8Saved: Fp8Tensors | null = null;
  if (latest && lora) {
    // The checkpoint's model.safetensors is merged; training continues from the base and the saved adapter.
    params = await initialParams();
    loraBufs = initLoraBuffers(model, loraCfg, cfg.run.seed);
    const saved = loadLoraAdapter(latest.dir, loraBufs.layout.sites);
    if (saved.config.rank !== loraCfg.rank || saved.config.alpha !== loraCfg.alpha)
      throw new Error(`${latest.dir}: LoRA rank ${saved.config.rank} alpha ${saved.config.alpha}, but train.lora has rank ${loraCfg.rank} alpha ${loraCfg.alpha}`);
    loraBufs.adapter.set(saved.adapter);
    if (saved.moments) {
      loraBufs.m.set(saved.moments.m);
      loraBufs.v.set(saved.moments.v);
    }
    m = v = new Float32Array(0);
    const state = JSON.parse(fs.readFileSync(path.join(latest.dir, 'trainer_state.json'), 'utf8')) as TrainerState;
    startStep = state.step;
    loadedWindows = state.data_windows;
    tokensSeen = state.tokens_seen;
    if (state.seed !== cfg.run.seed) throw new Error(`${latest.dir}: written with run.seed ${state.seed}, not ${cfg.run.seed}`);
    log(`resuming from ${latest.dir} (step ${startStep}, LoRA adapter)`);
  } else if (latest) {
    params = loadWeights(latest.dir, layout, total);
    const st = loadTrainerState(latest.dir, layout, total);
    ({ m, v } = st);
    fp8Saved = st.fp8;
    startStep = st.state.step;
    loadedCursor = st.state.data_cursor;
    loadedWindows = st.state.data_windows;
    tokensSeen = st.state.tokens_seen;
    if (st.state.seed !== cfg.run.seed) throw new Error(`${latest.dir}: written with run.seed ${st.state.seed}, not ${cfg.run.seed}`);
    log(`resuming from ${latest.dir} (step ${startStep})`);
  } else {
    m = new Float32Array(lora ? 0 : total);
    v = new Float32Array(lora ? 0 : total);
    params = await initialParams();
    if (cfg.model.init_from) log(`initialised from ${cfg.model.init_from}`);
    if (lora) loraBufs = initLoraBuffers(model, loraCfg, cfg.run.seed);
  }

  const net: NativeModel = new addon.Model(model, params);
  if (loraBufs) {
    // params becomes the merged weights; the base keeps its own copy.
    net.attachLora({ ...loraCfg, base: Float32Array.from(params), adapter: loraBufs.adapter, m: loraBufs.m, v: loraBufs.v });
    const trainable = loraBufs.layout.size;
    log(`LoRA rank ${loraCfg.rank}, alpha ${loraCfg.alpha} on ${loraCfg.targets.join(', ')}: ${(trainable / 1e6).toFixed(3)} M trainable parameters ` +
      `(${((100 * trainable) / total).toFixed(2)}% of ${(total / 1e6).toFixed(2)} M); checkpoints hold the merged weights and the adapter`);
  } else net.attachOptimizer(m, v);
  net.setPrecision(precisionOptions(cfg, prec.precision, model));
  if (prec.precision === 'fp8' && fp8Saved) {
    if (fp8Saved.historyLen !== cfg.train.fp8.amax_history_len)
      throw new Error(`${latest?.dir}: FP8 amax history of ${fp8Saved.historyLen} steps, but train.fp8.amax_history_len is ${cfg.train.fp8.amax_history_len}`);
    net.setFp8State(fp8Saved);
  }
  let deviceNote = `${threads} threads, GEMM ${addon.buildInfo().gemm}`;
  if (dev.device === 'cuda') {
    const d = net.useDevice(dev.index);
    deviceNote = `${d.name}, ${(d.bytes / 2 ** 30).toFixed(2)} GiB of weights and optimizer state`;
  }
  const peak = dev.device === 'cuda' ? peakBf16Flops(dev.name) : null;
  if (data) net.attachData(data.streams);
  const mix = data && mode === 'pretrain' ? mixedSamplerFor(cfg, data, T) : null;
  const windowSampler = data ? new WindowSampler(data.streams.map((s) => s.length), T, cfg.run.seed, cfg.train.shuffle) : null;
  const sampler = mix ?? windowSampler;
  if (data && sampler!.numWindows === 0)
    throw new Error(`${data.source}: ${data.streams.reduce((a, s) => a + s.length, 0)} tokens, fewer than seq_len + 1 = ${T + 1}`);

  const metricsFile = path.join(outDir, 'metrics.jsonl');
  // Keep the record consistent with the checkpoint we resume from: drop rows logged after it.
  const kept = readMetrics(metricsFile).filter((r) => r.step <= startStep);
  fs.writeFileSync(metricsFile, kept.map((r) => JSON.stringify(r) + '\n').join(''));
  const record = (r: MetricRow) => fs.appendFileSync(metricsFile, JSON.stringify(r) + '\n');

  const valSet = valData ? validationWindows(valData, T, cfg.train.eval_batches * B) : null;
  const evalLoss = async (): Promise<number | null> => {
    if (!valSet || valSet.offsets.length < 2) return null;
    const r = await net.evalLoss(valSet.tokens, valSet.offsets, T);
    return r.sum / r.count;
  };
  const ctx: RunnerContext = { cfg, addon, net, tokenizer, tokenizerFile: runTokenizerFile(cfg), onCuda: dev.device === 'cuda', lora, log };
  let runner: ModeRunner;
  if (mode === 'sft') runner = await sftRunner(ctx);
  else if (mode === 'dpo') runner = await dpoRunner(ctx, startStep);
  else if (mode === 'distill') runner = await distillRunner(ctx, data!, windowSampler!, valSet ? windowsAsRows(valSet, T) : null, evalLoss);
  else runner = pretrainRunner(ctx, data!, sampler!, evalLoss);
  // Mode metrics of an evaluation go into the row as eval_<name> (unless already so named).
  const evalInto = async (row: MetricRow): Promise<string> => {
    const e = await runner.evaluate();
    if (!e) return '';
    row.eval_loss = lastEval = e.loss;
    let text = ` | eval loss ${e.loss.toFixed(4)}`;
    for (const [k, v] of Object.entries(e.extra ?? {})) {
      row[k.startsWith('eval_') ? k : `eval_${k}`] = v;
      text += ` | eval ${k.replace(/^eval_/, '').replace(/_/g, ' ')} ${v.toFixed(4)}`;
    }
    return text;
  };

  const stats = addon.modelStats(model, T);
  const trainFlopsPerToken = 3 * stats.forwardFlopsPerToken;
  log(
    `model ${model.model_type}: ${(stats.params / 1e6).toFixed(2)} M params, vocab ${model.vocab_size} | ` +
      `train.mode ${mode}${lora ? ` + LoRA rank ${cfg.train.lora.rank}` : ''} | data ${runner.describe} | device ${dev.device} (${dev.reason}), ` +
      `${deviceNote} | precision ${prec.precision}`,
  );

  if (freezeSteps > 0)
    log(`steps 1–${freezeSteps} train only the ${resize!.newVocab - resize!.baseVocab} new embedding${model.tie_word_embeddings ? '' : ' and LM-head'} rows; everything else is frozen until then`);

  if (latest && loadedWindows !== runner.numExamples)
    log(`warning: ${latest.dir} was written with ${loadedWindows} examples per epoch, the data now has ${runner.numExamples}; the batch order differs from the original run`);
  if (mix) {
    mix.restore(startStep, B * accum, latest ? loadedCursor : undefined);
    log(`mixing ${mix.sources.map((m) => `${m.name} ${(100 * m.weight / mix.sources.reduce((a, x) => a + x.weight, 0)).toFixed(1)}%`).join(' / ')} by sequence (seeded)` +
      (startStep ? `; cursor ${JSON.stringify(mix.cursorObject())}` : ''));
  }

  let firstEval: number | null = null;
  let lastEval: number | null = kept.filter((r) => r.eval_loss !== undefined).pop()?.eval_loss ?? null;
  if (startStep === 0) {
    const row: MetricRow = { step: 0 };
    const text = await evalInto(row);
    if (row.eval_loss !== undefined) {
      firstEval = row.eval_loss;
      record(row);
      log(`step 0${text}`);
    }
  } else firstEval = kept.find((r) => r.step === 0)?.eval_loss ?? null;

  const tokenizerFile = runTokenizerFile(cfg);
  const state = (step: number): TrainerState => ({
    step,
    seed: cfg.run.seed,
    tokens_seen: tokensSeen,
    tokenizer_hash: hash,
    data_windows: runner.numExamples,
    precision: prec.precision,
    ...(mix ? { data_cursor: mix.cursorObject() } : {}),
  });
  const save = (step: number) => {
    net.syncToHost(); // GPU weights, moments and FP8 state into params/m/v
    const fp8 = prec.precision === 'fp8' ? net.fp8State() : null;
    const dir = saveCheckpoint({
      outDir, step, model, layout, params, m: loraBufs ? null : m, v: loraBufs ? null : v, fp8, state: state(step), tokenizerFile,
      eosId: tokenizer?.eosId ?? null, bosId: tokenizer?.bosId ?? null,
      extraFiles: loraBufs
        ? (tmp) => saveLoraAdapter(tmp, loraCfg, loraBufs!.layout.sites, loraBufs!.adapter, { baseModel: cfg.model.init_from, moments: { m: loraBufs!.m, v: loraBufs!.v } })
        : undefined,
    });
    pruneCheckpoints(outDir, cfg.train.keep_checkpoints);
    return dir;
  };

  const bar = new ProgressBar();
  const steps = cfg.train.steps;
  const tStart = Date.now();
  let lastCheckpoint = latest?.dir ?? '';
  for (let step = startStep + 1; step <= steps; step++) {
    const lr = learningRate(step - 1, cfg.train);
    const t0 = Date.now();
    const r = await runner.step({
      batchSize: B,
      seqLen: T,
      accum,
      lr,
      beta1: cfg.train.beta1,
      beta2: cfg.train.beta2,
      eps: cfg.train.eps,
      weightDecay: cfg.train.weight_decay,
      gradClip: cfg.train.grad_clip,
      step,
      newRowsFrom: resize ? resize.baseVocab : -1,
      freezeSteps,
    });
    const ms = Date.now() - t0;
    tokensSeen += r.tokens;
    const tokPerS = (r.tokens * 1000) / Math.max(1, ms);
    if (!Number.isFinite(r.loss)) throw new Error(`step ${step}: loss is ${r.loss}; lower train.lr or check the data`);
    const row: MetricRow = { step, loss: r.loss, lr, grad_norm: r.gradNorm, ms, tokens_per_s: tokPerS, tokens: tokensSeen, ...r.extra };
    const mfu = peak ? (tokPerS * trainFlopsPerToken) / peak : null;
    if (mfu !== null) row.mfu = mfu;
    let line = formatStep({ step, steps, loss: r.loss, gradNorm: r.gradNorm, lr, ms, tokPerS, mfu });
    if (r.extra) line += formatExtra(r.extra);
    let evalText = '';
    if ((cfg.train.eval_every > 0 && step % cfg.train.eval_every === 0) || step === steps) evalText = await evalInto(row);
    record(row);
    if (step % cfg.train.log_every === 0 || step === steps || step === startStep + 1) bar.log(line + evalText);
    if ((cfg.train.checkpoint_every > 0 && step % cfg.train.checkpoint_every === 0) || step === steps) lastCheckpoint = save(step);
    const elapsed = (Date.now() - tStart) / 1000;
    bar.update(step, steps, `step ${step}/${steps} loss ${r.loss.toFixed(3)} lr ${lr.toExponential(1)} ${Math.round(tokPerS)} tok/s`,
      (elapsed / (step - startStep)) * (steps - step));
  }
  bar.done();
  if (mix && steps > startStep) {
    const tot = mix.tokensBySource.reduce((a, b) => a + b, 0);
    log(`mix realized over this run's ${tot} tokens: ${mix.sources.map((m, i) => `${m.name} ${(100 * mix.tokensBySource[i] / Math.max(1, tot)).toFixed(1)}%`).join(' / ')}`);
  }
  if (startStep >= steps) log(`nothing to train: the run is already at step ${startStep}/${steps}`);
  else log(`trained ${steps - startStep} steps in ${fmtDuration((Date.now() - tStart) / 1000)}; checkpoint ${lastCheckpoint}`);
  return { outDir, step: Math.max(steps, startStep), checkpoint: lastCheckpoint, firstEvalLoss: firstEval, lastEvalLoss: lastEval, metricsFile };
}
