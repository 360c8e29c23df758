/**
 * Kernel tier, inside the qemu guest (test/vm/run.sh): the project's WireGuard driver, built
 * with `impl: 'auto'` as the agent builds it, picks kernel WireGuard by itself on a kernel that
 * has it (link kind `wireguard`, no wireguard-go process), and kernel WireGuard carries pod
 * traffic between two namespace nodes. Proven by a capture on the underlay bridge: only
 * WireGuard messages on port 51880, no pod-addressed packet, no canary; and a sanity capture
 * before the tunnel exists that does see the plaintext. Also checks the peer counters and that
 * full-size packets cross at 1500 - 60 bytes (DESIGN.md's IPv4 WireGuard overhead).
 *
 * Runs only in the guest (SEALNET_VM_GUEST=1), where a missing kernel WireGuard fails the test;
 * wireguard/driver.kernel.test.ts covers the driver wherever it runs (kernel or userspace).
 */
import { jest } from '@jest/globals';
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../harness/exec.js';
import { WG_DEFAULT_PORT, WG_FWMARK, WG_INTERFACE } from '../../common/constants.js';
import type { ObservedInterface, ObservedPeer } from '../../tunnels/ports/index.js';
import {
  canaryHex,
  captureOnWire,
  createPair,
  destroyPair,
  guestTitle,
  inGuest,
  inNs,
  ipn,
  leftoverNetns,
  newPrefix,
  ping,
  type Pair,
  type PairNode,
} from './pair.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(resolve(HERE, '..', '..'), 'dist');
const FIXTURE = join(HERE, 'wg-driver.fixture.mjs');

const suite = inGuest ? describe : describe.skip;
jest.setTimeout(120_000);

interface Keys {
  readonly privFile: string;
  readonly pub: string;
}

/** An X25519 keypair in WireGuard's base64, the private half written to a 0600 file. */
async function wgKeys(dir: string, name: string): Promise<Keys> {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const b64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64url').toString('base64');
  const privFile = join(dir, `${name}.key`);
  await writeFile(privFile, `${b64(privateKey.export({ format: 'jwk' }).d)}\n`, { mode: 0o600 });
  return { privFile, pub: b64(publicKey.export({ format: 'jwk' }).x) };
}

