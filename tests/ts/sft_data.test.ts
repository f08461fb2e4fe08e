import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tk from 'tokenizers';
import { loadChatTemplate, renderChat } from '../../src/chat_template.js';
import { readTokenShard, writeTokenShard } from '../../src/shards.js';
import { TextTokenizer, defaultTokenizerPath } from '../../src/tokenizer.js';
import {
  defaultChatTemplate,
  loadSftExamples,
  packSftRows,
  readSftShard,
  resolveChatTemplate,
  stopStringsOf,
  templateHash,
  writeSftShard,
  type SftExamples,
} from '../../src/sft_data.js';
import {
  dpoPairsCommand,
  dpoRows,
  loadDpoPairs,
  mcToDpoPairs,
  readDpoShard,
  withRefLogps,
  writeDpoShard,
  type DpoPair,
} from '../../src/dpo_data.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..'); // dist/tests/ts -> repo root
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-sft-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const tok = TextTokenizer.fromFile(defaultTokenizerPath()); // Llama 3.1's: <|begin_of_text|>, <|eot_id|> are special
const raw = tk.Tokenizer.fromFile(defaultTokenizerPath());
/** Text of the ids with special tokens shown (TextTokenizer.decode skips them). */
const decode = (ids: ArrayLike<number>): Promise<string> => raw.decode(Array.from(ids), false);
const llama = resolveChatTemplate(defaultTokenizerPath());
const chatml = defaultChatTemplate();
const qwen3 = loadChatTemplate(path.join(repo, 'tests', 'ts', 'fixtures', 'qwen3_tokenizer_config.json'));

function writeJsonl(name: string, lines: unknown[]): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return f;
}

const sys = { role: 'system', content: '당신은 LibreOffice 사용을 돕는 친절한 도우미입니다.' };
const q0 = '셀을 병합하려면 어떻게 하나요?';
const a0 = '병합할 셀을 선택한 다음 서식 - 셀 병합 및 병합 해제 - 셀 병합을 선택합니다.';
const a1 = '삽입 - 필드 - 쪽 번호를 선택하면 됩니다.';
const conversations = [
  { prompt: q0, response: a0 },
  { prompt: 'Writer에서 쪽 번호를 넣고 싶어요.', response: a1, system: sys.content },
  {
    messages: [
      sys,
      { role: 'user', content: '안녕하세요.' },
      { role: 'assistant', content: '안녕하세요! 무엇을 도와드릴까요?' },
      { role: 'user', content: '문서를 저장하는 단축키는요?' },
      { role: 'assistant', content: 'Ctrl+S를 누르면 저장됩니다.' },
    ],
  },
];
const replies: string[][] = [[a0], [a1], ['안녕하세요! 무엇을 도와드릴까요?', 'Ctrl+S를 누르면 저장됩니다.']];
const sftFile = writeJsonl('sft.jsonl', conversations);

/** The token runs where the mask is 1, per example. */
function maskedRuns(ex: SftExamples, e: number): number[][] {
  const runs: number[][] = [];
  let cur: number[] = [];
  for (let i = ex.offsets[e]; i < ex.offsets[e + 1]; i++) {
    if (ex.lossMask[i] === 1) cur.push(ex.tokens[i]);
    else if (cur.length) runs.push(cur), (cur = []);
  }
  if (cur.length) runs.push(cur);
  return runs;
}

test('encodeWithOffsets gives UTF-16 offsets into the text, also after characters outside the BMP', async () => {
  const text = 'ab 😀😀 c 안녕<|eot_id|>';
  const [e] = await tok.encodeWithOffsets([text]);
  const [ids] = await tok.encodeBatch([text]);
  assert.deepEqual(e.ids, ids);
  const pieces = Array.from({ length: e.ids.length }, (_, k) => text.slice(e.offsets[2 * k], e.offsets[2 * k + 1]));
  assert.equal(pieces[pieces.length - 1], '<|eot_id|>');
  assert.equal(e.offsets[e.offsets.length - 1], text.length);
  assert.ok(pieces.includes(' c') && pieces.includes(' 안'), JSON.stringify(pieces));
  for (let k = 1; k < e.ids.length; k++) assert.ok(e.offsets[2 * k] >= e.offsets[2 * k - 2], 'starts never decrease');
});

