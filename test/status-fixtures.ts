/**
 * Status-report fixtures for unit tests of `sealctl status` / `sealctl audit`: nodes n1..nN with
 * deterministic keys, each carrying a `sealnet.io/status` report that says every peer is
 * encrypted, unless a test overrides parts of it. Call `await sodiumReady()` first.
 */
import { fingerprint } from '../keymgr/keys.js';
import { ANNOTATIONS } from '../common/constants.js';
import type { RawNode } from '../tunnels/ports/model.js';
import type { NodeStatusReport, PeerPq, PeerStatus } from '../tunnels/status/report.js';
import { pqInitiator } from '../keymgr/pq/kdf.js';
import { joinStatus, type FetchedReport } from '../tunnels/status/join.js';
import { profile, type AuditPolicy } from '../tunnels/audit/policy.js';
import type { ProbeOutcome } from '../tunnels/audit/probe.js';
import { evaluate, type AuditReportBody } from '../tunnels/audit/report.js';
import { fixtureKey, sealnetAnnotations } from './fixtures.js';

/** The clock of every fixture. */
export const STATUS_NOW = new Date('2025-06-01T12:00:00.000Z');
const NOW_S = STATUS_NOW.getTime() / 1000;

/** Public key of fixture node `nI`. */
export function statusKey(name: string): ReturnType<typeof fixtureKey> {
  return fixtureKey(Number(name.slice(1)) + 10);
}

/** Fingerprint of fixture node `nI`'s key. */
export function statusFp(name: string): string {
  return fingerprint(statusKey(name));
}

/** A healthy report of `self` about `names` (all encrypted, 20 s old, key one day old). */
export function statusReport(
  self: string,
  names: readonly string[],
  over: Partial<NodeStatusReport> = {},
  peerOver: Record<string, Partial<PeerStatus>> = {},
): NodeStatusReport {
  return {
    v: 1,
    node: self,
    at: new Date(STATUS_NOW.getTime() - 20_000).toISOString(),
    agent: 'running',
    heartbeatSeconds: 60,
    mode: 'wireguard',
    algorithm: 'wireguard-chacha20poly1305',
    key: { fingerprint: statusFp(self), epoch: 1, createdAt: '2025-05-31T12:00:00.000Z' },
    steering: { enabled: true, failClosed: true, nodeToNode: false },
    ready: true,
    errors: [],
    drops: {},
    failOpenPackets: 0,
    detail: 'full',
    peers: names
      .filter((n) => n !== self)
      .map((n) => ({
        node: n,
        state: 'encrypted' as const,
        key: statusFp(n),
        handshake: NOW_S - 30,
        rx: 100,
        tx: 200,
        ...peerOver[n],
      })),
    omitted: 0,
    ...over,
  };
}

/** Node `name` as the store lists it, carrying `status` (a report, raw text, or none). */
export function statusNode(
  name: string,
  status: NodeStatusReport | string | undefined,
  ann: Record<string, string> = {},
): RawNode {
  const i = Number(name.slice(1));
  const base = sealnetAnnotations(statusKey(name), `198.18.0.${i}:51880`, {
    [ANNOTATIONS.keyCreated]: '2025-05-31T12:00:00.000Z',
  });
  return {
    name,
    annotations: {
      ...base,
      ...(status === undefined
        ? {}
        : { [ANNOTATIONS.status]: typeof status === 'string' ? status : JSON.stringify(status) }),
      ...ann,
    },
    podCIDRs: [`100.64.${i}.0/24`],
    internalIPs: [`198.18.0.${i}`],
  };
}

/** n1..nN, every report healthy. */
export function healthyStatusNodes(n = 3): RawNode[] {
  const names = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  return names.map((x) => statusNode(x, statusReport(x, names)));
}

/**
 * What `self` reports about its post-quantum secret with `other` when it holds a confirmed one:
 * ML-KEM-768, hybrid, confirmed, the role the names give it, a secret 120 s old as of the report.
 */
export function statusPq(self: string, other: string, over: Partial<PeerPq> = {}): PeerPq {
  const at = STATUS_NOW.getTime() - 20_000;
  return {
    kem: 'ML-KEM-768',
    protection: 'hybrid',
    phase: 'confirmed',
    role: pqInitiator(self, other) === self ? 'initiator' : 'responder',
    secretAgeSeconds: 120,
    lastRenewal: new Date(at - 120_000).toISOString(),
    ...over,
  };
}

/** n1..nN, every report healthy and every pair protected by a confirmed post-quantum secret. */
export function pqStatusNodes(n = 3): RawNode[] {
  const names = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  return names.map((x) =>
    statusNode(
      x,
      statusReport(
        x,
        names,
        {},
        Object.fromEntries(names.filter((o) => o !== x).map((o) => [o, { pq: statusPq(x, o) }])),
      ),
    ),
  );
}

/**
 * What fetching each agent's full report gives for fixture nodes: a node's `sealnet.io/status`
 * text here stands for what its agent answers on `/status` (the fixtures keep the report on the
 * node for brevity); a node without one has an agent that does not answer.
 */
export function reportsOf(nodes: readonly RawNode[]): Map<string, FetchedReport> {
  return new Map(
    nodes.map((n): [string, FetchedReport] => {
      const text = n.annotations[ANNOTATIONS.status];
      return [
        n.name,
        text === undefined
          ? { ok: false, reason: 'connect ECONNREFUSED (fixture: the agent is not running)', noAgent: true }
          : { ok: true, text },
      ];
    }),
  );
}

/**
 * The audit of fixture nodes as `sealctl audit` evaluates it: their reports joined at
 * {@link STATUS_NOW} (`only`: the nodes in scope), the default profile unless `policy` is given,
 * no probe unless `probe` is given.
 */
export function auditFixture(
  nodes: readonly RawNode[],
  opts: { policy?: AuditPolicy; probe?: ProbeOutcome; only?: string[] } = {},
): AuditReportBody {
  return evaluate({
    status: joinStatus(nodes, { now: STATUS_NOW, reports: reportsOf(nodes), only: opts.only }),
    policy: opts.policy ?? profile('default'),
    now: STATUS_NOW,
    store: 'file',
    toolVersion: '0.1.0',
    probe: opts.probe,
    onlyNodes: opts.only,
  });
}
