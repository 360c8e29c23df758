/**
 * The rotation-specific steps of a reconcile pass, kept out of `reconciler.ts`: the
 * rotation datapath (addresses, qdisc, mirror) before routes move, and after apply the reports
 * about other nodes' keys, this node's rotation annotations and one state-machine step.
 */
import { ANNOTATIONS } from '../../common/constants.js';
import { describeError, SealnetError } from '../../common/errors.js';
import type { DesiredWireGuardState, RawNode } from '../ports/model.js';
import type { MirrorPort, NodeStore, ObservedPeer } from '../ports/index.js';
import type { Logger } from '../../common/logger.js';
import {
  encodeReportsAnnotation,
  handshakesByNode,
  rotationReports,
  type RotationController,
  type RotationPassPlan,
} from './wireguard.js';

/** How long a verified rotation datapath (mirror, qdisc, addresses) is trusted without a re-read. */
const RECHECK_MS = 10_000;

/** What {@link applyRotationDatapath} last verified (kept by the reconciler between passes). */
export interface DatapathMemo {
  key: string;
  at: number;
}

/**
 * The rotation datapath, in place before any route moves into the new link: an IPv4 address on
 * both links (reverse-path filtering, loose mode included, drops what arrives on an
 * address-less link that the route back does not use, and during a rotation peers send to
 * either link), the new link's clsact qdisc (adding one deactivates a device for a moment,
 * harmless while the link is new and idle), and the mirror that copies what leaves the new link
 * into the old one while peers move between the two keys. At the end, the mirror goes before
 * the old link does. What was verified is not read again for a while (each check spawns tc or
 * ip). Returns the new memo; failures go to `fail`.
 */
export async function applyRotationDatapath(a: {
  readonly mirror: MirrorPort;
  readonly rot: RotationPassPlan;
  readonly incoming: string;
  readonly active: string;
  readonly retire: boolean;
  /** IPv4 address for both links (the pod gateway, else the endpoint), if there is one. */
  readonly v4: string | undefined;
  readonly memo: DatapathMemo | undefined;
  readonly ops: Record<string, number>;
  readonly fail: (step: string, err: unknown) => void;
  readonly warn: (msg: string) => void;
}): Promise<DatapathMemo | undefined> {
  const key = JSON.stringify([a.incoming, a.active, a.rot.mirror, a.retire, a.v4]);
  if (a.memo?.key === key && Date.now() - a.memo.at < RECHECK_MS) return a.memo;
  const { mirror: m, ops } = a;
  try {
    for (const name of a.retire ? [] : [a.incoming, a.active]) {
      if (a.v4 !== undefined && (await m.ensureAddress(name, a.v4))) ops.address_add = (ops.address_add ?? 0) + 1;
    }
    if (await m.prepare(a.incoming)) ops.qdisc_add = (ops.qdisc_add ?? 0) + 1;
    if (a.rot.mirror && !a.retire) {
      try {
        if (await m.setMirror(a.incoming, a.active)) ops.mirror_set = (ops.mirror_set ?? 0) + 1;
      } catch (err) {
        // A kernel without cls_u32/act_mirred: rotate anyway (packets in flight while each peer
        // moves may be lost, never sent in plaintext) rather than hold every rotation forever.
        if (!(err instanceof SealnetError && err.code === 'KERNEL_FEATURE_MISSING')) throw err;
        a.warn(`rotating without the mirror (${describeError(err)}): packets sent while each peer moves may be lost`);
      }
    } else if (await m.clearMirror(a.incoming)) ops.mirror_clear = (ops.mirror_clear ?? 0) + 1;
    return { key, at: Date.now() };
  } catch (err) {
    a.fail('mirror', err);
    return undefined;
  }
}

/** Public keys with a completed handshake on every one of the given links. */
export function handshakesOnEveryLink(links: readonly (readonly ObservedPeer[])[]): Set<string> {
  const sets = links.map(
    (peers) => new Set(peers.filter((p) => p.latestHandshake > 0).map((p) => p.publicKey as string)),
  );
  const [first, ...rest] = sets;
  return new Set([...(first ?? [])].filter((k) => rest.every((s) => s.has(k))));
}

/**
 * After apply: what this node reports about other nodes' next keys, this node's own rotation
 * annotations (published only now that the datapath of their phase is in place), and one step
 * of this node's rotation state machine.
 */
export async function afterRotation(p: {
  readonly nodeName: string;
  readonly store: NodeStore;
  readonly log: Logger;
  readonly rotation: Pick<RotationController, 'annotations' | 'after'> | undefined;
  readonly self: RawNode;
  readonly endpointHost: string;
  readonly desired: DesiredWireGuardState;
  readonly readBack: readonly { name: string; peers: readonly ObservedPeer[] }[];
  readonly secondary: string | undefined;
  readonly retiredPresent: boolean;
  readonly applied: boolean;
  readonly fail: (step: string, err: unknown) => void;
}): Promise<void> {
  const reports = rotationReports(
    p.desired.tunnel.following ?? [],
    p.readBack.map((l) => l.peers),
  );
  const want: Record<string, string | undefined> = {
    [ANNOTATIONS.rotationPeers]: encodeReportsAnnotation(reports),
    ...(p.rotation?.annotations(p.endpointHost) ?? {}),
  };
  // Against the store as it is now: the pass may have published some of these with its key.
  const nodes = p.store.list();
  const self = nodes.find((n) => n.name === p.nodeName) ?? p.self;
  const diff = Object.fromEntries(Object.entries(want).filter(([k, v]) => self.annotations[k] !== v));
  if (Object.keys(diff).length > 0) {
    try {
      await p.store.patchAnnotations(p.nodeName, diff);
      p.log.info({ keys: Object.keys(diff) }, 'published rotation state');
    } catch (err) {
      p.fail('publish', err);
    }
  }
  if (p.rotation === undefined) return;
  const incomingPeers = p.secondary === undefined ? [] : (p.readBack.find((l) => l.name === p.secondary)?.peers ?? []);
  await p.rotation.after({
    // The store as it is now, not the snapshot this pass planned from: a peer's report that
    // arrived while the pass ran (several seconds on a busy host) must count before a timeout or
    // the end of the grace period gives up on that peer.
    nodes,
    synced: p.store.synced(),
    applied: p.applied,
    peers: [...new Set(p.desired.tunnel.peers.map((x) => x.node))],
    // Only the key that owns a node's pod CIDRs counts: that is the session the new link's
    // traffic to the node uses once routes move into it (a handshake with another key of a
    // rotating node says nothing about it).
    incomingHandshakes: handshakesByNode(
      p.desired.tunnel.peers.filter((x) => x.allowedIPs.length > 0),
      incomingPeers,
    ),
    activeLinkPresent: p.retiredPresent,
  });
}
