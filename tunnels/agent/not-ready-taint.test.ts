/**
 * When the agent lifts `sealnet.io/not-ready:NoSchedule` from its own Node: only after the store
 * synced, a pass that started after the sync converged, and the guard is attached; once; never
 * adding it. The API server's side (the JSON patch, the admission policy) is test/k8s/.
 */
import { describe, expect, it } from '@jest/globals';
import { NOT_READY_TAINT } from '../../common/constants.js';
import type { Logger } from '../../common/logger.js';
import type { NodeTaint, NodeTaintPort } from '../ports/index.js';
import type { ReconcileReport } from '../ports/model.js';
import { NotReadyTaint } from './not-ready-taint.js';

/** A Node's taints in memory; records every call. */
class FakeTaints implements NodeTaintPort {
  readonly calls: { node: string; key: string; effect: string }[] = [];
  taints: NodeTaint[];
  failWith: Error | undefined;
  constructor(taints: NodeTaint[]) {
    this.taints = taints;
  }
  async removeTaint(node: string, t: Pick<NodeTaint, 'key' | 'effect'>): Promise<'removed' | 'absent'> {
    this.calls.push({ node, key: t.key, effect: t.effect });
    if (this.failWith !== undefined) throw this.failWith;
    const before = this.taints.length;
    this.taints = this.taints.filter((x) => !(x.key === t.key && x.effect === t.effect));
    return this.taints.length < before ? 'removed' : 'absent';
  }
}

function pass(o: Partial<ReconcileReport> = {}): ReconcileReport {
  return { kernelOps: {}, errors: [], desired: undefined, pruned: true, converged: true, ...o };
}

function logs(): { log: Logger; lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at =
    (level: string) =>
    (_f: object, msg: string): void => {
      lines.push({ level, msg });
    };
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

const OTHER: NodeTaint = { key: 'example.com/dedicated', effect: 'NoSchedule', value: 'db' };

function setup(o: { steeringEnabled?: boolean; taints?: NodeTaint[] } = {}) {
  const port = new FakeTaints(o.taints ?? [{ ...NOT_READY_TAINT }, OTHER]);
  const state = { synced: false, attached: false, report: undefined as ReconcileReport | undefined };
  const { log, lines } = logs();
  const c = new NotReadyTaint({
    nodeName: 'node-a',
    port,
    steeringEnabled: o.steeringEnabled ?? true,
    guardAttached: () => state.attached,
    storeSynced: () => state.synced,
    lastPass: () => state.report,
    log,
  });
  return { c, port, state, lines };
}

describe('the not-ready taint', () => {
  it('is removed only once the store synced, a later pass converged and the guard is attached', async () => {
    const { c, port, state } = setup();
    expect(await c.check()).toEqual({ state: 'waiting', reason: 'the node store has not synced' });
    // A pass that ran before the sync (a partial node list) does not count.
    state.report = pass();
    state.synced = true;
    expect(await c.check()).toEqual({
      state: 'waiting',
      reason: 'no reconcile pass has finished since the store synced',
    });
    state.report = pass({ converged: false });
    expect(await c.check()).toEqual({ state: 'waiting', reason: 'the last reconcile pass did not converge' });
    state.report = pass({ errors: [{ step: 'peers', message: 'x' }] });
    expect(await c.check()).toMatchObject({ state: 'waiting', reason: expect.stringContaining('(1 errors)') });
    state.report = pass();
    expect(await c.check()).toEqual({ state: 'waiting', reason: 'the BPF guard is not attached' });
    expect(port.calls).toEqual([]);
    state.attached = true;
    expect(await c.check()).toEqual({ state: 'removed' });
    expect(port.calls).toEqual([{ node: 'node-a', key: 'sealnet.io/not-ready', effect: 'NoSchedule' }]);
    // Only that taint: another one stays.
    expect(port.taints).toEqual([OTHER]);
    expect(c.done).toBe(true);
  });

  it('told of the sync when it happens, it counts the first pass after it even if no check ran in between', async () => {
    const { c, port, state } = setup();
    state.report = pass({ converged: false });
    state.synced = true;
    c.storeSynced(); // the agent's onSynced, before it triggers the next pass
    state.report = pass();
    state.attached = true;
    expect(await c.check()).toEqual({ state: 'removed' });
    expect(port.calls).toHaveLength(1);
    // Without being told, the first check takes the mark itself: one pass later.
    const late = setup();
    late.state.synced = true;
    late.state.attached = true;
    late.state.report = pass();
    expect(await late.c.check()).toMatchObject({ state: 'waiting' });
    late.state.report = pass();
    expect(await late.c.check()).toEqual({ state: 'removed' });
  });

  it('does not wait for a guard when steering is disabled (nothing would ever attach one)', async () => {
    const { c, port, state, lines } = setup({ steeringEnabled: false });
    state.synced = true;
    await c.check();
    state.report = pass();
    expect(await c.check()).toEqual({ state: 'removed' });
    expect(port.taints).toEqual([OTHER]);
    expect(lines).toContainEqual({ level: 'info', msg: expect.stringContaining('steering disabled: no guard') });
  });

  it('acts once per run: after a removal, or on a Node without the taint (a restart), it never calls again and never adds it', async () => {
    const { c, port, state } = setup({ taints: [OTHER] });
    state.synced = true;
    await c.check();
    state.report = pass();
    state.attached = true;
    expect(await c.check()).toEqual({ state: 'absent' });
    // An operator (or a kubelet re-registration) puts the taint back: this run leaves it alone.
    port.taints = [{ ...NOT_READY_TAINT }, OTHER];
    state.attached = false;
    expect(await c.check()).toEqual({ state: 'absent' });
    expect(port.calls).toHaveLength(1);
    expect(port.taints).toEqual([{ ...NOT_READY_TAINT }, OTHER]);
  });

  it('retries a refused removal, logging each distinct error once', async () => {
    const { c, port, state, lines } = setup();
    state.synced = true;
    await c.check();
    state.report = pass();
    state.attached = true;
    port.failWith = new Error('403 denied by ValidatingAdmissionPolicy');
    expect(await c.check()).toMatchObject({ state: 'failed', error: expect.stringContaining('403') });
    expect(await c.check()).toMatchObject({ state: 'failed' });
    expect(lines.filter((l) => l.level === 'error')).toHaveLength(1);
    expect(c.done).toBe(false);
    port.failWith = undefined;
    expect(await c.check()).toEqual({ state: 'removed' });
    expect(port.calls).toHaveLength(3);
  });

  it('start() polls until it removed the taint, then stops', async () => {
    const { c, port, state } = setup();
    c.start(5);
    state.synced = true;
    await new Promise((r) => setTimeout(r, 30));
    state.report = pass();
    state.attached = true;
    for (let i = 0; i < 100 && !c.done; i++) await new Promise((r) => setTimeout(r, 10));
    expect(c.done).toBe(true);
    await new Promise((r) => setTimeout(r, 30));
    expect(port.calls).toHaveLength(1);
    c.stop();
  });
});
