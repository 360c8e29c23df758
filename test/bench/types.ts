/**
 * The shape of `bench/results/<date>-<commit>.json`: every raw sample plus the environment it
 * was taken in. The summary and the charts are generated from these files only, so a result
 * file is the whole record of a run. Bump {@link RESULT_SCHEMA} on an incompatible change.
 */
import type { IpFamilyResult } from './ipfamily-report.js';
import type { KernelThroughputResult } from './kernel-report.js';
import type { CpuUsage } from './cpu.js';
import type { RotationResult } from './rotation-report.js';
import type { SteeringMapResult } from './steering-report.js';

/** Version of the result file layout. */
export const RESULT_SCHEMA = 1;

/** Benchmark names accepted on the command line. */
export const BENCHMARKS = [
  'throughput',
  'join',
  'mtu-sweep',
  'ip-family',
  'scale',
  'steering-map',
  'rotation',
  'kernel-throughput',
] as const;
/** One of {@link BENCHMARKS}. */
export type BenchmarkName = (typeof BENCHMARKS)[number];

/** The side-by-side data-plane variants (`sealnet-route-only`: the agents with BPF steering off). */
export const VARIANTS = ['plaintext', 'sealnet', 'hand-pinned', 'hand-debian', 'sealnet-route-only'] as const;
/** One of {@link VARIANTS}. */
export type Variant = (typeof VARIANTS)[number];

/** Human labels of the variants (tables and charts). */
export const VARIANT_LABELS: Readonly<Record<Variant, string>> = {
  plaintext: 'plaintext (host-gw)',
  sealnet: 'sealnet (agents)',
  'hand-pinned': 'hand-configured, pinned wireguard-go',
  'hand-debian': 'hand-configured, Debian wireguard-go',
  'sealnet-route-only': 'sealnet route-only (steering off)',
};

/** iperf3 test shapes: streams × direction (fwd = pod on n1 sends to pod on n2; rev = `-R`). */
export const THROUGHPUT_TESTS = ['1x-fwd', '1x-rev', '4x-fwd', '4x-rev'] as const;
/** One of {@link THROUGHPUT_TESTS}. */
export type ThroughputTest = (typeof THROUGHPUT_TESTS)[number];

/** Labels of the iperf3 tests. */
export const TEST_LABELS: Readonly<Record<ThroughputTest, string>> = {
  '1x-fwd': '1 stream n1→n2',
  '1x-rev': '1 stream n2→n1',
  '4x-fwd': '4 streams n1→n2',
  '4x-rev': '4 streams n2→n1',
};

/** Load average triple of /proc/loadavg. */
export type LoadAvg = readonly [number, number, number];

/** One wireguard-go binary as found on disk. */
export interface WireGuardGoInfo {
  readonly path: string;
  /** First line of `wireguard-go --version`. */
  readonly version: string | undefined;
  /** Go module version embedded in the binary (`go version -m`), when `go` is available. */
  readonly module: string | undefined;
  /** Debian package version, for the distribution's binary. */
  readonly debianPackage: string | undefined;
  readonly sha256: string | undefined;
}

/** Where and on what a run happened. */
export interface Environment {
  readonly hostname: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memTotalMiB: number;
  readonly kernel: string;
  readonly kernelVersion: string;
  readonly node: string;
  readonly iperf3: string | undefined;
  readonly wgTools: string | undefined;
  readonly wireguardGo: { readonly pinned: WireGuardGoInfo; readonly debian: WireGuardGoInfo };
  readonly loadBefore: LoadAvg;
  loadAfter: LoadAvg | undefined;
  /** Namespaces other runs had at start (a rough measure of how busy the machine was). */
  readonly foreignNetnsAtStart: number;
}

/** One iperf3 run. */
export interface IperfSample {
  readonly round: number;
  readonly variant: Variant;
  readonly test: ThroughputTest;
  /** Unix ms when the client started. */
  readonly at: number;
  /** Receiver's goodput, bit/s; undefined when the run failed. */
  readonly bitsPerSecond: number | undefined;
  readonly retransmits: number | undefined;
  readonly cpuLocal: number | undefined;
  readonly cpuRemote: number | undefined;
  /** Bytes the receiver got (absent in results from before issue 17). */
  readonly bytes?: number | undefined;
  /** CPU seconds of the run: agents, wireguard-go, machine softirq (absent before issue 17). */
  readonly cpu?: CpuUsage;
  readonly error: string | undefined;
}

/** One request/response run: `count` round trips of `size` bytes over one TCP connection. */
export interface LatencySample {
  readonly round: number;
  readonly variant: Variant;
  readonly at: number;
  readonly size: number;
  /** Round-trip times in microseconds, in order (warm-up excluded). */
  readonly rttUs: readonly number[];
  readonly error: string | undefined;
}

