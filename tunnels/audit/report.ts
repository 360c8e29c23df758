/**
 * The audit itself: the joined cluster status (tunnels/status/join.ts), a policy and optional
 * probe results in, a report out, with a verdict per pair and every reason named. Pure: time is
 * an input. The verdict is `compliant` only with complete evidence and no violation: missing,
 * stale or unreadable evidence is reported as partial and is never compliant.
 */
import type { ClusterStatus, NodeView, PairRow } from '../status/join.js';
import type { ReportSignature } from './sign.js';
import { formatDuration, type AuditPolicy } from './policy.js';
import type { ProbeOutcome, ProbeResult } from './probe.js';
import { anyPq, carriesPq, pairPq, pqCounts, pqShortfall, type AuditPairPq } from './pq.js';

/** What a violation is about. */
export type ViolationCode =
  | 'no-agent'
  | 'status-missing'
  | 'status-invalid'
  | 'status-stale'
  | 'status-unreachable'
  | 'agent-stopped'
  | 'algorithm-not-allowed'
  | 'key-too-old'
  | 'fail-closed-off'
  | 'plaintext-passed'
  | 'node-to-node-off'
  | 'pair-not-encrypted'
  | 'probe-failed'
  | 'probe-plaintext'
  | 'probe-missing'
  | 'post-quantum-missing'
  | 'no-pairs';

/** Codes that mean evidence is missing (the report is partial), not that a rule was broken. */
export const EVIDENCE_CODES: readonly ViolationCode[] = [
  'no-agent',
  'status-missing',
  'status-invalid',
  'status-stale',
  'status-unreachable',
  'agent-stopped',
  'probe-failed',
  'probe-missing',
  'no-pairs',
];

/** One broken rule or missing piece of evidence. */
export interface Violation {
  readonly code: ViolationCode;
  /** A node name, or a pair as `a~b`. */
  readonly subject: string;
  readonly message: string;
}

/** A node in the report. */
export interface AuditNode {
  readonly name: string;
  readonly health: NodeView['health'];
  readonly problem?: string | undefined;
  readonly mode?: string | undefined;
  readonly algorithm?: string | undefined;
  readonly keyFingerprint?: string | undefined;
  readonly keyEpoch?: number | undefined;
  readonly keyCreatedAt?: string | undefined;
  readonly keyAgeSeconds?: number | undefined;
  readonly steeringEnabled?: boolean | undefined;
  readonly failClosed?: boolean | undefined;
  readonly nodeToNode?: boolean | undefined;
  readonly failOpenPackets?: number | undefined;
  readonly bpfDrops?: Readonly<Record<string, number>> | undefined;
  readonly statusAt?: string | undefined;
  readonly statusAgeSeconds?: number | undefined;
  readonly violations: readonly string[];
}

/** A pair in the report. */
export interface AuditPair {
  readonly a: string;
  readonly b: string;
  readonly state: PairRow['state'];
  readonly partial: boolean;
  readonly compliant: boolean;
  readonly mode?: string | undefined;
  readonly algorithm?: string | undefined;
  readonly keys: { readonly a?: string | undefined; readonly b?: string | undefined };
  readonly keyAgeSeconds: { readonly a?: number | undefined; readonly b?: number | undefined };
  readonly handshakeAgeSeconds: { readonly ab?: number | undefined; readonly ba?: number | undefined };
  readonly bytes: {
    readonly a: { readonly rx?: number | undefined; readonly tx?: number | undefined };
    readonly b: { readonly rx?: number | undefined; readonly tx?: number | undefined };
  };
  readonly probe: ProbeResult | { readonly ran: false; readonly note: string };
  /**
   * Post-quantum evidence from both ends (tunnels/audit/pq.ts). Present in every pair when any
   * end in scope reports the exchange or the policy requires it; absent otherwise (and in reports
   * made before issue 19).
   */
  readonly postQuantum?: AuditPairPq | undefined;
  readonly notes: readonly string[];
  /** Everything that makes this pair non-compliant, its nodes' violations included. */
  readonly violations: readonly Violation[];
}

