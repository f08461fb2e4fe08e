// prep.ts — raw text to Arrow token shards: read JSONL/text (malformed lines counted and skipped), Unicode
// NFC, drop documents below data.min_chars, take or train the tokenizer, encode (end-of-text after every
// document), split train/val by a seeded draw per document, write shards and a manifest.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from './config.js';
import { describeIssues, packSequences, readTextDocs, type LineIssues } from './jsonl.js';
import { mulberry32 } from './sampler.js';
import { writeManifest, writeTokenShard, type ShardManifest } from './shards.js';
import { TextTokenizer, defaultTokenizerPath, trainByteLevelBpe } from './tokenizer.js';
import { shardDirOf } from './traindata.js';

export interface PrepStats {
  docs_read: number;
  malformed_lines: number;
  dropped_short: number;
  docs: Record<string, number>;
  tokens: Record<string, number>;
  chars: number;
  tokens_per_char: number;
  tokenizer: string;
  seconds: number;
}

async function collectDocs(cfg: Config, log: (s: string) => void) {
  if (cfg.data.inputs.length === 0) throw new Error('data.inputs: no input files given for prep');
  const issues: LineIssues = { malformed: 0, examples: [] };
  const docs: string[] = [];
  let read = 0, short = 0;
  for (const file of cfg.data.inputs) {
    for await (const raw of readTextDocs(file, cfg.data.text_field, issues)) {
      read++;
      const text = raw.normalize('NFC').trim();
      if (text.length < cfg.data.min_chars) {
        short++;
        continue;
      }
      docs.push(text);
      if (cfg.data.max_docs && docs.length >= cfg.data.max_docs) break;
    }
  }
  if (issues.malformed) log(`prep: ${describeIssues(issues)}`);
  return { docs, read, short, malformed: issues.malformed };
}

async function prepareTokenizer(cfg: Config, docs: string[], log: (s: string) => void): Promise<string> {
  const dest = path.join(cfg.run.out_dir, 'tokenizer.json');
  if (cfg.tokenizer.train_vocab_size) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ko-train-bpe-'));
    const corpus = path.join(tmp, 'corpus.txt');
    fs.writeFileSync(corpus, docs.join('\n'));
    const t0 = Date.now();
    await trainByteLevelBpe({ files: [corpus], vocabSize: cfg.tokenizer.train_vocab_size, specialTokens: ['<|endoftext|>'], outPath: dest });
    fs.rmSync(tmp, { recursive: true, force: true });
    log(`prep: trained a byte-level BPE tokenizer with ${cfg.tokenizer.train_vocab_size} tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s → ${dest}`);
  } else {
    const src = cfg.tokenizer.path ?? defaultTokenizerPath();
    if (path.resolve(src) !== path.resolve(dest)) fs.copyFileSync(src, dest);
    log(`prep: tokenizer ${src}`);
  }
  return dest;
}

export async function runPrep(cfg: Config, log: (s: string) => void = console.log): Promise<PrepStats> {
  const t0 = Date.now();
  fs.mkdirSync(cfg.run.out_dir, { recursive: true });
  const { docs, read, short, malformed } = await collectDocs(cfg, log);
  if (docs.length === 0) throw new Error(`data.inputs: no usable documents in ${cfg.data.inputs.join(', ')}`);
  const tokFile = await prepareTokenizer(cfg, docs, log);
  const tok = TextTokenizer.fromFile(tokFile);
  const shardDir = shardDirOf(cfg);
  fs.mkdirSync(shardDir, { recursive: true });
  for (const f of fs.readdirSync(shardDir)) if (/^(train|val)-\d+\.arrow$/.test(f)) fs.rmSync(path.join(shardDir, f));

  // Per split: the pending token stream of the shard being filled, and the files written.
  const splits: Record<string, { parts: Uint32Array[]; pending: number; files: string[]; tokens: number; docs: number }> = {};
  for (const s of ['train', 'val']) splits[s] = { parts: [], pending: 0, files: [], tokens: 0, docs: 0 };
  const flush = (name: string) => {
    const sp = splits[name];
    if (sp.pending === 0) return;
    const { tokens, offsets } = packSequences(sp.parts);
    const file = `${name}-${String(sp.files.length).padStart(5, '0')}.arrow`;
    writeTokenShard(path.join(shardDir, file), tokens, Int32Array.from(offsets), { tokenizerHash: tok.hash });
    sp.files.push(file);
    sp.parts = [];
    sp.pending = 0;
  };

  const rand = mulberry32(cfg.run.seed ^ 0x5eed);
  let chars = 0;
  const batch = 256;
  for (let i = 0; i < docs.length; i += batch) {
    const chunk = docs.slice(i, i + batch);
    const encoded = await tok.encodeBatch(chunk);
    encoded.forEach((ids, j) => {
      const withEos = new Uint32Array(ids.length + 1);
      withEos.set(ids);
      withEos[ids.length] = tok.eosId;
      const name = rand() < cfg.data.val_fraction ? 'val' : 'train';
      const sp = splits[name];
      sp.parts.push(withEos);
      sp.pending += withEos.length;
      sp.tokens += withEos.length;
      sp.docs++;
      chars += chunk[j].length;
      if (sp.pending >= cfg.data.shard_tokens) flush(name);
    });
    if (process.stdout.isTTY) process.stdout.write(`\rprep: encoded ${Math.min(i + batch, docs.length)}/${docs.length} documents`);
  }
  if (process.stdout.isTTY) process.stdout.write('\n');
  flush('train');
  flush('val');
  const manifest: ShardManifest = {
    format: 'ko-train-shards-v1',
    tokenizer_hash: tok.hash,
    vocab_size: tok.vocabSize,
    eos_id: tok.eosId,
    splits: Object.fromEntries(
      Object.entries(splits)
        .filter(([, s]) => s.files.length > 0)
        .map(([k, s]) => [k, { files: s.files, num_tokens: s.tokens, num_docs: s.docs }]),
    ),
    created: new Date().toISOString(),
    stats: { docs_read: read, malformed_lines: malformed, dropped_short: short, chars },
  };
  writeManifest(shardDir, manifest);
  const stats: PrepStats = {
    docs_read: read,
    malformed_lines: malformed,
    dropped_short: short,
    docs: { train: splits.train.docs, val: splits.val.docs },
    tokens: { train: splits.train.tokens, val: splits.val.tokens },
    chars,
    tokens_per_char: (splits.train.tokens + splits.val.tokens) / Math.max(1, chars),
    tokenizer: tokFile,
    seconds: (Date.now() - t0) / 1000,
  };
  log(
    `prep: ${read} documents read, ${malformed} malformed lines skipped, ${short} too short; ` +
      `train ${stats.docs.train} docs / ${stats.tokens.train} tokens, val ${stats.docs.val} docs / ${stats.tokens.val} tokens ` +
      `(${stats.tokens_per_char.toFixed(3)} tokens/char) → ${shardDir} in ${stats.seconds.toFixed(1)} s`,
  );
  return stats;
}
