/**
 * Kernel tier, inside the qemu guest (test/vm/run.sh): XFRM ESP in tunnel mode with
 * rfc4106(gcm(aes)) 128 carries pod traffic between two namespace nodes, set up with iproute2
 * alone (the project's IPsec driver does not exist yet). Proven by a capture on the underlay
 * bridge: only ESP between the nodes' underlay addresses, no pod-addressed packet, no canary;
 * and a sanity capture before the SAs exist that does see the plaintext (a capture that cannot
 * fail proves nothing). Also checks the SA counters and the MTU the kernel derives (DESIGN.md:
 * 54 bytes of overhead at best alignment over a 1500-byte IPv4 underlay).
 *
 * Runs only in the guest (SEALNET_VM_GUEST=1): this host kernel has no ESP. In the guest a
 * missing capability fails the test.
 */
import { jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import {
  canaryHex,
  captureOnWire,
  createPair,
  destroyPair,
  guestTitle,
  inGuest,
  ipn,
  leftoverNetns,
  newPrefix,
  ping,
  type Pair,
  type PairNode,
} from './pair.js';

const suite = inGuest ? describe : describe.skip;
jest.setTimeout(120_000);

const AEAD = 'rfc4106(gcm(aes))';
const ICV_BITS = '128';
// SPIs of this test (the agent's SPI range lives in its constants file; this test owns none of it).
const SPI_L_TO_R = 0x5e100001;
const SPI_R_TO_L = 0x5e100002;

/** One SA direction: from `src` node to `dst` node. */
interface Sa {
  readonly src: PairNode;
  readonly dst: PairNode;
  readonly spi: number;
  readonly reqid: number;
  /** 128-bit AES key + 32-bit salt, as rfc4106 wants it. */
  readonly keyHex: string;
}

/** `ip xfrm state add` for `sa` in namespace `ns` (both ends hold both SAs). */
async function addState(ns: string, sa: Sa): Promise<void> {
  await ipn(ns, [
    'xfrm',
    'state',
    'add',
    'src',
    sa.src.underlay,
    'dst',
    sa.dst.underlay,
    'proto',
    'esp',
    'spi',
    `0x${sa.spi.toString(16)}`,
    'reqid',
    String(sa.reqid),
    'mode',
    'tunnel',
    'aead',
    AEAD,
    `0x${sa.keyHex}`,
    ICV_BITS,
    'replay-window',
    '128',
    'flag',
    'esn',
  ]);
}

/** Out policy on `sa.src`'s side, in + fwd on `sa.dst`'s side, for pod CIDR to pod CIDR. */
async function addPolicies(sa: Sa): Promise<void> {
  const tmpl = [
    'tmpl',
    'src',
    sa.src.underlay,
    'dst',
    sa.dst.underlay,
    'proto',
    'esp',
    'reqid',
    String(sa.reqid),
    'mode',
    'tunnel',
  ];
  const sel = ['src', sa.src.podCidr, 'dst', sa.dst.podCidr];
  await ipn(sa.src.ns, ['xfrm', 'policy', 'add', ...sel, 'dir', 'out', ...tmpl]);
  for (const dir of ['in', 'fwd']) await ipn(sa.dst.ns, ['xfrm', 'policy', 'add', ...sel, 'dir', dir, ...tmpl]);
}

/** The `lifetime current` byte and packet counters of `sa` as seen in namespace `ns`. */
async function counters(ns: string, sa: Sa): Promise<{ bytes: number; packets: number }> {
  const { stdout } = await ipn(ns, [
    '-s',
    'xfrm',
    'state',
    'get',
    'src',
    sa.src.underlay,
    'dst',
    sa.dst.underlay,
    'proto',
    'esp',
    'spi',
    `0x${sa.spi.toString(16)}`,
  ]);
  const m = /lifetime current:\s*\n\s*(\d+)\(bytes\), (\d+)\(packets\)/.exec(stdout);
  if (m === null) throw new Error(`no lifetime counters in:\n${stdout}`);
  return { bytes: Number(m[1]), packets: Number(m[2]) };
}

suite(guestTitle('XFRM ESP tunnel mode between two namespace nodes (qemu guest kernel)'), () => {
  let pair: Pair | undefined;
  const prefix = newPrefix();
  let lr: Sa;
  let rl: Sa;

  beforeAll(async () => {
    pair = await createPair(prefix, 1);
    lr = { src: pair.left, dst: pair.right, spi: SPI_L_TO_R, reqid: 1, keyHex: randomBytes(20).toString('hex') };
    rl = { src: pair.right, dst: pair.left, spi: SPI_R_TO_L, reqid: 2, keyHex: randomBytes(20).toString('hex') };
  });

  afterAll(async () => {
    await destroyPair(pair);
    expect(await leftoverNetns(prefix)).toEqual([]);
  });

  it('sanity: without SAs the underlay capture sees plaintext pod packets and the canary', async () => {
    const p = pair!;
    const canary = canaryHex();
    const cap = await captureOnWire(p, {
      name: 'plain',
      canaryHex: canary,
      traffic: async () => {
        const r = await ping(p.left.ns, p.right.pod, { patternHex: canary });
        expect(r.received).toBe(3);
      },
    });
    expect(cap.complete).toBe(true);
    expect(cap.podPlaintextPackets).toBeGreaterThanOrEqual(6);
    expect(cap.canaryHits).toBeGreaterThanOrEqual(6);
    expect(cap.espPackets).toBe(0);
  });

  it('with SAs and policies, pod traffic crosses as ESP only: no pod address, no canary on the wire', async () => {
    const p = pair!;
    for (const ns of [p.left.ns, p.right.ns]) {
      await addState(ns, lr);
      await addState(ns, rl);
    }
    await addPolicies(lr);
    await addPolicies(rl);
    const canary = canaryHex();
    const cap = await captureOnWire(p, {
      name: 'esp',
      canaryHex: canary,
      traffic: async () => {
        const r = await ping(p.left.ns, p.right.pod, { patternHex: canary, count: 5 });
        expect(r).toMatchObject({ transmitted: 5, received: 5 });
      },
    });
    expect(cap.complete).toBe(true);
    expect(cap.podPlaintextPackets).toBe(0);
    expect(cap.canaryHits).toBe(0);
    expect(cap.espPackets).toBeGreaterThanOrEqual(10);
    expect(cap.espByEndpoints).toEqual({
      [`${p.left.underlay}>${p.right.underlay}`]: expect.any(Number),
      [`${p.right.underlay}>${p.left.underlay}`]: expect.any(Number),
    });
    // Nothing but ESP and ARP for the underlay addresses.
    expect(cap.totalPackets - cap.espPackets - cap.byKind.arp).toBe(0);
  });

  it('the SA counters grow with the traffic on both ends', async () => {
    const p = pair!;
    const before = {
      lOut: await counters(p.left.ns, lr),
      rIn: await counters(p.right.ns, lr),
      rOut: await counters(p.right.ns, rl),
      lIn: await counters(p.left.ns, rl),
    };
    const r = await ping(p.left.ns, p.right.pod, { count: 4 });
    expect(r.received).toBe(4);
    const after = {
      lOut: await counters(p.left.ns, lr),
      rIn: await counters(p.right.ns, lr),
      rOut: await counters(p.right.ns, rl),
      lIn: await counters(p.left.ns, rl),
    };
    for (const k of ['lOut', 'rIn', 'rOut', 'lIn'] as const) {
      expect({ [k]: after[k].packets - before[k].packets }).toEqual({ [k]: 4 });
      expect(after[k].bytes).toBeGreaterThan(before[k].bytes);
    }
  });

  it('the kernel derives the tunnel MTU from the ESP overhead: 1446 inner bytes over a 1500 underlay', async () => {
    const p = pair!;
    // 1500 - 20 (outer IPv4) - 8 (SPI, seq) - 8 (IV) - 16 (ICV) - 2 (pad length, next header) = 1446,
    // already a multiple of 4 with the 2 trailer bytes, so no padding: 54 bytes of overhead.
    const fits = await ping(p.left.ns, p.right.pod, { size: 1446 - 28, count: 2, df: true });
    expect(fits).toMatchObject({ received: 2, messageTooLong: false });
    const tooBig = await ping(p.left.ns, p.right.pod, { size: 1446 - 28 + 1, count: 1, df: true });
    expect(tooBig).toMatchObject({ received: 0, messageTooLong: true, reportedMtu: 1446 });
  });
});
