// prep.ts — `ko-train prep`: raw text → clean, deduplicated, perplexity-filtered documents → Arrow token
// shards, the data recipe of the Thunder-LLM paper. Stages: read (NFC, min_chars, malformed lines) → rules
// → dedup → perplexity → tokenize; prep.filters picks which filters run. Each stage streams and writes
// its output atomically under prep.work_dir, so an interrupted prep resumes after its last finished stage.
// Ends with prep_report.json and a table of every stage's counts.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.js';
import { ProgressBar } from './progress.js';
import { writeJsonAtomic } from './prep/atomic_writer.js';
import { dedupStage, type ClusterSample } from './prep/dedup_stage.js';
import { perplexityStage } from './prep/perplexity_stage.js';
import { readStage } from './prep/read_stage.js';
import { formatStageTable, type StageStats } from './prep/report.js';
import { rulesStage } from './prep/rules_stage.js';
import { resolveSources, type PrepContext, type StageOutput } from './prep/stage.js';
import { prepareTokenizer, tokenizeStage } from './prep/tokenize_stage.js';
import { TextTokenizer } from './tokenizer.js';
import { shardDirOf } from './traindata.js';

export interface PrepStats {
  stages: StageStats[];
  dedup: Record<string, unknown> | null;
  clusters: ClusterSample[];
  perplexity: Record<string, unknown> | null;
  tokens: Record<string, Record<string, number>>; // source → split → tokens
  realized_mix: Record<string, number>; // source → share of training tokens
  tokenizer: string;
  shard_dir: string;
  report: string;
  seconds: number;
}

export async function runPrep(cfg: Config, log: (s: string) => void = console.log): Promise<PrepStats> {
  const t0 = Date.now();
  fs.mkdirSync(cfg.run.out_dir, { recursive: true });
  const sources = resolveSources(cfg);
  const workDir = cfg.prep.work_dir ?? path.join(cfg.run.out_dir, 'prep');
  const bar = new ProgressBar();
  const ctx: PrepContext = { cfg, workDir, log: (s) => bar.log(s), bar, sources };
  const filters = new Set(cfg.prep.filters);
  log(`prep: ${sources.length} source${sources.length > 1 ? 's' : ''} (${sources.map((s) => `${s.name}: ${s.lang}, ${s.inputs.length} file${s.inputs.length > 1 ? 's' : ''}`).join('; ')}), filters [${[...filters].join(', ')}], work dir ${workDir}`);
  const stages: StageStats[] = [];

  let current = new Map<string, StageOutput>();
  for (const s of sources) {
    const out = await readStage(ctx, s);
    current.set(s.name, out);
    stages.push(out.stats);
  }
  let index = 1;
  if (filters.has('rules')) {
    const next = new Map<string, StageOutput>();
    for (const s of sources) {
      const out = await rulesStage(ctx, index, s, current.get(s.name)!);
      next.set(s.name, out);
      stages.push(out.stats);
    }
    current = next;
  }
  index++;
  let dedup: Record<string, unknown> | null = null;
  let clusters: ClusterSample[] = [];
  if (filters.has('dedup')) {
    const r = await dedupStage(ctx, index, current);
    current = r.outputs;
    for (const s of sources) stages.push(r.outputs.get(s.name)!.stats);
    dedup = r.summary;
    clusters = r.samples;
  }
  index++;
  let perplexity: Record<string, unknown> | null = null;
  if (filters.has('perplexity')) {
    const tok = cfg.prep.perplexity.tokenization === 'tokenizer' && cfg.tokenizer.path ? TextTokenizer.fromFile(cfg.tokenizer.path) : null;
    const r = await perplexityStage(ctx, index, current, tok);
    for (const s of sources) if (r.outputs.get(s.name) !== current.get(s.name)) stages.push(r.outputs.get(s.name)!.stats);
    current = r.outputs;
    perplexity = r.summary;
  }
  const tokFile = await prepareTokenizer(ctx, current);
  const shardDir = shardDirOf(cfg);
  const tk = await tokenizeStage(ctx, current, shardDir, tokFile);
  stages.push(...tk.stats);
  bar.done();

  const tokens: PrepStats['tokens'] = {};
  for (const [name, s] of Object.entries(tk.manifest.sources ?? {}))
    tokens[name] = Object.fromEntries(Object.entries(s.splits).map(([k, v]) => [k, v.num_tokens]));
  const trainTotal = Object.values(tokens).reduce((a, t) => a + (t.train ?? 0), 0);
  const realized = Object.fromEntries(Object.entries(tokens).map(([k, t]) => [k, (t.train ?? 0) / Math.max(1, trainTotal)]));
  const report = path.join(cfg.run.out_dir, 'prep_report.json');
  const stats: PrepStats = {
    stages, dedup, clusters, perplexity, tokens, realized_mix: realized, tokenizer: tokFile, shard_dir: shardDir, report,
    seconds: (Date.now() - t0) / 1000,
  };
  writeJsonAtomic(report, stats);

  log('\n' + formatStageTable(stages));
  if (dedup) {
    log(`\ndedup (${dedup.device}): ${dedup.documents} documents, ${dedup.exact_duplicates} exact and ${dedup.near_duplicates} near duplicates removed in ${dedup.clusters} clusters (${dedup.candidate_pairs} candidate pairs, ${dedup.confirmed_pairs} confirmed)`);
    for (const c of clusters.slice(0, 3))
      log(`  cluster of ${c.size}: ${c.members.slice(0, 4).map((m) => `${m.source}:${m.id} (J≈${m.jaccard})`).join(', ')}${c.size > 4 ? ', ...' : ''}`);
  }
  if (perplexity)
    for (const [lang, p] of Object.entries(perplexity) as Array<[string, Record<string, unknown>]>)
      log(`perplexity (${lang}): threshold ${p.threshold} (${p.threshold_rule}), median ${p.median_ppl}, ${p.scoring_tokens_per_s} tokens/s scored; LM ${p.lm}`);
  const weights = Object.fromEntries(sources.map((s) => [s.name, s.weight]));
  const wsum = Object.values(weights).reduce((a, b) => a + b, 0);
  if (sources.length > 1)
    log(`training tokens: ${Object.entries(tokens).map(([k, t]) => `${k} ${t.train ?? 0} (${(100 * realized[k]).toFixed(1)}% of the data, mix weight ${(100 * weights[k] / wsum).toFixed(1)}%)`).join(', ')}`);
  log(`prep: shards in ${shardDir} (${trainTotal} training tokens), report ${report}, ${stats.seconds.toFixed(1)} s`);
  return stats;
}
