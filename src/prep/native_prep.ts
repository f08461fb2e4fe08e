// native_prep.ts — the types of the addon's data-pipeline functions (native/binding/prep_binding.cpp).
// Every call that walks documents runs off the main thread (AsyncWorker) and resolves a promise.
import { native } from '../native.js';

export interface RuleBatchResult {
  reason: Int32Array; // 0 = kept, else an index into ruleReasonNames()
  value: Float64Array; // the statistic that failed
  linesDropped: Int32Array;
  invalidUtf8: Int32Array;
  text: Buffer; // the kept documents, edited (dropped ones are empty ranges)
  offsets: BigInt64Array;
}

export interface MinhashOptions {
  numPerm: number;
  ngram: number;
  wordNgrams: boolean;
  seed: number;
  device: number; // -1 = CPU, else the CUDA device index
}

export interface NearDupResult {
  representative: Float64Array; // per document: the index of its cluster's survivor (itself when unique)
  clusters: Array<{ members: number[]; jaccard: number[] }>; // survivor first; jaccard[i] for members[i] (1 for the survivor)
  candidatePairs: number;
  confirmedPairs: number;
}

export interface NgramModelHandle {
  readonly order: number;
  readonly counts: number[]; // n-grams per order
  writeArpa(file: string): Promise<void>;
  scoreDocuments(text: Buffer, offsets: BigInt64Array): Promise<{ sumLog10: Float64Array; nTokens: Float64Array; oov: Float64Array }>;
  scoreSentence(line: string): { total: number; perWord: number[]; oov: number };
}

export interface NgramCounterHandle {
  addText(text: Buffer): Promise<void>;
  estimate(): Promise<NgramModelHandle>;
  readonly tokens: number;
  readonly sentences: number;
}

export interface ArpaReaderHandle {
  feed(chunk: Buffer): void;
  finish(): NgramModelHandle;
}

export interface PrepNative {
  ruleReasonNames(): string[];
  applyRules(lang: 'ko' | 'en', params: Record<string, number | boolean | number[]>, text: Buffer, offsets: BigInt64Array): Promise<RuleBatchResult>;
  minhash(text: Buffer, offsets: BigInt64Array, o: MinhashOptions): Promise<{ sigs: Uint32Array; exact: BigUint64Array }>;
  nearDuplicates(
    sigs: Uint32Array,
    numPerm: number,
    o: { bands: number; rows: number; threshold: number },
    exact: BigUint64Array | null,
  ): Promise<NearDupResult>;
  lmNormalize(text: Buffer, offsets: BigInt64Array): Promise<{ text: Buffer; offsets: BigInt64Array }>;
  NgramCounter: new (order: number) => NgramCounterHandle;
  ArpaReader: new () => ArpaReaderHandle;
}

export function prepNative(): PrepNative {
  return native() as unknown as PrepNative;
}
