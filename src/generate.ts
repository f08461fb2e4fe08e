// generate.ts — text generation with the KV cache: greedy (temperature 0), temperature, top-k, top-p; several
// prompts at once (batched: one native call per step feeds every unfinished sequence), stop strings and
// streaming of the text as it becomes final.
import { loadModel, type LoadedModel } from './evaluate.js';
import type { NativeModel } from './native.js';
import { mulberry32 } from './sampler.js';
import type { TextTokenizer } from './tokenizer.js';

export interface SampleOptions {
  temperature: number;
  topK: number; // 0 = off
  topP: number; // 1 = off
}

// Picks the next token from logits; rand() in [0,1).
export function sampleToken(logits: Float32Array, o: SampleOptions, rand: () => number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (o.temperature <= 0) return best;
  const max = logits[best];
  let cand: Array<{ id: number; p: number }> = [];
  for (let i = 0; i < logits.length; i++) cand.push({ id: i, p: Math.exp((logits[i] - max) / o.temperature) });
  cand.sort((a, b) => b.p - a.p || a.id - b.id);
  if (o.topK > 0) cand = cand.slice(0, o.topK);
  let sum = cand.reduce((s, c) => s + c.p, 0);
  if (o.topP < 1) {
    let acc = 0, keep = 0;
    while (keep < cand.length && acc < o.topP * sum) acc += cand[keep++].p;
    cand = cand.slice(0, Math.max(1, keep));
    sum = acc;
  }
  let u = rand() * sum;
  for (const c of cand) if ((u -= c.p) <= 0) return c.id;
  return cand[cand.length - 1].id;
}

export interface GenerateOptions extends SampleOptions {
  maxNewTokens: number;
  seed: number;
  /** Generation halts when the new text contains one of these; the text is cut before it. */
  stop?: string[];
}

export interface BatchOptions extends GenerateOptions {
  /** Receives each sequence's new text piece by piece as it becomes final (never text a stop string cuts). */
  onText?: (seq: number, text: string) => void;
  /** A KV cache kept across calls (chat): prompt i reuses what slot i already holds of it. */
  session?: DecodeSession;
}

export interface BatchResult {
  text: string; // the new text, cut before the stop string
  ids: number[]; // the new tokens, EOS or a stop token not included
  promptTokens: number;
  newTokens: number;
  finish: 'eos' | 'stop' | 'length';
  msPerToken: number; // wall time of the decoding steps per new token of the whole batch
}

// The session whose contents a model's native KV cache holds: another session's reset (a generateBatch call
// without this session) invalidates it. (Direct decodeReset calls on the net are not seen: do not mix them
// with a kept session.)
const cacheOwner = new WeakMap<NativeModel, DecodeSession>();

/**
 * The native KV cache and which tokens each slot holds, so a later call can skip the prefix a prompt shares
 * with what a slot already computed (a chat's history). The cache grows by doubling, up to the model's
 * max_position_embeddings; growing it starts empty.
 */
export class DecodeSession {
  maxT = 0;
  batch = 0;
  cached: number[][] = [];

  constructor(readonly net: NativeModel) {}

  reserve(maxT: number, batch: number): void {
    if (cacheOwner.get(this.net) === this && maxT <= this.maxT && batch <= this.batch) return;
    const T = Math.max(maxT, this.maxT), B = Math.max(batch, this.batch);
    this.net.decodeReset(T, B);
    cacheOwner.set(this.net, this);
    this.maxT = T;
    this.batch = B;
    this.cached = Array.from({ length: B }, () => []);
  }
}

// Stream i's generator: stream 0 is mulberry32(seed), as single-prompt generation always used, and the
// others are decorrelated by the index, so a sequence's samples depend on the seed and its index only.
function streamRng(seed: number, i: number): () => number {
  return mulberry32((seed ^ Math.imul(i, 0x9e3779b1)) >>> 0);
}

/**
 * Incremental detokenization (as vLLM's): decodes only a short window of tokens each time, and reports text
 * once it is final — not while the window ends inside a multi-byte character (U+FFFD). The window starts with
 * a few prompt tokens so that decoders that treat the first token specially (Metaspace's leading space)
 * see the real left context.
 */
class Detokenizer {
  private toks: number[];
  private prefix = 0;
  private read: number;

  constructor(private readonly tok: TextTokenizer, context: ArrayLike<number>) {
    this.toks = Array.from(context).slice(-5);
    this.read = this.toks.length;
  }