test("Llama 3's template: the trained tokens decode exactly to each reply and <|eot_id|>; one BOS", async () => {
  const ex = await loadSftExamples(sftFile, tok, llama);
  assert.equal(ex.issues.malformed, 0);
  assert.equal(ex.offsets.length, 4);
  assert.equal(ex.lossMask.length, ex.tokens.length);
  for (let e = 0; e < 3; e++) {
    const runs = maskedRuns(ex, e);
    assert.deepEqual(await Promise.all(runs.map((r) => decode(r))), replies[e].map((r) => `${r}<|eot_id|>`));
    const start = ex.offsets[e];
    assert.equal(ex.tokens[start], tok.bosId, 'the template writes BOS');
    assert.notEqual(ex.tokens[start + 1], tok.bosId, 'and it is not prepended again');
    assert.equal(ex.lossMask[start], 0);
    // Everything untrained decodes to the prompt side: the system/user text is there, the replies are not.
    const untrained = Array.from(ex.tokens.subarray(start, ex.offsets[e + 1])).filter((_, i) => ex.lossMask[start + i] === 0);
    const text = await decode(untrained);
    for (const r of replies[e]) assert.ok(!text.includes(r), `reply ${r} is not in the untrained tokens`);
    assert.ok(text.includes(e === 0 ? q0 : '<|start_header_id|>user<|end_header_id|>'));
  }
});

test('ChatML default template (markers are plain text for this tokenizer): replies and <|im_end|> trained, BOS prepended', async () => {
  const ex = await loadSftExamples(sftFile, tok, chatml);
  assert.equal(ex.issues.malformed, 0);
  for (let e = 0; e < 3; e++) {
    const runs = maskedRuns(ex, e);
    const texts = await Promise.all(runs.map((r) => decode(r)));
    assert.equal(texts.length, replies[e].length);
    // A byte-level token may straddle the marker's end and the template's newline after it (">\n").
    texts.forEach((t, k) => assert.match(t, new RegExp(`^${replies[e][k].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}<\\|im_end\\|>\\s*$`)));
    assert.equal(ex.tokens[ex.offsets[e]], tok.bosId, 'BOS prepended: the ChatML template has none');
    assert.notEqual(ex.tokens[ex.offsets[e] + 1], tok.bosId);
  }
});

test("Qwen3's template renders history turns differently (no <think>): every reply is still found and trained", async () => {
  const ex = await loadSftExamples(sftFile, tok, qwen3);
  assert.equal(ex.issues.malformed, 0);
  const texts = await Promise.all(maskedRuns(ex, 2).map((r) => decode(r)));
  assert.equal(texts.length, 2);
  assert.match(texts[0], /^안녕하세요! 무엇을 도와드릴까요\?<\|im_end\|>\s*$/);
  // The last turn is rendered with an empty think block, which the model is taught to produce.
  assert.match(texts[1], /^<think>\n\n<\/think>\n\nCtrl\+S를 누르면 저장됩니다\.<\|im_end\|>\s*$/);
});

