/**
 * The encryption proof shared by the demo and the end-to-end tests: TCP, UDP and ICMP with a
 * canary between a pod on every node and a pod on every other node (both directions), plus
 * host-to-remote-pod traffic, while tcpdump captures on the underlay bridge. A pair counts as
 * encrypted only if its tunnels are up, all its traffic got through, the capture is complete
 * and saw the tunnel packets that carried it, and holds no plaintext pod packet and no canary.
 */
import type { Mode } from '../../tunnels/ports/model.js';
import type { CaptureResult } from './capture.js';
import type { NsCluster } from './cluster.js';
import { mapLimit } from './exec.js';
import { addressIn } from './leaks.js';
import { canaryPingPattern, newCanary, runCanary, startCanaryServer } from './traffic.js';
import type { EncryptionStatus, NodeInfo } from './types.js';

/** Result of one ordered pair: first pod of node A (or node A's host) to the first pod of node B. */
export interface DirectionResult {
  readonly from: string;
  readonly to: string;
  readonly tcp: boolean;
  readonly udp: boolean;
  readonly icmp: boolean;
  readonly errors: readonly string[];
}

/** Verdict of one unordered node pair. */
export interface PairResult {
  readonly a: string;
  readonly b: string;
  readonly tunnel: boolean;
  readonly trafficOk: boolean;
  readonly plaintextPackets: number;
  readonly canaryLeaks: number;
  readonly wireguardPackets: number;
  readonly encrypted: boolean;
  readonly directions: readonly DirectionResult[];
}

/** What {@link proveAllPairs} found. */
export interface PairsProof {
  readonly directions: readonly DirectionResult[];
  /** Host of node A to the first pod of node B, every ordered pair. */
  readonly hostDirections: readonly DirectionResult[];
  readonly capture: CaptureResult;
  readonly status: EncryptionStatus;
  readonly pairs: readonly PairResult[];
  readonly canary: string;
}

/** Runs the traffic on every ordered pair under a capture and judges every pair. */
export async function proveAllPairs(
  cluster: NsCluster,
  opts: {
    mode: Mode;
    hostToPod?: boolean;
    captureName?: string;
    /** Directions exercised at once (default 4; the qemu guest uses fewer). */
    concurrency?: number;
    /** Address families to send over, each direction once per family (default: the pods' first address only). */
    families?: readonly (4 | 6)[];
    /** Only these nodes and the pairs between them (default: every node), e.g. the honest ones. */
    nodes?: readonly string[];
  },
): Promise<PairsProof> {
  const canary = newCanary();
  const only = opts.nodes;
  const nodes = only === undefined ? cluster.nodes : cluster.nodes.filter((n) => only.includes(n.name));
  const firstPod = (n: NodeInfo): string => (n.pods[0] as { name: string }).name;
  const servers = await Promise.all(nodes.map((n) => startCanaryServer(cluster, { pod: firstPod(n) })));
  // A 32 MiB ring, as the other proofs use: with libpcap's default 2 MiB a demo on a loaded host
  // (load ~10) reported 2 kernel drops among 193 packets, and a capture with drops proves nothing.
  const capture = await cluster.startCapture({
    name: opts.captureName ?? 'proof',
    canaries: [canary],
    bufferKiB: 32_768,
  });
  const fams: readonly (4 | 6 | undefined)[] = opts.families ?? [undefined];
  const tag = (f: 4 | 6 | undefined): string => (f === undefined ? '' : `/v${f}`);
  const ordered = nodes.flatMap((a) =>
    nodes.filter((b) => b !== a).flatMap((b) => fams.map((f) => [a, b, f] as const)),
  );
  let cap: CaptureResult;
  let directions: DirectionResult[];
  let hostDirections: DirectionResult[] = [];
  try {
    directions = await mapLimit(
      ordered,
      async ([a, b, f]) =>
        exerciseDirection(cluster, {
          from: firstPod(a),
          fromLabel: `${a.name}/${firstPod(a)}${tag(f)}`,
          to: cluster.resolve(firstPod(b), f),
          toLabel: `${b.name}/${firstPod(b)}${tag(f)}`,
          canary,
          host: false,
        }),
      { limit: opts.concurrency ?? 4 },
    );
    if (opts.hostToPod === true) {
      hostDirections = await mapLimit(
        ordered,
        async ([a, b, f]) =>
          exerciseDirection(cluster, {
            from: a.name,
            fromLabel: `${a.name}/host${tag(f)}`,
            to: cluster.resolve(firstPod(b), f),
            toLabel: `${b.name}/${firstPod(b)}${tag(f)}`,
            canary,
            host: true,
          }),
        { limit: opts.concurrency ?? 4 },
      );
    }
  } finally {
    cap = await capture.stop();
    await Promise.all(servers.map((s) => s.stop({ timeoutMs: 2000 })));
  }
  const all = await cluster.encryptionStatus();
  const status =
    only === undefined ? all : { ...all, pairs: all.pairs.filter((p) => only.includes(p.a) && only.includes(p.b)) };
  return {
    directions,
    hostDirections,
    capture: cap,
    status,
    pairs: judgePairs(opts.mode, nodes, status, [...directions, ...hostDirections], cap),
    canary,
  };
}

/** argv of the host-to-host probe: 3 pings of 120 bytes whose payload carries `canary`. */
export function hostCanaryPing(canary: string, to: string): string[] {
  return ['ping', '-c', '3', '-i', '0.2', '-W', '2', '-s', '120', '-p', canaryPingPattern(canary), to];
}

