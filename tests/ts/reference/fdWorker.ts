// fdWorker.ts — worker thread of refGradientsFDParallel: one shard of the finite-difference gradient.
import { parentPort, workerData } from 'node:worker_threads';
import { refGradientsFD, type RefConfig } from './llamaRef.js';

const { cfg, weights, batch, h, order, shard } = workerData as {
  cfg: RefConfig;
  weights: [string, { shape: number[]; data: Float64Array }][];
  batch: number[][];
  h: number;
  order: 2 | 4;
  shard: { index: number; count: number };
};
const grads = refGradientsFD(cfg, new Map(weights), batch, h, { order, shard });
parentPort!.postMessage([...grads]);
