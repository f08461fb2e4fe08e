// generate.ts — text generation with the KV cache: greedy (temperature 0), temperature, top-k, top-p.
import { loadModel } from './evaluate.js';
import { mulberry32 } from './sampler.js';

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

export interface GenerateResult {
  text: string;
  promptTokens: number;
  newTokens: number;
  msPerToken: number;
}

export async function generate(
  checkpoint: string,
  prompt: string,
  o: SampleOptions & { maxNewTokens: number; seed: number },
): Promise<GenerateResult> {
  const lm = loadModel(checkpoint);
  if (!lm.tokenizer) throw new Error(`${checkpoint}: no tokenizer.json beside the weights, cannot encode the prompt`);
  const [enc] = await lm.tokenizer.encodeBatch([prompt.normalize('NFC')]);
  const ids = Array.from(enc);
  if (lm.tokenizer.bosId !== null) ids.unshift(lm.tokenizer.bosId);
  if (ids.length === 0) throw new Error('the prompt encodes to no tokens');
  const maxT = Math.min(lm.config.max_position_embeddings, ids.length + o.maxNewTokens);
  if (ids.length >= maxT) throw new Error(`the prompt (${ids.length} tokens) leaves no room within ${maxT} positions`);
  lm.net.decodeReset(maxT);
  let logits: Float32Array = new Float32Array(0);
  ids.forEach((t, pos) => (logits = lm.net.decodeStep(t, pos)));
  const rand = mulberry32(o.seed);
  const out: number[] = [];
  const t0 = Date.now();
  for (let pos = ids.length; pos < maxT; pos++) {
    const next = sampleToken(logits, o, rand);
    if (next === lm.tokenizer.eosId) break;
    out.push(next);
    if (pos + 1 < maxT) logits = lm.net.decodeStep(next, pos);
  }
  const ms = Date.now() - t0;
  return {
    text: prompt + (await lm.tokenizer.decode(out)),
    promptTokens: ids.length,
    newTokens: out.length,
    msPerToken: out.length ? ms / out.length : 0,
  };
}
