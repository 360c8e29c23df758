/**
 * WireGuardDriver against the real kernel and real wireguard-go (root). Two scratch network
 * namespaces `<prefix>-a` / `<prefix>-b` joined by a veth; each "node" is a fixture process
 * (driver.kernel.fixture.mjs, importing the built driver from dist/) running in its namespace
 * and in a private mount namespace with a tmpfs on /var/run/wireguard, so neither the root
 * network namespace nor the root /var/run/wireguard is touched. Everything is removed in
 * afterAll, failure included.
 */
import { jest } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { run } from '../common/spawn.js';
import type { ObservedInterface, ObservedPeer, PeerChange } from '../tunnels/ports/index.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..');
const DIST = join(REPO, 'dist');
const FIXTURE = join(HERE, 'driver.kernel.fixture.mjs');
const PREFIX = `sealk${randomBytes(3).toString('hex')}`;
const NS_A = `${PREFIX}-a`;
const NS_B = `${PREFIX}-b`;
const IF = 'sealwg0';
const PORT = 51880;
const FWMARK = 0x5188;
// Set SEALNET_WIREGUARD_GO to test another build (e.g. .cache/bin/wireguard-go).
const WIREGUARD_GO = process.env['SEALNET_WIREGUARD_GO'] ?? '';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const suite = isRoot ? describe : describe.skip;

jest.setTimeout(60_000);

interface Dump {
  iface: ObservedInterface;
  peers: ObservedPeer[];
}

/** A fixture process answering JSON-line requests. */
class Node {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly logs: string[] = [];
  stderr = '';
  private constructor(readonly child: ChildProcess) {}

