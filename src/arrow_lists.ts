// arrow_lists.ts — Arrow IPC plumbing: the SFT and DPO shards (tables whose columns are
// List<Uint32>/List<Uint8> (one row per example; the child values buffer is the contiguous token stream and
// the list offsets are the example boundaries, as in shards.ts) or Float64, written atomically and read
// back with the same defences against corrupt files as readTokenShard (flatbuffer bounds checks before
// arrow-js decodes anything, record batches read one by one); shards.ts uses the same checks from here.

import fs from 'node:fs';
import {
  DataType,
  Field,
  Float64,
  List,
  RecordBatch,
  RecordBatchReader,
  Schema,
  Struct,
  Table,
  Uint32,
  Uint8,
  makeData,
  tableToIPC,
  type Data,
} from 'apache-arrow';

const ARROW_MAGIC = Buffer.from('ARROW1', 'latin1');
export const INT32_MAX = 2 ** 31 - 1;

export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    let off = 0;
    while (off < bytes.byteLength) off += fs.writeSync(fd, bytes, off, Math.min(1 << 30, bytes.byteLength - off));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path);
}

/** One column to write: a list column (values + numRows+1 offsets) or a Float64 column. */
export type OutColumn =
  | { name: string; kind: 'u32' | 'u8'; values: Uint32Array | Uint8Array; offsets: Int32Array }
  | { name: string; kind: 'f64'; values: Float64Array };

function checkOffsets(offsets: Int32Array, n: number): string | null {
  if (offsets.length < 1 || offsets[0] !== 0) return 'offsets must start at 0';
  if (offsets[offsets.length - 1] !== n) return `offsets end at ${offsets[offsets.length - 1]}, expected ${n} values`;
  for (let i = 1; i < offsets.length; i++) if (offsets[i] < offsets[i - 1]) return `offsets decrease at row ${i}`;
  return null;
}

function columnData(path: string, c: OutColumn): { field: Field; data: Data; rows: number } {
  if (c.kind === 'f64') {
    const type = new Float64();
    return { field: new Field(c.name, type, false), data: makeData({ type, length: c.values.length, nullCount: 0, data: c.values }), rows: c.values.length };
  }
  if (c.values.length > INT32_MAX) throw new Error(`${path}: column ${c.name} holds ${c.values.length} values, more than a List column can (2^31-1); split it`);
  const err = checkOffsets(c.offsets, c.values.length);
  if (err) throw new Error(`${path}: column ${c.name}: ${err}`);
  const rows = c.offsets.length - 1;
  const list = <T extends Uint32 | Uint8>(itemType: T, values: T['TArray']): { field: Field; data: Data; rows: number } => {
    const listType = new List(new Field('item', itemType, true));
    const child = makeData({ type: itemType, length: values.length, nullCount: 0, data: values });
    return { field: new Field(c.name, listType, false), data: makeData({ type: listType, length: rows, nullCount: 0, valueOffsets: c.offsets, child }), rows };
  };
  return c.kind === 'u32' ? list(new Uint32(), c.values as Uint32Array) : list(new Uint8(), c.values as Uint8Array);
}

/** Writes the columns as one record batch, atomically (path + '.tmp', then rename). */
export function writeArrowColumns(path: string, columns: OutColumn[], metadata: Map<string, string>): void {
  const cols = columns.map((c) => columnData(path, c));
  const rows = cols[0]?.rows ?? 0;
  for (const [i, c] of cols.entries()) {
    if (c.rows !== rows) throw new Error(`${path}: column ${columns[i].name} has ${c.rows} rows, column ${columns[0].name} has ${rows}`);
  }
  const schema = new Schema(cols.map((c) => c.field), metadata);
  const data = makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children: cols.map((c) => c.data) });
  writeFileAtomic(path, tableToIPC(new Table([new RecordBatch(schema, data)]), 'file'));
}

// ---------------------------------------------------------------------------------------------
// Bounds check of the IPC flatbuffers (footer and record batch messages) before arrow-js decodes them:
// arrow-js trusts vector lengths, so one corrupt byte can make it loop ~2^32 times or run out of memory.

type FbKind = 'string' | 'table' | { structs: number } | { tables: FbSpec } | { table: FbSpec };
export type FbSpec = Record<number, FbKind>;

const FB_KEY_VALUE: FbSpec = { 0: 'string', 1: 'string' };
const FB_FIELD: FbSpec = { 0: 'string', 3: 'table', 4: 'table', 6: { tables: FB_KEY_VALUE } };
FB_FIELD[5] = { tables: FB_FIELD };
const FB_SCHEMA: FbSpec = { 1: { tables: FB_FIELD }, 2: { tables: FB_KEY_VALUE }, 3: { structs: 8 } };
export const FB_FOOTER: FbSpec = { 1: { table: FB_SCHEMA }, 2: { structs: 24 }, 3: { structs: 24 }, 4: { tables: FB_KEY_VALUE } };
const FB_RECORD_BATCH: FbSpec = { 1: { structs: 16 }, 2: { structs: 16 }, 3: 'table', 4: { structs: 8 } };
export const FB_MESSAGE: FbSpec = { 2: { table: FB_RECORD_BATCH }, 4: { tables: FB_KEY_VALUE } };
export const MESSAGE_HEADER_RECORD_BATCH = 3;

