// The post-training modes end to end through the real CLI on tiny models: SFT (loss on the assistant turns,
// packed rows, the SFT shard), DPO (reward accuracy on its pairs, reference log-probs stored and reused on
// resume), distillation (held-out KL to the teacher falls; the top-k shard path) and their config errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { saveCheckpoint } from '../../src/checkpoint.js';
import { resolveModel, validateConfig } from '../../src/config.js';
import { native } from '../../src/native.js';
import { TextTokenizer, trainByteLevelBpe } from '../../src/tokenizer.js';
import { readMetrics } from '../../src/train.js';
import { readSftShard } from '../../src/sft_data.js';
import { readDpoShard } from '../../src/dpo_data.js';
import { runCli, tinyModel, tmpDir } from './cliHelpers.js';

const dir = tmpDir('posttrain');
const corpus = path.join(dir, 'corpus.txt');
fs.writeFileSync(corpus, Array.from({ length: 300 }, (_, i) =>
  `표를 삽입하려면 삽입 메뉴를 누릅니다 ${i}. 문서를 저장합니다. 셀을 선택하세요. user assistant <|im_start|> <|im_end|>`).join('\n') + '\n');
const tokFile = path.join(dir, 'tokenizer.json');

async function tokenizer(): Promise<TextTokenizer> {
  if (!fs.existsSync(tokFile)) await trainByteLevelBpe({ files: [corpus], vocabSize: 300, specialTokens: ['<|endoftext|>'], outPath: tokFile });
  return TextTokenizer.fromFile(tokFile);
}

// A random tiny Llama saved as a checkpoint (the "pretrained" starting point or the teacher).
// bigram: attention and MLP outputs zeroed, so the next-token distribution depends on the current token only
// (a teacher a small student can match quickly).
async function checkpoint(name: string, o: { seed: number; std: number; hidden?: number; bigram?: boolean }): Promise<string> {
  const tok = await tokenizer();
  const model = resolveModel(validateConfig({ model: { ...tinyModel, vocab_size: tok.vocabSize, max_position_embeddings: 128, hidden_size: o.hidden ?? 32 } }, 'test').model, tok.vocabSize);
  const addon = native();
  const layout = addon.paramLayout(model);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].size;
  const params = new Float32Array(total);
  addon.initParams(model, params, o.seed, o.std);
  if (o.bigram) for (const p of layout) if (/o_proj|down_proj/.test(p.name)) params.fill(0, p.offset, p.offset + p.size);
  const zeros = new Float32Array(total);
  return saveCheckpoint({
    outDir: path.join(dir, name), step: 0, model, layout, params, m: zeros, v: zeros,
    state: { step: 0, seed: 1, tokens_seen: 0, tokenizer_hash: tok.hash, data_windows: 0 },
    tokenizerFile: tokFile, eosId: tok.eosId, bosId: tok.bosId,
  });
}

// Twelve prompt/response examples (three distinct) and one malformed line.
function sftData(): string {
  const data = path.join(dir, 'sft.jsonl');
  const qa = [['표를 어떻게 삽입하나요?', '삽입 메뉴를 누릅니다.'], ['문서를 저장하려면?', '문서를 저장합니다.'], ['셀은?', '셀을 선택하세요.']];
  fs.writeFileSync(data, Array.from({ length: 12 }, (_, i) => JSON.stringify({ prompt: qa[i % 3][0], response: qa[i % 3][1] })).join('\n') + '\n{"prompt": 3}\n');
  return data;
}

function writeConfig(name: string, cfg: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, YAML.stringify(cfg));
  return file;
}

const base = (name: string) => ({
  run: { name, out_dir: path.join(dir, 'out', name), seed: 7, stages: ['train'], device: 'cpu', threads: 2 },
  train: { batch_size: 4, seq_len: 48, lr: 3e-3, min_lr: 3e-3, warmup_steps: 0, weight_decay: 0, log_every: 5, checkpoint_every: 0, shuffle: true },
});

