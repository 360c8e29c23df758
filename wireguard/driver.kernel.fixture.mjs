// One "node agent" for wireguard/driver.kernel.test.ts: runs inside a test network namespace
// (and its own mount namespace, so /var/run/wireguard is private), drives the built
// WireGuardDriver from dist/, and answers JSON-line requests on stdin:
//   {"id":1,"method":"ensureLink","args":[{...}]}  →  {"id":1,"ok":true,"result":...}
// Driver log lines are forwarded as {"log":msg,"fields":{...}}.
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const dist = process.env.SEALNET_DIST;
if (!dist) throw new Error('SEALNET_DIST is not set');
const { WireGuardDriver, detectKernelWireGuard } = await import(pathToFileURL(`${dist}/wireguard/driver.js`).href);
const { findTunOwners } = await import(pathToFileURL(`${dist}/wireguard/userspace.js`).href);

const send = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const driver = new WireGuardDriver({
  impl: process.env.SEALNET_WG_IMPL ?? 'auto',
  wireguardGoPath: process.env.SEALNET_WIREGUARD_GO || 'wireguard-go',
  log: (msg, fields) => send({ log: msg, fields }),
});
const methods = {
  ensureLink: (o) => driver.ensureLink(o),
  show: (name) => driver.show(name),
  applyPeers: (name, changes) => driver.applyPeers(name, changes),
  deleteLink: (name) => driver.deleteLink(name),
  tunOwners: (name) => findTunOwners(name),
  detectKernel: () => detectKernelWireGuard(),
  pid: () => process.pid,
};

const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const { id, method, args } = JSON.parse(line);
  try {
    const fn = methods[method];
    if (!fn) throw new Error(`unknown method ${method}`);
    send({ id, ok: true, result: (await fn(...(args ?? []))) ?? null });
  } catch (err) {
    send({
      id,
      ok: false,
      error:
        err instanceof Error
          ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}`
          : String(err),
      code: err?.code,
    });
  }
});
rl.on('close', () => process.exit(0));
send({ ready: true, pid: process.pid });
