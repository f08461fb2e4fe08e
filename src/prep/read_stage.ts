// read_stage.ts — stage 0: raw inputs (JSONL or text, plain or gzipped) to documents: Unicode NFC, trimmed,
// documents shorter than data.min_chars dropped, malformed lines counted and reported with line numbers.
import { describeIssues, type LineIssues } from '../jsonl.js';
import { readDocuments } from './documents.js';
import { newStats } from './report.js';
import {
  finishedOutput, inputFingerprint, markFinished, rejectsFileFor, stageDir, StageWriter,
  type PrepContext, type ResolvedSource, type StageOutput,
} from './stage.js';
import path from 'node:path';
import { fileBytes } from './stage.js';

export async function readStage(ctx: PrepContext, src: ResolvedSource): Promise<StageOutput> {
  const { cfg } = ctx;
  const fp = inputFingerprint(src, { min_chars: cfg.data.min_chars, max_docs: cfg.data.max_docs, keep: cfg.prep.keep_rejects });
  const file = path.join(stageDir(ctx, 0, 'read'), `${src.name}.jsonl`);
  const done = finishedOutput(file, fp);
  if (done) return done;
  const stats = newStats('read', src.name);
  const t0 = Date.now();
  const w = new StageWriter(file, rejectsFileFor(ctx, 0, 'read', src.name), stats, cfg.prep.keep_rejects);
  const issues: LineIssues = { malformed: 0, examples: [] };
  const total = fileBytes(src.inputs);
  let seen = 0;
  try {
    outer: for (const input of src.inputs) {
      for await (const d of readDocuments(input, src.textField, issues, (n) => (seen += n))) {
        stats.docs_in++;
        stats.bytes_in += Buffer.byteLength(d.text, 'utf8');
        const text = d.text.normalize('NFC').trim();
        if (text.length === 0) w.reject(d, 'empty');
        else if (text.length < cfg.data.min_chars) w.reject(d, 'shorter_than_min_chars', { chars: text.length });
        else w.keep({ id: d.id, text });
        if ((stats.docs_in & 1023) === 0)
          ctx.bar.update(seen, total, `read ${src.name}: ${stats.docs_in} docs`, ((Date.now() - t0) / 1000 / Math.max(1, seen)) * (total - seen));
        if (cfg.data.max_docs && stats.docs_out >= cfg.data.max_docs) break outer;
      }
    }
  } catch (e) {
    w.abort();
    throw e;
  }
  w.commit();
  stats.seconds = (Date.now() - t0) / 1000;
  stats.extra = { malformed_lines: issues.malformed, input_bytes: total };
  if (issues.malformed) {
    stats.reasons.malformed_line = issues.malformed;
    ctx.bar.log(`prep: ${src.name}: ${describeIssues(issues)}`);
  }
  const out = { file, fingerprint: fp, stats };
  markFinished(out);
  return out;
}
