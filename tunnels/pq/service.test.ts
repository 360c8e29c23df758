/**
 * Two PqServices wired to each other through an in-memory "tunnel" (each one's send calls the
 * other's onMessage with the addresses the kernel would report), each with a fake WireGuard
 * link holding the other as a peer: the PSK both ends install, required-mode readiness, a
 * tampered ciphertext, a forged sender address, a malformed key, a peer that stops answering,
 * renewal, and a recreated link.
 */
import { silentLogger } from '../../common/logger.js';
import { generateKeyPair, sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { pqSettings, type PqMode } from '../../keymgr/pq/exchange.js';
import { pqInitiator } from '../../keymgr/pq/kdf.js';
import { generateKemKeyPair, type KemKeyPair } from '../../keymgr/pq/mlkem.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { encodeNode } from '../plan/annotations.js';
import { encodePqAnnotations } from '../plan/pq-codec.js';
import { FakeWireGuard } from '../ports/kernel.fake.js';
import type { RawNode } from '../ports/model.js';
import { PqService, ownExchangeAddress } from './service.js';

const T0 = 1_800_000_000_000;
const LINK = 'sealwg0';

interface Side {
  name: string;
  idx: number;
  key: PublicKey;
  kem: KemKeyPair;
  wg: FakeWireGuard;
  svc: PqService;
  address: string;
  wakes: number;
}

let clock = T0;
/** Transforms a message in transit (tamper, drop) — undefined passes it unchanged. */
let wire: ((text: string, from: Side) => string | undefined) | undefined;
/** Remote address the receiving kernel reports (forgery tests replace it). */
let remoteOf: (from: Side) => string = (from) => from.address;

async function mkSide(name: string, idx: number, mode: PqMode): Promise<Side> {
  const key = (await generateKeyPair()).publicKey;
  const kem = generateKemKeyPair();
  const wg = new FakeWireGuard();
  await wg.ensureLink({ name: LINK, privateKeyFile: '/x', publicKey: key, listenPort: 51880, fwmark: 0 });
  const side = { name, idx, key, kem, wg, address: `100.64.${idx}.1`, wakes: 0 } as Side;
  side.svc = new PqService({
    nodeName: name,
    settings: pqSettings(mode, 1),
    kem,
    wg,
    log: silentLogger,
    wake: () => side.wakes++,
    now: () => clock,
    listen: async () => ({ close: () => undefined }),
    send: async (a) => {
      const to = sides.find((s) => s.address === a.address)!;
      const text = wire === undefined ? a.text : wire(a.text, side);
      if (text === undefined) throw new Error('connect ETIMEDOUT');
      const reply = await to.svc.onMessage({ remoteAddress: remoteOf(side), localAddress: a.address, text });
      if (reply === undefined) throw new Error('connection closed before a full line');
      return reply;
    },
  });
  return side;
}

function rawOf(s: Side, kemAnnotation?: string): RawNode {
  const pq = encodePqAnnotations({ kemKey: s.kem.encapsulationKey, address: s.address });
  return {
    name: s.name,
    annotations: {
      ...encodeNode({
        mode: 'wireguard',
        wireguardPublicKey: s.key,
        endpointHost: `198.18.0.${s.idx}`,
        endpointPort: 51880,
        keyEpoch: 1,
        keyCreated: new Date(T0),
      }),
      ...pq,
      ...(kemAnnotation !== undefined ? { [ANNOTATIONS.pqKemKey]: kemAnnotation } : {}),
    },
    podCIDRs: [`100.64.${s.idx}.0/24`],
    internalIPs: [`198.18.0.${s.idx}`],
  };
}

let sides: Side[];

/** Programs each side's peer on its fake link and tells its service, as a pass would. */
async function program(nodes: RawNode[], ifindexBump = 0): Promise<void> {
  for (const s of sides) {
    const other = sides.find((o) => o !== s)!;
    await s.wg.applyPeers(LINK, [
      {
        op: 'set',
        publicKey: other.key,
        endpoint: `198.18.0.${other.idx}:51880`,
        allowedIPs: [`100.64.${other.idx}.0/24`],
        persistentKeepalive: 0,
      },
    ]);
    expect(s.svc.ownAnnotations(rawOf(s), [s.address, `198.18.0.${s.idx}`])).toBeDefined();
    s.svc.programmed({
      link: LINK,
      ifindex: 100 + ifindexBump,
      selfKey: s.key,
      nodes,
      peers: new Map([[other.name, other.key]]),
    });
  }
}

async function tickAll(): Promise<void> {
  for (const s of sides) await s.svc.tick();
}

const psk = (s: Side): string | undefined => s.wg.presharedKeyOf(LINK, sides.find((o) => o !== s)!.key);

beforeAll(async () => {
  await sodiumReady();
});

beforeEach(async () => {
  clock = T0;
  wire = undefined;
  remoteOf = (from) => from.address;
  sides = [await mkSide('worker-a', 1, 'required'), await mkSide('worker-b', 2, 'required')];
});

afterEach(() => {
  for (const s of sides) s.svc.close();
});

test('an honest exchange installs the same PSK on both ends, and required-mode pairs become ready', async () => {
  const nodes = sides.map((s) => rawOf(s));
  // Before any exchange every pair is blocked, with the exchange address to keep routed.
  expect([...sides[0]!.svc.blocked(nodes)]).toEqual([['worker-b', '100.64.2.1']]);
  await program(nodes);
  await tickAll();
  expect(psk(sides[0]!)).toBeDefined();
  expect(psk(sides[0]!)).toBe(psk(sides[1]!));
  for (const s of sides) {
    expect(s.svc.blocked(nodes).size).toBe(0);
    expect(s.svc.status()[0]).toMatchObject({
      protection: 'hybrid',
      ready: true,
      kem: 'ML-KEM-768',
      phase: 'confirmed',
    });
    expect(s.wakes).toBeGreaterThan(0);
  }
  // One initiator per pair, as the KDF picks it.
  const roles = sides.map((s) => s.svc.status()[0]!.role).sort();
  expect(roles).toEqual(['initiator', 'responder']);
  expect(sides.find((s) => s.svc.status()[0]!.role === 'initiator')!.name).toBe(pqInitiator('worker-a', 'worker-b'));
});

test('a tampered ciphertext leaves the initiator without a PSK and the pair blocked', async () => {
  const nodes = sides.map((s) => rawOf(s));
  await program(nodes);
  wire = (text) => {
    const m = JSON.parse(text) as { ciphertext: string };
    const b = Buffer.from(m.ciphertext, 'base64');
    b[10] = b[10]! ^ 1;
    return JSON.stringify({ ...m, ciphertext: b.toString('base64') });
  };
  await tickAll();
  const ini = sides.find((s) => s.name === pqInitiator('worker-a', 'worker-b'))!;
  expect(psk(ini)).toBeUndefined();
  expect(ini.svc.blocked(nodes).size).toBe(1);
  expect(ini.svc.status()[0]).toMatchObject({ ready: false, protection: 'none' });
});

test("a message from an address other than the sender's exchange address is refused", async () => {
  const nodes = sides.map((s) => rawOf(s));
  await program(nodes);
  remoteOf = (from) => `100.64.${from.idx}.77`; // a pod on the peer node, not its agent
  await tickAll();
  expect(psk(sides[0]!)).toBeUndefined();
  expect(psk(sides[1]!)).toBeUndefined();
});

test('a malformed encapsulation key: the pair is skipped with a reason, the agent keeps going', async () => {
  const bad = Buffer.alloc(1184, 0xff).toString('base64');
  const nodes = [rawOf(sides[0]!), rawOf(sides[1]!, bad)];
  await program(nodes);
  await tickAll();
  const a = sides[0]!;
  expect(psk(a)).toBeUndefined();
  expect(a.svc.blocked(nodes).get('worker-b')).toBeUndefined();
  expect(a.svc.blocked(nodes).has('worker-b')).toBe(true);
  expect(a.svc.status()[0]!.reason).toMatch(/no usable ML-KEM encapsulation key: .*modulus check/);
});

test('preferred: classical until the first exchange, then hybrid; nothing is ever blocked', async () => {
  sides = [await mkSide('worker-a', 1, 'preferred'), await mkSide('worker-b', 2, 'preferred')];
  const nodes = sides.map((s) => rawOf(s));
  await program(nodes);
  expect(sides[0]!.svc.status()[0]).toMatchObject({ protection: 'classical', ready: true });
  expect(sides[0]!.svc.blocked(nodes).size).toBe(0);
  await tickAll();
  expect(sides[0]!.svc.status()[0]).toMatchObject({ protection: 'hybrid', ready: true });
  expect(sides[0]!.svc.blocked(nodes).size).toBe(0);
});

test('renewal replaces the PSK on both ends; a peer that stops answering is dropped once its secret expires', async () => {
  const nodes = sides.map((s) => rawOf(s));
  await program(nodes);
  await tickAll();
  const first = psk(sides[0]!);
  clock += 61_000; // renewMinutes 1
  await tickAll();
  expect(psk(sides[0]!)).toBe(psk(sides[1]!));
  expect(psk(sides[0]!)).not.toBe(first);
  // The peer stops answering: renewals fail, the secret expires after two periods.
  wire = () => undefined;
  for (let t = 0; t < 130; t += 5) {
    clock += 5_000;
    await tickAll();
  }
  for (const s of sides) {
    expect(s.svc.blocked(nodes).size).toBe(1);
    expect(s.svc.status()[0]!.reason).toMatch(/past its 120 s limit/);
  }
});

test('a recreated link (new ifindex) gets the PSK again without a new exchange', async () => {
  const nodes = sides.map((s) => rawOf(s));
  await program(nodes);
  await tickAll();
  const before = psk(sides[0]!);
  // wireguard-go restarted: a new link without the peer's PSK.
  for (const s of sides) {
    await s.wg.deleteLink(LINK);
    await s.wg.ensureLink({ name: LINK, privateKeyFile: '/x', publicKey: s.key, listenPort: 51880, fwmark: 0 });
  }
  wire = () => undefined; // no exchange possible: only a re-install can restore it
  await program(nodes, 1);
  await tickAll();
  expect(psk(sides[0]!)).toBe(before);
  expect(psk(sides[1]!)).toBe(before);
});

test('the exchange address is the lowest own address inside the own pod CIDRs, IPv4 first', () => {
  expect(
    ownExchangeAddress(['100.64.1.0/24', 'fd00::/64'], ['198.18.0.1', 'fd00::1', '100.64.1.9', '100.64.1.1']),
  ).toBe('100.64.1.1');
  expect(ownExchangeAddress(['100.64.1.0/24'], ['198.18.0.1'])).toBeUndefined();
});

test('a rotated X25519 key renews the pair before its period is up', async () => {
  const nodes = sides.map((s) => rawOf(s));
  await program(nodes);
  await tickAll();
  const before = psk(sides[0]!);
  // worker-b rotated: its tunnel now has a new key (the pass re-programs the peer with it).
  const b = sides[1]!;
  const oldKey = b.key;
  b.key = (await generateKeyPair()).publicKey;
  await b.wg.deleteLink(LINK);
  await b.wg.ensureLink({ name: LINK, privateKeyFile: '/x', publicKey: b.key, listenPort: 51880, fwmark: 0 });
  await sides[0]!.wg.applyPeers(LINK, [{ op: 'remove', publicKey: oldKey }]);
  await program(
    sides.map((s) => rawOf(s)),
    1,
  );
  clock += 16_000; // past the retry rate limit, far below the 60 s period
  await tickAll(); // the old secret is re-installed on the re-created peers first
  await tickAll(); // then the changed binding starts a renewal
  expect(sides.map((s) => s.svc.status()[0]!.secretAgeSeconds)).toEqual([0, 0]);
  expect(psk(sides[0]!) !== undefined).toBe(true);
  expect(psk(sides[0]!) === psk(sides[1]!)).toBe(true);
  expect(psk(sides[0]!) === before).toBe(false);
});
