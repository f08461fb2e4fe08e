// train.precision on the CPU (exact BF16/FP8 emulation of the CUDA path), train.fp8 config, and the
// device/precision choice against what the machine has.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { chooseDevice, resolvePrecision, type CudaInfo } from '../../src/native.js';
import { fp8SiteMask, linearSiteNames } from '../../src/precision.js';
import { readMetrics, runCli, runCliKilledAt, tinyModel, tmpDir, writeJson, writeTokenJsonl } from './cliHelpers.js';
import fs from 'node:fs';

function trainConfig(dir: string, data: string, train: Record<string, unknown> = {}) {
  return writeJson(path.join(dir, 'run.yaml'), {
    run: { out_dir: path.join(dir, 'out'), seed: 11, stages: ['train'], threads: 2, device: 'cpu' },
    data: { train: data },
    model: tinyModel,
    train: { steps: 16, batch_size: 4, seq_len: 16, lr: 0.01, min_lr: 0.001, warmup_steps: 2, log_every: 1, checkpoint_every: 4, keep_checkpoints: 0, ...train },
  });
}
const losses = (dir: string) => readMetrics(path.join(dir, 'out', 'metrics.jsonl')).filter((r) => r.loss !== undefined).map((r) => r.loss as number);

test('fp8 and bf16 on the CPU train, stay close to fp32, and differ from it', () => {
  const runs: Record<string, number[]> = {};
  for (const precision of ['fp32', 'bf16', 'fp8']) {
    const d = tmpDir(`prec-${precision}`);
    const data = writeTokenJsonl(path.join(d, 'train.jsonl'), 40, 33, 64, 3);
    const r = runCli(['--config', trainConfig(d, data, { precision })]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`precision ${precision}`));
    runs[precision] = losses(d);
  }
  assert.equal(runs.fp8.length, 16);
  assert.notDeepEqual(runs.bf16, runs.fp32);
  assert.notDeepEqual(runs.fp8, runs.bf16);
  for (const p of ['bf16', 'fp8']) {
    const last = runs[p][15], ref = runs.fp32[15];
    assert.ok(Math.abs(last - ref) / ref < 0.05, `${p} final loss ${last} vs fp32 ${ref}`);
    assert.ok(last < runs[p][0] - 0.3, `${p} loss should fall: ${runs[p][0]} → ${last}`);
  }
});

test('fp8 SIGKILL and resume: the FP8 scaling state is checkpointed, so the losses match an uninterrupted run', async () => {
  const full = tmpDir('fp8-full'), killed = tmpDir('fp8-killed');
  const opts = { precision: 'fp8', steps: 24, checkpoint_every: 4, seq_len: 32, batch_size: 8, fp8: { amax_history_len: 8 } };
  const dataFull = writeTokenJsonl(path.join(full, 'train.jsonl'), 60, 65, 64, 5);
  const dataKilled = writeTokenJsonl(path.join(killed, 'train.jsonl'), 60, 65, 64, 5);
  assert.equal(runCli(['--config', trainConfig(full, dataFull, opts)]).code, 0);
  const cfg = trainConfig(killed, dataKilled, opts);
  await runCliKilledAt(['--config', cfg], path.join(killed, 'out', 'step-00000004', 'COMPLETE'));
  assert.ok(losses(killed).length < 24, 'the kill must land mid-run');
  const resumed = runCli(['--config', cfg, '--train.resume', 'true']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.deepEqual(losses(killed), losses(full));
  // The checkpoint carries the scaling state: 3 tensors per linear layer (2 layers x 4 + LM head).
  const st = fs.readFileSync(path.join(killed, 'out', 'step-00000024', 'optimizer.safetensors'));
  const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString('utf8'));
  assert.deepEqual(header['fp8.scale'].shape, [27]);
  assert.deepEqual(header['fp8.amax_history'].shape, [8, 27]);
});

