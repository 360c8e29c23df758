/**
 * Two "nodes" for the guest's kernel-datapath tests: network namespaces `<prefix>-l` and
 * `<prefix>-r`, each with a `veth0` into the "wire" namespace `<prefix>-w`, where both ends are
 * ports of the bridge `br0` (the underlay). Each node has one "pod" address on a dummy link
 * (`pod0`) and a plaintext route to the other's pod CIDR via its underlay address, as a routed
 * CNI (flannel host-gw) would set up. Captures are taken on `br0`: a capture on a node's own
 * link would also show the packets the node decapsulated (XFRM tunnel mode re-injects the inner
 * packet on the receiving device). Everything is created inside the namespaces;
 * {@link destroyPair} removes it all, processes included.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCapture, type CaptureResult } from '../harness/capture.js';
import { run, type ExecResult } from '../harness/exec.js';
import { pingArgv, parsePing, type PingOptions, type PingResult } from '../harness/ping.js';

/** One side of the pair. */
export interface PairNode {
  /** Network namespace name (in /run/netns). */
  readonly ns: string;
  /** Underlay address on `veth0` (198.18.0.0/15). */
  readonly underlay: string;
  /** Pod address on `pod0` (100.64.0.0/10), /32. */
  readonly pod: string;
  /** The pod CIDR this node owns (a /24 around {@link pod}). */
  readonly podCidr: string;
}

/** A pair of namespace nodes and a scratch folder. */
export interface Pair {
  readonly prefix: string;
  /** The wire namespace; its bridge `br0` joins the nodes' `veth0` links. */
  readonly wire: string;
  readonly left: PairNode;
  readonly right: PairNode;
  /** Scratch folder (keys, captures), removed by {@link destroyPair}. */
  readonly dir: string;
}

/** True inside the kernel-tier guest (set by test/vm/guest.sh). */
export const inGuest = process.env['SEALNET_VM_GUEST'] === '1';

/** A describe() title that says why the suite is skipped outside the guest. */
export function guestTitle(title: string): string {
  return inGuest ? title : `${title} [skipped: runs only inside the qemu guest, npm run test:kernel]`;
}

/** A unique `sealv…` prefix for one test file's objects. */
export function newPrefix(): string {
  return `sealv${randomBytes(3).toString('hex')}`;
}

/** `ip -n <ns> …`, throwing on failure. */
export function ipn(ns: string, args: readonly string[]): Promise<ExecResult> {
  return run(['ip', '-n', ns, ...args]);
}

/** Runs `argv` inside namespace `ns`. */
export function inNs(
  ns: string,
  argv: readonly string[],
  opts: { check?: boolean; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return run(['ip', 'netns', 'exec', ns, ...argv], opts);
}

/** Pings `dst` from namespace `ns` (iputils ping, DF set unless `df: false`), parsed. */
export async function ping(ns: string, dst: string, opts: PingOptions = {}): Promise<PingResult & { output: string }> {
  const count = opts.count ?? 3;
  const r = await inNs(ns, pingArgv(dst, opts), { check: false, timeoutMs: (count * (opts.waitS ?? 1) + 30) * 1000 });
  const output = r.stdout + r.stderr;
  return { ...parsePing(output), output };
}

/**
 * Builds the pair. `net` picks the third octet block so two files never share addresses:
 * underlay 198.18.<net>.1/.2 /24, pods 100.64.<net*2+1>.1 and 100.64.<net*2+2>.1.
 */
export async function createPair(prefix: string, net: number): Promise<Pair> {
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
  const node = (side: 'l' | 'r', i: 1 | 2): PairNode => ({
    ns: `${prefix}-${side}`,
    underlay: `198.18.${net}.${i}`,
    pod: `100.64.${net * 2 + i}.1`,
    podCidr: `100.64.${net * 2 + i}.0/24`,
  });
  const pair: Pair = { prefix, wire: `${prefix}-w`, left: node('l', 1), right: node('r', 2), dir };
  for (const ns of [pair.wire, pair.left.ns, pair.right.ns]) {
    await run(['ip', 'netns', 'add', ns]);
    // No IPv6: router solicitations and neighbour discovery would only clutter the captures.
    await inNs(ns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    await ipn(ns, ['link', 'set', 'lo', 'up']);
  }
  // Created directly inside the namespaces: nothing appears in the root namespace.
  await ipn(pair.wire, ['link', 'add', 'br0', 'type', 'bridge']);
  await ipn(pair.wire, ['link', 'set', 'br0', 'up']);
  for (const [port, n] of [
    ['vl', pair.left],
    ['vr', pair.right],
  ] as const) {
    await ipn(pair.wire, ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'veth0', 'netns', n.ns]);
    await ipn(pair.wire, ['link', 'set', port, 'master', 'br0', 'up']);
  }
  for (const [self, peer] of [
    [pair.left, pair.right],
    [pair.right, pair.left],
  ] as const) {
    await ipn(self.ns, ['addr', 'add', `${self.underlay}/24`, 'dev', 'veth0']);
    await ipn(self.ns, ['link', 'set', 'veth0', 'up']);
    await ipn(self.ns, ['link', 'add', 'pod0', 'type', 'dummy']);
    await ipn(self.ns, ['addr', 'add', `${self.pod}/32`, 'dev', 'pod0']);
    await ipn(self.ns, ['link', 'set', 'pod0', 'up']);
    await ipn(self.ns, ['route', 'add', peer.podCidr, 'via', peer.underlay, 'src', self.pod]);
  }
  return pair;
}

/** Kills every process in the pair's namespaces, deletes them and the scratch folder. */
export async function destroyPair(pair: Pair | undefined): Promise<void> {
  if (pair === undefined) return;
  for (const ns of [pair.left.ns, pair.right.ns, pair.wire]) {
    const pids = await run(['ip', 'netns', 'pids', ns], { check: false }).then((r) =>
      r.stdout.split(/\s+/).filter(Boolean).map(Number),
    );
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run(['ip', 'netns', 'del', ns], { check: false });
  }
  await rm(pair.dir, { recursive: true, force: true });
}

/** Names in /run/netns that carry `prefix` (must be none after {@link destroyPair}). */
export async function leftoverNetns(prefix: string): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list'], { check: false });
  return r.stdout.split('\n').filter((l) => l.includes(prefix));
}

/** 16 random bytes as hex: a ping pattern (`-p`) that must never appear on an encrypted wire. */
export function canaryHex(): string {
  return randomBytes(16).toString('hex');
}

/**
 * Captures on the wire bridge while `traffic` runs and returns the analysed capture (pod
 * addresses: 100.64.0.0/10; `canaryHex` is searched as bytes).
 */
export async function captureOnWire(
  pair: Pair,
  opts: { name: string; canaryHex: string; wireguardPorts?: readonly number[]; traffic: () => Promise<void> },
): Promise<CaptureResult> {
  const cap = await startCapture({
    netns: pair.wire,
    iface: 'br0',
    file: join(pair.dir, `${opts.name}.pcap`),
    podCidrs: ['100.64.0.0/10'],
    ...(opts.wireguardPorts !== undefined ? { wireguardPorts: opts.wireguardPorts } : {}),
    canaries: [Buffer.from(opts.canaryHex, 'hex')],
  });
  try {
    await opts.traffic();
  } catch (err) {
    cap.abort();
    throw err;
  }
  return cap.stop();
}
