// native.ts — the only door to the C++ addon. Loads it with node-gyp-build (a local build in build/Release
// wins over prebuilds/), types its API, and says which backend is in use and why.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResolvedModel } from './config.js';

const require = createRequire(import.meta.url);
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ParamInfo {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  decay: boolean;
}

export interface TrainStepOptions {
  windows: Uint32Array; // [shard, offset] per row, batchSize * accum rows
  batchSize: number;
  seqLen: number;
  accum: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradClip: number;
  step: number; // 1-based AdamW step
  // Vocabulary-resize warm-up: rows >= newRowsFrom of embed_tokens / lm_head are new (-1 = none); for
  // step <= freezeSteps only they are updated (see TrainStepOptions in native/model.h).
  newRowsFrom?: number;
  freezeSteps?: number;
}

// The optimizer-step fields of trainStep without the windows: the post-training steps take explicit rows.
export type StepOptions = Omit<TrainStepOptions, 'windows'>;
// Rows of seqLen tokens: targets −1 are ignored; positions (optional) pack several examples per row.
export interface TokenRows {
  inputs: Uint32Array;
  targets: Int32Array;
  positions?: Int32Array;
}
type StepResult = { loss: number; gradNorm: number; tokens: number };
export interface DpoStepResult extends StepResult {
  chosenLogp: number;
  rejectedLogp: number;
  chosenReward: number;
  rejectedReward: number;
  margin: number;
  accuracy: number;
}

// One LoRA-adapted weight (native/lora.h): where it lies in params, and A [rank, in] / B [out, rank] in the adapter.
export interface LoraSite {
  name: string;
  weightOffset: number;
  out: number;
  in: number;
  aOffset: number;
  bOffset: number;
}

export interface NativeModel {
  trainStepTokens(o: StepOptions & TokenRows): Promise<StepResult>;
  sequenceLogps(o: TokenRows & { seqLen: number }): Promise<Float64Array>;
  // batchSize counts pairs; rows interleave chosen and rejected; refLogps has one value per row.
  dpoStep(o: StepOptions & TokenRows & { refLogps: Float64Array; beta: number; labelSmoothing: number }): Promise<DpoStepResult>;
  distillStep(
    o: StepOptions & TokenRows & { alpha: number; temperature: number } &
      ({ teacher: NativeModel } | { topIds: Uint32Array; topLogits: Float32Array; k: number }),
  ): Promise<StepResult & { kl: number; ce: number }>;
  distillEval(o: TokenRows & { seqLen: number; teacher: NativeModel; temperature?: number }): Promise<{ kl: number; ce: number; count: number }>;
  topkLogits(o: { inputs: Uint32Array; positions?: Int32Array; seqLen: number; k: number }): Promise<{ ids: Uint32Array; logits: Float32Array }>;
  attachOptimizer(m: Float32Array, v: Float32Array): void;
  attachData(shards: Uint32Array[]): void;
  trainStep(o: TrainStepOptions): Promise<{ loss: number; gradNorm: number; tokens: number }>;
  evalLoss(tokens: Uint32Array, offsets: Uint32Array, maxLen: number): Promise<{ sum: number; count: number }>;
  scoreContinuations(tokens: Uint32Array, offsets: Uint32Array, contLen: Uint32Array, maxLen: number): Promise<{ logLik: Float64Array; greedy: Uint8Array }>;
  forwardBackward(tokens: Uint32Array, B: number, T: number): number;
  gradients(): Float32Array;
  /** `batch` empty KV-cache slots of maxTokens positions each (default 1). */
  decodeReset(maxTokens: number, batch?: number): void;
  /** Logits [vocab] of `token` at `pos` in slot 0. */
  decodeStep(token: number, pos: number): Float32Array;
  /**
   * Logits [n * vocab]: row i feeds tokens[i] at positions[i] of slot slots[i] (default i). Rows of one slot
   * count up by 1; a slot's first row may rewind into (or continue) the positions it holds.
   */
  decodeBatch(tokens: Uint32Array, positions: Int32Array, slots?: Int32Array): Float32Array;
  setPrecision(o: PrecisionOptions): void;
  useDevice(index: number): { name: string; bytes: number };
  syncToHost(): void;
  fp8State(): Fp8State;
  setFp8State(s: Omit<Fp8State, 'historyLen'>): void;
  // LoRA (src/lora.ts): base = W0 (a copy, not params); adapter/m/v = loraLayout().size floats. params becomes the
  // merged weights at once; trainStepTokens then trains only the adapters.
  attachLora(o: { rank: number; alpha: number; targets: string[]; base: Float32Array; adapter: Float32Array; m: Float32Array; v: Float32Array }): void;
}

export interface CudaInfo {
  built: boolean;
  runtimeVersion: number;
  driverVersion: number;
  error: string | null;
  devices: Array<{
    index: number;
    name: string;
    computeCapability: string;
    totalMemoryBytes: number;
    freeMemoryBytes: number;
    multiprocessors: number;
    fp8: boolean;
    bf16: boolean;
  }>;
  cublasLt?: string | null;
  cublasLtError?: string | null;
}

export interface PrecisionOptions {
  precision: 'fp32' | 'bf16' | 'fp8';
  historyLen: number;
  margin: number;
  amaxAlgo: 'max' | 'most_recent';
  currentScaling: boolean;
  fp8Sites?: Uint8Array;
}

export interface Fp8State {
  historyLen: number;
  scale: Float32Array;
  scaleInv: Float32Array;
  amaxCur: Float32Array;
  history: Float32Array;
}

