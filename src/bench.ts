// bench.ts — `ko-train bench train`: times N training steps after a warm-up on synthetic tokens, and the
// GEMM backend's SGEMM rate at the model's MLP shape in the same process, so the ratio is meaningful on a
// noisy machine.
import { resolveModel, type Config } from './config.js';
import { peakBf16Flops } from './gpu_peaks.js';
import { chooseDevice, native, resolvePrecision } from './native.js';
import { precisionOptions } from './precision.js';
import { mulberry32 } from './sampler.js';
import { loadRunTokenizer } from './traindata.js';

export interface TrainBenchRun {
  precision: 'fp32' | 'bf16' | 'fp8';
  tokens_per_s: number;
  ms_per_step: number;
  achieved_tflops: number;
  mfu: number | null; // against the GPU's dense BF16 peak (CUDA only)
  last_loss: number;
}

export interface TrainBenchResult {
  model_type: string;
  params: number;
  batch_size: number;
  seq_len: number;
  steps: number;
  tokens_per_s: number; // of the first run
  ms_per_step: number;
  flops_per_token: number; // training (forward + backward) model FLOPs per token
  achieved_gflops: number;
  sgemm_gflops: number | null; // CPU: SGEMM at [B*T x hidden] · [intermediate x hidden]^T, in the same process
  ratio_to_sgemm: number | null;
  gemm_backend: string;
  threads: number;
  device: string;
  device_name: string | null;
  peak_bf16_tflops: number | null;
  runs: TrainBenchRun[]; // CUDA with train.precision auto: bf16 then fp8 (when the GPU has FP8), side by side
  fp8_speedup: number | null; // fp8 tokens/s over bf16 tokens/s
}

function timeSgemm(M: number, N: number, K: number): number {
  const addon = native();
  const iters = Math.max(1, Math.round(2e9 / (2 * M * N * K)));
  return addon.benchGemm(M, N, K, iters);
}

