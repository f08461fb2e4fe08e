// dpo_data.ts — preference data for DPO: JSONL pairs rendered with the chat template and tokenized,
// micro-batch rows of chosen and rejected replies, DPO Arrow shards that can carry the reference model's
// log-probabilities, and preference pairs made from multiple-choice eval tasks.
//
// Input lines: {"prompt": "..." | [messages ending with a user turn], "chosen": "...", "rejected": "...",
// "system"?: "..."}. A string prompt is one user turn (after the optional system turn).
//
// Tokenization (the offsets approach): the prompt is rendered with the generation prompt, and the whole
// conversation (prompt + reply) is rendered and tokenized in one piece with character offsets. The reply's
// tokens are those from the end of the prompt through the reply's end-of-turn marker, so prompt + reply is
// exactly the tokenization the model sees at SFT and chat time. When the joint tokenization does not split at
// the prompt's end (a token straddles it; rare, since templates end prompts in newlines or special tokens),
// the reply text is tokenized on its own instead and the pair counted in `separatelyTokenized`.
import fs from 'node:fs';
import nodePath from 'node:path';
import type { ChatMessage, ChatTemplate } from './chat_template.js';
import { parseTaskFile, resolveTasks, type TaskExample } from './eval_tasks.js';
import type { LineIssues } from './jsonl.js';
import { readArrowFile, readFloat64Column, readListColumn, writeArrowColumns, writeFileAtomic } from './arrow_lists.js';
import { mulberry32 } from './sampler.js';
import { checkConversation, checkShardMeta, jsonlObjects, noteIssue, renderCached, replySpan, stopStringsOf, withBos } from './sft_data.js';
import type { TextTokenizer } from './tokenizer.js';

export interface DpoPair {
  /** The rendered prompt through the generation prompt, BOS first when the tokenizer has one. */
  prompt: Uint32Array;
  /** The chosen reply and the end-of-turn marker. */
  chosen: Uint32Array;
  rejected: Uint32Array;
}

interface RenderedPair {
  promptText: string;
  full: [string, string]; // chosen, rejected conversations
  spans: [[number, number], [number, number]];
}

function promptMessages(obj: Record<string, unknown>): ChatMessage[] | string {
  if (typeof obj.chosen !== 'string' || typeof obj.rejected !== 'string') return 'needs "prompt", "chosen" and "rejected"';
  if (!obj.chosen.trim() || !obj.rejected.trim()) return '"chosen" and "rejected" must be non-empty';
  if (obj.chosen.normalize('NFC') === obj.rejected.normalize('NFC')) return '"chosen" and "rejected" are the same';
  if (Array.isArray(obj.prompt)) return checkConversation(obj.prompt, 'user');
  if (typeof obj.prompt !== 'string') return '"prompt" must be a string or an array of messages';
  if (obj.system !== undefined && typeof obj.system !== 'string') return '"system" must be a string';
  const sys = typeof obj.system === 'string' && obj.system ? [{ role: 'system', content: obj.system }] : [];
  return checkConversation([...sys, { role: 'user', content: obj.prompt }], 'user');
}

function renderPair(t: ChatTemplate, msgs: ChatMessage[], replies: [string, string], stops: string[]): RenderedPair | string {
  let promptText: string;
  const full: string[] = [];
  try {
    promptText = renderCached(t, msgs, true);
    for (const r of replies) full.push(renderCached(t, [...msgs, { role: 'assistant', content: r.normalize('NFC') }], false));
  } catch (e) {
    return `the chat template fails on this pair (${(e as Error).message})`;
  }
  const spans: Array<[number, number]> = [];
  for (const [k, text] of full.entries()) {
    const span = replySpan(t, [...msgs, { role: 'assistant', content: replies[k].normalize('NFC') }], msgs.length, text, stops);
    if (typeof span === 'string') return `${k === 0 ? 'chosen' : 'rejected'}: ${span}`;
    spans.push(span);
  }
  return { promptText, full: [full[0], full[1]], spans: [spans[0], spans[1]] };
}

/** The reply tokens of a jointly tokenized conversation, or null when the tokens do not split at `start`. */
function replyTokens(ids: Uint32Array, offsets: Uint32Array, promptIds: Uint32Array, [start, end]: [number, number]): Uint32Array | null {
  const n = ids.length;
  let k = 0;
  while (k < n && offsets[2 * k + 1] <= start && offsets[2 * k] < start) k++;
  if (k !== promptIds.length || promptIds.some((x, j) => x !== ids[j])) return null;
  let e = k;
  while (e < n && offsets[2 * e] < end) e++;
  return e > k ? ids.slice(k, e) : null;
}