export interface NativeAddon {
  Model: new (config: ResolvedModel, params: Float32Array) => NativeModel;
  paramLayout(config: ResolvedModel): ParamInfo[];
  modelStats(config: ResolvedModel, seqLen: number): { params: number; forwardFlopsPerToken: number };
  initParams(config: ResolvedModel, params: Float32Array, seed: number, std?: number): void;
  setThreads(n: number): number;
  buildInfo(): { gemm: string; openmp: boolean; cuda: boolean; threads: number; compiler: string };
  benchGemm(M: number, N: number, K: number, iters: number): number;
  cudaInfo(): CudaInfo;
  cudaAdamwSelfTest(n?: number): { ok: boolean; relErr: number; error: string | null };
  loraLayout(config: ResolvedModel, rank: number, targets: string[]): { size: number; sites: LoraSite[] };
  loraInit(config: ResolvedModel, rank: number, targets: string[], adapter: Float32Array, seed: number): void;
  // params[site] = base[site] + alpha/rank·B·A at every site; params elsewhere untouched.
  loraMerge(config: ResolvedModel, rank: number, alpha: number, targets: string[], params: Float32Array, base: Float32Array, adapter: Float32Array): void;
}

let loaded: { addon: NativeAddon; file: string } | null = null;

export function addonPath(): string {
  const build = require('node-gyp-build') as { resolve?: (dir: string) => string; path?: (dir: string) => string };
  const resolve = build.resolve ?? build.path;
  if (!resolve) throw new Error('node-gyp-build has no resolve()');
  return resolve(packageRoot);
}

export function native(): NativeAddon {
  if (loaded) return loaded.addon;
  let file: string;
  try {
    // KO_TRAIN_ADDON names a particular build (a second build dir, a CUDA build under test).
    file = process.env.KO_TRAIN_ADDON ? path.resolve(process.env.KO_TRAIN_ADDON) : addonPath();
  } catch (e) {
    throw new Error(
      `ko-train's native addon is not built (${(e as Error).message.split('\n')[0]}).\n` +
        `Build it with 'npm run build:native' (needs CMake and a C++17 compiler) or reinstall with 'npm install'.`,
    );
  }
  // OpenMP loops and OpenBLAS's own threads take turns on the same cores; spinning OpenMP workers would
  // steal those cores from the GEMMs. libgomp reads this when the addon loads, so set it first.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
  loaded = { addon: require(file) as NativeAddon, file };
  return loaded.addon;
}

export function loadedAddonFile(): string | null {
  return loaded?.file ?? null;
}

export type DeviceChoice =
  | { device: 'cpu'; reason: string }
  | { device: 'cuda'; index: number; name: string; fp8: boolean; reason: string };

// Chooses where training runs: run.device (or KO_TRAIN_BACKEND=cpu|cuda|auto) against what the addon was
// built with and the GPUs it sees. auto takes GPU 0 when it has BF16 tensor cores (compute 8.0+), else the CPU.
export function chooseDevice(requested: string, info: CudaInfo = native().cudaInfo()): DeviceChoice {
  const env = process.env.KO_TRAIN_BACKEND;
  const want = env && env !== 'auto' ? env : requested;
  const why = env && env !== 'auto' ? `KO_TRAIN_BACKEND=${env}` : `run.device: ${requested}`;
  if (want === 'cpu') return { device: 'cpu', reason: why };
  const usable = info.devices.filter((d) => Number(d.computeCapability) >= 8);
  if (want.startsWith('cuda')) {
    if (!info.built)
      throw new Error(`${why}: this build of ko-train has no CUDA support (built without nvcc); rebuild it on a ` +
        `machine with the CUDA toolkit (npm rebuild ko-train), or use run.device: cpu`);
    if (info.devices.length === 0) throw new Error(`${why}: no CUDA device found (${info.error ?? 'none visible'})`);
    const index = want === 'cuda' ? 0 : Number(want.slice(5));
    const d = info.devices[index];
    if (!d) throw new Error(`${why}: there is no device ${index}; this machine has ${info.devices.length} (cuda:0..cuda:${info.devices.length - 1})`);
    if (Number(d.computeCapability) < 8)
      throw new Error(`${why}: ${d.name} has compute capability ${d.computeCapability}; ko-train's CUDA backend needs 8.0+ (Ampere or newer)`);
    return { device: 'cuda', index, name: d.name, fp8: d.fp8, reason: why };
  }
  if (!info.built) return { device: 'cpu', reason: 'auto: this build has no CUDA support' };
  if (usable.length === 0)
    return {
      device: 'cpu',
      reason: `auto: ${info.devices.length ? 'no GPU with compute capability 8.0+' : `no CUDA device (${(info.error ?? 'none visible').split(' (')[0]})`}`,
    };
  const d = usable[0];
  return { device: 'cuda', index: d.index, name: d.name, fp8: d.fp8, reason: `auto: ${d.name}` };
}

// train.precision on the chosen device: auto = bf16 on CUDA, fp32 on the CPU; fp8 on a GPU without FP8
// tensor cores falls back to bf16 and says so.
export function resolvePrecision(requested: string, dev: DeviceChoice): { precision: 'fp32' | 'bf16' | 'fp8'; note: string | null } {
  if (requested === 'auto') return { precision: dev.device === 'cuda' ? 'bf16' : 'fp32', note: null };
  if (dev.device === 'cuda' && requested === 'fp32')
    throw new Error('train.precision fp32 runs on the CPU only; on CUDA use bf16 or fp8 (or run.device: cpu)');
  if (dev.device === 'cuda' && requested === 'fp8' && !dev.fp8)
    return { precision: 'bf16', note: `${dev.name} has no FP8 tensor cores (compute 8.9+ needed): training in BF16 instead of FP8` };
  return { precision: requested as 'fp32' | 'bf16' | 'fp8', note: null };
}
