#!/usr/bin/env node
// Thin entry point: the agent is built to dist/ by `npm run build`.
import { main } from '../dist/tunnels/agent/main.js';

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  process.stderr.write(`sealnet-agent: fatal: ${err?.stack ?? err}\n`);
  process.exit(1);
});
