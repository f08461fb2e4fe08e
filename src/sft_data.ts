// sft_data.ts — supervised fine-tuning data: chat JSONL rendered with the model's chat template, tokenized,
// with a loss mask that is 1 exactly on what the model should learn to say (each assistant reply and the
// template's end-of-turn marker after it, so it learns to stop) and 0 on system/user turns and template
// scaffolding; packing of examples into fixed-length training rows; SFT Arrow shards.
//
// Input lines (JSONL), malformed ones counted with file:line and skipped:
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
//   {"prompt": "...", "response": "...", "system"?: "..."}          (a user turn and an assistant turn)
//   {"input_ids": [...], "loss_mask"?: [0|1, ...] | "labels"?: [id|-100, ...]}   (pre-tokenized, used as is)
import { Template } from '@huggingface/jinja';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import nodePath from 'node:path';
import readline from 'node:readline';
import { loadChatTemplate, renderChat, type ChatMessage, type ChatTemplate } from './chat_template.js';
import type { LineIssues } from './jsonl.js';
import { readArrowFile, readListColumn, writeArrowColumns } from './arrow_lists.js';
import { mulberry32 } from './sampler.js';
import type { TextTokenizer } from './tokenizer.js';

// ---------------------------------------------------------------------------------------------
// Chat templates

const CHATML_SOURCE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/**
 * ChatML, for tokenizers without a chat template (the from-scratch tokenizer): `<|im_start|>role\ncontent<|im_end|>\n`,
 * generation prompt `<|im_start|>assistant\n`. Where the markers are not special tokens they are plain text.
 */
export function defaultChatTemplate(): ChatTemplate {
  return { source: CHATML_SOURCE, bosToken: '', eosToken: '<|im_end|>' };
}

function readJsonObject(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read tokenizer config (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: tokenizer config is not a JSON object`);
  return v as Record<string, unknown>;
}

function tokenText(t: unknown): string {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string') return (t as { content: string }).content;
  return '';
}

/**
 * The chat template to train and chat with: `override` (a tokenizer_config.json, or a .jinja file whose
 * bos/eos tokens come from the tokenizer_config.json beside the tokenizer), else the chat_template of the
 * tokenizer_config.json beside tokenizer.json, else ChatML. `origin` says which, for logs; `hash` is
 * templateHash of the result.
 */
export function resolveChatTemplate(tokenizerJsonPath: string, override?: string | null): ResolvedChatTemplate {
  const t = findChatTemplate(tokenizerJsonPath, override);
  return { ...t, hash: templateHash(t) };
}

export type ResolvedChatTemplate = ChatTemplate & { origin: string; hash: string };

function findChatTemplate(tokenizerJsonPath: string, override?: string | null): ChatTemplate & { origin: string } {
  const besideFile = nodePath.join(nodePath.dirname(tokenizerJsonPath), 'tokenizer_config.json');
  const beside = fs.existsSync(besideFile) ? readJsonObject(besideFile) : null;
  if (override) {
    if (!fs.existsSync(override)) throw new Error(`${override}: chat template file not found`);
    if (override.endsWith('.json')) return { ...loadChatTemplate(override), origin: override };
    const source = fs.readFileSync(override, 'utf8');
    if (!source.trim()) throw new Error(`${override}: chat template file is empty`);
    return { source, bosToken: tokenText(beside?.bos_token), eosToken: tokenText(beside?.eos_token), origin: override };
  }
  if (beside !== null) {
    const t = beside.chat_template;
    const hasTemplate = (typeof t === 'string' && t.length > 0) || (Array.isArray(t) && t.length > 0);
    if (hasTemplate) return { ...loadChatTemplate(besideFile), origin: besideFile };
  }
  return { ...defaultChatTemplate(), origin: 'default ChatML' };
}

/** sha256 of the template text and its bos/eos tokens, first 16 hex digits (stored in shard metadata). */
export function templateHash(t: ChatTemplate): string {
  return createHash('sha256').update(JSON.stringify([t.source, t.bosToken, t.eosToken])).digest('hex').slice(0, 16);
}

const PROBE = 'ko-train-probe-reply';
const KNOWN_END_OF_TURN = ['<|im_end|>', '<|eot_id|>', '<end_of_turn>', '<|end|>', '</s>'];

/**
 * The end-of-turn strings of a template, for stopping generation: the text the template puts right after
 * an assistant reply (found by rendering a probe conversation), then its eos token.
 */
export function stopStringsOf(t: ChatTemplate): string[] {
  const out: string[] = [];
  try {
    const text = renderChat(t, [{ role: 'user', content: 'q' }, { role: 'assistant', content: PROBE }], { addGenerationPrompt: false });
    const at = text.lastIndexOf(PROBE);
    const tail = at >= 0 ? text.slice(at + PROBE.length).trim().split(/\s/)[0] : '';
    if (tail) out.push(tail);
  } catch {
    // Templates that refuse the probe fall back to the markers they mention.
    out.push(...KNOWN_END_OF_TURN.filter((m) => t.source.includes(m)));
  }
  if (t.eosToken) out.push(t.eosToken);
  return [...new Set(out)];
}

// ---------------------------------------------------------------------------------------------
// JSONL lines and conversations

export function noteIssue(issues: LineIssues, where: string, why: string): void {
  issues.malformed++;
  if (issues.examples.length < 5) issues.examples.push(`${where}: ${why}`);
}

/** The JSON objects of a JSONL file with their "file:line"; bad lines are noted and skipped. */
export async function* jsonlObjects(file: string, issues: LineIssues): AsyncGenerator<{ obj: Record<string, unknown>; where: string }> {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const rl = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    if (line.trim() === '') continue;
    const where = `${file}:${n}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      noteIssue(issues, where, `not JSON (${(e as Error).message.slice(0, 60)})`);
      continue;
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      noteIssue(issues, where, 'not a JSON object');
      continue;
    }
    yield { obj: obj as Record<string, unknown>, where };
  }
}