test('sft: the loss falls on the assistant turns of packed chat examples, and the SFT shard holds the mask', async () => {
  const init = await checkpoint('init-sft', { seed: 3, std: 0.02 });
  const data = sftData();
  const cfg = writeConfig('sft', {
    ...base('sft'), data: { train: data, val: data }, model: { init_from: init },
    train: { ...base('sft').train, mode: 'sft', steps: 30, eval_every: 15 },
  });
  const r = runCli(['train', '--config', cfg]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /train\.mode sft/);
  assert.match(r.stdout, /packed/);
  assert.match(r.stdout + r.stderr, /1 malformed line/); // the bad line is counted, not fatal
  const rows = readMetrics(path.join(dir, 'out', 'sft', 'metrics.jsonl'));
  const evals = rows.filter((x) => x.eval_loss !== undefined).map((x) => x.eval_loss!);
  assert.ok(evals.length >= 2 && evals[evals.length - 1] < 0.6 * evals[0], `eval loss ${evals.join(' → ')}`);
  const shard = readSftShard(path.join(dir, 'out', 'sft', 'data', 'sft-train.arrow'));
  assert.equal(shard.offsets.length - 1, 12);
  const masked = shard.lossMask.reduce((a, b) => a + b, 0);
  assert.ok(masked > 0 && masked < shard.tokens.length / 2, `${masked} of ${shard.tokens.length} tokens carry loss`);
});

test('dpo: reward accuracy on the training pairs rises above 0.9; reference log-probs are stored and reused on resume', async () => {
  const init = await checkpoint('init-dpo', { seed: 5, std: 0.02 });
  const data = path.join(dir, 'pairs.jsonl');
  const pairs = [
    ['표를 삽입하려면?', '삽입 메뉴를 누릅니다.', '저장합니다 저장합니다.'],
    ['문서를 저장하려면?', '문서를 저장합니다.', '셀을 선택하세요 셀.'],
    ['셀을 고르려면?', '셀을 선택하세요.', '메뉴 메뉴 메뉴.'],
    ['메뉴는 어디에?', '삽입 메뉴를 누릅니다.', '문서 문서 셀 셀.'],
  ];
  fs.writeFileSync(data, pairs.map(([prompt, chosen, rejected]) => JSON.stringify({ prompt, chosen, rejected })).join('\n') + '\n');
  const out = path.join(dir, 'out', 'dpo');
  const cfgBody = {
    ...base('dpo'), data: { train: data }, model: { init_from: init },
    train: { ...base('dpo').train, mode: 'dpo', steps: 16, batch_size: 2, eval_every: 8, checkpoint_every: 8, dpo: { beta: 0.5 } },
  };
  const r = runCli(['train', '--config', writeConfig('dpo', cfgBody)]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /reference log-probs of 4 pairs computed/);
  const rows = readMetrics(path.join(out, 'metrics.jsonl'));
  assert.equal(rows[0].eval_reward_accuracy, 0); // at step 0 policy == reference: every reward is 0
  const last = rows[rows.length - 1];
  assert.ok((last.eval_reward_accuracy as number) > 0.9, `reward accuracy ${last.eval_reward_accuracy}`);
  assert.ok((last.eval_reward_margin as number) > 0);
  for (const k of ['chosen_logp', 'rejected_logp', 'reward_margin', 'reward_accuracy', 'chosen_reward', 'rejected_reward'])
    assert.equal(typeof last[k], 'number', k);
  const shard = readDpoShard(path.join(out, 'data', 'dpo-train.arrow'));
  assert.equal(shard.pairs.length, 4);
  assert.ok(shard.ref && shard.ref.chosen.length === 4);
  // Resume to step 20: the stored reference is reused, not recomputed from the moved weights.
  const again = runCli(['train', '--config', writeConfig('dpo2', { ...cfgBody, train: { ...cfgBody.train, steps: 20, resume: true } })]);
  assert.equal(again.code, 0, again.stderr + again.stdout);
  assert.match(again.stdout, /resuming from .*step-00000016/);
  assert.doesNotMatch(again.stdout, /reference log-probs of 4 pairs computed/);
});

