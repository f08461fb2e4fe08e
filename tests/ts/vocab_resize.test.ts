// Continual pretraining with a larger tokenizer: the grown embedding / LM head rows against a hand
// computation, the embedding warm-up (train.freeze_old_embeddings_steps) and resume across its end.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TextTokenizer, trainByteLevelBpe } from '../../src/tokenizer.js';
import { readSafetensorsLite, type LiteTensor } from './reference/safetensorsLite.js';
import { readMetrics, repoRoot, runCli, runCliKilledAt, tinyModel, tmpDir, writeJson, writeTokenJsonl } from './cliHelpers.js';

const BASE_VOCAB = 400, NEW_VOCAB = 480, H = tinyModel.hidden_size;
const EMB = 'model.embed_tokens.weight', HEAD = 'lm_head.weight';

const work = tmpDir('vocab');
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));
const baseTok = path.join(work, 'bpe-base.json');
const bigTok = path.join(work, 'bpe-big.json');
const baseCkpt = path.join(work, 'base', 'out', 'step-00000002');

// A base checkpoint: 2 steps of a tiny Llama (untied head) with a 400-token BPE; then a 480-token BPE
// trained on the same text (its first merges are the base's).
const ready = (async () => {
  const docs = fs
    .readFileSync(path.join(repoRoot, 'examples', 'data', 'libreoffice-help-ko.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .slice(0, 300)
    .map((l) => (JSON.parse(l) as { text: string }).text.replace(/\n/g, ' '));
  const text = path.join(work, 'train.txt');
  fs.writeFileSync(text, docs.join('\n') + '\n');
  await trainByteLevelBpe({ files: [text], vocabSize: BASE_VOCAB, specialTokens: ['<|endoftext|>'], outPath: baseTok });
  await trainByteLevelBpe({ files: [text], vocabSize: NEW_VOCAB, specialTokens: ['<|endoftext|>'], outPath: bigTok });
  const d = path.join(work, 'base');
  fs.mkdirSync(d);
  const cfg = writeJson(path.join(d, 'run.yaml'), {
    run: { out_dir: path.join(d, 'out'), seed: 3, stages: ['train'], threads: 2 },
    data: { train: writeTokenJsonl(path.join(d, 'train.jsonl'), 30, 33, BASE_VOCAB, 2) },
    tokenizer: { path: baseTok },
    model: { ...tinyModel, vocab_size: null },
    train: { steps: 2, batch_size: 4, seq_len: 16, lr: 0.01, log_every: 1 },
  });
  const r = runCli(['--config', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(fs.readFileSync(path.join(baseCkpt, 'config.json'), 'utf8')).vocab_size, BASE_VOCAB);
})();

// A continual-pretraining run on ids of the big tokenizer, from the base checkpoint.
function cptConfig(name: string, model: Record<string, unknown>, train: Record<string, unknown>) {
  const d = path.join(work, name);
  fs.mkdirSync(d, { recursive: true });
  const cfg = writeJson(path.join(d, 'run.yaml'), {
    run: { out_dir: path.join(d, 'out'), seed: 5, stages: ['train'], threads: 2 },
    data: { train: writeTokenJsonl(path.join(d, 'train.jsonl'), 40, 33, NEW_VOCAB, 4) },
    tokenizer: { path: bigTok },
    model: { init_from: baseCkpt, ...model },
    train: { batch_size: 4, seq_len: 16, lr: 0.01, min_lr: 0.001, log_every: 1, checkpoint_every: 1, keep_checkpoints: 0, ...train },
  });
  return { dir: d, cfg, ckpt: (step: number) => path.join(d, 'out', `step-${String(step).padStart(8, '0')}`) };
}

const weights = (dir: string) => readSafetensorsLite(path.join(dir, 'model.safetensors'));
const row = (t: LiteTensor, i: number) => t.data.subarray(i * H, (i + 1) * H);
const sameBits = (a: Float64Array, b: Float64Array) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

test('new rows start as the mean of the base rows of their decomposition under the base tokenizer', async () => {
  await ready;
  // lr 1e-30 without decay: one step leaves every weight as initialised (p - 1e-30·u rounds back to p).
  const run = cptConfig('init', {}, { steps: 1, lr: 1e-30, min_lr: 0, weight_decay: 0 });
  const r = runCli(['--config', run.cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`vocabulary resized ${BASE_VOCAB} → ${NEW_VOCAB} \\(${NEW_VOCAB - BASE_VOCAB} new rows, init mean of base decompositions\\)`));
  assert.equal(JSON.parse(fs.readFileSync(path.join(run.ckpt(1), 'config.json'), 'utf8')).vocab_size, NEW_VOCAB);

  const base = weights(baseCkpt), out = weights(run.ckpt(1));
  const big = TextTokenizer.fromFile(bigTok), small = TextTokenizer.fromFile(baseTok);
  let checked = 0;
  for (const name of [EMB, HEAD]) {
    const b = base.get(name)!, o = out.get(name)!;
    assert.deepEqual(o.shape, [NEW_VOCAB, H]);
    for (let t = 0; t < BASE_VOCAB; t++) assert.ok(sameBits(row(o, t), row(b, t)), `${name} row ${t} must be the base row`);
    for (let t = BASE_VOCAB; t < NEW_VOCAB; t++) {
      const text = await big.decode([t]);
      if (text === '' || text.includes('\uFFFD')) continue; // special tokens and partial UTF-8: other rules
      const [ids] = await small.encodeBatch([text]);
      assert.ok(ids.length > 0);
      for (let h = 0; h < H; h++) {
        let s = 0;
        for (const id of ids) s += b.data[id * H + h];
        const want = s / ids.length;
        assert.ok(Math.abs(o.data[t * H + h] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${name} row ${t} (${JSON.stringify(text)} → [${ids}]) dim ${h}`);
      }
      checked++;
    }
  }
  assert.ok(checked >= 2 * 40, `only ${checked} rows checked`);
  // The end-of-text token moved (base id 399, now 479): its row is the base token's.
  const eos = big.eosId;
  assert.equal(eos, NEW_VOCAB - 1);
  assert.ok(sameBits(row(out.get(EMB)!, eos), row(base.get(EMB)!, small.eosId)));

  // random: normal rows with the spread of the base rows.
  const rnd = cptConfig('init-random', { new_token_init: 'random' }, { steps: 1, lr: 1e-30, min_lr: 0, weight_decay: 0 });
  const rr = runCli(['--config', rnd.cfg]);
  assert.equal(rr.code, 0, rr.stderr);
  assert.match(rr.stdout, /vocabulary resized 400 → 480 \(80 new rows, init random normal/);
  const e = weights(rnd.ckpt(1)).get(EMB)!.data, be = base.get(EMB)!.data;
  const std = (a: Float64Array) => {
    const m = a.reduce((x, y) => x + y, 0) / a.length;
    return Math.sqrt(a.reduce((x, y) => x + (y - m) ** 2, 0) / a.length);
  };
  const ratio = std(e.subarray(BASE_VOCAB * H)) / std(be);
  assert.ok(ratio > 0.9 && ratio < 1.1, `std ratio ${ratio}`);
});

test('freeze_old_embeddings_steps: only the new rows train until then, everything after', async () => {
  await ready;
  const run = cptConfig('freeze', {}, { steps: 3, freeze_old_embeddings_steps: 2 });
  const r = runCli(['--config', run.cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /steps 1–2 train only the 80 new embedding and LM-head rows/);
  const base = weights(baseCkpt);
  const at = [1, 2, 3].map((s) => weights(run.ckpt(s)));
  const optim2 = readSafetensorsLite(path.join(run.ckpt(2), 'optimizer.safetensors'));
  for (const [name, b] of base) {
    const w2 = at[1].get(name)!, w3 = at[2].get(name)!;
    const oldPart = (t: LiteTensor) => ([EMB, HEAD].includes(name) ? t.data.subarray(0, BASE_VOCAB * H) : t.data);
    assert.ok(sameBits(oldPart(w2), b.data), `${name}: old weights must be untouched after step 2`);
    assert.ok(oldPart(optim2.get('exp_avg.' + name)!).every((x) => x === 0), `${name}: no moments for frozen weights`);
    assert.ok(!sameBits(oldPart(w3), b.data), `${name}: trains from step 3`);
    if ([EMB, HEAD].includes(name)) {
      const newRows = (s: number) => at[s - 1].get(name)!.data.subarray(BASE_VOCAB * H);
      assert.ok(!sameBits(newRows(1), newRows(2)), `${name}: new rows train during the warm-up`);
    }
  }

  // Without a resize the setting is ignored, with a warning.
  const plain = cptConfig('freeze-noresize', {}, { steps: 1, freeze_old_embeddings_steps: 2 });
  fs.writeFileSync(plain.cfg, fs.readFileSync(plain.cfg, 'utf8').replace(bigTok, baseTok));
  writeTokenJsonl(path.join(plain.dir, 'train.jsonl'), 40, 33, BASE_VOCAB, 4);
  const p = runCli(['--config', plain.cfg]);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /warning: train\.freeze_old_embeddings_steps is 2 but the vocabulary was not resized/);
  assert.doesNotMatch(p.stdout, /vocabulary resized/);
});

test('killed during the warm-up and resumed: the same losses as an uninterrupted run', async () => {
  await ready;
  const train = { steps: 8, freeze_old_embeddings_steps: 4, checkpoint_every: 2 };
  const full = cptConfig('resume-full', {}, train);
  assert.equal(runCli(['--config', full.cfg]).code, 0);
  const killed = cptConfig('resume-killed', {}, train);
  await runCliKilledAt(['--config', killed.cfg], path.join(killed.ckpt(2), 'COMPLETE'));
  // Resume from step 2 whatever the kill caught, so the resumed run crosses the end of the warm-up.
  for (const s of [4, 6, 8]) fs.rmSync(killed.ckpt(s), { recursive: true, force: true });
  const r = runCli(['--config', killed.cfg, '--train.resume', 'true']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /resuming from .*step-00000002/);
  const losses = (d: string) => readMetrics(path.join(d, 'out', 'metrics.jsonl')).filter((x) => x.loss !== undefined).map((x) => [x.step, x.loss]);
  assert.equal(losses(full.dir).length, 8);
  assert.deepEqual(losses(killed.dir), losses(full.dir));
});