export async function loadDpoPairs(
  file: string,
  tokenizer: TextTokenizer,
  template: ChatTemplate,
): Promise<{ pairs: DpoPair[]; issues: LineIssues; separatelyTokenized: number }> {
  const issues: LineIssues = { malformed: 0, examples: [] };
  const stops = stopStringsOf(template);
  const pairs: DpoPair[] = [];
  let separatelyTokenized = 0;
  let pending: RenderedPair[] = [];

  const flush = async (): Promise<void> => {
    const encs = await tokenizer.encodeWithOffsets(pending.flatMap((r) => [r.promptText, ...r.full]));
    const alone: Array<{ pair: number; which: 0 | 1; text: string }> = [];
    const batch = pending.map((r, i) => {
      const [p, c, rj] = encs.slice(3 * i, 3 * i + 3);
      const replies = [c, rj].map((e, which) => {
        const toks = replyTokens(e.ids, e.offsets, p.ids, r.spans[which]);
        if (toks === null) alone.push({ pair: i, which: which as 0 | 1, text: r.full[which].slice(...r.spans[which]) });
        return toks ?? new Uint32Array(0);
      });
      const prompt = withBos(tokenizer, p.ids, new Uint8Array(p.ids.length)).ids;
      return { prompt, chosen: replies[0], rejected: replies[1] };
    });
    const aloneIds = await tokenizer.encodeWithOffsets(alone.map((a) => a.text));
    alone.forEach((a, j) => {
      batch[a.pair][a.which === 0 ? 'chosen' : 'rejected'] = aloneIds[j].ids;
    });
    separatelyTokenized += new Set(alone.map((a) => a.pair)).size;
    pairs.push(...batch);
    pending = [];
  };

  for await (const { obj, where } of jsonlObjects(file, issues)) {
    const msgs = promptMessages(obj);
    if (typeof msgs === 'string') {
      noteIssue(issues, where, msgs);
      continue;
    }
    const r = renderPair(template, msgs, [obj.chosen as string, obj.rejected as string], stops);
    if (typeof r === 'string') {
      noteIssue(issues, where, r);
      continue;
    }
    pending.push(r);
    if (pending.length >= 128) await flush();
  }
  if (pending.length) await flush();
  return { pairs, issues, separatelyTokenized };
}

/**
 * Rows of a DPO micro-batch, interleaved [chosen0, rejected0, chosen1, rejected1, ...]: each row is prompt +
 * reply cut to T + 1 tokens (the prompt loses tokens from the left so that the reply fits, keeping at least
 * one to predict the reply's first token from; a reply that alone is longer is cut on the right), inputs
 * right-padded with padId, targets -1 except on reply tokens. Positions are 0..T-1 in every row.
 */
export function dpoRows(pairs: DpoPair[], indices: ArrayLike<number>, T: number, padId = 0): { inputs: Uint32Array; targets: Int32Array; rows: number } {
  if (!Number.isInteger(T) || T < 1) throw new Error(`dpoRows: T ${T} must be a positive integer`);
  const rows = 2 * indices.length;
  const inputs = new Uint32Array(rows * T).fill(padId);
  const targets = new Int32Array(rows * T).fill(-1);
  for (let b = 0; b < indices.length; b++) {
    const pair = pairs[indices[b]];
    if (pair === undefined) throw new Error(`dpoRows: pair index ${indices[b]} out of range (${pairs.length} pairs)`);
    [pair.chosen, pair.rejected].forEach((reply, which) => {
      const p = pair.prompt.length;
      const keepR = Math.min(reply.length, T + 1 - Math.min(p, 1));
      const keepP = Math.min(p, T + 1 - keepR);
      const seq = new Uint32Array(keepP + keepR);
      seq.set(pair.prompt.subarray(p - keepP), 0);
      seq.set(reply.subarray(0, keepR), keepP);
      const base = (2 * b + which) * T;
      for (let j = 0; j + 1 < seq.length; j++) {
        inputs[base + j] = seq[j];
        if (j + 1 >= keepP) targets[base + j] = seq[j + 1];
      }
    });
  }
  return { inputs, targets, rows };
}

// ---------------------------------------------------------------------------------------------
// DPO shards: List<Uint32> columns prompt, chosen, rejected (one row per pair) and, once computed, Float64
// columns ref_chosen_logp and ref_rejected_logp (the reference model's summed reply log-probabilities) with
// metadata ko_train.ref_model naming that model.

export const DPO_SHARD_FORMAT = 'dpo-v1';
const WHAT = 'ko-train DPO shard';
const KEY_FORMAT = 'ko_train.format';
const KEY_HASH = 'ko_train.tokenizer_hash';
const KEY_TEMPLATE = 'ko_train.template_hash';
const KEY_PAIRS = 'ko_train.num_pairs';
const KEY_REF = 'ko_train.ref_model';
const COLUMNS = ['prompt', 'chosen', 'rejected'] as const;

