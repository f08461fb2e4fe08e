// jsonl.ts — line-oriented readers that never crash on bad input: malformed lines are counted, the first
// few reported with their line numbers, and skipped.
import fs from 'node:fs';
import readline from 'node:readline';

export interface LineIssues {
  malformed: number;
  examples: string[]; // "file:line: why", at most 5
}

function note(issues: LineIssues, where: string, why: string): void {
  issues.malformed++;
  if (issues.examples.length < 5) issues.examples.push(`${where}: ${why}`);
}

export function describeIssues(issues: LineIssues): string {
  if (issues.malformed === 0) return '';
  return `skipped ${issues.malformed} malformed line${issues.malformed > 1 ? 's' : ''} (${issues.examples.join('; ')}${issues.malformed > issues.examples.length ? '; ...' : ''})`;
}

// Parses one JSONL line into an object, or notes why it is malformed and returns null.
function parseLine(line: string, where: string, issues: LineIssues): Record<string, unknown> | null {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (e) {
    note(issues, where, `not JSON (${(e as Error).message.slice(0, 60)})`);
    return null;
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    note(issues, where, 'not a JSON object');
    return null;
  }
  return obj as Record<string, unknown>;
}

async function* lines(file: string): AsyncGenerator<[string, number]> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const rl = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) yield [line, ++n];
}

// Text documents: .jsonl with a string field per line, otherwise a plain-text file with one document per line.
export async function* readTextDocs(file: string, field: string, issues: LineIssues): AsyncGenerator<string> {
  const isJsonl = /\.jsonl?$/i.test(file);
  for await (const [line, n] of lines(file)) {
    if (line.trim() === '') continue;
    if (!isJsonl) {
      yield line;
      continue;
    }
    const obj = parseLine(line, `${file}:${n}`, issues);
    if (!obj) continue;
    const text = obj[field];
    if (typeof text !== 'string') {
      note(issues, `${file}:${n}`, `no string field '${field}'`);
      continue;
    }
    yield text;
  }
}

export interface TokenSequences {
  tokens: Uint32Array; // all sequences back to back
  offsets: Uint32Array; // nSeq + 1 boundaries
}

// Pre-tokenized JSONL: {"input_ids": [...]} per line. Ids must be integers in [0, 2^32).
export async function readInputIdsJsonl(file: string, issues: LineIssues): Promise<TokenSequences> {
  const seqs: number[][] = [];
  for await (const [line, n] of lines(file)) {
    if (line.trim() === '') continue;
    const obj = parseLine(line, `${file}:${n}`, issues);
    if (!obj) continue;
    const ids = obj.input_ids;
    if (!Array.isArray(ids) || ids.length === 0) {
      note(issues, `${file}:${n}`, "no non-empty 'input_ids' array");
      continue;
    }
    if (!ids.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)) {
      note(issues, `${file}:${n}`, "'input_ids' holds a value that is not a non-negative integer");
      continue;
    }
    seqs.push(ids as number[]);
  }
  return packSequences(seqs);
}

// Lays sequences back to back: one token array and nSeq + 1 boundaries.
export function packSequences(seqs: ArrayLike<number>[]): TokenSequences {
  const total = seqs.reduce((a, s) => a + s.length, 0);
  const tokens = new Uint32Array(total);
  const offsets = new Uint32Array(seqs.length + 1);
  let at = 0;
  seqs.forEach((s, i) => {
    tokens.set(s, at);
    at += s.length;
    offsets[i + 1] = at;
  });
  return { tokens, offsets };
}
