// tokenizer_extend.ts — merges learned Korean pieces into a byte-level BPE tokenizer.json so that the
// result is an ordinary BPE tokenizer (the `tokenizers` package and transformers load it as it is).
//
// Method. Pieces are taken in the order given (best Unigram score first). Each piece is written in the
// byte-level alphabet and segmented by the tokenizer built so far (base merges, then the merges added
// before it); adjacent tokens are then merged pairwise until one token is left, each step appending a
// merge "a b" after every existing merge and adding a + b to the vocabulary when it is new (such
// intermediate tokens count toward `add`). New ids follow the largest id in use (after the added/special
// tokens), so every base id keeps its meaning.
//
// Why base text is untouched. Appended merges rank after every base merge, and a merge is only allowed
// when a + b, after an optional leading space, begins with a lead byte and continuation byte of a
// character in U+AC00–U+D7FF (Hangul syllables; the rest of that block is unassigned or Hangul Jamo
// Extended-B). Those two bytes decide the block, and a lead byte always starts a character, so such a
// merge can only ever apply to text containing a code point of U+AC00–U+D7FF, and neither can the new
// whole-word vocabulary entries (`ignore_merges`). Text without such code points encodes to the base ids.
//
// Limits. BPE cannot reproduce Unigram's segmentation: within a longer word, base merges apply first
// and may join bytes across the boundary of a new piece, so that piece does not form there. The whole
// word still forms when it is itself a piece, and ignore_merges (Llama 3) looks whole words up directly.
// Only byte-level BPE bases are supported (Llama 3, Qwen, GPT-2 style), not SentencePiece models.
import { byteAlphabetInByteOrder, parseMerges, type MergeEntry } from './tokenizer.js';

export interface TokenizerJson {
  model: { type: string; vocab: Record<string, number>; merges: unknown; ignore_merges?: boolean; [k: string]: unknown };
  pre_tokenizer?: { type: string; pretokenizers?: Array<{ type: string }> } | null;
  added_tokens?: Array<{ id: number; content: string }>;
  [k: string]: unknown;
}

export interface ExtendStats {
  added: number; // new vocabulary entries (pieces + intermediate tokens)
  pieces: number; // learned pieces that became tokens
  intermediates: number;
  alreadyInBase: number; // pieces the base vocabulary already had
  skipped: number; // pieces that could not be built with allowed merges
  firstNewId: number;
}

const BYTE_OF = new Map<string, number>(byteAlphabetInByteOrder().map((ch, b) => [ch, b]));
const CHAR_OF = byteAlphabetInByteOrder();

export function toByteLevel(text: string): string {
  let s = '';
  for (const b of Buffer.from(text, 'utf8')) s += CHAR_OF[b];
  return s;
}

function bytesOf(token: string): number[] {
  const out: number[] = [];
  for (const ch of token) {
    const b = BYTE_OF.get(ch);
    if (b === undefined) return [];
    out.push(b);
  }
  return out;
}

// a + b, after an optional leading space, starts with the first two bytes of a U+AC00–U+D7FF character:
// EA B0–BF, EB 80–BF, EC 80–BF, ED 80–9F.
export function isHangulSafeMerge(a: string, b: string): boolean {
  const bytes = bytesOf(a + b);
  const i = bytes[0] === 0x20 ? 1 : 0;
  if (bytes.length < i + 2) return false;
  const [l, c] = [bytes[i], bytes[i + 1]];
  if (c < 0x80 || c > 0xbf) return false;
  return (l === 0xea && c >= 0xb0) || l === 0xeb || l === 0xec || (l === 0xed && c <= 0x9f);
}

export function isByteLevelBpe(json: TokenizerJson): boolean {
  if (json.model?.type !== 'BPE') return false;
  const pre = json.pre_tokenizer;
  const parts = pre?.type === 'Sequence' ? pre.pretokenizers ?? [] : pre ? [pre] : [];
  return parts.some((p) => p.type === 'ByteLevel');
}

// BPE on one word as the `tokenizers` package does it: whole-word lookup first when ignore_merges, then
// repeatedly the adjacent pair of lowest merge rank (leftmost on ties).
export function bpeWord(word: string, ranks: Map<string, number>, vocab: Map<string, number>, ignoreMerges: boolean): string[] {
  if (ignoreMerges && vocab.has(word)) return [word];
  const toks = Array.from(word);
  for (;;) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < toks.length; i++) {
      const r = ranks.get(toks[i] + ' ' + toks[i + 1]);
      if (r !== undefined && r < bestRank) (bestRank = r), (best = i);
    }
    if (best < 0) return toks;
    toks.splice(best, 2, toks[best] + toks[best + 1]);
  }
}

