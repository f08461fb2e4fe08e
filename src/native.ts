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
}

export interface NativeModel {
  attachOptimizer(m: Float32Array, v: Float32Array): void;
  attachData(shards: Uint32Array[]): void;
  trainStep(o: TrainStepOptions): Promise<{ loss: number; gradNorm: number; tokens: number }>;
  evalLoss(tokens: Uint32Array, offsets: Uint32Array, maxLen: number): Promise<{ sum: number; count: number }>;
  forwardBackward(tokens: Uint32Array, B: number, T: number): number;
  gradients(): Float32Array;
  decodeReset(maxTokens: number): void;
  decodeStep(token: number, pos: number): Float32Array;
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
    file = addonPath();
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

// Chooses where training runs. This release trains on the CPU; CUDA builds report their GPUs (doctor) and
// run the CUDA self-test, and GPU training arrives with the CUDA backend.
export function chooseDevice(requested: string): { device: 'cpu'; reason: string } {
  const env = process.env.KO_TRAIN_BACKEND;
  const want = env && env !== 'auto' ? env : requested;
  if (want === 'cpu') return { device: 'cpu', reason: env ? 'KO_TRAIN_BACKEND=cpu' : 'run.device: cpu' };
  if (want.startsWith('cuda'))
    throw new Error(
      `run.device '${want}': GPU training is not available in this version of ko-train (the CUDA build only ` +
        `provides device queries and a kernel self-test so far); use run.device: cpu or auto`,
    );
  return { device: 'cpu', reason: 'auto: GPU training is not available in this version, using the CPU' };
}
