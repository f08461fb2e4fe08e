// Pretraining token shards: Arrow IPC files (readable by pyarrow and arrow-js) with one column
// `input_ids: List<Uint32>`, one row per document. The list's child values buffer is the contiguous
// token stream and its offsets are the document boundaries, so a reader gets the whole stream as
// one zero-copy Uint32Array. A JSON manifest (manifest.json) lists the shards of each split.

import fs from 'node:fs';
import nodePath from 'node:path';
import { readArrowFile, writeFileAtomic } from './arrow_lists.js';
import {
  DataType,
  Field,
  List,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Uint32,
  makeData,
  tableToIPC,
} from 'apache-arrow';

export const SHARD_FORMAT = 'pretrain-v1';
export const MANIFEST_FORMAT = 'ko-train-shards-v1';
export const MANIFEST_FILE = 'manifest.json';

const KEY_FORMAT = 'ko_train.format';
const KEY_HASH = 'ko_train.tokenizer_hash';
const KEY_TOKENS = 'ko_train.num_tokens';
const KEY_DOCS = 'ko_train.num_docs';
const RESERVED_KEYS = new Set([KEY_FORMAT, KEY_HASH, KEY_TOKENS, KEY_DOCS]);
const INT32_MAX = 2 ** 31 - 1;

export interface TokenShard {
  path: string;
  /** The token stream; a zero-copy view into `fileBytes` for single-batch files. */
  tokens: Uint32Array;
  /** numDocs + 1 offsets into `tokens`: document i is tokens[docOffsets[i] .. docOffsets[i+1]). */
  docOffsets: Int32Array;
  numDocs: number;
  tokenizerHash: string;
  /** All schema metadata, ko_train.* keys included. */
  metadata: Map<string, string>;
  /** The file as read; `tokens` points into it, so it stays alive as long as `tokens` does. */
  fileBytes: Buffer;
}

export interface ShardSplit {
  files: string[];
  num_tokens: number;
  num_docs: number;
}

export interface ShardManifest {
  format: 'ko-train-shards-v1';
  tokenizer_hash: string;
  vocab_size: number;
  eos_id: number;
  splits: Record<string, ShardSplit>;
  created: string;
  stats?: Record<string, unknown>;
  /** Per source (data.sources): its language, mixing weight and its own shards of each split. */
  sources?: Record<string, { lang: string; weight: number; splits: Record<string, ShardSplit> }>;
}

function validateDocOffsets(docOffsets: Int32Array, numTokens: number): string | null {
  if (docOffsets.length < 1) return 'docOffsets is empty (needs numDocs + 1 entries)';
  if (docOffsets[0] !== 0) return `docOffsets[0] is ${docOffsets[0]}, expected 0`;
  const last = docOffsets[docOffsets.length - 1];
  if (last !== numTokens) return `docOffsets ends at ${last}, expected the token count ${numTokens}`;
  for (let i = 1; i < docOffsets.length; i++) {
    if (docOffsets[i] < docOffsets[i - 1]) {
      return `docOffsets decreases at index ${i} (${docOffsets[i - 1]} -> ${docOffsets[i]})`;
    }
  }
  return null;
}

/**
 * Writes one pretraining shard (Arrow IPC file format, one record batch) straight from the typed
 * arrays, atomically (path + '.tmp', then rename).
 */