/**
 * Checks a conversation: an optional system turn first, then user and assistant turns alternating from a
 * user turn, ending with `last`; assistant replies non-empty. Returns the NFC-normalized messages (the
 * tokenizers and eval prompts see NFC text) or why the conversation is unusable.
 */
export function checkConversation(v: unknown, last: 'user' | 'assistant'): ChatMessage[] | string {
  if (!Array.isArray(v) || v.length === 0) return '"messages" must be a non-empty array';
  const msgs: ChatMessage[] = [];
  for (const [i, m] of v.entries()) {
    const r = (m as { role?: unknown } | null)?.role;
    const c = (m as { content?: unknown } | null)?.content;
    if (typeof r !== 'string' || typeof c !== 'string') return `message ${i + 1} needs string "role" and "content"`;
    msgs.push({ role: r, content: c.normalize('NFC') });
  }
  const first = msgs[0].role === 'system' ? 1 : 0;
  if (first === msgs.length) return 'only a system message';
  for (let i = first; i < msgs.length; i++) {
    const want = (i - first) % 2 === 0 ? 'user' : 'assistant';
    if (msgs[i].role !== want) {
      return `message ${i + 1} has role ${JSON.stringify(msgs[i].role)}, expected "${want}" (an optional system turn first, then user and assistant alternating)`;
    }
    if (want === 'assistant' && msgs[i].content.trim() === '') return `assistant message ${i + 1} is empty`;
  }
  if (msgs[msgs.length - 1].role !== last) return `the conversation must end with a${last === 'user' ? ' user' : 'n assistant'} turn`;
  return msgs;
}

const parsedTemplates = new Map<string, Template>();

/**
 * renderChat's rendering (same variables) with the parsed template cached: an SFT example takes 1 + 2 x turns
 * renderings, and parsing Qwen3's template costs about 1.4 ms each time, more than the rendering itself.
 */
export function renderCached(t: ChatTemplate, msgs: ChatMessage[], addGenerationPrompt: boolean): string {
  let tpl = parsedTemplates.get(t.source);
  if (tpl === undefined) {
    tpl = new Template(t.source);
    parsedTemplates.set(t.source, tpl);
  }
  return tpl.render({ messages: msgs, add_generation_prompt: addGenerationPrompt, bos_token: t.bosToken, eos_token: t.eosToken });
}

