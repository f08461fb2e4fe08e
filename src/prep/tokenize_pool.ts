// tokenize_pool.ts — a pool of tokenizer worker threads; results come back in submission order.
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

interface Pending {
  resolve: (r: { tokens: Uint32Array; offsets: Uint32Array }) => void;
  reject: (e: Error) => void;
}

export class TokenizePool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;

  constructor(tokenizerFile: string, size: number) {
    const n = size > 0 ? size : Math.max(1, os.availableParallelism() - 1);
    const script = fileURLToPath(new URL('./tokenize_worker.js', import.meta.url));
    for (let i = 0; i < n; i++) {
      const w = new Worker(script, { workerData: { tokenizer: tokenizerFile } });
      w.on('message', (m: { seq: number; tokens?: Uint32Array; offsets?: Uint32Array; error?: string }) => {
        const p = this.pending.get(m.seq);
        if (!p) return;
        this.pending.delete(m.seq);
        if (m.error) p.reject(new Error(`tokenizer worker: ${m.error}`));
        else p.resolve({ tokens: m.tokens!, offsets: m.offsets! });
      });
      w.on('error', (e) => {
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  // Documents → tokens of all of them back to back (EOS after each) and nDocs + 1 offsets.
  encode(texts: string[]): Promise<{ tokens: Uint32Array; offsets: Uint32Array }> {
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.workers[seq % this.workers.length].postMessage({ seq, texts });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