export interface DpoRef {
  chosen: Float64Array;
  rejected: Float64Array;
  /** Which reference model computed them (a path or id). */
  model: string;
}

export interface DpoShard {
  path: string;
  pairs: DpoPair[];
  tokenizerHash: string;
  templateHash: string;
  ref: DpoRef | null;
  /** ref.model, or null without reference log-probs. */
  refModel: string | null;
  metadata: Map<string, string>;
}

function concatLists(path: string, lists: Uint32Array[]): { values: Uint32Array; offsets: Int32Array } {
  const total = lists.reduce((n, l) => n + l.length, 0);
  if (total > 2 ** 31 - 1) throw new Error(`${path}: ${total} tokens in one column exceed 2^31-1; split the pairs over several shards`);
  const values = new Uint32Array(total);
  const offsets = new Int32Array(lists.length + 1);
  let at = 0;
  lists.forEach((l, i) => {
    values.set(l, at);
    offsets[i + 1] = at += l.length;
  });
  return { values, offsets };
}

/** Why reference log-probs are unusable for n pairs, or null. */
function refProblem(ref: DpoRef, n: number): string | null {
  if (!(ref.chosen instanceof Float64Array) || !(ref.rejected instanceof Float64Array)) return 'reference log-probs must be Float64Arrays';
  if (ref.chosen.length !== n || ref.rejected.length !== n) return `${ref.chosen.length} chosen and ${ref.rejected.length} rejected reference log-probs for ${n} pairs`;
  const bad = [...ref.chosen, ...ref.rejected].findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) return `reference log-prob ${bad % n} of the ${bad < n ? 'chosen' : 'rejected'} replies is not finite`;
  if (typeof ref.model !== 'string' || !ref.model) return 'the reference model id must be a non-empty string';
  return null;
}

function checkRef(path: string, ref: DpoRef, n: number): void {
  const why = refProblem(ref, n);
  if (why) throw new Error(`${path}: ${why}`);
}

export function writeDpoShard(file: string, pairs: DpoPair[], meta: { tokenizerHash: string; templateHash?: string; ref?: DpoRef | null }): void {
  if (!meta.tokenizerHash) throw new Error(`${file}: tokenizerHash must be a non-empty string`);
  const metadata = new Map([
    [KEY_FORMAT, DPO_SHARD_FORMAT],
    [KEY_HASH, meta.tokenizerHash],
    [KEY_PAIRS, String(pairs.length)],
  ]);
  if (meta.templateHash) metadata.set(KEY_TEMPLATE, meta.templateHash);
  const columns: Parameters<typeof writeArrowColumns>[1] = COLUMNS.map((name) => ({ name, kind: 'u32' as const, ...concatLists(file, pairs.map((p) => p[name])) }));
  if (meta.ref) {
    checkRef(file, meta.ref, pairs.length);
    metadata.set(KEY_REF, meta.ref.model);
    columns.push({ name: 'ref_chosen_logp', kind: 'f64', values: meta.ref.chosen }, { name: 'ref_rejected_logp', kind: 'f64', values: meta.ref.rejected });
  }
  writeArrowColumns(file, columns, metadata);
}

/** Reads a DPO shard; the pairs' arrays are zero-copy views into the file for single-batch files. */
export function readDpoShard(file: string, o: { tokenizerHash?: string } = {}): DpoShard {
  const f = readArrowFile(file, WHAT);
  const tokenizerHash = checkShardMeta(file, f.metadata, DPO_SHARD_FORMAT, WHAT, o.tokenizerHash);
  const invalid = (why: string): Error => new Error(`${file}: not a valid ${WHAT} (${why})`);
  const cols = COLUMNS.map((name) => {
    const c = readListColumn(f, name, 'u32', WHAT);
    if (c === null) throw new Error(`${file}: not a ${WHAT}: needs List<Uint32> columns ${COLUMNS.join(', ')}`);
    return c as { values: Uint32Array; offsets: Int32Array };
  });
  const n = cols[0].offsets.length - 1;
  if (cols.some((c) => c.offsets.length - 1 !== n)) throw invalid('the prompt, chosen and rejected columns have different row counts');
  const declared = f.metadata.get(KEY_PAIRS);
  if (declared !== undefined && Number(declared) !== n) throw invalid(`metadata says ${declared} pairs, the data holds ${n}`);
  const pairs: DpoPair[] = [];
  for (let i = 0; i < n; i++) {
    const [prompt, chosen, rejected] = cols.map((c) => c.values.subarray(c.offsets[i], c.offsets[i + 1]));
    if (chosen.length === 0 || rejected.length === 0) throw invalid(`pair ${i} has an empty reply`);
    pairs.push({ prompt, chosen, rejected });
  }
  const rc = readFloat64Column(f, 'ref_chosen_logp', WHAT);
  const rr = readFloat64Column(f, 'ref_rejected_logp', WHAT);
  let ref: DpoRef | null = null;
  if (rc !== null || rr !== null) {
    const model = f.metadata.get(KEY_REF);
    if (rc === null || rr === null || !model) throw invalid('reference log-probs need both ref_chosen_logp and ref_rejected_logp and metadata ko_train.ref_model');
    ref = { chosen: rc, rejected: rr, model };
    const why = refProblem(ref, n);
    if (why) throw invalid(why);
  }
  return { path: file, pairs, tokenizerHash, templateHash: f.metadata.get(KEY_TEMPLATE) ?? '', ref, refModel: ref?.model ?? null, metadata: f.metadata };
}

