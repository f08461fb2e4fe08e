// perplexity_stage.ts — drops documents of high perplexity under an n-gram LM, as CCNet does:
// ppl = 10^(−Σ log10 p / n) over every line of the document (n counts the words and one </s> per line).
// The threshold is a value (prep.perplexity.max_ppl) or a percentile of the run's documents of that
// language; the percentile needs every score first, so pass 1 scores (8 bytes per document kept) and
// pass 2 filters.
import fs from 'node:fs';
import path from 'node:path';
import { loadArpa, lmLines, perplexity, saveArpa, trainLm } from '../lm.js';
import type { TextTokenizer } from '../tokenizer.js';
import { batchDocs, packDocs, type Doc } from './documents.js';
import type { NgramModelHandle } from './native_prep.js';
import { newStats } from './report.js';
import {
  fileBytes, finishedOutput, fingerprint, markFinished, rejectsFileFor, stageDir, stageDocs, StageWriter,
  type PrepContext, type ResolvedSource, type StageOutput,
} from './stage.js';

async function* docsOf(outputs: StageOutput[]): AsyncGenerator<Doc> {
  for (const o of outputs) yield* stageDocs(o.file);
}

// Linear-interpolated percentile (p in (0, 100]) of sorted values.
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Infinity;
  const x = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(x), hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo);
}

export async function perplexityStage(
  ctx: PrepContext,
  index: number,
  inputs: Map<string, StageOutput>,
  tokenizer: TextTokenizer | null,
): Promise<{ outputs: Map<string, StageOutput>; summary: Record<string, unknown> }> {
  const o = ctx.cfg.prep.perplexity;
  const dir = stageDir(ctx, index, 'perplexity');
  const outputs = new Map<string, StageOutput>();
  const summary: Record<string, unknown> = {};
  const byLang = new Map<string, ResolvedSource[]>();
  for (const s of ctx.sources) if (inputs.has(s.name)) byLang.set(s.lang, [...(byLang.get(s.lang) ?? []), s]);
  for (const [lang, srcs] of byLang) {
    const ins = srcs.map((s) => inputs.get(s.name)!);
    if (!o.languages.includes(lang as 'ko' | 'en')) {
      srcs.forEach((s, i) => outputs.set(s.name, ins[i])); // not filtered: the stage passes them through
      continue;
    }
    const lmFp = o.lm ? fingerprint([path.resolve(o.lm), fs.statSync(o.lm).size, fs.statSync(o.lm).mtimeMs]) : fingerprint({ order: o.lm_order, tok: o.tokenization, ins: ins.map((i) => i.fingerprint) });
    const fp = fingerprint({ stage: 'perplexity', lang, lmFp, tok: o.tokenization, max_ppl: o.max_ppl, pct: o.max_percentile, ins: ins.map((i) => i.fingerprint), keep: ctx.cfg.prep.keep_rejects });
    const files = srcs.map((s) => path.join(dir, `${s.name}.jsonl`));
    const done = files.map((f) => finishedOutput(f, fp));
    const sumFile = path.join(dir, `${lang}.summary.json`);
    if (done.every((d) => d) && fs.existsSync(sumFile)) {
      srcs.forEach((s, i) => outputs.set(s.name, done[i]!));
      summary[lang] = JSON.parse(fs.readFileSync(sumFile, 'utf8'));
      continue;
    }
    const t0 = Date.now();
    // The model: given, or estimated from these documents.
    let model: NgramModelHandle;
    let lmFile = o.lm;
    if (o.lm) {
      ctx.bar.log(`prep: perplexity (${lang}): loading ${o.lm}`);
      model = await loadArpa(o.lm);
    } else {
      lmFile = path.join(ctx.workDir, 'lm', `${lang}.${o.lm_order}gram.arpa.gz`);
      const tr = await trainLm(docsOf(ins), { order: o.lm_order, tokenization: o.tokenization, tokenizer, batchBytes: ctx.cfg.prep.batch_mb * 1e6 },
        (n) => ctx.bar.update(0, 1, `perplexity (${lang}): counting n-grams, ${n} docs`, NaN));
      model = tr.model;
      fs.mkdirSync(path.dirname(lmFile), { recursive: true });
      await saveArpa(model, lmFile);
      ctx.bar.log(`prep: perplexity (${lang}): estimated a ${o.lm_order}-gram modified Kneser-Ney LM on ${tr.sentences} lines / ${tr.tokens} tokens (n-grams per order: ${model.counts.join(', ')}) → ${lmFile}`);
    }
    const trainSeconds = (Date.now() - t0) / 1000;
    // Pass 1: scores.
    const t1 = Date.now();
    const ppl: number[] = [];
    let tokens = 0, oov = 0, scoreMs = 0;
    const total = fileBytes(ins.map((i) => i.file));
    let seen = 0;
    for (const inp of ins) {
      for await (const batch of batchDocs(stageDocs(inp.file, (n) => (seen += n)), ctx.cfg.prep.batch_mb * 1e6)) {
        const lines = await lmLines(batch.map((d) => d.text), o.tokenization, tokenizer);
        const packed = packDocs(lines.map((text, i) => ({ id: batch[i].id, text })));
        const t = Date.now();
        const r = await model.scoreDocuments(packed.bytes, packed.offsets);
        scoreMs += Date.now() - t;
        for (let i = 0; i < batch.length; i++) {
          ppl.push(perplexity(r.sumLog10[i], r.nTokens[i]));
          tokens += r.nTokens[i];
          oov += r.oov[i];
        }
        ctx.bar.update(seen, total, `perplexity (${lang}): scored ${ppl.length} docs`, ((Date.now() - t1) / 1000 / Math.max(1, seen)) * (total - seen));
      }
    }
    const sorted = Float64Array.from(ppl.filter(Number.isFinite)).sort();
    const threshold = o.max_ppl ?? percentile(sorted, o.max_percentile);
    // Pass 2: filter.
    let g = 0;
    for (let k = 0; k < srcs.length; k++) {
      const st = newStats('perplexity', srcs[k].name);
      const w = new StageWriter(files[k], rejectsFileFor(ctx, index, 'perplexity', srcs[k].name), st, ctx.cfg.prep.keep_rejects);
      try {
        for await (const d of stageDocs(ins[k].file)) {
          st.docs_in++;
          st.bytes_in += Buffer.byteLength(d.text, 'utf8');
          const p = ppl[g++];
          if (!Number.isFinite(p)) w.reject(d, 'no_scorable_tokens');
          else if (p > threshold) w.reject(d, 'perplexity_above_threshold', { perplexity: Number(p.toFixed(2)) });
          else w.keep(d);
        }
      } catch (e) {
        w.abort();
        throw e;
      }
      w.commit();
      st.seconds = (Date.now() - t0) / 1000 / srcs.length;
      st.extra = { threshold };
      const out = { file: files[k], fingerprint: fp, stats: st };
      markFinished(out);
      outputs.set(srcs[k].name, out);
    }
    const lsum = {
      lm: lmFile,
      lm_seconds: trainSeconds,
      threshold: Number(threshold.toFixed(3)),
      threshold_rule: o.max_ppl !== null ? `max_ppl ${o.max_ppl}` : `percentile ${o.max_percentile}`,
      median_ppl: Number(percentile(sorted, 50).toFixed(3)),
      tokens_scored: tokens,
      oov_tokens: oov,
      scoring_tokens_per_s: Math.round(tokens / Math.max(1e-3, scoreMs / 1000)),
    };
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(sumFile, JSON.stringify(lsum, null, 2));
    summary[lang] = lsum;
  }
  return { outputs, summary };
}
