import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer, defaultTokenizerPath } from '../../src/tokenizer.js';
import { runCli } from './cliHelpers.js';
import { bpeWord, extendByteLevelBpe, isHangulSafeMerge, toByteLevel, type TokenizerJson } from '../../src/tokenizer_extend.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-extend-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

// Pieces: the most frequent Hangul words (with their leading space) and syllable n-grams of the example corpus.
function corpusPieces(): string[] {
  const counts = new Map<string, number>();
  const lines = fs.readFileSync(path.join(repo, 'examples', 'data', 'libreoffice-help-ko.jsonl'), 'utf8').split('\n').filter(Boolean);
  for (const l of lines.slice(0, 800))
    for (const m of (JSON.parse(l) as { text: string }).text.matchAll(/ ?[\uac00-\ud7a3]+/g)) {
      const s = [...m[0]];
      for (let i = 0; i < s.length; i++)
        for (let j = i + 1; j <= Math.min(s.length, i + 5); j++) {
          if (i > 0 && s[i] === ' ') continue;
          const p = s.slice(i, j).join('');
          counts.set(p, (counts.get(p) ?? 0) + j - i);
        }
    }
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([p]) => p);
}

const base = JSON.parse(fs.readFileSync(defaultTokenizerPath(), 'utf8')) as TokenizerJson;
const extended = (() => {
  // Adversarial pieces first: other scripts sharing Hangul's lead bytes (Yi, jamo), mixed pieces. The
  // Hangul rule must refuse them, or text without syllables would change.
  const adversarial = [' ꀀꀁ', 'ꀂꀃꀄ', 'ㄱㄴㄷ', ' ᄀᄁ', 'ß가', ' 가a', '가😀', ' 쀍뷁'];
  const { json, stats } = extendByteLevelBpe(base, [...adversarial, ...corpusPieces()], 3000);
  const file = path.join(tmp, 'tokenizer.json');
  fs.writeFileSync(file, JSON.stringify(json));
  return { json, stats, file };
})();

test('the extended tokenizer loads, keeps every base id and special token, adds exactly --add tokens', () => {
  const b = TextTokenizer.fromFile(defaultTokenizerPath());
  const e = TextTokenizer.fromFile(extended.file);
  assert.equal(extended.stats.added, 3000);
  assert.equal(extended.stats.firstNewId, 128256);
  assert.equal(e.vocabSize, b.vocabSize + 3000);
  assert.equal(e.eosId, b.eosId);
  assert.equal(e.bosId, b.bosId);
  for (const id of [0, 1, 500, 127999, 128000, 128001, 128255]) assert.equal(e.idToToken(id), b.idToToken(id), `id ${id}`);
  // New ids are new Hangul tokens; every added merge passes the Hangul rule.
  assert.match(e.idToToken(128256) ?? '', /^(Ġ)?[\u00c0-\u017f]/);
  const merges = extended.json.model.merges as string[];
  const baseMerges = base.model.merges as string[];
  assert.deepEqual(merges.slice(0, baseMerges.length), baseMerges);
  for (const m of merges.slice(baseMerges.length)) {
    const [a, c] = m.split(' ');
    assert.ok(isHangulSafeMerge(a, c), m);
  }
});

test('text without U+AC00–D7FF encodes to exactly the base ids (random strings: scripts, emoji, lone surrogates)', async () => {
  const b = TextTokenizer.fromFile(defaultTokenizerPath());
  const e = TextTokenizer.fromFile(extended.file);
  const r = rng(7);
  // Code point pools: ASCII, Latin-1, Cyrillic, CJK, kana, Hangul jamo and compatibility jamo (not
  // syllables), Yi (shares the lead byte EA with Hangul), emoji, U+E000 private use, U+D7FF's neighbours.
  const pools: Array<[number, number]> = [[0xa000, 0xa004], [0x3131, 0x3137], [0x1100, 0x1101], [0x20, 0x7e], [0xa0, 0xff], [0x400, 0x4ff], [0x4e00, 0x4fff], [0x3040, 0x30ff], [0x1100, 0x11ff], [0x3130, 0x318f], [0xa000, 0xa48c], [0xa960, 0xa97f], [0x1f300, 0x1f6ff], [0xe000, 0xe0ff], [0xd800, 0xdfff], [0xf900, 0xfaff]];
  const texts: string[] = [];
  for (let n = 0; n < 600; n++) {
    let s = '';
    const len = 1 + Math.floor(r() * 40);
    for (let i = 0; i < len; i++) {
      const [lo, hi] = pools[Math.floor(r() * pools.length)];
      const cp = lo + Math.floor(r() * (hi - lo + 1));
      s += r() < 0.15 ? ' ' : cp >= 0xd800 && cp <= 0xdfff ? String.fromCharCode(cp) : String.fromCodePoint(cp); // lone surrogates: become U+FFFD
    }
    texts.push(s);
  }
  texts.push(fs.readFileSync(path.join(repo, 'README.md'), 'utf8'));
  const [eb, ee] = [await b.encodeBatch(texts), await e.encodeBatch(texts)];
  for (let i = 0; i < texts.length; i++) assert.deepEqual([...ee[i]], [...eb[i]], `text ${i}: ${JSON.stringify(texts[i])}`);
});

