#!/usr/bin/env node
// Thin entry point: the demo is built to dist/ by `npm run build` (see test/demo.ts).
import { main } from '../dist/test/demo.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`demo: fatal: ${err?.stack ?? err}\n`);
    process.exit(2);
  },
);
