// stage.ts — the frame every prep stage runs in. A stage reads the previous stage's documents of one source
// and writes its own (work_dir/NN-stage/<source>.jsonl) plus a rejects log naming why each dropped document
// went. Outputs are renamed into place when complete, then a .stats.json records the stage's counts and a
// fingerprint of everything that decided its output (its settings and its input's fingerprint). A restarted
// prep skips every stage whose fingerprint still matches, so it resumes after the last finished one.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import { ProgressBar } from '../progress.js';
import { AtomicJsonlWriter, writeJsonAtomic } from './atomic_writer.js';
import { readDocuments, type Doc } from './documents.js';
import { countReason, type StageStats } from './report.js';

export interface ResolvedSource {
  name: string;
  inputs: string[];
  lang: 'ko' | 'en';
  weight: number;
  textField: string;
}

export function resolveSources(cfg: Config): ResolvedSource[] {
  const d = cfg.data;
  if (d.sources.length && d.inputs.length)
    throw new Error('data.inputs and data.sources are both set: list every input under data.sources');
  if (!d.sources.length) {
    if (!d.inputs.length) throw new Error('data.inputs: no input files given for prep (or set data.sources)');
    return [{ name: 'default', inputs: d.inputs, lang: 'ko', weight: 1, textField: d.text_field }];
  }
  const seen = new Set<string>();
  return d.sources.map((s, i) => {
    if (seen.has(s.name)) throw new Error(`data.sources[${i}].name: "${s.name}" is used twice`);
    seen.add(s.name);
    return { name: s.name, inputs: s.inputs, lang: s.lang, weight: s.weight, textField: s.text_field ?? d.text_field };
  });
}

export interface PrepContext {
  cfg: Config;
  workDir: string;
  log: (s: string) => void;
  bar: ProgressBar;
  sources: ResolvedSource[];
}

export function fingerprint(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

// The fingerprint of a source's raw inputs: paths, sizes and modification times.
export function inputFingerprint(src: ResolvedSource, extra: unknown): string {
  return fingerprint({
    extra,
    field: src.textField,
    files: src.inputs.map((f) => {
      if (!fs.existsSync(f)) throw new Error(`data: input ${f} of source "${src.name}": no such file`);
      const st = fs.statSync(f);
      return [path.resolve(f), st.size, st.mtimeMs];
    }),
  });
}

export function stageDir(ctx: PrepContext, index: number, stage: string): string {
  return path.join(ctx.workDir, `${String(index).padStart(2, '0')}-${stage}`);
}

export interface StageOutput {
  file: string; // the documents (JSONL of {id, text})
  fingerprint: string;
  stats: StageStats;
}

function statsFile(docsFile: string): string {
  return docsFile.replace(/\.jsonl$/, '.stats.json');
}

// A finished stage output whose fingerprint matches, or null.
export function finishedOutput(docsFile: string, fp: string): StageOutput | null {
  const sf = statsFile(docsFile);
  if (!fs.existsSync(sf) || !fs.existsSync(docsFile)) return null;
  try {
    const rec = JSON.parse(fs.readFileSync(sf, 'utf8')) as { fingerprint: string; stats: StageStats };
    return rec.fingerprint === fp ? { file: docsFile, fingerprint: fp, stats: rec.stats } : null;
  } catch {
    return null;
  }
}

export function markFinished(out: StageOutput): void {
  writeJsonAtomic(statsFile(out.file), { fingerprint: out.fingerprint, stats: out.stats });
}

// Where a stage writes its documents and its rejects; both appear only when complete.
export class StageWriter {
  readonly docs: AtomicJsonlWriter;
  readonly rejects: AtomicJsonlWriter;

  constructor(
    readonly docsFile: string,
    rejectsFile: string,
    private readonly stats: StageStats,
    private readonly keepRejectText: boolean,
  ) {
    this.docs = new AtomicJsonlWriter(docsFile);
    this.rejects = new AtomicJsonlWriter(rejectsFile);
  }

  keep(d: Doc): void {
    this.docs.write({ id: d.id, text: d.text });
    this.stats.docs_out++;
    this.stats.bytes_out += Buffer.byteLength(d.text, 'utf8');
  }

  reject(d: Doc, reason: string, detail: Record<string, unknown> = {}): void {
    countReason(this.stats, reason);
    this.rejects.write(this.keepRejectText ? { id: d.id, reason, ...detail, text: d.text } : { id: d.id, reason, ...detail });
  }

  commit(): void {
    this.rejects.commit();
    this.docs.commit();
  }

  abort(): void {
    this.docs.abort();
    this.rejects.abort();
  }
}

export function rejectsFileFor(ctx: PrepContext, index: number, stage: string, source: string): string {
  return path.join(ctx.workDir, 'rejects', `${String(index).padStart(2, '0')}-${stage}`, `${source}.jsonl`);
}

// The documents a previous stage wrote (always well-formed: ko-train wrote them).
export async function* stageDocs(file: string, onBytes?: (n: number) => void): AsyncGenerator<Doc> {
  const issues = { malformed: 0, examples: [] as string[] };
  yield* readDocuments(file, 'text', issues, onBytes);
  if (issues.malformed) throw new Error(`${file}: ${issues.malformed} damaged lines in a prep work file; delete ${path.dirname(file)} and run prep again`);
}

export function fileBytes(files: string[]): number {
  return files.reduce((a, f) => a + (fs.existsSync(f) ? fs.statSync(f).size : 0), 0);
}