const render = renderCached;

/**
 * The [start, end) character span of assistant turn i in `full` (the rendered conversation): from the end
 * of the generation prompt to the end of the reply's end-of-turn marker. The start is the length of the
 * rendering of the turns before it plus the generation prompt; the end that of the rendering through turn i,
 * less the whitespace the template puts between turns (generation stops at the marker, before it). Templates
 * that render history turns differently from the last one (Qwen3 drops <think> blocks) fail the second
 * prefix test; there the reply is looked up after the start and the marker taken from `stops`.
 */
export function replySpan(t: ChatTemplate, msgs: ChatMessage[], i: number, full: string, stops: string[]): [number, number] | string {
  let pre: string;
  try {
    pre = render(t, msgs.slice(0, i), true);
  } catch (e) {
    return `the template fails on the turns before message ${i + 1} (${(e as Error).message})`;
  }
  if (!full.startsWith(pre)) return `the template renders the turns before message ${i + 1} differently from the start of the whole conversation`;
  const start = pre.length;
  let thru = '';
  try {
    thru = render(t, msgs.slice(0, i + 1), false);
  } catch {
    // the lookup below decides
  }
  if (thru.length > start && full.startsWith(thru)) {
    let end = thru.length;
    while (end > start && /\s/.test(full[end - 1])) end--;
    return [start, end];
  }
  const reply = msgs[i].content.trim();
  const p = full.indexOf(reply, start);
  if (p < 0 || stops.some((s) => full.slice(start, p).includes(s))) {
    return `cannot find the reply of message ${i + 1} in the rendered conversation (the template changes it)`;
  }
  let end = p + reply.length;
  const stop = stops.find((s) => full.startsWith(s, end));
  if (stop !== undefined) end += stop.length;
  return [start, end];
}

/**
 * Loss mask of a tokenized text: 1 on every token holding at least one character of a span. A token that
 * straddles a span's edge (byte-level BPE merges ".<" or ">\n" across the reply/marker boundary) is trained,
 * so the model can produce every character of the reply and the whole marker.
 */
export function maskOfSpans(offsets: Uint32Array, spans: Array<[number, number]>): Uint8Array {
  const n = offsets.length / 2;
  const mask = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    const a = offsets[2 * k];
    const b = offsets[2 * k + 1];
    for (const [s, e] of spans) {
      if ((a < e && b > s) || (a === b && a >= s && a < e)) {
        mask[k] = 1;
        break;
      }
    }
  }
  return mask;
}

/** Prepends BOS when the tokenizer has one and the rendered text did not already start with it. */
export function withBos(tok: TextTokenizer, ids: Uint32Array, mask: Uint8Array): { ids: Uint32Array; mask: Uint8Array } {
  if (tok.bosId === null || (ids.length > 0 && ids[0] === tok.bosId)) return { ids, mask };
  const i2 = new Uint32Array(ids.length + 1);
  i2[0] = tok.bosId;
  i2.set(ids, 1);
  const m2 = new Uint8Array(mask.length + 1);
  m2.set(mask, 1);
  return { ids: i2, mask: m2 };
}

// ---------------------------------------------------------------------------------------------
// Loading SFT examples

export interface SftExamples {
  tokens: Uint32Array;
  /** 1 where the token is trained as a target (reply and end-of-turn), same length as tokens. */
  lossMask: Uint8Array;
  /** numExamples + 1 boundaries into tokens. */
  offsets: Uint32Array;
}

interface Rendered {
  text: string;
  spans: Array<[number, number]>;
}

