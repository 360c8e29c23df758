/**
 * First-seen key ownership in mode ipsec (issue 16 finding 6): the same book as mode wireguard
 * (keymgr/keyowners.ts, `<stateDir>/key-owners.json`) completes the pass's established sets, so a
 * restarted IPsec agent (no in-memory history) keeps the node it first saw with a key and skips
 * the node that copied it, instead of skipping both. IPsec keys are recorded as `ipsec:<key>`,
 * apart from the identity (WireGuard-annotation) keys, which mode wireguard records bare.
 */
import { establishedWithOwners } from '../../keymgr/keyowners.js';
import { tryParsePublicKey, type PublicKey } from '../../keymgr/keys.js';
import { ANNOTATIONS } from '../../common/constants.js';
import type { RawNode } from '../ports/model.js';
import type { ReconcilerDeps } from './deps.js';

const IPSEC = 'ipsec:';

/** The pass's established maps (identity keys, IPsec keys), completed from the first-seen book. */
export function ipsecEstablishedWithOwners(a: {
  readonly deps: Pick<ReconcilerDeps, 'keyOwners' | 'metrics' | 'log' | 'config'>;
  readonly nodes: readonly RawNode[];
  readonly identities: Readonly<Record<string, PublicKey>>;
  readonly established: Readonly<Record<string, PublicKey>>;
  /** Conflicts already counted (key/claimant), kept by the caller between passes; bounded here. */
  readonly counted: Set<string>;
  readonly now: number;
}): { identities: Record<string, PublicKey>; established: Record<string, PublicKey> } {
  const book = a.deps.keyOwners;
  if (book === undefined) return { identities: { ...a.identities }, established: { ...a.established } };
  const idPublished: Record<string, string> = {};
  const ipsecPublished: Record<string, string> = {};
  const claims: Record<string, string[]> = {};
  for (const raw of a.nodes) {
    if (raw.name === a.deps.config.nodeName) continue;
    const mine: string[] = [];
    const id = raw.annotations[ANNOTATIONS.wireguardPublicKey];
    if (id !== undefined && tryParsePublicKey(id).ok) {
      idPublished[raw.name] = id;
      mine.push(id);
    }
    const ik = raw.annotations[ANNOTATIONS.ipsecPublicKey];
    if (ik !== undefined && tryParsePublicKey(ik).ok) {
      ipsecPublished[raw.name] = `${IPSEC}${ik}`;
      mine.push(`${IPSEC}${ik}`);
    }
    if (mine.length > 0) claims[raw.name] = mine;
  }
  for (const c of book.record(claims, a.now)) {
    const id = `${c.key}/${c.claimant}`;
    if (a.counted.has(id) || a.counted.size > 10_000) continue;
    a.counted.add(id);
    a.deps.metrics.keyOwnerConflicts.inc();
    a.deps.log.warn(
      { node: c.claimant, owner: c.owner || undefined, kind: c.key.startsWith(IPSEC) ? 'ipsec' : 'identity' },
      'a node publishes a key another node was seen with first (or at the same time); the older claim keeps it',
    );
  }
  const owners = book.owners;
  const prefixed = Object.fromEntries(Object.entries(a.established).map(([n, k]) => [n, `${IPSEC}${k}`]));
  const ipsec = establishedWithOwners(prefixed, owners, ipsecPublished);
  return {
    identities: establishedWithOwners(a.identities, owners, idPublished) as Record<string, PublicKey>,
    established: Object.fromEntries(Object.entries(ipsec).map(([n, k]) => [n, k.slice(IPSEC.length) as PublicKey])),
  };
}
