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
const { findTunOwners, uapiSocketExists } = await import(pathToFileURL(`${dist}/wireguard/userspace.js`).href);
const { uapiSet } = await import(pathToFileURL(`${dist}/wireguard/uapi.js`).href);

const send = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
// The key store's 0700 directory stand-in (the test's mkdtemp), for wg's preshared-key file.
const secretDir = process.env.SEALNET_SECRET_DIR || undefined;
const common = {
  impl: process.env.SEALNET_WG_IMPL ?? 'auto',
  wireguardGoPath: process.env.SEALNET_WIREGUARD_GO || 'wireguard-go',
  secretDir,
  log: (msg, fields) => send({ log: msg, fields }),
};
const driver = new WireGuardDriver(common);
// The same driver with no usable `wg`: whatever it changes went over UAPI.
const uapiOnly = new WireGuardDriver({ ...common, wgPath: '/nonexistent/wg' });
const methods = {
  ensureLink: (o) => driver.ensureLink(o),
  show: (name) => driver.show(name),
  applyPeers: (name, changes) => driver.applyPeers(name, changes),
  applyPeersUapiOnly: (name, changes) => uapiOnly.applyPeers(name, changes),
  setPresharedKeyUapiOnly: (name, peer, pskBase64) =>
    uapiOnly.setPresharedKey(name, peer, new Uint8Array(Buffer.from(pskBase64, 'base64'))),
  uapiSetRaw: (name, text) => uapiSet(name, text, { what: 'a raw test operation' }),
  deleteLink: (name) => driver.deleteLink(name),
  tunOwners: (name) => findTunOwners(name),
  uapiSocketExists: (name) => uapiSocketExists(name),
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