test('round trip is exact on random Korean, and Korean needs fewer tokens', async () => {
  const b = TextTokenizer.fromFile(defaultTokenizerPath());
  const e = TextTokenizer.fromFile(extended.file);
  const r = rng(11);
  const pieces = corpusPieces().slice(0, 400);
  const texts: string[] = [];
  for (let n = 0; n < 300; n++) {
    let s = '';
    const len = 1 + Math.floor(r() * 30);
    for (let i = 0; i < len; i++) {
      const u = r();
      s += u < 0.5 ? pieces[Math.floor(r() * pieces.length)] : u < 0.8 ? String.fromCodePoint(0xac00 + Math.floor(r() * 11172)) : u < 0.9 ? ' ' : ['.', '\n', 'A', '1', '😀', 'ㄱ'][Math.floor(r() * 6)];
    }
    texts.push(s);
  }
  const [eb, ee] = [await b.encodeBatch(texts), await e.encodeBatch(texts)];
  for (let i = 0; i < texts.length; i++) assert.equal(await e.decode(ee[i]), texts[i], `text ${i}`);
  const nb = eb.reduce((a, x) => a + x.length, 0), ne = ee.reduce((a, x) => a + x.length, 0);
  assert.ok(ne < 0.9 * nb, `extended ${ne} tokens vs base ${nb}`);
});

test('merge planning: the BPE simulation matches the tokenizers package, and unsafe merges are refused', async () => {
  const e = TextTokenizer.fromFile(extended.file);
  const merges = (extended.json.model.merges as string[]).map((m) => m.split(' ') as [string, string]);
  const ranks = new Map(merges.map(([a, b], i) => [a + ' ' + b, i]));
  const vocab = new Map(Object.entries(extended.json.model.vocab));
  for (const w of ['안녕하세요', ' 사용할', ' 키워드를', '가나다라마바사', ' 쀍']) {
    const sim = bpeWord(toByteLevel(w), ranks, vocab, true).map((t) => vocab.get(t));
    const [real] = await e.encodeBatch([w]);
    assert.deepEqual(sim, [...real], w);
  }
  const bl = (s: string) => toByteLevel(s);
  assert.equal(isHangulSafeMerge(bl(' '), bl('가')), true);
  assert.equal(isHangulSafeMerge('Ġ', String.fromCharCode(0x00ea + 0)), false); // " " + lead byte EA alone (Yi shares it)
  assert.equal(isHangulSafeMerge(bl('a'), bl('가')), false);
  assert.equal(isHangulSafeMerge(bl('ꀀ').slice(0, 1), bl('ꀀ').slice(1, 2)), false); // Yi: EA 80
  assert.throws(() => extendByteLevelBpe({ model: { type: 'Unigram', vocab: {}, merges: [] } }, ['가'], 1, 'x.json'), /x\.json: only byte-level BPE/);
});

test('ko-train tokenizer extend learns pieces natively and writes a loadable tokenizer; report compares; bad input is named', () => {
  const corpus = path.join(tmp, 'learn.jsonl');
  const lines = fs.readFileSync(path.join(repo, 'examples', 'data', 'libreoffice-help-ko.jsonl'), 'utf8').split('\n').filter(Boolean);
  fs.writeFileSync(corpus, lines.slice(0, 1200).join('\n') + '\n{"broken\n');
  const heldOut = path.join(tmp, 'held.jsonl');
  fs.writeFileSync(heldOut, lines.slice(1200).join('\n') + '\n');
  const out = path.join(tmp, 'ext');
  const r = runCli(['tokenizer', 'extend', '--base', 'llama3.1', '--corpus', corpus, '--add', '1500', '--out', out]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /skipped 1 malformed lines/);
  const rep = JSON.parse(fs.readFileSync(path.join(out, 'extend_report.json'), 'utf8'));
  assert.equal(rep.added, 1500);
  assert.equal(rep.vocab_size, 128256 + 1500);
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'pieces.tsv']) assert.ok(fs.existsSync(path.join(out, f)), f);
  const rr = runCli(['tokenizer', 'report', '--tokenizer', 'llama3.1', '--tokenizer', path.join(out, 'tokenizer.json'), '--data', heldOut, '--json']);
  assert.equal(rr.code, 0, rr.stderr);
  const rows = (JSON.parse(rr.stdout) as { rows: Array<{ language: string; ratio: number; tokens: number[] }> }).rows;
  const ko = rows.find((x) => x.language === 'ko')!;
  assert.ok(ko.ratio < 0.8, `held-out Korean ratio ${ko.ratio}`);
  const en = rows.find((x) => x.language === 'en');
  if (en) assert.equal(en.tokens[0], en.tokens[1]);
  const bad = runCli(['tokenizer', 'extend', '--base', path.join(tmp, 'missing.json'), '--corpus', corpus, '--add', '10', '--out', out]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /missing\.json does not exist/);
  const noKo = path.join(tmp, 'en.txt');
  fs.writeFileSync(noKo, 'only English here\n');
  const none = runCli(['tokenizer', 'extend', '--corpus', noKo, '--add', '10', '--out', out]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no Hangul found in .*en\.txt/);
});
