import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  Field, Int32, List, RecordBatch, Schema, Struct, Table, Uint32, makeData, tableFromIPC, tableToIPC, vectorFromArray,
} from 'apache-arrow';
import {
  openShardSplit,
  readManifest,
  readTokenShard,
  writeManifest,
  writeTokenShard,
  type ShardManifest,
} from '../../src/shards.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-shards-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Deterministic documents of varied lengths (one empty), tokens up to 2^32-1. */
function makeDocs(nDocs: number, seed: number): number[][] {
  let s = seed >>> 0;
  const rnd = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  const docs: number[][] = [];
  for (let d = 0; d < nDocs; d++) {
    const len = d === 3 ? 0 : rnd() % 700;
    docs.push(Array.from({ length: len }, () => (d === 0 ? 0xffffffff : rnd() % 128256)));
  }
  return docs;
}

function flatten(docs: number[][]): { tokens: Uint32Array; offsets: Int32Array } {
  const offsets = new Int32Array(docs.length + 1);
  docs.forEach((d, i) => (offsets[i + 1] = offsets[i] + d.length));
  const tokens = new Uint32Array(offsets[docs.length]);
  docs.forEach((d, i) => tokens.set(d, offsets[i]));
  return { tokens, offsets };
}

test('round trip: documents, metadata, and a zero-copy token view', () => {
  const docs = makeDocs(40, 1);
  const { tokens, offsets } = flatten(docs);
  const p = path.join(tmp, 'rt.arrow');
  writeTokenShard(p, tokens, offsets, { tokenizerHash: 'abc123', extra: { source: 'libreoffice-help-ko' } });
  assert.ok(!fs.existsSync(p + '.tmp'), 'no temporary file left behind');

  const s = readTokenShard(p);
  assert.equal(s.numDocs, 40);
  assert.equal(s.tokenizerHash, 'abc123');
  assert.equal(s.metadata.get('ko_train.format'), 'pretrain-v1');
  assert.equal(s.metadata.get('ko_train.num_tokens'), String(tokens.length));
  assert.equal(s.metadata.get('ko_train.num_docs'), '40');
  assert.equal(s.metadata.get('source'), 'libreoffice-help-ko');
  assert.equal(s.tokens.length, tokens.length);
  for (let d = 0; d < docs.length; d++) {
    assert.deepEqual([...s.tokens.subarray(s.docOffsets[d], s.docOffsets[d + 1])], docs[d], `doc ${d}`);
  }
  assert.deepEqual([...s.docOffsets], [...offsets]);

  // Zero copy: the tokens live inside the bytes read from the file.
  assert.equal(s.tokens.buffer, s.fileBytes.buffer);
  assert.ok(s.tokens.byteOffset >= s.fileBytes.byteOffset);
  assert.ok(s.tokens.byteOffset + s.tokens.byteLength <= s.fileBytes.byteOffset + s.fileBytes.byteLength);
  assert.equal(s.fileBytes.length, fs.statSync(p).size);

  // Independent reader: arrow-js's row API sees the same documents.
  const table = tableFromIPC(fs.readFileSync(p));
  assert.equal(table.numRows, 40);
  assert.equal(String(table.schema.fields[0].type), 'List<Uint32>');
  assert.deepEqual([...(table.get(5)!.input_ids as { toArray(): Uint32Array }).toArray()], docs[5]);
});

test('zero documents round trip', () => {
  const p = path.join(tmp, 'empty.arrow');
  writeTokenShard(p, new Uint32Array(0), new Int32Array([0]), { tokenizerHash: 'h' });
  const s = readTokenShard(p);
  assert.equal(s.numDocs, 0);
  assert.equal(s.tokens.length, 0);
  assert.deepEqual([...s.docOffsets], [0]);
});

test('writer validates offsets', () => {
  const p = path.join(tmp, 'bad.arrow');
  const t = new Uint32Array([1, 2, 3]);
  assert.throws(() => writeTokenShard(p, t, new Int32Array([1, 3]), { tokenizerHash: 'h' }), /docOffsets\[0\] is 1/);
  assert.throws(() => writeTokenShard(p, t, new Int32Array([0, 2]), { tokenizerHash: 'h' }), /ends at 2, expected the token count 3/);
  assert.throws(() => writeTokenShard(p, t, new Int32Array([0, 2, 1, 3]), { tokenizerHash: 'h' }), /decreases at index 2/);
  assert.throws(
    () => writeTokenShard(p, t, new Int32Array([0, 3]), { tokenizerHash: 'h', extra: { 'ko_train.format': 'x' } }),
    /reserved/,
  );
  assert.ok(!fs.existsSync(p));
});

