// One call of the built WireGuardDriver (dist/wireguard/driver.js) for test/vm/guest.kernel.test.ts,
// run inside a test network namespace:
//   node wg-driver.fixture.mjs <dist> <method> '<JSON array of arguments>'
// Prints one JSON line {"ok":true,"result":...,"logs":[...]} (or {"ok":false,"error":...}) and
// exits. One process per call is enough for kernel WireGuard: its state lives in the kernel.
// The driver is built with impl 'auto', as the agent builds it.
import { pathToFileURL } from 'node:url';

const [dist, method, argsJson] = process.argv.slice(2);
if (!dist || !method) throw new Error('usage: wg-driver.fixture.mjs <dist> <method> [json-args]');
const { WireGuardDriver, detectKernelWireGuard } = await import(pathToFileURL(`${dist}/wireguard/driver.js`).href);

const logs = [];
const driver = new WireGuardDriver({ impl: 'auto', log: (msg, fields) => logs.push({ msg, fields }) });
const methods = {
  ensureLink: (o) => driver.ensureLink(o),
  applyPeers: (name, changes) => driver.applyPeers(name, changes),
  show: (name) => driver.show(name),
  detectKernel: () => detectKernelWireGuard(),
};
try {
  const fn = methods[method];
  if (!fn) throw new Error(`unknown method ${method}`);
  const result = await fn(...JSON.parse(argsJson ?? '[]'));
  process.stdout.write(`${JSON.stringify({ ok: true, result: result ?? null, logs })}\n`);
} catch (err) {
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  process.stdout.write(
    `${JSON.stringify({ ok: false, error: `${err instanceof Error ? err.message : String(err)}${cause}`, logs })}\n`,
  );
  process.exitCode = 1;
}