test('malformed lines are counted with file:line and skipped; pre-tokenized lines keep their mask', async () => {
  const f = writeJsonl('bad.jsonl', [
    conversations[0],
    '{"prompt": "잘린 줄',
    { prompt: '응답이 없습니다' },
    '',
    { messages: [{ role: 'user', content: '질문' }] },
    { messages: [{ role: 'assistant', content: '먼저 답' }, { role: 'user', content: '질문' }] },
    { messages: [{ role: 'user', content: 'a' }, { role: 'bot', content: 'b' }] },
    { prompt: '빈 응답', response: '   ' },
    { input_ids: [1, 2, 3], loss_mask: [0, 1] },
    { input_ids: [5, 6, 7, 8], labels: [-100, -100, 7, 8] },
    { input_ids: [9, 10], loss_mask: [0, 1] },
    [1, 2],
  ]);
  const ex = await loadSftExamples(f, tok, chatml);
  assert.equal(ex.issues.malformed, 8);
  assert.equal(ex.issues.examples.length, 5);
  assert.match(ex.issues.examples[0], /bad\.jsonl:2: not JSON/);
  assert.match(ex.issues.examples[1], /bad\.jsonl:3: needs "messages", "prompt" and "response"/);
  assert.match(ex.issues.examples[2], /bad\.jsonl:5: the conversation must end with an assistant turn/);
  assert.match(ex.issues.examples[3], /bad\.jsonl:6: message 1 has role "assistant", expected "user"/);
  assert.match(ex.issues.examples[4], /bad\.jsonl:7: message 2 has role "bot"/);
  assert.equal(ex.offsets.length - 1, 3);
  assert.deepEqual(Array.from(ex.tokens.subarray(ex.offsets[1])), [5, 6, 7, 8, 9, 10]);
  assert.deepEqual(Array.from(ex.lossMask.subarray(ex.offsets[1])), [0, 0, 1, 1, 0, 1]);
  await assert.rejects(loadSftExamples(path.join(tmp, 'missing.jsonl'), tok, chatml), /missing\.jsonl: no such file/);
});

test('maxLen cuts longer examples and counts them', async () => {
  const full = await loadSftExamples(sftFile, tok, chatml);
  const lens = Array.from({ length: 3 }, (_, e) => full.offsets[e + 1] - full.offsets[e]);
  const maxLen = lens[0] + 1;
  const cut = await loadSftExamples(sftFile, tok, chatml, { maxLen });
  assert.equal(cut.truncated, lens.filter((n) => n > maxLen).length);
  assert.ok(cut.truncated >= 1);
  for (let e = 0; e < 3; e++) {
    const n = Math.min(lens[e], maxLen);
    assert.equal(cut.offsets[e + 1] - cut.offsets[e], n);
    assert.deepEqual(cut.tokens.subarray(cut.offsets[e], cut.offsets[e] + n), full.tokens.subarray(full.offsets[e], full.offsets[e] + n));
  }
});

/** The examples packSftRows should use: at least 2 tokens and a trained target within the first T + 1. */
function usable(ex: SftExamples, T: number): number[] {
  const out: number[] = [];
  for (let e = 0; e + 1 < ex.offsets.length; e++) {
    const n = Math.min(ex.offsets[e + 1] - ex.offsets[e], T + 1);
    if (n >= 2 && ex.lossMask.subarray(ex.offsets[e] + 1, ex.offsets[e] + n).includes(1)) out.push(e);
  }
  return out;
}

/** Random examples with distinct token streams (so that each packed segment names its example). */
function syntheticExamples(n: number, seed: number, maxLen: number): SftExamples {
  let s = seed >>> 0;
  const rnd = (m: number): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % m);
  const toks: number[] = [];
  const mask: number[] = [];
  const offsets = [0];
  for (let e = 0; e < n; e++) {
    const len = e === 0 ? 1 : e === 1 ? 5 : 2 + rnd(maxLen);
    const promptLen = e === 1 ? len : rnd(len); // example 1 has nothing to train
    for (let j = 0; j < len; j++) {
      toks.push(e * 1000 + j);
      mask.push(j >= promptLen ? 1 : 0);
    }
    offsets.push(toks.length);
  }
  return { tokens: Uint32Array.from(toks), lossMask: Uint8Array.from(mask), offsets: Uint32Array.from(offsets) };
}

/**
 * Checks rows against the examples: positions start at 0 at each segment and count up; each non-padding
 * segment is the first tokens of exactly one example; every target is -1 or the next token of the same
 * example when that token is trained (so none crosses a boundary); padding has targets -1.
 */
