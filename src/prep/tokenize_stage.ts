// tokenize_stage.ts — the last stage: the surviving documents of every source are encoded by tokenizer
// worker threads (batched; end-of-text after each document), split train/val by a seeded hash of the
// document's position, and written as Arrow shards of about data.shard_tokens tokens per source and split
// (`train-00000.arrow` for a single unnamed source, `train-<source>-00000.arrow` otherwise), then a
// manifest with the tokenizer hash and per-source counts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packSequences } from '../jsonl.js';
import { readManifest, writeManifest, writeTokenShard, type ShardManifest, type ShardSplit } from '../shards.js';
import { TextTokenizer, defaultTokenizerPath, trainByteLevelBpe } from '../tokenizer.js';
import { batchDocs } from './documents.js';
import { newStats, type StageStats } from './report.js';
import { fileBytes, fingerprint, stageDocs, type PrepContext, type StageOutput } from './stage.js';
import { TokenizePool } from './tokenize_pool.js';

// A uniform draw in [0, 1) from (seed, source, ordinal): the split of a document does not depend on
// which documents came before it, so a filter change elsewhere does not reshuffle train and val.
export function splitDraw(seed: number, source: string, ordinal: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  const s = `${source}#${ordinal}`;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

export async function prepareTokenizer(ctx: PrepContext, finals: Map<string, StageOutput>): Promise<string> {
  const { cfg } = ctx;
  const dest = path.join(cfg.run.out_dir, 'tokenizer.json');
  if (cfg.tokenizer.train_vocab_size) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ko-train-bpe-'));
    const corpus = path.join(tmp, 'corpus.txt');
    const fd = fs.openSync(corpus, 'w');
    for (const o of finals.values()) for await (const d of stageDocs(o.file)) fs.writeSync(fd, d.text + '\n');
    fs.closeSync(fd);
    const t0 = Date.now();
    await trainByteLevelBpe({ files: [corpus], vocabSize: cfg.tokenizer.train_vocab_size, specialTokens: ['<|endoftext|>'], outPath: dest });
    fs.rmSync(tmp, { recursive: true, force: true });
    ctx.bar.log(`prep: trained a byte-level BPE tokenizer with ${cfg.tokenizer.train_vocab_size} tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s → ${dest}`);
  } else {
    const src = cfg.tokenizer.path ?? defaultTokenizerPath();
    if (path.resolve(src) !== path.resolve(dest)) fs.copyFileSync(src, dest);
    ctx.bar.log(`prep: tokenizer ${src}`);
  }
  return dest;
}

export interface TokenizeResult {
  manifest: ShardManifest;
  stats: StageStats[];
  shardDir: string;
}

