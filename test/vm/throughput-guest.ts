/**
 * Guest side of `npm run bench -- kernel-throughput` (test/bench/kernel-throughput.ts boots the
 * kernel tier's qemu guest with `node dist/test/vm/throughput-guest.js …`): four 2-node
 * namespace clusters side by side — plaintext, sealnet agents in mode ipsec (ESP AES-GCM),
 * sealnet agents in mode wireguard with `implementation: kernel`, and a kernel WireGuard mesh
 * configured by hand — then iperf3 pod to pod, 1 stream, both directions, round-robin with the
 * variant order rotating per round. Writes `$SEALNET_VM_OUT/kernel-throughput.json`
 * ({@link GuestThroughputOutput}). No jest: a node process costs seconds under TCG.
 *
 * Usage: node dist/test/vm/throughput-guest.js [--rounds N] [--duration S] [--run-id HEX] [--out FILE]
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NsCluster } from '../harness/cluster.js';
import { run, sleep } from '../harness/exec.js';
import { WG_DEFAULT_KEEPALIVE, WG_DEFAULT_PORT, WG_INTERFACE } from '../../common/constants.js';
import { HAND_INTERFACE, handConfigureMesh, KERNEL_WIREGUARD, wireguardGoExes } from '../bench/handtunnel.js';
import {
  KERNEL_DIRECTIONS,
  KERNEL_VARIANTS,
  type GuestInfo,
  type GuestThroughputOutput,
  type KernelIperfSample,
  type KernelVariant,
  type KernelVariantSetup,
} from '../bench/kernel-report.js';
import { IperfServer, runIperf } from '../bench/load.js';

const IPERF_PORT = 5201;
const FROM = 'n1p1';
const TO = 'n2p1';
/** WireGuard tunnel MTU on a 1500-byte IPv4 underlay (1500 − 60), as the agent sets it. */
const WG_MTU = 1440;
const TAGS: Readonly<Record<KernelVariant, string>> = {
  plaintext: 'pt',
  'sealnet-ipsec': 'si',
  'sealnet-wg-kernel': 'sw',
  'hand-wg-kernel': 'hw',
};

/** Parsed command line. */
interface GuestArgs {
  readonly rounds: number;
  readonly durationS: number;
  readonly runId: string;
  readonly out: string;
}

function parseArgs(argv: readonly string[]): GuestArgs {
  const o = {
    rounds: 3,
    durationS: 3,
    runId: randomBytes(2).toString('hex'),
    out: join(process.env['SEALNET_VM_OUT'] ?? '/tmp', 'kernel-throughput.json'),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a ?? ''} needs a value`);
    if (a === '--rounds' || a === '--duration') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 100) throw new Error(`${a} needs an integer from 1 to 100, got ${v}`);
      if (a === '--rounds') o.rounds = n;
      else o.durationS = n;
    } else if (a === '--run-id' && /^[0-9a-f]{4}$/.test(v)) o.runId = v;
    else if (a === '--out') o.out = v;
    else throw new Error(`bad argument ${a ?? ''} ${v}`);
  }
  return o;
}

function log(line: string): void {
  process.stderr.write(`kernel-throughput: ${line}\n`);
}

/** Variant order of round `r` (0-based), rotated so no variant always runs first. */
function roundOrder<T>(variants: readonly T[], r: number): T[] {
  const k = variants.length === 0 ? 0 : r % variants.length;
  return [...variants.slice(k), ...variants.slice(0, k)];
}

async function buildVariant(v: KernelVariant, prefix: string): Promise<NsCluster> {
  const clog = (l: string): void => log(`[${v}] ${l}`);
  if (v === 'sealnet-ipsec' || v === 'sealnet-wg-kernel') {
    const agentConfig = v === 'sealnet-ipsec' ? {} : { wireguard: { implementation: 'kernel' } };
    const c = await NsCluster.create({
      nodes: 2,
      podsPerNode: 1,
      prefix,
      log: clog,
      mode: v === 'sealnet-ipsec' ? 'ipsec' : 'wireguard',
      agentConfig,
    });
    try {
      await c.waitEncrypted({ timeoutMs: 120_000, pollMs: 1000 });
    } catch (err) {
      for (const n of c.nodeNames())
        clog(
          `${n} agent log tail:\n${(await readFile(c.agentLogPath(n), 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')}`,
        );
      await c.destroy();
      throw err;
    }
    return c;
  }
  const c = await NsCluster.create({ nodes: 2, podsPerNode: 1, encryption: false, prefix, log: clog });
  if (v === 'plaintext') return c;
  try {
    await handConfigureMesh(c, {
      binary: KERNEL_WIREGUARD,
      listenPort: WG_DEFAULT_PORT,
      mtu: WG_MTU,
      persistentKeepalive: WG_DEFAULT_KEEPALIVE,
    });
    const ping = await c.ping(FROM, TO, { count: 3, df: false });
    if (ping.received === 0)
      throw new Error(
        `hand-configured kernel WireGuard ${prefix} does not carry traffic (ping ${ping.received}/${ping.transmitted})`,
      );
    return c;
  } catch (err) {
    await c.destroy();
    throw err;
  }
}

