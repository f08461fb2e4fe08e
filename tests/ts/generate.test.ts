// Batched generation, stop strings and chat. Two tiny checkpoints: a random one (attention matters), and a
// "chain" whose greedy continuation is known by construction: every layer's output projection is zero, so
// the last hidden state is the current token's embedding; the chain's tokens get orthogonal embeddings and
// lm_head row next(t) = embedding(t), so after token t the only positive logit is next(t).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { saveCheckpoint } from '../../src/checkpoint.js';
import { resolveModel, validateConfig } from '../../src/config.js';
import { loadModel, type LoadedModel } from '../../src/evaluate.js';
import { generateBatch, type BatchOptions } from '../../src/generate.js';
import { native, type ParamInfo } from '../../src/native.js';
import { TextTokenizer, trainByteLevelBpe } from '../../src/tokenizer.js';
import { runCli, tinyModel, tmpDir } from './cliHelpers.js';

const dir = tmpDir('generate');
const corpus = path.join(dir, 'corpus.txt');
fs.writeFileSync(corpus, Array.from({ length: 200 }, (_, i) => `안녕하세요 서울의 날씨는 맑습니다 ${i}.\n문서를 저장합니다. The answer is ${i % 10}.`).join('\n') + '\n');
const tokFile = path.join(dir, 'tokenizer.json');
const greedy = { temperature: 0, topK: 0, topP: 1, seed: 1 };
const CHAIN_TEXT = '안녕하세요 서울의 날씨는';

let tokReady: Promise<TextTokenizer> | null = null;
function tokenizer(): Promise<TextTokenizer> {
  tokReady ??= trainByteLevelBpe({ files: [corpus], vocabSize: 500, specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'], outPath: tokFile }).then(() =>
    TextTokenizer.fromFile(tokFile),
  );
  return tokReady;
}

async function checkpoint(name: string, fill: (params: Float32Array, layout: ParamInfo[], tok: TextTokenizer, model: ReturnType<typeof resolveModel>) => Promise<void>): Promise<string> {
  const tok = await tokenizer();
  const model = resolveModel(validateConfig({ model: { ...tinyModel, vocab_size: tok.vocabSize, max_position_embeddings: 256 } }, 'test').model, tok.vocabSize);
  const layout = native().paramLayout(model);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].size;
  const params = new Float32Array(total);
  await fill(params, layout, tok, model);
  const zeros = new Float32Array(total);
  return saveCheckpoint({
    outDir: path.join(dir, name), step: 0, model, layout, params, m: zeros, v: zeros,
    state: { step: 0, seed: 1, tokens_seen: 0, tokenizer_hash: tok.hash, data_windows: 0 },
    tokenizerFile: tokFile, eosId: tok.eosId, bosId: tok.bosId,
  });
}
const tensor = (layout: ParamInfo[], name: string) => {
  const t = layout.find((p) => p.name === name);
  if (!t) throw new Error(`no tensor ${name}`);
  return t;
};

// Random weights; EOS's lm_head row is zero, so EOS (logit 0) never wins and outputs are long.
let randomCkpt: Promise<string> | null = null;
function randomCheckpoint(): Promise<string> {
  randomCkpt ??= checkpoint('random', async (params, layout, tok, model) => {
    native().initParams(model, params, 5, 0.5);
    const head = tensor(layout, 'lm_head.weight');
    params.fill(0, head.offset + tok.eosId * model.hidden_size, head.offset + (tok.eosId + 1) * model.hidden_size);
  });
  return randomCkpt;
}