  static async start(argv: string[], env: Record<string, string>): Promise<Node> {
    const [cmd = '', ...args] = argv;
    const child = spawn(cmd, args, {
      // Own process group, so the test can kill the whole "agent" at once.
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        PATH: process.env['PATH'] ?? '',
        LC_ALL: 'C',
        SEALNET_DIST: DIST,
        SEALNET_WIREGUARD_GO: WIREGUARD_GO,
        SEALNET_SECRET_DIR: keyDir,
        ...env,
      },
    });
    const node = new Node(child);
    child.stderr?.on('data', (b: Buffer) => (node.stderr += b.toString()));
    const ready = new Promise<void>((res, rej) => {
      child.once('exit', (code) => rej(new Error(`fixture exited (${code}): ${node.stderr}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as {
          id?: number;
          ok?: boolean;
          result?: unknown;
          error?: string;
          ready?: boolean;
          log?: string;
        };
        if (msg.ready === true) res();
        else if (msg.log !== undefined) node.logs.push(msg.log);
        else if (msg.id !== undefined) {
          const p = node.pending.get(msg.id);
          node.pending.delete(msg.id);
          if (msg.ok === true) p?.resolve(msg.result);
          else p?.reject(new Error(msg.error));
        }
      });
    });
    await ready;
    return node;
  }

  call<T>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((res, rej) => {
      this.pending.set(id, { resolve: res as (v: unknown) => void, reject: rej });
      this.child.stdin?.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  }

  /** SIGKILL to the fixture's whole process group (the "agent" dies hard). */
  async killHard(): Promise<void> {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await exited;
  }
}

/** Starts a fixture in `ns` with a fresh private tmpfs on /var/run/wireguard. */
function startInFreshMountNs(ns: string, env: Record<string, string> = {}): Promise<Node> {
  return Node.start(
    [
      'ip',
      'netns',
      'exec',
      ns,
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount -t tmpfs none /var/run/wireguard && exec "${process.execPath}" "${FIXTURE}"`,
    ],
    env,
  );
}

/** Starts a fixture in `ns` joining the mount namespace of process `pid` (a restarted agent). */
function startInMountNsOf(ns: string, pid: number, env: Record<string, string> = {}): Promise<Node> {
  return Node.start(
    ['nsenter', `--net=/var/run/netns/${ns}`, `--mount=/proc/${pid}/ns/mnt`, process.execPath, FIXTURE],
    env,
  );
}

function wgKeypair(): { priv: string; pub: string } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const b64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64url').toString('base64');
  return { priv: b64(privateKey.export({ format: 'jwk' }).d), pub: b64(publicKey.export({ format: 'jwk' }).x) };
}

async function ping(ns: string, dst: string, waitSeconds: number): Promise<boolean> {
  try {
    await run('ip', ['netns', 'exec', ns, 'ping', '-n', '-q', '-c', '1', '-w', String(waitSeconds), dst], {
      timeoutMs: (waitSeconds + 5) * 1000,
    });
    return true;
  } catch {
    return false;
  }
}

/** True while `pid` runs; a zombie (exited, not yet reaped) counts as gone. */
const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The key store's directory stand-in (0700, mkdtemp), removed in afterAll. */
let keyDir = '';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/**
 * Each peer's preshared key on `ns`'s link as a SHA-256 of its base64 text, read by `wg show`
 * in the fixture's mount namespace (where its UAPI socket is). Keys themselves are never kept.
 */
async function pskDigests(node: Node, ns: string): Promise<Map<string, string>> {
  const pid = await node.call<number>('pid');
  const { stdout } = await run('nsenter', [
    `--net=/var/run/netns/${ns}`,
    `--mount=/proc/${pid}/ns/mnt`,
    'wg',
    'show',
    IF,
    'preshared-keys',
  ]);
  const out = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [peer, psk] = line.split('\t');
    if (peer !== undefined && psk !== undefined) out.set(peer, sha256(psk));
  }
  return out;
}

suite('WireGuardDriver in network namespaces (root)', () => {
  const nodes: Node[] = [];
  const keyA = wgKeypair();
  const keyB = wgKeypair();
  let fileA = '';
  let fileB = '';
  let a: Node;
  let b: Node;
  let wgPidA = 0;
  let wgPidB = 0;
  let ifindexA = 0;
  let implA: string | undefined;
  let handshakeA = 0;
  let handshakeB = 0;
  const linkA = () => ({ name: IF, privateKeyFile: fileA, publicKey: keyA.pub, listenPort: PORT, fwmark: FWMARK });
  const linkB = () => ({ name: IF, privateKeyFile: fileB, publicKey: keyB.pub, listenPort: PORT, fwmark: FWMARK });

  beforeAll(async () => {
    if (!existsSync(join(DIST, 'wireguard', 'driver.js'))) {
      throw new Error('dist/wireguard/driver.js missing: run `npm run build` first (npm test does)');
    }
    keyDir = await mkdtemp(join(tmpdir(), `${PREFIX}-`));
    fileA = join(keyDir, 'a.key');
    fileB = join(keyDir, 'b.key');
    await writeFile(fileA, `${keyA.priv}\n`, { mode: 0o600 });
    await writeFile(fileB, `${keyB.priv}\n`, { mode: 0o600 });
    // The mount point for the per-node tmpfs; an empty directory on the host is harmless.
    await mkdir('/var/run/wireguard', { recursive: true });
    await run('ip', ['netns', 'add', NS_A]);
    await run('ip', ['netns', 'add', NS_B]);
    // Created directly inside the namespaces: nothing appears in the root namespace.
    await run('ip', ['-n', NS_A, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', NS_B]);
    await run('ip', ['-n', NS_A, 'addr', 'add', '198.18.0.1/24', 'dev', 'veth0']);
    await run('ip', ['-n', NS_B, 'addr', 'add', '198.18.0.2/24', 'dev', 'veth0']);
    for (const ns of [NS_A, NS_B]) {
      await run('ip', ['-n', ns, 'link', 'set', 'veth0', 'up']);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    a = await startInFreshMountNs(NS_A);
    b = await startInFreshMountNs(NS_B, { SEALNET_WG_IMPL: 'userspace' });
    nodes.push(a, b);
  });

  afterAll(async () => {
    for (const n of nodes) await n.killHard().catch(() => undefined);
    // Every process left in our namespaces (wireguard-go daemons) is ours: kill by pid.
    for (const ns of [NS_A, NS_B]) {
      const pids = await run('ip', ['netns', 'pids', ns]).then(
        (r) => r.stdout.split(/\s+/).filter(Boolean).map(Number),
        () => [],
      );
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
    if (keyDir !== '') await rm(keyDir, { recursive: true, force: true });
    const left = await run('ip', ['netns', 'list']).then(
      (r) => r.stdout,
      () => '',
    );
    expect(left).not.toContain(PREFIX);
  });

  it('creates the link, falling back to wireguard-go when the kernel has no WireGuard', async () => {
    const kernel = await a.call<boolean>('detectKernel');
    const ra = await a.call<{ impl: string; created: boolean; ifindex: number }>('ensureLink', linkA());
    expect(ra).toEqual({ impl: kernel ? 'kernel' : 'userspace', created: true, ifindex: expect.any(Number) });
    if (!kernel) expect(a.logs).toContain('kernel has no WireGuard; starting wireguard-go');
    ifindexA = ra.ifindex;
    implA = ra.impl;
    const rb = await b.call<{ impl: string; created: boolean }>('ensureLink', linkB());
    expect(rb).toMatchObject({ impl: 'userspace', created: true });

    const da = await a.call<Dump>('show', IF);
    expect(da.iface).toEqual({ publicKey: keyA.pub, listenPort: PORT, fwmark: FWMARK });
    expect(da.peers).toEqual([]);
    const link = JSON.parse((await run('ip', ['-n', NS_A, '-j', 'link', 'show', 'dev', IF])).stdout) as {
      flags: string[];
    }[];
    expect(link[0]?.flags).toContain('UP');

    wgPidB = (await b.call<number[]>('tunOwners', IF))[0] ?? 0;
    expect(wgPidB).toBeGreaterThan(0);
    if (!kernel) {
      wgPidA = (await a.call<number[]>('tunOwners', IF))[0] ?? 0;
      expect(wgPidA).toBeGreaterThan(0);
      expect(wgPidA).not.toBe(wgPidB);
    }
  });

  it('adds peers; a handshake happens and ping crosses the tunnel', async () => {
    const toB: PeerChange = {
      op: 'set',
      publicKey: keyB.pub as never,
      endpoint: `198.18.0.2:${PORT}`,
      allowedIPs: ['100.64.0.2/32'],
      persistentKeepalive: 0,
    };
    const toA: PeerChange = {
      op: 'set',
      publicKey: keyA.pub as never,
      endpoint: `198.18.0.1:${PORT}`,
      allowedIPs: ['100.64.0.1/32', '100.64.9.0/24'],
      persistentKeepalive: 25,
    };
    await a.call('applyPeers', IF, [toB]);
    await b.call('applyPeers', IF, [toA]);
    await run('ip', ['-n', NS_A, 'addr', 'add', '100.64.0.1/24', 'dev', IF]);
    await run('ip', ['-n', NS_B, 'addr', 'add', '100.64.0.2/24', 'dev', IF]);

    expect(await ping(NS_A, '100.64.0.2', 10)).toBe(true);
    const da = await a.call<Dump>('show', IF);
    const db = await b.call<Dump>('show', IF);
    expect(da.peers).toHaveLength(1);
    expect(da.peers[0]).toMatchObject({
      publicKey: keyB.pub,
      endpoint: `198.18.0.2:${PORT}`,
      allowedIPs: ['100.64.0.2/32'],
      persistentKeepalive: 0,
    });
    expect(db.peers[0]).toMatchObject({
      publicKey: keyA.pub,
      endpoint: `198.18.0.1:${PORT}`,
      allowedIPs: ['100.64.0.1/32', '100.64.9.0/24'],
      persistentKeepalive: 25,
    });
    handshakeA = da.peers[0]?.latestHandshake ?? 0;
    handshakeB = db.peers[0]?.latestHandshake ?? 0;
    expect(handshakeA).toBeGreaterThan(0);
    expect(handshakeB).toBeGreaterThan(0);
    expect(da.peers[0]?.rxBytes).toBeGreaterThan(0);
  });

  it('re-running ensureLink with the same settings changes nothing and keeps the session', async () => {
    // latest-handshake has 1 s resolution: let a second pass so a new handshake would show.
    await sleep(1100);
    a.logs.length = 0;
    const again = await a.call<{ created: boolean; ifindex: number }>('ensureLink', linkA());
    expect(again).toMatchObject({ created: false, ifindex: ifindexA });
    expect(a.logs).not.toContain('setting WireGuard interface');
    expect(await ping(NS_A, '100.64.0.2', 5)).toBe(true);
    const da = await a.call<Dump>('show', IF);
    const db = await b.call<Dump>('show', IF);
    expect(da.peers[0]?.latestHandshake).toBe(handshakeA);
    expect(db.peers[0]?.latestHandshake).toBe(handshakeB);
  });

  it('only the differing field is set: a new listen port leaves the key and session alone', async () => {
    a.logs.length = 0;
    await a.call('ensureLink', { ...linkA(), listenPort: PORT + 1 });
    expect(a.logs).toContain('setting WireGuard interface');
    const da = await a.call<Dump>('show', IF);
    expect(da.iface).toEqual({ publicKey: keyA.pub, listenPort: PORT + 1, fwmark: FWMARK });
    expect(da.peers[0]?.latestHandshake).toBe(handshakeA);
    await a.call('ensureLink', linkA());
    expect((await a.call<Dump>('show', IF)).iface.listenPort).toBe(PORT);
  });

  it('the wireguard-go daemon outlives the agent that started it (kill -9), and a new agent adopts it', async () => {
    if (implA === 'kernel') return; // kernel WireGuard: no process to outlive the agent
    expect(implA).toBe('userspace');
    expect(wgPidA).toBeGreaterThan(0);
    await a.killHard();
    await sleep(200);
    expect(alive(wgPidA)).toBe(true);
    expect(await ping(NS_A, '100.64.0.2', 5)).toBe(true);

    // The restarted agent shares the old one's /var/run/wireguard, as a DaemonSet pod's hostPath does.
    a = await startInMountNsOf(NS_A, wgPidA);
    nodes.push(a);
    const r = await a.call<{ impl: string; created: boolean; ifindex: number }>('ensureLink', linkA());
    expect(r).toEqual({ impl: 'userspace', created: false, ifindex: ifindexA });
    expect(a.logs).not.toContain('setting WireGuard interface');
    const da = await a.call<Dump>('show', IF);
    expect(da.peers[0]?.latestHandshake).toBe(handshakeA);
    expect(await a.call<number[]>('tunOwners', IF)).toEqual([wgPidA]);
  });

  it('on a userspace link, applyPeers and setPresharedKey go over UAPI (no wg process) and read back', async () => {
    // b's driver `uapiOnly` has wgPath /nonexistent/wg: it can change the link only over UAPI.
    const k3 = wgKeypair().pub;
    b.logs.length = 0;
    await b.call('applyPeersUapiOnly', IF, [
      {
        op: 'set',
        publicKey: k3,
        endpoint: '[fd00:0::3]:51999',
        allowedIPs: ['100.64.3.7/24', 'fd00:3::/64'],
        persistentKeepalive: 0,
      },
    ]);
    expect(b.logs).toContain('applied WireGuard peer changes');
    const peer3 = async (): Promise<ObservedPeer | undefined> =>
      (await b.call<Dump>('show', IF)).peers.find((p) => p.publicKey === k3);
    expect(await peer3()).toMatchObject({
      endpoint: '[fd00::3]:51999',
      allowedIPs: ['100.64.3.0/24', 'fd00:3::/64'],
      persistentKeepalive: 0,
    });

    // A second set replaces the whole allowed-IP list, moves the endpoint, turns keepalive on.
    await b.call('applyPeersUapiOnly', IF, [
      { op: 'set', publicKey: k3, endpoint: '198.18.0.9:1', allowedIPs: ['100.64.4.0/24'], persistentKeepalive: 7 },
    ]);
    expect(await peer3()).toMatchObject({
      endpoint: '198.18.0.9:1',
      allowedIPs: ['100.64.4.0/24'],
      persistentKeepalive: 7,
    });
    // Empty list and keepalive 0; no endpoint given leaves it.
    await b.call('applyPeersUapiOnly', IF, [
      { op: 'set', publicKey: k3, endpoint: '', allowedIPs: [], persistentKeepalive: 0 },
    ]);
    expect(await peer3()).toMatchObject({ endpoint: '198.18.0.9:1', allowedIPs: [], persistentKeepalive: 0 });

    // Preshared key: compared by digest, never printed; the other peer's stays unset.
    const psk = randomBytes(32);
    await b.call('setPresharedKeyUapiOnly', IF, k3, psk.toString('base64'));
    const digests = await pskDigests(b, NS_B);
    expect(digests.get(k3)).toBe(sha256(psk.toString('base64')));
    expect(digests.get(keyA.pub)).toBe(sha256('(none)'));
    psk.fill(0);

    await b.call('applyPeersUapiOnly', IF, [{ op: 'remove', publicKey: k3 }]);
    expect(await peer3()).toBeUndefined();
    expect((await b.call<Dump>('show', IF)).peers.map((p) => p.publicKey)).toEqual([keyA.pub]);
  });

  it('over UAPI, a bad change applies nothing, and a value wireguard-go refuses is a clear errno error', async () => {
    // Configuration only: counters and handshakes move on their own (keepalive traffic).
    const config = async (): Promise<unknown> => {
      const d = await b.call<Dump>('show', IF);
      return {
        iface: d.iface,
        peers: d.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIPs, p.persistentKeepalive]),
      };
    };
    const before = await config();
    const k4 = wgKeypair().pub;
    const good = {
      op: 'set',
      publicKey: k4,
      endpoint: '198.18.0.4:1',
      allowedIPs: ['100.64.5.0/24'],
      persistentKeepalive: 0,
    };
    await expect(
      b.call('applyPeersUapiOnly', IF, [good, { ...good, publicKey: wgKeypair().pub, persistentKeepalive: 70000 }]),
    ).rejects.toThrow(/persistent keepalive 70000 is not 0-65535/);
    await expect(
      b.call('applyPeersUapiOnly', IF, [good, { ...good, publicKey: wgKeypair().pub, endpoint: 'node-4.test:51880' }]),
    ).rejects.toThrow(/not an IP address literal/);
    expect(await config()).toEqual(before);

    // A line our encoder would never write, which wireguard-go refuses (keepalive past 16 bits)
    // after selecting an existing peer: errno -22 named with the link; the peer is unchanged.
    const hexA = Buffer.from(keyA.pub, 'base64').toString('hex');
    await expect(
      b.call('uapiSetRaw', IF, `set=1\npublic_key=${hexA}\npersistent_keepalive_interval=99999\n\n`),
    ).rejects.toThrow(/UAPI set of a raw test operation on sealwg0 .*errno=-22 \(EINVAL/);
    expect(await config()).toEqual(before);
  });

  it('a socket file nothing serves is no userspace link: the driver falls back to wg, as before', async () => {
    // Written into b's private /var/run/wireguard through its root (/var/run is often a symlink
    // to /run, which would resolve against our root: resolve it first); no link sealwg9 exists.
    const pid = await b.call<number>('pid');
    const stale = join(`/proc/${pid}/root`, realpathSync('/var/run/wireguard'), 'sealwg9.sock');
    await writeFile(stale, '', { flag: 'wx' });
    expect(await b.call<boolean>('uapiSocketExists', 'sealwg9')).toBe(true);
    expect(existsSync('/var/run/wireguard/sealwg9.sock')).toBe(false);
    const change = { op: 'set', publicKey: wgKeypair().pub, endpoint: '', allowedIPs: [], persistentKeepalive: 0 };
    // The UAPI-only driver gets as far as spawning its (missing) wg: UAPI said `no-socket`.
    await expect(b.call('applyPeersUapiOnly', 'sealwg9', [change])).rejects.toThrow(
      /wg set sealwg9: applied 0 of 1 peer changes, then failed: \/nonexistent\/wg .*ENOENT/,
    );
    // The real wg then treats it as a kernel link that does not exist.
    await expect(b.call('applyPeers', 'sealwg9', [change])).rejects.toThrow(/wg set sealwg9: applied 0 of 1/);
    await rm(stale, { force: true });
  });

  it('empties allowed IPs with allowed-ips "" and removes a peer', async () => {
    await b.call('applyPeers', IF, [
      { op: 'set', publicKey: keyA.pub, endpoint: `198.18.0.1:${PORT}`, allowedIPs: [], persistentKeepalive: 0 },
    ]);
    expect((await b.call<Dump>('show', IF)).peers[0]).toMatchObject({ allowedIPs: [], persistentKeepalive: 0 });
    // B no longer accepts 100.64.0.1 from A: the reply path is gone.
    expect(await ping(NS_A, '100.64.0.2', 2)).toBe(false);

    await b.call('applyPeers', IF, [{ op: 'remove', publicKey: keyA.pub }]);
    expect((await b.call<Dump>('show', IF)).peers).toEqual([]);
    expect(await ping(NS_A, '100.64.0.2', 2)).toBe(false);
  });

  it('deleteLink removes the link and stops its wireguard-go, and only that one', async () => {
    await a.call('deleteLink', IF);
    expect(await a.call('show', IF)).toBeNull();
    if (implA === 'userspace') {
      await sleep(100);
      expect(alive(wgPidA)).toBe(false);
    }
    // B has an interface of the same name in its own namespace: untouched.
    expect(alive(wgPidB)).toBe(true);
    expect((await b.call<Dump>('show', IF)).iface.publicKey).toBe(keyB.pub);
    // Idempotent.
    await a.call('deleteLink', IF);

    await b.call('deleteLink', IF);
    await sleep(100);
    expect(alive(wgPidB)).toBe(false);
    expect(await b.call('show', IF)).toBeNull();
  });
});
