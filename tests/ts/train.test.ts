// End-to-end training through the CLI: determinism, kill-and-resume, and the errors users hit.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readMetrics, runCli, runCliKilledAt, tinyModel, tmpDir, writeJson, writeTokenJsonl } from './cliHelpers.js';

function trainConfig(dir: string, data: string, train: Record<string, unknown> = {}) {
  return writeJson(path.join(dir, 'run.yaml'), {
    run: { out_dir: path.join(dir, 'out'), seed: 7, stages: ['train'], threads: 2 },
    data: { train: data },
    model: tinyModel,
    train: { steps: 12, batch_size: 4, seq_len: 16, lr: 0.01, min_lr: 0.001, warmup_steps: 2, log_every: 1, checkpoint_every: 4, keep_checkpoints: 0, ...train },
  });
}

const losses = (dir: string) => readMetrics(path.join(dir, 'out', 'metrics.jsonl')).filter((r) => r.loss !== undefined).map((r) => [r.step, r.loss]);

test('same seed, same data: identical per-step losses, and the loss falls', () => {
  const a = tmpDir('det-a'), b = tmpDir('det-b');
  for (const d of [a, b]) {
    const data = writeTokenJsonl(path.join(d, 'train.jsonl'), 40, 33, 64, 3);
    const r = runCli(['--config', trainConfig(d, data)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /step 12\/12 \| loss [\d.]+ \| grad norm [\d.]+ \| lr [\d.e+-]+ \| \d+ ms \| \d+ tok\/s \| MFU/);
  }
  const la = losses(a), lb = losses(b);
  assert.equal(la.length, 12);
  assert.deepEqual(la, lb);
  assert.ok(la[11][1] < la[0][1] - 0.3, `loss should fall: ${la[0][1]} → ${la[11][1]}`);
  // The checkpoint is in the HF layout with the completion marker written.
  const ck = path.join(a, 'out', 'step-00000012');
  for (const f of ['config.json', 'model.safetensors', 'generation_config.json', 'optimizer.safetensors', 'trainer_state.json', 'COMPLETE'])
    assert.ok(fs.existsSync(path.join(ck, f)), `${f} missing`);
  const cfg = JSON.parse(fs.readFileSync(path.join(ck, 'config.json'), 'utf8'));
  assert.deepEqual(cfg.architectures, ['LlamaForCausalLM']);
  assert.equal(cfg.num_key_value_heads, 2);
});

test('SIGKILL after a checkpoint, then resume: the same per-step losses as an uninterrupted run', async () => {
  const full = tmpDir('resume-full'), killed = tmpDir('resume-killed');
  const steps = 40;
  const opts = { steps, checkpoint_every: 5, seq_len: 32, batch_size: 8 };
  const dataFull = writeTokenJsonl(path.join(full, 'train.jsonl'), 60, 65, 64, 5);
  const dataKilled = writeTokenJsonl(path.join(killed, 'train.jsonl'), 60, 65, 64, 5);
  assert.equal(runCli(['--config', trainConfig(full, dataFull, opts)]).code, 0);

  const cfg = trainConfig(killed, dataKilled, opts);
  await runCliKilledAt(['--config', cfg], path.join(killed, 'out', 'step-00000005', 'COMPLETE'));
  const before = losses(killed);
  assert.ok(before.length < steps, `the kill must land mid-run (had ${before.length} steps)`);
  const resumed = runCli(['--config', cfg, '--train.resume', 'true']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /resuming from .*step-0000000\d/);
  assert.deepEqual(losses(killed), losses(full));
});

test('an out_dir with checkpoints is not overwritten without train.resume', () => {
  const d = tmpDir('exists');
  const data = writeTokenJsonl(path.join(d, 'train.jsonl'), 20, 33, 64);
  const cfg = trainConfig(d, data, { steps: 2 });
  assert.equal(runCli(['--config', cfg]).code, 0);
  const r = runCli(['--config', cfg]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /already holds checkpoints.*train\.resume/);
});

test('a token id >= vocab_size is an error naming it, not a crash', () => {
  const d = tmpDir('badtok');
  const data = path.join(d, 'train.jsonl');
  const ids = Array.from({ length: 40 }, (_, i) => (i === 21 ? 9999 : i % 64));
  fs.writeFileSync(data, JSON.stringify({ input_ids: ids }) + '\n');
  const r = runCli(['--config', trainConfig(d, data, { steps: 1, batch_size: 2, seq_len: 16 })]);
  assert.equal(r.code, 1);
  assert.equal(r.signal, null);
  assert.match(r.stderr, /ko-train: error: .*9999.*out of range for vocab_size 64/);
});

test('a malformed JSONL line is counted, reported and skipped', () => {
  const d = tmpDir('malformed');
  const data = writeTokenJsonl(path.join(d, 'train.jsonl'), 20, 33, 64);
  fs.appendFileSync(data, '{"input_ids": [1, 2,\n{"text": "no ids"}\n');
  const r = runCli(['--config', trainConfig(d, data, { steps: 1 })]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /skipped 2 malformed lines \(.*train\.jsonl:21: not JSON.*train\.jsonl:22: no non-empty 'input_ids'/);
});

test('a truncated shard is an error naming the file', () => {
  const d = tmpDir('trunc');
  const corpus = path.join(d, 'docs.jsonl');
  fs.writeFileSync(corpus, Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: `문서 ${i}: 한국어 텍스트와 English words ${'가나다라 '.repeat(i % 7 + 3)}` })).join('\n'));
  const cfg = writeJson(path.join(d, 'run.yaml'), {
    run: { out_dir: path.join(d, 'out'), stages: ['prep'] },
    data: { inputs: [corpus], val_fraction: 0 },
    prep: { filters: [] },
    tokenizer: { train_vocab_size: 300 },
  });
  assert.equal(runCli(['--config', cfg]).code, 0);
  const shard = path.join(d, 'out', 'shards', 'train-00000.arrow');
  const bytes = fs.readFileSync(shard);
  fs.writeFileSync(shard, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const r = runCli(['train', '--config', cfg, '--model.hidden_size', '32', '--model.intermediate_size', '48', '--model.num_hidden_layers', '1', '--train.steps', '1', '--train.seq_len', '8', '--train.batch_size', '1']);
  assert.equal(r.code, 1);
  assert.ok(r.stderr.includes('train-00000.arrow'), r.stderr);
});

test('config errors name the key, the value and what is allowed', () => {
  const d = tmpDir('cfg');
  const unknown = writeJson(path.join(d, 'a.yaml'), { train: { learning_rate: 0.1 } });
  let r = runCli(['train', '--config', unknown]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown key 'train\.learning_rate' in section 'train' \(allowed: .*\blr\b/);
  r = runCli(['train', '--config', unknown.replace('a.yaml', 'missing.yaml')]);
  assert.match(r.stderr, /cannot read config .*missing\.yaml/);
  const bad = writeJson(path.join(d, 'b.yaml'), { model: { model_type: 'gpt2' } });
  r = runCli(['train', '--config', bad]);
  assert.match(r.stderr, /model\.model_type: "gpt2" is not allowed/);
  assert.match(r.stderr, /llama.*qwen3/);
  r = runCli(['train', '--config', bad, '--model.model_type', 'llama', '--train.steps', '-3']);
  assert.match(r.stderr, /train\.steps: -3 is not allowed/);
  r = runCli(['train', '--config', bad, '--bogus', '1']);
  assert.match(r.stderr, /unknown option --bogus/);
});
