// evaluate.ts — mean next-token cross-entropy and perplexity of a checkpoint on token data.
import fs from 'node:fs';
import path from 'node:path';
import { loadWeights, modelFromHfConfig } from './checkpoint.js';
import type { ResolvedModel } from './config.js';
import { native, type NativeModel } from './native.js';
import { TextTokenizer } from './tokenizer.js';
import { documentsAsSequences, loadTokenData } from './traindata.js';

export interface LoadedModel {
  config: ResolvedModel;
  params: Float32Array;
  net: NativeModel;
  tokenizer: TextTokenizer | null;
}

export function loadModel(dir: string): LoadedModel {
  const addon = native();
  if (!fs.existsSync(path.join(dir, 'config.json'))) throw new Error(`${dir}: not a checkpoint (no config.json)`);
  const config = modelFromHfConfig(path.join(dir, 'config.json'));
  const layout = addon.paramLayout(config);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].size;
  const params = loadWeights(dir, layout, total);
  const tokFile = path.join(dir, 'tokenizer.json');
  const tokenizer = fs.existsSync(tokFile) ? TextTokenizer.fromFile(tokFile) : null;
  return { config, params, net: new addon.Model(config, params), tokenizer };
}

export interface EvalResult {
  loss: number;
  ppl: number;
  tokens: number;
  sequences: number;
}

// `data`: pre-tokenized JSONL (each line one sequence), an Arrow shard, or a shard dir (split `split`).
// Sequences longer than maxLen predictions are scored in consecutive chunks.
export async function evaluateCheckpoint(
  checkpoint: string,
  data: string,
  o: { maxLen?: number | null; split?: string; maxSequences?: number; log?: (s: string) => void },
): Promise<EvalResult> {
  const lm = loadModel(checkpoint);
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const td = await loadTokenData(data, o.split ?? 'val', lm.tokenizer?.hash ?? null, log);
  const seqs = documentsAsSequences(td, o.maxSequences ?? Infinity);
  const sequences = seqs.offsets.length - 1;
  if (sequences === 0) throw new Error(`${data}: no sequence of at least 2 tokens to evaluate`);
  const r = await lm.net.evalLoss(seqs.tokens, seqs.offsets, o.maxLen ?? lm.config.max_position_embeddings);
  const loss = r.sum / r.count;
  return { loss, ppl: Math.exp(loss), tokens: r.count, sequences };
}