/** What was checked about a variant's data path before measuring it. */
export interface VariantSetup {
  readonly variant: Variant;
  readonly prefix: string;
  /** Executable of the wireguard-go process(es) serving the tunnel on each node. */
  readonly wireguardGoExe: Readonly<Record<string, string[]>>;
  /** `ip -o link show` of the tunnel link on n1, and n1's route to n2's pods. */
  readonly tunnelLink: string | undefined;
  readonly routeToPeerPods: string;
  /** n1's policy rules and the tc BPF programs on its eth0 and cni0 (sealnet's steering, if attached). */
  readonly rules: string;
  readonly bpfPrograms: readonly string[];
  readonly setupMs: number;
  /** `tc filter show dev eth0 egress` per node (sealnet variants only: BPF steering on, or proof it is off). */
  readonly eth0Egress?: Readonly<Record<string, string>>;
}

/** Raw data of the throughput benchmark (includes latency: same clusters, same rounds). */
export interface ThroughputResult {
  /** Variants built (absent: all of {@link VARIANTS}). */
  readonly variants?: readonly Variant[];
  /** iperf3 shapes run (absent: all of {@link THROUGHPUT_TESTS}). */
  readonly tests?: readonly ThroughputTest[];
  /** CPU pinning used, e.g. { iperf3: '0', wireguardGo: '1' }; absent: none. */
  readonly pinned?: { readonly iperf3: string; readonly wireguardGo: string };
  /** 1-minute load average at the start of each round (other tenants share the machine). */
  readonly loadByRound?: readonly number[];
  readonly rounds: number;
  readonly durationS: number;
  readonly latencyCount: number;
  readonly setups: readonly VariantSetup[];
  readonly iperf: readonly IperfSample[];
  readonly latency: readonly LatencySample[];
}

/** One node join. */
export interface JoinSample {
  readonly node: string;
  /** Nodes in the cluster before the join. */
  readonly nodesBefore: number;
  /** Agent started → its key appeared in the store. */
  readonly agentStartToKeyMs: number | undefined;
  /** Key appeared → each existing node's device holds the peer with its pod CIDR (UAPI `get`, as `wg show dump`). */
  readonly programmedMs: Readonly<Record<string, number>>;
  /** Poll interval actually achieved: time between the last negative and first positive look, per node. */
  readonly programmedResolutionMs: Readonly<Record<string, number>>;
  /** Key appeared → the new node has a peer for every existing node. */
  readonly newNodeProgrammedMs: number | undefined;
  /** Key appeared → first echo reply from the new pod, per existing pod (tunnel only). */
  readonly firstPingMs: Readonly<Record<string, number>>;
  readonly error: string | undefined;
}

/** Raw data of the join benchmark. */
export interface JoinResult {
  readonly initialNodes: number;
  readonly pingIntervalMs: number;
  readonly joins: readonly JoinSample[];
}

/** One DF ping at one size in one direction. */
export interface MtuProbe {
  readonly cluster: 'sealnet' | 'plaintext';
  readonly from: string;
  readonly to: string;
  /** ICMP payload bytes; the IPv4 packet is 28 bytes more. */
  readonly payload: number;
  readonly transmitted: number;
  readonly received: number;
  readonly fragNeeded: boolean;
  readonly messageTooLong: boolean;
  readonly reportedMtu: number | undefined;
  /** reply | frag-needed | black-hole | wrong-mtu | partial */
  readonly outcome: MtuOutcome;
  /** Whether the outcome is the expected one for this size and path MTU. */
  readonly ok: boolean;
}

/** Classified result of one MTU probe. */
export type MtuOutcome = 'reply' | 'frag-needed' | 'black-hole' | 'wrong-mtu' | 'partial';

/** Raw data of the MTU sweep. */
export interface MtuSweepResult {
  readonly tunnelMtu: number;
  readonly underlayMtu: number;
  readonly probes: readonly MtuProbe[];
}

/** A whole result file. */
export interface BenchResult {
  readonly schema: number;
  readonly startedAt: string;
  finishedAt: string | undefined;
  readonly commit: { readonly full: string | undefined; readonly short: string };
  readonly argv: readonly string[];
  readonly quick: boolean;
  readonly environment: Environment;
  readonly benchmarks: {
    throughput?: ThroughputResult;
    join?: JoinResult;
    'mtu-sweep'?: MtuSweepResult;
    'ip-family'?: IpFamilyResult;
    scale?: ScaleResult;
    'steering-map'?: SteeringMapResult;
    rotation?: RotationResult;
    'kernel-throughput'?: KernelThroughputResult;
  };
  /** Benchmarks that failed to run to the end, with the reason. */
  readonly errors: { benchmark: BenchmarkName; message: string }[];
}

