/**
 * The steering program against the real kernel, with real packets (DESIGN.md test tier 2).
 *
 * Two scratch nodes, each a network namespace plus a mount namespace of its own (held by a
 * `sleep`, entered with nsenter) with a private bpffs and /var/run/wireguard:
 *
 *   A  198.18.0.1 on <p>u ──veth── <p>v 198.18.0.2, .3, .4 on B; 100.64.{2,3,4,5}.10 on B's lo
 *      100.64.0.0/10 via 198.18.0.2 (a host-gw pod route: plaintext unless sealnet steps in)
 *      <p>w wireguard-go, peer B ─────── <p>x wireguard-go on B, peer A
 *   pod 100.64.1.10 in netns <p>p ──veth <p>r/<p>q── A (forwarding): a pod's packets cross A's
 *      underlay egress as forwarded traffic, with no socket and no mark, as a real pod's do.
 *
 * The program is attached to A's underlay (<p>u). What B receives is observed three ways: a
 * tcpdump on B's underlay end (plaintext pod packets must be absent), UDP sockets on B (what was
 * delivered, through the tunnel or not), and the program's own counters. The test process stays
 * in its own namespaces: BpfSteering runs in fixtures/bpf-rpc.mjs children inside A and B.
 *
 * Addresses: 198.18.0.0/15 and 100.64.0.0/10 only. Everything carries the run's prefix
 * `sealb<hex>` and is removed in afterAll, failures included.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BPF_XFRM_MARK_MASK, TC_HANDLE, TC_PRIORITY, WG_FWMARK } from '../../common/constants.js';
import type { SteeringEntry, SteeringSettings } from '../../tunnels/ports/index.js';
import { run } from '../../common/spawn.js';
import { CONFIG_SIZE, COUNTER_SIZE, EXEMPT_VALUE_SIZE, KEY_SIZE, OFFSETS, REMOTE_VALUE_SIZE } from './layout.js';
import { RpcChild } from '../../test/rpc.js';

const TIMEOUT_MS = 60_000;
const BUILD_TIMEOUT_MS = 300_000;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const prefix = `sealb${randomBytes(3).toString('hex')}`;
const nsA = `${prefix}a`;
const nsB = `${prefix}b`;
const nsPod = `${prefix}p`;
const podA = `${prefix}q`;
const podIf = `${prefix}r`;
/** A stand-in tunnel link on A (one end of a veth pair), deleted while an entry points to it. */
const dummyA = `${prefix}d`;
const uA = `${prefix}u`;
const uB = `${prefix}v`;
const wgA = `${prefix}w`;
const wgB = `${prefix}x`;
const WG_PORT = 51999;
const SINK_PORT = 9999;
const SENTINEL_PORT = 7;
const pinDir = '/sys/fs/bpf/sealnet';
const work = mkdtempSync(path.join(tmpdir(), `${prefix}-`));

const settings: SteeringSettings = {
  failClosed: true,
  wireguardPort: WG_PORT,
  espUdpPort: 4500,
  esp: false,
  tunnelFwmark: WG_FWMARK,
  markMask: BPF_XFRM_MARK_MASK,
};
/** An API server on the node network (198.18.0.4, on B): exempt even though it is a node entry. */
const exempt = ['198.18.0.4/32'];
const clusterCidrs = ['100.64.0.0/10'];

// ---- processes --------------------------------------------------------------------------

/** A `sleep` holding a mount namespace (private bpffs and /var/run/wireguard) inside a netns. */
interface Holder {
  readonly child: ChildProcess;
  readonly pid: number;
}
const holders = new Map<string, Holder>();
const daemons: ChildProcess[] = [];

