// tokenizer_cli.ts — `ko-train tokenizer extend` (learn Korean pieces with a Unigram LM in the native core and
// merge them into a byte-level BPE tokenizer, tokenizer_extend.ts) and `ko-train tokenizer report`
// (tokens per 1,000 characters per language for two tokenizers, side by side).
import fs from 'node:fs';
import path from 'node:path';
import type { LineIssues } from './jsonl.js';
import { native } from './native.js';
import { batchDocs, packDocs, readDocumentsOf } from './prep/documents.js';
import { ProgressBar } from './progress.js';
import { TextTokenizer, defaultTokenizerPath } from './tokenizer.js';
import { extendByteLevelBpe, type TokenizerJson } from './tokenizer_extend.js';

interface TokenizerNative {
  countHangulWords(text: Buffer, offsets: BigInt64Array, o: { branchingEntropySplit?: boolean }): Promise<{ words: string[]; counts: Float64Array }>;
  trainUnigram(
    words: string[],
    counts: Float64Array,
    o: { vocabSize: number; maxPieceChars: number },
    onProgress?: (p: { round: number; iteration: number; pieces: number; logLikelihood: number }) => void,
  ): Promise<{ pieces: string[]; logProbs: Float64Array }>;
}

function tokNative(): TokenizerNative {
  const n = native() as unknown as Partial<TokenizerNative>;
  if (typeof n.trainUnigram !== 'function' || typeof n.countHangulWords !== 'function')
    throw new Error('the loaded addon has no Unigram trainer; rebuild it (npm install, or npx cmake-js compile)');
  return n as TokenizerNative;
}

/** A base name (llama3.1, qwen3) or a tokenizer.json path → the file. */
export function resolveBaseTokenizer(base: string): string {
  if (base === 'llama3.1' || base === 'llama3') return defaultTokenizerPath();
  if (base === 'qwen3') {
    throw new Error('--base qwen3: no Qwen3 tokenizer ships with ko-train; download tokenizer.json from the Hugging Face repo Qwen/Qwen3-0.6B and pass its path');
  }
  const file = fs.existsSync(base) && fs.statSync(base).isDirectory() ? path.join(base, 'tokenizer.json') : base;
  if (!fs.existsSync(file)) throw new Error(`--base: ${file} does not exist (give llama3.1, qwen3 or a tokenizer.json path)`);
  return file;
}

export async function tokenizerExtendCommand(o: {
  base: string;
  corpus: string[];
  add: number;
  out: string;
  field: string;
  maxPieceChars: number;
  entropySplit: boolean;
  log: (s: string) => void;
}): Promise<void> {
  if (!Number.isInteger(o.add) || o.add < 1) throw new Error(`--add: ${o.add} must be a positive integer`);
  if (!o.corpus.length) throw new Error('--corpus: give at least one file of Korean text (JSONL or plain text, .gz allowed)');
  const baseFile = resolveBaseTokenizer(o.base);
  const base = JSON.parse(fs.readFileSync(baseFile, 'utf8')) as TokenizerJson;
  const t0 = Date.now();
  const bar = new ProgressBar();

  // 1. Hangul words (runs, with their leading space) and their counts, batch by batch in native code.
  const counts = new Map<string, number>();
  const issues: LineIssues = { malformed: 0, examples: [] };
  let docs = 0;
  for await (const batch of batchDocs(readDocumentsOf(o.corpus, o.field, issues), 16e6)) {
    const packed = packDocs(batch);
    const r = await tokNative().countHangulWords(packed.bytes, packed.offsets, { branchingEntropySplit: o.entropySplit });
    r.words.forEach((w, i) => counts.set(w, (counts.get(w) ?? 0) + r.counts[i]));
    docs += batch.length;
    bar.update(docs, docs, `counting Hangul words: ${docs} documents, ${counts.size} distinct`, 0);
  }
  if (issues.malformed) o.log(`skipped ${issues.malformed} malformed lines (${issues.examples.join('; ')})`);
  if (counts.size === 0) throw new Error(`--corpus: no Hangul found in ${o.corpus.join(', ')}`);
  const words = [...counts.keys()];
  bar.log(`${docs} documents: ${words.length} distinct Hangul words in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  // 2. Unigram pieces, 3. merged into the base. More pieces than --add are learned, since some are already
  // base tokens; when the merge still runs out of pieces, learn again with twice as many (up to 3 times),
  // unless the corpus has no more to give.
  let vocabSize = Math.ceil(o.add * 1.25);
  let uni: { pieces: string[]; logProbs: Float64Array } = { pieces: [], logProbs: new Float64Array() };
  let merged: ReturnType<typeof extendByteLevelBpe> | null = null;
  let order: Array<readonly [string, number]> = [];
  for (let attempt = 0; attempt < 3; attempt++, vocabSize *= 2) {
    const t1 = Date.now();
    const target = vocabSize;
    uni = await tokNative().trainUnigram(words, Float64Array.from(words, (w) => counts.get(w)!), { vocabSize: target, maxPieceChars: o.maxPieceChars }, (p) =>
      bar.update(target, Math.max(target, p.pieces), `Unigram EM round ${p.round} iteration ${p.iteration}: ${p.pieces} pieces, log-likelihood ${p.logLikelihood.toExponential(4)}`, 0),
    );
    bar.log(`Unigram: ${uni.pieces.length} pieces (target ${target}) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    order = uni.pieces.map((p, i) => [p, uni.logProbs[i]] as const).filter(([p]) => [...p.trim()].length > 0);
    merged = extendByteLevelBpe(base, order.map(([p]) => p), o.add, baseFile);
    if (merged.stats.added >= o.add || uni.pieces.length < target) break;
  }
  const { json, stats } = merged!;
  fs.mkdirSync(o.out, { recursive: true });
  const outFile = path.join(o.out, 'tokenizer.json');
  const tmp = outFile + '.partial';
  fs.writeFileSync(tmp, JSON.stringify(json));
  const check = TextTokenizer.fromFile(tmp); // loads in `tokenizers`, or throws naming the file
  fs.renameSync(tmp, outFile);
  const cfgFile = path.join(path.dirname(baseFile), 'tokenizer_config.json');
  if (fs.existsSync(cfgFile)) fs.copyFileSync(cfgFile, path.join(o.out, 'tokenizer_config.json')); // special tokens, chat template
  fs.writeFileSync(path.join(o.out, 'pieces.tsv'), order.map(([p, s]) => `${p}\t${s.toFixed(6)}`).join('\n') + '\n');
  const report = { base: baseFile, corpus: o.corpus, documents: docs, hangul_words: words.length, unigram_pieces: uni.pieces.length, ...stats, vocab_size: check.vocabSize, seconds: (Date.now() - t0) / 1000 };
  fs.writeFileSync(path.join(o.out, 'extend_report.json'), JSON.stringify(report, null, 2) + '\n');
  bar.done();
  o.log(
    `extended ${path.basename(baseFile)}: ${stats.added} new tokens (${stats.pieces} pieces + ${stats.intermediates} intermediate; ` +
      `${stats.alreadyInBase} pieces were already base tokens, ${stats.skipped} could not be built), ids ${stats.firstNewId}–${stats.firstNewId + stats.added - 1}, ` +
      `vocabulary ${check.vocabSize} → ${outFile}`,
  );
}