export async function tokenizeStage(ctx: PrepContext, finals: Map<string, StageOutput>, shardDir: string, tokFile: string): Promise<TokenizeResult> {
  const { cfg } = ctx;
  const tok = TextTokenizer.fromFile(tokFile);
  const fp = fingerprint({ stage: 'tokenize', tok: tok.hash, val: cfg.data.val_fraction, shard: cfg.data.shard_tokens, seed: cfg.run.seed, ins: [...finals].map(([k, v]) => [k, v.fingerprint]), w: ctx.sources.map((s) => [s.name, s.weight, s.lang]) });
  if (fs.existsSync(path.join(shardDir, 'manifest.json'))) {
    try {
      const m = readManifest(shardDir);
      if ((m.stats as Record<string, unknown> | undefined)?.fingerprint === fp)
        return { manifest: m, stats: (m.stats as { tokenize: StageStats[] }).tokenize, shardDir };
    } catch {
      /* rewrite it */
    }
  }
  fs.mkdirSync(shardDir, { recursive: true });
  for (const f of fs.readdirSync(shardDir)) if (/^(train|val)-.*\.arrow$/.test(f) || f === 'manifest.json') fs.rmSync(path.join(shardDir, f));

  const pool = new TokenizePool(tokFile, cfg.prep.workers);
  const single = ctx.sources.length === 1 && ctx.sources[0].name === 'default';
  const allStats: StageStats[] = [];
  const manifestSources: NonNullable<ShardManifest['sources']> = {};
  const overall: Record<string, ShardSplit> = {};
  const total = fileBytes([...finals.values()].map((v) => v.file));
  let seen = 0;
  const t0 = Date.now();
  try {
    for (const src of ctx.sources) {
      const input = finals.get(src.name)!;
      const st = newStats('tokenize', src.name);
      const t1 = Date.now();
      const splits: Record<string, { parts: Uint32Array[]; pending: number; split: ShardSplit }> = {};
      for (const s of ['train', 'val']) splits[s] = { parts: [], pending: 0, split: { files: [], num_tokens: 0, num_docs: 0 } };
      const flush = (name: string) => {
        const sp = splits[name];
        if (sp.pending === 0) return;
        const { tokens, offsets } = packSequences(sp.parts);
        const file = single ? `${name}-${String(sp.split.files.length).padStart(5, '0')}.arrow` : `${name}-${src.name}-${String(sp.split.files.length).padStart(5, '0')}.arrow`;
        writeTokenShard(path.join(shardDir, file), tokens, Int32Array.from(offsets), { tokenizerHash: tok.hash, extra: { source: src.name } });
        sp.split.files.push(file);
        sp.parts = [];
        sp.pending = 0;
      };
      let ordinal = 0;
      const inFlight: Array<Promise<{ tokens: Uint32Array; offsets: Uint32Array }>> = [];
      const consume = async () => {
        const r = await inFlight.shift()!;
        for (let i = 0; i + 1 < r.offsets.length; i++) {
          const ids = r.tokens.subarray(r.offsets[i], r.offsets[i + 1]);
          const name = splitDraw(cfg.run.seed, src.name, ordinal++) < cfg.data.val_fraction ? 'val' : 'train';
          const sp = splits[name];
          sp.parts.push(ids);
          sp.pending += ids.length;
          sp.split.num_tokens += ids.length;
          sp.split.num_docs++;
          if (sp.pending >= cfg.data.shard_tokens) flush(name);
        }
      };
      for await (const batch of batchDocs(stageDocs(input.file, (n) => (seen += n)), 2e6)) {
        st.docs_in += batch.length;
        st.docs_out += batch.length;
        for (const d of batch) st.bytes_in += Buffer.byteLength(d.text, 'utf8');
        inFlight.push(pool.encode(batch.map((d) => d.text)));
        if (inFlight.length >= 2 * pool.size) await consume();
        ctx.bar.update(seen, total, `tokenize ${src.name}: ${st.docs_in} docs`, ((Date.now() - t0) / 1000 / Math.max(1, seen)) * (total - seen));
      }
      while (inFlight.length) await consume();
      flush('train');
      flush('val');
      st.seconds = (Date.now() - t1) / 1000;
      st.bytes_out = 4 * (splits.train.split.num_tokens + splits.val.split.num_tokens);
      st.extra = {
        tokens: splits.train.split.num_tokens + splits.val.split.num_tokens,
        tokens_per_char_byte: (splits.train.split.num_tokens + splits.val.split.num_tokens) / Math.max(1, st.bytes_in),
        workers: pool.size,
      };
      allStats.push(st);
      const srcSplits: Record<string, ShardSplit> = {};
      for (const [name, sp] of Object.entries(splits)) {
        if (!sp.split.files.length) continue;
        srcSplits[name] = sp.split;
        const o = (overall[name] ??= { files: [], num_tokens: 0, num_docs: 0 });
        o.files.push(...sp.split.files);
        o.num_tokens += sp.split.num_tokens;
        o.num_docs += sp.split.num_docs;
      }
      manifestSources[src.name] = { lang: src.lang, weight: src.weight, splits: srcSplits };
    }
  } finally {
    await pool.close();
  }
  if (!overall.train) throw new Error('prep: no documents survived the filters; nothing to tokenize (see prep_report.json for why)');
  const manifest: ShardManifest = {
    format: 'ko-train-shards-v1',
    tokenizer_hash: tok.hash,
    vocab_size: tok.vocabSize,
    eos_id: tok.eosId,
    splits: overall,
    sources: manifestSources,
    created: new Date().toISOString(),
    stats: { fingerprint: fp, tokenize: allStats },
  };
  writeManifest(shardDir, manifest);
  return { manifest, stats: allStats, shardDir };
}