/** Messages of an SFT line, or why the line is unusable. */
function sftMessages(obj: Record<string, unknown>): ChatMessage[] | string {
  if ('messages' in obj) return checkConversation(obj.messages, 'assistant');
  if (typeof obj.prompt === 'string' && typeof obj.response === 'string') {
    if (obj.system !== undefined && typeof obj.system !== 'string') return '"system" must be a string';
    const msgs = [
      ...(typeof obj.system === 'string' && obj.system ? [{ role: 'system', content: obj.system }] : []),
      { role: 'user', content: obj.prompt },
      { role: 'assistant', content: obj.response },
    ];
    return checkConversation(msgs, 'assistant');
  }
  return 'needs "messages", "prompt" and "response" strings, or "input_ids"';
}

function renderSft(t: ChatTemplate, msgs: ChatMessage[], stops: string[]): Rendered | string {
  let text: string;
  try {
    text = render(t, msgs, false);
  } catch (e) {
    return `the chat template fails on this conversation (${(e as Error).message})`;
  }
  const spans: Array<[number, number]> = [];
  for (let i = 0; i < msgs.length; i++) {
    if (msgs[i].role !== 'assistant') continue;
    const span = replySpan(t, msgs, i, text, stops);
    if (typeof span === 'string') return span;
    spans.push(span);
  }
  return { text, spans };
}

/** A pre-tokenized line: ids and loss mask (from loss_mask, or labels != -100, else every token trained). */
function pretokenized(obj: Record<string, unknown>, vocabSize: number): { ids: Uint32Array; mask: Uint8Array } | string {
  const ids = obj.input_ids;
  if (!Array.isArray(ids) || ids.length === 0) return '"input_ids" must be a non-empty array';
  if (!ids.every((x) => Number.isInteger(x) && x >= 0 && x < vocabSize)) return `"input_ids" holds a value that is not a token id in [0, ${vocabSize})`;
  const mask = new Uint8Array(ids.length);
  if (obj.loss_mask !== undefined) {
    const m = obj.loss_mask;
    if (!Array.isArray(m) || m.length !== ids.length || !m.every((x) => x === 0 || x === 1)) return `"loss_mask" must be ${ids.length} zeros and ones, as long as "input_ids"`;
    mask.set(m as number[]);
  } else if (obj.labels !== undefined) {
    const l = obj.labels;
    if (!Array.isArray(l) || l.length !== ids.length || !l.every((x) => Number.isInteger(x))) return `"labels" must be ${ids.length} integers (-100 = not trained), as long as "input_ids"`;
    l.forEach((x, j) => (mask[j] = x === -100 ? 0 : 1));
  } else {
    mask.fill(1);
  }
  if (!mask.some((x) => x === 1)) return 'no token is trained (the loss mask is all zeros)';
  return { ids: Uint32Array.from(ids as number[]), mask };
}

const ENCODE_CHUNK = 256; // conversations per tokenizer call

/**
 * Reads SFT JSONL into one token stream with a loss mask and example boundaries. Each chat example is
 * rendered with `template`, tokenized in one piece with character offsets, and masked by the character spans
 * of its assistant turns (see replySpan, maskOfSpans). With maxLen, longer examples are cut to maxLen tokens
 * (counted in `truncated`).
 */
