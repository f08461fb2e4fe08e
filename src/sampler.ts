// sampler.ts — which token windows make up each training batch. A window is seqLen+1 consecutive tokens of
// one shard starting at a multiple of seqLen. The order is a seeded permutation per epoch (or the natural
// order with shuffle off), so the batch of any step follows from (seed, step) alone: resuming needs no
// sampler state beyond the step.
export class WindowSampler {
  private readonly starts: Array<[number, number]> = []; // [shard, offset]
  private perm: Uint32Array | null = null;
  private permEpoch = -1;

  constructor(
    shardLengths: number[],
    private readonly seqLen: number,
    private readonly seed: number,
    private readonly shuffle: boolean,
  ) {
    shardLengths.forEach((n, s) => {
      for (let off = 0; off + seqLen + 1 <= n; off += seqLen) this.starts.push([s, off]);
    });
  }

  get numWindows(): number {
    return this.starts.length;
  }

  private order(epoch: number): Uint32Array {
    if (this.permEpoch === epoch && this.perm) return this.perm;
    const n = this.starts.length;
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    if (this.shuffle) {
      const rand = mulberry32((this.seed * 0x9e3779b1 + epoch * 0x85ebca6b) >>> 0);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        const t = p[i];
        p[i] = p[j];
        p[j] = t;
      }
    }
    this.perm = p;
    this.permEpoch = epoch;
    return p;
  }

  // Windows by their index in shard order, as [shard, offset] pairs (per-window caches such as the teacher's
  // top-k logits are stored in this order).
  windowsAt(indices: number[]): Uint32Array {
    const out = new Uint32Array(indices.length * 2);
    indices.forEach((w, r) => {
      out[2 * r] = this.starts[w][0];
      out[2 * r + 1] = this.starts[w][1];
    });
    return out;
  }

  // The index of the window starting at [shard, offset] (windowsAt's inverse).
  indexOf(shard: number, offset: number): number {
    if (!this.index) {
      this.index = new Map();
      this.starts.forEach(([s, o], i) => this.index!.set(`${s}:${o}`, i));
    }
    const i = this.index.get(`${shard}:${offset}`);
    if (i === undefined) throw new Error(`no window starts at shard ${shard} offset ${offset}`);
    return i;
  }
  private index: Map<string, number> | null = null;

  // Windows for the given 0-based step: rows = batchSize * accum, as [shard, offset] pairs.
  windowsForStep(step: number, rows: number): Uint32Array {
    const out = new Uint32Array(rows * 2);
    const n = this.starts.length;
    for (let r = 0; r < rows; r++) {
      const g = step * rows + r;
      const [s, off] = this.starts[this.order(Math.floor(g / n))[g % n]];
      out[2 * r] = s;
      out[2 * r + 1] = off;
    }
    return out;
  }
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Learning rate for a 0-based step: linear warmup to lr, then cosine decay to min_lr at the last step.
export function learningRate(
  step: number,
  o: { lr: number; min_lr: number; warmup_steps: number; steps: number; schedule: 'cosine' | 'constant' },
): number {
  if (step < o.warmup_steps) return (o.lr * (step + 1)) / o.warmup_steps;
  if (o.schedule === 'constant') return o.lr;
  const span = Math.max(1, o.steps - o.warmup_steps);
  const progress = Math.min(1, (step - o.warmup_steps) / span);
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + Math.cos(Math.PI * progress));
}
