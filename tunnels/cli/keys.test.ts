import { beforeAll, describe, expect, it } from '@jest/globals';
import { parseAddresses, parseMirrorTarget, parseQdiscKinds } from '../../routing/mirror.js';
import { sodiumReady } from '../../keymgr/keys.js';
import { MemoryNodeStore } from '../ports/kernel.fake.js';
import { fixtureCluster, type FixtureCluster } from '../../test/fixtures.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { checkTargets, judge, parseRotateArgs, runKeys } from './keys.js';
import type { RawNode } from '../ports/model.js';
import { decodeRotateRequest, encodeRotateRequest, encodeRotationStatus } from '../plan/rotation-codec.js';

// `sealctl keys rotate`: argument parsing, the refusals, and --wait against an in-memory store
// whose "agents" the test plays.

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});
const T = new Date('2026-04-01T00:00:00.000Z');
const IDLE = encodeRotationStatus({ phase: 'idle' });

function nodes(over: Record<string, Record<string, string>> = {}): RawNode[] {
  return C.nodes.map((n) => ({
    ...n,
    annotations: { ...n.annotations, [ANNOTATIONS.rotation]: IDLE, ...(over[n.name] ?? {}) },
  }));
}

describe('parseRotateArgs', () => {
  it('takes --node (repeatable), --all, --wait, --timeout', () => {
    expect(parseRotateArgs(['rotate', '--node', 'a', '--node', 'b', '--wait', '--timeout', '30'])).toEqual({
      nodes: ['a', 'b'],
      all: false,
      wait: true,
      timeoutSeconds: 30,
    });
    expect(parseRotateArgs(['rotate', '--all'])).toEqual({ nodes: [], all: true, wait: false, timeoutSeconds: 300 });
  });
  it.each([
    [['rotate'], 'say which keys'],
    [['rotate', '--all', '--node', 'a'], 'either --node NAME or --all'],
    [['rotate', '--node'], '--node needs a value'],
    [['rotate', '--node', 'a', '--timeout', 'soon'], '--timeout must be a whole number'],
    [['rotate', '--node', 'a', '--node', 'a'], 'named twice'],
    [['rotate', '--force'], 'unknown flag "--force"'],
    [['spin'], 'unknown subcommand "spin"'],
  ])('rejects %j', (args, msg) => {
    expect(() => parseRotateArgs(args)).toThrow(msg);
  });
});