/** Node stores the scale benchmark runs against. */
export const SCALE_STORES = ['file', 'kubernetes'] as const;
/** One of {@link SCALE_STORES}. */
export type ScaleStore = (typeof SCALE_STORES)[number];

/** Kernel operations by op name (`sealnet_kernel_operations_total{op}` deltas, or a log line's `ops`). */
export type KernelOps = Readonly<Record<string, number>>;

/** The agent process (and its wireguard-go) at one moment. */
export interface ProcessSample {
  /** Peak resident set (VmHWM), MiB. */
  readonly rssPeakMiB: number | undefined;
  /** Resident set now (VmRSS), MiB. */
  readonly rssMiB: number | undefined;
  /** utime + stime since the process started, seconds. */
  readonly cpuSeconds: number | undefined;
  readonly wireguardGoRssMiB: number | undefined;
  readonly wireguardGoCpuSeconds: number | undefined;
}

/** One "kernel state updated" pass of the agent, as its log line reports it. */
export interface AgentPass {
  /** ms after the reference moment (agent start, or the store write). */
  readonly atMs: number;
  /** Duration the agent reports for the pass. */
  readonly seconds: number;
  readonly ops: KernelOps;
}

/** A fresh agent against N simulated nodes: start → every peer, route and steering entry in place. */
export interface ScaleConvergence {
  readonly store: ScaleStore;
  /** Simulated nodes (= peers the agent must program). */
  readonly nodes: number;
  /** Load average (1 min) when the agent started. */
  readonly load1: number;
  /** Time to write the simulated nodes into the store (not part of the measurement). */
  readonly populateMs: number;
  /** Agent start → its "node store synced" log line. */
  readonly syncedMs: number | undefined;
  /** Agent start → the pass whose cumulative `peer_set` reached N ("kernel state updated" time). */
  readonly peersMs: number | undefined;
  /** Agent start → the last "kernel state updated" line before 2 s of quiet: full convergence. */
  readonly convergedMs: number | undefined;
  /** Agent start → a UAPI read showed all N peers with their pod CIDRs (polled; confirmation). */
  readonly confirmedMs: number | undefined;
  /**
   * Agent start → a read of the kernel's steering map (bpftool) found every pod CIDR; polled after
   * convergence, so it says that they are there, not when they got there. Absent in older results.
   */
  readonly steeringConfirmedMs?: number | undefined;
  /** Entries of the steering map's remote-prefix table at that read. */
  readonly steeringEntries?: number | undefined;
  readonly process: ProcessSample;
  /** `sealnet_kernel_operations_total` at convergence. */
  readonly kernelOps: KernelOps;
  readonly passes: readonly AgentPass[];
  readonly error: string | undefined;
  /** When the agent failed: how it exited and its last log line (clipped). */
  readonly agentExit?: string | undefined;
  readonly lastLogLine?: string | undefined;
}

/** The agent under kubelet churn (every Node's status updated once per 5 minutes, spread). */
export interface ScaleChurn {
  readonly store: ScaleStore;
  readonly nodes: number;
  /**
   * `startup`: right after convergence, while the agent still publishes every status change at
   * once (its first minute; the bench's simulated peers never handshake, so it never settles
   * sooner); `steady`: after that window, as an agent runs for days. Absent in older results
   * (they measured the startup window).
   */
  readonly phase?: 'startup' | 'steady';
  /** Updates per second asked (N / 300) and achieved in the window. */
  readonly targetPerSecond: number;
  readonly achievedPerSecond: number;
  readonly windowMs: number;
  readonly updatesDone: number;
  readonly updatesFailed: number;
  /** Updates the schedule could not issue (too many in flight: the store was too slow). */
  readonly updatesSkipped: number;
  readonly lastUpdateError: string | undefined;
  /** Agent CPU seconds in the window, and as % of one core. */
  readonly agentCpuSeconds: number | undefined;
  readonly agentCpuPercent: number | undefined;
  /** Bytes the API server sent to the agent per minute (TLS, counted at the relay's socket). */
  readonly bytesToAgentPerMinute: number | undefined;
  /** The same × N: what the API server sends to all N agents (each watches every Node). */
  readonly apiBytesPerMinuteAllAgents: number | undefined;
  /** `/proc/<agent>/io` rchar per minute (every read: sockets, files). */
  readonly agentReadBytesPerMinute: number | undefined;
  /** Reconcile passes ("kernel state updated" lines) in the window, and their kernel ops. */
  readonly passes: number;
  readonly kernelOps: KernelOps;
  readonly process: ProcessSample;
  readonly error: string | undefined;
}