export async function loadSftExamples(
  file: string,
  tokenizer: TextTokenizer,
  template: ChatTemplate,
  o: { maxLen?: number } = {},
): Promise<SftExamples & { issues: LineIssues; truncated: number }> {
  if (o.maxLen !== undefined && !(Number.isInteger(o.maxLen) && o.maxLen >= 2)) throw new Error(`loadSftExamples: maxLen ${o.maxLen} must be an integer >= 2`);
  const issues: LineIssues = { malformed: 0, examples: [] };
  const stops = stopStringsOf(template);
  const ids: Uint32Array[] = [];
  const masks: Uint8Array[] = [];
  let truncated = 0;
  const push = (x: { ids: Uint32Array; mask: Uint8Array }): void => {
    if (o.maxLen !== undefined && x.ids.length > o.maxLen) {
      truncated++;
      x = { ids: x.ids.subarray(0, o.maxLen), mask: x.mask.subarray(0, o.maxLen) };
    }
    ids.push(x.ids);
    masks.push(x.mask);
  };

  let pending: Rendered[] = [];
  const flush = async (): Promise<void> => {
    const encs = await tokenizer.encodeWithOffsets(pending.map((r) => r.text));
    encs.forEach((e, k) => push(withBos(tokenizer, e.ids, maskOfSpans(e.offsets, pending[k].spans))));
    pending = [];
  };

  for await (const { obj, where } of jsonlObjects(file, issues)) {
    if ('input_ids' in obj) {
      // Flush first so that examples keep the file's order.
      if (pending.length) await flush();
      const x = pretokenized(obj, tokenizer.vocabSize);
      if (typeof x === 'string') noteIssue(issues, where, x);
      else push(x);
      continue;
    }
    const msgs = sftMessages(obj);
    if (typeof msgs === 'string') {
      noteIssue(issues, where, msgs);
      continue;
    }
    const r = renderSft(template, msgs, stops);
    if (typeof r === 'string') {
      noteIssue(issues, where, r);
      continue;
    }
    pending.push(r);
    if (pending.length >= ENCODE_CHUNK) await flush();
  }
  if (pending.length) await flush();

  const total = ids.reduce((n, x) => n + x.length, 0);
  const tokens = new Uint32Array(total);
  const lossMask = new Uint8Array(total);
  const offsets = new Uint32Array(ids.length + 1);
  let at = 0;
  ids.forEach((x, i) => {
    tokens.set(x, at);
    lossMask.set(masks[i], at);
    at += x.length;
    offsets[i + 1] = at;
  });
  return { tokens, lossMask, offsets, issues, truncated };
}

// ---------------------------------------------------------------------------------------------
// Training rows

export interface SftRows {
  /** rows * T input ids. */
  inputs: Uint32Array;
  /** rows * T targets: the next token of the same example where it is trained, else -1. */
  targets: Int32Array;
  /** rows * T positions: 0 at each example's (and the padding's) first token, +1 after. */
  positions: Int32Array;
  rows: number;
  /** Mean examples per row. */
  examplesPerRow: number;
  /** Examples longer than T + 1 tokens, cut to T + 1. */
  truncated: number;
  /** Examples left out: fewer than 2 tokens, or no trained target (after the cut). */
  dropped: number;
}

interface Item {
  start: number; // token offset of the example
  len: number; // positions it takes: tokens - 1
}

function usableItems(ex: SftExamples, T: number): { items: Item[]; truncated: number; dropped: number } {
  const items: Item[] = [];
  let truncated = 0;
  let dropped = 0;
  const n = ex.offsets.length - 1;
  for (let e = 0; e < n; e++) {
    const start = ex.offsets[e];
    let tokens = ex.offsets[e + 1] - start;
    if (tokens > T + 1) {
      tokens = T + 1;
      truncated++;
    }
    let trained = false;
    for (let j = 1; j < tokens && !trained; j++) trained = ex.lossMask[start + j] === 1;
    if (tokens < 2 || !trained) dropped++;
    else items.push({ start, len: tokens - 1 });
  }
  return { items, truncated, dropped };
}

/** Bins by remaining capacity, with a bitset of the non-empty capacities: smallest fitting bin in O(T/32). */
class CapacityIndex {
  private readonly words: Uint32Array;
  private readonly stacks: number[][];

  constructor(T: number) {
    this.words = new Uint32Array((T >> 5) + 1);
    this.stacks = Array.from({ length: T + 1 }, () => []);
  }

  add(room: number, bin: number): void {
    if (room <= 0) return;
    this.stacks[room].push(bin);
    this.words[room >> 5] |= 1 << (room & 31);
  }

  /** Takes the bin with the least room >= need, or returns -1. */
  take(need: number): number {
    let w = need >> 5;
    let bits = this.words[w] & (-1 << (need & 31));
    while (bits === 0) {
      if (++w >= this.words.length) return -1;
      bits = this.words[w];
    }
    const room = (w << 5) + (31 - Math.clz32(bits & -bits));
    const stack = this.stacks[room];
    const bin = stack.pop() as number;
    if (stack.length === 0) this.words[room >> 5] &= ~(1 << (room & 31));
    return bin;
  }
}

