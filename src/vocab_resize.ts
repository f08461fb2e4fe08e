// vocab_resize.ts — continual pretraining with a tokenizer larger than the checkpoint's vocabulary: the
// embedding matrix (and an untied LM head) grows to the tokenizer's size and the new rows are initialised
// from the checkpoint's own rows (model.new_token_init), before train.ts hands the weights to the addon.
import fs from 'node:fs';
import path from 'node:path';
import type { ResolvedModel } from './config.js';
import { loadWeights } from './checkpoint.js';
import type { ParamInfo } from './native.js';
import { mulberry32 } from './sampler.js';
import type { TextTokenizer } from './tokenizer.js';
import { TextTokenizer as Tokenizer } from './tokenizer.js';

export const RESIZED_TENSORS = ['model.embed_tokens.weight', 'lm_head.weight'];

export interface VocabResize {
  baseVocab: number; // rows in the checkpoint (init_from's config.json vocab_size)
  newVocab: number; // rows the run trains (the run tokenizer's size)
}

// A resize when the run's tokenizer has more tokens than the checkpoint's vocabulary; a smaller tokenizer
// keeps the checkpoint's size.
export function planVocabResize(base: ResolvedModel, tokenizer: TextTokenizer | null): VocabResize | null {
  if (!tokenizer || tokenizer.vocabSize <= base.vocab_size) return null;
  return { baseVocab: base.vocab_size, newVocab: tokenizer.vocabSize };
}

// Decompositions of the new tokens into base ids, as CSR: token baseVocab + k has ids[offsets[k]..offsets[k+1]).
export interface Decompositions {
  ids: Uint32Array;
  offsets: Int32Array;
}

// Rows [baseVocab, newVocab) of `rows` ([newVocab, hidden], rows < baseVocab already the base rows) get
//   mean:   the mean of the base rows of the token's decomposition, or of all base rows when it is empty;
//   random: normal(0, σ), σ = the standard deviation of all base rows' values, from `seed`.
// O(new tokens × decomposition length × hidden), typed arrays only.
export function initNewRows(
  rows: Float32Array,
  hidden: number,
  r: VocabResize,
  mode: 'mean' | 'random',
  dec: Decompositions | null,
  seed: number,
): { fallbacks: number; sigma: number } {
  const { baseVocab: V0, newVocab: V1 } = r;
  const H = hidden;
  const nBase = V0 * H;
  if (mode === 'random') {
    let sum = 0, sumSq = 0;
    for (let i = 0; i < nBase; i++) {
      const x = rows[i];
      sum += x;
      sumSq += x * x;
    }
    const mean = sum / nBase;
    const sigma = Math.sqrt(Math.max(0, sumSq / nBase - mean * mean));
    const rand = mulberry32(seed);
    for (let i = nBase; i < V1 * H; i += 2) {
      // Box–Muller: two normals per pair of uniforms (1 - u keeps log away from 0).
      const u1 = 1 - rand(), u2 = rand();
      const rad = Math.sqrt(-2 * Math.log(u1)) * sigma;
      rows[i] = rad * Math.cos(2 * Math.PI * u2);
      if (i + 1 < V1 * H) rows[i + 1] = rad * Math.sin(2 * Math.PI * u2);
    }
    return { fallbacks: 0, sigma };
  }
  // The mean of all base rows, for tokens without a decomposition.
  const all = new Float64Array(H);
  for (let t = 0; t < V0; t++) for (let h = 0, o = t * H; h < H; h++) all[h] += rows[o + h];
  for (let h = 0; h < H; h++) all[h] /= V0;
  const acc = new Float64Array(H);
  let fallbacks = 0;
  for (let k = 0; k < V1 - V0; k++) {
    const out = (V0 + k) * H;
    const a = dec ? dec.offsets[k] : 0, b = dec ? dec.offsets[k + 1] : 0;
    if (b <= a) {
      fallbacks++;
      for (let h = 0; h < H; h++) rows[out + h] = all[h];
      continue;
    }
    acc.fill(0);
    for (let j = a; j < b; j++) for (let h = 0, o = dec!.ids[j] * H; h < H; h++) acc[h] += rows[o + h];
    const n = b - a;
    for (let h = 0; h < H; h++) rows[out + h] = acc[h] / n;
  }
  return { fallbacks, sigma: 0 };
}

// Greedy longest-match of a token's raw string over the base vocabulary (byte-level pieces that are not
// whole UTF-8 characters decode to U+FFFD, which encoding cannot give back). null when a piece is missing.
function greedyPieces(token: string, vocab: Map<string, number>, maxLen: number, baseVocab: number): number[] | null {
  const out: number[] = [];
  for (let i = 0; i < token.length; ) {
    let found = -1, len = Math.min(maxLen, token.length - i);
    for (; len > 0; len--) {
      const id = vocab.get(token.slice(i, i + len));
      if (id !== undefined && id < baseVocab) {
        found = id;
        break;
      }
    }
    if (found < 0) return null;
    out.push(found);
    i += len;
  }
  return out;
}

