/** Command line of `npm run bench`. */
import { NODE_SHAPES, STATUS_SHAPES, type NodeShape, type StatusShape } from './scale-kubelet.js';
import {
  BENCHMARKS,
  SCALE_STORES,
  THROUGHPUT_TESTS,
  VARIANTS,
  type BenchmarkName,
  type ScaleStore,
  type ThroughputTest,
  type Variant,
} from './types.js';

/** Usage text. */
export const BENCH_USAGE = `usage: npm run bench [-- NAME ...] [--quick] [options]

Benchmarks (default: all, in this order):
  throughput   pod-to-pod TCP (iperf3, 1 and 4 streams, both directions) and request/response
               latency: plaintext vs sealnet vs hand-configured wireguard-go (pinned and Debian)
               vs sealnet route-only (BPF steering off), five 2-node clusters side by side,
               interleaved round-robin
  join         a 4-node sealnet cluster grows one node at a time: key published → peer
               programmed everywhere → first ping through the tunnel from every pod
  mtu-sweep    DF pings across the tunnel at sizes up to and past the tunnel MTU
  ip-family    IPv4 vs IPv6 pods through sealnet over an IPv4 and an IPv6 underlay (two
               dual-stack clusters, the four legs round-robin, paired ratios with a bootstrap
               interval; the --rounds, --duration and --tests of throughput) and each leg's
               path MTU (largest DF packet that passes, the MTU named for one byte more)
  scale        control plane at scale: one real agent, N simulated kubelet-sized Nodes in the
               node store (file and a real kube-apiserver): convergence time, RSS, CPU, kernel
               operations; kubelet churn (every Node's status every 5 min): agent CPU, bytes
               from the API server; single joins/leaves/key changes at the largest N under
               churn; every key rotating; a no-op resync (N = 1000, 5000, 10000; --quick: 100, 1000)
  steering-map BPF steering maps: load 1,000 and 5,000 prefixes and change one, through the
               bpf() addon vs spawning bpftool (batch file), 10 rounds, scratch netns and a
               private bpffs
  rotation     key rotation on 5 namespace nodes with real agents, under TCP and numbered UDP
               traffic: n1 alone, then all 5 at once, per round; time to every key switched
               and to every old key gone, datagrams lost, TCP breaks (5 rounds; --quick: 2)
  kernel-throughput
               IPsec (ESP AES-GCM) and kernel WireGuard pod-to-pod TCP inside the kernel tier's
               qemu guest (TCG: only ratios mean anything): plaintext vs sealnet ipsec vs sealnet
               wireguard (kernel) vs hand-configured kernel WireGuard, iperf3 1 stream both
               directions, round-robin (3 rounds of 3 s; --quick: 2 of 2 s; needs npm run build)

Options:
  --quick              2 rounds of 2 s, 3 joins, 1000 round trips, scale up to 1000 nodes,
                       2 rotation rounds (default: 5 rounds of 3 s, 5 joins, 1000, scale up
                       to 5000, 5 rotation rounds)
  --rounds N           throughput and kernel-throughput rounds
  --variants V,V,...   throughput: variants to build (plaintext, sealnet, hand-pinned,
                       hand-debian, sealnet-route-only; default all)
  --tests T,T,...      throughput: iperf3 shapes (1x-fwd, 1x-rev, 4x-fwd, 4x-rev; default all)
  --pin                throughput: taskset iperf3 to CPU 0 and wireguard-go to CPU 1
  --duration S         seconds per iperf3 run
  --joins N            node joins
  --rotation-rounds N  rotation rounds (each: one node, then all nodes)
  --latency-count N    round trips per latency run
  --sizes N,N,...      scale: simulated node counts (default 100,1000,5000; quick 100,1000)
  --store NAME         scale: only this node store (file or kubernetes; repeatable)
  --changes N          scale: joins, leaves and key changes each at the largest N (default 20; quick 5)
  --node-shape S       scale: kubelet (default: ~50 images, conditions, node info, labels, managed
                       fields by server-side apply) or toy (name, address, pod CIDR)
  --status S           scale: status annotation on every Node: summary (default, ≤ 1 KiB, the
                       new design), legacy (as agents publish today, up to 64 KiB) or none
  --churn-seconds S    scale: measuring window under kubelet churn (default 60; quick 30; 0: no churn)
  --no-churn-steady    scale: only the churn window right after convergence, not the second one
                       after the agent's 60 s startup window
  --no-rotation        scale: skip rotating every key
  --no-resync          scale: skip the no-op resync phase
  --out DIR            where results/, SUMMARY.md and the charts go (default: <repo>/bench)
  --summary            only regenerate SUMMARY.md and the charts from DIR/results/*.json
  -h, --help           this text

Needs root (network namespaces). Writes DIR/results/<date>-<commit>.json, then regenerates
DIR/SUMMARY.md, DIR/throughput.svg and DIR/latency.svg. Exit 0 when every benchmark ran
(missed targets are reported, not failures), 1 when one failed, 2 on bad usage.`;

