/**
 * The stand-in node store the agent hands to the reconciler and the status service before the
 * real one is built (the Kubernetes client import is seconds of a loaded node's start): empty and
 * never synced until `set`, a clear retryable error for a patch, then every call is the real
 * store's.
 */
import { describe, expect, it } from '@jest/globals';
import { SealnetError } from '../../common/errors.js';
import { MemoryNodeStore } from '../ports/kernel.fake.js';
import type { NodeStoreEvents } from '../ports/index.js';
import type { RawNode } from '../ports/model.js';
import { DeferredNodeStore } from './deferredstore.js';

function node(name: string): RawNode {
  return { name, internalIPs: ['198.18.0.2'], podCIDRs: ['100.64.2.0/24'], annotations: {} };
}

const quiet: NodeStoreEvents = { onChange: () => undefined, onSynced: () => undefined, onError: () => undefined };

describe('DeferredNodeStore', () => {
  it('before the real store is set: empty, not synced, a patch fails with a retryable message, start refuses', async () => {
    const s = new DeferredNodeStore();
    expect(s.list()).toEqual([]);
    expect(s.synced()).toBe(false);
    await expect(s.patchAnnotations('n1', { 'sealnet.io/x': 'y' })).rejects.toThrow(
      /cannot patch node n1: the node store is not started yet; retrying/,
    );
    await expect(s.start(quiet)).rejects.toBeInstanceOf(SealnetError);
    await expect(s.stop()).resolves.toBeUndefined(); // nothing to stop: no error on shutdown
  });

  it('after set: list, synced, events, patches and stop are the real store’s', async () => {
    const real = new MemoryNodeStore([node('n2'), node('n1')]);
    const s = new DeferredNodeStore();
    s.set(real);
    const changes: string[][] = [];
    let synced = 0;
    await s.start({
      onChange: (nodes) => changes.push(nodes.map((n) => n.name)),
      onSynced: () => synced++,
      onError: () => undefined,
    });
    expect(s.synced()).toBe(false);
    real.setSynced();
    expect([s.synced(), synced]).toEqual([true, 1]);
    expect(s.list().map((n) => n.name)).toEqual(['n1', 'n2']);
    real.upsert(node('n3'));
    real.emitChange();
    expect(changes).toEqual([['n1', 'n2', 'n3']]);
    expect(s.list().map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    await s.patchAnnotations('n1', { 'sealnet.io/status': 'ok' });
    expect(real.patches).toEqual([{ name: 'n1', annotations: { 'sealnet.io/status': 'ok' } }]);
    await s.stop();
    real.upsert(node('n4'));
    real.emitChange(); // stopped: the real store no longer calls back
    expect(changes).toHaveLength(1);
  });
});