// How init_from's tokenizer splits each new token of the run's tokenizer: the ids of encoding its text
// (decode([t])). A special token (empty text) that the base tokenizer also has maps to that token's row; a
// byte-level piece that decodes to U+FFFD is matched piece by piece against the base vocabulary.
export async function decomposeNewTokens(run: TextTokenizer, baseFile: string, r: VocabResize): Promise<Decompositions> {
  const base = Tokenizer.fromFile(baseFile);
  const n = r.newVocab - r.baseVocab;
  const texts: string[] = new Array(n);
  for (let k = 0; k < n; k += 4096) {
    const chunk = await Promise.all(Array.from({ length: Math.min(4096, n - k) }, (_, j) => run.decode([r.baseVocab + k + j])));
    for (let j = 0; j < chunk.length; j++) texts[k + j] = chunk[j];
  }
  const encoded = await base.encodeBatch(texts);
  let vocab: Map<string, number> | null = null;
  let maxLen = 0;
  const baseVocabMap = () => {
    if (vocab) return vocab;
    vocab = new Map();
    const v = (JSON.parse(fs.readFileSync(baseFile, 'utf8')) as { model?: { vocab?: unknown } }).model?.vocab;
    if (v && typeof v === 'object' && !Array.isArray(v))
      for (const [s, id] of Object.entries(v as Record<string, number>)) {
        vocab.set(s, id);
        maxLen = Math.max(maxLen, s.length);
      }
    return vocab;
  };
  const parts: ArrayLike<number>[] = new Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) {
    let ids: ArrayLike<number> = encoded[k].filter((id) => id < r.baseVocab);
    const raw = run.idToToken(r.baseVocab + k);
    if (texts[k] === '' && raw !== null) {
      const id = base.tokenToId(raw);
      ids = id !== null && id < r.baseVocab ? [id] : [];
    } else if (texts[k].includes('\uFFFD') && raw !== null && !raw.includes('\uFFFD')) {
      const g = greedyPieces(raw, baseVocabMap(), maxLen, r.baseVocab);
      if (g && g.length) ids = g;
    }
    parts[k] = ids;
    total += ids.length;
  }
  const ids = new Uint32Array(total);
  const offsets = new Int32Array(n + 1);
  for (let k = 0, at = 0; k < n; k++) {
    ids.set(parts[k], at);
    offsets[k + 1] = at += parts[k].length;
  }
  return { ids, offsets };
}

// init_from's weights in the resized layout: every tensor copied, embed_tokens / lm_head into their first
// baseVocab rows, the new rows initialised by `mode`. Returns the parameters and the line to log.
export async function loadResizedWeights(o: {
  dir: string;
  baseModel: ResolvedModel;
  resize: VocabResize;
  layout: ParamInfo[];
  total: number;
  paramLayout: (m: ResolvedModel) => ParamInfo[];
  runTokenizer: TextTokenizer;
  mode: 'mean' | 'random';
  seed: number;
  log: (s: string) => void;
}): Promise<Float32Array> {
  const { resize: r, baseModel } = o;
  const baseLayout = o.paramLayout(baseModel);
  const last = baseLayout[baseLayout.length - 1];
  const base = loadWeights(o.dir, baseLayout, last.offset + last.size);
  const params = new Float32Array(o.total);
  const byName = new Map(baseLayout.map((p) => [p.name, p]));
  let dec: Decompositions | null = null;
  const baseTok = path.join(o.dir, 'tokenizer.json');
  if (o.mode === 'mean') {
    if (fs.existsSync(baseTok)) dec = await decomposeNewTokens(o.runTokenizer, baseTok, r);
    else o.log(`warning: ${baseTok} is missing, so every new row starts as the mean of all base rows`);
  }
  let fallbacks = 0, sigma = 0;
  for (const p of o.layout) {
    const b = byName.get(p.name);
    if (!b) throw new Error(`${o.dir}: checkpoint has no tensor '${p.name}'`);
    params.set(base.subarray(b.offset, b.offset + b.size), p.offset);
    if (!RESIZED_TENSORS.includes(p.name)) continue;
    const hidden = p.shape[1];
    // A distinct random stream per tensor, all from run.seed.
    const seed = (o.seed * 0x9e3779b1 + (p.name === 'lm_head.weight' ? 0x632be5ab : 0x2545f491)) >>> 0;
    const res = initNewRows(params.subarray(p.offset, p.offset + p.size), hidden, r, o.mode, dec, seed);
    if (p.name === 'model.embed_tokens.weight') ({ fallbacks, sigma } = res);
  }
  const n = r.newVocab - r.baseVocab;
  o.log(
    `vocabulary resized ${r.baseVocab} → ${r.newVocab} (${n} new rows, init ` +
      (o.mode === 'mean' ? 'mean of base decompositions)' : `random normal, σ ${sigma.toPrecision(3)} of the base rows)`),
  );
  if (o.mode === 'mean' && dec && fallbacks > 0)
    o.log(`${fallbacks} new tokens have no decomposition under ${baseTok}; their rows start as the mean of all base rows`);
  return params;
}
