// Safetensors reader and writer (https://github.com/huggingface/safetensors, "Format" section):
//
//   [8 bytes: N, little-endian u64][N bytes: JSON header, space-padded][data area]
//
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative
// to the start of the data area) and may hold "__metadata__": {string: string}.
//
// Byte order: tensor data is little-endian; typed-array views below assume a little-endian host
// (x86-64 and arm64 — every platform ko-train ships for).

import fs from 'node:fs';

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** Offset of the tensor's first byte from the start of the file. */
  byteOffset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  /** Tensor names in header order. */
  names: string[];
  info(name: string): TensorInfo;
  /** The whole file. */
  buffer: Buffer;
}

/** Bytes per element of every dtype the format defines (F4/F6 sub-byte types are not supported). */
const DTYPE_SIZES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** The reference implementation refuses headers above 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;
/** fs.writeSync takes at most 2^31-1 bytes per call; write in 1 GiB pieces. */
const WRITE_CHUNK = 1 << 30;

function shapeNumel(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isValidShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) {
    const n = Math.min(WRITE_CHUNK, bytes.byteLength - off);
    off += fs.writeSync(fd, bytes, off, n);
  }
}

/**
 * Writes F32 tensors, in the given order, as one safetensors file. Each tensor's bytes are written
 * straight from its Float32Array (views into a larger array are fine).
 */