export async function benchTrain(cfg: Config, steps: number, warmup = 1, log: (s: string) => void = () => {}): Promise<TrainBenchResult> {
  const addon = native();
  const threads = addon.setThreads(cfg.run.threads);
  const dev = chooseDevice(cfg.run.device, addon.cudaInfo());
  const tok = cfg.model.vocab_size === null ? loadRunTokenizer(cfg) : null;
  const model = resolveModel(cfg.model, tok?.vocabSize ?? null);
  const layout = addon.paramLayout(model);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].size;
  const init = new Float32Array(total);
  addon.initParams(model, init, cfg.run.seed, cfg.model.init_std);
  const B = cfg.train.batch_size, T = cfg.train.seq_len, accum = cfg.train.grad_accum;
  const rows = B * accum;
  const stream = new Uint32Array((steps + warmup) * rows * T + 1);
  const rand = mulberry32(cfg.run.seed);
  for (let i = 0; i < stream.length; i++) stream[i] = Math.floor(rand() * model.vocab_size);
  const stats = addon.modelStats(model, T);
  const flopsPerToken = 3 * stats.forwardFlopsPerToken;
  const peak = dev.device === 'cuda' ? peakBf16Flops(dev.name) : null;

  const precisions: Array<'fp32' | 'bf16' | 'fp8'> = [];
  if (dev.device === 'cuda' && cfg.train.precision === 'auto') precisions.push('bf16', ...(dev.fp8 ? ['fp8' as const] : []));
  else {
    const p = resolvePrecision(cfg.train.precision, dev);
    if (p.note) log(p.note);
    precisions.push(p.precision);
  }

  // Same weights, same tokens for every precision; one model at a time so GPU memory is freed between runs.
  const timeRun = async (precision: 'fp32' | 'bf16' | 'fp8'): Promise<TrainBenchRun> => {
    const net = new addon.Model(model, init.slice());
    net.attachOptimizer(new Float32Array(total), new Float32Array(total));
    net.setPrecision(precisionOptions(cfg, precision, model));
    if (dev.device === 'cuda') net.useDevice(dev.index);
    net.attachData([stream]);
    let ms = 0, loss = NaN;
    for (let s = 0; s < steps + warmup; s++) {
      const windows = new Uint32Array(rows * 2);
      for (let r = 0; r < rows; r++) windows[2 * r + 1] = (s * rows + r) * T;
      const t0 = performance.now();
      const r = await net.trainStep({
        windows, batchSize: B, seqLen: T, accum, lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8,
        weightDecay: 0.1, gradClip: 1, step: s + 1,
      });
      const dt = performance.now() - t0;
      loss = r.loss;
      if (s >= warmup) ms += dt;
      log(`${precision} ${s < warmup ? 'warm-up' : 'step'} ${s < warmup ? s + 1 : s - warmup + 1}: ${dt.toFixed(0)} ms, loss ${r.loss.toFixed(4)}`);
    }
    const tokensPerS = (steps * rows * T * 1000) / ms;
    const flops = tokensPerS * flopsPerToken;
    return {
      precision, tokens_per_s: tokensPerS, ms_per_step: ms / steps, achieved_tflops: flops / 1e12,
      mfu: peak ? flops / peak : null, last_loss: loss,
    };
  };

  const sgemmBefore = dev.device === 'cpu' ? timeSgemm(B * T, model.intermediate_size, model.hidden_size) : 0;
  const runs: TrainBenchRun[] = [];
  for (const p of precisions) runs.push(await timeRun(p));
  const sgemm = dev.device === 'cpu' ? (sgemmBefore + timeSgemm(B * T, model.intermediate_size, model.hidden_size)) / 2 : null;
  const first = runs[0];
  const bf16 = runs.find((r) => r.precision === 'bf16'), fp8 = runs.find((r) => r.precision === 'fp8');
  return {
    model_type: model.model_type,
    params: stats.params,
    batch_size: B,
    seq_len: T,
    steps,
    tokens_per_s: first.tokens_per_s,
    ms_per_step: first.ms_per_step,
    flops_per_token: flopsPerToken,
    achieved_gflops: first.achieved_tflops * 1e3,
    sgemm_gflops: sgemm,
    ratio_to_sgemm: sgemm ? (first.achieved_tflops * 1e3) / sgemm : null,
    gemm_backend: addon.buildInfo().gemm,
    threads,
    device: dev.device,
    device_name: dev.device === 'cuda' ? dev.name : null,
    peak_bf16_tflops: peak ? peak / 1e12 : null,
    runs,
    fp8_speedup: bf16 && fp8 ? fp8.tokens_per_s / bf16.tokens_per_s : null,
  };
}

// The table `ko-train bench train` prints.
export function formatTrainBench(r: TrainBenchResult): string {
  const head =
    `${r.model_type} ${(r.params / 1e6).toFixed(1)} M params, batch ${r.batch_size} x ${r.seq_len}, ` +
    (r.device === 'cuda'
      ? `${r.device_name} (BF16 peak ${r.peak_bf16_tflops ?? '?'} TFLOP/s)`
      : `CPU, ${r.threads} threads, GEMM ${r.gemm_backend}`);
  const lines = [head, '  precision | tokens/s | ms/step | TFLOP/s | MFU | last loss'];
  for (const x of r.runs)
    lines.push(
      `  ${x.precision.padEnd(9)} | ${x.tokens_per_s.toFixed(0)} | ${x.ms_per_step.toFixed(1)} | ${x.achieved_tflops.toFixed(3)} | ` +
        `${x.mfu === null ? 'n/a' : (100 * x.mfu).toFixed(1) + '%'} | ${x.last_loss.toFixed(4)}`,
    );
  if (r.fp8_speedup !== null) lines.push(`  FP8 / BF16 tokens/s: ${r.fp8_speedup.toFixed(2)}x`);
  if (r.sgemm_gflops !== null && r.ratio_to_sgemm !== null)
    lines.push(`  SGEMM ${r.sgemm_gflops.toFixed(1)} GFLOP/s | training at ${(100 * r.ratio_to_sgemm).toFixed(1)}% of SGEMM`);
  return lines.join('\n');
}