function checkRows(ex: SftExamples, rows: ReturnType<typeof packSftRows>, T: number, padId: number, packed: boolean): number[] {
  assert.equal(rows.inputs.length, rows.rows * T);
  assert.equal(rows.targets.length, rows.rows * T);
  assert.equal(rows.positions.length, rows.rows * T);
  const byFirst = new Map<number, number>();
  for (let e = 0; e + 1 < ex.offsets.length; e++) byFirst.set(ex.tokens[ex.offsets[e]], e);
  const seen: number[] = [];
  for (let r = 0; r < rows.rows; r++) {
    let p = r * T;
    while (p < (r + 1) * T) {
      assert.equal(rows.positions[p], 0, `row ${r}: a segment starts at position 0`);
      let q = p + 1;
      while (q < (r + 1) * T && rows.positions[q] !== 0) {
        assert.equal(rows.positions[q], rows.positions[q - 1] + 1);
        q++;
      }
      const e = byFirst.get(rows.inputs[p]);
      if (e === undefined || rows.inputs[p] === padId && rows.targets.subarray(p, q).every((t) => t === -1)) {
        assert.ok(rows.inputs.subarray(p, q).every((x) => x === padId), 'padding inputs');
        assert.ok(rows.targets.subarray(p, q).every((t) => t === -1), 'padding has no targets');
        assert.equal(q, (r + 1) * T, 'padding only at the end of a row');
      } else {
        seen.push(e);
        const start = ex.offsets[e];
        const n = Math.min(ex.offsets[e + 1] - start, T + 1);
        const segEnd = packed ? q : p + n - 1;
        assert.equal(segEnd - p, n - 1, `example ${e} takes its tokens - 1 positions`);
        for (let j = 0; j < n - 1; j++) {
          assert.equal(rows.inputs[p + j], ex.tokens[start + j]);
          assert.equal(rows.targets[p + j], ex.lossMask[start + j + 1] ? ex.tokens[start + j + 1] : -1, `example ${e} target ${j}`);
        }
        if (!packed) {
          for (let k = segEnd; k < (r + 1) * T; k++) assert.ok(rows.inputs[k] === padId && rows.targets[k] === -1);
          q = (r + 1) * T;
        }
      }
      p = q;
    }
  }
  return seen;
}

test('packed SFT rows: positions restart per example, targets never cross an example, each example once, deterministic', () => {
  const ex = syntheticExamples(300, 7, 90);
  const T = 64;
  const a = packSftRows(ex, T, { pack: true, seed: 1, padId: 99999 });
  const long = Array.from({ length: 300 }, (_, e) => ex.offsets[e + 1] - ex.offsets[e]).filter((n) => n > T + 1).length;
  assert.ok(long > 10);
  assert.equal(a.truncated, long);
  const use = usable(ex, T);
  assert.ok(!use.includes(0) && !use.includes(1), 'the 1-token example and the untrained one are left out');
  assert.ok(use.length > 250);
  assert.equal(a.dropped, 300 - use.length);
  const seen = checkRows(ex, a, T, 99999, true);
  assert.deepEqual([...seen].sort((x, y) => x - y), use);
  assert.ok(a.examplesPerRow > 1.5, `packing fills rows (${a.examplesPerRow} examples per row)`);
  const tokensUsed = use.map((e) => Math.min(ex.offsets[e + 1] - ex.offsets[e], T + 1) - 1).reduce((x, y) => x + y, 0);
  assert.ok(a.rows <= Math.ceil(tokensUsed / T) + 2, `best fit wastes little: ${a.rows} rows for ${tokensUsed} positions`);
  const b = packSftRows(ex, T, { pack: true, seed: 1, padId: 99999 });
  assert.deepEqual(b, a, 'same seed, same rows');
  const c = packSftRows(ex, T, { pack: true, seed: 2, padId: 99999 });
  assert.equal(c.rows, a.rows);
  assert.notDeepEqual(c.inputs, a.inputs, 'another seed orders the rows differently');
});

test('unpacked SFT rows: one example per row in order, right-padded, positions 0..T-1; long examples cut to T+1', () => {
  const ex = syntheticExamples(40, 3, 30);
  const T = 16;
  const r = packSftRows(ex, T, { pack: false, seed: 0 });
  const use = usable(ex, T);
  assert.equal(r.rows, use.length);
  assert.equal(r.dropped, 40 - use.length);
  assert.equal(r.examplesPerRow, 1);
  assert.equal(r.truncated, Array.from({ length: 40 }, (_, e) => ex.offsets[e + 1] - ex.offsets[e]).filter((n) => n > T + 1).length);
  for (let row = 0; row < r.rows; row++) for (let j = 0; j < T; j++) assert.equal(r.positions[row * T + j], j);
  assert.deepEqual(checkRows(ex, r, T, 0, false), use);
  assert.throws(() => packSftRows(ex, 0, { pack: true, seed: 0 }), /T 0 must be a positive integer/);
});

