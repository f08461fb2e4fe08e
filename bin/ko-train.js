#!/usr/bin/env node
// Entry point of the `ko-train` command: runs the compiled CLI and turns errors into one clear line.
import { main } from '../dist/src/cli.js';

main().catch((err) => {
  const debug = process.env.KO_TRAIN_DEBUG === '1';
  console.error(`ko-train: error: ${debug ? err.stack : err.message}`);
  process.exit(1);
});
