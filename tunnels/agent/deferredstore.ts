/**
 * The node store as the reconciler and the status service see it while the real one is still
 * being built: importing the Kubernetes client is most of the agent's start-up (seconds on a
 * loaded node), and the restore of the last applied state (tunnels/reconcile/restore.ts) must not
 * wait for it. Empty and not synced until {@link DeferredNodeStore.set}; then everything is the
 * real store's.
 */
import { SealnetError } from '../../common/errors.js';
import type { NodeStore, NodeStoreEvents } from '../ports/index.js';
import type { RawNode } from '../ports/model.js';

/** A {@link NodeStore} that stands in for one not built yet. */
export class DeferredNodeStore implements NodeStore {
  private inner: NodeStore | undefined;

  /** The real store; every call goes to it from now on. */
  set(store: NodeStore): void {
    this.inner = store;
  }

  async start(events: NodeStoreEvents): Promise<void> {
    if (this.inner === undefined) throw new SealnetError('INTERNAL', 'node store started before it was built');
    await this.inner.start(events);
  }

  async stop(): Promise<void> {
    await this.inner?.stop();
  }

  list(): readonly RawNode[] {
    return this.inner?.list() ?? [];
  }

  synced(): boolean {
    return this.inner?.synced() ?? false;
  }

  async patchAnnotations(name: string, annotations: Readonly<Record<string, string | undefined>>): Promise<void> {
    if (this.inner === undefined)
      throw new SealnetError('STORE_IO', `cannot patch node ${name}: the node store is not started yet; retrying`);
    await this.inner.patchAnnotations(name, annotations);
  }
}