test('packing real chat examples keeps their masks (the end-of-turn target ends each example)', async () => {
  const ex = await loadSftExamples(sftFile, tok, llama);
  const rows = packSftRows(ex, 256, { pack: true, seed: 5, padId: tok.eosId });
  assert.equal(rows.rows, 1);
  const eot = tok.tokenToId('<|eot_id|>');
  // The last trained target of each example is its <|eot_id|>; the next position starts the next example.
  for (let p = 1; p < 256; p++) {
    if (rows.positions[p] === 0 && rows.targets[p - 1] !== -1) assert.equal(rows.targets[p - 1], eot);
  }
  assert.equal(rows.targets.filter((t) => t === eot).length, 4);
});

test('SFT shard round trip; wrong tokenizer, wrong kind and corrupt files are errors naming the file', async () => {
  const ex = await loadSftExamples(sftFile, tok, llama);
  const file = path.join(tmp, 'sft.arrow');
  writeSftShard(file, ex, { tokenizerHash: tok.hash, templateHash: templateHash(llama) });
  const back = readSftShard(file, { tokenizerHash: tok.hash });
  assert.deepEqual(back.tokens, ex.tokens);
  assert.deepEqual(back.lossMask, ex.lossMask);
  assert.deepEqual(back.offsets, ex.offsets);
  assert.equal(back.numExamples, 3);
  assert.equal(back.templateHash, llama.hash);
  assert.equal(back.metadata.get('ko_train.format'), 'sft-v1');
  assert.throws(() => readSftShard(file, { tokenizerHash: 'other' }), /sft\.arrow: made with another tokenizer/);
  assert.throws(() => readTokenShard(file), /sft\.arrow: not a ko-train pretraining shard/);

  const pre = path.join(tmp, 'pre.arrow');
  writeTokenShard(pre, Uint32Array.of(1, 2, 3), Int32Array.of(0, 3), { tokenizerHash: tok.hash });
  assert.throws(() => readSftShard(pre), /pre\.arrow: not a ko-train SFT shard: schema metadata ko_train\.format is "pretrain-v1"/);

  const bytes = fs.readFileSync(file);
  const cut = path.join(tmp, 'cut.arrow');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 20));
  assert.throws(() => readSftShard(cut), /cut\.arrow: not a valid ko-train SFT shard/);
  // Flip every byte of the footer region in turn: an error or a correct read, never a hang or a crash.
  const flipped = path.join(tmp, 'flipped.arrow');
  for (let i = bytes.length - 200; i < bytes.length; i += 3) {
    const b = Buffer.from(bytes);
    b[i] ^= 0xff;
    fs.writeFileSync(flipped, b);
    try {
      const r = readSftShard(flipped);
      assert.equal(r.tokens.length, ex.tokens.length);
    } catch (e) {
      assert.match((e as Error).message, /flipped\.arrow/);
    }
  }

  const empty = path.join(tmp, 'empty.arrow');
  writeSftShard(empty, { tokens: new Uint32Array(0), lossMask: new Uint8Array(0), offsets: Uint32Array.of(0) }, { tokenizerHash: 'h' });
  assert.equal(readSftShard(empty).numExamples, 0);
  assert.throws(() => writeSftShard(empty, { tokens: Uint32Array.of(1), lossMask: new Uint8Array(0), offsets: Uint32Array.of(0, 1) }, { tokenizerHash: 'h' }), /loss mask has 0 entries for 1 tokens/);
});

const dpoLines = [
  { prompt: '문서를 PDF로 저장하려면?', chosen: '파일 - 내보내기 - PDF로 내보내기를 선택하세요.', rejected: '그건 안 됩니다.' },
  { prompt: [{ role: 'system', content: '짧게 답하세요.' }, { role: 'user', content: '실행 취소 단축키는?' }], chosen: 'Ctrl+Z입니다.', rejected: 'Ctrl+P입니다.' },
];