/** `kind` and MTU of a link as `ip -d -j link show` reports them (kind undefined: no such link). */
async function linkInfo(
  c: NsCluster,
  node: string,
  dev: string | undefined,
): Promise<{ kind: string | undefined; mtu: number | undefined }> {
  const r =
    dev === undefined
      ? undefined
      : await c.execNode(node, ['ip', '-d', '-j', 'link', 'show', 'dev', dev], { check: false });
  if (r === undefined || r.code !== 0) return { kind: undefined, mtu: undefined };
  const j = JSON.parse(r.stdout) as { mtu?: number; linkinfo?: { info_kind?: string } }[];
  return { kind: j[0]?.linkinfo?.info_kind ?? 'none', mtu: j[0]?.mtu };
}

/**
 * ESP SAs as `src>dst spi aead key-bits`, from `ip xfrm state list`. The key itself is only used
 * for its length and never leaves this function (rfc4106 keys carry a 4-byte salt).
 */
export function describeSas(text: string): string[] {
  const out: string[] = [];
  for (const block of text.split(/^(?=src )/m)) {
    const head = /^src (\S+) dst (\S+)\s*\n\s*proto esp spi (0x[0-9a-f]+)/.exec(block);
    if (head === null) continue;
    const aead = /^\s*aead (\S+) 0x([0-9a-f]+) (\d+)/m.exec(block);
    const alg =
      aead === null ? 'no-aead' : `${aead[1] ?? '?'} ${((aead[2] ?? '').length / 2 - 4) * 8}-bit icv ${aead[3] ?? '?'}`;
    out.push(`${head[1] ?? '?'}>${head[2] ?? '?'} ${head[3] ?? '?'} ${alg}`);
  }
  return out.sort();
}

async function describeSetup(v: KernelVariant, c: NsCluster, setupMs: number): Promise<KernelVariantSetup> {
  const dev = v === 'sealnet-wg-kernel' ? WG_INTERFACE : v === 'hand-wg-kernel' ? HAND_INTERFACE : undefined;
  const route = (
    await c.execNode('n1', ['ip', 'route', 'get', c.resolve(TO), 'from', c.resolve(FROM), 'iif', 'cni0'])
  ).stdout.trim();
  const xfrm =
    v === 'sealnet-ipsec' ? describeSas((await c.execNode('n1', ['ip', 'xfrm', 'state', 'list'])).stdout) : [];
  const wgGo = c.nodeNames().reduce((n, node) => n + wireguardGoExes(c, node).length, 0);
  const link = await linkInfo(c, 'n1', dev);
  return {
    variant: v,
    prefix: c.prefix,
    routeToPeerPods: route,
    linkKind: link.kind,
    linkMtu: link.mtu,
    wireguardGoProcesses: wgGo,
    xfrmStates: xfrm,
    setupMs,
  };
}

/** Throws when a variant is not carried by what its name claims. */
export function checkSetup(s: KernelVariantSetup): void {
  const fail = (why: string): never => {
    throw new Error(`${s.variant}: ${why}`);
  };
  if (s.wireguardGoProcesses !== 0) fail(`${s.wireguardGoProcesses} wireguard-go processes run in its namespaces`);
  if (s.variant === 'sealnet-wg-kernel' || s.variant === 'hand-wg-kernel') {
    if (s.linkKind !== 'wireguard') fail(`tunnel link kind is ${s.linkKind ?? 'missing'}, not wireguard`);
    const dev = s.variant === 'sealnet-wg-kernel' ? WG_INTERFACE : HAND_INTERFACE;
    if (!s.routeToPeerPods.includes(`dev ${dev}`)) fail(`pod traffic is not routed into ${dev}: ${s.routeToPeerPods}`);
  }
  if (s.variant === 'sealnet-ipsec') {
    if (s.xfrmStates.length < 2) fail(`expected an inbound and an outbound SA on n1, found ${s.xfrmStates.length}`);
    const bad = s.xfrmStates.filter((x) => !x.includes('rfc4106(gcm(aes))'));
    if (bad.length > 0) fail(`SAs not on AES-GCM: ${bad.join('; ')}`);
  }
}

/** Name → highest-priority driver in /proc/crypto (the one the kernel picks), for `names`. */
export function cryptoDrivers(procCrypto: string, names: readonly string[]): Record<string, string> {
  const best = new Map<string, { driver: string; priority: number }>();
  for (const block of procCrypto.split(/\n\s*\n/)) {
    const field = (k: string): string | undefined => new RegExp(`^${k}\\s*:\\s*(.+)$`, 'm').exec(block)?.[1]?.trim();
    const name = field('name');
    const driver = field('driver');
    const priority = Number(field('priority') ?? 0);
    if (name === undefined || driver === undefined || !names.includes(name)) continue;
    const cur = best.get(name);
    if (cur === undefined || priority > cur.priority) best.set(name, { driver, priority });
  }
  return Object.fromEntries(names.filter((n) => best.has(n)).map((n) => [n, best.get(n)?.driver ?? '']));
}

