/**
 * Hostile peers, class "text": terminal escapes, bidi overrides and huge values in another
 * node's fields. Expected: the node (or the field) refused with a bounded, escaped detail; no
 * control character in any detail; honest nodes planned.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady } from '../../keymgr/keys.js';
import { fixtureCluster, type FixtureCluster } from '../../test/fixtures.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { decodeNode } from './annotations.js';
import { decodeRotationStatus } from './rotation-codec.js';
import { plan } from './planner.js';
import { isSafeText } from '../../common/text.js';
import type { RawNode } from '../ports/model.js';

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});

const c = (): RawNode => C.nodes.find((n) => n.name === 'node-c')!;
const withAnn = (ann: Record<string, string>): RawNode => ({ ...c(), annotations: { ...c().annotations, ...ann } });

describe('hostile text', () => {
  it.each([
    [ANNOTATIONS.endpoint, 'A'.repeat(200_000)],
    [ANNOTATIONS.keyEpoch, '9'.repeat(200_000)],
    [ANNOTATIONS.mode, '\u001b]0;owned\u0007' + 'x'.repeat(100_000)],
    [ANNOTATIONS.endpoint, '198.18.0.3:51999\u202e'],
  ])('%s: a huge or control-laden value is quoted by a short escaped prefix', (key, value) => {
    const r = decodeNode(withAnn({ [key]: value }));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.detail.length).toBeLessThan(300);
      expect(isSafeText(r.detail)).toBe(true);
    }
  });

  it('a node name with terminal escapes is skipped, quoted safely; the honest nodes are planned', () => {
    const evil: RawNode = { ...c(), name: 'node-x\u001b[2J\u001b[31m' };
    const r = decodeNode(evil);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(isSafeText(r.detail)).toBe(true);
    const d = plan({
      nodes: [...C.nodes.filter((n) => n.name !== 'node-c'), evil],
      self: { name: 'node-a', wireguardPublicKey: C.keys['node-a'], localAddresses: C.localAddresses['node-a'] },
      config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 0, underlayMtu: 1500, underlayFamily: 4 },
    });
    expect(d.tunnel.peers.map((p) => p.node)).toEqual(['node-b', 'node-d', 'node-e']);
    expect(d.skipped.every((s) => isSafeText(s.detail))).toBe(true);
  });

  it('a rotation error with controls is dropped; lagging names must be node names', () => {
    expect(
      decodeRotationStatus(JSON.stringify({ phase: 'moving', id: 'r-1', error: 'stuck\u001b[2J' }))?.error,
    ).toBeUndefined();
    expect(decodeRotationStatus(JSON.stringify({ phase: 'moving', id: 'r-1', error: 'stuck on node-b' }))?.error).toBe(
      'stuck on node-b',
    );
    const last = (lagging: string[]): unknown =>
      decodeRotationStatus(
        JSON.stringify({ phase: 'idle', last: { id: 'r-1', completedAt: '2026-01-01T00:00:00Z', epoch: 2, lagging } }),
      )?.last;
    expect(last(['node-b\u202e'])).toBeUndefined();
    expect(last(['node-b'])).toBeDefined();
  });
});
