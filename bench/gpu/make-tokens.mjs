// make-tokens.mjs — the token file for the GPU training benchmark, made here (the GPU machine has no Node):
// `ko-train prep` of both LibreOffice help corpora with the Llama 3.1 tokenizer (ids < 128,256, inside the
// Qwen3 vocabulary), then the train split's shards concatenated into raw little-endian uint32.
//   node bench/gpu/make-tokens.mjs OUT_DIR   → OUT_DIR/tokens.bin (+ the prep output beside it)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = path.resolve(process.argv[2] ?? path.join(root, '.device', 'data'));
fs.mkdirSync(out, { recursive: true });
const shared = path.resolve(root, '..', 'shared', 'data');
const cfg = path.join(out, 'prep.yaml');
fs.writeFileSync(cfg, [
  'run:', `  out_dir: ${JSON.stringify(path.join(out, 'run'))}`, '  stages: [prep]',
  'data:', `  inputs: [${JSON.stringify(path.join(shared, 'libreoffice-help-ko.jsonl'))}, ${JSON.stringify(path.join(shared, 'libreoffice-help-en.jsonl'))}]`,
  '  text_field: text', '  val_fraction: 0.01', '',
].join('\n'));
const r = spawnSync(process.execPath, [path.join(root, 'bin', 'ko-train.js'), '--config', cfg], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
const { openShardSplit } = await import(path.join(root, 'dist', 'src', 'shards.js'));
const runDir = path.join(out, 'run');
const shardDir = fs.existsSync(path.join(runDir, 'shards')) ? path.join(runDir, 'shards') : runDir;
const shards = openShardSplit(shardDir, 'train');
const fd = fs.openSync(path.join(out, 'tokens.bin'), 'w');
let n = 0;
for (const s of shards) {
  fs.writeSync(fd, Buffer.from(s.tokens.buffer, s.tokens.byteOffset, s.tokens.byteLength));
  n += s.tokens.length;
}
fs.closeSync(fd);
console.log(`${out}/tokens.bin: ${n} tokens from ${shards.length} shard(s)`);
