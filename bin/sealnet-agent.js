#!/usr/bin/env node
// Thin entry point: the agent is built to dist/ by `npm run build`.
// `--version` is answered here, before the agent (and its native addons) load: the image test
// runs it in the unpacked image, and an operator can run it without privileges.
import { readFileSync } from 'node:fs';

if (process.argv[2] === '--version') {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`sealnet-agent ${pkg.version} (node ${process.version})\n`);
  process.exit(0);
}
const { main } = await import('../dist/tunnels/agent/main.js');
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`sealnet-agent: fatal: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