// ---- report ----------------------------------------------------------------------------------------

const HANGUL = /[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\ud7b0-\ud7ff]/u;

/** ko: at least 80% of the letters are Hangul; en: letters, none Hangul, at least 80% ASCII; else other. */
export function lineLanguage(line: string): 'ko' | 'en' | 'other' {
  let letters = 0, hangul = 0, ascii = 0;
  for (const ch of line) {
    if (!/\p{L}/u.test(ch)) continue;
    letters++;
    if (HANGUL.test(ch)) hangul++;
    else if (ch < '\u0080') ascii++;
  }
  if (letters === 0) return 'other';
  if (hangul >= 0.8 * letters) return 'ko';
  if (hangul === 0 && ascii >= 0.8 * letters) return 'en';
  return 'other';
}

export interface TokenizerReportRow {
  language: string;
  lines: number;
  chars: number;
  tokens: number[]; // per tokenizer
  per1000: number[];
  ratio: number; // last / first
  mbPerS: number[];
}

export async function tokenizerReportCommand(o: { tokenizers: string[]; data: string[]; field: string; json: boolean; log: (s: string) => void }): Promise<TokenizerReportRow[]> {
  if (o.tokenizers.length < 1) throw new Error('--tokenizer: give one or two tokenizer.json files (or llama3.1)');
  const toks = o.tokenizers.map((t) => TextTokenizer.fromFile(resolveBaseTokenizer(t)));
  const byLang = new Map<string, string[]>([['ko', []], ['en', []], ['other', []]]);
  const issues: LineIssues = { malformed: 0, examples: [] };
  for await (const d of readDocumentsOf(o.data, o.field, issues)) for (const line of d.text.split('\n')) if (line.trim()) byLang.get(lineLanguage(line))!.push(line);
  const rows: TokenizerReportRow[] = [];
  for (const [language, lines] of byLang) {
    if (!lines.length) continue;
    const chars = lines.reduce((a, l) => a + [...l].length, 0);
    const bytes = lines.reduce((a, l) => a + Buffer.byteLength(l), 0);
    const tokens: number[] = [], mbPerS: number[] = [];
    for (const t of toks) {
      const t0 = process.hrtime.bigint();
      const enc = await t.encodeBatch(lines);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      tokens.push(enc.reduce((a, e) => a + e.length, 0));
      mbPerS.push(bytes / 1e6 / s);
    }
    rows.push({ language, lines: lines.length, chars, tokens, per1000: tokens.map((n) => (1000 * n) / chars), ratio: tokens[tokens.length - 1] / tokens[0], mbPerS });
  }
  if (o.json) {
    o.log(JSON.stringify({ tokenizers: toks.map((t) => t.path), rows }, null, 2));
  } else {
    o.log(toks.map((t, i) => `tokenizer ${String.fromCharCode(65 + i)}: ${t.path} (${t.vocabSize} tokens)`).join('\n'));
    const head = ['language', 'lines', 'chars', ...toks.flatMap((_, i) => [`tok/1k ${String.fromCharCode(65 + i)}`, `MB/s ${String.fromCharCode(65 + i)}`]), ...(toks.length > 1 ? ['ratio B/A'] : [])];
    const body = rows.map((r) => [r.language, String(r.lines), String(r.chars), ...r.per1000.flatMap((p, i) => [p.toFixed(1), r.mbPerS[i].toFixed(2)]), ...(toks.length > 1 ? [r.ratio.toFixed(3)] : [])]);
    const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    for (const r of [head, w.map((n) => '-'.repeat(n)), ...body]) o.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  '));
  }
  return rows;
}