/** Rewrites a DPO shard with the reference model's log-probs (replacing any earlier ones), atomically. */
export function withRefLogps(file: string, ref: DpoRef): void {
  const shard = readDpoShard(file);
  checkRef(file, ref, shard.pairs.length);
  writeDpoShard(file, shard.pairs, { tokenizerHash: shard.tokenizerHash, templateHash: shard.templateHash, ref });
}

// ---------------------------------------------------------------------------------------------
// Preference pairs from multiple-choice tasks

export interface TextPair {
  prompt: string;
  chosen: string;
  rejected: string;
}

type McExample = Extract<TaskExample, { kind: 'multiple_choice' }>;

/**
 * Pairs from multiple-choice examples: the prompt is the example's context (what `eval --tasks` scores
 * the choices after, zero-shot), chosen the gold choice, rejected one wrong choice drawn with a seeded
 * generator per example (or every wrong choice). Choices are trimmed: as eval continuations they carry the
 * space that joins them to the context, which is noise in a chat reply.
 */
function mcPairs(examples: McExample[], o: { seed: number; allWrong: boolean }): TextPair[] {
  const out: TextPair[] = [];
  examples.forEach((e, i) => {
    const wrong = e.choices.map((_, j) => j).filter((j) => j !== e.gold && e.choices[j].trim() !== e.choices[e.gold].trim());
    if (wrong.length === 0) return;
    const rand = mulberry32((o.seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
    const picked = o.allWrong ? wrong : [wrong[Math.floor(rand() * wrong.length)]];
    for (const j of picked) out.push({ prompt: e.context, chosen: e.choices[e.gold].trim(), rejected: e.choices[j].trim() });
  });
  return out;
}

export function mcToDpoPairs(taskFile: string, o: { seed: number; allWrong: boolean }): TextPair[] {
  const examples = parseTaskFile(taskFile);
  if (examples[0].kind !== 'multiple_choice') throw new Error(`${taskFile}: not a multiple-choice task (its examples are ${examples[0].kind}); DPO pairs need choices and a gold answer`);
  return mcPairs(examples as McExample[], o);
}

/**
 * `ko-train dpo-pairs --tasks F --out F`: the multiple-choice tasks of --tasks (a file, a directory or a
 * task name, as for eval) as DPO JSONL. In a directory, tasks of other kinds are skipped with a note.
 * Returns the number of pairs written.
 */
export function dpoPairsCommand(o: { tasks: string; out: string; seed: number; allWrong: boolean; log: (s: string) => void }): number {
  const files = resolveTasks(o.tasks);
  const lines: string[] = [];
  let used = 0;
  for (const f of files) {
    const examples = parseTaskFile(f);
    if (examples[0].kind !== 'multiple_choice') {
      if (files.length === 1) throw new Error(`${f}: not a multiple-choice task (its examples are ${examples[0].kind}); DPO pairs need choices and a gold answer`);
      o.log(`dpo-pairs: skipping ${f} (${examples[0].kind}, not multiple choice)`);
      continue;
    }
    const task = nodePath.basename(f, '.jsonl');
    for (const p of mcPairs(examples as McExample[], o)) lines.push(JSON.stringify({ ...p, task }));
    used++;
  }
  if (used === 0) throw new Error(`--tasks ${o.tasks}: no multiple-choice task files`);
  fs.mkdirSync(nodePath.dirname(nodePath.resolve(o.out)), { recursive: true });
  writeFileAtomic(o.out, Buffer.from(lines.map((l) => l + '\n').join(''), 'utf8'));
  o.log(`dpo-pairs: wrote ${lines.length} pairs from ${used} multiple-choice task${used > 1 ? 's' : ''} to ${o.out}`);
  return lines.length;
}