export function fbVerify(b: Buffer, spec: FbSpec, what: string): void {
  let budget = 100_000;
  const fail = (msg: string): never => {
    throw new Error(`${what}: ${msg}`);
  };
  const u32 = (p: number): number => (p >= 0 && p + 4 <= b.length ? b.readUInt32LE(p) : fail(`offset ${p} out of bounds`));
  const u16 = (p: number): number => (p >= 0 && p + 2 <= b.length ? b.readUInt16LE(p) : fail(`offset ${p} out of bounds`));
  const vector = (p: number, elemSize: number): number => {
    const n = u32(p);
    if (p + 4 + n * elemSize > b.length) fail(`vector of ${n} at offset ${p} overruns ${b.length} bytes`);
    return n;
  };
  const table = (pos: number, sp: FbSpec | null, depth: number): void => {
    if (--budget < 0 || depth > 64) fail('metadata nested too deeply');
    u32(pos);
    const vt = pos - b.readInt32LE(pos);
    const vtSize = u16(vt);
    if (vtSize < 4 || vtSize % 2 !== 0 || vt + vtSize > b.length) fail(`bad vtable at offset ${vt}`);
    if (sp === null) return;
    const nFields = (vtSize - 4) / 2;
    for (const [key, kind] of Object.entries(sp)) {
      const i = Number(key);
      if (i >= nFields) continue;
      const off = u16(vt + 4 + 2 * i);
      if (off === 0) continue;
      const target = pos + off + u32(pos + off);
      if (kind === 'string') vector(target, 1);
      else if (kind === 'table') table(target, null, depth + 1);
      else if ('structs' in kind) vector(target, kind.structs);
      else if ('table' in kind) table(target, kind.table, depth + 1);
      else {
        const n = vector(target, 4);
        for (let k = 0; k < n; k++) {
          const e = target + 4 + 4 * k;
          table(e + u32(e), kind.tables, depth + 1);
        }
      }
    }
  };
  table(u32(0), spec, 0);
}

export interface ArrowFile {
  path: string;
  schema: Schema;
  batches: RecordBatch[];
  metadata: Map<string, string>;
  /** The file as read; single-batch columns are zero-copy views into it. */
  fileBytes: Buffer;
}

