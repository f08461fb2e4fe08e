import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSafetensors, readTensorF32, writeSafetensors } from '../../src/safetensors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-safetensors-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** A safetensors file assembled by hand (header padded to 8 with spaces). */
function rawFile(name: string, header: unknown, data: Uint8Array, pad = true): string {
  let json = Buffer.from(JSON.stringify(header));
  if (pad && json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const p = path.join(tmp, name);
  fs.writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

function u16le(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}

test('round trip of subarray views with metadata; header parsed independently', () => {
  const big = new Float32Array(1 + 6 + 5);
  for (let i = 0; i < big.length; i++) big[i] = Math.fround(Math.sin(i) * 100 + i / 7);
  const a = big.subarray(1, 7); // byteOffset 4 inside the big buffer
  const b = big.subarray(7, 12);
  const c = new Float32Array([Math.PI, -0, Infinity, -1e-40]);
  const p = path.join(tmp, 'rt.safetensors');
  writeSafetensors(p, [
    { name: 'model.layers.0.w', shape: [2, 3], data: a },
    { name: 'b', shape: [5], data: b },
    { name: 'c', shape: [2, 1, 2], data: c },
  ], { format: 'pt', note: 'ㄱ한국어 "quoted"' });

  // Independent parse of the bytes.
  const bytes = fs.readFileSync(p);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header length is a multiple of 8');
  const headerText = bytes.toString('utf8', 8, 8 + n);
  assert.match(headerText, /^\{.*\} *$/s, 'header is JSON followed by space padding only');
  const header = JSON.parse(headerText);
  assert.deepEqual(header.__metadata__, { format: 'pt', note: 'ㄱ한국어 "quoted"' });
  assert.deepEqual(header['model.layers.0.w'], { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
  assert.deepEqual(header.b, { dtype: 'F32', shape: [5], data_offsets: [24, 44] });
  assert.deepEqual(header.c, { dtype: 'F32', shape: [2, 1, 2], data_offsets: [44, 60] });
  assert.equal(bytes.length, 8 + n + 60);
  const expected = [...a, ...b, ...c];
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Object.is(bytes.readFloatLE(8 + n + 4 * i), expected[i]), `float ${i}`);
  }

  // Reader.
  const f = readSafetensors(p);
  assert.deepEqual(f.names, ['model.layers.0.w', 'b', 'c']);
  assert.deepEqual(f.metadata, { format: 'pt', note: 'ㄱ한국어 "quoted"' });
  assert.deepEqual(f.info('b'), { dtype: 'F32', shape: [5], byteOffset: 8 + n + 24, byteLength: 20 });
  assert.deepEqual([...readTensorF32(f, 'model.layers.0.w')], [...a]);
  assert.deepEqual([...readTensorF32(f, 'b')], [...b]);
  const rc = readTensorF32(f, 'c');
  assert.ok(Object.is(rc[1], -0));
  assert.deepEqual([...rc], [...c]);
});

test('aligned F32 is a zero-copy view, unaligned F32 is copied correctly', () => {
  const p = path.join(tmp, 'big.safetensors');
  const data = Float32Array.from({ length: 4096 }, (_, i) => i * 0.5);
  writeSafetensors(p, [{ name: 'w', shape: [64, 64], data }]);
  const f = readSafetensors(p);
  const w = readTensorF32(f, 'w');
  assert.equal(w.buffer, f.buffer.buffer, 'view into the file buffer');
  assert.deepEqual([...w], [...data]);

  // A U8 tensor of 1 byte puts the F32 tensor at an odd offset.
  const floats = new Float32Array([1.25, -3.5, 1e30]);
  const payload = Buffer.concat([Buffer.from([7]), Buffer.from(floats.buffer)]);
  const q = rawFile('unaligned.safetensors', {
    u: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
    x: { dtype: 'F32', shape: [3], data_offsets: [1, 13] },
  }, payload);
  const x = readTensorF32(readSafetensors(q), 'x');
  assert.deepEqual([...x], [...floats]);
});

test('BF16, F16 and F64 convert to float32 exactly', () => {
  // bf16 bit patterns and their values, worked out by hand: sign|8-bit exponent|7-bit fraction.
  const bf16 = [0x3f80, 0xc000, 0x3fc0, 0x4049, 0x0001, 0x7f80, 0xff80, 0x8000];
  const bf16Want = [1, -2, 1.5, 3.140625, 2 ** -133, Infinity, -Infinity, -0];
  // binary16: sign|5-bit exponent|10-bit fraction.
  const f16 = [0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x0400, 0x7c00, 0x8000];
  const f16Want = [1, -2, 0.333251953125, 65504, 2 ** -24, 2 ** -14, Infinity, -0];
  const f64 = new Float64Array([0.1, -2.5, 1e300]);
  const payload = Buffer.concat([u16le(bf16), u16le(f16), Buffer.from(f64.buffer), u16le([0x7fc0, 0x7e00])]);
  const p = rawFile('convert.safetensors', {
    bf: { dtype: 'BF16', shape: [2, 4], data_offsets: [0, 16] },
    h: { dtype: 'F16', shape: [8], data_offsets: [16, 32] },
    d: { dtype: 'F64', shape: [3], data_offsets: [32, 56] },
    nan: { dtype: 'BF16', shape: [1], data_offsets: [56, 58] },
    nanh: { dtype: 'F16', shape: [1], data_offsets: [58, 60] },
  }, payload);
  const f = readSafetensors(p);
  const gotBf = readTensorF32(f, 'bf');
  bf16Want.forEach((v, i) => assert.ok(Object.is(gotBf[i], v), `bf16[${i}] = ${gotBf[i]}, want ${v}`));
  const gotH = readTensorF32(f, 'h');
  f16Want.forEach((v, i) => assert.ok(Object.is(gotH[i], v), `f16[${i}] = ${gotH[i]}, want ${v}`));
  assert.deepEqual([...readTensorF32(f, 'd')], [Math.fround(0.1), -2.5, Infinity]);
  assert.ok(Number.isNaN(readTensorF32(f, 'nan')[0]));
  assert.ok(Number.isNaN(readTensorF32(f, 'nanh')[0]));
});

test('unsupported dtype and missing tensor errors name the tensor and file', () => {
  const p = rawFile('ints.safetensors', { i: { dtype: 'I32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8));
  const f = readSafetensors(p);
  assert.throws(() => readTensorF32(f, 'i'), (e: Error) => e.message.includes('"i"') && e.message.includes('I32') && e.message.includes(p));
  assert.throws(() => readTensorF32(f, 'nope'), (e: Error) => e.message.includes('"nope"') && e.message.includes(p));
});

test('writer rejects data that does not match the shape', () => {
  const p = path.join(tmp, 'bad-write.safetensors');
  assert.throws(
    () => writeSafetensors(p, [{ name: 'w', shape: [2, 3], data: new Float32Array(5) }]),
    /tensor "w": data has 5 elements but shape \[2, 3\] needs 6/,
  );
  assert.throws(
    () => writeSafetensors(p, [{ name: 'w', shape: [1], data: new Float32Array(1) }, { name: 'w', shape: [1], data: new Float32Array(1) }]),
    /duplicate tensor name "w"/,
  );
});

test('corrupt and truncated files give errors naming the file', () => {
  const ok = path.join(tmp, 'ok.safetensors');
  writeSafetensors(ok, [{ name: 'a', shape: [100], data: new Float32Array(100) }, { name: 'b', shape: [10], data: new Float32Array(10) }]);
  const bytes = fs.readFileSync(ok);
  const n = Number(bytes.readBigUInt64LE(0));

  const write = (name: string, b: Uint8Array): string => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, b);
    return p;
  };
  const expectError = (p: string, re: RegExp): void =>
    assert.throws(() => readSafetensors(p), (e: Error) => e.message.startsWith(p + ':') && re.test(e.message));

  expectError(write('tiny.safetensors', Buffer.from([1, 2, 3])), /shorter than the 8-byte header length/);
  const hugeLen = Buffer.from(bytes);
  hugeLen.writeBigUInt64LE(10n ** 12n, 0);
  expectError(write('hugelen.safetensors', hugeLen), /header length 1000000000000 .*past the end of the file/);
  expectError(write('truncated-header.safetensors', bytes.subarray(0, 8 + (n >> 1))), /past the end of the file/);
  // Truncated data: tensor "a" (first 400 bytes) survives, "b" does not.
  expectError(write('truncated-data.safetensors', bytes.subarray(0, 8 + n + 410)), /tensor "b": data_offsets \[400, 440\] run past the data area/);
  const badJson = Buffer.from(bytes);
  badJson[8] = 0x5b; // '[' instead of '{'
  expectError(write('badjson.safetensors', badJson), /not valid JSON|not a JSON object/);
  expectError(rawFile('array.safetensors', [1, 2], new Uint8Array(0)), /header is not a JSON object/);
  expectError(
    rawFile('size.safetensors', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
    /tensor "w": data_offsets \[0, 8\] hold 8 bytes but F32 \[3\] needs 12/,
  );
  expectError(
    rawFile('dtype.safetensors', { w: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
    /tensor "w": unknown dtype "F33"/,
  );
  expectError(
    rawFile('overlap.safetensors', {
      x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, new Uint8Array(12)),
    /tensor "y" .* overlaps tensor "x"/,
  );
  expectError(path.join(tmp, 'missing.safetensors'), /cannot read/);
});
