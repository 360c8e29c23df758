#!/usr/bin/env node
// Thin entry point: sealctl is built to dist/ by `npm run build`.
import { main } from '../dist/tunnels/cli/sealctl.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`sealctl: fatal: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
