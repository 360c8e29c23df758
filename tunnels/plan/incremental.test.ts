import { beforeAll, describe, expect, it } from '@jest/globals';
import { ANNOTATIONS } from '../../common/constants.js';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureKey, sealnetAnnotations } from '../../test/fixtures.js';
import type { DesiredWireGuardState, RawNode } from '../ports/model.js';
import { IncrementalPlanner, MAX_INCREMENTAL_CHANGES, type PlanInputLazy } from './incremental.js';
import { plan, type PlanConfig, type PlanSelf } from './planner.js';
import { encodeRotationStatus } from './rotation-codec.js';
import { diffPeers } from './diff.js';
import { planSteering, type SteeringPlanInput } from './steering.js';
import { IncrementalSteering } from './steering-incremental.js';
import { applyPeerChanges } from '../reconcile/kernelview.js';
import type { ObservedPeer } from '../ports/index.js';
import { seededRandom as rng } from '../../test/bench/stats.js';

// The incremental planner against plan() itself: random clusters from small pools of keys,
// endpoints and pod CIDRs (so shared keys, shared endpoints, nested CIDRs and conflicts with
// this node happen), random changes, and after every change both must give the same plan.

let KEYS: PublicKey[];
let SELF_KEY: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  KEYS = Array.from({ length: 40 }, (_, i) => fixtureKey(10 + i));
  SELF_KEY = fixtureKey(9);
});

const SELF: PlanSelf = { name: 'node-000', wireguardPublicKey: undefined as unknown as PublicKey, localAddresses: [] };
const CONFIG: PlanConfig = {
  mode: 'wireguard',
  listenPort: 51880,
  persistentKeepalive: 0,
  underlayMtu: 1500,
  underlayFamily: 4,
};

/** A random remote node; `wild` picks from small pools (collisions likely) or unique values. */
function randomNode(r: () => number, name: string, i: number): RawNode {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const wild = r() < 0.04;
  const key = wild ? pick(KEYS.slice(0, 4)) : KEYS[(i % (KEYS.length - 4)) + 4]!;
  const host = wild ? pick(['198.18.9.1', '198.18.9.2', '198.18.0.1']) : `198.18.${1 + (i >> 8)}.${i & 255}`;
  const cidrs = wild
    ? [pick(['100.64.0.0/16', '100.65.7.0/24', '100.64.0.0/24', '100.66.0.0/15'])]
    : r() < 0.1
      ? [`100.70.${i & 255}.0/24`, `fd00:${i.toString(16)}::/64`]
      : [`100.70.${i & 255}.0/24`];
  const annotations: Record<string, string> = sealnetAnnotations(key, `${host}:51880`);
  const roll = r();
  if (roll < 0.04) return { name, internalIPs: [host], podCIDRs: cidrs, annotations: {} };
  if (roll < 0.07) annotations[ANNOTATIONS.mode] = 'ipsec';
  else if (roll < 0.09) annotations[ANNOTATIONS.wireguardPublicKey] = 'not-a-key';
  else if (roll < 0.11) annotations[ANNOTATIONS.wireguardPublicKey] = SELF_KEY;
  else if (roll < 0.125) {
    annotations[ANNOTATIONS.rotation] = encodeRotationStatus({
      phase: 'staging',
      id: `r-${i}`,
      since: new Date(0),
      epoch: 2,
    });
    annotations[ANNOTATIONS.wireguardNextPublicKey] = pick(KEYS);
    annotations[ANNOTATIONS.nextEndpoint] = `${host}:51881`;
  } else if (roll < 0.135) {
    annotations[ANNOTATIONS.rotation] = encodeRotationStatus({ phase: 'grace', id: `r-${i}`, since: new Date(0) });
  }
  return { name, internalIPs: [host], podCIDRs: cidrs, annotations };
}