/** Parsed command line. */
export interface BenchArgs {
  readonly benchmarks: readonly BenchmarkName[];
  readonly quick: boolean;
  readonly rounds: number;
  readonly durationS: number;
  readonly joins: number;
  readonly latencyCount: number;
  readonly out: string | undefined;
  readonly summaryOnly: boolean;
  readonly help: boolean;
  /** scale: simulated node counts, ascending. */
  readonly scaleSizes: readonly number[];
  readonly scaleStores: readonly ScaleStore[];
  /** scale: changes of each kind at the largest size. */
  readonly scaleChanges: number;
  /** scale: sizes at which every key rotates (1,000 and 5,000 when run). */
  readonly rotationSizes: readonly number[];
  readonly nodeShape: NodeShape;
  readonly statusShape: StatusShape;
  readonly churnSeconds: number;
  /** scale: a second churn window after the agent's startup window (`--no-churn-steady`: only the first). */
  readonly churnSteady: boolean;
  readonly scaleResync: boolean;
  /** rotation: rounds of (rotate n1, rotate every node). */
  readonly rotationRounds: number;
  /** kernel-throughput: rounds (fewer than throughput's: the guest is emulated and slow). */
  readonly kernelRounds: number;
  /** throughput: the variants to build (default all). */
  readonly variants: readonly Variant[];
  /** throughput: the iperf3 shapes to run (default all four). */
  readonly tests: readonly ThroughputTest[];
  /** throughput: pin iperf3 to CPU 0 and wireguard-go to CPU 1 (taskset). */
  readonly pin: boolean;
}

function listOf<T extends string>(flag: string, v: string | undefined, known: readonly T[]): T[] {
  const items = (v ?? '').split(',').filter((x) => x !== '');
  const bad = items.filter((x) => !(known as readonly string[]).includes(x));
  if (items.length === 0 || bad.length > 0)
    throw new Error(`${flag} needs a comma-separated list of ${known.join(', ')}, got ${JSON.stringify(v)}`);
  return known.filter((k) => items.includes(k));
}