test('DPO pairs: prompt + chosen is exactly the tokenization of the whole conversation; malformed pairs counted', async () => {
  const f = writeJsonl('dpo.jsonl', [
    ...dpoLines,
    { prompt: '같은 답', chosen: '네', rejected: '네' },
    { prompt: '거절 답 없음', chosen: '네' },
    { prompt: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }], chosen: 'c', rejected: 'd' },
  ]);
  for (const t of [llama, chatml, qwen3]) {
    const r = await loadDpoPairs(f, tok, t);
    assert.equal(r.pairs.length, 2);
    assert.equal(r.issues.malformed, 3);
    assert.match(r.issues.examples[0], /dpo\.jsonl:3: "chosen" and "rejected" are the same/);
    assert.match(r.issues.examples[1], /dpo\.jsonl:4: needs "prompt", "chosen" and "rejected"/);
    assert.match(r.issues.examples[2], /dpo\.jsonl:5: the conversation must end with a user turn/);
    assert.equal(r.separatelyTokenized, 0);
    for (const [i, line] of dpoLines.entries()) {
      const msgs = typeof line.prompt === 'string' ? [{ role: 'user', content: line.prompt }] : line.prompt;
      const pair = r.pairs[i];
      assert.equal(pair.prompt[0], tok.bosId);
      assert.equal(pair.prompt.filter((x) => x === tok.bosId).length, 1, 'one BOS');
      for (const which of ['chosen', 'rejected'] as const) {
        const full = renderChat(t, [...msgs, { role: 'assistant', content: line[which] }], { addGenerationPrompt: false });
        const [whole] = await tok.encodeBatch([full]);
        const joint = [...pair.prompt, ...pair[which]];
        const ref = whole[0] === tok.bosId ? Array.from(whole) : [tok.bosId as number, ...whole];
        assert.deepEqual(joint, ref.slice(0, joint.length), `${which} continues the prompt's tokens`);
        // What is left is template whitespace between turns.
        assert.match(await decode(ref.slice(joint.length)), /^\s*$/);
        const text = await decode(pair[which]);
        assert.ok(text.includes(line[which]), `${which} decodes to its reply`);
      }
    }
  }
  const r = await loadDpoPairs(f, tok, llama);
  assert.equal(await decode(r.pairs[0].chosen), `${dpoLines[0].chosen}<|eot_id|>`);
});

test('dpoRows: chosen/rejected interleaved, prompt cut from the left, long replies cut on the right, targets only on replies', () => {
  const seq = (a: number, n: number): Uint32Array => Uint32Array.from({ length: n }, (_, i) => a + i);
  const pairs: DpoPair[] = [
    { prompt: seq(1, 10), chosen: seq(100, 3), rejected: seq(200, 6) },
    { prompt: seq(1, 2), chosen: seq(300, 20), rejected: seq(400, 1) },
  ];
  const T = 8;
  const r = dpoRows(pairs, [1, 0], T, 7777);
  assert.equal(r.rows, 4);
  const row = (k: number) => ({ inputs: Array.from(r.inputs.subarray(k * T, (k + 1) * T)), targets: Array.from(r.targets.subarray(k * T, (k + 1) * T)) });
  // Pair 1 chosen: 20 reply tokens; one prompt token is kept so the first reply token is predicted.
  assert.deepEqual(row(0), { inputs: [2, 300, 301, 302, 303, 304, 305, 306], targets: [300, 301, 302, 303, 304, 305, 306, 307] });
  // Pair 1 rejected: short, right-padded.
  assert.deepEqual(row(1), { inputs: [1, 2, 7777, 7777, 7777, 7777, 7777, 7777], targets: [-1, 400, -1, -1, -1, -1, -1, -1] });
  // Pair 0 chosen: 10 + 3 > T + 1, the prompt keeps its last 6 tokens.
  assert.deepEqual(row(2), { inputs: [5, 6, 7, 8, 9, 10, 100, 101], targets: [-1, -1, -1, -1, -1, 100, 101, 102] });
  assert.deepEqual(row(3), { inputs: [8, 9, 10, 200, 201, 202, 203, 204], targets: [-1, -1, 200, 201, 202, 203, 204, 205] });
  assert.throws(() => dpoRows(pairs, [2], T), /pair index 2 out of range/);
});

