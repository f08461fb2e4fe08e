// eval_tasks.ts — the benchmark harness (`ko-train eval --tasks`), in lm-evaluation-harness's style.
// A task is a JSONL file, one example per line; the kind follows from the fields:
//   multiple choice  {"context", "choices": [...], "gold": i}   acc = the choice of highest summed
//                    log-likelihood is gold; acc_norm = the same with log-likelihood / characters of the choice
//   cloze            {"context", "target"}                       acc = every target token is the greedy
//                    argmax (LAMBADA's exact match); also the mean log-likelihood of the target
//   generation       {"context", "answer", "match"?: "number"|"text", "until"?: [...], "max_new_tokens"?}
//                    exact_match after normalization: "number" compares the last number in the output (GSM8K),
//                    "text" compares NFKC lower-cased text without punctuation or spaces
// Few-shot: `fewshot` other examples of the same task, drawn with a seeded shuffle per example, each
// rendered as context + its gold continuation and joined by a blank line, come before the context.
// Scoring is greedy and seeded, so two runs give the same numbers.
import fs from 'node:fs';
import path from 'node:path';
import { loadModel, type LoadedModel } from './evaluate.js';
import { sampleToken } from './generate.js';
import { mulberry32 } from './sampler.js';

const GREEDY = { temperature: 0, topK: 0, topP: 1 };

export type TaskExample =
  | { kind: 'multiple_choice'; context: string; choices: string[]; gold: number }
  | { kind: 'cloze'; context: string; target: string }
  | { kind: 'generation'; context: string; answer: string; match: 'number' | 'text'; until: string[]; maxNewTokens: number };

export interface TaskResult {
  task: string;
  kind: TaskExample['kind'];
  examples: number;
  metrics: Record<string, number>;
}

function fail(file: string, line: number, why: string): never {
  throw new Error(`${file}:${line}: ${why}`);
}

export function parseTaskFile(file: string): TaskExample[] {
  const out: TaskExample[] = [];
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      if (!raw.trim()) return;
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(raw) as Record<string, unknown>;
      } catch (e) {
        fail(file, i + 1, `not JSON (${(e as Error).message})`);
      }
      if (typeof o.context !== 'string') fail(file, i + 1, '"context" must be a string');
      if (Array.isArray(o.choices)) {
        if (o.choices.length < 2 || !o.choices.every((c) => typeof c === 'string' && c.length > 0)) fail(file, i + 1, '"choices" must be two or more non-empty strings');
        if (!Number.isInteger(o.gold) || (o.gold as number) < 0 || (o.gold as number) >= o.choices.length) fail(file, i + 1, `"gold" must be an index into the ${o.choices.length} choices`);
        out.push({ kind: 'multiple_choice', context: o.context as string, choices: o.choices as string[], gold: o.gold as number });
      } else if (typeof o.target === 'string') {
        if (!o.target) fail(file, i + 1, '"target" is empty');
        out.push({ kind: 'cloze', context: o.context as string, target: o.target });
      } else if (typeof o.answer === 'string') {
        const match = o.match ?? 'text';
        if (match !== 'number' && match !== 'text') fail(file, i + 1, '"match" must be "number" or "text"');
        const until = (o.until ?? ['\n\n']) as unknown;
        if (!Array.isArray(until) || !until.every((u) => typeof u === 'string' && u)) fail(file, i + 1, '"until" must be a list of non-empty strings');
        out.push({ kind: 'generation', context: o.context as string, answer: o.answer, match, until: until as string[], maxNewTokens: Number(o.max_new_tokens ?? 64) });
      } else {
        fail(file, i + 1, 'an example needs "choices" and "gold", "target", or "answer"');
      }
    });
  if (!out.length) throw new Error(`${file}: no examples`);
  if (new Set(out.map((e) => e.kind)).size > 1) throw new Error(`${file}: mixes kinds of examples (${[...new Set(out.map((e) => e.kind))].join(', ')}); one kind per task`);
  return out;
}

