// lm_cli.ts — `ko-train lm train` (estimate an n-gram LM from text, like KenLM's lmplz) and
// `ko-train lm query` (score lines, like KenLM's query).
import fs from 'node:fs';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { loadArpa, lmNormalize, perplexity, saveArpa, trainLm, type LmTokenization } from './lm.js';
import type { LineIssues } from './jsonl.js';
import { readDocumentsOf } from './prep/documents.js';
import { TextTokenizer } from './tokenizer.js';

export async function lmTrainCommand(o: {
  inputs: string[];
  order: number;
  out: string;
  field: string;
  tokenization: LmTokenization;
  tokenizer: string | null;
  log: (s: string) => void;
}): Promise<void> {
  if (!Number.isInteger(o.order) || o.order < 1 || o.order > 6) throw new Error(`--order: ${o.order} is not allowed (1 to 6)`);
  const issues: LineIssues = { malformed: 0, examples: [] };
  const tok = o.tokenizer ? TextTokenizer.fromFile(o.tokenizer) : null;
  const t0 = Date.now();
  const r = await trainLm(readDocumentsOf(o.inputs, o.field, issues), { order: o.order, tokenization: o.tokenization, tokenizer: tok, batchBytes: 16e6 });
  if (issues.malformed) o.log(`skipped ${issues.malformed} malformed lines (${issues.examples.join('; ')})`);
  await saveArpa(r.model, o.out);
  o.log(`estimated a ${o.order}-gram interpolated modified Kneser-Ney model on ${r.sentences} lines / ${r.tokens} tokens ` +
    `(n-grams per order: ${r.model.counts.join(', ')}) in ${((Date.now() - t0) / 1000).toFixed(1)} s → ${o.out}`);
}

// KenLM's query format: "word=id log10p" per token is replaced by "word log10p" (ids are internal), then
// "Total: X OOV: N" per line; the summary gives the perplexity including </s>.
export async function lmQueryCommand(o: { lm: string; input: string | null; normalize: boolean; log: (s: string) => void }): Promise<void> {
  const model = await loadArpa(o.lm);
  let input: NodeJS.ReadableStream = o.input ? fs.createReadStream(o.input) : process.stdin;
  if (o.input && /\.gz$/i.test(o.input)) input = (input as fs.ReadStream).pipe(zlib.createGunzip());
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let sum = 0, n = 0, oovs = 0;
  for await (const raw of rl) {
    const line = o.normalize ? lmNormalize(raw).replace(/\n/g, ' ') : raw.trim().replace(/\s+/g, ' ');
    const r = model.scoreSentence(line);
    const words = line ? line.split(' ') : [];
    const cells = [...words, '</s>'].map((w, i) => `${w} ${r.perWord[i].toFixed(6)}`);
    o.log(`${cells.join('\t')}\tTotal: ${r.total.toFixed(6)} OOV: ${r.oov}`);
    sum += r.total;
    n += words.length + 1;
    oovs += r.oov;
  }
  o.log(`Perplexity including OOVs: ${perplexity(sum, n).toFixed(4)}\tOOVs: ${oovs}\tTokens: ${n}`);
}
