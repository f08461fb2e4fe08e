// safetensorsLite.ts — a minimal safetensors reader/writer for tests, independent of src/.
// Format: 8-byte little-endian header length N, N bytes of JSON header
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}), then the data
// section; offsets are relative to the start of the data section. Reads F32 (and F64/F16/BF16,
// widened to float64); writes F32 only.
import fs from 'node:fs';

export interface LiteTensor {
  shape: number[];
  data: Float64Array;
}

function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Reads every tensor of a safetensors file into float64, keyed by name (in header order). */
export function readSafetensorsLite(file: string): Map<string, LiteTensor> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const base = 8 + n;
  const out = new Map<string, LiteTensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = raw as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const count = info.shape.reduce((a, b) => a * b, 1);
    const [begin, end] = info.data_offsets;
    const bytes = buf.subarray(base + begin, base + end);
    const data = new Float64Array(count);
    const width = { F32: 4, F64: 8, F16: 2, BF16: 2 }[info.dtype];
    if (width === undefined) throw new Error(`safetensorsLite: ${name}: unsupported dtype ${info.dtype}`);
    if (bytes.length !== count * width) {
      throw new Error(`safetensorsLite: ${name}: ${bytes.length} bytes for shape [${info.shape}] ${info.dtype}`);
    }
    for (let i = 0; i < count; i++) {
      switch (info.dtype) {
        case 'F32': data[i] = bytes.readFloatLE(i * 4); break;
        case 'F64': data[i] = bytes.readDoubleLE(i * 8); break;
        case 'F16': data[i] = f16ToNumber(bytes.readUInt16LE(i * 2)); break;
        case 'BF16': {
          const b = Buffer.alloc(4);
          b.writeUInt32LE(bytes.readUInt16LE(i * 2) << 16 >>> 0);
          data[i] = b.readFloatLE(0);
          break;
        }
      }
    }
    out.set(name, { shape: [...info.shape], data });
  }
  return out;
}

/** Writes tensors (float64 values, stored rounded to F32) in the map's order. */
export function writeSafetensorsLite(
  file: string,
  tensors: Map<string, LiteTensor>,
  metadata: Record<string, string> = { format: 'pt' },
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`safetensorsLite: ${name}: shape [${t.shape}] but ${t.data.length} values`);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + count * 4] };
    offset += count * 4;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  if (json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const data = Buffer.alloc(offset);
  let p = 0;
  for (const t of tensors.values()) {
    for (let i = 0; i < t.data.length; i++, p += 4) data.writeFloatLE(t.data[i], p);
  }
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
}