describe('checkTargets: refusals before anything is written', () => {
  it('an unknown node, naming the nodes there are', () => {
    expect(checkTargets(nodes(), { nodes: ['node-z'], all: false }).problems).toEqual([
      'node "node-z" does not exist (nodes: node-a, node-b, node-c, node-d, node-e)',
    ]);
  });
  it('a node already rotating', () => {
    const n = nodes({
      'node-b': { [ANNOTATIONS.rotation]: encodeRotationStatus({ phase: 'moving', id: 'r-7', since: T, epoch: 2 }) },
    });
    expect(checkTargets(n, { nodes: ['node-b'], all: false }).problems).toEqual([
      'node node-b is already rotating (rotation r-7, phase moving); wait until it is done',
    ]);
  });
  it('a node with a request its agent has not started (two rotations at once)', () => {
    const n = nodes({ 'node-c': { [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-8', requestedAt: T }) } });
    expect(checkTargets(n, { nodes: [], all: true }).problems).toEqual([
      `node node-c already has a rotation requested at ${T.toISOString()} (r-8) that its agent has not started yet (is the agent running?)`,
    ]);
  });
  it('a request that was carried out does not block the next one', () => {
    const n = nodes({
      'node-c': {
        [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-8', requestedAt: T }),
        [ANNOTATIONS.rotation]: encodeRotationStatus({
          phase: 'idle',
          last: { id: 'r-8', completedAt: T, epoch: 2, lagging: [] },
        }),
      },
    });
    expect(checkTargets(n, { nodes: ['node-c'], all: false })).toEqual({ targets: ['node-c'], problems: [] });
  });
  it('an agent without rotation support; a node in mode ipsec rotates like one in mode wireguard', () => {
    const n = C.nodes.map((x) =>
      x.name === 'node-d'
        ? { ...x, annotations: { ...x.annotations, [ANNOTATIONS.mode]: 'ipsec', [ANNOTATIONS.rotation]: IDLE } }
        : x,
    );
    expect(checkTargets(n, { nodes: ['node-b', 'node-d'], all: false }).problems).toEqual([
      'node node-b: its agent publishes no sealnet.io/rotation status (an agent without key rotation?); upgrade it first',
    ]);
  });
  it('--all takes every node with sealnet annotations, sorted', () => {
    const n = [
      ...nodes(),
      { name: 'plain', annotations: {}, podCIDRs: ['100.64.9.0/24'], internalIPs: ['198.18.0.9'] },
    ];
    expect(checkTargets(n, { nodes: [], all: true })).toEqual({
      targets: ['node-a', 'node-b', 'node-c', 'node-d', 'node-e'],
      problems: [],
    });
  });
});

describe('judge', () => {
  const with_ = (ann: Record<string, string>): RawNode => ({
    ...C.nodes[0]!,
    annotations: { ...C.nodes[0]!.annotations, ...ann },
  });
  it('done only when the node is idle with this id as the last rotation', () => {
    const req = { [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-1', requestedAt: T }) };
    expect(judge(with_({ ...req, [ANNOTATIONS.rotation]: IDLE }), 'r-1')).toMatchObject({
      done: false,
      phase: 'requested',
    });
    expect(
      judge(
        with_({ ...req, [ANNOTATIONS.rotation]: encodeRotationStatus({ phase: 'grace', id: 'r-1', since: T }) }),
        'r-1',
      ),
    ).toMatchObject({ done: false, phase: 'grace' });
    expect(
      judge(
        with_({
          ...req,
          [ANNOTATIONS.rotation]: encodeRotationStatus({
            phase: 'idle',
            last: { id: 'r-1', completedAt: T, epoch: 2, lagging: ['n9'] },
          }),
        }),
        'r-1',
      ),
    ).toMatchObject({ done: true, lagging: ['n9'] });
    expect(
      judge(with_({ [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-2', requestedAt: T }) }), 'r-1').problem,
    ).toMatch(/superseded by another request \(r-2\)/);
    expect(judge(undefined, 'r-1')).toMatchObject({ phase: 'gone', problem: 'the node was deleted' });
  });
});

describe('runKeys', () => {
  it('writes the request on every target and, with --wait, follows the agents until done', async () => {
    const store = new MemoryNodeStore(nodes(), { synced: true });
    const out: string[] = [];
    let t = T.getTime();
    let step = 0;
    // The "agents": one phase per poll, on every node that was asked.
    const sleep = async (): Promise<void> => {
      t += 200;
      step++;
      for (const n of store.list()) {
        const r = n.annotations[ANNOTATIONS.rotateRequest];
        if (r === undefined) continue;
        const id = (decodeRotateRequest(r) as { ok: true; request: { id: string } }).request.id;
        const phase = ['staging', 'moving', 'grace'][step - 1];
        const status =
          phase === undefined
            ? encodeRotationStatus({ phase: 'idle', last: { id, completedAt: new Date(t), epoch: 2, lagging: [] } })
            : encodeRotationStatus({ phase: phase as 'moving', id, since: new Date(t) });
        store.upsert({ ...n, annotations: { ...n.annotations, [ANNOTATIONS.rotation]: status } });
      }
    };
    const code = await runKeys({
      store,
      json: false,
      args: ['rotate', '--node', 'node-b', '--node', 'node-c', '--wait'],
      out: (l) => out.push(l),
      now: () => new Date(t),
      sleep,
    });
    expect(code).toBe(0);
    expect(store.patches.map((p) => p.name)).toEqual(['node-b', 'node-c']);
    expect(out[0]).toMatch(/^requested key rotation r-[0-9a-z]+-[0-9a-f]{8} on node-b, node-c$/);
    expect(out).toContain('  node-b: moving after 0.4 s');
    expect(out[out.length - 1]).toMatch(
      /done on 2 nodes in 0.8 s: every pair uses the new keys, the old keys are erased/,
    );
  });

  it('refuses to request anything when one target is unknown (exit 2 through CONFIG_INVALID)', async () => {
    const store = new MemoryNodeStore(nodes(), { synced: true });
    await expect(
      runKeys({ store, json: false, args: ['rotate', '--node', 'node-b', '--node', 'ghost'] }),
    ).rejects.toThrow('node "ghost" does not exist');
    expect(store.patches).toEqual([]);
  });

  it('times out with the phase each node is stuck in, and reports lagging peers as a failure', async () => {
    const store = new MemoryNodeStore(nodes(), { synced: true });
    const out: string[] = [];
    let t = T.getTime();
    const code = await runKeys({
      store,
      json: true,
      args: ['rotate', '--node', 'node-b', '--wait', '--timeout', '1'],
      out: (l) => out.push(l),
      now: () => new Date(t),
      sleep: async () => {
        t += 400;
      },
    });
    expect(code).toBe(1);
    const summary = JSON.parse(out[out.length - 1]!) as {
      ok: boolean;
      results: { node: string; done: boolean; phase: string }[];
    };
    expect(summary.ok).toBe(false);
    expect(summary.results).toEqual([expect.objectContaining({ node: 'node-b', done: false, phase: 'requested' })]);
  });
});

describe('routing/mirror.ts parsers', () => {
  it('finds the mirror target in tc -j output', () => {
    const json =
      '[{"protocol":"all","pref":1,"kind":"u32","chain":0},{"protocol":"all","pref":1,"kind":"u32","chain":0,"options":{"fh":"800::1","actions":[{"order":1,"kind":"mirred","mirred_action":"mirror","direction":"egress","to_dev":"sealwg0","control_action":{"type":"pipe"}}]}}]';
    expect(parseMirrorTarget(json)).toBe('sealwg0');
    expect(parseMirrorTarget('')).toBeUndefined();
    expect(
      parseMirrorTarget(
        json.replace('"pref":1,"kind":"u32","chain":0,"options"', '"pref":2,"kind":"u32","chain":0,"options"'),
      ),
    ).toBeUndefined();
    expect(() => parseMirrorTarget('{')).toThrow('not JSON');
  });
  it('reads qdisc kinds and IPv4 addresses', () => {
    expect(parseQdiscKinds('[{"kind":"pfifo_fast","handle":"0:"},{"kind":"clsact","handle":"ffff:"}]')).toEqual([
      'pfifo_fast',
      'clsact',
    ]);
    expect(
      parseAddresses('[{"ifname":"sealwg1","addr_info":[{"family":"inet","local":"100.64.1.1","prefixlen":32}]}]'),
    ).toEqual(['100.64.1.1']);
  });
});