/** The report body (everything but the signature). */
export interface AuditReportBody {
  readonly format: 'sealnet-audit-report';
  readonly version: 1;
  readonly generatedAt: string;
  readonly tool: { readonly name: 'sealctl'; readonly version: string };
  readonly scope: {
    readonly store: string;
    readonly nodes: readonly string[];
    readonly onlyNodes?: readonly string[] | undefined;
  };
  readonly policy: AuditPolicy;
  readonly verdict: 'compliant' | 'non-compliant';
  /** False when any evidence is missing: the verdict then rests on partial results. */
  readonly complete: boolean;
  readonly summary: {
    readonly nodes: number;
    readonly pairs: number;
    readonly compliantPairs: number;
    readonly nonCompliantPairs: number;
    readonly violations: number;
    /** Pairs a confirmed post-quantum secret protected, by both ends' reports (present with `pairs[].postQuantum`). */
    readonly postQuantumPairs?: number | undefined;
    /** Pairs without one. */
    readonly nonPostQuantumPairs?: number | undefined;
  };
  readonly evidence: {
    readonly status: string;
    readonly maxCounterAgeSeconds: number;
    readonly probe: {
      readonly requested: boolean;
      readonly ran: boolean;
      readonly adapter?: string | undefined;
      readonly note: string;
    };
  };
  readonly nodes: readonly AuditNode[];
  readonly pairs: readonly AuditPair[];
  /** Every violation once, sorted by subject then code. */
  readonly violations: readonly Violation[];
}

/** A signed report. */
export interface AuditReport extends AuditReportBody {
  readonly signature: ReportSignature;
}

/** Inputs of {@link evaluate}. */
export interface EvaluateInput {
  readonly status: ClusterStatus;
  readonly policy: AuditPolicy;
  readonly now: Date;
  readonly store: string;
  readonly toolVersion: string;
  readonly onlyNodes?: readonly string[] | undefined;
  /** undefined: no probe was requested. */
  readonly probe: ProbeOutcome | undefined;
}

const HEALTH_CODE: Readonly<Record<Exclude<NodeView['health'], 'ok'>, ViolationCode>> = {
  'no-agent': 'no-agent',
  missing: 'status-missing',
  invalid: 'status-invalid',
  stale: 'status-stale',
  stopped: 'agent-stopped',
  unreachable: 'status-unreachable',
};

function nodeViolations(v: NodeView, p: AuditPolicy): Violation[] {
  const out: Violation[] = [];
  const add = (code: ViolationCode, message: string): void => void out.push({ code, subject: v.name, message });
  if (v.health !== 'ok') add(HEALTH_CODE[v.health], v.problem ?? `no usable status from ${v.name}`);
  const r = v.report;
  if (r === undefined) return out;
  if (v.health === 'ok' && v.reportAgeSeconds !== undefined && v.reportAgeSeconds > p.maxStatusAgeSeconds) {
    add(
      'status-stale',
      `the status of ${v.name} is ${v.reportAgeSeconds} s old; the policy accepts at most ${formatDuration(p.maxStatusAgeSeconds)}`,
    );
  }
  if (!p.allowedAlgorithms.includes(r.algorithm))
    add(
      'algorithm-not-allowed',
      `${v.name} uses ${r.algorithm}; policy ${p.name} allows only ${p.allowedAlgorithms.join(', ')}`,
    );
  if (v.keyAgeSeconds !== undefined && v.keyAgeSeconds > p.maxKeyAgeSeconds) {
    add(
      'key-too-old',
      `the key of ${v.name} (${r.key.fingerprint}, created ${r.key.createdAt}) is ${v.keyAgeSeconds} s old; policy ${p.name} allows at most ${formatDuration(p.maxKeyAgeSeconds)}`,
    );
  }
  if (p.requireFailClosed && !(r.steering.enabled && r.steering.failClosed)) {
    add(
      'fail-closed-off',
      r.steering.enabled
        ? `fail-closed is off on ${v.name}: pod traffic to a node without a ready tunnel is passed in plaintext`
        : `steering is disabled on ${v.name}: nothing drops pod traffic that has no tunnel`,
    );
  }
  if (p.requireAllPairsEncrypted && r.failOpenPackets > 0)
    add(
      'plaintext-passed',
      `the steering program on ${v.name} passed ${r.failOpenPackets} packets in plaintext (fail-open)`,
    );
  if (p.requireNodeToNodeEncryption && !r.steering.nodeToNode)
    add('node-to-node-off', `node-to-node encryption is off on ${v.name}: only pod traffic is encrypted`);
  return out;
}

