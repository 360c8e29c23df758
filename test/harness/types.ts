/** Public data types of the namespace cluster harness ({@link NsCluster} in cluster.ts). */
import type { Mode } from '../../tunnels/ports/model.js';
import type { IpFamily } from './topology.js';

/** Options of `NsCluster.create`. */
export interface NsClusterOptions {
  /** Number of nodes (default 2). */
  readonly nodes?: number;
  /** Pods per node (default 1). */
  readonly podsPerNode?: number;
  /** Underlay MTU of every node's eth0 (default 1500). */
  readonly mtu?: number;
  /** MTU of the pod network (default: the underlay MTU, as with flannel host-gw). */
  readonly podMtu?: number;
  /** false: no agents at all, the plaintext sanity baseline (default true). */
  readonly encryption?: boolean;
  /** Mode written into every agent config (default `wireguard`). */
  readonly mode?: Mode;
  /** Start agents during create() (default: = encryption). */
  readonly startAgents?: boolean;
  /** Merged (deeply) into every agent's config. */
  readonly agentConfig?: Readonly<Record<string, unknown>>;
  /** Agent command line before `--config <file>` (default: node bin/sealnet-agent.js). */
  readonly agentCommand?: readonly string[];
  /** WireGuard UDP port in agent configs and capture analysis (default 51880). */
  readonly listenPort?: number;
  /** Run prefix (default `seal` + 6 random hex digits). */
  readonly prefix?: string;
  /** Parent of the run directory (default: the OS temp dir). */
  readonly runDirBase?: string;
  /** Keep the run directory (logs, captures) after destroy() (default: env SEALNET_KEEP_RUNDIR=1). */
  readonly keep?: boolean;
  /** Keep IPv6 enabled in every namespace (default false: IPv4-only test network; implied by an `ipFamily` with IPv6). */
  readonly ipv6?: boolean;
  /** Address families of nodes and pods (default `ipv4`); see topology.ts for the IPv6 plan. */
  readonly ipFamily?: IpFamily;
  /** Family of the underlay the tunnels run over, for `ipFamily: 'dual'` (default 4). */
  readonly underlayFamily?: 4 | 6;
  /** Install SIGINT/SIGTERM/SIGHUP handlers that tear down and exit (default true). */
  readonly handleSignals?: boolean;
  /** Progress lines (default: silent). */
  readonly log?: (line: string) => void;
}

/** A pod. */
export interface PodInfo {
  /** e.g. `n1p1`. */
  readonly name: string;
  readonly node: string;
  readonly index: number;
  readonly netns: string;
  /** The first of `addresses` (IPv4 when the pod has one). */
  readonly address: string;
  /** Every address of the pod, IPv4 first. */
  readonly addresses: readonly string[];
}

/** A node. */
export interface NodeInfo {
  /** e.g. `n1` (also the Node document's name). */
  readonly name: string;
  readonly index: number;
  readonly netns: string;
  /** Underlay address of eth0 the tunnel runs over (the first InternalIP). */
  readonly address: string;
  /** InternalIPs, the underlay family first. */
  readonly addresses: readonly string[];
  /** The first of `podCIDRs`. */
  readonly podCIDR: string;
  /** `spec.podCIDRs`: IPv4 first. */
  readonly podCIDRs: readonly string[];
  /** The first of `podGateways`. */
  readonly podGateway: string;
  /** The node's addresses on its pod bridge, IPv4 first. */
  readonly podGateways: readonly string[];
  readonly pods: readonly PodInfo[];
}

/** An agent's state as the harness sees it. */
export interface AgentStatus {
  readonly running: boolean;
  readonly pid: number | undefined;
  readonly starts: number;
  readonly lastExit: { code: number | undefined; signal: NodeJS.Signals | undefined } | undefined;
}

/** Tunnel state of one unordered node pair. */
export interface PairStatus {
  readonly a: string;
  readonly b: string;
  /** a has a peer for b's published key with a completed handshake (IPsec: SAs a→b exist). */
  readonly tunnelAB: boolean;
  readonly tunnelBA: boolean;
  /** Ping from a pod on a to a pod on b (and back) succeeded; undefined when not probed. */
  readonly pingAB: boolean | undefined;
  readonly pingBA: boolean | undefined;
}

/** What `NsCluster.encryptionStatus` found. */
export interface EncryptionStatus {
  readonly pairs: readonly PairStatus[];
  /** Every pair has tunnels both ways (and, when probed, pings both ways). */
  readonly ok: boolean;
  /** One line per unmet condition. */
  readonly missing: readonly string[];
}

/** JSON-friendly description of the cluster. */
export interface Topology {
  readonly prefix: string;
  readonly runDir: string;
  readonly storeDir: string;
  readonly underlay: { readonly netns: string; readonly bridge: string; readonly cidr: string };
  readonly nodes: readonly (NodeInfo & {
    readonly holderPid: number | undefined;
    readonly agentPid: number | undefined;
  })[];
}