test('train.fp8.exclude: per-site mask, and a pattern matching nothing is an error naming it', () => {
  const model = { ...tinyModel, head_dim: 8, rope_theta: 1e4, rms_norm_eps: 1e-5, rope_scaling: null } as never;
  assert.equal(linearSiteNames(model).length, 9);
  const a = fp8SiteMask(model, ['lm_head', 'layers.1.mlp']);
  assert.deepEqual([...a.mask], [1, 1, 1, 1, 1, 1, 0, 0, 0]);
  assert.equal(a.excluded, 3);
  const b = fp8SiteMask(model, ['k_proj']); // q, k, v share one FP8 GEMM: excluding k excludes the fused site
  assert.deepEqual([...b.mask], [0, 1, 1, 1, 0, 1, 1, 1, 1]);
  assert.throws(() => fp8SiteMask(model, ['down_prj']), /train\.fp8\.exclude: 'down_prj' matches no linear layer/);

  const d = tmpDir('fp8-exclude');
  const data = writeTokenJsonl(path.join(d, 'train.jsonl'), 20, 33, 64);
  const r = runCli(['--config', trainConfig(d, data, { precision: 'fp8', steps: 1, fp8: { exclude: ['lm_haed'] } })]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /'lm_haed' matches no linear layer/);
  const r2 = runCli(['--config', trainConfig(d, data, { precision: 'fp8', steps: 1, fp8: { margin: -1 } })]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /train\.fp8\.margin/);
});

const gpu = (cc: string, fp8: boolean, name = 'NVIDIA Test GPU') => ({
  index: 0, name, computeCapability: cc, totalMemoryBytes: 8e10, freeMemoryBytes: 8e10, multiprocessors: 132, fp8, bf16: true,
});
const info = (devices: CudaInfo['devices'], built = true): CudaInfo => ({ built, runtimeVersion: 13000, driverVersion: 13000, error: devices.length ? null : 'no CUDA-capable device is detected', devices });

test('device choice: auto takes a capable GPU, explicit cuda errors say why, precision falls back and says so', () => {
  const saved = process.env.KO_TRAIN_BACKEND;
  delete process.env.KO_TRAIN_BACKEND;
  try {
    assert.equal(chooseDevice('auto', info([])).device, 'cpu');
    assert.equal(chooseDevice('auto', info([gpu('7.5', false)])).device, 'cpu');
    const h100 = chooseDevice('auto', info([gpu('9.0', true, 'NVIDIA H100 80GB HBM3')]));
    assert.equal(h100.device, 'cuda');
    assert.equal(resolvePrecision('auto', h100).precision, 'bf16');
    assert.equal(resolvePrecision('fp8', h100).precision, 'fp8');
    assert.throws(() => resolvePrecision('fp32', h100), /fp32 runs on the CPU only/);
    const a100 = chooseDevice('cuda', info([gpu('8.0', false, 'NVIDIA A100')]));
    const r = resolvePrecision('fp8', a100);
    assert.equal(r.precision, 'bf16');
    assert.match(r.note ?? '', /no FP8 tensor cores.*BF16/);
    assert.throws(() => chooseDevice('cuda:1', info([gpu('9.0', true)])), /no device 1; this machine has 1/);
    assert.throws(() => chooseDevice('cuda', info([], false)), /no CUDA support/);
    assert.throws(() => chooseDevice('cuda', info([])), /no CUDA device found/);
    assert.throws(() => chooseDevice('cuda', info([gpu('7.0', false)])), /needs 8\.0\+/);
    assert.equal(resolvePrecision('auto', chooseDevice('cpu', info([gpu('9.0', true)]))).precision, 'fp32');
    process.env.KO_TRAIN_BACKEND = 'cpu';
    assert.equal(chooseDevice('cuda', info([gpu('9.0', true)])).device, 'cpu');
  } finally {
    if (saved === undefined) delete process.env.KO_TRAIN_BACKEND;
    else process.env.KO_TRAIN_BACKEND = saved;
  }
});
