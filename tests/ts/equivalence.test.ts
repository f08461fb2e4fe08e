// Acceptance tests: the ko-train CLI against the independent float64 reference
// (tests/ts/reference/llamaRef.ts) on tiny random Llama and Qwen3 checkpoints:
//   - `ko-train eval --json` loss equals the reference mean next-token cross-entropy;
//   - one AdamW training step from an HF checkpoint gives the reference's weights, and logs the
//     reference's loss (and, when logged, the pre-clip gradient norm).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  paramShapes, randomTokens, randomWeights, refAdamWStep, refBatchLoss, refGradientsFDParallel,
  writeHfCheckpoint, type RefConfig, type Weights,
} from './reference/llamaRef.js';
import { readSafetensorsLite } from './reference/safetensorsLite.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..'); // dist/tests/ts -> repo
const cliJs = path.join(root, 'dist', 'src', 'cli.js');
const bin = path.join(root, 'bin', 'ko-train.js');

const tinyLlama: RefConfig = {
  model_type: 'llama', vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, head_dim: 8, intermediate_size: 48, rope_theta: 10000, rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
};
// head_dim 16: Hq*D = 64 != hidden 32, so q/o layout mistakes cannot hide.
const tinyQwen: RefConfig = { ...tinyLlama, model_type: 'qwen3', head_dim: 16, tie_word_embeddings: true };
const MODELS: [string, RefConfig, number][] = [['llama (untied, GQA)', tinyLlama, 101], ['qwen3 (tied, GQA, head_dim 16)', tinyQwen, 202]];

function tmpDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kt-equiv-${tag}-`));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the CLI from the repo root; on failure the assertion shows its exit status and output. */
function runCli(args: string[]): string {
  try {
    return execFileSync(process.execPath, [bin, ...args], {
      cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000, maxBuffer: 64 << 20,
    });
  } catch (e) {
    const err = e as { status?: number; signal?: string; stdout?: string; stderr?: string };
    const tail = (s: string | undefined) => (s ?? '').split('\n').slice(-25).join('\n');
    assert.fail(`ko-train ${args.join(' ')} failed (status ${err.status ?? err.signal})\n--- stdout ---\n${tail(err.stdout)}\n--- stderr ---\n${tail(err.stderr)}`);
  }
}

function writeJsonl(file: string, seqs: number[][]): void {
  fs.writeFileSync(file, seqs.map((s) => JSON.stringify({ input_ids: s }) + '\n').join(''));
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

if (!fs.existsSync(cliJs)) {
  test('cli built', () => assert.fail(`${cliJs} does not exist: build first (npm run build:ts)`));
} else {
  for (const [label, cfg, seed] of MODELS) {
    test(`eval --json matches the reference loss: ${label}`, () => {
      const dir = tmpDir('eval');
      const w = randomWeights(cfg, seed);
      writeHfCheckpoint(path.join(dir, 'ckpt'), cfg, w);
      const seqs = [9, 17, 5].map((n, i) => randomTokens(n, cfg.vocab_size, seed * 10 + i));
      writeJsonl(path.join(dir, 'data.jsonl'), seqs);
      const out = runCli(['eval', '--checkpoint', path.join(dir, 'ckpt'), '--data', path.join(dir, 'data.jsonl'), '--json']);
      const last = out.trim().split('\n').pop() ?? '';
      let r: { loss: number; ppl: number; tokens: number; sequences: number };
      try { r = JSON.parse(last); } catch { assert.fail(`last stdout line is not JSON: ${JSON.stringify(last)}`); }
      const ref = refBatchLoss(cfg, w, seqs);
      assert.ok(rel(r.loss, ref) <= 1e-4, `loss ${r.loss} vs reference ${ref} (rel ${rel(r.loss, ref)})`);
      assert.ok(rel(r.ppl, Math.exp(ref)) <= 1e-4, `ppl ${r.ppl} vs exp(reference) ${Math.exp(ref)}`);
      assert.equal(r.tokens, 8 + 16 + 4);
      assert.equal(r.sequences, 3);
    });
  }

  for (const [label, cfg, seed] of MODELS) {
    test(`one AdamW step from an HF checkpoint matches the reference: ${label}`, async (t) => {
      const dir = tmpDir('train');
      const ckpt = path.join(dir, 'ckpt');
      writeHfCheckpoint(ckpt, cfg, randomWeights(cfg, seed));
      const w0: Weights = readSafetensorsLite(path.join(ckpt, 'model.safetensors')); // what the CLI reads
      const T = 8, B = 2;
      const ids = randomTokens(B * T + 1, cfg.vocab_size, seed + 1);
      writeJsonl(path.join(dir, 'train.jsonl'), [ids]);
      // The trainer concatenates all lines into one stream; unshuffled, row r of step 1 is
      // stream[r*T .. r*T + T] (T inputs, the T targets shifted by one).
      const batch = Array.from({ length: B }, (_, r) => ids.slice(r * T, r * T + T + 1));
      const opt = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradClip: 1.0 };
      const config = {
        run: { out_dir: path.join(dir, 'run'), seed: 1, stages: ['train'] },
        data: { train: path.join(dir, 'train.jsonl') },
        model: { init_from: ckpt },
        train: {
          steps: 1, batch_size: B, seq_len: T, lr: opt.lr, min_lr: opt.lr, warmup_steps: 0,
          weight_decay: opt.weightDecay, beta1: opt.beta1, beta2: opt.beta2, eps: opt.eps, grad_clip: opt.gradClip,
          precision: 'fp32', shuffle: false, log_every: 1, checkpoint_every: 1,
        },
      };
      const yaml = path.join(dir, 'config.yaml');
      fs.writeFileSync(yaml, JSON.stringify(config, null, 2)); // JSON is valid YAML

      // Finite differences run on worker threads while the CLI trains. h = 1e-4: rounding noise
      // ~1e-11 per entry (it matters for entries with tiny gradients, whose Adam step is sensitive to
      // absolute error); truncation ~1e-7 only on large entries (embeddings), where it does not.
      const gradsPromise = refGradientsFDParallel(cfg, w0, batch, 1e-4);
      let cliError: unknown = null;
      try { runCli(['--config', yaml]); } catch (e) { cliError = e; }
      const grads = await gradsPromise;
      if (cliError) throw cliError;

      const ref = refAdamWStep(w0, grads, { ...opt, step: 1 });
      const loss0 = refBatchLoss(cfg, w0, batch);

      // metrics.jsonl: step 1's loss is the loss at the initial weights.
      const metricsFile = path.join(dir, 'run', 'metrics.jsonl');
      assert.ok(fs.existsSync(metricsFile), `${metricsFile} missing`);
      const row = JSON.parse(fs.readFileSync(metricsFile, 'utf8').split('\n')[0]);
      assert.equal(row.step, 1);
      assert.ok(rel(row.loss, loss0) <= 1e-4, `metrics loss ${row.loss} vs reference ${loss0}`);
      // Adam's first step hardly depends on the gradient's scale, so the logged norm is what checks it.
      if (row.grad_norm !== undefined) {
        assert.ok(rel(row.grad_norm, ref.gradNorm) <= 1e-4, `metrics grad_norm ${row.grad_norm} vs reference pre-clip norm ${ref.gradNorm}`);
      }

      const outFile = path.join(dir, 'run', 'step-00000001', 'model.safetensors');
      assert.ok(fs.existsSync(outFile), `${outFile} missing`);
      const out = readSafetensorsLite(outFile);
      const names = paramShapes(cfg).map(([n]) => n);
      assert.deepEqual([...out.keys()].sort(), [...names].sort(), 'tensor names of the trained checkpoint');

      // At step 1 Adam moves each weight by lr * c*g / (|c*g| + eps) (c: the clip coefficient), about
      // lr * sign(g). Where c*|g| is not far above eps, or |g| is tiny next to its tensor's scale,
      // that step is ill-conditioned: float32 rounding in the product's gradient (taken as 1e-5 of
      // the tensor's rms gradient, well above what float32 gives) could move it by more than 0.1%
      // of lr. Such entries are left out of the comparison (exact zeros are kept); they must be rare.
      const clip = Math.min(1, opt.gradClip / (ref.gradNorm + 1e-6));
      let excluded = 0, total = 0, dNum = 0, dDen = 0;
      const worst: string[] = [];
      for (const [name, shape] of paramShapes(cfg)) {
        const got = out.get(name)!;
        assert.deepEqual(got.shape, shape, `${name} shape`);
        const want = ref.weights.get(name)!.data, init = w0.get(name)!.data, g = grads.get(name)!;
        const rms = Math.sqrt(g.reduce((s, x) => s + x * x, 0) / g.length);
        const illConditioned = (gi: number) =>
          gi !== 0 && (Math.abs(gi) < 1e-5 * rms || (clip * opt.eps * 1e-5 * rms) / (clip * Math.abs(gi) + opt.eps) ** 2 > 1e-3);
        let num = 0, den = 0;
        for (let i = 0; i < want.length; i++) {
          total++;
          if (illConditioned(g[i])) { excluded++; continue; }
          num += (got.data[i] - want[i]) ** 2;
          den += want[i] ** 2;
          dNum += ((got.data[i] - init[i]) - (want[i] - init[i])) ** 2;
          dDen += (want[i] - init[i]) ** 2;
        }
        const e = Math.sqrt(num / den);
        if (e > 1e-5) worst.push(`${name}: rel ${e.toExponential(2)}`);
      }
      t.diagnostic(`${excluded} of ${total} entries left out as ill-conditioned`);
      assert.ok(excluded <= total * 1e-3, `${excluded} of ${total} gradient entries are too close to 0 to compare`);
      assert.deepEqual(worst, [], 'tensors whose weights after one step differ from the reference by more than 1e-5 relative');
      const du = Math.sqrt(dNum / dDen);
      assert.ok(du <= 1e-3, `update (w1 - w0) differs from the reference update by ${du.toExponential(2)} relative`);
    });
  }
}
