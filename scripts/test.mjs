#!/usr/bin/env node
// test.mjs — `npm test`: the C++ suites through CMake/ctest (the native core without Node), then the
// node:test suites against the compiled TypeScript. Exits non-zero if either fails.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const jobs = String(Math.max(1, os.cpus().length));
const run = (cmd, args, opts = {}) => {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  return spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts }).status === 0;
};

let ok = true;
if (process.env.KO_TRAIN_SKIP_CTEST !== '1') {
  const build = path.join(root, 'build-ctest');
  const cuda = process.env.KO_TRAIN_CUDA === '0' ? ['-DKO_CUDA=OFF'] : [];
  ok = run('cmake', ['-S', root, '-B', build, '-DCMAKE_BUILD_TYPE=Release', ...cuda]) &&
    run('cmake', ['--build', build, '-j', jobs]) &&
    run('ctest', ['--test-dir', build, '--output-on-failure']);
}
const testDir = path.join(root, 'dist', 'tests', 'ts');
const files = fs.readdirSync(testDir).filter((f) => f.endsWith('.test.js')).map((f) => path.join(testDir, f));
const nodeOk = run(process.execPath, ['--test', '--test-concurrency=1', ...files]);
process.exit(ok && nodeOk ? 0 : 1);