test('several record batches are concatenated', () => {
  const listType = new List(new Field('item', new Uint32(), true));
  const schema = new Schema([new Field('input_ids', listType, false)], new Map([
    ['ko_train.format', 'pretrain-v1'],
    ['ko_train.tokenizer_hash', 'h2'],
  ]));
  const batch = (docs: number[][]): RecordBatch => {
    const { tokens, offsets } = flatten(docs);
    const values = makeData({ type: new Uint32(), length: tokens.length, nullCount: 0, data: tokens });
    const list = makeData({ type: listType, length: docs.length, nullCount: 0, valueOffsets: offsets, child: values });
    return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: docs.length, nullCount: 0, children: [list] }));
  };
  const p = path.join(tmp, 'multi.arrow');
  fs.writeFileSync(p, tableToIPC(new Table([batch([[1, 2], [3]]), batch([[], [4, 5, 6]])]), 'file'));
  const s = readTokenShard(p);
  assert.deepEqual([...s.tokens], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...s.docOffsets], [0, 2, 3, 3, 6]);
  assert.equal(s.numDocs, 4);
});

test('truncated, garbage and foreign files give errors naming the file', () => {
  const { tokens, offsets } = flatten(makeDocs(20, 2));
  const good = path.join(tmp, 'good.arrow');
  writeTokenShard(good, tokens, offsets, { tokenizerHash: 'h' });
  const bytes = fs.readFileSync(good);

  const cases: Array<[string, Uint8Array]> = [
    ['half.arrow', bytes.subarray(0, bytes.length >> 1)],
    ['hundred.arrow', bytes.subarray(0, 100)],
    ['garbage.arrow', Uint8Array.from({ length: 5000 }, (_, i) => (i * 7919 + 13) & 255)],
    ['empty.arrow', new Uint8Array(0)],
  ];
  for (const [name, b] of cases) {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, b);
    assert.throws(() => readTokenShard(p), (e: Error) => e.message.startsWith(`${p}: not a valid ko-train Arrow shard (`), name);
  }
  // Footer intact but the body corrupted: magic at both ends survives, the data does not.
  const corrupt = Buffer.from(bytes);
  corrupt.fill(0xff, 8, bytes.length >> 1);
  const pc = path.join(tmp, 'corrupt.arrow');
  fs.writeFileSync(pc, corrupt);
  assert.throws(() => readTokenShard(pc), (e: Error) => e.message.startsWith(`${pc}:`));

  // A valid Arrow file with another schema.
  const other = path.join(tmp, 'other.arrow');
  const t = new Table({ ids: vectorFromArray([1, 2, 3], new Int32()) });
  fs.writeFileSync(other, tableToIPC(t, 'file'));
  assert.throws(() => readTokenShard(other), (e: Error) =>
    e.message.startsWith(`${other}: not a ko-train token shard`) && e.message.includes('ids: Int32'));

  // Right schema, no ko-train metadata.
  const nometa = path.join(tmp, 'nometa.arrow');
  const tab = tableFromIPC(bytes);
  fs.writeFileSync(nometa, tableToIPC(new Table(new Schema(tab.schema.fields), tab.batches.map((b) => new RecordBatch(new Schema(tab.schema.fields), b.data))), 'file'));
  assert.throws(() => readTokenShard(nometa), (e: Error) => e.message.startsWith(nometa) && e.message.includes('ko_train.format is missing'));

  const missing = path.join(tmp, 'missing.arrow');
  assert.throws(() => readTokenShard(missing), (e: Error) => e.message.startsWith(missing) && e.message.includes('cannot read'));
});

test('random corruption never hangs or crashes: it throws an error naming the file or reads a shard', () => {
  const { tokens, offsets } = flatten(makeDocs(20, 6));
  const good = path.join(tmp, 'fuzz-src.arrow');
  writeTokenShard(good, tokens, offsets, { tokenizerHash: 'h' });
  const bytes = fs.readFileSync(good);
  let s = 12345;
  const rnd = (n: number): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s % n;
  };
  const p = path.join(tmp, 'fuzz.arrow');
  let threw = 0;
  for (let iter = 0; iter < 300; iter++) {
    const b = Buffer.from(bytes);
    const start = rnd(b.length);
    const len = 1 + rnd(iter % 3 === 0 ? 64 : 4);
    for (let i = start; i < Math.min(b.length, start + len); i++) b[i] = rnd(256);
    fs.writeFileSync(p, b);
    try {
      const shard = readTokenShard(p);
      // Whatever was read is self-consistent.
      assert.equal(shard.docOffsets.length, shard.numDocs + 1);
      assert.equal(shard.docOffsets[shard.numDocs], shard.tokens.length);
    } catch (e) {
      assert.ok((e as Error).message.startsWith(`${p}:`), (e as Error).message);
      threw++;
    }
  }
  assert.ok(threw > 0);
});

