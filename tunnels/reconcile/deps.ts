/**
 * What the reconcile loop and its passes are given: config, own key, node store and every driver
 * port. Built by the agent (tunnels/agent/main.ts), the one place that wires real drivers.
 */
import type { KeyOwnerBook } from '../../keymgr/keyowners.js';
import type { PublicKey } from '../../keymgr/keys.js';
import type { Logger } from '../../common/logger.js';
import type { LogRateLimitOptions } from '../../common/ratelimit.js';
import type { AgentMetrics } from '../../common/metrics.js';
import type { AgentConfig } from '../ports/config.js';
import type {
  LastAppliedPort,
  MirrorPort,
  NodeStore,
  RoutingPort,
  SteeringPort,
  WireGuardPort,
} from '../ports/index.js';
import type { RotationController } from '../rotation/wireguard.js';
import type { IpsecPort } from '../ports/ipsec.js';
import type { PqPassHook } from '../ports/pq.js';
import type { IpsecRotation } from '../rotation/ipsec.js';

/** This node's own key, as the key store holds it. */
export interface OwnKey {
  readonly publicKey: PublicKey;
  readonly privateKeyFile: string;
  readonly epoch: number;
  readonly createdAt: Date;
}

/** Everything the reconciler needs. */
export interface ReconcilerDeps {
  readonly config: AgentConfig;
  readonly key: OwnKey;
  readonly store: NodeStore;
  readonly wg: WireGuardPort;
  readonly routing: RoutingPort;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** BPF steering (fail-closed guard); undefined when `steering.enabled` is false. */
  readonly steering?: SteeringPort | undefined;
  /** Mode ipsec: the IPsec driver and this node's IPsec key (tunnels/reconcile/ipsec-pass.ts). */
  readonly ipsec?: IpsecRuntime | undefined;
  /** Key rotation (tunnels/rotation/wireguard.ts); undefined: one fixed key on `WG_INTERFACE`. */
  readonly rotation?: Pick<RotationController, 'begin' | 'annotations' | 'after' | 'idleLink'> | undefined;
  /** The rotation mirror (routing/mirror.ts); undefined: rotations run without it (packets may be lost). */
  readonly mirror?: MirrorPort | undefined;
  /**
   * Node-to-node mode: sets loose reverse-path filtering on a tunnel link, true when it wrote
   * (`ensureLooseRpFilter`, routing/rpfilter.ts, wired by the agent). Without it node-to-node
   * links report the step as failed; steering still follows the tunnel.
   */
  readonly rpFilter?: ((link: string) => Promise<boolean>) | undefined;
  /**
   * First-seen key ownership kept in the state dir (keymgr/keyowners.ts): an agent without
   * in-memory history (a restart, a new node) prefers the older claim to a copied key.
   */
  readonly keyOwners?: Pick<KeyOwnerBook, 'owners' | 'record'> | undefined;
  /**
   * The post-quantum exchange (tunnels/pq/service.ts; mode wireguard, `postQuantum` not off): its
   * annotations, the pairs `required` mode blocks, and what each pass programmed.
   */
  readonly pq?: PqPassHook | undefined;
  /**
   * The last applied state file (`<stateDir>/last-applied.json`, keymgr/statefile.ts): written
   * after each clean pass that changed it once the store synced, read back at start
   * (tunnels/reconcile/restore.ts). Undefined: neither.
   */
  readonly lastApplied?: LastAppliedPort | undefined;
  /** The clock of the log rate limit (ms; default `Date.now`): lines about other nodes' input. */
  readonly now?: (() => number) | undefined;
  /** Rate limit of lines about one (node, reason) (common/ratelimit.ts; default 3 at once, then 1 a minute). */
  readonly logLimit?: LogRateLimitOptions | undefined;
}

/** What the agent builds for mode ipsec at start-up (tunnels/agent/ipsec.ts). */
export interface IpsecRuntime {
  readonly port: IpsecPort;
  /** This node's current IPsec public key, its epoch and creation time (the private key stays in the driver's callback). */
  readonly key: { readonly publicKey: PublicKey; readonly epoch: number; readonly createdAt?: Date | undefined };
  /** Outer address families `checkKernel` passed for at start-up. */
  readonly checkedFamilies: readonly (4 | 6)[];
  /**
   * Key rotation (tunnels/rotation/ipsec.ts): the keys each pass plans with, the annotations it
   * publishes, one state-machine step after each apply. Without it the node keeps `key`.
   */
  readonly rotation?: Pick<IpsecRotation, 'keys' | 'annotations' | 'after'> | undefined;
  /**
   * This node's IPsec generation (keymgr/generation.ts), published and mixed into the SPIs and
   * keys of pairs whose peer publishes one too; undefined: none (SAs derive as before generations).
   */
  readonly generation?: number | undefined;
}
