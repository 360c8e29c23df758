/**
 * The audit's post-quantum evidence (issue 19): a pair counts as protected only when both ends
 * report a confirmed secret for each other and the claims hold up; `requirePostQuantum` makes a
 * pair without one non-compliant, naming the pair and the end that lacks it. Every claim here
 * stands for a hostile node's report.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady } from '../../keymgr/keys.js';
import { pqInitiator } from '../../keymgr/pq/kdf.js';
import {
  auditFixture,
  healthyStatusNodes,
  pqStatusNodes,
  STATUS_NOW,
  statusNode,
  statusFp,
  statusPq,
  statusReport,
} from '../../test/status-fixtures.js';
import type { RawNode } from '../ports/model.js';
import type { PeerPq, PeerStatus } from '../status/report.js';
import { parsePolicy, profile, type AuditPolicy } from './policy.js';
import { expectedVerdict, type AuditPair, type AuditReportBody } from './report.js';

const NAMES = ['n1', 'n2', 'n3'];
const REQUIRE = (): AuditPolicy => parsePolicy('{"version":1,"name":"pq","requirePostQuantum":true}', 'p.json');

beforeAll(async () => {
  await sodiumReady();
});

function audit(nodes: readonly RawNode[], policy: AuditPolicy = REQUIRE()): AuditReportBody {
  return auditFixture(nodes, { policy });
}

const pair = (r: AuditReportBody, a: string, b: string): AuditPair => r.pairs.find((p) => p.a === a && p.b === b)!;
const codes = (r: AuditReportBody): string[] => [...new Set(r.violations.map((v) => `${v.code}@${v.subject}`))].sort();

/** The pq cluster with node `self`'s report replaced: its peers overridden, its report fields too. */
function withReport(
  self: string,
  peerOver: Record<string, Partial<PeerStatus>>,
  over: Parameters<typeof statusReport>[2] = {},
  names: readonly string[] = NAMES,
): RawNode[] {
  const nodes = pqStatusNodes();
  const i = NAMES.indexOf(self);
  const pqs = Object.fromEntries(names.filter((o) => o !== self).map((o) => [o, { pq: statusPq(self, o) }]));
  const merged = Object.fromEntries(Object.entries(pqs).map(([o, v]) => [o, { ...v, ...peerOver[o] }])) as Record<
    string,
    Partial<PeerStatus>
  >;
  nodes[i] = statusNode(self, statusReport(self, names, over, merged));
  return nodes;
}

/** n1's claim about n2 changed by `over` (n2 honest). */
const n1Claims = (over: Partial<PeerPq>): RawNode[] => withReport('n1', { n2: { pq: statusPq('n1', 'n2', over) } });

