// mixing.ts — sequence-level mixing of several sources (data.sources weights, e.g. ko 0.5 / en 0.5). Row g
// of the training stream (g = step · rows + r) comes from the source picked by a seeded hash of g against
// the normalized weights; within a source, windows are taken in that source's own seeded order (a
// WindowSampler per source). The cursor — windows consumed per source — is saved in every checkpoint, so a
// resumed run continues exactly the same stream; on resume it is also recomputed by replay and compared.
import { WindowSampler } from './sampler.js';

export interface MixSource {
  name: string;
  weight: number;
  streams: number[]; // indices of this source's token streams among all attached streams
  lengths: number[];
}

function rowDraw(seed: number, g: number): number {
  let h = Math.imul(seed ^ 0x6a09e667, 0x9e3779b1) ^ Math.imul(g + 1, 0x85ebca6b) ^ Math.imul(Math.floor(g / 4294967296), 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

export class MixedSampler {
  private readonly samplers: WindowSampler[];
  private readonly cumulative: number[];
  cursors: number[]; // windows taken from each source so far
  tokensBySource: number[];
  private nextStep = 0;

  constructor(
    readonly sources: MixSource[],
    private readonly seqLen: number,
    private readonly seed: number,
    shuffle: boolean,
  ) {
    this.samplers = sources.map((s, i) => new WindowSampler(s.lengths, seqLen, seed + 7919 * (i + 1), shuffle));
    sources.forEach((s, i) => {
      if (this.samplers[i].numWindows === 0)
        throw new Error(`data source "${s.name}": fewer than seq_len + 1 = ${seqLen + 1} tokens, nothing to mix in`);
    });
    const total = sources.reduce((a, s) => a + s.weight, 0);
    let acc = 0;
    this.cumulative = sources.map((s) => (acc += s.weight / total));
    this.cursors = sources.map(() => 0);
    this.tokensBySource = sources.map(() => 0);
  }

  get numWindows(): number {
    return this.samplers.reduce((a, s) => a + s.numWindows, 0);
  }

  sourceOfRow(g: number): number {
    const u = rowDraw(this.seed, g);
    const i = this.cumulative.findIndex((c) => u < c);
    return i < 0 ? this.cumulative.length - 1 : i;
  }

  // The cursor after `steps` steps of `rows` rows, by replaying the draws.
  cursorsAt(steps: number, rows: number): number[] {
    const c = this.sources.map(() => 0);
    for (let g = 0; g < steps * rows; g++) c[this.sourceOfRow(g)]++;
    return c;
  }

  // Positions the stream at the start of 0-based step `step` from a saved cursor.
  restore(step: number, rows: number, saved: Record<string, number> | undefined): void {
    const replay = this.cursorsAt(step, rows);
    if (saved) {
      const fromCkpt = this.sources.map((s) => saved[s.name] ?? 0);
      if (fromCkpt.some((v, i) => v !== replay[i]))
        throw new Error(`the checkpoint's data cursor ${JSON.stringify(saved)} does not match this run's mix (${JSON.stringify(this.cursorObject(replay))}): were data.sources or their weights changed?`);
      this.cursors = fromCkpt;
    } else this.cursors = replay;
    this.nextStep = step;
  }

  cursorObject(c: number[] = this.cursors): Record<string, number> {
    return Object.fromEntries(this.sources.map((s, i) => [s.name, c[i]]));
  }

  // Windows for 0-based `step` as [stream, offset] pairs (global stream indices); steps must come in order.
  windowsForStep(step: number, rows: number): Uint32Array {
    if (step !== this.nextStep) this.restore(step, rows, undefined);
    const out = new Uint32Array(rows * 2);
    for (let r = 0; r < rows; r++) {
      const s = this.sourceOfRow(step * rows + r);
      const w = this.samplers[s].windowsForStep(this.cursors[s], 1);
      this.cursors[s]++;
      this.tokensBySource[s] += this.seqLen;
      out[2 * r] = this.sources[s].streams[w[0]];
      out[2 * r + 1] = w[1];
    }
    this.nextStep = step + 1;
    return out;
  }
}
