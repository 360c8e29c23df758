/**
 * First-seen key ownership for both modes: every pass records which keys each node publishes
 * in the agent's book (keymgr/keyowners.ts, persisted in the state dir) and completes the
 * planner's `established` maps from it, so an agent without history (a new node, a restarted
 * agent) still gives a copied key to the node that had it first (issue 16 finding 6).
 */
import { establishedWithOwners, type KeyOwnerBook } from '../../keymgr/keyowners.js';
import { fingerprint, type PublicKey } from '../../keymgr/keys.js';
import type { Logger } from '../../common/logger.js';

/** At most this many distinct conflicts are remembered as "already logged". */
const MAX_LOGGED = 10_000;

/**
 * Records `claims` (node → keys it publishes) in `book` and logs each new conflict once per
 * (key, claimant) — a lasting conflict must not write a line every pass. Returns `established`
 * maps completed from first-seen ownership, one per entry of `published` (node → key).
 */
export function completeFromOwners<K extends string>(
  book: Pick<KeyOwnerBook, 'owners' | 'record'>,
  claims: Readonly<Record<string, readonly string[]>>,
  established: Readonly<Record<K, Readonly<Record<string, PublicKey>>>>,
  published: Readonly<Record<K, Readonly<Record<string, string>>>>,
  logged: Set<string>,
  log: Logger,
  now = Date.now(),
): Record<K, Record<string, PublicKey>> {
  for (const c of book.record(claims, now)) {
    const id = `${c.key}/${c.claimant}`;
    if (logged.has(id) || logged.size > MAX_LOGGED) continue;
    logged.add(id);
    log.warn(
      { node: c.claimant, owner: c.owner || undefined, key: fingerprint(c.key as PublicKey) },
      'a node publishes a key another node was seen with first (or at the same time); the older claim keeps it',
    );
  }
  const out = {} as Record<K, Record<string, PublicKey>>;
  for (const k of Object.keys(established) as K[]) {
    out[k] = establishedWithOwners(established[k], book.owners, published[k]) as Record<string, PublicKey>;
  }
  return out;
}