/** The base tokenizer.json extended with up to `add` new tokens built from `pieces` (best first). */
export function extendByteLevelBpe(base: TokenizerJson, pieces: string[], add: number, file = 'base tokenizer'): { json: TokenizerJson; stats: ExtendStats } {
  if (!isByteLevelBpe(base)) throw new Error(`${file}: only byte-level BPE tokenizers can be extended (model ${base.model?.type}, no ByteLevel pre-tokenizer)`);
  const json = structuredClone(base);
  const merges: MergeEntry[] = parseMerges(json.model.merges, file);
  const ranks = new Map<string, number>(merges.map(([a, b], i) => [a + ' ' + b, i]));
  const vocab = new Map<string, number>(Object.entries(json.model.vocab));
  // The `tokenizers` loader gives an added token the model's id for its content when the model has it,
  // else the next id after the model vocabulary, ignoring the id in the file. Once the model grows past
  // the added tokens' ids they would be renumbered, so they go into the model vocabulary with their ids.
  for (const t of json.added_tokens ?? []) if (!vocab.has(t.content)) vocab.set(t.content, t.id);
  let nextId = 0;
  for (const id of vocab.values()) nextId = Math.max(nextId, id + 1);
  for (const t of json.added_tokens ?? []) nextId = Math.max(nextId, t.id + 1);
  const stats: ExtendStats = { added: 0, pieces: 0, intermediates: 0, alreadyInBase: 0, skipped: 0, firstNewId: nextId };
  const newMerges: MergeEntry[] = [];
  for (const piece of pieces) {
    if (stats.added >= add) break;
    const target = toByteLevel(piece);
    if (vocab.has(target)) {
      stats.alreadyInBase++;
      continue;
    }
    const toks = bpeWord(target, ranks, vocab, false);
    // Plan the merges first: the piece is taken only if every step is allowed and the budget holds.
    const plan: Array<[string, string]> = [];
    let newTokens = 0;
    const work = toks.slice();
    let ok = true;
    while (work.length > 1) {
      // Prefer a pair that is already a token (no vocabulary cost), else the leftmost allowed pair.
      let pick = -1;
      for (let i = 0; i + 1 < work.length && pick < 0; i++) if (vocab.has(work[i] + work[i + 1]) && isHangulSafeMerge(work[i], work[i + 1])) pick = i;
      for (let i = 0; i + 1 < work.length && pick < 0; i++) if (isHangulSafeMerge(work[i], work[i + 1])) pick = i;
      if (pick < 0) {
        ok = false;
        break;
      }
      const merged = work[pick] + work[pick + 1];
      if (!vocab.has(merged) && !plan.some(([a, b]) => a + b === merged)) newTokens++;
      plan.push([work[pick], work[pick + 1]]);
      work.splice(pick, 2, merged);
    }
    if (!ok || stats.added + newTokens > add) {
      stats.skipped++;
      continue;
    }
    const keys: string[] = [], tokens: string[] = [];
    for (const [a, b] of plan) {
      const key = a + ' ' + b;
      if (!ranks.has(key)) {
        ranks.set(key, merges.length + newMerges.length + keys.length);
        keys.push(key);
      }
      if (!vocab.has(a + b)) {
        vocab.set(a + b, nextId + tokens.length); // the id it keeps if the check below passes
        tokens.push(a + b);
      }
    }
    // An earlier piece's merge may fire first on a token this plan creates: then the piece would not
    // form. Check with the real merge order and undo the plan if so.
    const check = bpeWord(target, ranks, vocab, false);
    if (check.length !== 1) {
      for (const k of keys) ranks.delete(k);
      for (const t of tokens) vocab.delete(t);
      stats.skipped++;
      continue;
    }
    for (const k of keys) newMerges.push(k.split(' ') as MergeEntry);
    nextId += tokens.length;
    stats.added += tokens.length;
    stats.intermediates += tokens.filter((t) => t !== target).length;
    stats.pieces++;
  }
  json.model.vocab = Object.fromEntries(vocab);
  const asStrings = typeof (base.model.merges as unknown[])[0] === 'string';
  json.model.merges = [...merges, ...newMerges].map(([a, b]) => (asStrings ? `${a} ${b}` : [a, b]));
  return { json, stats };
}