export function writeSafetensors(
  path: string,
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): void {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new Error(`${path}: metadata value for "${k}" must be a string, got ${typeof v}`);
      }
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name.length === 0) {
      throw new Error(`${path}: invalid tensor name ${JSON.stringify(t.name)}`);
    }
    if (seen.has(t.name)) throw new Error(`${path}: duplicate tensor name "${t.name}"`);
    seen.add(t.name);
    if (!isValidShape(t.shape)) {
      throw new Error(`${path}: tensor "${t.name}": invalid shape ${JSON.stringify(t.shape)}`);
    }
    if (!(t.data instanceof Float32Array)) {
      throw new Error(`${path}: tensor "${t.name}": data must be a Float32Array`);
    }
    const numel = shapeNumel(t.shape);
    if (t.data.length !== numel) {
      throw new Error(
        `${path}: tensor "${t.name}": data has ${t.data.length} elements but shape ` +
          `[${t.shape.join(', ')}] needs ${numel}`,
      );
    }
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }

  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(8 + padded, 0x20); // pad with spaces
  head.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(head, 8);

  const fd = fs.openSync(path, 'w');
  try {
    writeAll(fd, head);
    for (const t of tensors) {
      writeAll(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads and validates a safetensors file; tensor data stays in the returned buffer. */
export function readSafetensors(path: string): SafetensorsFile {
  let buffer: Buffer;
  try {
    buffer = fs.readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read safetensors file (${(e as Error).message})`);
  }
  const bad = (msg: string): Error => new Error(`${path}: invalid safetensors file: ${msg}`);

  if (buffer.length < 8) throw bad(`file is ${buffer.length} bytes, shorter than the 8-byte header length`);
  const n64 = buffer.readBigUInt64LE(0);
  if (n64 > BigInt(buffer.length - 8)) {
    throw bad(`header length ${n64} at offset 0 runs past the end of the file (${buffer.length} bytes)`);
  }
  const headerLen = Number(n64);
  if (headerLen > MAX_HEADER_BYTES) throw bad(`header length ${headerLen} exceeds ${MAX_HEADER_BYTES}`);
  if (headerLen < 2) throw bad(`header length ${headerLen} is too small for a JSON object`);

  let header: unknown;
  try {
    header = JSON.parse(buffer.toString('utf8', 8, 8 + headerLen));
  } catch (e) {
    throw bad(`header (bytes 8..${8 + headerLen}) is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw bad('header is not a JSON object');
  }

  const dataStart = 8 + headerLen;
  const dataLen = buffer.length - dataStart;
  const metadata: Record<string, string> = {};
  const infos = new Map<string, TensorInfo>();
  const names: string[] = [];
  const spans: Array<[number, number, string]> = [];

  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('"__metadata__" is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(`"__metadata__"."${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(`${where}: entry is not an object`);
    const { dtype, shape, data_offsets } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZES)) {
      throw bad(`${where}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`);
    }
    if (!isValidShape(shape)) throw bad(`${where}: invalid shape ${JSON.stringify(shape)}`);
    if (
      !Array.isArray(data_offsets) ||
      data_offsets.length !== 2 ||
      !data_offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      throw bad(`${where}: invalid data_offsets ${JSON.stringify(data_offsets)}`);
    }
    const [begin, end] = data_offsets as [number, number];
    if (end < begin) throw bad(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLen) {
      throw bad(
        `${where}: data_offsets [${begin}, ${end}] run past the data area (${dataLen} bytes from file offset ${dataStart})`,
      );
    }
    const expected = DTYPE_SIZES[dtype] * shapeNumel(shape);
    if (end - begin !== expected) {
      throw bad(
        `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} [${shape.join(', ')}] ` +
          `needs ${expected}`,
      );
    }
    infos.set(name, { dtype, shape, byteOffset: dataStart + begin, byteLength: end - begin });
    names.push(name);
    spans.push([begin, end, name]);
  }

  // Tensors must not share bytes (empty tensors take none).
  spans.sort((a, b) => a[0] - b[0]);
  let maxEnd = 0;
  let maxName = '';
  for (const [b, e, nm] of spans) {
    if (e === b) continue;
    if (b < maxEnd) {
      throw bad(`tensor "${nm}" (data_offsets [${b}, ${e}]) overlaps tensor "${maxName}" (ending at ${maxEnd})`);
    }
    maxEnd = e;
    maxName = nm;
  }

  return {
    path,
    metadata,
    names,
    buffer,
    info(name: string): TensorInfo {
      const i = infos.get(name);
      if (i === undefined) throw new Error(`${path}: no tensor named "${name}"`);
      return i;
    },
  };
}

/** Exact IEEE binary16 → number. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

/**
 * One tensor as float32. F32 data is returned as a view into `file.buffer` when it is 4-byte aligned
 * in memory (a copy otherwise); BF16, F16 and F64 are converted (F64 rounds to nearest float32).
 */
export function readTensorF32(file: SafetensorsFile, name: string): Float32Array {
  const info = file.info(name);
  const buf = file.buffer;
  const abs = buf.byteOffset + info.byteOffset; // offset inside buf.buffer
  const numel = shapeNumel(info.shape);
  switch (info.dtype) {
    case 'F32': {
      if (abs % 4 === 0) return new Float32Array(buf.buffer, abs, numel);
      return new Float32Array(buf.buffer.slice(abs, abs + info.byteLength));
    }
    case 'BF16':
    case 'F16': {
      const src =
        abs % 2 === 0
          ? new Uint16Array(buf.buffer, abs, numel)
          : new Uint16Array(buf.buffer.slice(abs, abs + info.byteLength));
      const out = new Float32Array(numel);
      if (info.dtype === 'BF16') {
        const bits = new Uint32Array(out.buffer);
        for (let i = 0; i < numel; i++) bits[i] = src[i] << 16;
      } else {
        for (let i = 0; i < numel; i++) out[i] = halfToFloat(src[i]);
      }
      return out;
    }
    case 'F64': {
      const src =
        abs % 8 === 0
          ? new Float64Array(buf.buffer, abs, numel)
          : new Float64Array(buf.buffer.slice(abs, abs + info.byteLength));
      return Float32Array.from(src);
    }
    default:
      throw new Error(
        `${file.path}: tensor "${name}" has dtype ${info.dtype}; only F32, BF16, F16 and F64 can be read as float32`,
      );
  }
}