/** Best-fit decreasing: longest first (ties in a seeded order), each into the fullest row it fits. */
function packBins(items: Item[], T: number, seed: number): Item[][] {
  const rand = mulberry32(seed >>> 0);
  const keyed = items.map((it) => ({ it, key: rand() }));
  keyed.sort((a, b) => b.it.len - a.it.len || a.key - b.key);
  const bins: Item[][] = [];
  const room: number[] = [];
  const index = new CapacityIndex(T);
  for (const { it } of keyed) {
    let bin = index.take(it.len);
    if (bin < 0) {
      bin = bins.length;
      bins.push([]);
      room.push(T);
    }
    bins[bin].push(it);
    room[bin] -= it.len;
    index.add(room[bin], bin);
  }
  // Rows come out longest-first; shuffle them (seeded) so that a sequential reader does not see lengths sorted.
  for (let i = bins.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [bins[i], bins[j]] = [bins[j], bins[i]];
  }
  return bins;
}

/**
 * Training rows of exactly T positions. An example of n tokens gives inputs tok[0..n-2] and targets
 * tok[1..n-1], target j being -1 unless token j+1 is trained; positions restart at 0 with each example, so
 * (with the addon's per-example attention) no token sees another example and no target crosses a boundary.
 * pack: examples share rows (best-fit decreasing, rows in a seeded order; the unused tail is a padding
 * "example" of padId inputs, targets -1, positions from 0). Otherwise one example per row in input order,
 * right-padded with padId and targets -1, positions 0..T-1.
 */
export function packSftRows(ex: SftExamples, T: number, o: { pack: boolean; seed: number; padId?: number }): SftRows {
  if (!Number.isInteger(T) || T < 1) throw new Error(`packSftRows: T ${T} must be a positive integer`);
  if (ex.lossMask.length !== ex.tokens.length) throw new Error(`packSftRows: loss mask has ${ex.lossMask.length} entries for ${ex.tokens.length} tokens`);
  const padId = o.padId ?? 0;
  const { items, truncated, dropped } = usableItems(ex, T);
  const rows = o.pack ? packBins(items, T, o.seed) : items.map((it) => [it]);
  const inputs = new Uint32Array(rows.length * T).fill(padId);
  const targets = new Int32Array(rows.length * T).fill(-1);
  const positions = new Int32Array(rows.length * T);
  rows.forEach((row, r) => {
    let col = r * T;
    for (const it of row) {
      for (let j = 0; j < it.len; j++, col++) {
        inputs[col] = ex.tokens[it.start + j];
        if (ex.lossMask[it.start + j + 1] === 1) targets[col] = ex.tokens[it.start + j + 1];
        positions[col] = j;
      }
    }
    // Padding: its own "example" when packed; when not packed the row's positions simply run on to T-1.
    const padStart = o.pack ? col : r * T;
    for (let p = col; p < (r + 1) * T; p++) positions[p] = p - padStart;
  });
  return { inputs, targets, positions, rows: rows.length, examplesPerRow: rows.length ? items.length / rows.length : 0, truncated, dropped };
}

// ---------------------------------------------------------------------------------------------
// SFT shards: columns input_ids List<Uint32> and loss_mask List<Uint8>, one row per example (the list
// offsets are the example boundaries), in the layout of the pretraining shards (shards.ts).

export const SFT_SHARD_FORMAT = 'sft-v1';
const KEY_FORMAT = 'ko_train.format';
const KEY_HASH = 'ko_train.tokenizer_hash';
const KEY_TEMPLATE = 'ko_train.template_hash';
const KEY_TOKENS = 'ko_train.num_tokens';
const KEY_EXAMPLES = 'ko_train.num_examples';
const WHAT = 'ko-train SFT shard';

export interface SftShard extends SftExamples {
  path: string;
  numExamples: number;
  tokenizerHash: string;
  templateHash: string;
  metadata: Map<string, string>;
}