// The chain: "\n" -> the tokens of CHAIN_TEXT -> <|im_end|> (the end of ChatML's generation prompt is "\n").
let chainCkpt: Promise<{ dir: string; chain: number[] }> | null = null;
function chainCheckpoint(): Promise<{ dir: string; chain: number[] }> {
  chainCkpt ??= (async () => {
    const tok = await tokenizer();
    const [nl] = await tok.encodeBatch(['\n']);
    const [body] = await tok.encodeBatch([CHAIN_TEXT]);
    const imEnd = tok.tokenToId('<|im_end|>')!;
    const chain = [...nl, ...body, imEnd];
    assert.equal(new Set(chain).size, chain.length, 'chain tokens must be distinct');
    const d = await checkpoint('chain', async (params, layout, _tok, model) => {
      const H = model.hidden_size;
      assert.ok(chain.length <= H);
      for (const p of layout) if (/norm/.test(p.name)) params.fill(1, p.offset, p.offset + p.size);
      // Small random embeddings for every other token (their continuations do not matter).
      const emb = tensor(layout, 'model.embed_tokens.weight');
      let s = 7;
      for (let i = 0; i < emb.size; i++) params[emb.offset + i] = ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.1;
      const head = tensor(layout, 'lm_head.weight');
      chain.forEach((t, j) => {
        params.fill(0, emb.offset + t * H, emb.offset + (t + 1) * H);
        params[emb.offset + t * H + j] = 1; // chain token j: direction j
        if (j + 1 < chain.length) params[head.offset + chain[j + 1] * H + j] = 1; // next(chain[j]) reads direction j
      });
    });
    return { dir: d, chain };
  })();
  return chainCkpt;
}

const prompts = ['서울의 날씨는', '안녕하세요. 오늘은 문서를 저장합니다 그리고', 'The'];

test('batched greedy generation of 3 prompts equals 3 single-prompt runs; finished sequences leave the batch', async () => {
  const lm = loadModel(await randomCheckpoint());
  const o = { ...greedy, maxNewTokens: 24 };
  const batch = await generateBatch(lm, prompts, o);
  for (const [i, p] of prompts.entries()) {
    const [one] = await generateBatch(lm, [p], o);
    assert.deepEqual(batch[i].ids, one.ids, `prompt ${i}`);
    assert.equal(batch[i].text, one.text);
    assert.equal(batch[i].text, await lm.tokenizer!.decode(one.ids)); // byte-level BPE: incremental = whole decode
  }
  assert.ok(batch.every((r) => r.newTokens === 24 && r.finish === 'length'));
  assert.ok(new Set(batch.map((r) => r.text)).size === 3, 'the prompts give different continuations');
  // A sequence that stops early leaves the batch; the others carry on exactly as they would alone.
  const stop = [...batch[1].text].slice(2, 4).join('');
  const stopped = await generateBatch(lm, prompts, { ...o, stop: [stop] });
  assert.equal(stopped[1].finish, 'stop');
  assert.ok(stopped[1].newTokens < 24);
  for (const [i, p] of prompts.entries()) {
    const [one] = await generateBatch(lm, [p], { ...o, stop: [stop] });
    assert.deepEqual(stopped[i].ids, one.ids, `prompt ${i} with a stop string`);
    assert.equal(stopped[i].text, one.text);
  }
  // Token-array prompts are used as given (no BOS added); the same ids give the same output.
  const ids = (await lm.tokenizer!.encodeBatch([prompts[0]]))[0];
  const withBos = lm.tokenizer!.bosId === null ? Array.from(ids) : [lm.tokenizer!.bosId, ...ids];
  const [fromIds] = await generateBatch(lm, [withBos], o);
  assert.deepEqual(fromIds.ids, batch[0].ids);
});

test('seeded sampling: same seed same output, each sequence its own stream whatever the batch', async () => {
  const lm = loadModel(await randomCheckpoint());
  const o = { temperature: 1, topK: 0, topP: 1, maxNewTokens: 16, seed: 42 };
  const a = await generateBatch(lm, prompts, o);
  const b = await generateBatch(lm, prompts, o);
  assert.deepEqual(a.map((r) => r.ids), b.map((r) => r.ids));
  const other = await generateBatch(lm, [prompts[0], '문서를', prompts[2]], o); // a different prompt in slot 1
  assert.deepEqual(other[0].ids, a[0].ids);
  assert.deepEqual(other[2].ids, a[2].ids);
  const reseeded = await generateBatch(lm, prompts, { ...o, seed: 43 });
  assert.notDeepEqual(reseeded.map((r) => r.ids), a.map((r) => r.ids));
});

test('the chain model continues "\\n" with the constructed tokens, so stops can be checked exactly', async () => {
  const { dir: d, chain } = await chainCheckpoint();
  const lm = loadModel(d);
  const [r] = await generateBatch(lm, [[chain[0]]], { ...greedy, maxNewTokens: chain.length - 1 });
  assert.deepEqual(r.ids, chain.slice(1)); // <|im_end|> included: no stop asked for
  assert.equal(r.text, CHAIN_TEXT); // and it decodes to nothing (special)
  assert.equal(r.finish, 'length');
});