export function writeTokenShard(
  path: string,
  tokens: Uint32Array,
  docOffsets: Int32Array,
  meta: { tokenizerHash: string; extra?: Record<string, string> },
): void {
  if (!(tokens instanceof Uint32Array)) throw new Error(`${path}: tokens must be a Uint32Array`);
  if (!(docOffsets instanceof Int32Array)) throw new Error(`${path}: docOffsets must be an Int32Array`);
  if (tokens.length > INT32_MAX) {
    throw new Error(`${path}: ${tokens.length} tokens exceed the 2^31-1 a List<Uint32> shard can hold; split it`);
  }
  const err = validateDocOffsets(docOffsets, tokens.length);
  if (err) throw new Error(`${path}: ${err}`);
  if (typeof meta.tokenizerHash !== 'string' || meta.tokenizerHash.length === 0) {
    throw new Error(`${path}: tokenizerHash must be a non-empty string`);
  }
  const numDocs = docOffsets.length - 1;

  const metadata = new Map<string, string>();
  for (const [k, v] of Object.entries(meta.extra ?? {})) {
    if (RESERVED_KEYS.has(k)) throw new Error(`${path}: metadata key "${k}" is reserved`);
    if (typeof v !== 'string') throw new Error(`${path}: metadata value for "${k}" must be a string`);
    metadata.set(k, v);
  }
  metadata.set(KEY_FORMAT, SHARD_FORMAT);
  metadata.set(KEY_HASH, meta.tokenizerHash);
  metadata.set(KEY_TOKENS, String(tokens.length));
  metadata.set(KEY_DOCS, String(numDocs));

  const listType = new List(new Field('item', new Uint32(), true));
  const values = makeData({ type: new Uint32(), length: tokens.length, nullCount: 0, data: tokens });
  const list = makeData({ type: listType, length: numDocs, nullCount: 0, valueOffsets: docOffsets, child: values });
  const schema = new Schema([new Field('input_ids', listType, false)], metadata);
  const rows = makeData({ type: new Struct(schema.fields), length: numDocs, nullCount: 0, children: [list] });
  const table = new Table([new RecordBatch(schema, rows)]);
  writeFileAtomic(path, tableToIPC(table, 'file'));
}

function describeType(t: DataType): string {
  return String(t);
}

function isListOfUint32(t: DataType): boolean {
  if (!DataType.isList(t)) return false;
  const child = t.children[0]?.type;
  return child !== undefined && DataType.isInt(child) && child.bitWidth === 32 && !child.isSigned;
}