/** Task files for --tasks: a directory's *.jsonl, a file, or a name under examples/tasks. */
export function resolveTasks(spec: string): string[] {
  const candidates = [spec, path.join('examples', 'tasks', spec.endsWith('.jsonl') ? spec : `${spec}.jsonl`)];
  for (const c of candidates) {
    if (!fs.existsSync(c)) continue;
    if (fs.statSync(c).isDirectory()) {
      const files = fs.readdirSync(c).filter((f) => f.endsWith('.jsonl')).sort().map((f) => path.join(c, f));
      if (!files.length) throw new Error(`--tasks ${spec}: no .jsonl task files in ${c}`);
      return files;
    }
    return [c];
  }
  throw new Error(`--tasks ${spec}: no such file, directory or task name under examples/tasks`);
}

function goldText(e: TaskExample): string {
  return e.kind === 'multiple_choice' ? e.choices[e.gold] : e.kind === 'cloze' ? e.target : e.answer;
}

function fewshotPrefix(all: TaskExample[], index: number, k: number, seed: number): string {
  if (k <= 0) return '';
  const rand = mulberry32((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const others = all.map((_, i) => i).filter((i) => i !== index);
  for (let i = others.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [others[i], others[j]] = [others[j], others[i]];
  }
  return others.slice(0, k).map((i) => all[i].context + goldText(all[i])).join('\n\n') + '\n\n';
}

export function normalizeAnswer(s: string, match: 'number' | 'text'): string {
  if (match === 'number') {
    const nums = s.replace(/(\d),(\d)/g, '$1$2').match(/-?\d+(\.\d+)?/g);
    return nums ? String(Number(nums[nums.length - 1])) : '';
  }
  return s.normalize('NFKC').toLowerCase().replace(/[\p{P}\p{S}\s]+/gu, '');
}

// Token ids of each context (with BOS) and continuation, encoded separately so the continuation's tokens
// are the same in every choice; all of a call's texts go to the tokenizer in one batch.
async function encodeContexts(lm: LoadedModel, texts: string[]): Promise<number[][]> {
  const enc = await lm.tokenizer!.encodeBatch(texts.map((t) => t.normalize('NFC')));
  const bos = lm.tokenizer!.bosId;
  return enc.map((e) => (bos !== null ? [bos, ...e] : Array.from(e)));
}

/** Summed log-likelihood of each continuation after its context, and whether it is the greedy path. */
export async function scoreContinuations(lm: LoadedModel, pairs: Array<[string, string]>, maxLen: number): Promise<{ logLik: Float64Array; greedy: Uint8Array }> {
  const contexts = await encodeContexts(lm, pairs.map(([c]) => c));
  const conts = await lm.tokenizer!.encodeBatch(pairs.map(([, x]) => x.normalize('NFC')));
  const toks: number[] = [];
  const offsets = [0];
  const cont: number[] = [];
  pairs.forEach(([, x], i) => {
    if (!conts[i].length) throw new Error(`the continuation ${JSON.stringify(x)} encodes to no tokens`);
    toks.push(...contexts[i], ...conts[i]);
    offsets.push(toks.length);
    cont.push(Math.min(conts[i].length, maxLen));
  });
  return lm.net.scoreContinuations(Uint32Array.from(toks), Uint32Array.from(offsets), Uint32Array.from(cont), maxLen);
}

async function greedyGenerate(lm: LoadedModel, prompt: string, e: Extract<TaskExample, { kind: 'generation' }>): Promise<string> {
  const [ids] = await encodeContexts(lm, [prompt]);
  const limit = lm.config.max_position_embeddings;
  const ctx = ids.slice(Math.max(0, ids.length - (limit - 1))); // the context is cut from the left
  const end = Math.min(limit, ctx.length + e.maxNewTokens);
  lm.net.decodeReset(end);
  let logits: Float32Array = new Float32Array(0);
  ctx.forEach((t, pos) => (logits = lm.net.decodeStep(t, pos)));
  const out: number[] = [];
  for (let pos = ctx.length; pos < end; pos++) {
    const best = sampleToken(logits, GREEDY, () => 0);
    if (best === lm.tokenizer!.eosId) break;
    out.push(best);
    const text = await lm.tokenizer!.decode(out);
    if (e.until.some((u) => text.includes(u)) || pos + 1 >= end) break;
    logits = lm.net.decodeStep(best, pos);
  }
  let text = await lm.tokenizer!.decode(out);
  for (const u of e.until) if (text.includes(u)) text = text.slice(0, text.indexOf(u));
  return text;
}

export async function runTask(lm: LoadedModel, file: string, o: { fewshot: number; seed: number; maxLen: number }): Promise<TaskResult> {
  const examples = parseTaskFile(file);
  const task = path.basename(file, '.jsonl');
  const kind = examples[0].kind;
  const prompts = examples.map((e, i) => fewshotPrefix(examples, i, o.fewshot, o.seed) + e.context);
  const metrics: Record<string, number> = {};
  if (kind === 'multiple_choice') {
    let acc = 0, accNorm = 0;
    for (let i = 0; i < examples.length; i++) {
      const e = examples[i] as Extract<TaskExample, { kind: 'multiple_choice' }>;
      const { logLik } = await scoreContinuations(lm, e.choices.map((c) => [prompts[i], c] as [string, string]), o.maxLen);
      const argmax = (v: number[]) => v.reduce((b, x, j) => (x > v[b] ? j : b), 0);
      acc += Number(argmax(Array.from(logLik)) === e.gold);
      accNorm += Number(argmax(Array.from(logLik, (l, j) => l / [...e.choices[j]].length)) === e.gold);
    }
    metrics.acc = acc / examples.length;
    metrics.acc_norm = accNorm / examples.length;
  } else if (kind === 'cloze') {
    const r = await scoreContinuations(lm, examples.map((e, i) => [prompts[i], (e as Extract<TaskExample, { kind: 'cloze' }>).target] as [string, string]), o.maxLen);
    metrics.acc = r.greedy.reduce((a, g) => a + g, 0) / examples.length;
    metrics.mean_loglik = r.logLik.reduce((a, l) => a + l, 0) / examples.length;
  } else {
    let em = 0;
    for (let i = 0; i < examples.length; i++) {
      const e = examples[i] as Extract<TaskExample, { kind: 'generation' }>;
      const out = await greedyGenerate(lm, prompts[i], e);
      em += Number(normalizeAnswer(out, e.match) !== '' && normalizeAnswer(out, e.match) === normalizeAnswer(e.answer, e.match));
    }
    metrics.exact_match = em / examples.length;
  }
  return { task, kind, examples: examples.length, metrics };
}

export async function evalTasksCommand(o: { checkpoint: string; tasks: string; fewshot: number; seed: number; maxLen: number | null; json: boolean; out: string | null; log: (s: string) => void }): Promise<TaskResult[]> {
  const files = resolveTasks(o.tasks);
  const lm = loadModel(o.checkpoint);
  if (!lm.tokenizer) throw new Error(`${o.checkpoint}: no tokenizer.json beside the weights`);
  const maxLen = o.maxLen ?? lm.config.max_position_embeddings - 1;
  const results: TaskResult[] = [];
  for (const f of files) {
    const t0 = Date.now();
    const r = await runTask(lm, f, { fewshot: o.fewshot, seed: o.seed, maxLen });
    results.push(r);
    if (o.out) {
      fs.mkdirSync(o.out, { recursive: true });
      fs.writeFileSync(path.join(o.out, `${r.task}.json`), JSON.stringify({ ...r, checkpoint: o.checkpoint, fewshot: o.fewshot, seed: o.seed, seconds: (Date.now() - t0) / 1000 }, null, 2) + '\n');
    }
  }
  if (o.json) {
    o.log(JSON.stringify({ checkpoint: o.checkpoint, fewshot: o.fewshot, seed: o.seed, results }));
  } else {
    const rows = results.flatMap((r) => Object.entries(r.metrics).map(([m, v]) => [r.task, r.kind, String(r.examples), m, v.toFixed(4)]));
    const head = ['task', 'kind', 'n', 'metric', 'value'];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i].length)));
    for (const r of [head, w.map((n) => '-'.repeat(n)), ...rows]) o.log(r.map((c, i) => (i >= 2 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  '));
  }
  return results;
}