function int(flag: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min || n > max)
    throw new Error(`${flag} needs an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

/** Parses the arguments after `npm run bench --`; throws with a message naming the bad one. */
export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  const names: BenchmarkName[] = [];
  const quick = argv.includes('--quick');
  const o = {
    rounds: quick ? 2 : 5,
    durationS: quick ? 2 : 3,
    joins: quick ? 3 : 5,
    latencyCount: 1000,
    out: undefined as string | undefined,
    summaryOnly: false,
    help: false,
    scaleSizes: quick ? [100, 1000] : [1000, 5000, 10000],
    scaleChanges: quick ? 5 : 20,
    nodeShape: 'kubelet' as NodeShape,
    statusShape: 'summary' as StatusShape,
    churnSeconds: quick ? 30 : 60,
    churnSteady: true,
    scaleRotation: true,
    scaleResync: true,
    rotationRounds: quick ? 2 : 5,
    kernelRounds: quick ? 2 : 3,
    variants: [...VARIANTS] as readonly Variant[],
    tests: [...THROUGHPUT_TESTS] as readonly ThroughputTest[],
    pin: false,
  };
  const stores: ScaleStore[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    switch (a) {
      case '--quick':
        break;
      case '--rounds':
        o.rounds = int(a, argv[++i], 1, 100);
        o.kernelRounds = o.rounds;
        break;
      case '--duration':
        o.durationS = int(a, argv[++i], 1, 60);
        break;
      case '--joins':
        o.joins = int(a, argv[++i], 1, 40);
        break;
      case '--rotation-rounds':
        o.rotationRounds = int(a, argv[++i], 1, 50);
        break;
      case '--latency-count':
        o.latencyCount = int(a, argv[++i], 10, 100_000);
        break;
      case '--out': {
        const d = argv[++i];
        if (d === undefined || d === '') throw new Error('--out needs a directory');
        o.out = d;
        break;
      }
      case '--sizes': {
        const v = argv[++i] ?? '';
        const sizes = v.split(',').map((x) => int(a, x, 1, 15_000));
        o.scaleSizes = [...new Set(sizes)].sort((x, y) => x - y);
        break;
      }
      case '--store': {
        const v = argv[++i];
        if (!(SCALE_STORES as readonly (string | undefined)[]).includes(v))
          throw new Error(`--store needs one of ${SCALE_STORES.join(', ')}, got ${JSON.stringify(v)}`);
        if (!stores.includes(v as ScaleStore)) stores.push(v as ScaleStore);
        break;
      }
      case '--changes':
        o.scaleChanges = int(a, argv[++i], 0, 200);
        break;
      case '--variants':
        o.variants = listOf(a, argv[++i], VARIANTS);
        break;
      case '--tests':
        o.tests = listOf(a, argv[++i], THROUGHPUT_TESTS);
        break;
      case '--pin':
        o.pin = true;
        break;
      case '--node-shape': {
        const v = argv[++i];
        if (!(NODE_SHAPES as readonly (string | undefined)[]).includes(v))
          throw new Error(`--node-shape needs one of ${NODE_SHAPES.join(', ')}, got ${JSON.stringify(v)}`);
        o.nodeShape = v as NodeShape;
        break;
      }
      case '--status': {
        const v = argv[++i];
        if (!(STATUS_SHAPES as readonly (string | undefined)[]).includes(v))
          throw new Error(`--status needs one of ${STATUS_SHAPES.join(', ')}, got ${JSON.stringify(v)}`);
        o.statusShape = v as StatusShape;
        break;
      }
      case '--churn-seconds':
        o.churnSeconds = int(a, argv[++i], 0, 3600);
        break;
      case '--no-churn-steady':
        o.churnSteady = false;
        break;
      case '--no-rotation':
        o.scaleRotation = false;
        break;
      case '--no-resync':
        o.scaleResync = false;
        break;
      case '--summary':
        o.summaryOnly = true;
        break;
      case '-h':
      case '--help':
        o.help = true;
        break;
      default:
        if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
        if (!(BENCHMARKS as readonly string[]).includes(a))
          throw new Error(`unknown benchmark ${JSON.stringify(a)} (known: ${BENCHMARKS.join(', ')})`);
        if (!names.includes(a as BenchmarkName)) names.push(a as BenchmarkName);
    }
  }
  // Always in the documented order, whatever order they were named in.
  const benchmarks = names.length === 0 ? [...BENCHMARKS] : BENCHMARKS.filter((b) => names.includes(b));
  const scaleStores = stores.length === 0 ? [...SCALE_STORES] : SCALE_STORES.filter((st) => stores.includes(st));
  const { scaleRotation, ...rest } = o;
  const rotationSizes = scaleRotation ? o.scaleSizes.filter((n) => n >= 1000) : [];
  return { benchmarks, quick, ...rest, scaleStores, rotationSizes };
}
