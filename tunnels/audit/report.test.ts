import { sodiumReady } from '../../keymgr/keys.js';
import { auditFixture, healthyStatusNodes, statusNode, statusReport } from '../../test/status-fixtures.js';
import { parsePolicy, profile } from './policy.js';
import type { ProbeOutcome, ProbeResult } from './probe.js';
import { evaluate, expectedVerdict, type AuditReportBody } from './report.js';

const NAMES = ['n1', 'n2', 'n3'];

beforeAll(async () => {
  await sodiumReady();
});

const audit = auditFixture;

const codes = (r: AuditReportBody): string[] => [...new Set(r.violations.map((v) => `${v.code}@${v.subject}`))].sort();

const wireOk = (a: string, b: string): ProbeResult => ({
  a,
  b,
  ran: true,
  trafficOk: true,
  tunnelPackets: 40,
  plaintextPackets: 0,
  canaryLeaks: 0,
  captureComplete: true,
  encryptedOnWire: true,
  detail: 'tcp, udp, icmp both ways',
});

describe('evaluate', () => {
  it('passes a healthy cluster, says no probe was run, and stays consistent with its own summary', () => {
    const r = audit(healthyStatusNodes());
    expect(r.verdict).toBe('compliant');
    expect(r.complete).toBe(true);
    expect(r.violations).toEqual([]);
    expect(r.summary).toEqual({ nodes: 3, pairs: 3, compliantPairs: 3, nonCompliantPairs: 0, violations: 0 });
    expect(r.evidence.probe).toEqual({
      requested: false,
      ran: false,
      note: 'NOT RUN: no active probe was requested; pair states are as the agents report them',
    });
    expect(r.pairs.every((p) => p.probe.ran === false)).toBe(true);
    expect(expectedVerdict(r)).toEqual({ verdict: r.verdict, complete: r.complete, summary: r.summary });
  });

  it('names a pair that is not encrypted, with the side that says why', () => {
    const nodes = healthyStatusNodes();
    nodes[0] = statusNode(
      'n1',
      statusReport('n1', NAMES, {}, { n3: { state: 'dropping', reason: 'no tunnel peer with its key is programmed' } }),
    );
    const r = audit(nodes);
    expect(r.verdict).toBe('non-compliant');
    expect(r.complete).toBe(true);
    expect(codes(r)).toEqual(['pair-not-encrypted@n1~n3']);
    const p = r.pairs.find((x) => x.a === 'n1' && x.b === 'n3')!;
    expect(p.compliant).toBe(false);
    expect(p.violations[0]?.message).toBe(
      'n1 ↔ n3 is dropping: n1 → n3: dropping (no tunnel peer with its key is programmed)',
    );
    expect(r.pairs.filter((x) => x.compliant).map((x) => `${x.a}~${x.b}`)).toEqual(['n1~n2', 'n2~n3']);
  });

  it('names fail-closed off, plaintext passed, and carries it into every pair of that node', () => {
    const nodes = healthyStatusNodes();
    nodes[2] = statusNode(
      'n3',
      statusReport('n3', NAMES, {
        steering: { enabled: true, failClosed: false, nodeToNode: false },
        failOpenPackets: 12,
      }),
    );
    const r = audit(nodes);
    expect(codes(r)).toEqual(['fail-closed-off@n3', 'plaintext-passed@n3']);
    expect(r.pairs.map((p) => [`${p.a}~${p.b}`, p.compliant])).toEqual([
      ['n1~n2', true],
      ['n1~n3', false],
      ['n2~n3', false],
    ]);
    expect(r.pairs[1]?.violations.map((v) => v.code)).toEqual(['fail-closed-off', 'plaintext-passed']);
    expect(r.nodes.find((n) => n.name === 'n3')?.violations).toEqual(['fail-closed-off', 'plaintext-passed']);
  });

  it('names an old key against the policy maximum', () => {
    const r = audit(healthyStatusNodes(), { policy: parsePolicy('{"version":1,"maxKeyAge":"1h"}', 'p') });
    expect(codes(r)).toEqual(['key-too-old@n1', 'key-too-old@n2', 'key-too-old@n3']);
    expect(r.violations[0]?.message).toMatch(
      /^the key of n1 \([0-9a-f]{16}, created 2025-05-31T12:00:00.000Z\) is 86400 s old; policy default allows at most 1h$/,
    );
  });

  it('fails a WireGuard cluster against the FIPS profile, naming the algorithm', () => {
    const r = audit(healthyStatusNodes(), { policy: profile('fips') });
    expect(r.verdict).toBe('non-compliant');
    expect(codes(r)).toEqual(['algorithm-not-allowed@n1', 'algorithm-not-allowed@n2', 'algorithm-not-allowed@n3']);
    expect(r.violations[0]?.message).toBe(
      'n1 uses wireguard-chacha20poly1305; policy fips allows only ipsec-esp-aes-gcm-128, ipsec-esp-aes-gcm-256',
    );
  });

  it('never says compliant with a stopped agent, a stale report or an agent that does not answer: partial, named', () => {
    for (const [n2, code] of [
      [statusNode('n2', statusReport('n2', NAMES, { agent: 'stopped' })), 'agent-stopped'],
      [statusNode('n2', statusReport('n2', NAMES, { at: '2025-06-01T11:00:00.000Z' })), 'status-stale'],
      [statusNode('n2', undefined), 'status-unreachable'],
      [statusNode('n2', 'garbage'), 'status-invalid'],
    ] as const) {
      const nodes = healthyStatusNodes();
      nodes[1] = n2;
      const r = audit(nodes);
      expect([r.verdict, r.complete]).toEqual(['non-compliant', false]);
      expect(codes(r)).toContain(`${code}@n2`);
      expect(r.pairs.filter((p) => p.a === 'n2' || p.b === 'n2').every((p) => p.partial && !p.compliant)).toBe(true);
      expect(r.pairs.find((p) => p.a === 'n1' && p.b === 'n3')?.compliant).toBe(true);
    }
  });

  it('applies the policy maximum status age on top of the heartbeat rule', () => {
    const r = audit(healthyStatusNodes(), { policy: parsePolicy('{"version":1,"maxStatusAge":"10s"}', 'p') });
    expect(codes(r)).toEqual(['status-stale@n1', 'status-stale@n2', 'status-stale@n3']);
    expect(r.complete).toBe(false);
  });

  it('requires node-to-node encryption only when the policy does', () => {
    expect(
      codes(
        audit(healthyStatusNodes(), { policy: parsePolicy('{"version":1,"requireNodeToNodeEncryption":true}', 'p') }),
      ),
    ).toEqual(['node-to-node-off@n1', 'node-to-node-off@n2', 'node-to-node-off@n3']);
  });

  it('uses probe results: encrypted on the wire passes, plaintext or failed traffic is named, a failed probe is partial', () => {
    const ok: ProbeOutcome = {
      ok: true,
      adapter: 'nscluster',
      note: 'canary over tcp/udp/icmp',
      results: [wireOk('n1', 'n2'), wireOk('n1', 'n3'), wireOk('n2', 'n3')],
    };
    const passed = audit(healthyStatusNodes(), { probe: ok });
    expect([passed.verdict, passed.evidence.probe.ran, passed.evidence.probe.adapter]).toEqual([
      'compliant',
      true,
      'nscluster',
    ]);
    const leaky: ProbeOutcome = {
      ...ok,
      results: [
        wireOk('n1', 'n2'),
        { ...wireOk('n1', 'n3'), plaintextPackets: 9, canaryLeaks: 2, encryptedOnWire: false },
        { ...wireOk('n2', 'n3'), trafficOk: false, encryptedOnWire: false, detail: 'tcp: timeout' },
      ],
    };
    expect(codes(audit(healthyStatusNodes(), { probe: leaky }))).toEqual([
      'probe-failed@n2~n3',
      'probe-plaintext@n1~n3',
    ]);
    const broken = audit(healthyStatusNodes(), { probe: { ok: false, error: 'probe command exited with 1' } });
    expect([broken.verdict, broken.complete]).toEqual(['non-compliant', false]);
    expect(codes(broken)).toEqual(['probe-failed@n1~n2', 'probe-failed@n1~n3', 'probe-failed@n2~n3']);
    const missing = audit(healthyStatusNodes(), { probe: { ...ok, results: [wireOk('n1', 'n2')] } });
    expect(codes(missing)).toEqual(['probe-missing@n1~n3', 'probe-missing@n2~n3']);
    const required = audit(healthyStatusNodes(), { policy: parsePolicy('{"version":1,"requireProbe":true}', 'p') });
    expect([required.verdict, required.complete, codes(required).length]).toEqual(['non-compliant', false, 3]);
  });

  it('with fewer than two nodes there is nothing to prove: not compliant', () => {
    const r = audit(healthyStatusNodes(1));
    expect([r.verdict, r.complete, codes(r)]).toEqual(['non-compliant', false, ['no-pairs@cluster']]);
  });

  it('scopes to named nodes', () => {
    const r = audit(healthyStatusNodes(), { only: ['n2'] });
    expect(r.pairs.map((p) => `${p.a}~${p.b}`)).toEqual(['n1~n2', 'n2~n3']);
    expect(r.scope.onlyNodes).toEqual(['n2']);
  });
});