/** Reads a pretraining shard written by writeTokenShard (or any tool writing the same schema). */
export function readTokenShard(path: string): TokenShard {
  // Bounds-checked read, block by block (arrow_lists.ts): a corrupt file is an error naming it, never a hang.
  const { schema, batches, fileBytes } = readArrowFile(path, 'ko-train Arrow shard');
  const invalid = (why: string): Error => new Error(`${path}: not a valid ko-train Arrow shard (${why})`);

  const field = schema.fields.find((f) => f.name === 'input_ids');
  if (field === undefined || !isListOfUint32(field.type)) {
    const found = schema.fields.map((f) => `${f.name}: ${describeType(f.type)}`).join(', ') || 'no fields';
    throw new Error(`${path}: not a ko-train token shard: expected a field "input_ids" of type List<Uint32>, found ${found}`);
  }
  const metadata = new Map(schema.metadata);
  const format = metadata.get(KEY_FORMAT);
  if (format !== SHARD_FORMAT) {
    throw new Error(
      `${path}: not a ko-train pretraining shard: schema metadata ${KEY_FORMAT} is ` +
        `${format === undefined ? 'missing' : JSON.stringify(format)}, expected "${SHARD_FORMAT}"`,
    );
  }
  const tokenizerHash = metadata.get(KEY_HASH);
  if (!tokenizerHash) throw new Error(`${path}: schema metadata ${KEY_HASH} is missing`);

  // Collect each batch's (token slice, offsets) and check them; arrow-js does not validate offsets.
  const parts: Array<{ tokens: Uint32Array; offsets: Int32Array }> = [];
  for (const batch of batches) {
    const column = batch.getChild('input_ids');
    if (column === null) throw invalid('a record batch lacks the input_ids column');
    if (column.length !== batch.numRows) throw invalid('input_ids length differs from the batch row count');
    for (const d of column.data) {
      const child = d.children[0];
      if (child === undefined || d.valueOffsets === undefined || child.values === undefined) {
        throw invalid('input_ids has no offsets or values buffer');
      }
      const offsets = d.valueOffsets.subarray(d.offset, d.offset + d.length + 1) as Int32Array;
      if (offsets.length !== d.length + 1) {
        throw invalid(`offsets buffer holds ${offsets.length} entries, ${d.length + 1} needed`);
      }
      const values = (child.values as Uint32Array).subarray(child.offset, child.offset + child.length);
      if (values.length !== child.length) {
        throw invalid(`values buffer holds ${values.length} tokens, ${child.length} declared`);
      }
      const first = offsets[0];
      if (first < 0 || offsets[offsets.length - 1] > values.length) {
        throw invalid(`offsets [${first}, ${offsets[offsets.length - 1]}] outside the ${values.length} values`);
      }
      for (let i = 1; i < offsets.length; i++) {
        if (offsets[i] < offsets[i - 1]) throw invalid(`offsets decrease at row ${i}`);
      }
      parts.push({ tokens: values, offsets });
    }
  }

  let tokens: Uint32Array;
  let docOffsets: Int32Array;
  const single = parts.length === 1 ? parts[0] : undefined;
  if (single !== undefined && single.offsets[0] === 0) {
    docOffsets = single.offsets;
    tokens = single.tokens.subarray(0, single.offsets[single.offsets.length - 1]);
  } else {
    // Several batches (or a rebased slice): concatenate into fresh arrays.
    let nTok = 0;
    let nDoc = 0;
    for (const p of parts) {
      nTok += p.offsets[p.offsets.length - 1] - p.offsets[0];
      nDoc += p.offsets.length - 1;
    }
    tokens = new Uint32Array(nTok);
    docOffsets = new Int32Array(nDoc + 1);
    let t = 0;
    let r = 0;
    for (const p of parts) {
      const base = p.offsets[0];
      tokens.set(p.tokens.subarray(base, p.offsets[p.offsets.length - 1]), t);
      for (let i = 1; i < p.offsets.length; i++) docOffsets[++r] = t + p.offsets[i] - base;
      t += p.offsets[p.offsets.length - 1] - base;
    }
  }
  const numDocs = docOffsets.length - 1;

  const declaredTokens = metadata.get(KEY_TOKENS);
  if (declaredTokens !== undefined && Number(declaredTokens) !== tokens.length) {
    throw invalid(`metadata says ${declaredTokens} tokens, the data holds ${tokens.length}`);
  }
  const declaredDocs = metadata.get(KEY_DOCS);
  if (declaredDocs !== undefined && Number(declaredDocs) !== numDocs) {
    throw invalid(`metadata says ${declaredDocs} documents, the data holds ${numDocs}`);
  }

  return { path, tokens, docOffsets, numDocs, tokenizerHash, metadata, fileBytes };
}

// ---------------------------------------------------------------------------------------------
// Manifest

function manifestPath(dir: string): string {
  return nodePath.join(dir, MANIFEST_FILE);
}