export function writeSftShard(file: string, ex: SftExamples, meta: { tokenizerHash: string; templateHash?: string }): void {
  if (ex.lossMask.length !== ex.tokens.length) throw new Error(`${file}: loss mask has ${ex.lossMask.length} entries for ${ex.tokens.length} tokens`);
  if (!meta.tokenizerHash) throw new Error(`${file}: tokenizerHash must be a non-empty string`);
  const offsets = new Int32Array(ex.offsets); // boundaries fit Int32: writeArrowColumns refuses more than 2^31-1 values
  const metadata = new Map([
    [KEY_FORMAT, SFT_SHARD_FORMAT],
    [KEY_HASH, meta.tokenizerHash],
    [KEY_TOKENS, String(ex.tokens.length)],
    [KEY_EXAMPLES, String(ex.offsets.length - 1)],
  ]);
  if (meta.templateHash) metadata.set(KEY_TEMPLATE, meta.templateHash);
  writeArrowColumns(
    file,
    [
      { name: 'input_ids', kind: 'u32', values: ex.tokens, offsets },
      { name: 'loss_mask', kind: 'u8', values: ex.lossMask, offsets },
    ],
    metadata,
  );
}

/** Checks the ko_train.format and tokenizer hash keys of a shard (shared with the DPO shards). */
export function checkShardMeta(path: string, metadata: Map<string, string>, format: string, what: string, expectedTokenizerHash?: string): string {
  const found = metadata.get(KEY_FORMAT);
  if (found !== format) {
    throw new Error(`${path}: not a ${what}: schema metadata ${KEY_FORMAT} is ${found === undefined ? 'missing' : JSON.stringify(found)}, expected "${format}"`);
  }
  const hash = metadata.get(KEY_HASH);
  if (!hash) throw new Error(`${path}: schema metadata ${KEY_HASH} is missing`);
  if (expectedTokenizerHash !== undefined && hash !== expectedTokenizerHash) {
    throw new Error(`${path}: made with another tokenizer (hash ${hash}, expected ${expectedTokenizerHash}); prepare the data again with this tokenizer`);
  }
  return hash;
}

/** Reads an SFT shard; tokens and loss mask are zero-copy views into the file for single-batch files. */
export function readSftShard(file: string, o: { tokenizerHash?: string } = {}): SftShard {
  const f = readArrowFile(file, WHAT);
  const tokenizerHash = checkShardMeta(file, f.metadata, SFT_SHARD_FORMAT, WHAT, o.tokenizerHash);
  const ids = readListColumn(f, 'input_ids', 'u32', WHAT);
  const mask = readListColumn(f, 'loss_mask', 'u8', WHAT);
  if (ids === null || mask === null) throw new Error(`${file}: not a ${WHAT}: needs columns input_ids List<Uint32> and loss_mask List<Uint8>`);
  const invalid = (why: string): Error => new Error(`${file}: not a valid ${WHAT} (${why})`);
  if (ids.offsets.length !== mask.offsets.length || ids.offsets.some((x, i) => x !== mask.offsets[i])) {
    throw invalid('input_ids and loss_mask have different example boundaries');
  }
  if (mask.values.some((x) => x > 1)) throw invalid('loss_mask holds a value other than 0 and 1');
  const numExamples = ids.offsets.length - 1;
  const declared = [f.metadata.get(KEY_TOKENS), f.metadata.get(KEY_EXAMPLES)];
  if (declared[0] !== undefined && Number(declared[0]) !== ids.values.length) throw invalid(`metadata says ${declared[0]} tokens, the data holds ${ids.values.length}`);
  if (declared[1] !== undefined && Number(declared[1]) !== numExamples) throw invalid(`metadata says ${declared[1]} examples, the data holds ${numExamples}`);
  const offsets = new Uint32Array(ids.offsets.buffer, ids.offsets.byteOffset, ids.offsets.length); // non-negative, checked
  return {
    path: file,
    tokens: ids.values as Uint32Array,
    lossMask: mask.values as Uint8Array,
    offsets,
    numExamples,
    tokenizerHash,
    templateHash: f.metadata.get(KEY_TEMPLATE) ?? '',
    metadata: f.metadata,
  };
}
