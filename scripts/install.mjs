#!/usr/bin/env node
// install.mjs — npm's install step for ko-train's native addon. Tries, in order:
//   1. an addon that is already there (prebuilds/ or a local build/Release), test-loaded in a child process;
//   2. cmake-js (CMakeLists.txt: OpenBLAS and CUDA when found);
//   3. node-gyp (binding.gyp: CPU-only, built-in GEMM) when CMake is missing or fails.
// and says which one it used. KO_TRAIN_FORCE_BUILD=1 skips step 1; KO_TRAIN_CUDA=0 builds without CUDA.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const say = (s) => console.log(`ko-train install: ${s}`);

function loads(file) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)}).buildInfo()`], { stdio: 'pipe' });
  return r.status === 0;
}

function existingAddon() {
  try {
    return require('node-gyp-build').resolve(root);
  } catch {
    return null;
  }
}

function run(cmd, args) {
  say(`$ ${[path.basename(cmd), ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

function hasCmake() {
  return spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
}

if (process.env.KO_TRAIN_FORCE_BUILD !== '1') {
  const file = existingAddon();
  if (file && loads(file)) {
    say(`using the existing addon ${path.relative(root, file)}`);
    process.exit(0);
  }
}

const cudaFlag = process.env.KO_TRAIN_CUDA === '0' ? ['--CDKO_CUDA=OFF'] : [];
if (hasCmake()) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  if (run(process.execPath, [cmakeJs, 'compile', ...cudaFlag]) && loads(path.join(root, 'build', 'Release', 'ko-train.node'))) {
    say('built the addon with cmake-js → build/Release/ko-train.node');
    process.exit(0);
  }
  say('cmake-js build failed; falling back to node-gyp (CPU only, built-in GEMM)');
} else {
  say('CMake not found; building with node-gyp (CPU only, built-in GEMM)');
}

const npmGyp = process.env.npm_config_node_gyp;
const nodeGyp = npmGyp && fs.existsSync(npmGyp) ? npmGyp : (() => {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  }
})();
// Use the headers installed beside node when npm does not name a nodedir (no network needed then).
const prefix = path.dirname(path.dirname(fs.realpathSync(process.execPath)));
const nodedir = process.env.npm_config_nodedir ||
  (fs.existsSync(path.join(prefix, 'include', 'node', 'node.h')) ? prefix : null);
const gypArgs = ['rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
if (fs.existsSync(nodeGyp) && run(process.execPath, [nodeGyp, ...gypArgs]) && loads(path.join(root, 'build', 'Release', 'ko-train.node'))) {
  say('built the addon with node-gyp → build/Release/ko-train.node');
  process.exit(0);
}
console.error('ko-train install: could not build the native addon. Install CMake (>= 3.18) and a C++17 compiler ' +
  '(and optionally libopenblas-dev), then run `npm rebuild ko-train`.');
process.exit(1);
