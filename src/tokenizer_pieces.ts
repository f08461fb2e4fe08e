// tokenizer_pieces.ts — cutting a long document into pieces that encode to the same ids as the whole.
//
// The `tokenizers` binding encodes one string on one thread and keeps per-token strings, offsets and
// masks for it: a 50 MB one-line document takes minutes and gigabytes. Cut into ~1 MB pieces it encodes
// in parallel (encodeBatch runs on a thread pool) in bounded memory.
//
// A cut is made only at a space that has a non-space on both sides ("a| b"). Every pre-tokenizer we
// accept starts a pre-token there: GPT-2's, Llama 3's and Qwen's split regexes put a space only at the
// start of a piece (or in a run of whitespace, which needs a space on the left), ByteLevel adds no
// prefix space to a piece that already starts with one, and Metaspace prepends "▁" only to a piece not
// already starting with it. Normalizers that act on one character at a time (Unicode forms, lowercase)
// cannot see across the cut. Anything else (Prepend/Replace/Strip normalizers, no pre-tokenizer at all,
// as in SentencePiece conversions where merges cross spaces) is encoded whole.

const LOCAL_NORMALIZERS = new Set(['NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase']);
const BOUNDARY_PRE_TOKENIZERS = new Set(['ByteLevel', 'Split', 'Metaspace', 'Digits', 'Punctuation', 'Whitespace', 'WhitespaceSplit']);

interface Part {
  type?: string;
  normalizers?: Part[];
  pretokenizers?: Part[];
}

function partsOf(p: Part | null | undefined, list: 'normalizers' | 'pretokenizers'): Part[] {
  if (!p) return [];
  return p.type === 'Sequence' ? (p[list] ?? []).flatMap((q) => partsOf(q, list)) : [p];
}

/** Whether cutting at "a| b" leaves the ids of this tokenizer.json unchanged (see the header). */
export function piecesEncodeLikeWhole(json: { normalizer?: Part | null; pre_tokenizer?: Part | null; added_tokens?: Array<{ content?: string }> }): boolean {
  if (!json.pre_tokenizer) return false;
  if (!partsOf(json.pre_tokenizer, 'pretokenizers').every((p) => BOUNDARY_PRE_TOKENIZERS.has(p.type ?? ''))) return false;
  if (!partsOf(json.normalizer, 'normalizers').every((p) => LOCAL_NORMALIZERS.has(p.type ?? ''))) return false;
  // An added token containing a space could straddle a cut.
  return !(json.added_tokens ?? []).some((t) => (t.content ?? '').includes(' '));
}

const isSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0 || c === 0x3000 || (c >= 0x2000 && c <= 0x200a) || c === 0x85 || c === 0x1680 || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f;

/**
 * Pieces of about `target` UTF-16 units whose concatenation is `text`, each after the first starting
 * with a space that has a non-space on both sides. A stretch with no such space within `target` more
 * units stays in one piece.
 */
export function piecesForEncoding(text: string, target: number): string[] {
  if (text.length <= target) return [text];
  const pieces: string[] = [];
  let start = 0;
  while (text.length - start > target) {
    let cut = -1;
    const limit = Math.min(text.length - 1, start + 2 * target);
    for (let i = start + target; i < limit; i++) {
      if (text.charCodeAt(i) === 0x20 && !isSpace(text.charCodeAt(i - 1)) && !isSpace(text.charCodeAt(i + 1))) {
        cut = i;
        break;
      }
    }
    if (cut < 0) {
      // No cut point in the window: look for the next one anywhere, or keep the rest whole.
      for (let i = limit; i < text.length - 1; i++) {
        if (text.charCodeAt(i) === 0x20 && !isSpace(text.charCodeAt(i - 1)) && !isSpace(text.charCodeAt(i + 1))) {
          cut = i;
          break;
        }
      }
      if (cut < 0) break;
    }
    pieces.push(text.slice(start, cut));
    start = cut;
  }
  pieces.push(text.slice(start));
  return pieces;
}
