import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer, defaultTokenizerPath, trainByteLevelBpe } from '../../src/tokenizer.js';
import { piecesEncodeLikeWhole, piecesForEncoding } from '../../src/tokenizer_pieces.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..'); // dist/tests/ts -> repo root
const koJsonl = path.resolve(repo, 'examples', 'data', 'libreoffice-help-ko.jsonl'); // a slice of ../shared/data

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-tokenizer-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const docs = fs
  .readFileSync(koJsonl, 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .slice(0, 320)
  .map((l) => (JSON.parse(l) as { text: string }).text);
const trainDocs = docs.slice(0, 300);
const heldOut = docs.slice(300).filter((d) => /[가-힣]/.test(d));
const trainFile = path.join(tmp, 'train.txt');
fs.writeFileSync(trainFile, trainDocs.map((d) => d.replace(/\n/g, ' ')).join('\n') + '\n');

const trained = path.join(tmp, 'bpe1000.json');
const trainedSmall = path.join(tmp, 'bpe600.json');
const ready = (async () => {
  await trainByteLevelBpe({ files: [trainFile], vocabSize: 1000, specialTokens: ['<|endoftext|>'], outPath: trained });
  await trainByteLevelBpe({ files: [trainFile], vocabSize: 600, specialTokens: ['<|endoftext|>', '<pad>'], outPath: trainedSmall });
})();

function byteAlphabet(): Set<string> {
  const s = new Set<string>();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    s.add(String.fromCodePoint(printable ? b : 256 + n++));
  }
  return s;
}

test('trained BPE has exactly vocabSize tokens, the byte alphabet first, consistent merges', async () => {
  await ready;
  const json = JSON.parse(fs.readFileSync(trained, 'utf8'));
  const vocab = json.model.vocab as Record<string, number>;
  const entries = Object.entries(vocab);
  assert.equal(entries.length, 999);
  assert.deepEqual(entries.map(([, id]) => id).sort((a, b) => a - b), Array.from({ length: 999 }, (_, i) => i));
  const alphabet = byteAlphabet();
  const first256 = new Set(entries.filter(([, id]) => id < 256).map(([t]) => t));
  assert.deepEqual(first256, alphabet);
  assert.deepEqual(json.added_tokens.map((t: { id: number; content: string; special: boolean }) => [t.id, t.content, t.special]), [
    [999, '<|endoftext|>', true],
  ]);
  assert.equal(json.decoder.type, 'ByteLevel');
  assert.equal(json.post_processor, null);
  // Each merge's parts exist before it and its result is in the vocab: ids 256.. are merge results in order.
  const merges = (json.model.merges as string[]).map((m) => m.split(' '));
  const made: string[] = [];
  for (const [a, b] of merges) {
    assert.ok(vocab[a] !== undefined && vocab[b] !== undefined);
    assert.ok(vocab[a + b] !== undefined);
    if (!made.includes(a + b)) made.push(a + b);
  }
  assert.deepEqual(made.map((t) => vocab[t]), Array.from({ length: 999 - 256 }, (_, i) => 256 + i));

  const tok = TextTokenizer.fromFile(trained);
  assert.equal(tok.vocabSize, 1000);
  assert.equal(tok.eosId, 999);
  assert.equal(tok.bosId, null);
  assert.equal(tok.hash, createHash('sha256').update(fs.readFileSync(trained)).digest('hex').slice(0, 16));
});

test('a smaller vocab is a prefix of the larger one (greedy BPE)', async () => {
  await ready;
  const big = JSON.parse(fs.readFileSync(trained, 'utf8'));
  const small = JSON.parse(fs.readFileSync(trainedSmall, 'utf8'));
  assert.equal(Object.keys(small.model.vocab).length, 598);
  assert.deepEqual(small.model.merges, big.model.merges.slice(0, small.model.merges.length));
  const tok = TextTokenizer.fromFile(trainedSmall);
  assert.equal(tok.vocabSize, 600);
  assert.equal(tok.tokenToId('<pad>'), 599);
  assert.notEqual(tok.hash, TextTokenizer.fromFile(trained).hash);
});

test('Korean round trip with the trained tokenizer, NFC normalized', async () => {
  await ready;
  const tok = TextTokenizer.fromFile(trained);
  const texts = [
    ...heldOut.slice(0, 10),
    '한국어 토크나이저 시험: 띄어쓰기,  두 칸 공백\n줄바꿈\t탭 😀 emoji 와 English.',
    '조합형 한글'.normalize('NFD'),
    '',
  ];
  assert.ok(heldOut.length >= 5, 'held-out Korean documents exist');
  const ids = await tok.encodeBatch(texts);
  assert.equal(ids.length, texts.length);
  for (let i = 0; i < texts.length; i++) {
    assert.ok(ids[i] instanceof Uint32Array);
    assert.ok(ids[i].every((id) => id < 999), 'no special tokens added');
    assert.equal(await tok.decode(ids[i]), texts[i].normalize('NFC'), `text ${i}`);
  }
  assert.equal(ids[texts.length - 1].length, 0);
  // Merges learned from Korean text compress held-out Korean below one token per UTF-8 byte.
  const bytes = Buffer.byteLength(heldOut.slice(0, 10).join(''));
  const n = ids.slice(0, 10).reduce((a, x) => a + x.length, 0);
  assert.ok(n < bytes * 0.6, `${n} tokens for ${bytes} bytes`);
  // The special token is recognised in text and skipped when decoding.
  const [withEos] = await tok.encodeBatch(['가나<|endoftext|>다']);
  assert.ok([...withEos].includes(999));
  assert.equal(await tok.decode(withEos), '가나다');
});