/** One driver call in `node`'s namespace (wg-driver.fixture.mjs). */
async function driver<T>(
  node: PairNode,
  method: string,
  ...args: unknown[]
): Promise<{ result: T; logs: { msg: string }[] }> {
  const r = await inNs(node.ns, [process.execPath, FIXTURE, DIST, method, JSON.stringify(args)], {
    check: false,
    timeoutMs: 60_000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let out: { ok: boolean; result: T; error?: string; logs: { msg: string }[] };
  try {
    out = JSON.parse(line) as typeof out;
  } catch {
    throw new Error(`driver ${method} in ${node.ns}: no JSON answer (exit ${r.code}); stderr: ${r.stderr}`);
  }
  if (!out.ok) throw new Error(`driver ${method} in ${node.ns}: ${out.error}`);
  return out;
}

/** `ip -d -j link show <name>`: the rtnetlink kind of the link. */
async function linkKind(ns: string, name: string): Promise<string | undefined> {
  const { stdout } = await ipn(ns, ['-d', '-j', 'link', 'show', 'dev', name]);
  return (JSON.parse(stdout) as { linkinfo?: { info_kind?: string } }[])[0]?.linkinfo?.info_kind;
}

suite(guestTitle('kernel WireGuard through the project driver (qemu guest kernel)'), () => {
  let pair: Pair | undefined;
  const prefix = newPrefix();
  const keys = new Map<PairNode, Keys>();
  const link = (n: PairNode) => ({
    name: WG_INTERFACE,
    privateKeyFile: keys.get(n)!.privFile,
    publicKey: keys.get(n)!.pub,
    listenPort: WG_DEFAULT_PORT,
    fwmark: WG_FWMARK,
  });

  beforeAll(async () => {
    pair = await createPair(prefix, 2);
    keys.set(pair.left, await wgKeys(pair.dir, 'l'));
    keys.set(pair.right, await wgKeys(pair.dir, 'r'));
  });

  afterAll(async () => {
    await destroyPair(pair);
    expect(await leftoverNetns(prefix)).toEqual([]);
  });

  it('sanity: without the tunnel the underlay capture sees plaintext pod packets and the canary', async () => {
    const p = pair!;
    const canary = canaryHex();
    const cap = await captureOnWire(p, {
      name: 'plain',
      canaryHex: canary,
      wireguardPorts: [WG_DEFAULT_PORT],
      traffic: async () => {
        expect((await ping(p.left.ns, p.right.pod, { patternHex: canary })).received).toBe(3);
      },
    });
    expect(cap.complete).toBe(true);
    expect(cap.podPlaintextPackets).toBeGreaterThanOrEqual(6);
    expect(cap.canaryHits).toBeGreaterThanOrEqual(6);
    expect(cap.wireguardPackets).toBe(0);
  });

  it("impl 'auto' picks kernel WireGuard: link kind wireguard, no wireguard-go process", async () => {
    const p = pair!;
    expect((await driver<boolean>(p.left, 'detectKernel')).result).toBe(true);
    // The responder first: a handshake initiated towards a link that is not there yet is lost
    // and retried only after 5 s.
    for (const n of [p.right, p.left]) {
      const r = await driver<{ impl: string; created: boolean }>(n, 'ensureLink', link(n));
      expect(r.result).toMatchObject({ impl: 'kernel', created: true });
      expect(r.logs.map((l) => l.msg)).not.toContain('kernel has no WireGuard; starting wireguard-go');
      expect(await linkKind(n.ns, WG_INTERFACE)).toBe('wireguard');
      const pids = (await run(['ip', 'netns', 'pids', n.ns])).stdout.trim();
      expect(pids).toBe('');
    }
  });

  it('kernel WireGuard carries pod traffic: only WireGuard on the wire, no pod address, no canary', async () => {
    const p = pair!;
    for (const [self, peer] of [
      [p.right, p.left],
      [p.left, p.right],
    ] as const) {
      await driver(self, 'applyPeers', WG_INTERFACE, [
        {
          op: 'set',
          publicKey: keys.get(peer)!.pub,
          endpoint: `${peer.underlay}:${WG_DEFAULT_PORT}`,
          allowedIPs: [peer.podCidr],
          persistentKeepalive: 0,
        },
      ]);
      // sealnet's job in the real cluster: take the routed pod traffic over into the tunnel.
      await ipn(self.ns, ['route', 'replace', peer.podCidr, 'dev', WG_INTERFACE, 'src', self.pod]);
    }
    const canary = canaryHex();
    const cap = await captureOnWire(p, {
      name: 'wg',
      canaryHex: canary,
      wireguardPorts: [WG_DEFAULT_PORT],
      traffic: async () => {
        expect(await ping(p.left.ns, p.right.pod, { patternHex: canary, count: 5 })).toMatchObject({
          transmitted: 5,
          received: 5,
        });
      },
    });
    expect(cap.complete).toBe(true);
    expect(cap.podPlaintextPackets).toBe(0);
    expect(cap.canaryHits).toBe(0);
    expect(cap.wireguardPortNonWireguard).toBe(0);
    expect(cap.wireguardByType['1']).toBeGreaterThanOrEqual(1); // handshake initiation
    expect(cap.wireguardByType['4']).toBeGreaterThanOrEqual(10); // 5 requests + 5 replies
    expect(cap.wireguardByEndpoints).toEqual({
      [`${p.left.underlay}>${p.right.underlay}`]: expect.any(Number),
      [`${p.right.underlay}>${p.left.underlay}`]: expect.any(Number),
    });
    expect(cap.totalPackets - cap.wireguardPackets - cap.byKind.arp).toBe(0);
  });

  it('the driver reads back handshakes and growing transfer counters', async () => {
    const p = pair!;
    type Dump = { iface: ObservedInterface; peers: ObservedPeer[] };
    const before = (await driver<Dump>(p.left, 'show', WG_INTERFACE)).result;
    expect(before.iface).toEqual({ publicKey: keys.get(p.left)!.pub, listenPort: WG_DEFAULT_PORT, fwmark: WG_FWMARK });
    expect(before.peers).toHaveLength(1);
    expect(before.peers[0]?.latestHandshake).toBeGreaterThan(0);
    expect((await ping(p.left.ns, p.right.pod, { count: 3 })).received).toBe(3);
    const after = (await driver<Dump>(p.left, 'show', WG_INTERFACE)).result;
    expect(after.peers[0]!.txBytes).toBeGreaterThan(before.peers[0]!.txBytes);
    expect(after.peers[0]!.rxBytes).toBeGreaterThan(before.peers[0]!.rxBytes);
  });

  it('with the link MTU at 1500 - 60 = 1440 (DESIGN.md), full-size DF packets cross and larger ones are refused', async () => {
    const p = pair!;
    // The kernel creates WireGuard links with 1420 (room for an IPv6 underlay); the agent sets
    // the MTU derived from the underlay. 1440 inner bytes are a multiple of 16 (no padding):
    // 20 (IPv4) + 8 (UDP) + 32 (WireGuard) + 1440 = 1500, the underlay MTU exactly.
    for (const n of [p.left, p.right]) await ipn(n.ns, ['link', 'set', 'dev', WG_INTERFACE, 'mtu', '1440']);
    const fits = await ping(p.left.ns, p.right.pod, { size: 1440 - 28, count: 2, df: true });
    expect(fits).toMatchObject({ received: 2, messageTooLong: false });
    const tooBig = await ping(p.left.ns, p.right.pod, { size: 1440 - 28 + 1, count: 1, df: true });
    expect(tooBig).toMatchObject({ received: 0, messageTooLong: true, reportedMtu: 1440 });
  });
});