/** One random change to the node list (add, remove, change, or several at once). */
function change(r: () => number, nodes: RawNode[], next: { i: number }): RawNode[] {
  const out = [...nodes];
  const k = r() < 0.85 ? 1 : 1 + Math.floor(r() * 4);
  for (let j = 0; j < k; j++) {
    const roll = r();
    const others = out.filter((n) => n.name !== SELF.name);
    if (roll < 0.1 && others.length > 0) {
      // A kubelet update: a new object, the same sealnet input (status summary and a label).
      const victim = others[Math.floor(r() * others.length)]!;
      const touched: Record<string, string> =
        r() < 0.5 ? { [ANNOTATIONS.status]: `{"t":${Math.floor(r() * 1e6)}}` } : { 'example.com/x': 'y' };
      out[out.indexOf(victim)] = { ...victim, annotations: { ...victim.annotations, ...touched } };
    } else if (roll < 0.3 || others.length === 0) {
      next.i++;
      out.push(randomNode(r, `node-${String(next.i).padStart(3, '0')}`, next.i));
    } else if (roll < 0.55) {
      const victim = others[Math.floor(r() * others.length)]!;
      out.splice(out.indexOf(victim), 1);
    } else {
      const victim = others[Math.floor(r() * others.length)]!;
      const idx = Number(victim.name.slice(5));
      out[out.indexOf(victim)] = randomNode(r, victim.name, r() < 0.5 ? idx : idx + 1000);
    }
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * This node's own Node changes now and then: its status summary (not read by the planners:
 * the plan stays incremental), sometimes its pod CIDRs (a full plan).
 */
function touchSelf(r: () => number, nodes: RawNode[]): RawNode[] {
  const roll = r();
  if (roll > 0.12) return nodes;
  return nodes.map((n) => {
    if (n.name !== SELF.name) return n;
    if (roll < 0.02)
      return { ...n, podCIDRs: n.podCIDRs[0] === '100.64.0.0/24' ? ['100.70.5.0/24'] : ['100.64.0.0/24'] };
    return { ...n, annotations: { ...n.annotations, [ANNOTATIONS.status]: `{"n":${Math.floor(r() * 1000)}}` } };
  });
}

/** What the reconciler hands the planner as `established` after a pass: the planned keys. */
function establishedOf(d: DesiredWireGuardState | undefined): Record<string, PublicKey> {
  return Object.fromEntries((d?.tunnel.peers ?? []).filter((p) => p.next !== true).map((p) => [p.node, p.publicKey]));
}

/** This node and the counter that names the nodes {@link change} adds. */
function startCluster(): { selfNode: RawNode; next: { i: number } } {
  return {
    selfNode: {
      name: SELF.name,
      internalIPs: ['198.18.0.1'],
      podCIDRs: ['100.64.0.0/24'],
      annotations: sealnetAnnotations(SELF_KEY, '198.18.0.1:51880'),
    },
    next: { i: 0 },
  };
}

/** This node plus 30 random changes: the cluster a seed starts from. */
function grow(r: () => number, selfNode: RawNode, next: { i: number }): RawNode[] {
  let nodes: RawNode[] = [selfNode];
  for (let j = 0; j < 30; j++) nodes = change(r, nodes, next);
  return nodes;
}

/** Runs one seed: 150 random changes, each planned both ways; returns the steps planned incrementally. */
function runSeed(seed: number): number {
  const r = rng(seed);
  const self: PlanSelf = { ...SELF, wireguardPublicKey: SELF_KEY, localAddresses: ['198.18.0.1', '100.64.0.1'] };
  const { selfNode, next } = startCluster();
  let nodes = grow(r, selfNode, next);
  const inc = new IncrementalPlanner();
  let last: DesiredWireGuardState | undefined;
  let incremental = 0;
  let config = CONFIG;
  let me = self;
  for (let step = 0; step < 150; step++) {
    nodes = touchSelf(r, change(r, nodes, next));
    if (r() < 0.03) config = { ...config, underlayMtu: config.underlayMtu === 1500 ? 9000 : 1500 };
    if (r() < 0.03) me = { ...me, localAddresses: r() < 0.5 ? ['198.18.0.1'] : ['198.18.0.1', '100.64.0.1'] };
    const established = establishedOf(last);
    const got = inc.plan({ nodes, self: me, config, established: () => established });
    const want = plan({ nodes, self: me, config, established });
    expect({ seed, step, desired: got.desired }).toStrictEqual({ seed, step, desired: want });
    if (got.changed !== undefined) incremental++;
    last = want;
  }
  return incremental;
}

describe('IncrementalPlanner', () => {
  it('equals plan() after every random change, and most changes take the incremental path', () => {
    const seeds = Array.from({ length: 12 }, (_, i) => i + 1);
    const incremental = seeds.map(runSeed);
    // Not vacuous: more than half of all steps were planned incrementally.
    expect(incremental.reduce((a, b) => a + b, 0)).toBeGreaterThan((seeds.length * 150) / 2);
  });

  it('plans in full when this node or the config changed, on a conflict, and past MAX_INCREMENTAL_CHANGES', () => {
    const keys = Array.from({ length: 100 }, (_, i) => fixtureKey(100 + i));
    const mk = (i: number, key: PublicKey, port = 51880): RawNode => ({
      name: `n${String(i).padStart(4, '0')}`,
      internalIPs: [`198.18.1.${i}`],
      podCIDRs: [`100.70.${i}.0/24`],
      annotations: sealnetAnnotations(key, `198.18.1.${i}:${port}`),
    });
    const self: PlanSelf = { ...SELF, name: 'n0000', wireguardPublicKey: SELF_KEY };
    const nodes = keys.map((k, i) => mk(i + 1, k));
    const inc = new IncrementalPlanner();
    const input = (ns: RawNode[], s: PlanSelf = self, c: PlanConfig = CONFIG): PlanInputLazy => ({
      nodes: ns,
      self: s,
      config: c,
      established: () => ({}),
    });
    const check = (i: PlanInputLazy): ReadonlySet<string> | undefined => {
      const r = inc.plan(i);
      expect(r.desired).toStrictEqual(plan({ ...i, established: i.established() }));
      return r.changed;
    };
    expect(check(input(nodes))).toBeUndefined(); // the first plan is a full one
    expect(check(input(nodes))).toEqual(new Set());
    const moved = { ...self, localAddresses: ['198.18.0.1'] };
    expect(check(input(nodes, moved))).toBeUndefined();
    expect(check(input(nodes, moved, { ...CONFIG, underlayMtu: 9000 }))).toBeUndefined();
    expect(check(input(nodes, moved, { ...CONFIG, underlayMtu: 9000 }))).toEqual(new Set());
    const rekeyed = nodes.map((n, i) => (i === 5 ? mk(6, fixtureKey(250)) : n));
    expect(check(input(rekeyed, moved, { ...CONFIG, underlayMtu: 9000 }))).toEqual(new Set(['n0006']));
    const many = rekeyed.map((n, i) => (i <= MAX_INCREMENTAL_CHANGES ? mk(i + 1, keys[i]!, 51881) : n));
    expect(check(input(many, moved, { ...CONFIG, underlayMtu: 9000 }))).toBeUndefined();
    const shared = many.map((n, i) => (i === 3 ? mk(4, keys[0]!, 51881) : n)); // n0004 takes n0001's key
    expect(check(input(shared, moved, { ...CONFIG, underlayMtu: 9000 }))).toBeUndefined();
  });
});

describe('IncrementalSteering', () => {
  /** Seeds: 150 random node changes, a kernel that applies the peer diff (sometimes dropping a prefix). */
  function runSteeringSeed(seed: number): number {
    const r = rng(seed * 7919);
    const self: PlanSelf = { ...SELF, wireguardPublicKey: SELF_KEY, localAddresses: ['198.18.0.1'] };
    const { selfNode, next } = startCluster();
    let nodes = grow(r, selfNode, next);
    const planner = new IncrementalPlanner();
    const steering = new IncrementalSteering();
    let kernel: ObservedPeer[] = [];
    let ifindex = 7;
    let incremental = 0;
    for (let step = 0; step < 150; step++) {
      nodes = touchSelf(r, change(r, nodes, next));
      const p = planner.plan({ nodes, self, config: CONFIG, established: () => ({}) });
      const changes = diffPeers(p.desired.tunnel.peers, kernel, { prune: r() < 0.9 });
      // A kernel that sometimes loses one of the changes (a failed set): the entry must say so.
      kernel = applyPeerChanges(kernel, r() < 0.1 ? changes.slice(1) : changes);
      if (r() < 0.02) ifindex++;
      const input: SteeringPlanInput = {
        self: SELF.name,
        clusterCidrs: r() < 0.02 ? ['100.64.0.0/10', '100.70.3.0/24'] : ['100.64.0.0/10'],
        nodes,
        desiredPeers: p.desired.tunnel.peers,
        observedPeers: kernel,
        target: { action: 'redirect', ifindex },
        nodeToNode: false,
      };
      const got = steering.plan(input, p.changed);
      expect({ seed, step, entries: got.entries }).toStrictEqual({ seed, step, entries: planSteering(input) });
      if (got.incremental) incremental++;
    }
    return incremental;
  }

  it('equals planSteering() after every random change, and most changes take the incremental path', () => {
    const seeds = Array.from({ length: 12 }, (_, i) => i + 1);
    const incremental = seeds.map(runSteeringSeed);
    expect(incremental.reduce((a, b) => a + b, 0)).toBeGreaterThan((seeds.length * 150) / 3);
  });
});