/** What the simulated Node objects looked like. */
export interface ScaleShape {
  /** `kubelet`: images, conditions, node info, labels, managed fields (server-side apply); `toy`: name, address, pod CIDR. */
  readonly node: string;
  /** Status annotation: `legacy` (agents today), `summary` (≤ 1 KiB stand-in of the new design), `none`. */
  readonly status: string;
  /** Bytes of one simulated node's object as the store returns it, per store and size (measured). */
  readonly objectBytes: {
    store: ScaleStore;
    nodes: number;
    bytes: number | undefined;
    statusBytes: number | undefined;
  }[];
}

/** Kinds of single changes timed at the largest N. */
export const CHANGE_KINDS = ['join', 'leave', 'key-change'] as const;
/** One of {@link CHANGE_KINDS}. */
export type ChangeKind = (typeof CHANGE_KINDS)[number];

/** One node joining, leaving or changing its key, from the store write to the kernel. */
export interface ScaleChange {
  readonly kind: ChangeKind;
  readonly node: string;
  /** How long the store write itself took (included in appliedMs). */
  readonly writeMs: number;
  /** Write start → the agent's "kernel state updated" line of the pass that applied it. */
  readonly appliedMs: number | undefined;
  /** Write start → a UAPI read confirmed it. */
  readonly confirmedMs: number | undefined;
  /** The applying pass: its duration, and how long it was queued after its first trigger (debounce, a pass before it); absent in older results. */
  readonly passMs?: number | undefined;
  readonly queuedMs?: number | undefined;
  /** When the change's trigger came while another pass ran: that pass's kind and the wait for it (agent log). */
  readonly queuedBehind?: { readonly full: boolean; readonly ms: number } | undefined;
  /** Sum of the ops of every pass from the write until 500 ms of quiet. */
  readonly kernelOps: KernelOps;
  readonly passes: number;
  readonly error: string | undefined;
}

/** The single changes at one N and store. */
export interface ScaleChanges {
  readonly store: ScaleStore;
  readonly nodes: number;
  readonly changes: readonly ScaleChange[];
  /** `sealnet_kernel_operations_total` delta over all changes (cross-check of the per-change sums). */
  readonly metricsOps: KernelOps | undefined;
}

/** A restarted agent with a short resync interval and nothing changing. */
export interface ScaleResync {
  readonly store: ScaleStore;
  readonly nodes: number;
  readonly intervalSeconds: number;
  /** Restart → "node store synced"; and the kernel ops the restart itself made (adoption). */
  readonly restartSyncedMs: number | undefined;
  readonly restartOps: KernelOps;
  /** Length of the observed quiet window and the passes (`sealnet_reconciles_total`) in it. */
  readonly windowMs: number;
  readonly reconciles: number | undefined;
  /** `sealnet_kernel_operations_total` delta over the window. */
  readonly kernelOps: KernelOps | undefined;
  /** Mean duration of a pass in the window (`sealnet_reconcile_duration_seconds` sum ÷ count), ms. */
  readonly meanPassMs?: number | undefined;
  /** The agent's CPU seconds spent in the window. */
  readonly cpuSecondsInWindow?: number | undefined;
  readonly process: ProcessSample;
  readonly error: string | undefined;
}

/** Every simulated node rotating its key at once, as its agent would announce it. */
export interface ScaleRotation {
  readonly store: ScaleStore;
  readonly nodes: number;
  /** Writing every `staging` announcement (next key + next endpoint). */
  readonly stageWriteMs: number;
  /** First staging write → the pass after which every next-key peer is programmed. */
  readonly stagedMs: number | undefined;
  readonly stageOps: KernelOps;
  /** Writing every switch (`grace`: the next key published as the key, no next key). */
  readonly switchWriteMs: number;
  /** First switch write → the pass after which every pod CIDR is on the new key and every old peer is gone. */
  readonly switchedMs: number | undefined;
  readonly switchOps: KernelOps;
  /** Back to `idle` (cleanup): kernel ops, expected none. */
  readonly idleOps: KernelOps;
  readonly process: ProcessSample;
  readonly error: string | undefined;
}

/** Raw data of the scale benchmark. */
export interface ScaleResult {
  readonly sizes: readonly number[];
  readonly stores: readonly ScaleStore[];
  readonly changesPerKind: number;
  readonly rotationSizes: readonly number[];
  readonly convergence: ScaleConvergence[];
  readonly changes: ScaleChanges[];
  readonly resync: ScaleResync[];
  readonly rotation: ScaleRotation[];
  /** Under kubelet churn (absent in results before churn existed). */
  readonly churn?: ScaleChurn[];
  readonly shape?: ScaleShape;
  /** Phases that could not run at all (e.g. no Kubernetes binaries). */
  readonly errors: { store: ScaleStore; nodes: number | undefined; phase: string; message: string }[];
}
