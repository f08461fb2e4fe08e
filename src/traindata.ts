// traindata.ts — finds the token data a run trains and evaluates on: Arrow shards made by `prep` (checked
// against the tokenizer's hash) or pre-tokenized JSONL, and the tokenizer that belongs to them.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.js';
import { describeIssues, packSequences, readInputIdsJsonl, type LineIssues, type TokenSequences } from './jsonl.js';
import { openShardSplit, readManifest, readTokenShard } from './shards.js';
import { TextTokenizer } from './tokenizer.js';

export interface TokenData {
  source: string;
  streams: Uint32Array[]; // one token stream per shard (zero-copy views of the shard files)
  docOffsets: Int32Array[] | null;
  tokenizerHash: string | null;
  vocabSize: number | null; // from the shard manifest, when known
  streamSources: string[] | null; // per stream, its data source (shard dirs with several sources)
  sourceWeights: Record<string, number> | null; // the weights prep recorded
}

export function shardDirOf(cfg: Config): string {
  return cfg.data.shard_dir ?? path.join(cfg.run.out_dir, 'shards');
}

// The tokenizer of a run: the one prep wrote into out_dir, else tokenizer.path, else init_from's.
export function runTokenizerFile(cfg: Config): string | null {
  const candidates = [
    path.join(cfg.run.out_dir, 'tokenizer.json'),
    cfg.tokenizer.path,
    cfg.model.init_from ? path.join(cfg.model.init_from, 'tokenizer.json') : null,
  ];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  return null;
}

export function loadRunTokenizer(cfg: Config): TextTokenizer | null {
  const f = runTokenizerFile(cfg);
  return f ? TextTokenizer.fromFile(f) : null;
}

// `where` is a shard dir (with manifest.json), a single .arrow shard, or a pre-tokenized .jsonl file.
export async function loadTokenData(
  where: string,
  split: string,
  expectedHash: string | null,
  log: (s: string) => void,
): Promise<TokenData> {
  if (!fs.existsSync(where)) throw new Error(`${where}: no such file or directory (run the prep stage first?)`);
  if (fs.statSync(where).isDirectory()) {
    const manifest = readManifest(where);
    const shards = openShardSplit(where, split, expectedHash ?? undefined);
    const fileSource = new Map<string, string>();
    for (const [name, s] of Object.entries(manifest.sources ?? {})) for (const f of s.splits[split]?.files ?? []) fileSource.set(f, name);
    const files = manifest.splits[split].files;
    return {
      source: `${where} (${split})`,
      streams: shards.map((s) => s.tokens),
      docOffsets: shards.map((s) => s.docOffsets),
      tokenizerHash: manifest.tokenizer_hash,
      vocabSize: manifest.vocab_size,
      streamSources: manifest.sources ? files.map((f) => fileSource.get(f) ?? 'default') : null,
      sourceWeights: manifest.sources ? Object.fromEntries(Object.entries(manifest.sources).map(([k, v]) => [k, v.weight])) : null,
    };
  }
  if (/\.arrow$/i.test(where)) {
    const s = readTokenShard(where);
    if (expectedHash && s.tokenizerHash && s.tokenizerHash !== expectedHash)
      throw new Error(`${where}: made with tokenizer ${s.tokenizerHash}, but this run uses ${expectedHash}`);
    return { source: where, streams: [s.tokens], docOffsets: [s.docOffsets], tokenizerHash: s.tokenizerHash, vocabSize: null, streamSources: null, sourceWeights: null };
  }
  const issues: LineIssues = { malformed: 0, examples: [] };
  const seqs = await readInputIdsJsonl(where, issues);
  if (issues.malformed) log(`${where}: ${describeIssues(issues)}`);
  return {
    source: where,
    streams: [seqs.tokens],
    docOffsets: [Int32Array.from(seqs.offsets)],
    tokenizerHash: null,
    vocabSize: null,
    streamSources: null,
    sourceWeights: null,
  };
}

// Evaluation sequences: every document (or JSONL line) on its own, at most `maxSeqs`.
export function documentsAsSequences(d: TokenData, maxSeqs = Infinity): TokenSequences {
  const parts: Uint32Array[] = [];
  outer: for (let s = 0; s < d.streams.length; s++) {
    const offs = d.docOffsets?.[s] ?? Int32Array.from([0, d.streams[s].length]);
    for (let i = 0; i + 1 < offs.length; i++) {
      if (parts.length >= maxSeqs) break outer;
      const doc = d.streams[s].subarray(offs[i], offs[i + 1]);
      if (doc.length < 2) continue;
      parts.push(doc);
    }
  }
  return packSequences(parts);
}
