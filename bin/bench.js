#!/usr/bin/env node
// Thin entry point: the benchmarks are built to dist/ by `npm run build` (see test/bench/main.ts).
import { main } from '../dist/test/bench/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: fatal: ${err?.stack ?? err}\n`);
    process.exit(2);
  },
);