test('Llama 3.1 default tokenizer', async () => {
  const p = defaultTokenizerPath();
  assert.ok(p.endsWith(path.join('models', 'tokenizer.json')) && fs.existsSync(p));
  const tok = TextTokenizer.fromFile(p);
  assert.equal(tok.vocabSize, 128256);
  assert.equal(tok.eosId, 128001);
  assert.equal(tok.idToToken(128001), '<|end_of_text|>');
  assert.equal(tok.bosId, 128000);
  assert.match(tok.hash, /^[0-9a-f]{16}$/);
  const [hello, ko] = await tok.encodeBatch(['Hello world', '안녕하세요, 세계!']);
  assert.deepEqual([...hello], [9906, 1917]); // Llama 3's well-known ids for "Hello" and " world"
  assert.equal(await tok.decode(ko), '안녕하세요, 세계!');
});

test('long documents encoded in pieces give the ids of the whole document', async () => {
  await ready;
  // Mixed Korean/English with runs of spaces, newlines, tabs, digits, punctuation and special tokens.
  const long = docs.slice(0, 60).join('  \n\t') + ' 12345 <|endoftext|> end.';
  for (const file of [trained, defaultTokenizerPath()]) {
    const tok = TextTokenizer.fromFile(file);
    assert.ok(tok.encodesInPieces, file);
    for (const target of [200, 997, 5000]) {
      const pieces = piecesForEncoding(long, target);
      assert.ok(pieces.length > 3 && pieces.join('') === long);
      for (const p of pieces.slice(1)) assert.match(p, /^ \S/);
      const [whole] = await tok.encodeWhole([long]);
      const [cut] = await tok.encodeBatch([long, 'short'], target);
      assert.deepEqual([...cut], [...whole], `${path.basename(file)} pieces of ${target}`);
    }
  }
  // No cut point at all: one piece.
  assert.deepEqual(piecesForEncoding('가'.repeat(1000), 100), ['가'.repeat(1000)]);
  // Normalizers and pre-tokenizers that see across a space rule pieces out.
  const base = { pre_tokenizer: { type: 'ByteLevel' }, normalizer: { type: 'NFC' } };
  assert.equal(piecesEncodeLikeWhole(base), true);
  assert.equal(piecesEncodeLikeWhole({ ...base, normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend' }, { type: 'Replace' }] } }), false);
  assert.equal(piecesEncodeLikeWhole({ ...base, pre_tokenizer: null }), false);
  assert.equal(piecesEncodeLikeWhole({ ...base, added_tokens: [{ content: 'two words' }] }), false);
});

test('errors name the path', async () => {
  const missing = path.join(tmp, 'nope', 'tokenizer.json');
  assert.throws(() => TextTokenizer.fromFile(missing), (e: Error) => e.message.startsWith(missing) && /cannot read/.test(e.message));
  const bad = path.join(tmp, 'bad.json');
  fs.writeFileSync(bad, '{"model": 3}');
  assert.throws(() => TextTokenizer.fromFile(bad), (e: Error) => e.message.startsWith(bad) && /not a valid tokenizer/.test(e.message));
  await ready;
  // A tokenizer without any end-of-text token.
  const noEos = path.join(tmp, 'noeos.json');
  const json = JSON.parse(fs.readFileSync(trained, 'utf8'));
  json.added_tokens = [];
  fs.writeFileSync(noEos, JSON.stringify(json));
  assert.throws(() => TextTokenizer.fromFile(noEos), (e: Error) => e.message.startsWith(noEos) && e.message.includes('<|end_of_text|>'));

  await assert.rejects(
    trainByteLevelBpe({ files: [trainFile], vocabSize: 200, specialTokens: [], outPath: path.join(tmp, 'x.json') }),
    /vocabSize 200 must be an integer of at least 256/,
  );
  await assert.rejects(
    trainByteLevelBpe({ files: [path.join(tmp, 'missing.txt')], vocabSize: 1000, specialTokens: [], outPath: path.join(tmp, 'x.json') }),
    /missing\.txt does not exist/,
  );
  const tiny = path.join(tmp, 'tiny.txt');
  fs.writeFileSync(tiny, '가나다\n');
  await assert.rejects(
    trainByteLevelBpe({ files: [tiny], vocabSize: 1000, specialTokens: ['<|endoftext|>'], outPath: path.join(tmp, 'x.json') }),
    /yields only \d+ tokens .* fewer than vocabSize 1000/,
  );
  assert.ok(!fs.existsSync(path.join(tmp, 'x.json')));
});
