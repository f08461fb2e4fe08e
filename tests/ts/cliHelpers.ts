// cliHelpers.ts — run the real `ko-train` binary in a child process, as a user would.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const bin = path.join(repoRoot, 'bin', 'ko-train.js');

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ko-train-${prefix}-`));
}

// `input`: what the child reads on stdin (a pipe, not a terminal).
export function runCli(args: string[], env: Record<string, string> = {}, input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    input,
    env: { ...process.env, KO_TRAIN_DEBUG: '0', ...env },
    timeout: 300_000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

export function spawnCli(args: string[]) {
  return spawn(process.execPath, [bin, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
}

// Runs the CLI and SIGKILLs it as soon as `marker` (a checkpoint's COMPLETE file) exists; resolves once the
// process is gone. Rejects when the run ends before writing the marker.
export async function runCliKilledAt(args: string[], marker: string): Promise<void> {
  const child = spawnCli(args);
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (fs.existsSync(marker)) {
        clearInterval(timer);
        child.kill('SIGKILL');
        resolve();
      }
    }, 5);
    child.on('exit', () => {
      clearInterval(timer);
      fs.existsSync(marker) ? resolve() : reject(new Error('run ended before its first checkpoint'));
    });
  });
  await new Promise((r) => child.on('close', r));
}

// A tiny model for fast CLI runs.
export const tinyModel = {
  model_type: 'llama',
  vocab_size: 64,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 48,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};

export function writeJson(file: string, obj: unknown): string {
  fs.writeFileSync(file, JSON.stringify(obj, null, 2));
  return file;
}

// Pre-tokenized JSONL with `lines` random sequences of ids < vocab.
export function writeTokenJsonl(file: string, lines: number, len: number, vocab: number, seed = 1): string {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    // A learnable pattern (mostly counting modulo vocab) with some noise, so loss can drop.
    let t = Math.floor(rnd() * vocab);
    const ids: number[] = [];
    for (let j = 0; j < len; j++) {
      ids.push(t);
      t = rnd() < 0.9 ? (t + 1) % vocab : Math.floor(rnd() * vocab);
    }
    out.push(JSON.stringify({ input_ids: ids }));
  }
  fs.writeFileSync(file, out.join('\n') + '\n');
  return file;
}

export function readMetrics(file: string): Array<Record<string, number>> {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}
