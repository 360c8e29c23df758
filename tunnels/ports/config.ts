/**
 * The agent's validated configuration as plain types (validation and loading live in
 * `tunnels/agent/config.ts`); every room reads it, only the agent builds it.
 */
import type { PqMode } from '../../keymgr/pq/exchange.js';
import type { Mode } from './model.js';

/** Where Node objects come from. */
export type StoreConfig =
  | { readonly type: 'file'; readonly dir: string }
  | {
      readonly type: 'kubernetes';
      readonly kubeconfig?: string | undefined;
      /**
       * Remove the `sealnet.io/not-ready:NoSchedule` taint from this node's Node once the guard is
       * attached and the first pass converged (default true; tunnels/agent/not-ready-taint.ts).
       */
      readonly removeNotReadyTaint?: boolean | undefined;
    };

/** Validated agent configuration. */
export interface AgentConfig {
  readonly nodeName: string;
  readonly mode: Mode;
  readonly stateDir: string;
  readonly store: StoreConfig;
  readonly wireguard: {
    readonly listenPort: number;
    readonly implementation: 'auto' | 'kernel' | 'userspace';
    readonly wireguardGoPath: string;
    readonly wgPath: string;
    readonly persistentKeepalive: number;
    /**
     * At start, program the link, peers, routes and steering entries the last clean pass applied
     * (`<stateDir>/last-applied.json`) before the node store synced (default true).
     */
    readonly restoreLastApplied: boolean;
  };
  /** Periodic full reconcile; nothing is written to the kernel when nothing differs. */
  readonly resyncIntervalSeconds: number;
  /** Store events within this window are coalesced into one reconcile. */
  readonly debounceMs: number;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Address the metrics/health HTTP server listens on (`host:port`), or "" to disable. */
  readonly metricsAddress: string;
  /** Tunnel endpoint address to publish; default: the node's first InternalIP. */
  readonly endpointAddress: string | undefined;
  /** Underlay MTU override; default: the MTU of the link that carries the endpoint address. */
  readonly underlayMtu: number | undefined;
  /** BPF steering and fail-closed. */
  readonly steering: SteeringConfig;
  /** Status report publication and the `/status` endpoint (tunnels/status/service.ts). */
  readonly status: StatusConfig;
  /** Mode ipsec: SA parameters (tunnels/reconcile/ipsec-pass.ts). */
  readonly ipsec: IpsecConfig;
  /** Key rotation (tunnels/rotation/wireguard.ts). */
  readonly rotation: RotationConfig;
  /** Post-quantum pair secret (issue 19; keymgr/pq/). */
  readonly postQuantum: PostQuantumConfig;
}

/** The `postQuantum` block (keymgr/pq/exchange.ts gives the modes their meaning). */
export interface PostQuantumConfig {
  /** `off` (default): classical only; `preferred`: hybrid once exchanged; `required`: hybrid or dropped. */
  readonly mode: PqMode;
  /** Renew each pair's ML-KEM secret this often, 1–1440 minutes (a secret expires after two periods). */
  readonly renewMinutes: number;
}

/** The `rotation` block. */
export interface RotationConfig {
  /** How long the old key keeps working after the switch, for peers that have not moved. */
  readonly graceSeconds: number;
  /** How long a rotation waits for peers to stage or move the new key before going on without them. */
  readonly peerTimeoutSeconds: number;
  /** Rotate automatically when the key is this old (staggered per node); 0 = never. */
  readonly maxKeyAgeSeconds: number;
  /** Automatic rotations wait while this many other nodes are rotating. */
  readonly maxConcurrentAuto: number;
}

/** The `ipsec` block (used in mode ipsec only). */
export interface IpsecConfig {
  /** AES key size of `rfc4106(gcm(aes))`: 128 or 256 (default). */
  readonly keyBits: 128 | 256;
  /** Anti-replay window of inbound SAs in packets, 1–4096 (default 1024; ESN is always on). */
  readonly replayWindow: number;
}

/** The `status` block. */
export interface StatusConfig {
  /** Publish the `sealnet.io/status` annotation on the own Node. */
  readonly publish: boolean;
  /** Republish at least this often even when nothing changed (counters are this old at most). */
  readonly heartbeatSeconds: number;
  /** Never publish more often than this (a state change waits for it). */
  readonly minIntervalSeconds: number;
  /** Bearer token file of `/status`; default `<stateDir>/status.token` (created, 0600). */
  readonly tokenFile: string | undefined;
  /**
   * Serve `/status` alone (bearer token required) on this address too, for the API server's pod
   * proxy (`sealctl status --store kubernetes`): the node's own IP, given by the chart from the
   * downward API. Undefined: no network listener for `/status`.
   */
  readonly listenHost: string | undefined;
  /** Port of {@link listenHost}. Default 9589. */
  readonly listenPort: number;
}

/** The `steering` block. */
export interface SteeringConfig {
  /** Attach the TC programs at all (false: routes only, no fail-closed guard; shown in status). */
  readonly enabled: boolean;
  /** Drop pod traffic to remote nodes without a ready tunnel (default), or let it pass, counted. */
  readonly failClosed: boolean;
  /**
   * The cluster's whole pod range(s). Dropped unless a ready tunnel covers the destination, from
   * the first packet after start-up (before the node store has even synced).
   */
  readonly clusterCidrs: readonly string[];
  /** Destinations that always pass (API server endpoints, so a node can always publish its key). */
  readonly exemptCidrs: readonly string[];
  /** Underlay interfaces to guard; default: the link carrying the endpoint address. */
  readonly interfaces: readonly string[];
  /** Also drop plaintext arriving from remote pod prefixes (the receiving side's guard). */
  readonly enforceIngress: boolean;
  /**
   * Node-to-node (host network) encryption, mode wireguard: remote nodes' InternalIPs join their
   * peers' allowed IPs and the egress program redirects host traffic to them into the tunnel
   * (tunnels/reconcile/nodetonode.ts). Traffic to or from `exemptCidrs` (the API server) stays plaintext.
   */
  readonly nodeToNode: boolean;
  /**
   * Networks node addresses (InternalIPs) must lie in to be encrypted node-to-node; empty: the
   * planner's default (private, shared and benchmarking ranges, ULA). Another node chooses its
   * addresses, so an address outside these (a public resolver, a metadata service) is ignored.
   */
  readonly nodeCidrs: readonly string[];
}