async function startHolder(netns: string): Promise<Holder> {
  const script =
    'set -e; mkdir -p /var/run/wireguard; mount -t tmpfs -o mode=0755 none /var/run/wireguard; mount -t bpf bpf /sys/fs/bpf; exec sleep infinity';
  const child = spawn(
    'ip',
    ['netns', 'exec', netns, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script],
    { stdio: 'ignore' },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start the mount-namespace holder of ${netns}`);
  // ip, unshare and sh exec() in place: the pid becomes `sleep` once the mounts are done.
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`mount-namespace holder of ${netns} exited with ${child.exitCode}`);
    if (existsSync(`/proc/${pid}/comm`) && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep') {
      const h = { child, pid };
      holders.set(netns, h);
      return h;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`mount-namespace holder of ${netns} did not become ready`);
}

/** argv prefix entering a node's network and mount namespaces. */
function inNode(netns: string): string[] {
  const h = holders.get(netns);
  if (h === undefined) throw new Error(`no holder for ${netns}`);
  return ['nsenter', '-t', String(h.pid), '-n', '-m', '--'];
}

async function sh(netns: string, ...argv: string[]): Promise<string> {
  const [cmd, ...args] = [...inNode(netns), ...argv];
  return (await run(cmd!, args, { timeoutMs: 20_000 })).stdout;
}

async function ipn(netns: string, ...args: string[]): Promise<string> {
  return (await run('ip', ['-n', netns, ...args], { timeoutMs: 10_000 })).stdout;
}

/** Rebuilds what the fixture loads (dist/, the BPF object, the addon) when stale. */
async function ensureBuilt(): Promise<void> {
  await run('bash', [path.join(root, 'scripts', 'build-bpf.sh')], { timeoutMs: 120_000 });
  await run('bash', [path.join(root, 'scripts', 'build-addons.sh')], { timeoutMs: 240_000 });
  const sources = [
    ...readdirSync(path.join(root, 'routing', 'bpf'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => path.join('routing', 'bpf', f)),
    ...['errors', 'constants', 'spawn', 'ip'].map((f) => path.join('common', `${f}.ts`)),
  ];
  const stale = (): string[] =>
    sources.filter((src) => {
      const out = path.join(root, 'dist', src.replace(/\.ts$/, '.js'));
      return !existsSync(out) || statSync(out).mtimeMs < statSync(path.join(root, src)).mtimeMs;
    });
  if (stale().length > 0) {
    // Other folders may not type-check yet; tsc still emits, so judge by the outputs.
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const build = await run(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], {
      timeoutMs: 240_000,
    }).catch((err: unknown) => err);
    const left = stale();
    if (left.length > 0) throw new Error(`dist/ is stale for ${left.join(', ')} after building: ${String(build)}`);
  }
}

/** Client for fixtures/bpf-rpc.mjs running in a node. */
class Rpc extends RpcChild {
  constructor(netns: string) {
    super([
      ...inNode(netns),
      process.execPath,
      path.join(root, 'routing', 'bpf', 'fixtures', 'bpf-rpc.mjs'),
      path.join(root, 'dist'),
      pinDir,
    ]);
  }
}

let agent: Rpc | undefined;
let peer: Rpc | undefined;
const a = (): Rpc => agent ?? fail('node A setup failed');
const b = (): Rpc => peer ?? fail('node B setup failed');
function fail(msg: string): never {
  throw new Error(msg);
}

// ---- observation helpers ----------------------------------------------------------------

/** Egress/ingress counter of the program, read through the pinned map. */
async function counter(hook: string, reason: string, via: Rpc = a()): Promise<number> {
  const all = await via.call<{ hook: string; reason: string; packets: string }[]>('counters');
  const c = all.find((x) => x.hook === hook && x.reason === reason);
  if (c === undefined) throw new Error(`no counter ${hook}/${reason}`);
  return Number(c.packets);
}

async function received(): Promise<Record<string, number>> {
  return b().call<Record<string, number>>('udpReceived');
}

/** Waits until B's socket on `addr` has `n` more datagrams than `before` (or the time is up). */
async function waitReceived(addr: string, before: number, n: number, ms = 5_000): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    const got = ((await received())[addr] ?? 0) - before;
    if (got >= n || Date.now() > end) return got;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function linkStats(netns: string, dev: string): Promise<{ tx: number; txDropped: number }> {
  const [l] = JSON.parse(await ipn(netns, '-j', '-s', 'link', 'show', 'dev', dev)) as {
    stats64: { tx: { packets: number; dropped: number } };
  }[];
  return { tx: l?.stats64.tx.packets ?? 0, txDropped: l?.stats64.tx.dropped ?? 0 };
}

/** Packets in a pcap file matching a tcpdump filter. */
async function pcapCount(file: string, filter: string): Promise<number> {
  const out = await run('tcpdump', ['-r', file, '-n', filter], { timeoutMs: 20_000 });
  return out.stdout.split('\n').filter((l) => l.trim() !== '').length;
}

/**
 * Runs `fn` under a tcpdump on B's underlay end; returns a packet counter over the capture.
 * A sentinel datagram (A → 198.18.0.2, port SENTINEL_PORT, passed as "other") is sent before
 * and after `fn`, and the capture is stopped only once both are in the file: proof that it was
 * live for the whole window, so a count of 0 means nothing crossed, not a capture that missed it.
 */
async function captured(fn: () => Promise<void>): Promise<(filter: string) => Promise<number>> {
  const file = path.join(work, `cap-${randomBytes(4).toString('hex')}.pcap`);
  const dump = spawn(
    'ip',
    ['netns', 'exec', nsB, 'tcpdump', '-i', uB, '-n', '-U', '--immediate-mode', '-s', '256', '-Z', 'root', '-w', file],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  dump.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const sentinels = async (n: number): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      if (dump.exitCode !== null) throw new Error(`tcpdump exited: ${err}`);
      await send('198.18.0.2', 1, SENTINEL_PORT);
      if (existsSync(file) && (await pcapCount(file, `udp and dst port ${SENTINEL_PORT}`)) >= n) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`capture on ${uB} never saw sentinel ${n}: ${err}`);
  };
  try {
    await sentinels(1);
    const before = await pcapCount(file, `udp and dst port ${SENTINEL_PORT}`);
    await fn();
    await sentinels(before + 1);
  } finally {
    const exited = new Promise((r) => dump.once('exit', r));
    dump.kill('SIGINT');
    await exited;
  }
  return (filter: string) => pcapCount(file, filter);
}

const send = (to: string, count: number, port = SINK_PORT, extra: Record<string, unknown> = {}): Promise<number> =>
  a().call<number>('sendUdp', { to, port, count, ...extra });

// ---- setup ------------------------------------------------------------------------------

let wgAIndex = 0;
/** B's public key (A's peer), for tests that change A's peer. */
let pubB = '';
const readyEntries = (): SteeringEntry[] => [
  { cidr: '100.64.2.0/24', state: 'ready', action: 'redirect', kind: 'pod', ifindex: wgAIndex, mark: 0, peerId: 2 },
  { cidr: '100.64.3.0/24', state: 'not-ready', action: 'redirect', kind: 'pod', ifindex: 0, mark: 0, peerId: 3 },
  { cidr: '198.18.0.3/32', state: 'not-ready', action: 'redirect', kind: 'node', ifindex: 0, mark: 0, peerId: 3 },
  { cidr: '198.18.0.4/32', state: 'not-ready', action: 'redirect', kind: 'node', ifindex: 0, mark: 0, peerId: 3 },
];

/**
 * Sends from the pod namespace with python3 (a raw socket for ESP, a bound source port for UDP):
 * the packets a hostile or careless pod can make, forwarded through A like any pod traffic.
 */
const POD_SEND = [
  'import socket, sys',
  'kind, dst, port, sport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])',
  'if kind == "esp":',
  '    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)',
  '    head = bytes([0x51, 0, 0, 1, 0, 0, 0, 1])',
  'else:',
  '    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
  '    s.bind(("100.64.1.10", sport))',
  '    head = b""',
  'for i in range(n):',
  '    s.sendto(head + ("sealnet-canary %d" % i).encode(), (dst, port))',
].join('\n');
async function podSend(
  kind: 'udp' | 'esp',
  to: string,
  opts: { port?: number; sport?: number; count: number },
): Promise<void> {
  const argv = [kind, to, String(opts.port ?? 0), String(opts.sport ?? 0), String(opts.count)];
  await run('ip', ['netns', 'exec', nsPod, 'python3', '-c', POD_SEND, ...argv], { timeoutMs: 20_000 });
}

async function wireguard(netns: string, dev: string, keyFile: string, peerSpec: string[]): Promise<void> {
  const bin = existsSync(path.join(root, '.cache', 'bin', 'wireguard-go'))
    ? path.join(root, '.cache', 'bin', 'wireguard-go')
    : 'wireguard-go';
  const [cmd, ...args] = [...inNode(netns), bin, '-f', dev];
  const d = spawn(cmd!, args, {
    stdio: 'ignore',
    env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' },
  });
  daemons.push(d);
  for (let i = 0; i < 100 && !(await ipn(netns, 'link', 'show').then((o) => o.includes(dev))); i++)
    await new Promise((r) => setTimeout(r, 50));
  await sh(
    netns,
    'wg',
    'set',
    dev,
    'private-key',
    keyFile,
    'listen-port',
    String(WG_PORT),
    'fwmark',
    `0x${WG_FWMARK.toString(16)}`,
    ...peerSpec,
  );
  await ipn(netns, 'link', 'set', dev, 'up');
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('kernel tests need root (they create scratch network namespaces)');
  await ensureBuilt();
  for (const ns of [nsA, nsB]) {
    await run('ip', ['netns', 'add', ns]);
    await run('ip', [
      'netns',
      'exec',
      ns,
      'sysctl',
      '-q',
      '-w',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
      'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1',
    ]);
    await ipn(ns, 'link', 'set', 'lo', 'up');
    await startHolder(ns);
  }
  await ipn(nsA, 'link', 'add', uA, 'type', 'veth', 'peer', 'name', uB, 'netns', nsB);
  await ipn(nsA, 'addr', 'add', '198.18.0.1/24', 'dev', uA);
  await ipn(nsA, 'link', 'set', uA, 'up');
  await ipn(nsB, 'addr', 'add', '198.18.0.2/24', 'dev', uB);
  await ipn(nsB, 'addr', 'add', '198.18.0.3/24', 'dev', uB);
  await ipn(nsB, 'addr', 'add', '198.18.0.4/24', 'dev', uB);
  await ipn(nsB, 'link', 'set', uB, 'up');
  for (const host of ['100.64.2.10', '100.64.3.10', '100.64.4.10', '100.64.5.10'])
    await ipn(nsB, 'addr', 'add', `${host}/32`, 'dev', 'lo');
  await ipn(nsA, 'route', 'add', '100.64.0.0/10', 'via', '198.18.0.2', 'dev', uA);
  // The pod: its own netns behind a veth, A forwarding for it (A's namespace only).
  await run('ip', ['netns', 'add', nsPod]);
  await ipn(nsA, 'link', 'add', podA, 'type', 'veth', 'peer', 'name', podIf, 'netns', nsPod);
  await ipn(nsA, 'addr', 'add', '100.64.1.1/32', 'dev', podA);
  await ipn(nsA, 'link', 'set', podA, 'up');
  await ipn(nsA, 'route', 'add', '100.64.1.10/32', 'dev', podA);
  await run('ip', ['netns', 'exec', nsA, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  await ipn(nsPod, 'link', 'set', 'lo', 'up');
  await ipn(nsPod, 'addr', 'add', '100.64.1.10/32', 'dev', podIf);
  await ipn(nsPod, 'link', 'set', podIf, 'up');
  await ipn(nsPod, 'route', 'add', '100.64.1.1/32', 'dev', podIf);
  await ipn(nsPod, 'route', 'add', 'default', 'via', '100.64.1.1', 'dev', podIf);

  const keyA = path.join(work, 'a.key');
  const keyB = path.join(work, 'b.key');
  for (const f of [keyA, keyB]) writeFileSync(f, (await run('wg', ['genkey'])).stdout, { mode: 0o600 });
  const pub = async (f: string): Promise<string> =>
    (await run('wg', ['pubkey'], { input: readFileSync(f, 'utf8') })).stdout.trim();
  pubB = await pub(keyB);
  await wireguard(nsA, wgA, keyA, ['peer', pubB, 'allowed-ips', '100.64.2.0/24', 'endpoint', `198.18.0.2:${WG_PORT}`]);
  await wireguard(nsB, wgB, keyB, ['peer', await pub(keyA), 'allowed-ips', '198.18.0.1/32']);
  const [link] = JSON.parse(await ipn(nsA, '-j', 'link', 'show', 'dev', wgA)) as { ifindex: number }[];
  wgAIndex = link?.ifindex ?? 0;

  agent = new Rpc(nsA);
  peer = new Rpc(nsB);
  for (const addr of [
    '100.64.2.10',
    '100.64.3.10',
    '100.64.4.10',
    '100.64.5.10',
    '198.18.0.2',
    '198.18.0.3',
    '198.18.0.4',
  ])
    await b().call('listenUdp', { addr, port: SINK_PORT });
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  const errors: unknown[] = [];
  const attempt = async (fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  };
  await attempt(async () => agent?.stop());
  await attempt(async () => peer?.stop());
  for (const d of daemons) d.kill('SIGKILL');
  for (const h of holders.values()) h.child.kill('SIGKILL');
  // Deleting the namespaces removes the veths, the TUNs and the tc filters; the bpffs pins
  // lived only in the holders' mount namespaces.
  for (const ns of [nsA, nsB, nsPod])
    await attempt(() =>
      run('ip', ['netns', 'del', ns]).catch((err: unknown) =>
        String(err).includes('No such file') ? undefined : Promise.reject(err),
      ),
    );
  rmSync(work, { recursive: true, force: true });
  if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
}, TIMEOUT_MS);

// ---- tests ------------------------------------------------------------------------------

describe('layout.ts matches steer.c', () => {
  it(
    'has the sizes and offsets of the BTF in the built object',
    async () => {
      const btf = (
        await run('bpftool', ['btf', 'dump', 'file', path.join(root, '.cache', 'bpf', 'steer.o'), 'format', 'raw'])
      ).stdout;
      const structs = new Map<string, { size: number; members: Map<string, number> }>();
      let cur: { size: number; members: Map<string, number> } | undefined;
      for (const line of btf.split('\n')) {
        const s = /^\[\d+\] STRUCT '(\w+)' size=(\d+)/.exec(line);
        if (s !== null) {
          cur = { size: Number(s[2]), members: new Map() };
          structs.set(s[1]!, cur);
          continue;
        }
        const m = /^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)/.exec(line);
        if (m !== null && cur !== undefined) cur.members.set(m[1]!, Number(m[2]) / 8);
        else if (!line.startsWith('\t') && !line.startsWith(' ')) cur = undefined;
      }
      const sizes: Record<keyof typeof OFFSETS, number> = {
        lpm_key: KEY_SIZE,
        remote_value: REMOTE_VALUE_SIZE,
        config: CONFIG_SIZE,
        counter: COUNTER_SIZE,
      };
      for (const [name, offsets] of Object.entries(OFFSETS) as [keyof typeof OFFSETS, Record<string, number>][]) {
        const st = structs.get(name);
        expect({ name, size: st?.size, members: Object.fromEntries(st?.members ?? []) }).toEqual({
          name,
          size: sizes[name],
          members: offsets,
        });
      }
      expect(EXEMPT_VALUE_SIZE).toBe(4);
    },
    TIMEOUT_MS,
  );
});

describe('steering in a scratch namespace', () => {
  it(
    'fails closed from the first packet: fresh pins, only the cluster catch-all, everything remote dropped',
    async () => {
      const r = await a().call<{ mapsCreated: boolean; programsLoaded: boolean; attached: { change: string }[] }>(
        'ensure',
        { settings, exempt, clusterCidrs, attachments: [{ dev: uA, hook: 'egress' }] },
      );
      expect(r).toMatchObject({
        mapsCreated: true,
        programsLoaded: true,
        attached: [{ dev: uA, hook: 'egress', change: 'added' }],
      });
      expect(await a().call('listEntries')).toEqual([
        { cidr: '100.64.0.0/10', state: 'no-peer', action: 'redirect', kind: 'pod', ifindex: 0, mark: 0, peerId: 0 },
      ]);
      expect(await a().call('settings')).toEqual(settings);

      const before = await counter('egress', 'no_peer');
      const rx = (await received())['100.64.2.10'] ?? 0;
      const count = await captured(async () => {
        expect(await send('100.64.2.10', 50)).toBe(50);
      });
      expect(await counter('egress', 'no_peer')).toBe(before + 50);
      expect(await waitReceived('100.64.2.10', rx, 1, 500)).toBe(0);
      expect(await count('dst net 100.64.0.0/10')).toBe(0);
    },
    TIMEOUT_MS,
  );

  it(
    'redirects a ready prefix into the tunnel: seen on the tunnel, never in plaintext on the underlay',
    async () => {
      expect(await a().call('applyEntries', readyEntries(), { prune: false })).toEqual({ written: 4, deleted: 0 });
      expect(await a().call('applyEntries', readyEntries(), { prune: false })).toEqual({ written: 0, deleted: 0 });
      const before = await counter('egress', 'redirected');
      const tun = await linkStats(nsA, wgA);
      const rx = (await received())['100.64.2.10'] ?? 0;
      const count = await captured(async () => {
        expect(await send('100.64.2.10', 100, SINK_PORT, { intervalMs: 1 })).toBe(100);
        expect(await waitReceived('100.64.2.10', rx, 100)).toBe(100);
      });
      expect(await counter('egress', 'redirected')).toBe(before + 100);
      expect((await linkStats(nsA, wgA)).tx - tun.tx).toBeGreaterThanOrEqual(100);
      expect(await count('dst net 100.64.0.0/10')).toBe(0);
      expect(await count(`udp and dst host 198.18.0.2 and dst port ${WG_PORT}`)).toBeGreaterThanOrEqual(100);
    },
    TIMEOUT_MS,
  );

  it(
    'drops and counts a not-ready prefix, the WireGuard port to a pod address included',
    async () => {
      const before = await counter('egress', 'not_ready');
      const rx = (await received())['100.64.3.10'] ?? 0;
      const count = await captured(async () => {
        await send('100.64.3.10', 100);
        await send('100.64.3.10', 20, WG_PORT);
      });
      expect(await counter('egress', 'not_ready')).toBe(before + 120);
      expect(await waitReceived('100.64.3.10', rx, 1, 500)).toBe(0);
      expect(await count('dst net 100.64.0.0/10')).toBe(0);
    },
    TIMEOUT_MS,
  );

  it(
    'passes exempt prefixes and unrelated traffic (the capture does see plaintext)',
    async () => {
      // 198.18.0.4 is a node entry that is not ready: only its exemption lets plaintext pass.
      const exemptBefore = await counter('egress', 'exempt');
      const otherBefore = await counter('egress', 'other');
      const rx = await received();
      const count = await captured(async () => {
        await send('198.18.0.4', 40);
        await send('198.18.0.2', 40);
        expect(await waitReceived('198.18.0.4', rx['198.18.0.4'] ?? 0, 40)).toBe(40);
        expect(await waitReceived('198.18.0.2', rx['198.18.0.2'] ?? 0, 40)).toBe(40);
      });
      expect(await counter('egress', 'exempt')).toBe(exemptBefore + 40);
      expect(await counter('egress', 'other')).toBeGreaterThanOrEqual(otherBefore + 40);
      expect(await count('udp and dst host 198.18.0.4')).toBe(40);
    },
    TIMEOUT_MS,
  );

  it(
    'an exempt source or destination opens no plaintext path to a remote pod: the pod prefix decides',
    async () => {
      // A's own address exempt (an API server on this node, whose replies must reach every node)
      // and an exempt address inside the cluster pod range: traffic from the first to remote pods,
      // and to the second, is pod traffic and is judged by the remote map, never passed as exempt.
      const attachments = [{ dev: uA, hook: 'egress' }];
      await a().call('ensure', {
        settings,
        exempt: [...exempt, '198.18.0.1/32', '100.64.5.10/32'],
        clusterCidrs,
        attachments,
      });
      try {
        const nr = await counter('egress', 'not_ready');
        const np = await counter('egress', 'no_peer');
        const rd = await counter('egress', 'redirected');
        const rx = await received();
        const count = await captured(async () => {
          expect(await send('100.64.3.10', 30, SINK_PORT, { from: '198.18.0.1' })).toBe(30);
          expect(await send('100.64.5.10', 30, SINK_PORT, { from: '198.18.0.1' })).toBe(30);
          expect(await send('100.64.2.10', 30, SINK_PORT, { from: '198.18.0.1', intervalMs: 1 })).toBe(30);
          expect(await waitReceived('100.64.2.10', rx['100.64.2.10'] ?? 0, 30)).toBe(30);
        });
        expect(await counter('egress', 'not_ready')).toBe(nr + 30);
        expect(await counter('egress', 'no_peer')).toBe(np + 30);
        expect(await counter('egress', 'redirected')).toBe(rd + 30);
        expect(await waitReceived('100.64.3.10', rx['100.64.3.10'] ?? 0, 1, 500)).toBe(0);
        expect(await waitReceived('100.64.5.10', rx['100.64.5.10'] ?? 0, 1, 500)).toBe(0);
        expect(await count('dst net 100.64.0.0/10')).toBe(0);
      } finally {
        await a().call('ensure', { settings, exempt, clusterCidrs, attachments });
      }
    },
    TIMEOUT_MS,
  );

  it(
    "passes the tunnel's own packets to a node address that is not ready, and drops the rest to it",
    async () => {
      // The tunnel's packets are told apart by the fwmark WireGuard puts on them: A's peer now
      // has its endpoint on 198.18.0.3 (a node entry, not ready), and traffic to the ready pod
      // prefix makes WireGuard send there.
      await sh(nsA, 'wg', 'set', wgA, 'peer', pubB, 'endpoint', `198.18.0.3:${WG_PORT}`);
      try {
        const encBefore = await counter('egress', 'encrypted');
        const nrBefore = await counter('egress', 'not_ready');
        const rx = await received();
        const count = await captured(async () => {
          expect(await send('100.64.2.10', 30, SINK_PORT, { intervalMs: 1 })).toBe(30);
          expect(await waitReceived('100.64.2.10', rx['100.64.2.10'] ?? 0, 30)).toBe(30);
          await send('198.18.0.3', 30, SINK_PORT);
        });
        expect(await counter('egress', 'encrypted')).toBeGreaterThanOrEqual(encBefore + 30);
        expect(await counter('egress', 'not_ready')).toBe(nrBefore + 30);
        expect(await count(`udp and dst host 198.18.0.3 and dst port ${WG_PORT}`)).toBeGreaterThanOrEqual(30);
        expect(await count(`dst host 198.18.0.3 and dst port ${SINK_PORT}`)).toBe(0);
        expect(await waitReceived('198.18.0.3', rx['198.18.0.3'] ?? 0, 1, 500)).toBe(0);
      } finally {
        await sh(nsA, 'wg', 'set', wgA, 'peer', pubB, 'endpoint', `198.18.0.2:${WG_PORT}`);
      }
    },
    TIMEOUT_MS,
  );

  it(
    'plaintext that only looks like tunnel traffic is not: to the WireGuard port, from it, ESP',
    async () => {
      // None of these carries the tunnel's mark: a host socket sending to the WireGuard port of
      // a node, and a pod sending to it, from it, or raw IP protocol 50 (ESP) with a canary.
      const nrBefore = await counter('egress', 'not_ready');
      const encBefore = await counter('egress', 'encrypted');
      const count = await captured(async () => {
        expect(await send('198.18.0.3', 20, WG_PORT)).toBe(20);
        await podSend('udp', '198.18.0.3', { port: WG_PORT, count: 20 });
        await podSend('udp', '198.18.0.3', { port: SINK_PORT, sport: WG_PORT, count: 20 });
        await podSend('esp', '198.18.0.3', { count: 20 });
      });
      expect(await counter('egress', 'not_ready')).toBe(nrBefore + 80);
      expect(await counter('egress', 'encrypted')).toBe(encBefore);
      expect(await count('dst host 198.18.0.3')).toBe(0);
      // The pod path is live: the same pod reaches an address with no entry (passed as other).
      const rx = (await received())['198.18.0.2'] ?? 0;
      await podSend('udp', '198.18.0.2', { port: SINK_PORT, sport: WG_PORT, count: 5 });
      expect(await waitReceived('198.18.0.2', rx, 5)).toBe(5);
    },
    TIMEOUT_MS,
  );

  it(
    'a ready entry whose tunnel link is gone (agent stopped, link deleted) is a counted drop, not a redirect',
    async () => {
      // A veth pair stands in for the tunnel link (this kernel has no dummy driver).
      await ipn(nsA, 'link', 'add', dummyA, 'type', 'veth', 'peer', 'name', `${prefix}e`);
      await ipn(nsA, 'link', 'set', dummyA, 'up');
      const [link] = JSON.parse(await ipn(nsA, '-j', 'link', 'show', 'dev', dummyA)) as { ifindex: number }[];
      const entry: SteeringEntry = {
        cidr: '100.64.4.0/24',
        state: 'ready',
        action: 'redirect',
        kind: 'pod',
        ifindex: link?.ifindex ?? 0,
        mark: 0,
        peerId: 4,
      };
      try {
        await a().call('applyEntries', [entry], { prune: false });
        const rd = await counter('egress', 'redirected');
        expect(await send('100.64.4.10', 10)).toBe(10);
        expect(await counter('egress', 'redirected')).toBe(rd + 10);
        // No agent any more, and the tunnel link is gone: only the pinned program is left.
        await a().stop();
        agent = undefined;
        await ipn(nsA, 'link', 'del', dummyA);
        agent = new Rpc(nsA);
        const rd2 = await counter('egress', 'redirected');
        const nt = await counter('egress', 'no_tunnel');
        const rx = (await received())['100.64.4.10'] ?? 0;
        const count = await captured(async () => {
          expect(await send('100.64.4.10', 20)).toBe(20);
        });
        expect(await counter('egress', 'no_tunnel')).toBe(nt + 20);
        expect(await counter('egress', 'redirected')).toBe(rd2);
        expect(await count('dst net 100.64.0.0/10')).toBe(0);
        expect(await waitReceived('100.64.4.10', rx, 1, 500)).toBe(0);
      } finally {
        await ipn(nsA, 'link', 'del', dummyA).catch(() => undefined);
        await a().call('applyEntries', [{ ...entry, state: 'not-ready', ifindex: 0 }], { prune: false });
      }
    },
    TIMEOUT_MS,
  );

  it(
    'with fail-closed off, passes and counts what it would drop (plaintext reaches the wire)',
    async () => {
      const attachments = [{ dev: uA, hook: 'egress' }];
      await a().call('ensure', { settings: { ...settings, failClosed: false }, exempt, clusterCidrs, attachments });
      try {
        const before = await counter('egress', 'fail_open');
        const rx = (await received())['100.64.3.10'] ?? 0;
        const count = await captured(async () => {
          await send('100.64.3.10', 30);
          expect(await waitReceived('100.64.3.10', rx, 30)).toBe(30);
        });
        expect(await counter('egress', 'fail_open')).toBe(before + 30);
        expect(await count('udp and dst host 100.64.3.10')).toBe(30);
      } finally {
        await a().call('ensure', { settings, exempt, clusterCidrs, attachments });
      }
      const before = await counter('egress', 'not_ready');
      await send('100.64.3.10', 10);
      expect(await counter('egress', 'not_ready')).toBe(before + 10);
    },
    TIMEOUT_MS,
  );

  it(
    'replaces the program atomically: a stream during 20 replaces is classified packet by packet',
    async () => {
      const alt = await a().call<string>('loadAlternate', 1);
      const progDir = path.dirname((await sh(nsA, 'sh', '-c', `ls -d ${pinDir}/prog_*/sealnet_egress`)).trim());
      const nrBefore = await counter('egress', 'not_ready');
      const rdBefore = await counter('egress', 'redirected');
      const rx = (await received())['100.64.3.10'] ?? 0;
      const ids = new Set<number>();
      let sentDrop = 0;
      let sentReady = 0;
      const count = await captured(async () => {
        const stream = Promise.all([send('100.64.3.10', 3000), send('100.64.2.10', 3000)]);
        for (let i = 0; i < 20; i++) {
          await a().call('attachDir', { dev: uA, hook: 'egress' }, i % 2 === 0 ? alt : progDir);
          const [att] = await a().call<{ progId: number }[]>('attachments', uA);
          ids.add(att?.progId ?? 0);
        }
        [sentDrop, sentReady] = await stream;
      });
      expect(ids.size).toBe(2);
      expect(sentDrop).toBe(3000);
      expect(await counter('egress', 'not_ready')).toBe(nrBefore + sentDrop);
      expect(await counter('egress', 'redirected')).toBe(rdBefore + sentReady);
      expect(await waitReceived('100.64.3.10', rx, 1, 500)).toBe(0);
      expect(await count('dst net 100.64.0.0/10')).toBe(0);
      // Back to this build's program, so that the later tests see the normal state.
      await a().call('attachDir', { dev: uA, hook: 'egress' }, progDir);
    },
    TIMEOUT_MS,
  );

  it(
    'keeps maps, counters and the attachment when the agent process exits, and adopts them on restart',
    async () => {
      const entries = await a().call<SteeringEntry[]>('listEntries');
      const dropped = await counter('egress', 'not_ready');
      await a().stop();
      agent = undefined;
      // No agent process: the kernel alone holds the filter and the maps.
      const filters = JSON.parse(await sh(nsA, 'tc', '-j', 'filter', 'show', 'dev', uA, 'egress')) as {
        pref?: number;
        options?: { handle?: string };
      }[];
      expect(filters.some((f) => f.pref === TC_PRIORITY && parseInt(f.options?.handle ?? '0', 16) === TC_HANDLE)).toBe(
        true,
      );
      agent = new Rpc(nsA);
      await send('100.64.3.10', 25);
      expect(await counter('egress', 'not_ready')).toBe(dropped + 25);
      expect(await a().call('listEntries')).toEqual(entries);
      const r = await a().call('ensure', {
        settings,
        exempt,
        clusterCidrs,
        attachments: [{ dev: uA, hook: 'egress' }],
      });
      expect(r).toEqual({
        mapsCreated: false,
        programsLoaded: false,
        attached: [{ dev: uA, hook: 'egress', change: 'unchanged' }],
      });
      expect(await a().call('listEntries')).toEqual(entries);
    },
    TIMEOUT_MS,
  );

  it(
    'drops plaintext from a remote pod prefix at underlay ingress, passes tunnel and other traffic',
    async () => {
      await a().call('ensure', {
        settings,
        exempt,
        clusterCidrs,
        attachments: [
          { dev: uA, hook: 'egress' },
          { dev: uA, hook: 'ingress' },
        ],
      });
      await a().call('listenUdp', { addr: '198.18.0.1', port: SINK_PORT });
      const inBefore = await counter('ingress', 'plaintext_in');
      await b().call('sendUdp', { to: '198.18.0.1', port: SINK_PORT, count: 30, from: '100.64.2.10' });
      await b().call('sendUdp', { to: '198.18.0.1', port: SINK_PORT, count: 30, from: '198.18.0.2' });
      await new Promise((r) => setTimeout(r, 300));
      expect(await counter('ingress', 'plaintext_in')).toBe(inBefore + 30);
      expect(await a().call('udpReceived')).toEqual({ '198.18.0.1': 30 });
      // The tunnel still works both ways through both hooks (handshake replies come in on ingress).
      const rx = (await received())['100.64.2.10'] ?? 0;
      await send('100.64.2.10', 20, SINK_PORT, { intervalMs: 1 });
      expect(await waitReceived('100.64.2.10', rx, 20)).toBe(20);
    },
    TIMEOUT_MS,
  );

  it(
    'node-to-node: host traffic to a ready node address goes through the tunnel whose own UDP goes to that very address',
    async () => {
      // The loop case: the peer's endpoint is the node address being steered. Only the tunnel's
      // UDP (fwmark, WireGuard port) may pass; everything else is redirected into the tunnel.
      await sh(
        nsA,
        'wg',
        'set',
        wgA,
        'peer',
        pubB,
        'allowed-ips',
        '100.64.2.0/24,198.18.0.3/32',
        'endpoint',
        `198.18.0.3:${WG_PORT}`,
      );
      const node3: SteeringEntry = {
        cidr: '198.18.0.3/32',
        state: 'ready',
        action: 'redirect',
        kind: 'node',
        ifindex: wgAIndex,
        mark: 0,
        peerId: 3,
      };
      try {
        await a().call('applyEntries', [node3], { prune: false });
        const rdBefore = await counter('egress', 'redirected');
        const encBefore = await counter('egress', 'encrypted');
        const rx = (await received())['198.18.0.3'] ?? 0;
        const count = await captured(async () => {
          expect(await send('198.18.0.3', 50, SINK_PORT, { intervalMs: 1 })).toBe(50);
          expect(await waitReceived('198.18.0.3', rx, 50)).toBe(50);
        });
        expect(await counter('egress', 'redirected')).toBe(rdBefore + 50);
        expect(await counter('egress', 'encrypted')).toBeGreaterThanOrEqual(encBefore + 50);
        expect(await count(`dst host 198.18.0.3 and dst port ${SINK_PORT}`)).toBe(0);
        expect(await count(`udp and dst host 198.18.0.3 and dst port ${WG_PORT}`)).toBeGreaterThanOrEqual(50);
      } finally {
        await sh(
          nsA,
          'wg',
          'set',
          wgA,
          'peer',
          pubB,
          'allowed-ips',
          '100.64.2.0/24',
          'endpoint',
          `198.18.0.2:${WG_PORT}`,
        );
        await a().call('applyEntries', readyEntries(), { prune: false });
      }
    },
    TIMEOUT_MS,
  );

  it(
    'node-to-node: plaintext from a node address is dropped at ingress, tunnel packets pass, an exempt end passes',
    async () => {
      // 198.18.0.3 is a (not ready) node entry; A's own address joins the exempt list halfway.
      const inBefore = await counter('ingress', 'plaintext_in');
      const encBefore = await counter('ingress', 'encrypted');
      const before = (await a().call<Record<string, number>>('udpReceived'))['198.18.0.1'] ?? 0;
      await b().call('sendUdp', { to: '198.18.0.1', port: SINK_PORT, count: 20, from: '198.18.0.3' });
      await b().call('sendUdp', { to: '198.18.0.1', port: WG_PORT, count: 10, from: '198.18.0.3' });
      await new Promise((r) => setTimeout(r, 300));
      expect(await counter('ingress', 'plaintext_in')).toBe(inBefore + 20);
      expect(await counter('ingress', 'encrypted')).toBeGreaterThanOrEqual(encBefore + 10);
      expect((await a().call<Record<string, number>>('udpReceived'))['198.18.0.1'] ?? 0).toBe(before);

      const attachments = [
        { dev: uA, hook: 'egress' },
        { dev: uA, hook: 'ingress' },
      ];
      await a().call('ensure', { settings, exempt: [...exempt, '198.18.0.1/32'], clusterCidrs, attachments });
      try {
        const exBefore = await counter('ingress', 'exempt');
        await b().call('sendUdp', { to: '198.18.0.1', port: SINK_PORT, count: 20, from: '198.18.0.3' });
        await new Promise((r) => setTimeout(r, 300));
        // At least our 20: with A's own address exempt, a WireGuard handshake or keepalive of the
        // B side that lands in this window (to 198.18.0.1) is counted as exempt too. The exact
        // count is the sink's: all 20 arrived.
        expect(await counter('ingress', 'exempt')).toBeGreaterThanOrEqual(exBefore + 20);
        expect((await a().call<Record<string, number>>('udpReceived'))['198.18.0.1']).toBe(before + 20);
        // Egress: the exempt source (the API server's replies) passes to a node that is not ready.
        const egBefore = await counter('egress', 'exempt');
        const rx = (await received())['198.18.0.3'] ?? 0;
        await send('198.18.0.3', 15, SINK_PORT, { from: '198.18.0.1' });
        expect(await waitReceived('198.18.0.3', rx, 15)).toBe(15);
        expect(await counter('egress', 'exempt')).toBe(egBefore + 15);
      } finally {
        await a().call('ensure', { settings, exempt, clusterCidrs, attachments });
      }
    },
    TIMEOUT_MS,
  );

  it(
    'overlay (issue 15): a pod packet inside VXLAN is dropped at underlay egress, not-ready and ready prefixes alike; VXLAN with node traffic passes (the capture sees it)',
    async () => {
      // A kernel VXLAN device as flannel's VXLAN backend builds it (flannel.1: VNI 1, UDP 8472,
      // routes via the remote gateway address on-link with a permanent neighbour entry), standing
      // in for a CNI overlay. Deleted with A's namespace.
      const vx = `${prefix}e`;
      await ipn(
        nsA,
        'link',
        'add',
        vx,
        'type',
        'vxlan',
        'id',
        '1',
        'dstport',
        '8472',
        'remote',
        '198.18.0.2',
        'local',
        '198.18.0.1',
        'dev',
        uA,
      );
      await ipn(nsA, 'link', 'set', vx, 'up');
      await ipn(nsA, 'neigh', 'add', '100.64.6.0', 'lladdr', '02:00:00:00:06:00', 'dev', vx, 'nud', 'permanent');
      // A not-ready pod prefix, part of a ready one (its tunnel route gone), and a node range.
      for (const dst of ['100.64.6.0/24', '100.64.2.128/25', '198.18.9.0/24'])
        await ipn(nsA, 'route', 'add', dst, 'via', '100.64.6.0', 'dev', vx, 'onlink');
      await a().call(
        'applyEntries',
        [
          {
            cidr: '100.64.6.0/24',
            state: 'not-ready',
            action: 'redirect',
            kind: 'pod',
            ifindex: 0,
            mark: 0,
            peerId: 6,
          },
        ],
        { prune: false },
      );
      const before = await counter('egress', 'encapsulated');
      const count = await captured(async () => {
        expect(await send('100.64.6.10', 30)).toBe(30);
        expect(await send('100.64.2.200', 30)).toBe(30);
        await podSend('udp', '100.64.6.10', { port: SINK_PORT, sport: 40000, count: 20 });
        expect(await send('198.18.9.9', 10)).toBe(10);
      });
      expect(await counter('egress', 'encapsulated')).toBe(before + 80);
      // Only the node-range packets left A inside VXLAN: the capture does see VXLAN. (tcpdump
      // prints a VXLAN packet on two lines, outer and inner header: 10 packets, 20 lines.)
      expect(await count(`udp and dst port 8472`)).toBe(2 * 10);
    },
    TIMEOUT_MS,
  );

  it(
    'detaches only its own classifiers, and will not overwrite a foreign one in its slot',
    async () => {
      await sh(
        nsA,
        'tc',
        'filter',
        'add',
        'dev',
        uA,
        'egress',
        'protocol',
        'ip',
        'pref',
        '9',
        'u32',
        'match',
        'ip',
        'dst',
        '198.18.9.9/32',
        'classid',
        '1:1',
      );
      await sh(
        nsA,
        'tc',
        'filter',
        'add',
        'dev',
        uA,
        'egress',
        'protocol',
        'all',
        'pref',
        String(TC_PRIORITY),
        'handle',
        '7',
        'bpf',
        'bytecode',
        '1,6 0 0 0',
      );
      await a().call('detach', [
        { dev: uA, hook: 'egress' },
        { dev: uA, hook: 'ingress' },
      ]);
      expect(await a().call('attachments', uA)).toEqual([]);
      const left = (
        JSON.parse(await sh(nsA, 'tc', '-j', 'filter', 'show', 'dev', uA, 'egress')) as {
          kind: string;
          pref: number;
          options?: { handle?: string; fh?: string };
        }[]
      ).filter((f) => f.options !== undefined);
      expect(left.map((f) => [f.kind, f.pref])).toEqual(
        expect.arrayContaining([
          ['bpf', TC_PRIORITY],
          ['u32', 9],
        ]),
      );
      expect(left.find((f) => f.kind === 'bpf')?.options?.handle).toBe('0x7');
      expect(await sh(nsA, 'tc', 'qdisc', 'show', 'dev', uA)).toContain('clsact');

      await sh(
        nsA,
        'tc',
        'filter',
        'add',
        'dev',
        uA,
        'egress',
        'protocol',
        'all',
        'pref',
        String(TC_PRIORITY),
        'handle',
        `0x${TC_HANDLE.toString(16)}`,
        'bpf',
        'bytecode',
        '1,6 0 0 0',
      );
      await expect(
        a().call('ensure', { settings, exempt, clusterCidrs, attachments: [{ dev: uA, hook: 'egress' }] }),
      ).rejects.toMatchObject({ message: expect.stringContaining('did not load') });
      // detach leaves the foreign classifier in the slot alone too.
      await a().call('detach', [{ dev: uA, hook: 'egress' }]);
      expect(await sh(nsA, 'tc', 'filter', 'show', 'dev', uA, 'egress')).toContain('handle 0x5188');
    },
    TIMEOUT_MS,
  );

  it(
    'an event pass diffs against its last write (no map read); a full sync repairs what others changed',
    async () => {
      const entries = readyEntries();
      await a().call('applyEntries', entries, { prune: true });
      expect(await a().call<number>('externalDeleteRemote', '100.64.3.0/24')).toBe(1);
      // Trusting its record, the sync writes nothing: it does not see the foreign delete (by design,
      // the agent's periodic full pass is what repairs drift)...
      expect(await a().call('applyEntries', entries, { prune: true, fromLastWrite: true })).toEqual({
        written: 0,
        deleted: 0,
      });
      expect((await a().call<SteeringEntry[]>('listEntries')).map((e) => e.cidr)).not.toContain('100.64.3.0/24');
      // ...and the full sync reads the map and puts it back.
      expect(await a().call('applyEntries', entries, { prune: true })).toEqual({ written: 1, deleted: 0 });
      // A change on the record: exactly one write and one delete, and the map holds exactly the new set.
      const next = entries
        .filter((e) => e.cidr !== '198.18.0.3/32')
        .map((e) => (e.cidr === '100.64.3.0/24' ? { ...e, state: 'no-peer' as const } : e));
      const cluster = (await a().call<SteeringEntry[]>('listEntries')).filter(
        (e) => !entries.some((x) => x.cidr === e.cidr),
      );
      const r = await a().call('applyEntries', [...next, ...cluster], { prune: true, fromLastWrite: true });
      expect(r).toEqual({ written: 1, deleted: 1 });
      const held = await a().call<SteeringEntry[]>('listEntries');
      expect(held.map((e) => `${e.cidr} ${e.state}`).sort()).toEqual(
        [...next, ...cluster].map((e) => `${e.cidr} ${e.state}`).sort(),
      );
      await a().call('applyEntries', entries, { prune: false });
    },
    TIMEOUT_MS,
  );

  it(
    'loads 5,000 prefixes and changes one faster through the addon than through bpftool',
    async () => {
      const r = await a().call<{
        n: number;
        addon: Record<string, number>;
        bpftool: Record<string, number>;
        sameContent: boolean;
      }>('benchMaps', 5000, 3);
      // Numbers for routing/bpf/README.md; the assertions only keep the choice honest.
      console.log(`BPF map update benchmark (ms, median of 3): ${JSON.stringify(r)}`);
      expect(r.sameContent).toBe(true);
      // One change is where the two differ by an order of magnitude (a process start per spawn);
      // a bulk load is one `bpftool batch` process, only about twice the addon's time, so it is
      // logged, not asserted (a busy CI machine must not fail the suite on a timing).
      expect(r.addon['change']).toBeLessThan(r.bpftool['change']!);
    },
    TIMEOUT_MS,
  );
});
