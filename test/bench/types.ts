/**
 * The shape of `bench/results/<date>-<commit>.json`: every raw sample plus the environment it
 * was taken in. The summary and the charts are generated from these files only, so a result
 * file is the whole record of a run. Bump {@link RESULT_SCHEMA} on an incompatible change.
 */

/** Version of the result file layout. */
export const RESULT_SCHEMA = 1;

/** Benchmark names accepted on the command line. */
export const BENCHMARKS = ['throughput', 'join', 'mtu-sweep'] as const;
/** One of {@link BENCHMARKS}. */
export type BenchmarkName = (typeof BENCHMARKS)[number];

/** The four side-by-side data-plane variants. */
export const VARIANTS = ['plaintext', 'sealnet', 'hand-pinned', 'hand-debian'] as const;
/** One of {@link VARIANTS}. */
export type Variant = (typeof VARIANTS)[number];

/** Human labels of the variants (tables and charts). */
export const VARIANT_LABELS: Readonly<Record<Variant, string>> = {
  plaintext: 'plaintext (host-gw)',
  sealnet: 'sealnet (agents)',
  'hand-pinned': 'hand-configured, pinned wireguard-go',
  'hand-debian': 'hand-configured, Debian wireguard-go',
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
}

/** Raw data of the throughput benchmark (includes latency: same clusters, same rounds). */
export interface ThroughputResult {
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
  };
  /** Benchmarks that failed to run to the end, with the reason. */
  readonly errors: { benchmark: BenchmarkName; message: string }[];
}