test('distill: the student moves toward the teacher in held-out KL, from logits on the fly and from a top-k shard', async () => {
  const teacher = await checkpoint('teacher', { seed: 9, std: 0.3, bigram: true });
  const tok = await tokenizer();
  const rand = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const write = (file: string, seed: number, n: number) => {
    const r = rand(seed);
    fs.writeFileSync(file, Array.from({ length: n }, () => JSON.stringify({ input_ids: Array.from({ length: 60 }, () => Math.floor(r() * tok.vocabSize)) })).join('\n') + '\n');
    return file;
  };
  const train = write(path.join(dir, 'distill-train.jsonl'), 1, 40), val = write(path.join(dir, 'distill-val.jsonl'), 2, 8);
  for (const topK of [0, 32]) {
    const name = `distill-k${topK}`;
    const cfg = writeConfig(name, {
      ...base(name), data: { train, val }, tokenizer: { path: tokFile },
      model: { ...tinyModel, vocab_size: tok.vocabSize, max_position_embeddings: 128 },
      train: { ...base(name).train, mode: 'distill', steps: 60, eval_every: 60, eval_batches: 2, lr: 1e-2, min_lr: 1e-2, distill: { teacher, alpha: 1, temperature: 1, top_k: topK } },
    });
    const r = runCli(['train', '--config', cfg]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rows = readMetrics(path.join(dir, 'out', name, 'metrics.jsonl'));
    const kl = rows.filter((x) => x.eval_kl !== undefined).map((x) => x.eval_kl as number);
    assert.ok(kl.length === 2 && kl[1] < 0.7 * kl[0], `top_k ${topK}: held-out KL ${kl.join(' → ')}`);
    if (topK) assert.ok(fs.existsSync(path.join(dir, 'out', name, 'data', `teacher-top${topK}.arrow`)));
  }
});

test('post-training config errors name the key', async () => {
  const r = runCli(['train', '--train.mode', 'dpo', '--run.out_dir', path.join(dir, 'out', 'bad'), '--run.device', 'cpu']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /train\.mode dpo needs data\.train/);
  const d = runCli(['train', '--train.mode', 'distill', '--data.train', path.join(dir, 'distill-train.jsonl'), '--run.out_dir', path.join(dir, 'out', 'bad2'),
    '--model.vocab_size', '300', '--run.device', 'cpu']);
  assert.notEqual(d.code, 0);
  assert.match(d.stderr, /train\.distill\.teacher/);
  const l = runCli(['train', '--train.mode', 'dpo', '--train.lora.rank', '4', '--data.train', 'pairs.jsonl', '--run.out_dir', path.join(dir, 'out', 'bad3')]);
  assert.match(l.stderr, /train\.lora works with train\.mode pretrain or sft/);
});

test('sft with LoRA: only the adapted matrices move, the checkpoint holds merged weights + a PEFT adapter, resume is exact', async () => {
  const init = await checkpoint('init-lora', { seed: 11, std: 0.02 });
  const data = sftData();
  const body = (name: string, steps: number, resume = false) => ({
    ...base(name), data: { train: data }, model: { init_from: init },
    train: { ...base(name).train, mode: 'sft', steps, checkpoint_every: 5, resume, lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] } },
  });
  const full = runCli(['train', '--config', writeConfig('lora-full', body('lora-full', 10))]);
  assert.equal(full.code, 0, full.stderr + full.stdout);
  assert.match(full.stdout, /LoRA rank 4, alpha 8 on q_proj, v_proj/);
  const ck = path.join(dir, 'out', 'lora-full', 'step-00000010');
  for (const f of ['adapter_model.safetensors', 'adapter_config.json', 'adapter_optimizer.safetensors', 'model.safetensors'])
    assert.ok(fs.existsSync(path.join(ck, f)), f);
  assert.ok(!fs.existsSync(path.join(ck, 'optimizer.safetensors')));
  const { readSafetensors, readTensorF32 } = await import('../../src/safetensors.js');
  const a = readSafetensors(path.join(init, 'model.safetensors')), b = readSafetensors(path.join(ck, 'model.safetensors'));
  for (const name of a.names) {
    const x = readTensorF32(a, name), y = readTensorF32(b, name);
    const same = x.length === y.length && x.every((e, i) => Object.is(e, y[i]));
    assert.equal(same, !/q_proj|v_proj/.test(name), `${name} ${same ? 'unchanged' : 'changed'}`);
  }
  // Stop at step 5 (its checkpoint), resume to 10: the same losses as the uninterrupted run.
  const part = runCli(['train', '--config', writeConfig('lora-part', body('lora-part', 5))]);
  assert.equal(part.code, 0, part.stderr);
  const rest = runCli(['train', '--config', writeConfig('lora-part2', { ...body('lora-part', 10, true) })]);
  assert.equal(rest.code, 0, rest.stderr + rest.stdout);
  assert.match(rest.stdout, /resuming from .*step-00000005 \(step 5, LoRA adapter\)/);
  const l1 = readMetrics(path.join(dir, 'out', 'lora-full', 'metrics.jsonl')).map((r) => r.loss);
  const l2 = readMetrics(path.join(dir, 'out', 'lora-part', 'metrics.jsonl')).map((r) => r.loss);
  assert.deepEqual(l2, l1);
});
