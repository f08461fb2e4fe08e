// rules_stage.ts — the rule filters (Korean rules of the Thunder-LLM paper, Gopher rules for English), run
// by the native core over batches of documents. Korean documents may come out edited: lines without a
// sentence end are removed.
import { batchDocs, packDocs } from './documents.js';
import { prepNative } from './native_prep.js';
import { newStats } from './report.js';
import {
  fileBytes, finishedOutput, fingerprint, markFinished, rejectsFileFor, stageDir, stageDocs, StageWriter,
  type PrepContext, type ResolvedSource, type StageOutput,
} from './stage.js';
import path from 'node:path';

function ruleParams(ctx: PrepContext, lang: 'ko' | 'en'): Record<string, number | boolean | number[]> {
  return { ...(lang === 'ko' ? ctx.cfg.prep.rules.ko : ctx.cfg.prep.rules.en) };
}

export async function rulesStage(ctx: PrepContext, index: number, src: ResolvedSource, input: StageOutput): Promise<StageOutput> {
  const params = ruleParams(ctx, src.lang);
  const fp = fingerprint({ stage: 'rules', lang: src.lang, params, input: input.fingerprint, keep: ctx.cfg.prep.keep_rejects });
  const file = path.join(stageDir(ctx, index, 'rules'), `${src.name}.jsonl`);
  const done = finishedOutput(file, fp);
  if (done) return done;
  const addon = prepNative();
  const names = addon.ruleReasonNames();
  const stats = newStats('rules', src.name);
  const w = new StageWriter(file, rejectsFileFor(ctx, index, 'rules', src.name), stats, ctx.cfg.prep.keep_rejects);
  const t0 = Date.now();
  let nativeMs = 0, linesDropped = 0, invalid = 0;
  const total = fileBytes([input.file]);
  let seen = 0;
  try {
    for await (const batch of batchDocs(stageDocs(input.file, (n) => (seen += n)), ctx.cfg.prep.batch_mb * 1e6)) {
      const packed = packDocs(batch);
      stats.docs_in += batch.length;
      stats.bytes_in += packed.bytes.length;
      const t = Date.now();
      const r = await addon.applyRules(src.lang, params, packed.bytes, packed.offsets);
      nativeMs += Date.now() - t;
      batch.forEach((d, i) => {
        linesDropped += r.linesDropped[i];
        invalid += r.invalidUtf8[i];
        if (r.reason[i] === 0) {
          w.keep({ id: d.id, text: r.text.toString('utf8', Number(r.offsets[i]), Number(r.offsets[i + 1])) });
        } else {
          w.reject(d, names[r.reason[i]] ?? `rule_${r.reason[i]}`, { value: Number(r.value[i].toPrecision(6)) });
        }
      });
      ctx.bar.update(seen, total, `rules ${src.name}: ${stats.docs_in} docs, ${stats.docs_out} kept`, ((Date.now() - t0) / 1000 / Math.max(1, seen)) * (total - seen));
    }
  } catch (e) {
    w.abort();
    throw e;
  }
  w.commit();
  stats.seconds = (Date.now() - t0) / 1000;
  stats.extra = { native_seconds: nativeMs / 1000, native_mb_per_s: stats.bytes_in / 1e3 / Math.max(1, nativeMs), lines_dropped: linesDropped, invalid_utf8_bytes: invalid };
  const out = { file, fingerprint: fp, stats };
  markFinished(out);
  return out;
}