/** Reads an Arrow IPC file; any defect is an error naming the file and saying what `what` it should be. */
export function readArrowFile(path: string, what: string): ArrowFile {
  let fileBytes: Buffer;
  try {
    fileBytes = fs.readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read ${what} (${(e as Error).message})`);
  }
  const invalid = (why: string): Error => new Error(`${path}: not a valid ${what} (${why})`);
  if (fileBytes.length < 12 || !fileBytes.subarray(0, 6).equals(ARROW_MAGIC) || !fileBytes.subarray(fileBytes.length - 6).equals(ARROW_MAGIC)) {
    throw invalid(`${fileBytes.length} bytes without the Arrow IPC file magic at both ends; truncated or not an Arrow file`);
  }
  let schema: Schema;
  const batches: RecordBatch[] = [];
  try {
    const footerLen = fileBytes.readInt32LE(fileBytes.length - 10);
    const footerStart = fileBytes.length - 10 - footerLen;
    if (footerLen <= 0 || footerStart < 8) throw new Error(`footer length ${footerLen} does not fit the file`);
    fbVerify(fileBytes.subarray(footerStart, fileBytes.length - 10), FB_FOOTER, `footer at offset ${footerStart}`);
    const reader = RecordBatchReader.from(fileBytes);
    if (!reader.isFile()) throw new Error('not in the Arrow IPC file format');
    reader.open();
    schema = reader.schema;
    const footer = reader.footer;
    if (schema === null || schema === undefined || footer === null) throw new Error('no schema in the footer');
    const end = fileBytes.length - 10;
    for (let i = 0; i < reader.numRecordBatches; i++) {
      const block = footer.getRecordBatch(i);
      if (block === null) throw new Error(`record batch ${i} missing from the footer`);
      const offset = Number(block.offset);
      const metaLen = Number(block.metaDataLength);
      const bodyLen = Number(block.bodyLength);
      if (!(offset >= 8 && metaLen >= 8 && bodyLen >= 0 && offset + metaLen + bodyLen <= end)) {
        throw new Error(`record batch ${i} (offset ${offset}, ${metaLen} + ${bodyLen} bytes) lies outside the file`);
      }
      const marker = fileBytes.readInt32LE(offset);
      const len = fileBytes.readInt32LE(offset + 4);
      if (marker !== -1 || len <= 0 || len + 8 > metaLen) throw new Error(`record batch ${i} at offset ${offset} has a corrupt message header`);
      const message = fileBytes.subarray(offset + 8, offset + 8 + len);
      fbVerify(message, FB_MESSAGE, `record batch ${i} at offset ${offset}`);
      const root = message.readUInt32LE(0);
      const vt = root - message.readInt32LE(root);
      const typeOff = message.readUInt16LE(vt) > 6 ? message.readUInt16LE(vt + 6) : 0;
      if (typeOff === 0 || message[root + typeOff] !== MESSAGE_HEADER_RECORD_BATCH) throw new Error(`record batch ${i} at offset ${offset} is not a record batch message`);
      const batch = reader.readRecordBatch(i);
      if (batch === null) throw new Error(`record batch ${i} at offset ${offset} is not a record batch message`);
      batches.push(batch);
    }
  } catch (e) {
    throw invalid((e as Error).message);
  }
  return { path, schema, batches, metadata: new Map(schema.metadata), fileBytes };
}

function isListOf(t: DataType, bits: 8 | 32): boolean {
  if (!DataType.isList(t)) return false;
  const child = t.children[0]?.type;
  return child !== undefined && DataType.isInt(child) && child.bitWidth === bits && !child.isSigned;
}

function fieldOf(f: ArrowFile, name: string, ok: (t: DataType) => boolean, expected: string, what: string): Field | null {
  const field = f.schema.fields.find((x) => x.name === name);
  if (field === undefined) return null;
  if (!ok(field.type)) throw new Error(`${f.path}: not a ${what}: field "${name}" is ${String(field.type)}, expected ${expected}`);
  return field;
}

/**
 * A List<Uint32> or List<Uint8> column as (values, numRows + 1 offsets starting at 0); zero-copy for a
 * single-batch file, concatenated otherwise. Returns null when the file has no such column.
 */
export function readListColumn(f: ArrowFile, name: string, kind: 'u32' | 'u8', what: string): { values: Uint32Array | Uint8Array; offsets: Int32Array } | null {
  const bits = kind === 'u32' ? 32 : 8;
  if (!fieldOf(f, name, (t) => isListOf(t, bits), `List<Uint${bits}>`, what)) return null;
  const invalid = (why: string): Error => new Error(`${f.path}: not a valid ${what} (column ${name}: ${why})`);
  const parts: Array<{ values: Uint32Array | Uint8Array; offsets: Int32Array }> = [];
  for (const batch of f.batches) {
    const column = batch.getChild(name);
    if (column === null) throw invalid('missing from a record batch');
    for (const d of column.data) {
      const child = d.children[0];
      if (child === undefined || d.valueOffsets === undefined || child.values === undefined) throw invalid('no offsets or values buffer');
      const offsets = d.valueOffsets.subarray(d.offset, d.offset + d.length + 1) as Int32Array;
      if (offsets.length !== d.length + 1) throw invalid(`offsets buffer holds ${offsets.length} entries, ${d.length + 1} needed`);
      const values = (child.values as Uint32Array | Uint8Array).subarray(child.offset, child.offset + child.length);
      if (values.length !== child.length) throw invalid(`values buffer holds ${values.length} entries, ${child.length} declared`);
      if (offsets[0] < 0 || offsets[offsets.length - 1] > values.length) throw invalid(`offsets [${offsets[0]}, ${offsets[offsets.length - 1]}] outside the ${values.length} values`);
      for (let i = 1; i < offsets.length; i++) if (offsets[i] < offsets[i - 1]) throw invalid(`offsets decrease at row ${i}`);
      parts.push({ values, offsets });
    }
  }
  if (parts.length === 1 && parts[0].offsets[0] === 0) {
    const p = parts[0];
    return { values: p.values.subarray(0, p.offsets[p.offsets.length - 1]), offsets: p.offsets };
  }
  let nVal = 0;
  let nRow = 0;
  for (const p of parts) {
    nVal += p.offsets[p.offsets.length - 1] - p.offsets[0];
    nRow += p.offsets.length - 1;
  }
  const values = kind === 'u32' ? new Uint32Array(nVal) : new Uint8Array(nVal);
  const offsets = new Int32Array(nRow + 1);
  let v = 0;
  let r = 0;
  for (const p of parts) {
    const base = p.offsets[0];
    values.set(p.values.subarray(base, p.offsets[p.offsets.length - 1]), v);
    for (let i = 1; i < p.offsets.length; i++) offsets[++r] = v + p.offsets[i] - base;
    v += p.offsets[p.offsets.length - 1] - base;
  }
  return { values, offsets };
}

/** A non-null Float64 column, or null when the file has no such column. */
export function readFloat64Column(f: ArrowFile, name: string, what: string): Float64Array | null {
  const isF64 = (t: DataType): boolean => DataType.isFloat(t) && t.precision === 2;
  if (!fieldOf(f, name, isF64, 'Float64', what)) return null;
  const chunks: Float64Array[] = [];
  for (const batch of f.batches) {
    const column = batch.getChild(name);
    if (column === null) throw new Error(`${f.path}: not a valid ${what} (column ${name} missing from a record batch)`);
    if (column.nullCount > 0) throw new Error(`${f.path}: not a valid ${what} (column ${name} has ${column.nullCount} nulls)`);
    for (const d of column.data) chunks.push((d.values as Float64Array).subarray(d.offset, d.offset + d.length));
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Float64Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) out.set(c, (at += c.length) - c.length);
  return out;
}