async function run(lm: LoadedModel, prompt: number[], o: Partial<BatchOptions>) {
  const pieces: string[] = [];
  const [r] = await generateBatch(lm, [prompt], { ...greedy, maxNewTokens: 40, onText: (i, t) => (assert.equal(i, 0), pieces.push(t)), ...o });
  assert.equal(pieces.join(''), r.text, 'streamed text = returned text');
  return { r, pieces };
}

test('stop strings: the text is cut before the first one, generation halts at the token that completes it', async () => {
  const { dir: d, chain } = await chainCheckpoint();
  const lm = loadModel(d);
  const tok = lm.tokenizer!;
  const body = chain.slice(1, -1);
  // Text after each token; pick a stop string across a boundary between two tokens.
  const upTo = await Promise.all(body.map((_, k) => tok.decode(body.slice(0, k + 1))));
  const clean = (t: string) => !t.includes('\uFFFD');
  const k = upTo.findIndex((t, j) => j > 0 && j < body.length - 1 && clean(t) && clean(upTo[j + 1]) && upTo[j + 1].length > t.length);
  assert.ok(k > 0, 'a token boundary inside the chain text');
  const stop = upTo[k + 1].slice(upTo[k].length - 1, upTo[k].length + 1); // last char of token k, first of k+1
  const cut = CHAIN_TEXT.indexOf(stop);
  const { r } = await run(lm, [chain[0]], { stop: ['never', stop] });
  assert.equal(r.finish, 'stop');
  assert.equal(r.text, CHAIN_TEXT.slice(0, cut));
  // Halted at the first token whose text contains the stop string.
  const need = upTo.findIndex((t) => t.includes(stop)) + 1;
  assert.deepEqual(r.ids, body.slice(0, need));

  // A stop string that is a special token (skipped when decoding) stops on its id.
  const special = await run(lm, [chain[0]], { stop: ['<|im_end|>'] });
  assert.equal(special.r.finish, 'stop');
  assert.equal(special.r.text, CHAIN_TEXT);
  assert.deepEqual(special.r.ids, body);
  // EOS stops too: point the last chain token at EOS instead of <|im_end|>.
  const H = lm.config.hidden_size;
  const head = native().paramLayout(lm.config).find((p) => p.name === 'lm_head.weight')!;
  const last = chain.length - 2;
  lm.params[head.offset + chain[chain.length - 1] * H + last] = 0;
  lm.params[head.offset + tok.eosId * H + last] = 1;
  const eos = await run(lm, [chain[0]], {});
  assert.equal(eos.r.finish, 'eos');
  assert.equal(eos.r.text, CHAIN_TEXT);
  // A stop string at the very start leaves nothing, and nothing was streamed.
  const first = await run(lm, [chain[0]], { stop: [CHAIN_TEXT.slice(0, 2)] });
  assert.equal(first.r.text, '');
  assert.equal(first.pieces.length, 0);
});