test('DPO shard round trip, reference log-probs stored and replaced atomically, bad input refused', async () => {
  const f = writeJsonl('dpo2.jsonl', dpoLines);
  const { pairs } = await loadDpoPairs(f, tok, llama);
  const file = path.join(tmp, 'dpo.arrow');
  writeDpoShard(file, pairs, { tokenizerHash: tok.hash, templateHash: llama.hash });
  let s = readDpoShard(file, { tokenizerHash: tok.hash });
  assert.deepEqual(s.pairs, pairs);
  assert.equal(s.ref, null);
  assert.equal(s.refModel, null);
  assert.equal(s.templateHash, llama.hash);

  const ref = { chosen: Float64Array.of(-12.5, -3.25), rejected: Float64Array.of(-20, -4.75), model: 'base@step-0' };
  withRefLogps(file, ref);
  assert.ok(!fs.existsSync(`${file}.tmp`));
  s = readDpoShard(file);
  assert.deepEqual(s.pairs, pairs);
  assert.deepEqual(s.ref, ref);
  assert.equal(s.refModel, 'base@step-0');
  withRefLogps(file, { ...ref, chosen: Float64Array.of(-1, -2), model: 'other' });
  assert.deepEqual(readDpoShard(file).ref?.chosen, Float64Array.of(-1, -2));
  assert.equal(readDpoShard(file).refModel, 'other');

  assert.throws(() => withRefLogps(file, { ...ref, chosen: Float64Array.of(-1) }), /dpo\.arrow: 1 chosen and 2 rejected reference log-probs for 2 pairs/);
  assert.throws(() => withRefLogps(file, { ...ref, rejected: Float64Array.of(-1, NaN) }), /dpo\.arrow: reference log-prob 1 of the rejected replies is not finite/);
  assert.equal(readDpoShard(file).refModel, 'other', 'a refused update leaves the shard as it was');
  assert.throws(() => readDpoShard(path.join(tmp, 'sft.arrow')), /sft\.arrow: not a ko-train DPO shard: schema metadata ko_train\.format is "sft-v1"/);
  assert.throws(() => readDpoShard(file, { tokenizerHash: 'x' }), /dpo\.arrow: made with another tokenizer/);
  const cut = path.join(tmp, 'dpo-cut.arrow');
  fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, 100));
  assert.throws(() => readDpoShard(cut), /dpo-cut\.arrow: not a valid ko-train DPO shard/);
  assert.throws(() => readDpoShard(path.join(tmp, 'nope.arrow')), /nope\.arrow: cannot read ko-train DPO shard/);
});