async function guestInfo(): Promise<GuestInfo> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? '').split(/\s+/));
  const mem = Number(/^MemTotal:\s*(\d+)/m.exec(await readFile('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  const drivers = cryptoDrivers(await readFile('/proc/crypto', 'utf8'), [
    'rfc4106(gcm(aes))',
    'gcm(aes)',
    'aes',
    'ghash',
    'chacha20',
    'poly1305',
  ]);
  // WireGuard calls the kernel's crypto library directly: arch-specific code comes as modules.
  const mods = (await readFile('/proc/modules', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((m) => /chacha|poly1305|curve25519|aesni|ghash|blake2s/.test(m));
  drivers['loaded crypto modules'] = mods.length === 0 ? 'none' : mods.sort().join(' ');
  const iperf = await run(['iperf3', '--version'], { check: false });
  return {
    kernel: (await run(['uname', '-r'])).stdout.trim(),
    cpus: (cpuinfo.match(/^processor\s*:/gm) ?? []).length,
    memMiB: Math.round(mem / 1024),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    cryptoFlags: ['aes', 'ssse3', 'avx', 'avx2', 'pclmulqdq'].filter((f) => flags.has(f)),
    cryptoDrivers: drivers,
    accel: 'qemu TCG (-accel tcg,thread=multi -cpu qemu64)',
    iperf3: iperf.stdout.split('\n')[0]?.trim() || undefined,
  };
}

async function measure(args: GuestArgs): Promise<GuestThroughputOutput> {
  const clusters = new Map<KernelVariant, NsCluster>();
  const setups: KernelVariantSetup[] = [];
  const variantErrors: { variant: KernelVariant; message: string }[] = [];
  const iperf: KernelIperfSample[] = [];
  try {
    for (const v of KERNEL_VARIANTS) {
      const t0 = Date.now();
      try {
        const c = await buildVariant(v, `k${args.runId}${TAGS[v]}`);
        clusters.set(v, c);
        const s = await describeSetup(v, c, Date.now() - t0);
        setups.push(s);
        checkSetup(s);
        log(
          `${v} ready in ${Date.now() - t0} ms (${c.prefix}): ${s.routeToPeerPods.split('\n')[0] ?? ''}; link ${s.linkKind ?? '-'} mtu ${s.linkMtu ?? '-'}; ${s.xfrmStates.join(', ')}`,
        );
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        variantErrors.push({ variant: v, message });
        log(`${v}: FAILED: ${message}`);
        await clusters.get(v)?.destroy();
        clusters.delete(v);
      }
    }
    // Crypto drivers appear in /proc/crypto once instantiated: read after the SAs exist.
    const guest = await guestInfo();
    log(`guest: ${JSON.stringify(guest)}`);
    const servers = new Map<KernelVariant, IperfServer>();
    for (const [v, c] of clusters) {
      const s = new IperfServer(c, { pod: TO, port: IPERF_PORT });
      await s.restart();
      servers.set(v, s);
      // Warm-up (not recorded): handshakes, ARP and route caches, iperf3 paged in.
      await runIperf(c, { from: FROM, to: TO, port: IPERF_PORT, seconds: 1, streams: 1, reverse: false });
    }
    const variants = KERNEL_VARIANTS.filter((v) => clusters.has(v));
    for (let r = 0; r < args.rounds; r++) {
      const order = roundOrder(variants, r);
      log(`round ${r + 1}/${args.rounds} (order: ${order.join(', ')})`);
      for (const direction of KERNEL_DIRECTIONS) {
        for (const v of order) {
          const c = clusters.get(v) as NsCluster;
          const at = Date.now();
          const o = {
            from: FROM,
            to: TO,
            port: IPERF_PORT,
            seconds: args.durationS,
            streams: 1,
            reverse: direction === 'rev',
          };
          let out = await runIperf(c, o);
          if (out.error !== undefined) {
            log(`  ${v} ${direction}: ${out.error}; restarting the server and retrying once`);
            await servers.get(v)?.restart();
            out = await runIperf(c, o);
          }
          iperf.push({ round: r, variant: v, direction, at, ...out });
          log(
            `  ${direction} ${v}: ${out.bitsPerSecond === undefined ? `FAILED ${out.error ?? ''}` : `${(out.bitsPerSecond / 1e6).toFixed(1)} Mbit/s`}`,
          );
          await sleep(200);
        }
      }
    }
    return { rounds: args.rounds, durationS: args.durationS, guest, setups, iperf, variantErrors };
  } finally {
    await Promise.all([...clusters.values()].map((c) => c.destroy()));
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.env['SEALNET_VM_GUEST'] !== '1') log('warning: not in the kernel-tier guest (SEALNET_VM_GUEST is not 1)');
  const result = await measure(args);
  await writeFile(args.out, `${JSON.stringify(result, null, 2)}\n`);
  log(`wrote ${args.out}: ${result.iperf.length} runs, ${result.variantErrors.length} variant errors`);
  return result.iperf.some((s) => s.bitsPerSecond !== undefined) ? 0 : 1;
}

// Only as a script: the unit tests import the pure parsers above.
if (process.argv[1]?.endsWith('throughput-guest.js') === true) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(
        `kernel-throughput: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(2);
    },
  );
}
