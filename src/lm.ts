// lm.ts — n-gram language models for the perplexity filter: estimation (interpolated modified Kneser-Ney,
// as KenLM's lmplz), ARPA files (plain or .gz) and the text normalization both training and scoring use.
// The counting, estimation and scoring loops are native (native/ngram_*.cpp).
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { batchDocs, packDocs, unpackTexts, type Doc } from './prep/documents.js';
import { prepNative, type NgramModelHandle } from './prep/native_prep.js';
import type { TextTokenizer } from './tokenizer.js';

// The LM's view of a document, as CCNet normalizes before KenLM: NFKC, lower case, every digit 0,
// punctuation split from words, whitespace collapsed; one sentence per line (empty lines dropped).
// This is the reference; lmNormalizeBatch gives the same strings with the regex part in native code.
export function lmNormalize(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/\p{Nd}/gu, '0')
    .replace(/([\p{P}\p{S}])/gu, ' $1 ')
    .split('\n')
    .map((l) => l.replace(/[^\S\n]+/g, ' ').trim())
    .filter((l) => l.length > 0)
    .join('\n');
}

// lmNormalize over a batch: NFKC and lower case here (ICU, fast), the rest in native/lm_normalize.cpp
// (the regexes ran at ~30 MB/s; native tables generated from the same regex engine keep it identical).
export async function lmNormalizeBatch(texts: string[]): Promise<string[]> {
  if (texts.length === 0) return [];
  const packed = packDocs(texts.map((t) => ({ id: '', text: t.normalize('NFKC').toLowerCase() })));
  const r = await prepNative().lmNormalize(packed.bytes, packed.offsets);
  return unpackTexts(r.text, r.offsets);
}

export type LmTokenization = 'whitespace' | 'tokenizer';

// Lines of space-separated LM tokens for a batch of documents.
export async function lmLines(texts: string[], how: LmTokenization, tok: TextTokenizer | null): Promise<string[]> {
  const norm = await lmNormalizeBatch(texts);
  if (how === 'whitespace') return norm;
  if (!tok) throw new Error('prep.perplexity.tokenization: tokenizer needs a tokenizer (tokenizer.path)');
  // Each line becomes the tokenizer's pieces (as strings, spaces inside pieces made visible by the tokenizer).
  const out: string[] = [];
  for (const doc of norm) {
    const lines = doc.split('\n');
    const enc = await tok.encodeBatch(lines);
    out.push(enc.map((ids) => Array.from(ids, (id) => tok.idToToken(id) ?? '<unk>').join(' ')).join('\n'));
  }
  return out;
}

export async function trainLm(
  docs: AsyncIterable<Doc>,
  o: { order: number; tokenization: LmTokenization; tokenizer: TextTokenizer | null; batchBytes: number },
  progress?: (docs: number) => void,
): Promise<{ model: NgramModelHandle; tokens: number; sentences: number }> {
  const counter = new (prepNative().NgramCounter)(o.order);
  let n = 0;
  for await (const batch of batchDocs(docs, o.batchBytes)) {
    const lines = await lmLines(batch.map((d) => d.text), o.tokenization, o.tokenizer);
    await counter.addText(Buffer.from(lines.join('\n') + '\n', 'utf8'));
    n += batch.length;
    progress?.(n);
  }
  const model = await counter.estimate();
  return { model, tokens: counter.tokens, sentences: counter.sentences };
}

// Writes the model as ARPA; a name ending in .gz is gzipped.
export async function saveArpa(model: NgramModelHandle, file: string): Promise<void> {
  if (!/\.gz$/i.test(file)) return model.writeArpa(file);
  const plain = `${file}.partial.arpa`;
  await model.writeArpa(plain);
  await pipeline(fs.createReadStream(plain), zlib.createGzip(), fs.createWriteStream(`${file}.partial`));
  fs.renameSync(`${file}.partial`, file);
  fs.rmSync(plain);
}

// Reads an ARPA file (plain or .gz) in chunks into the native model; errors name the file and line.
export async function loadArpa(file: string): Promise<NgramModelHandle> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such ARPA file`);
  const reader = new (prepNative().ArpaReader)();
  let input: NodeJS.ReadableStream = fs.createReadStream(file);
  if (/\.gz$/i.test(file)) input = (input as fs.ReadStream).pipe(zlib.createGunzip());
  try {
    for await (const chunk of input) reader.feed(chunk as Buffer);
    return reader.finish();
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

export function perplexity(sumLog10: number, nTokens: number): number {
  return nTokens > 0 ? 10 ** (-sumLog10 / nTokens) : Infinity;
}