export function writeManifest(dir: string, m: ShardManifest): void {
  const file = manifestPath(dir);
  validateManifest(m, file); // never write something readManifest would refuse
  writeFileAtomic(file, Buffer.from(JSON.stringify(m, null, 2) + '\n', 'utf8'));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function validateManifest(m: unknown, file: string): ShardManifest {
  const fail = (key: string, msg: string): Error => new Error(`${file}: key "${key}" ${msg}`);
  const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!isObject(m)) throw new Error(`${file}: manifest is not a JSON object`);
  if (m.format !== MANIFEST_FORMAT) {
    throw fail('format', `is ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"`);
  }
  if (typeof m.tokenizer_hash !== 'string' || m.tokenizer_hash.length === 0) {
    throw fail('tokenizer_hash', `must be a non-empty string, got ${JSON.stringify(m.tokenizer_hash)}`);
  }
  if (!Number.isSafeInteger(m.vocab_size) || (m.vocab_size as number) <= 0) {
    throw fail('vocab_size', `must be a positive integer, got ${JSON.stringify(m.vocab_size)}`);
  }
  if (!count(m.eos_id) || (m.eos_id as number) >= (m.vocab_size as number)) {
    throw fail('eos_id', `must be an integer in [0, vocab_size=${m.vocab_size}), got ${JSON.stringify(m.eos_id)}`);
  }
  if (typeof m.created !== 'string') throw fail('created', `must be a string, got ${JSON.stringify(m.created)}`);
  if (m.stats !== undefined && !isObject(m.stats)) throw fail('stats', 'must be an object when present');
  if (!isObject(m.splits)) throw fail('splits', 'must be an object mapping split names to {files, num_tokens, num_docs}');
  for (const [name, s] of Object.entries(m.splits)) {
    const k = `splits.${name}`;
    if (!isObject(s)) throw fail(k, 'must be an object {files, num_tokens, num_docs}');
    if (!Array.isArray(s.files) || !s.files.every((f) => typeof f === 'string' && f.length > 0)) {
      throw fail(`${k}.files`, `must be an array of file names, got ${JSON.stringify(s.files)}`);
    }
    if (!count(s.num_tokens)) throw fail(`${k}.num_tokens`, `must be a non-negative integer, got ${JSON.stringify(s.num_tokens)}`);
    if (!count(s.num_docs)) throw fail(`${k}.num_docs`, `must be a non-negative integer, got ${JSON.stringify(s.num_docs)}`);
  }
  return m as unknown as ShardManifest;
}

export function readManifest(dir: string): ShardManifest {
  const file = manifestPath(dir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read shard manifest (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: manifest is not valid JSON (${(e as Error).message})`);
  }
  return validateManifest(json, file);
}

/**
 * Reads the manifest in `dir` and every shard of `split`. With `expectedTokenizerHash`, shards made
 * with another tokenizer are an error.
 */
export function openShardSplit(dir: string, split: string, expectedTokenizerHash?: string): TokenShard[] {
  const m = readManifest(dir);
  const file = manifestPath(dir);
  const otherTokenizer = (found: string, where: string): Error =>
    new Error(
      `${dir}: the shards were made with another tokenizer (${where} has tokenizer hash ${found}, ` +
        `expected ${expectedTokenizerHash}); prepare the data again with this tokenizer`,
    );
  if (expectedTokenizerHash !== undefined && m.tokenizer_hash !== expectedTokenizerHash) {
    throw otherTokenizer(m.tokenizer_hash, file);
  }
  const s = m.splits[split];
  if (s === undefined || !Object.prototype.hasOwnProperty.call(m.splits, split)) {
    throw new Error(`${file}: no split "${split}" (splits: ${Object.keys(m.splits).join(', ') || 'none'})`);
  }
  const shards: TokenShard[] = [];
  let nTok = 0;
  let nDoc = 0;
  for (const f of s.files) {
    const shard = readTokenShard(nodePath.resolve(dir, f));
    if (expectedTokenizerHash !== undefined && shard.tokenizerHash !== expectedTokenizerHash) {
      throw otherTokenizer(shard.tokenizerHash, shard.path);
    }
    if (shard.tokenizerHash !== m.tokenizer_hash) {
      throw new Error(
        `${shard.path}: tokenizer hash ${shard.tokenizerHash} differs from the manifest's ${m.tokenizer_hash} (${file})`,
      );
    }
    nTok += shard.tokens.length;
    nDoc += shard.numDocs;
    shards.push(shard);
  }
  if (nTok !== s.num_tokens || nDoc !== s.num_docs) {
    throw new Error(
      `${file}: split "${split}" declares ${s.num_tokens} tokens in ${s.num_docs} documents, ` +
        `its shards hold ${nTok} tokens in ${nDoc} documents`,
    );
  }
  return shards;
}