  async push(id: number): Promise<string> {
    this.toks.push(id);
    const before = await this.tok.decode(this.toks.slice(this.prefix, this.read));
    const now = await this.tok.decode(this.toks.slice(this.prefix));
    if (now.length <= before.length || now.endsWith('\uFFFD')) return '';
    // Drop what the window has moved past so the array stays short however long the output.
    this.toks = this.toks.slice(this.read);
    this.prefix = 0;
    this.read = this.toks.length;
    return now.slice(before.length);
  }

  // What is left at the end (an incomplete character decodes to U+FFFD).
  async flush(): Promise<string> {
    if (this.read === this.toks.length) return '';
    const before = await this.tok.decode(this.toks.slice(this.prefix, this.read));
    const now = await this.tok.decode(this.toks.slice(this.prefix));
    this.read = this.toks.length;
    return now.slice(before.length);
  }
}

// Length of the longest proper prefix of a stop string that `text` ends with: text that may still become
// the start of a stop string, held back from streaming.
function heldBack(text: string, stops: string[]): number {
  let h = 0;
  for (const s of stops)
    for (let k = Math.min(s.length - 1, text.length); k > h; k--)
      if (text.endsWith(s.slice(0, k))) {
        h = k;
        break;
      }
  return h;
}

/** Ids of each prompt: text is NFC-normalised and encoded with BOS in front; token arrays are used as is. */
export async function promptIds(lm: LoadedModel, prompts: Array<string | ArrayLike<number>>): Promise<number[][]> {
  const V = lm.config.vocab_size;
  const texts = prompts.filter((p): p is string => typeof p === 'string');
  if (texts.length && !lm.tokenizer) throw new Error('the checkpoint has no tokenizer.json beside the weights, cannot encode the prompts');
  const enc = texts.length ? await lm.tokenizer!.encodeBatch(texts.map((t) => t.normalize('NFC'))) : [];
  let k = 0;
  return prompts.map((p, i) => {
    let ids: number[];
    if (typeof p === 'string') {
      ids = Array.from(enc[k++]);
      if (lm.tokenizer!.bosId !== null) ids.unshift(lm.tokenizer!.bosId);
    } else {
      ids = Array.from(p);
      ids.forEach((t, j) => {
        if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`prompt ${i}: token ${j} is ${t}, not an id below the vocabulary size ${V}`);
      });
    }
    if (ids.length === 0) throw new Error(`prompt ${i} encodes to no tokens`);
    return ids;
  });
}

/**
 * Generates a continuation of every prompt. All prompts are prefilled together (one native call per chunk of
 * prompt tokens), then advance together, one token per step; a finished sequence (EOS, a stop string, a stop
 * token, maxNewTokens, or the end of the context) leaves the batch. Sequence i samples from its own seeded
 * stream, so its output does not depend on the other prompts (up to float rounding of the batched GEMMs).
 */