function probeViolations(pair: PairRow, input: EvaluateInput): { probe: AuditPair['probe']; violations: Violation[] } {
  const subject = `${pair.a}~${pair.b}`;
  const pr = input.probe;
  if (pr === undefined) {
    const note = 'no active probe was requested';
    return {
      probe: { ran: false, note },
      violations: input.policy.requireProbe
        ? [
            {
              code: 'probe-missing',
              subject,
              message: `policy ${input.policy.name} requires an active probe; none was run (use --probe-command)`,
            },
          ]
        : [],
    };
  }
  if (!pr.ok)
    return {
      probe: { ran: false, note: `the probe did not run: ${pr.error}` },
      violations: [{ code: 'probe-failed', subject, message: `the requested probe did not run: ${pr.error}` }],
    };
  const r = pr.results.find((x) => x.a === pair.a && x.b === pair.b);
  if (r === undefined || !r.ran) {
    const why = r?.detail ?? `the probe adapter ${pr.adapter} returned nothing for this pair`;
    return {
      probe: r ?? { ran: false, note: why },
      violations: [{ code: 'probe-missing', subject, message: `no probe result: ${why}` }],
    };
  }
  const v: Violation[] = [];
  if (r.plaintextPackets > 0 || r.canaryLeaks > 0)
    v.push({
      code: 'probe-plaintext',
      subject,
      message: `the probe saw ${r.plaintextPackets} plaintext pod packets and ${r.canaryLeaks} canary copies between ${pair.a} and ${pair.b} on the wire`,
    });
  else if (!r.captureComplete)
    v.push({
      code: 'probe-failed',
      subject,
      message: `the probe's capture was incomplete (packets dropped or truncated): it proves nothing`,
    });
  else if (!r.trafficOk)
    v.push({ code: 'probe-failed', subject, message: `the probe's canary traffic did not get through: ${r.detail}` });
  else if (r.tunnelPackets === 0)
    v.push({
      code: 'probe-failed',
      subject,
      message: 'the probe traffic got through but the capture saw no tunnel packets carrying it',
    });
  return { probe: r, violations: v };
}

