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

export async function runTrain(cfg: Config, log: (s: string) => void = console.log): Promise<TrainOutcome> {
  const addon = native();
  const threads = addon.setThreads(cfg.run.threads);
  const dev = chooseDevice(cfg.run.device, addon.cudaInfo());
  const prec = resolvePrecision(cfg.train.precision, dev);
  if (prec.note) log(prec.note);
  const outDir = cfg.run.out_dir;
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'config.yaml'), configToYaml(cfg));

  const tokenizer = loadRunTokenizer(cfg);
  const hash = tokenizer?.hash ?? null;
  const trainWhere = cfg.data.train ?? shardDirOf(cfg);
  const data = await loadTokenData(trainWhere, 'train', hash, log);
  let valData: TokenData | null = null;
  if (cfg.data.val) valData = await loadTokenData(cfg.data.val, 'val', hash, log);
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
    : resolveModel(cfg.model, tokenizer?.vocabSize ?? data.vocabSize);
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
  let params: Float32Array, m: Float32Array, v: Float32Array;
  let startStep = 0, tokensSeen = 0;
  let loadedCursor: Record<string, number> | undefined;
  let fp8Saved: Fp8Tensors | null = null;
  if (latest) {
    params = loadWeights(latest.dir, layout, total);
    const st = loadTrainerState(latest.dir, layout, total);
    ({ m, v } = st);
    fp8Saved = st.fp8;
    startStep = st.state.step;
    loadedCursor = st.state.data_cursor;
    tokensSeen = st.state.tokens_seen;
    if (st.state.seed !== cfg.run.seed) throw new Error(`${latest.dir}: written with run.seed ${st.state.seed}, not ${cfg.run.seed}`);
    log(`resuming from ${latest.dir} (step ${startStep})`);
  } else {
    m = new Float32Array(total);
    v = new Float32Array(total);
    if (cfg.model.init_from) {
      params = resize && baseModel && tokenizer
        ? await loadResizedWeights({
            dir: cfg.model.init_from, baseModel, resize, layout, total, paramLayout: (m) => addon.paramLayout(m),
            runTokenizer: tokenizer, mode: cfg.model.new_token_init, seed: cfg.run.seed, log,
          })
        : loadWeights(cfg.model.init_from, layout, total);
      log(`initialised from ${cfg.model.init_from}`);
    } else {
      params = new Float32Array(total);
      addon.initParams(model, params, cfg.run.seed, cfg.model.init_std);
    }
  }

  const net: NativeModel = new addon.Model(model, params);
  net.attachOptimizer(m, v);
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
  net.attachData(data.streams);
  const mix = mixedSamplerFor(cfg, data, T);
  const sampler = mix ?? new WindowSampler(data.streams.map((s) => s.length), T, cfg.run.seed, cfg.train.shuffle);
  if (sampler.numWindows === 0)
    throw new Error(`${data.source}: ${data.streams.reduce((a, s) => a + s.length, 0)} tokens, fewer than seq_len + 1 = ${T + 1}`);

  const metricsFile = path.join(outDir, 'metrics.jsonl');
  // Keep the record consistent with the checkpoint we resume from: drop rows logged after it.
  const kept = readMetrics(metricsFile).filter((r) => r.step <= startStep);
  fs.writeFileSync(metricsFile, kept.map((r) => JSON.stringify(r) + '\n').join(''));
  const record = (r: MetricRow) => fs.appendFileSync(metricsFile, JSON.stringify(r) + '\n');

  const valSet = valData ? validationWindows(valData, T, cfg.train.eval_batches * B) : null;
  const evaluate = async (): Promise<number | null> => {
    if (!valSet || valSet.offsets.length < 2) return null;
    const r = await net.evalLoss(valSet.tokens, valSet.offsets, T);
    return r.sum / r.count;
  };

  const stats = addon.modelStats(model, T);
  const trainFlopsPerToken = 3 * stats.forwardFlopsPerToken;
  log(
    `model ${model.model_type}: ${(stats.params / 1e6).toFixed(2)} M params, vocab ${model.vocab_size} | ` +
      `data ${data.source}: ${sampler.numWindows} windows of ${T + 1} tokens | device ${dev.device} (${dev.reason}), ` +
      `${deviceNote} | precision ${prec.precision}`,
  );

  if (freezeSteps > 0)
    log(`steps 1–${freezeSteps} train only the ${resize!.newVocab - resize!.baseVocab} new embedding${model.tie_word_embeddings ? '' : ' and LM-head'} rows; everything else is frozen until then`);

  if (mix) {
    mix.restore(startStep, B * accum, latest ? loadedCursor : undefined);
    log(`mixing ${mix.sources.map((m) => `${m.name} ${(100 * m.weight / mix.sources.reduce((a, x) => a + x.weight, 0)).toFixed(1)}%`).join(' / ')} by sequence (seeded)` +
      (startStep ? `; cursor ${JSON.stringify(mix.cursorObject())}` : ''));
  }

  let firstEval: number | null = null;
  let lastEval: number | null = kept.filter((r) => r.eval_loss !== undefined).pop()?.eval_loss ?? null;
  if (startStep === 0) {
    firstEval = await evaluate();
    if (firstEval !== null) {
      record({ step: 0, eval_loss: firstEval });
      log(`step 0 | eval loss ${firstEval.toFixed(4)}`);
    }
  } else firstEval = kept.find((r) => r.step === 0)?.eval_loss ?? null;

  const tokenizerFile = runTokenizerFile(cfg);
  const state = (step: number): TrainerState => ({
    step,
    seed: cfg.run.seed,
    tokens_seen: tokensSeen,
    tokenizer_hash: hash,
    data_windows: sampler.numWindows,
    precision: prec.precision,
    ...(mix ? { data_cursor: mix.cursorObject() } : {}),
  });
  const save = (step: number) => {
    net.syncToHost(); // GPU weights, moments and FP8 state into params/m/v
    const fp8 = prec.precision === 'fp8' ? net.fp8State() : null;
    const dir = saveCheckpoint({
      outDir, step, model, layout, params, m, v, fp8, state: state(step), tokenizerFile,
      eosId: tokenizer?.eosId ?? null, bosId: tokenizer?.bosId ?? null,
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
    const r = await net.trainStep({
      windows: sampler.windowsForStep(step - 1, B * accum),
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
    const row: MetricRow = { step, loss: r.loss, lr, grad_norm: r.gradNorm, ms, tokens_per_s: tokPerS, tokens: tokensSeen };
    const mfu = peak ? (tokPerS * trainFlopsPerToken) / peak : null;
    if (mfu !== null) row.mfu = mfu;
    const line = formatStep({ step, steps, loss: r.loss, gradNorm: r.gradNorm, lr, ms, tokPerS, mfu });
    if (cfg.train.eval_every > 0 && step % cfg.train.eval_every === 0 && step !== steps) {
      const e = await evaluate();
      if (e !== null) row.eval_loss = lastEval = e;
    }
    if (step === steps) {
      const e = await evaluate();
      if (e !== null) row.eval_loss = lastEval = e;
    }
    record(row);
    if (step % cfg.train.log_every === 0 || step === steps || step === startStep + 1)
      bar.log(line + (row.eval_loss !== undefined ? ` | eval loss ${row.eval_loss.toFixed(4)}` : ''));
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
