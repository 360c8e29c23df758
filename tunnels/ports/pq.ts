/**
 * What a WireGuard pass asks of the post-quantum exchange (issue 19; tunnels/pq/service.ts
 * implements it, the agent wires it). The pass stays the one writer of routes, peers and
 * steering: the exchange only says which pairs must not carry traffic yet and publishes its
 * own annotations through the pass.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import type { RawNode } from './model.js';

/** One pair's post-quantum protection as `sealctl status` shows it. */
export interface PqPairStatus {
  readonly node: string;
  /** The KEM, `ML-KEM-768`. */
  readonly kem: string;
  readonly role: 'initiator' | 'responder';
  readonly phase: 'idle' | 'sent' | 'confirmed';
  /** `hybrid`: a post-quantum PSK is installed; `classical`: X25519 only; `none`: dropped. */
  readonly protection: 'hybrid' | 'classical' | 'none';
  readonly ready: boolean;
  readonly secretAgeSeconds?: number;
  /** When the secret in use was established (RFC 3339). */
  readonly lastRenewal?: string;
  readonly reason?: string;
}

/** The post-quantum side of a WireGuard pass. */
export interface PqPassHook {
  /**
   * The annotations this node publishes for its exchange (ML-KEM key, exchange address), given
   * the node and its local addresses; undefined when it cannot publish yet (no own address
   * inside its own pod CIDRs). Also (re)starts the exchange listener on that address.
   */
  ownAnnotations(self: RawNode, localAddresses: readonly string[]): Record<string, string> | undefined;
  /**
   * `postQuantum: required`: the nodes among `nodes` whose pair must not carry traffic now
   * (no confirmed, installed, unexpired secret), each with the exchange address the pass keeps
   * routed through the tunnel so the exchange can still happen (undefined: none usable).
   * Empty in modes `off` and `preferred`.
   */
  blocked(nodes: readonly RawNode[]): ReadonlyMap<string, string | undefined>;
  /** What the pass programmed: the link and, per node, the peer key read back from it. */
  programmed(a: {
    readonly link: string;
    readonly ifindex: number;
    readonly selfKey: PublicKey;
    readonly nodes: readonly RawNode[];
    readonly peers: ReadonlyMap<string, PublicKey>;
  }): void;
}