function manifestFor(dir: string, hash: string): ShardManifest {
  const a = flatten(makeDocs(10, 3));
  const b = flatten(makeDocs(7, 4));
  const v = flatten(makeDocs(5, 5));
  writeTokenShard(path.join(dir, 'train-00000.arrow'), a.tokens, a.offsets, { tokenizerHash: hash });
  writeTokenShard(path.join(dir, 'train-00001.arrow'), b.tokens, b.offsets, { tokenizerHash: hash });
  writeTokenShard(path.join(dir, 'val-00000.arrow'), v.tokens, v.offsets, { tokenizerHash: hash });
  return {
    format: 'ko-train-shards-v1',
    tokenizer_hash: hash,
    vocab_size: 128256,
    eos_id: 128001,
    splits: {
      train: { files: ['train-00000.arrow', 'train-00001.arrow'], num_tokens: a.tokens.length + b.tokens.length, num_docs: 17 },
      val: { files: ['val-00000.arrow'], num_tokens: v.tokens.length, num_docs: 5 },
    },
    created: '2025-01-01T00:00:00.000Z',
    stats: { chars: 12345 },
  };
}

test('manifest round trip and openShardSplit', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'ds-'));
  const m = manifestFor(dir, 'e134af98b985517b');
  writeManifest(dir, m);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')), m);
  assert.deepEqual(readManifest(dir), m);

  const train = openShardSplit(dir, 'train', 'e134af98b985517b');
  assert.equal(train.length, 2);
  assert.equal(train[0].numDocs + train[1].numDocs, 17);
  assert.deepEqual([...train[1].tokens], makeDocs(7, 4).flat());
  assert.equal(openShardSplit(dir, 'val').length, 1);
  assert.throws(() => openShardSplit(dir, 'test'), /no split "test" \(splits: train, val\)/);
});

test('shards made with another tokenizer are refused, naming both hashes and the dir', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'ds-'));
  writeManifest(dir, manifestFor(dir, 'aaaaaaaaaaaaaaaa'));
  assert.throws(
    () => openShardSplit(dir, 'train', 'bbbbbbbbbbbbbbbb'),
    (e: Error) =>
      e.message.includes(dir) && e.message.includes('another tokenizer') &&
      e.message.includes('aaaaaaaaaaaaaaaa') && e.message.includes('bbbbbbbbbbbbbbbb'),
  );
  // A shard whose own hash disagrees with the manifest.
  const { tokens, offsets } = flatten(makeDocs(10, 3));
  const shard = path.join(dir, 'train-00000.arrow');
  writeTokenShard(shard, tokens, offsets, { tokenizerHash: 'cccccccccccccccc' });
  assert.throws(
    () => openShardSplit(dir, 'train', 'aaaaaaaaaaaaaaaa'),
    (e: Error) => e.message.includes('another tokenizer') && e.message.includes('cccccccccccccccc') && e.message.includes(shard),
  );
  assert.throws(() => openShardSplit(dir, 'train'), (e: Error) => e.message.startsWith(shard) && e.message.includes("differs from the manifest's"));
});

test('manifest validation names the file and key', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'ds-'));
  const file = path.join(dir, 'manifest.json');
  const base = manifestFor(dir, 'h');
  const bad = (mut: (m: any) => void, re: RegExp): void => {
    const m = structuredClone(base) as any;
    mut(m);
    fs.writeFileSync(file, JSON.stringify(m));
    assert.throws(() => readManifest(dir), (e: Error) => e.message.startsWith(file) && re.test(e.message));
  };
  bad((m) => (m.format = 'v0'), /key "format" is "v0"/);
  bad((m) => delete m.tokenizer_hash, /key "tokenizer_hash"/);
  bad((m) => (m.vocab_size = -1), /key "vocab_size"/);
  bad((m) => (m.eos_id = 200000), /key "eos_id"/);
  bad((m) => (m.splits.train.files = 'x.arrow'), /key "splits.train.files"/);
  bad((m) => (m.splits.val.num_tokens = 1.5), /key "splits.val.num_tokens"/);
  fs.writeFileSync(file, '{not json');
  assert.throws(() => readManifest(dir), (e: Error) => e.message.startsWith(file) && /not valid JSON/.test(e.message));
  // Declared counts must match the shards.
  const m = structuredClone(base);
  m.splits.train.num_docs = 18;
  fs.writeFileSync(file, JSON.stringify(m));
  assert.throws(() => openShardSplit(dir, 'train'), /declares .* in 18 documents, its shards hold .* in 17 documents/);
});