test('multiple-choice tasks become DPO pairs (seeded wrong choice, or all of them) and dpo-pairs writes JSONL', async () => {
  const mc = writeJsonl('mc.jsonl', [
    { context: '질문: 저장 단축키는?\n답:', choices: [' Ctrl+S', ' Ctrl+P', ' Ctrl+Z', ' Alt+F4'], gold: 0 },
    { context: '질문: 합계를 구하는 함수는?\n답:', choices: [' LEFT', ' SUM'], gold: 1 },
    { context: '질문: 일주일은 며칠?\n답:', choices: [' 5일', ' 6일', ' 7일'], gold: 2 },
  ]);
  const one = mcToDpoPairs(mc, { seed: 3, allWrong: false });
  assert.equal(one.length, 3);
  assert.deepEqual(one[1], { prompt: '질문: 합계를 구하는 함수는?\n답:', chosen: 'SUM', rejected: 'LEFT' });
  assert.deepEqual(one.map((p) => p.chosen), ['Ctrl+S', 'SUM', '7일']);
  assert.ok(['Ctrl+P', 'Ctrl+Z', 'Alt+F4'].includes(one[0].rejected));
  assert.deepEqual(mcToDpoPairs(mc, { seed: 3, allWrong: false }), one, 'deterministic in the seed');
  const rejectedBySeed = new Set(Array.from({ length: 20 }, (_, s) => mcToDpoPairs(mc, { seed: s, allWrong: false })[0].rejected));
  assert.ok(rejectedBySeed.size > 1, 'the seed picks the wrong choice');
  const all = mcToDpoPairs(mc, { seed: 3, allWrong: true });
  assert.equal(all.length, 3 + 1 + 2);
  assert.deepEqual(all.slice(0, 3).map((p) => p.rejected), ['Ctrl+P', 'Ctrl+Z', 'Alt+F4']);

  const cloze = writeJsonl('cloze.jsonl', [{ context: '확인을', target: ' 누릅니다' }]);
  assert.throws(() => mcToDpoPairs(cloze, { seed: 0, allWrong: false }), /cloze\.jsonl: not a multiple-choice task/);

  const dir = path.join(tmp, 'tasks');
  fs.mkdirSync(dir);
  fs.copyFileSync(mc, path.join(dir, 'a.jsonl'));
  fs.copyFileSync(cloze, path.join(dir, 'b.jsonl'));
  const out = path.join(tmp, 'pairs', 'dpo-mc.jsonl');
  const logs: string[] = [];
  assert.equal(dpoPairsCommand({ tasks: dir, out, seed: 3, allWrong: true, log: (s) => logs.push(s) }), 6);
  assert.ok(logs.some((l) => /skipping .*b\.jsonl \(cloze/.test(l)));
  const r = await loadDpoPairs(out, tok, chatml);
  assert.equal(r.issues.malformed, 0);
  assert.equal(r.pairs.length, 6);
  assert.throws(() => dpoPairsCommand({ tasks: cloze, out, seed: 0, allWrong: false, log: () => {} }), /not a multiple-choice task/);
});

test('chat template resolution and stop strings', () => {
  const dir = path.join(tmp, 'tok');
  fs.mkdirSync(dir);
  const tj = path.join(dir, 'tokenizer.json');
  fs.copyFileSync(defaultTokenizerPath(), tj);
  assert.equal(resolveChatTemplate(tj).origin, 'default ChatML');
  assert.equal(resolveChatTemplate(tj).source, chatml.source);
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
  assert.equal(resolveChatTemplate(tj).origin, 'default ChatML', 'a config without chat_template');
  const jinja = path.join(dir, 'mine.jinja');
  fs.writeFileSync(jinja, "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</s>\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}");
  const custom = resolveChatTemplate(tj, jinja);
  assert.equal(custom.bosToken, '<s>');
  assert.deepEqual(stopStringsOf(custom), ['</s>']);
  assert.notEqual(custom.hash, resolveChatTemplate(tj).hash);
  assert.equal(llama.origin.endsWith('tokenizer_config.json'), true);
  assert.deepEqual(stopStringsOf(llama), ['<|eot_id|>']);
  assert.deepEqual(stopStringsOf(chatml), ['<|im_end|>']);
  assert.deepEqual(stopStringsOf(qwen3), ['<|im_end|>']);
  assert.equal(
    renderChat(chatml, [{ role: 'user', content: '안녕' }], { addGenerationPrompt: true }),
    '<|im_start|>user\n안녕<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.throws(() => resolveChatTemplate(tj, path.join(dir, 'none.jinja')), /none\.jinja: chat template file not found/);
});

test('the example SFT and DPO data load without malformed lines', async () => {
  const sft = path.join(repo, 'examples', 'data', 'sft-ko.jsonl');
  const dpo = path.join(repo, 'examples', 'data', 'dpo-ko.jsonl');
  for (const f of [sft, dpo]) assert.ok(fs.statSync(f).size < 100_000, `${f} stays small`);
  const ex = await loadSftExamples(sft, tok, chatml);
  assert.equal(ex.issues.malformed, 0, ex.issues.examples.join('; '));
  assert.ok(ex.offsets.length - 1 >= 100);
  const d = await loadDpoPairs(dpo, tok, llama);
  assert.equal(d.issues.malformed, 0, d.issues.examples.join('; '));
  assert.ok(d.pairs.length >= 70);
});
