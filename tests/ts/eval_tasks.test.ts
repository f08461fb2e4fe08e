import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { saveCheckpoint } from '../../src/checkpoint.js';
import { resolveModel, validateConfig } from '../../src/config.js';
import { loadModel } from '../../src/evaluate.js';
import { normalizeAnswer, parseTaskFile, runTask, scoreContinuations } from '../../src/eval_tasks.js';
import { native } from '../../src/native.js';
import { TextTokenizer, trainByteLevelBpe } from '../../src/tokenizer.js';
import { runCli, tinyModel, tmpDir } from './cliHelpers.js';

const dir = tmpDir('eval-tasks');
const corpus = path.join(dir, 'corpus.txt');
fs.writeFileSync(corpus, Array.from({ length: 200 }, (_, i) => `서울은 한국의 수도입니다 ${i}. 문서를 저장합니다. The answer is ${i % 10}.`).join('\n') + '\n');
const tokFile = path.join(dir, 'tokenizer.json');

// A checkpoint whose weights are all 0 except the norm weights (1): every hidden state is 0, so the
// logits are 0 and every token has probability exactly 1/V, whatever the context. Its answers are known:
// a continuation of n tokens has log-likelihood −n·ln V.
async function checkpoint(name: string, fill: (i: number) => number): Promise<string> {
  await trainByteLevelBpe({ files: [corpus], vocabSize: 320, specialTokens: ['<|endoftext|>'], outPath: tokFile });
  const tok = TextTokenizer.fromFile(tokFile);
  const model = resolveModel(validateConfig({ model: { ...tinyModel, vocab_size: tok.vocabSize } }, 'test').model, tok.vocabSize);
  const layout = native().paramLayout(model);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].size;
  const params = new Float32Array(total);
  for (const p of layout) for (let i = 0; i < p.size; i++) params[p.offset + i] = /norm/.test(p.name) ? 1 : fill(p.offset + i);
  const zeros = new Float32Array(total);
  return saveCheckpoint({
    outDir: path.join(dir, name), step: 0, model, layout, params, m: zeros, v: zeros,
    state: { step: 0, seed: 1, tokens_seen: 0, tokenizer_hash: tok.hash, data_windows: 0 },
    tokenizerFile: tokFile, eosId: tok.eosId, bosId: tok.bosId,
  });
}

test('multiple choice on a model whose answers are known: uniform next-token distribution', async () => {
  const ckpt = await checkpoint('uniform', () => 0);
  const lm = loadModel(ckpt);
  const tok = lm.tokenizer!;
  const V = lm.config.vocab_size;
  const choices = [' 서울은 한국의 수도입니다', ' 문서', ' The answer is 7', ' 저장합니다 저장합니다'];
  const n = await Promise.all(choices.map(async (c) => (await tok.encodeBatch([c]))[0].length));
  const r = await scoreContinuations(lm, choices.map((c) => ['질문: 수도는?\n답:', c]), 63);
  choices.forEach((_, i) => assert.ok(Math.abs(r.logLik[i] + n[i] * Math.log(V)) < 1e-3 * n[i], `choice ${i}: ${r.logLik[i]} vs ${-n[i] * Math.log(V)}`));
  // acc picks the fewest tokens; acc_norm the fewest tokens per character.
  const shortest = n.indexOf(Math.min(...n));
  const perChar = n.map((k, i) => k / [...choices[i]].length);
  const densest = perChar.indexOf(Math.min(...perChar));
  const file = path.join(dir, 'mc.jsonl');
  fs.writeFileSync(file, [shortest, densest, (shortest + 1) % 4].map((gold) => JSON.stringify({ context: '질문: 수도는?\n답:', choices, gold })).join('\n') + '\n');
  const res = await runTask(lm, file, { fewshot: 0, seed: 1, maxLen: 63 });
  const expectAcc = [shortest, densest, (shortest + 1) % 4].filter((g) => g === shortest).length / 3;
  const expectNorm = [shortest, densest, (shortest + 1) % 4].filter((g) => g === densest).length / 3;
  assert.equal(res.metrics.acc, expectAcc);
  assert.equal(res.metrics.acc_norm, expectNorm);
  // Cloze: the greedy token is id 0 (the first of equal logits), so no target matches; log-likelihood as above.
  const cloze = path.join(dir, 'cloze.jsonl');
  fs.writeFileSync(cloze, JSON.stringify({ context: '서울은 한국의', target: ' 수도입니다' }) + '\n');
  const c = await runTask(lm, cloze, { fewshot: 0, seed: 1, maxLen: 63 });
  const nt = (await tok.encodeBatch([' 수도입니다']))[0].length;
  assert.equal(c.metrics.acc, 0);
  assert.ok(Math.abs(c.metrics.mean_loglik + nt * Math.log(V)) < 1e-3 * nt);
});

test('answers are normalized as documented; bad task files name the line', () => {
  assert.equal(normalizeAnswer('풀이: 3 + 5 = 8개입니다.', 'number'), '8');
  assert.equal(normalizeAnswer('거스름돈은 2,000원', 'number'), '2000');
  assert.equal(normalizeAnswer('no number', 'number'), '');
  assert.equal(normalizeAnswer(' 서울 ! ', 'text'), normalizeAnswer('서울', 'text'));
  const bad = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(bad, '{"context": "a", "choices": ["x", "y"], "gold": 0}\n{"context": "b", "choices": ["x", "y"], "gold": 2}\n');
  assert.throws(() => parseTaskFile(bad), /bad\.jsonl:2: "gold" must be an index into the 2 choices/);
  fs.writeFileSync(bad, '{"context": "a", "choices": ["x", "y"], "gold": 0}\n{"context": "b", "target": "t"}\n');
  assert.throws(() => parseTaskFile(bad), /mixes kinds/);
  fs.writeFileSync(bad, '{"context": "a"\n');
  assert.throws(() => parseTaskFile(bad), /bad\.jsonl:1: not JSON/);
});

test('ko-train eval --tasks examples/tasks: a table, JSON, per-task files, and the same numbers twice', () => {
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.2;
  return checkpoint('random', rand).then((ckpt) => {
    const args = ['eval', '--checkpoint', ckpt, '--tasks', 'examples/tasks', '--fewshot', '2'];
    const table = runCli(args);
    assert.equal(table.code, 0, table.stderr);
    for (const t of ['ko_mc_knowledge', 'ko_cloze_help', 'ko_arith']) assert.match(table.stdout, new RegExp(`^${t}\\s`, 'm'));
    const out = path.join(dir, 'results');
    const a = runCli([...args, '--json', '--out', out]);
    const b = runCli([...args, '--json']);
    assert.equal(a.code, 0, a.stderr);
    assert.deepEqual(JSON.parse(a.stdout).results, JSON.parse(b.stdout).results);
    assert.ok(fs.existsSync(path.join(out, 'ko_arith.json')));
    const missing = runCli(['eval', '--checkpoint', ckpt, '--tasks', 'no_such_task']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no_such_task: no such file/);
  });
});