export async function generateBatch(lm: LoadedModel, prompts: Array<string | ArrayLike<number>>, o: BatchOptions): Promise<BatchResult[]> {
  if (!lm.tokenizer) throw new Error('the checkpoint has no tokenizer.json beside the weights, cannot decode the output');
  const tok = lm.tokenizer;
  if (prompts.length === 0) return [];
  if (!(Number.isInteger(o.maxNewTokens) && o.maxNewTokens >= 1)) throw new Error(`maxNewTokens must be a positive integer, got ${o.maxNewTokens}`);
  const stops = o.stop ?? [];
  if (stops.some((s) => typeof s !== 'string' || s.length === 0)) throw new Error('stop strings must be non-empty');
  // A stop string that is one special token never shows in the decoded text (special tokens are skipped):
  // stop on its id instead.
  const stopIds = new Set<number>();
  for (const s of stops) {
    const id = tok.tokenToId(s);
    if (id !== null && (await tok.decode([id])) === '') stopIds.add(id);
  }
  const maxStop = Math.max(0, ...stops.map((s) => s.length));
  const V = lm.config.vocab_size;
  const ids = await promptIds(lm, prompts);
  const n = ids.length;

  const maxPos = lm.config.max_position_embeddings;
  const need = Math.min(maxPos, Math.max(...ids.map((p) => p.length + o.maxNewTokens)));
  const session = o.session ?? new DecodeSession(lm.net);
  // A kept session grows by doubling (from 512 positions) so that later calls mostly find their prefix cached.
  session.reserve(o.session ? Math.min(maxPos, Math.max(need, 2 * session.maxT, 512)) : need, n);
  const limit = Math.min(session.maxT, maxPos); // positions a sequence may occupy
  ids.forEach((p, i) => {
    if (p.length >= limit) throw new Error(`prompt ${i} (${p.length} tokens) leaves no room within ${limit} positions`);
  });

  // Prefill: the rows of every prompt not already in its slot, in chunks that keep the logits of one call
  // (rows x vocab floats) near 16 MB. Only each prompt's last row's logits are used.
  const rows: Array<[number, number]> = []; // [sequence, position]
  for (let i = 0; i < n; i++) {
    const c = session.cached[i];
    let keep = 0;
    while (keep < c.length && keep < ids[i].length - 1 && c[keep] === ids[i][keep]) keep++;
    c.length = keep;
    for (let p = keep; p < ids[i].length; p++) rows.push([i, p]);
  }
  const logits: Float32Array[] = new Array(n);
  const chunk = Math.max(1, Math.min(256, Math.floor((1 << 22) / V)));
  for (let a = 0; a < rows.length; a += chunk) {
    const part = rows.slice(a, a + chunk);
    const out = lm.net.decodeBatch(
      Uint32Array.from(part, ([i, p]) => ids[i][p]),
      Int32Array.from(part, ([, p]) => p),
      Int32Array.from(part, ([i]) => i),
    );
    part.forEach(([i, p], r) => {
      session.cached[i].push(ids[i][p]);
      if (p === ids[i].length - 1) logits[i] = out.slice(r * V, (r + 1) * V);
    });
  }

  const seqs = ids.map((p, i) => ({
    rand: streamRng(o.seed, i),
    detok: new Detokenizer(tok, p),
    out: [] as number[],
    text: '',
    emitted: 0,
    finish: null as BatchResult['finish'] | null,
  }));
  // Appends decoded text; true when a stop string now occurs (the text is then cut before it).
  const addText = (i: number, piece: string): boolean => {
    const s = seqs[i];
    const from = Math.max(0, s.text.length - maxStop + 1); // earlier text was searched already
    s.text += piece;
    let cut = -1;
    for (const stop of stops) {
      const k = s.text.indexOf(stop, from);
      if (k >= 0 && (cut < 0 || k < cut)) cut = k;
    }
    if (cut >= 0) s.text = s.text.slice(0, cut);
    return cut >= 0;
  };
  const emit = (i: number, upTo: number): void => {
    const s = seqs[i];
    if (o.onText && upTo > s.emitted) o.onText(i, s.text.slice(s.emitted, upTo));
    s.emitted = Math.max(s.emitted, upTo);
  };
  const finish = async (i: number, why: BatchResult['finish']): Promise<void> => {
    const s = seqs[i];
    s.finish = why;
    if (why !== 'stop' && addText(i, await s.detok.flush())) s.finish = 'stop';
    emit(i, s.text.length);
  };

  const t0 = Date.now();
  for (;;) {
    const step: Array<[number, number, number]> = []; // [sequence, token, position]
    for (let i = 0; i < n; i++) {
      const s = seqs[i];
      if (s.finish) continue;
      const next = sampleToken(logits[i], o, s.rand);
      if (next === tok.eosId || stopIds.has(next)) {
        await finish(i, next === tok.eosId ? 'eos' : 'stop');
        continue;
      }
      s.out.push(next);
      if (addText(i, await s.detok.push(next))) {
        await finish(i, 'stop');
        continue;
      }
      emit(i, s.text.length - heldBack(s.text, stops));
      const pos = ids[i].length + s.out.length - 1; // where `next` goes; the token after it is sampled at pos + 1
      if (s.out.length >= o.maxNewTokens || pos + 1 >= limit) {
        await finish(i, 'length');
        continue;
      }
      step.push([i, next, pos]);
    }
    if (step.length === 0) break;
    const out = lm.net.decodeBatch(
      Uint32Array.from(step, ([, t]) => t),
      Int32Array.from(step, ([, , p]) => p),
      Int32Array.from(step, ([i]) => i),
    );
    step.forEach(([i, t], r) => {
      session.cached[i].push(t);
      logits[i] = out.subarray(r * V, (r + 1) * V);
    });
  }
  const total = seqs.reduce((a, s) => a + s.out.length, 0);
  const msPerToken = total ? (Date.now() - t0) / total : 0;
  return seqs.map((s, i) => ({ text: s.text, ids: s.out, promptTokens: ids[i].length, newTokens: s.out.length, finish: s.finish!, msPerToken }));
}

export interface GenerateResult {
  text: string;
  promptTokens: number;
  newTokens: number;
  msPerToken: number;
}

/** One prompt from a checkpoint dir; the text returned is the prompt followed by the continuation. */
export async function generate(checkpoint: string, prompt: string, o: GenerateOptions): Promise<GenerateResult> {
  const lm = loadModel(checkpoint);
  const [r] = await generateBatch(lm, [prompt], o);
  return { text: prompt + r.text, promptTokens: r.promptTokens, newTokens: r.newTokens, msPerToken: r.msPerToken };
}
