// documents.ts — streams raw documents from JSONL or plain text, either optionally gzipped, and groups them
// into batches of about N bytes for the native core. Nothing here holds more than one batch.
import fs from 'node:fs';
import readline from 'node:readline';
import zlib from 'node:zlib';
import type { LineIssues } from '../jsonl.js';

export interface Doc {
  id: string; // the input's own "id" field when it has one, else "<file>:<line>"
  text: string;
}

function note(issues: LineIssues, where: string, why: string): void {
  issues.malformed++;
  if (issues.examples.length < 5) issues.examples.push(`${where}: ${why}`);
}

export function isJsonlPath(file: string): boolean {
  return /\.jsonl?(\.gz)?$/i.test(file);
}

// Lines of a file, gunzipped when it ends in .gz. A corrupt gzip stream is an error naming the file.
async function* fileLines(file: string, onBytes?: (n: number) => void): AsyncGenerator<[string, number]> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const raw = fs.createReadStream(file);
  if (onBytes) raw.on('data', (c) => onBytes((c as Buffer).length));
  let input: NodeJS.ReadableStream = raw;
  if (/\.gz$/i.test(file)) {
    const gunzip = zlib.createGunzip();
    raw.pipe(gunzip);
    input = gunzip;
  }
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const line of rl) yield [line, ++n];
  } catch (e) {
    throw new Error(`${file}: cannot read past line ${n} (${(e as Error).message})`);
  }
}

// The documents of several files, one after the other (readDocuments on each).
export async function* readDocumentsOf(files: string[], field: string, issues: LineIssues): AsyncGenerator<Doc> {
  for (const f of files) yield* readDocuments(f, field, issues);
}

// Documents of one file: a JSONL line's `field` (string), or a plain-text line. Malformed lines are counted.
export async function* readDocuments(
  file: string,
  field: string,
  issues: LineIssues,
  onBytes?: (n: number) => void,
): AsyncGenerator<Doc> {
  const jsonl = isJsonlPath(file);
  for await (const [line, n] of fileLines(file, onBytes)) {
    if (line.trim() === '') continue;
    const where = `${file}:${n}`;
    if (!jsonl) {
      yield { id: where, text: line };
      continue;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      note(issues, where, `not JSON (${(e as Error).message.slice(0, 60)})`);
      continue;
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      note(issues, where, 'not a JSON object');
      continue;
    }
    const rec = obj as Record<string, unknown>;
    const text = rec[field];
    if (typeof text !== 'string') {
      note(issues, where, `no string field '${field}'`);
      continue;
    }
    const id = typeof rec.id === 'string' || typeof rec.id === 'number' ? String(rec.id) : where;
    yield { id, text };
  }
}

// A batch in the form the native core takes: UTF-8 bytes back to back and nDocs + 1 byte offsets.
export interface PackedBatch {
  docs: Doc[];
  bytes: Buffer;
  offsets: BigInt64Array;
}

export function packDocs(docs: Doc[]): PackedBatch {
  const parts = docs.map((d) => Buffer.from(d.text, 'utf8'));
  const offsets = new BigInt64Array(docs.length + 1);
  let at = 0;
  parts.forEach((p, i) => {
    at += p.length;
    offsets[i + 1] = BigInt(at);
  });
  return { docs, bytes: Buffer.concat(parts, at), offsets };
}

// Splits packed output text (as the native rule filter returns it) back into strings.
export function unpackTexts(bytes: Buffer, offsets: BigInt64Array): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < offsets.length; i++) out.push(bytes.toString('utf8', Number(offsets[i]), Number(offsets[i + 1])));
  return out;
}

// Groups a document stream into batches of about maxBytes of UTF-8 (a larger document is a batch alone).
export async function* batchDocs(docs: AsyncIterable<Doc>, maxBytes: number): AsyncGenerator<Doc[]> {
  let batch: Doc[] = [];
  let bytes = 0;
  for await (const d of docs) {
    const n = Buffer.byteLength(d.text, 'utf8');
    if (batch.length && bytes + n > maxBytes) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(d);
    bytes += n;
  }
  if (batch.length) yield batch;
}