test('decodeBatch and decodeReset reject bad ids, positions, slots and lengths with JS errors', async () => {
  const lm = loadModel(await randomCheckpoint());
  const net = lm.net;
  const V = lm.config.vocab_size;
  net.decodeReset(8, 2);
  const u = (...x: number[]) => Uint32Array.from(x);
  const i = (...x: number[]) => Int32Array.from(x);
  assert.throws(() => net.decodeBatch(u(V), i(0)), /out of range/);
  assert.throws(() => net.decodeBatch(u(1), i(8)), RangeError);
  assert.throws(() => net.decodeBatch(u(1), i(8)), /outside the KV cache/);
  assert.throws(() => net.decodeBatch(u(1), i(-1)), /outside the KV cache/);
  assert.throws(() => net.decodeBatch(u(1), i(3)), /must be at most 0/); // a gap in an empty slot
  assert.throws(() => net.decodeBatch(u(1, 2), i(0)), /positions has length 1, expected 2/);
  assert.throws(() => net.decodeBatch(u(1), i(0), i(2)), /outside the 2 slots/);
  assert.throws(() => net.decodeBatch(u(1, 2, 3), i(0, 0, 0)), /outside the 2 slots/);
  assert.throws(() => net.decodeBatch(u(1, 2), i(0, 0), i(0, 0)), /one after/);
  assert.throws(() => net.decodeBatch(u(), i()), /empty/);
  assert.throws(() => net.decodeBatch([1] as unknown as Uint32Array, i(0)), TypeError);
  assert.throws(() => net.decodeReset(0), RangeError);
  assert.throws(() => net.decodeReset(8, 1.5), RangeError);
  assert.throws(() => net.decodeReset(8, 0), RangeError);
  // Good rows still work after the rejected ones, and decodeStep is slot 0.
  const two = net.decodeBatch(u(1, 2), i(0, 0));
  assert.equal(two.length, 2 * V);
  net.decodeReset(8);
  const one = net.decodeStep(1, 0);
  let err = 0, ref = 0;
  one.forEach((x, j) => ((err += (x - two[j]) ** 2), (ref += x * x)));
  assert.ok(Math.sqrt(err / ref) < 1e-5, `rows of a batch match single rows: ${Math.sqrt(err / ref)}`);
  await assert.rejects(generateBatch(lm, [[V + 3]], { ...greedy, maxNewTokens: 2 }), /prompt 0: token 0 is \d+, not an id below/);
  await assert.rejects(generateBatch(lm, ['x'], { ...greedy, maxNewTokens: 2, stop: [''] }), /non-empty/);
});

test('ko-train chat: piped lines, the reply streamed up to the end-of-turn marker, /reset and /exit', async () => {
  const { dir: d } = await chainCheckpoint();
  const r = runCli(['chat', '--checkpoint', d, '--temperature', '0', '--max-new-tokens', '16', '--system', '당신은 도우미입니다.'], {}, '안녕하세요\n날씨는?\n/reset\n/help\n\n서울\n/exit\n이 줄은 읽히지 않습니다\n');
  assert.equal(r.code, 0, r.stderr);
  // Every turn's generation prompt ends with "\n", so every reply is the chain text (stopped at <|im_end|>).
  assert.equal(r.stdout, `${CHAIN_TEXT}\n${CHAIN_TEXT}\n(conversation cleared)\n(unknown command /help: /reset clears the conversation, /exit quits)\n${CHAIN_TEXT}\n`);
  assert.match(r.stderr, /template: default ChatML/);
  assert.doesNotMatch(r.stderr, /dropped/);
  // A reply of up to 250 tokens does not fit beside a second turn in 256 positions: the first exchange goes.
  const long = runCli(['chat', '--checkpoint', d, '--temperature', '0', '--max-new-tokens', '250'], {}, '안녕하세요\n서울\n');
  assert.equal(long.code, 0, long.stderr);
  assert.equal(long.stdout, `${CHAIN_TEXT}\n${CHAIN_TEXT}\n`);
  assert.match(long.stderr, /the oldest turns were dropped to fit 256 positions/);
  const bad = runCli(['chat', '--checkpoint', path.join(dir, 'nope')], {}, '/exit\n');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /not a checkpoint/);
});

test('ko-train generate --prompts-file --stop: one batch, the same texts as in-process', async () => {
  const d = await randomCheckpoint();
  const file = path.join(dir, 'prompts.txt');
  fs.writeFileSync(file, prompts.join('\n') + '\n\n');
  const lm = loadModel(d);
  const ref = await generateBatch(lm, prompts, { ...greedy, maxNewTokens: 12 });
  const stop = [...ref[1].text].slice(2, 4).join(''); // cuts prompt 1's output (and any other that contains it)
  const expect = await generateBatch(lm, prompts, { ...greedy, maxNewTokens: 12, stop: [stop, 'zzz'] });
  assert.equal(expect[1].finish, 'stop');
  const r = runCli(['generate', '--checkpoint', d, '--prompts-file', file, '--temperature', '0', '--max-new-tokens', '12', `--stop=${stop}`, '--stop=zzz', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  lines.forEach((l, i) => {
    assert.equal(l.prompt, prompts[i]);
    assert.equal(l.text, prompts[i] + expect[i].text);
    assert.equal(l.finish, expect[i].finish);
  });
  const none = runCli(['generate', '--checkpoint', d]);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /give --prompt TEXT or --prompts-file FILE/);
});
