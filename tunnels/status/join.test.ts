import { sodiumReady } from '../../keymgr/keys.js';
import {
  healthyStatusNodes,
  STATUS_NOW,
  statusFp,
  statusNode,
  statusReport,
  reportsOf,
} from '../../test/status-fixtures.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStatusReport, PeerStatus } from './report.js';
import { joinStatus } from './join.js';

const NOW = STATUS_NOW;
const NAMES = ['n1', 'n2', 'n3'] as const;

beforeAll(async () => {
  await sodiumReady();
});

const fp = statusFp;
const report = (
  self: string,
  over: Partial<NodeStatusReport> = {},
  peerOver: Record<string, Partial<PeerStatus>> = {},
): NodeStatusReport => statusReport(self, NAMES, over, peerOver);
const node = statusNode;
const healthyNodes = (): RawNode[] => healthyStatusNodes(3);

describe('joinStatus', () => {
  it('joins both ends of every pair: encrypted, complete, with both keys, ages, handshakes and bytes', () => {
    const s = joinStatus(healthyNodes(), { now: NOW, reports: reportsOf(healthyNodes()) });
    expect(s.partial).toBe(false);
    expect(s.pairs.map((p) => [p.a, p.b, p.state, p.partial])).toEqual([
      ['n1', 'n2', 'encrypted', false],
      ['n1', 'n3', 'encrypted', false],
      ['n2', 'n3', 'encrypted', false],
    ]);
    const p = s.pairs[0]!;
    expect(p.mode).toBe('wireguard');
    expect(p.algorithm).toBe('wireguard-chacha20poly1305');
    expect(p.sides[0]).toMatchObject({
      node: 'n1',
      ownKey: fp('n1'),
      peerKey: fp('n2'),
      keyAgeSeconds: 86400,
      handshakeAgeSeconds: 30,
      rx: 100,
      tx: 200,
      asOf: '2025-06-01T11:59:40.000Z',
    });
    expect(p.sides[1]).toMatchObject({ node: 'n2', ownKey: fp('n2'), peerKey: fp('n1') });
    expect(s.maxHeartbeatSeconds).toBe(60);
  });

  it('takes the worse side: one end dropping makes the pair dropping, with the reason', () => {
    const nodes = healthyNodes();
    nodes[0] = node(
      'n1',
      report(
        'n1',
        {},
        {
          n3: {
            state: 'dropping',
            reason: 'no tunnel peer with its key is programmed; fail-closed drops its pod traffic',
          },
        },
      ),
    );
    const s = joinStatus(nodes, { now: NOW, reports: reportsOf(nodes) });
    const p = s.pairs.find((x) => x.b === 'n3' && x.a === 'n1')!;
    expect(p.state).toBe('dropping');
    expect(p.partial).toBe(false);
    expect(p.notes).toEqual([
      'n1 → n3: dropping (no tunnel peer with its key is programmed; fail-closed drops its pod traffic)',
    ]);
  });

  it('marks every pair of a node without a report partial and never encrypted', () => {
    const nodes = healthyNodes();
    nodes[2] = node('n3', undefined);
    const s = joinStatus(nodes, { now: NOW, reports: reportsOf(nodes) });
    expect(s.partial).toBe(true);
    expect(s.nodes.find((n) => n.name === 'n3')).toMatchObject({
      health: 'unreachable',
      problem: expect.stringContaining('the agent on n3 did not give its status: connect ECONNREFUSED'),
    });
    for (const p of s.pairs.filter((x) => x.b === 'n3')) {
      expect(p.state).toBe('unknown');
      expect(p.partial).toBe(true);
      expect(p.notes.join(' ')).toContain('the agent on n3 did not give its status');
    }
    expect(s.pairs.find((x) => x.a === 'n1' && x.b === 'n2')?.state).toBe('encrypted');
  });

  it('marks stale, stopped, invalid, foreign and agentless reports', () => {
    const nodes = healthyNodes();
    const staleAt = new Date(NOW.getTime() - (2 * 60 + 11) * 1000).toISOString();
    const cases: [RawNode, string, string][] = [
      [node('n1', report('n1', { at: staleAt })), 'stale', 'stale after 130 s'],
      [node('n1', report('n1', { agent: 'stopped' })), 'stopped', 'stopped at'],
      [node('n1', '{"v":1,'), 'invalid', 'not valid JSON'],
      [node('n1', report('n2')), 'invalid', 'reports about node n2'],
      [
        { name: 'n1', annotations: {}, podCIDRs: ['100.64.1.0/24'], internalIPs: ['198.18.0.1'] },
        'no-agent',
        'no agent has ever run there',
      ],
    ];
    for (const [n1, health, why] of cases) {
      const s = joinStatus([n1, nodes[1]!, nodes[2]!], { now: NOW, reports: reportsOf([n1, nodes[1]!, nodes[2]!]) });
      const v = s.nodes.find((n) => n.name === 'n1')!;
      expect([v.health, v.problem]).toEqual([health, expect.stringContaining(why)]);
      expect(s.pairs.filter((p) => p.a === 'n1').every((p) => p.state === 'unknown' && p.partial)).toBe(true);
      expect(s.partial).toBe(true);
    }
  });

  it('calls a pair misconfigured when one end holds a key the other end does not have', () => {
    const nodes = healthyNodes();
    nodes[0] = node('n1', report('n1', {}, { n2: { key: 'ffffffffffffffff' } }));
    const p = joinStatus(nodes, { now: NOW, reports: reportsOf(nodes) }).pairs[0]!;
    expect(p.state).toBe('misconfigured');
    expect(p.notes).toContain(`n1 holds key ffffffffffffffff for n2, but n2's key is ${fp('n2')}`);
  });

  it('calls a pair misconfigured when the ends run different modes', () => {
    const nodes = healthyNodes();
    nodes[1] = node('n2', report('n2', { mode: 'ipsec', algorithm: 'ipsec-esp-aes-gcm-256' }));
    const p = joinStatus(nodes, { now: NOW, reports: reportsOf(nodes) }).pairs[0]!;
    expect([p.state, p.mode, p.algorithm]).toEqual([
      'misconfigured',
      'wireguard/ipsec',
      'wireguard-chacha20poly1305/ipsec-esp-aes-gcm-256',
    ]);
  });

  it('treats a peer left out of a truncated report as missing evidence', () => {
    const nodes = healthyNodes();
    const r = report('n1');
    nodes[0] = node('n1', { ...r, peers: r.peers.filter((p) => p.node !== 'n3'), omitted: 1 });
    const p = joinStatus(nodes, { now: NOW, reports: reportsOf(nodes) }).pairs.find(
      (x) => x.a === 'n1' && x.b === 'n3',
    )!;
    expect([p.state, p.partial]).toEqual(['unknown', true]);
    expect(p.notes[0]).toContain('size bound');
  });

  it('keeps only the pairs of the named nodes', () => {
    const s = joinStatus(healthyNodes(), { now: NOW, reports: reportsOf(healthyNodes()), only: ['n3'] });
    expect(s.pairs.map((p) => `${p.a}~${p.b}`)).toEqual(['n1~n3', 'n2~n3']);
  });
});
