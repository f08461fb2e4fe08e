// bench.ts — `ko-train bench train`: times N training steps after a warm-up on synthetic tokens, and the
// GEMM backend's SGEMM rate at the model's MLP shape in the same process, so the ratio is meaningful on a
// noisy machine.
import { resolveModel, type Config } from './config.js';
import { chooseDevice, native } from './native.js';
import { mulberry32 } from './sampler.js';
import { loadRunTokenizer } from './traindata.js';

export interface TrainBenchResult {
  model_type: string;
  params: number;
  batch_size: number;
  seq_len: number;
  steps: number;
  tokens_per_s: number;
  ms_per_step: number;
  flops_per_token: number; // training (forward + backward) model FLOPs per token
  achieved_gflops: number;
  sgemm_gflops: number; // OpenBLAS (or built-in) SGEMM at [B*T x hidden] · [intermediate x hidden]^T
  ratio_to_sgemm: number;
  gemm_backend: string;
  threads: number;
  device: string;
}

function timeSgemm(M: number, N: number, K: number): number {
  const addon = native();
  const iters = Math.max(1, Math.round(2e9 / (2 * M * N * K)));
  return addon.benchGemm(M, N, K, iters);
}

export async function benchTrain(cfg: Config, steps: number, warmup = 1, log: (s: string) => void = () => {}): Promise<TrainBenchResult> {
  const addon = native();
  const threads = addon.setThreads(cfg.run.threads);
  const dev = chooseDevice(cfg.run.device);
  const tok = cfg.model.vocab_size === null ? loadRunTokenizer(cfg) : null;
  const model = resolveModel(cfg.model, tok?.vocabSize ?? null);
  const layout = addon.paramLayout(model);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].size;
  const params = new Float32Array(total);
  addon.initParams(model, params, cfg.run.seed, cfg.model.init_std);
  const net = new addon.Model(model, params);
  net.attachOptimizer(new Float32Array(total), new Float32Array(total));
  const B = cfg.train.batch_size, T = cfg.train.seq_len, accum = cfg.train.grad_accum;
  const rows = B * accum;
  const stream = new Uint32Array((steps + warmup) * rows * T + 1);
  const rand = mulberry32(cfg.run.seed);
  for (let i = 0; i < stream.length; i++) stream[i] = Math.floor(rand() * model.vocab_size);
  net.attachData([stream]);
  const sgemmBefore = timeSgemm(B * T, model.intermediate_size, model.hidden_size);
  let ms = 0;
  for (let s = 0; s < steps + warmup; s++) {
    const windows = new Uint32Array(rows * 2);
    for (let r = 0; r < rows; r++) windows[2 * r + 1] = (s * rows + r) * T;
    const t0 = performance.now();
    await net.trainStep({
      windows, batchSize: B, seqLen: T, accum, lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8,
      weightDecay: 0.1, gradClip: 1, step: s + 1,
    });
    const dt = performance.now() - t0;
    if (s >= warmup) ms += dt;
    log(`${s < warmup ? 'warm-up' : 'step'} ${s < warmup ? s + 1 : s - warmup + 1}: ${dt.toFixed(0)} ms`);
  }
  const sgemmAfter = timeSgemm(B * T, model.intermediate_size, model.hidden_size);
  const stats = addon.modelStats(model, T);
  const tokensPerS = (steps * rows * T * 1000) / ms;
  const flopsPerToken = 3 * stats.forwardFlopsPerToken;
  const achieved = (tokensPerS * flopsPerToken) / 1e9;
  const sgemm = (sgemmBefore + sgemmAfter) / 2;
  return {
    model_type: model.model_type,
    params: stats.params,
    batch_size: B,
    seq_len: T,
    steps,
    tokens_per_s: tokensPerS,
    ms_per_step: ms / steps,
    flops_per_token: flopsPerToken,
    achieved_gflops: achieved,
    sgemm_gflops: sgemm,
    ratio_to_sgemm: achieved / sgemm,
    gemm_backend: addon.buildInfo().gemm,
    threads,
    device: dev.device,
  };
}