function sortViolations(v: readonly Violation[]): Violation[] {
  const seen = new Set<string>();
  return [...v]
    .sort((x, y) =>
      x.subject < y.subject
        ? -1
        : x.subject > y.subject
          ? 1
          : x.code < y.code
            ? -1
            : x.code > y.code
              ? 1
              : x.message < y.message
                ? -1
                : 1,
    )
    .filter((x) => {
      const k = `${x.subject}\n${x.code}\n${x.message}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
}

/** Evaluates the cluster against the policy. */
export function evaluate(input: EvaluateInput): AuditReportBody {
  const { status, policy } = input;
  const byNode = new Map(status.nodes.map((v) => [v.name, nodeViolations(v, policy)]));
  const views = new Map(status.nodes.map((v) => [v.name, v]));
  // Reports of clusters without the exchange stay as they were unless the policy asks for it.
  const withPq = policy.requirePostQuantum || anyPq(status.pairs);
  const pairs: AuditPair[] = status.pairs.map((pair) => {
    const subject = `${pair.a}~${pair.b}`;
    const own: Violation[] = [];
    if (policy.requireAllPairsEncrypted && pair.state !== 'encrypted') {
      own.push({
        code: 'pair-not-encrypted',
        subject,
        message: `${pair.a} ↔ ${pair.b} is ${pair.state}${pair.notes.length > 0 ? `: ${pair.notes.join('; ')}` : ''}`,
      });
    }
    // Mode ipsec: the algorithm each end's SAs really use (observed in its kernel), not only the configured one.
    for (const side of pair.sides) {
      for (const alg of side.algorithm?.split('+') ?? []) {
        if (!policy.allowedAlgorithms.includes(alg))
          own.push({
            code: 'algorithm-not-allowed',
            subject,
            message: `the SAs ${side.node} holds for ${pair.a} ↔ ${pair.b} use ${alg}; policy ${policy.name} allows only ${policy.allowedAlgorithms.join(', ')}`,
          });
      }
    }
    const pq = withPq ? pairPq(pair, views) : undefined;
    if (policy.requirePostQuantum && pq !== undefined && !pq.confirmed)
      own.push({
        code: 'post-quantum-missing',
        subject,
        message: `${pqShortfall(pair, pq)}; policy ${policy.name} requires one`,
      });
    const probe = probeViolations(pair, input);
    const violations = sortViolations([
      ...own,
      ...probe.violations,
      ...(byNode.get(pair.a) ?? []),
      ...(byNode.get(pair.b) ?? []),
    ]);
    const [sa, sb] = pair.sides;
    return {
      a: pair.a,
      b: pair.b,
      state: pair.state,
      partial: pair.partial || violations.some((v) => EVIDENCE_CODES.includes(v.code)),
      compliant: violations.length === 0,
      mode: pair.mode,
      algorithm: pair.algorithm,
      keys: { a: sa.ownKey, b: sb.ownKey },
      keyAgeSeconds: { a: sa.keyAgeSeconds, b: sb.keyAgeSeconds },
      handshakeAgeSeconds: { ab: sa.handshakeAgeSeconds, ba: sb.handshakeAgeSeconds },
      bytes: { a: { rx: sa.rx, tx: sa.tx }, b: { rx: sb.rx, tx: sb.tx } },
      probe: probe.probe,
      ...(pq === undefined ? {} : { postQuantum: pq }),
      notes: pair.notes,
      violations,
    };
  });
  const all: Violation[] = [...[...byNode.values()].flat(), ...pairs.flatMap((p) => p.violations)];
  if (pairs.length === 0)
    all.push({
      code: 'no-pairs',
      subject: 'cluster',
      message: 'no node pairs to audit (fewer than two nodes in scope): nothing is proven',
    });
  const violations = sortViolations(all);
  const complete = !violations.some((v) => EVIDENCE_CODES.includes(v.code)) && !pairs.some((p) => p.partial);
  const pr = input.probe;
  const probeNote =
    pr === undefined
      ? 'NOT RUN: no active probe was requested; pair states are as the agents report them'
      : !pr.ok
        ? `FAILED: ${pr.error}`
        : `ran through adapter ${pr.adapter}: ${pr.note}`;
  return {
    format: 'sealnet-audit-report',
    version: 1,
    generatedAt: input.now.toISOString(),
    tool: { name: 'sealctl', version: input.toolVersion },
    scope: {
      store: input.store,
      nodes: status.nodes.map((n) => n.name),
      ...(input.onlyNodes !== undefined && input.onlyNodes.length > 0
        ? { onlyNodes: [...input.onlyNodes].sort() }
        : {}),
    },
    policy,
    verdict: complete && violations.length === 0 ? 'compliant' : 'non-compliant',
    complete,
    summary: {
      nodes: status.nodes.length,
      pairs: pairs.length,
      compliantPairs: pairs.filter((p) => p.compliant).length,
      nonCompliantPairs: pairs.filter((p) => !p.compliant).length,
      violations: violations.length,
      ...(withPq ? pqCounts(pairs) : {}),
    },
    evidence: {
      status: `each agent's own report (${'sealnet.io/status'} on its Node), joined from both ends of every pair; counters and handshake times are as of each report's time`,
      maxCounterAgeSeconds: Math.max(0, ...status.nodes.map((n) => n.reportAgeSeconds ?? 0)),
      probe: {
        requested: pr !== undefined,
        ran: pr?.ok === true && pr.results.some((r) => r.ran),
        ...(pr?.ok === true ? { adapter: pr.adapter } : {}),
        note: probeNote,
      },
    },
    nodes: status.nodes.map((v) => ({
      name: v.name,
      health: v.health,
      problem: v.problem,
      mode: v.report?.mode,
      algorithm: v.report?.algorithm,
      keyFingerprint: v.report?.key.fingerprint ?? v.publishedKey,
      keyEpoch: v.report?.key.epoch,
      keyCreatedAt: v.report?.key.createdAt,
      keyAgeSeconds: v.keyAgeSeconds,
      steeringEnabled: v.report?.steering.enabled,
      failClosed: v.report?.steering.failClosed,
      nodeToNode: v.report?.steering.nodeToNode,
      failOpenPackets: v.report?.failOpenPackets,
      bpfDrops: v.report?.drops,
      statusAt: v.report?.at,
      statusAgeSeconds: v.reportAgeSeconds,
      violations: [...new Set((byNode.get(v.name) ?? []).map((x) => x.code))].sort(),
    })),
    pairs,
    violations,
  };
}

/** Recomputes what the verdict and summary of a report must be from its own pairs and violations. */
export function expectedVerdict(r: AuditReportBody): {
  verdict: AuditReportBody['verdict'];
  complete: boolean;
  summary: AuditReportBody['summary'];
} {
  const complete = !r.violations.some((v) => EVIDENCE_CODES.includes(v.code)) && !r.pairs.some((p) => p.partial);
  return {
    verdict: complete && r.violations.length === 0 ? 'compliant' : 'non-compliant',
    complete,
    summary: {
      nodes: r.nodes.length,
      pairs: r.pairs.length,
      compliantPairs: r.pairs.filter((p) => p.compliant).length,
      nonCompliantPairs: r.pairs.filter((p) => !p.compliant).length,
      violations: r.violations.length,
      ...(carriesPq(r) || r.pairs.some((p) => p.postQuantum !== undefined) ? pqCounts(r.pairs) : {}),
    },
  };
}