async function exerciseDirection(
  cluster: NsCluster,
  o: { from: string; fromLabel: string; to: string; toLabel: string; canary: string; host: boolean },
): Promise<DirectionResult> {
  if (o.host) {
    // From the node's own network stack: ICMP with the canary pattern (the host has no tools dir
    // of its own; ping is enough to prove the route, the source address and the tunnel).
    const icmp = await cluster.execNode(o.from, hostCanaryPing(o.canary, cluster.resolve(o.to)), { check: false });
    const ok = /3 packets transmitted, 3 received/.test(icmp.stdout);
    return {
      from: o.fromLabel,
      to: o.toLabel,
      tcp: true,
      udp: true,
      icmp: ok,
      errors: ok ? [] : [`host icmp: ${icmp.stdout.trim().split('\n').pop() ?? ''}`],
    };
  }
  const [tcp, udp, icmp] = await Promise.all([
    runCanary(cluster, { from: o.from, to: o.to, proto: 'tcp', canary: o.canary, size: 1000 }),
    runCanary(cluster, { from: o.from, to: o.to, proto: 'udp', canary: o.canary, size: 500 }),
    cluster.ping(o.from, o.to, { count: 3, size: 120, patternHex: canaryPingPattern(o.canary), df: false }),
  ]);
  const errors = [
    ...(tcp.ok ? [] : [`tcp: ${tcp.error ?? 'failed'}`]),
    ...(udp.ok ? [] : [`udp: ${udp.error ?? 'failed'}`]),
    ...(icmp.received === icmp.transmitted && icmp.transmitted > 0
      ? []
      : [`icmp: ${icmp.received}/${icmp.transmitted} replies`]),
  ];
  return {
    from: o.fromLabel,
    to: o.toLabel,
    tcp: tcp.ok,
    udp: udp.ok,
    icmp: icmp.transmitted > 0 && icmp.received === icmp.transmitted,
    errors,
  };
}

/**
 * `true` for an encrypted pair, otherwise the reasons it is not: assert on
 * `proof.pairs.map(pairVerdict)` so a failure prints why (tunnel down, which direction
 * failed and how, plaintext, canary leaks, no tunnel packets seen).
 */
export function pairVerdict(p: PairResult): [string, string, true | string] {
  if (p.encrypted) return [p.a, p.b, true];
  const why: string[] = [];
  if (!p.tunnel) why.push('tunnel not up both ways');
  if (!p.trafficOk) {
    const errs = p.directions.flatMap((d) => d.errors.map((e) => `${d.from}->${d.to} ${e}`));
    why.push(errs.length > 0 ? `traffic: ${errs.join('; ')}` : 'traffic: a direction was not exercised');
  }
  if (p.plaintextPackets > 0) why.push(`${p.plaintextPackets} plaintext pod packets`);
  if (p.canaryLeaks > 0) why.push(`${p.canaryLeaks} canary hits`);
  if (p.tunnel && p.trafficOk && p.plaintextPackets === 0 && p.canaryLeaks === 0) {
    why.push(`capture incomplete or no tunnel packets seen (wireguard packets ${p.wireguardPackets})`);
  }
  return [p.a, p.b, why.join(', ')];
}

/** A pair is encrypted when both tunnels are up, all traffic passed, and nothing of it leaked. */
export function judgePairs(
  mode: Mode,
  nodes: readonly NodeInfo[],
  status: EncryptionStatus,
  directions: readonly DirectionResult[],
  cap: CaptureResult,
): PairResult[] {
  const nodeOf = (addr: string): string | undefined =>
    nodes.find((n) => n.addresses.includes(addr) || addressIn(addr, n.podCIDRs))?.name;
  const between = (key: string, a: string, b: string): boolean => {
    const [src = '', rest = ''] = key.split('>');
    const dst = rest.split('/')[0] ?? '';
    const s = nodeOf(src);
    const d = nodeOf(dst);
    return (s === a && d === b) || (s === b && d === a);
  };
  const sumWhere = (rec: Readonly<Record<string, number>>, a: string, b: string): number =>
    Object.entries(rec)
      .filter(([k]) => between(k, a, b))
      .reduce((n, [, v]) => n + v, 0);
  return status.pairs.map((p) => {
    const dirs = directions.filter((d) =>
      [`${p.a}>${p.b}`, `${p.b}>${p.a}`].includes(`${d.from.split('/')[0]}>${d.to.split('/')[0]}`),
    );
    const plaintext = sumWhere(cap.podPlaintextFlows, p.a, p.b);
    const canary = cap.canaries.reduce((n, c) => n + sumWhere(c.byEndpoints, p.a, p.b), 0);
    const wg = sumWhere(cap.wireguardByEndpoints, p.a, p.b);
    const tunnel = p.tunnelAB && p.tunnelBA;
    const key = (d: DirectionResult): string => `${d.from.split('/')[0]}>${d.to.split('/')[0]}`;
    const bothWays = dirs.some((d) => key(d) === `${p.a}>${p.b}`) && dirs.some((d) => key(d) === `${p.b}>${p.a}`);
    const trafficOk = bothWays && dirs.every((d) => d.errors.length === 0);
    // The traffic got through and the capture saw no plaintext: it must then have seen the
    // tunnel packets that carried it, or the capture missed the traffic and proves nothing.
    const tunnelSeen = mode === 'wireguard' ? wg > 0 : sumWhere(cap.espByEndpoints, p.a, p.b) > 0;
    return {
      a: p.a,
      b: p.b,
      tunnel,
      trafficOk,
      plaintextPackets: plaintext,
      canaryLeaks: canary,
      wireguardPackets: wg,
      encrypted: tunnel && trafficOk && tunnelSeen && cap.complete && plaintext === 0 && canary === 0,
      directions: dirs,
    };
  });
}