describe('post-quantum evidence in the audit', () => {
  it('a cluster whose every pair both ends confirm is compliant under requirePostQuantum, counted in the summary', () => {
    const r = audit(pqStatusNodes());
    expect([r.verdict, r.complete, codes(r)]).toEqual(['compliant', true, []]);
    expect(r.summary).toEqual({
      nodes: 3,
      pairs: 3,
      compliantPairs: 3,
      nonCompliantPairs: 0,
      violations: 0,
      postQuantumPairs: 3,
      nonPostQuantumPairs: 0,
    });
    const p = pair(r, 'n1', 'n2');
    expect(p.postQuantum).toEqual({
      confirmed: true,
      problems: [],
      a: {
        node: 'n1',
        confirmed: true,
        kem: 'ML-KEM-768',
        protection: 'hybrid',
        phase: 'confirmed',
        role: pqInitiator('n1', 'n2') === 'n1' ? 'initiator' : 'responder',
        secretAgeSeconds: 120,
        lastRenewal: '2025-06-01T11:57:40.000Z',
      },
      b: expect.objectContaining({ node: 'n2', confirmed: true }),
    });
    expect(expectedVerdict(r)).toEqual({ verdict: r.verdict, complete: r.complete, summary: r.summary });
  });

  it('without the policy field the evidence is shown but not required; without any exchange the report is as before', () => {
    const shown = audit(
      withReport('n3', { n1: { pq: statusPq('n3', 'n1', { protection: 'classical', phase: 'idle' }) } }),
      profile('default'),
    );
    expect([shown.verdict, codes(shown)]).toEqual(['compliant', []]);
    expect([shown.summary.postQuantumPairs, shown.summary.nonPostQuantumPairs]).toEqual([2, 1]);
    expect(pair(shown, 'n1', 'n3').postQuantum?.confirmed).toBe(false);
    const plain = audit(healthyStatusNodes(), profile('default'));
    expect(plain.pairs.every((p) => !('postQuantum' in p))).toBe(true);
    expect('postQuantumPairs' in plain.summary).toBe(false);
    expect(profile('default').requirePostQuantum).toBe(false);
    expect(profile('fips').requirePostQuantum).toBe(false);
  });

  it('requirePostQuantum against a cluster without the exchange names every pair and both ends', () => {
    const r = audit(healthyStatusNodes());
    expect(r.verdict).toBe('non-compliant');
    expect(r.complete).toBe(true);
    expect(codes(r)).toEqual([
      'post-quantum-missing@n1~n2',
      'post-quantum-missing@n1~n3',
      'post-quantum-missing@n2~n3',
    ]);
    expect(pair(r, 'n1', 'n2').violations[0]?.message).toBe(
      'no confirmed post-quantum secret on both ends of n1 ↔ n2: neither n1 nor n2 confirms one (n1 reports no post-quantum exchange with n2 (postQuantum is off there); n2 reports no post-quantum exchange with n1 (postQuantum is off there)); policy pq requires one',
    );
    expect([r.summary.postQuantumPairs, r.summary.nonPostQuantumPairs]).toEqual([0, 3]);
  });

  it("one end's claim is not enough: the pair fails naming the end that lacks it, the other pairs pass", () => {
    const reason = 'the peer publishes no usable ML-KEM encapsulation key: not base64';
    const r = audit(
      withReport('n3', {
        n1: { state: 'dropping', pq: statusPq('n3', 'n1', { protection: 'none', phase: 'idle', reason }) },
      }),
    );
    expect(codes(r)).toEqual(['pair-not-encrypted@n1~n3', 'post-quantum-missing@n1~n3']);
    const v = pair(r, 'n1', 'n3').violations.find((x) => x.code === 'post-quantum-missing');
    expect(v?.message).toBe(
      `no confirmed post-quantum secret on both ends of n1 ↔ n3: n3 lacks it (n3 reports protection none with n1: "${reason}"); policy pq requires one`,
    );
    expect(pair(r, 'n1', 'n3').postQuantum?.a.confirmed).toBe(true);
    expect(pair(r, 'n1', 'n2').compliant && pair(r, 'n2', 'n3').compliant).toBe(true);
    expect([r.summary.postQuantumPairs, r.summary.nonPostQuantumPairs]).toEqual([2, 1]);
  });

  const wrongRole = pqInitiator('n1', 'n2') === 'n1' ? 'responder' : 'initiator';
  it.each<[string, () => RawNode[], string]>([
    [
      'a claim for a pair it has no tunnel peer for',
      () => withReport('n1', { n2: { state: 'dropping', key: undefined } }),
      'n1 claims a post-quantum secret with n2 but holds no tunnel peer for it',
    ],
    ['another KEM', () => n1Claims({ kem: 'ML-KEM-512' }), 'n1 reports KEM "ML-KEM-512", not ML-KEM-768'],
    [
      'terminal controls in the KEM, quoted and escaped',
      () => n1Claims({ kem: '\u001b[2Jx' }),
      'n1 reports KEM "\\\\u{1b}[2Jx", not ML-KEM-768',
    ],
    [
      'hybrid in phase idle',
      () => n1Claims({ phase: 'idle' }),
      'n1 reports protection hybrid with n2 in phase idle (no confirmed secret)',
    ],
    [
      'an expired secret (preferred keeps it, with a reason)',
      () => n1Claims({ reason: 'the post-quantum secret is 1300 s old, past its 1200 s limit (renewals unanswered)' }),
      'n1 holds an old post-quantum secret with n2: "the post-quantum secret is 1300 s old, past its 1200 s limit (renewals unanswered)"',
    ],
    [
      'the wrong role (both ends cannot be the initiator)',
      () => n1Claims({ role: wrongRole }),
      `n1 reports role ${wrongRole} with n2, but ${pqInitiator('n1', 'n2')} initiates for this pair`,
    ],
    [
      'no secret age',
      () => n1Claims({ secretAgeSeconds: undefined }),
      'n1 reports protection hybrid with n2 without a secret age',
    ],
    [
      'a secret older than any renewal period allows',
      () =>
        n1Claims({
          secretAgeSeconds: 10_000_000,
          lastRenewal: new Date(STATUS_NOW.getTime() - 20_000 - 10_000_000_000).toISOString(),
        }),
      'n1 reports protection hybrid with n2 with a secret 10000000 s old, beyond any renewal period (172800 s)',
    ],
    [
      'a malformed last renewal',
      () => n1Claims({ lastRenewal: 'yesterday' }),
      'n1 reports protection hybrid with n2 with a malformed ("yesterday") last renewal time',
    ],
    [
      'a last renewal that contradicts the secret age',
      () => n1Claims({ lastRenewal: '2025-06-01T10:00:00.000Z' }),
      "n1's secret with n2 is 120 s old by its report of 2025-06-01T11:59:40.000Z, but its last renewal 2025-06-01T10:00:00.000Z says otherwise",
    ],
    [
      'a claim from a mode without the exchange',
      () => withReport('n1', {}, { mode: 'ipsec', algorithm: 'ipsec-esp-aes-gcm-256' }),
      'n1 runs ipsec, which has no post-quantum exchange, yet reports one with n2',
    ],
    ['an end that does not list the other', () => withReport('n1', {}, {}, ['n1', 'n3']), 'n1 does not report on n2'],
  ])('refuses %s, naming n1 as the end that lacks it', (_what, nodes, problem) => {
    const r = audit(nodes());
    const p = pair(r, 'n1', 'n2');
    expect(p.postQuantum?.a).toMatchObject({ node: 'n1', confirmed: false, problem });
    expect(p.postQuantum?.b.confirmed).toBe(true);
    expect(p.postQuantum?.confirmed).toBe(false);
    expect(p.compliant).toBe(false);
    const v = p.violations.find((x) => x.code === 'post-quantum-missing');
    expect(v?.message).toBe(
      `no confirmed post-quantum secret on both ends of n1 ↔ n2: n1 lacks it (${problem}); policy pq requires one`,
    );
    expect(v?.message).not.toMatch(/\u001b/);
  });

  it('a pair not proven encrypted keeps its confirmed secret: pair-not-encrypted is its own rule', () => {
    const why = 'cannot read the steering map';
    const r = audit(withReport('n1', { n2: { state: 'pending', reason: why } }));
    expect(codes(r)).toEqual(['pair-not-encrypted@n1~n2']);
    expect(pair(r, 'n1', 'n2').postQuantum?.confirmed).toBe(true);
    expect(r.summary.postQuantumPairs).toBe(3);
  });

  it('an end without usable status never confirms: named with its problem', () => {
    const nodes = pqStatusNodes();
    nodes[1] = statusNode('n2', undefined);
    const r = audit(nodes);
    expect(pair(r, 'n1', 'n2').postQuantum?.b.problem).toBe(
      'n2 gave no usable status (the agent on n2 did not give its status: connect ECONNREFUSED (fixture: the agent is not running))',
    );
    expect(pair(r, 'n1', 'n2').postQuantum?.confirmed).toBe(false);
  });

  it('two confirmed ends that hold the wrong key for each other do not make a protected pair', () => {
    const nodes = withReport('n1', { n2: { key: '0123456789abcdef' } });
    const r = audit(nodes);
    const q = pair(r, 'n1', 'n2').postQuantum;
    expect([q?.a.confirmed, q?.b.confirmed, q?.confirmed]).toEqual([true, true, false]);
    const wrong = "n1 holds its secret on a tunnel peer with key 0123456789abcdef, but n2's key is " + statusFp('n2');
    expect(q?.problems).toEqual([wrong]);
    expect(pair(r, 'n1', 'n2').violations.find((x) => x.code === 'post-quantum-missing')?.message).toBe(
      `no confirmed post-quantum secret on both ends of n1 ↔ n2: both ends confirm one, but they disagree (${wrong}); policy pq requires one`,
    );
  });
});
