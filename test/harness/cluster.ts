/**
 * `NsCluster`: a Kubernetes-like cluster built from network namespaces (DESIGN.md "Test
 * tiers", tier 3). One underlay namespace with a bridge; per node a namespace with eth0 on the
 * bridge, a routed pod bridge and pod namespaces, plus a persistent mount namespace (held by a
 * `sleep` process) so `/var/run/wireguard` and bpffs are per node and survive agent restarts.
 * The harness plays the control plane (Node documents in a file store) and the CNI (routes to
 * remote pod CIDRs in the main table: without sealnet, pod traffic crosses in plaintext).
 *
 * Everything carries the run's prefix and is removed by {@link NsCluster.destroy}, by an exit
 * hook, or by a SIGINT/SIGTERM/SIGHUP handler; {@link cleanupStale} removes orphans.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ANNOTATIONS, WG_DEFAULT_PORT, WG_INTERFACES } from '../../common/constants.js';
import type { Mode } from '../../tunnels/ports/model.js';
import { startCapture, type Capture, type CaptureOptions } from './capture.js';
import { encryptionStatus, waitEncrypted } from './encryption.js';
import { run, sleep, spawnBackground, type BackgroundProcess, type ExecResult, type RunOptions } from './exec.js';
import { deleteNodeDoc, newNodeDoc, readNodeDoc, writeNodeDoc, type NodeDoc } from './nodestore.js';
import { parsePing, pingArgv, type PingOptions, type PingResult } from './ping.js';
import { repoRoot, wireguardGoPath } from './paths.js';
import { listNetns, processStartTicks, teardownSync, type OwnerRecord } from './teardown.js';
import * as topo from './topology.js';
import type { AgentStatus, EncryptionStatus, NodeInfo, NsClusterOptions, PodInfo, Topology } from './types.js';
import type { FailFast } from './wait.js';
import { parseWgDump, type WgDump } from './wgdump.js';

export { cleanupStale } from './teardown.js';
export type * from './types.js';

interface NodeState {
  info: NodeInfo;
  holder: BackgroundProcess | undefined;
  agent: BackgroundProcess | undefined;
  agentStarts: number;
  agentLastExit: AgentStatus['lastExit'];
  agentExtra: Readonly<Record<string, unknown>> | undefined;
  /** The harness asked the current agent to exit (killAgent/stopAgent): not a failure. */
  agentExitRequested: boolean;
}

const SIGNAL_EXIT: Readonly<Record<string, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/** A namespace cluster. Create with {@link NsCluster.create}; always {@link NsCluster.destroy}. */
export class NsCluster {
  readonly prefix: string;
  readonly runDir: string;
  readonly storeDir: string;
  readonly underlayNetns: string;
  readonly mode: Mode;
  readonly encryption: boolean;
  readonly listenPort: number;
  /** Address families of nodes and pods, and the tunnel's underlay family. */
  readonly addressPlan: topo.AddressPlan;
  /** Milliseconds spent in phases of create() (build, agents). */
  readonly timings: Record<string, number> = {};

  private readonly opts: NsClusterOptions;
  private readonly nodeStates = new Map<string, NodeState>();
  private readonly captures = new Set<Capture>();
  private readonly log: (line: string) => void;
  private destroying: Promise<void> | undefined;
  private hooks: { exit: () => void; signals: [NodeJS.Signals, () => void][] } | undefined;

  private constructor(opts: NsClusterOptions) {
    this.opts = opts;
    this.prefix = opts.prefix ?? `seal${randomBytes(3).toString('hex')}`;
    topo.checkPrefix(this.prefix);
    this.runDir = join(opts.runDirBase ?? tmpdir(), this.prefix);
    this.storeDir = join(this.runDir, 'store');
    this.underlayNetns = topo.netnsNames.underlay(this.prefix);
    this.mode = opts.mode ?? 'wireguard';
    this.encryption = opts.encryption ?? true;
    this.listenPort = opts.listenPort ?? WG_DEFAULT_PORT;
    this.addressPlan = topo.addressPlan(opts.ipFamily ?? 'ipv4', opts.underlayFamily);
    this.log = opts.log ?? (() => undefined);
  }

  /** Builds the cluster (and starts agents unless told not to). Tears down on failure. */
  static async create(opts: NsClusterOptions = {}): Promise<NsCluster> {
    const c = new NsCluster(opts);
    const n = opts.nodes ?? 2;
    if (!Number.isInteger(n) || n < 1 || n > topo.MAX_NODE_INDEX)
      throw new Error(`nodes must be 1..${topo.MAX_NODE_INDEX}, got ${n}`);
    const pods = opts.podsPerNode ?? 1;
    if (!Number.isInteger(pods) || pods < 0 || pods > topo.MAX_POD_INDEX)
      throw new Error(`podsPerNode must be 0..${topo.MAX_POD_INDEX}, got ${pods}`);
    if (listNetns().some((ns) => ns.startsWith(`${c.prefix}-`)))
      throw new Error(`namespaces with prefix ${c.prefix} already exist`);
    c.installHooks();
    try {
      const t0 = Date.now();
      mkdirSync(c.storeDir, { recursive: true, mode: 0o755 });
      const owner: OwnerRecord = {
        pid: process.pid,
        startTicks: processStartTicks(process.pid) ?? 0,
        createdAt: new Date().toISOString(),
      };
      writeFileSync(join(c.runDir, 'owner.json'), `${JSON.stringify(owner)}\n`);
      // wireguard-go and wg hard-code this path; each node mounts its own tmpfs over it.
      mkdirSync('/var/run/wireguard', { recursive: true });
      await c.ipBatch(undefined, [`netns add ${c.underlayNetns}`]);
      await c.ipBatch(c.underlayNetns, topo.underlayBatch());
      await c.buildNodes(
        Array.from({ length: n }, (_, k) => k + 1),
        pods,
      );
      c.timings.buildMs = Date.now() - t0;
      if (opts.startAgents ?? c.encryption) {
        const t1 = Date.now();
        await Promise.all(c.nodeNames().map((name) => c.startAgent(name)));
        c.timings.agentsStartMs = Date.now() - t1;
      }
      c.log(`cluster ${c.prefix}: ${n} nodes × ${pods} pods built in ${c.timings.buildMs} ms (run dir ${c.runDir})`);
      return c;
    } catch (err) {
      await c.destroy();
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Topology

  /** Nodes, by index. */
  get nodes(): readonly NodeInfo[] {
    return [...this.nodeStates.values()].map((s) => s.info).sort((a, b) => a.index - b.index);
  }

  /** Node names, by index. */
  nodeNames(): string[] {
    return this.nodes.map((n) => n.name);
  }

  /** A node by name; throws if unknown. */
  node(name: string): NodeInfo {
    const s = this.nodeStates.get(name);
    if (s === undefined) throw new Error(`no node ${name} in cluster ${this.prefix}`);
    return s.info;
  }

  /** All pods, or a node's pods. */
  pods(node?: string): PodInfo[] {
    return (node === undefined ? this.nodes : [this.node(node)]).flatMap((n) => n.pods);
  }

  /** A pod by name (`n1p1`); throws if unknown. */
  pod(name: string): PodInfo {
    const p = this.pods().find((x) => x.name === name);
    if (p === undefined) throw new Error(`no pod ${name} in cluster ${this.prefix}`);
    return p;
  }

  /**
   * Pod or node name → its address (of `family` if given: throws when it has none of that
   * family); anything else is returned as is (a literal address).
   */
  resolve(target: string, family?: 4 | 6): string {
    const s = this.nodeStates.get(target);
    const addrs = s !== undefined ? s.info.addresses : this.pods().find((p) => p.name === target)?.addresses;
    if (addrs === undefined) return target;
    if (family === undefined) return s !== undefined ? s.info.address : (addrs[0] as string);
    const a = addrs.find((x) => x.includes(':') === (family === 6));
    if (a === undefined) throw new Error(`${target} has no IPv${family} address in cluster ${this.prefix}`);
    return a;
  }

  /** Every namespace of this run that exists. */
  netnsList(): string[] {
    return listNetns().filter((ns) => ns.startsWith(`${this.prefix}-`));
  }

  /** A JSON-friendly description (demo --json, test reports). */
  topology(): Topology {
    return {
      prefix: this.prefix,
      runDir: this.runDir,
      storeDir: this.storeDir,
      underlay: {
        netns: this.underlayNetns,
        bridge: topo.UNDERLAY_BRIDGE,
        cidr: this.addressPlan.underlay === 4 ? `${topo.nodeAddress(0)}/24` : topo.UNDERLAY_RANGE6,
      },
      nodes: this.nodes.map((n) => ({
        ...n,
        holderPid: this.nodeStates.get(n.name)?.holder?.pid,
        agentPid: this.agentStatus(n.name).pid,
      })),
    };
  }

  /** Adds node `n<max+1>` at runtime: namespaces, pods, routes everywhere, Node document, agent. */
  async addNode(opts: { pods?: number; startAgent?: boolean } = {}): Promise<NodeInfo> {
    this.assertLive();
    const index = Math.max(0, ...this.nodes.map((n) => n.index)) + 1;
    if (index > topo.MAX_NODE_INDEX) throw new Error('cluster is full');
    await this.buildNodes([index], opts.pods ?? this.opts.podsPerNode ?? 1);
    const name = topo.nodeName(index);
    if (opts.startAgent ?? this.opts.startAgents ?? this.encryption) await this.startAgent(name);
    return this.node(name);
  }

  /**
   * Removes a node: kills everything in its namespaces (agent, wireguard-go, holder, pod
   * processes), deletes the namespaces, withdraws the other nodes' routes to its pods (as the
   * CNI would) and deletes its Node document (as the control plane would).
   */
  async removeNode(name: string): Promise<void> {
    this.assertLive();
    const s = this.nodeStates.get(name);
    if (s === undefined) throw new Error(`no node ${name} in cluster ${this.prefix}`);
    teardownSync({ netns: [s.info.netns, ...s.info.pods.map((p) => p.netns)], runDir: undefined });
    this.nodeStates.delete(name);
    await Promise.all(
      this.nodes.map((n) =>
        this.ipBatch(n.netns, topo.podRouteLines('del', s.info.index, this.addressPlan), { force: true }),
      ),
    );
    await deleteNodeDoc(this.storeDir, name);
  }

  private async buildNodes(indexes: readonly number[], pods: number): Promise<void> {
    const p = this.prefix;
    const mtu = this.opts.mtu ?? 1500;
    const podMtu = this.opts.podMtu ?? mtu;
    const plan = this.addressPlan;
    const ipv6 = this.opts.ipv6 === true || plan.v6;
    const existing = this.nodes.map((n) => n.index);
    const all = [...existing, ...indexes];
    const podList = indexes.flatMap((i) => Array.from({ length: pods }, (_, k) => [i, k + 1] as const));

    // Phase 1: every namespace in one process.
    await this.ipBatch(undefined, [
      ...indexes.map((i) => `netns add ${topo.netnsNames.node(p, i)}`),
      ...podList.map(([i, j]) => `netns add ${topo.netnsNames.pod(p, i, j)}`),
    ]);
    // IPv6 defaults before any link exists, so every link (lo included) inherits them.
    if (ipv6) {
      await Promise.all(
        [
          this.underlayNetns,
          ...indexes.map((i) => topo.netnsNames.node(p, i)),
          ...podList.map(([i, j]) => topo.netnsNames.pod(p, i, j)),
        ].map((ns) => this.sysctl(ns, topo.ipv6TestDefaults())),
      );
    }
    for (const i of indexes) {
      const addresses = topo.nodeAddresses(plan, i);
      const podCIDRs = topo.podCidrs(plan, i);
      const podGateways = [...(plan.v4 ? [topo.podGateway(i)] : []), ...(plan.v6 ? [topo.podGateway6(i)] : [])];
      const info: NodeInfo = {
        name: topo.nodeName(i),
        index: i,
        netns: topo.netnsNames.node(p, i),
        address: addresses[0] as string,
        addresses,
        podCIDR: podCIDRs[0] as string,
        podCIDRs,
        podGateway: podGateways[0] as string,
        podGateways,
        pods: Array.from({ length: pods }, (_, k) => {
          const podAddrs = topo.podAddresses(plan, i, k + 1);
          return {
            name: topo.podName(i, k + 1),
            node: topo.nodeName(i),
            index: k + 1,
            netns: topo.netnsNames.pod(p, i, k + 1),
            address: podAddrs[0] as string,
            addresses: podAddrs,
          };
        }),
      };
      this.nodeStates.set(info.name, {
        info,
        holder: undefined,
        agent: undefined,
        agentStarts: 0,
        agentLastExit: undefined,
        agentExtra: undefined,
        agentExitRequested: false,
      });
      await mkdir(join(this.runDir, info.name, 'state'), { recursive: true, mode: 0o700 });
    }
    // Phase 2: nodes build their links (eth0 → underlay, pod veths → pods) and routes.
    await Promise.all(
      indexes.map((i) =>
        this.ipBatch(
          topo.netnsNames.node(p, i),
          topo.nodeBatch({ prefix: p, index: i, pods, mtu, podMtu, peers: all.filter((k) => k !== i), plan }),
        ),
      ),
    );
    // Phase 3: attach to the underlay, configure pods, routes on existing nodes, sysctls, holders.
    await Promise.all([
      this.ipBatch(this.underlayNetns, topo.underlayAttachBatch(p, indexes)),
      this.sysctl(this.underlayNetns, [...topo.bridgeNetfilterOff(), ...(ipv6 ? [] : topo.ipv6Off())]),
      ...podList.map(([i, j]) => this.ipBatch(topo.netnsNames.pod(p, i, j), topo.podBatch(i, j, plan))),
      ...(ipv6 ? [] : podList.map(([i, j]) => this.sysctl(topo.netnsNames.pod(p, i, j), topo.ipv6Off()))),
      ...existing.map((k) =>
        this.ipBatch(
          topo.netnsNames.node(p, k),
          indexes.flatMap((i) => topo.podRouteLines('add', i, plan)),
        ),
      ),
      ...indexes.map((i) => this.sysctl(topo.netnsNames.node(p, i), topo.nodeSysctls(ipv6))),
      ...indexes.map((i) => this.startHolder(topo.nodeName(i))),
      ...indexes.map((i) =>
        writeNodeDoc(this.storeDir, newNodeDoc(topo.nodeName(i), topo.nodeAddresses(plan, i), topo.podCidrs(plan, i))),
      ),
    ]);
  }

  /**
   * The per-node mount namespace: `/var/run/wireguard` (wireguard-go's UAPI sockets) and
   * `/sys/fs/bpf` private to the node. A `sleep` keeps it alive; every node command enters it.
   */
  private async startHolder(name: string): Promise<void> {
    const s = this.mustNode(name);
    const script =
      'set -e; mount -t tmpfs -o mode=0755 none /var/run/wireguard; mount -t bpf bpf /sys/fs/bpf; exec sleep infinity';
    const holder = spawnBackground(
      ['ip', 'netns', 'exec', s.info.netns, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script],
      {
        logFile: join(this.runDir, name, 'holder.log'),
      },
    );
    s.holder = holder;
    // ip, unshare and sh all exec() in place, so the pid is the final `sleep` once mounts are done.
    // In the qemu guest (TCG, a shared host) process starts are far slower.
    const deadline = Date.now() + (process.env['SEALNET_VM_GUEST'] === '1' ? 60_000 : 10_000);
    while (Date.now() < deadline) {
      if (!holder.running())
        throw new Error(
          `mount-namespace holder of ${name} exited; see ${join(this.runDir, name, 'holder.log')}: ${safeRead(join(this.runDir, name, 'holder.log'))}`,
        );
      if (safeRead(`/proc/${holder.pid}/comm`).trim() === 'sleep') return;
      await sleep(5);
    }
    throw new Error(`mount-namespace holder of ${name} did not become ready`);
  }

  // -------------------------------------------------------------------------------------------
  // Agents

  /** Path of a node's agent config file. */
  agentConfigPath(node: string): string {
    return join(this.runDir, node, 'agent.json');
  }

  /** Path of a node's agent log (stdout and stderr, appended across restarts). */
  agentLogPath(node: string): string {
    return join(this.runDir, node, 'agent.log');
  }

  /** The config the harness writes for a node (before `extra` is merged in). */
  agentConfig(node: string, extra?: Readonly<Record<string, unknown>>): Record<string, unknown> {
    const base = {
      nodeName: node,
      mode: this.mode,
      stateDir: join(this.runDir, node, 'state'),
      store: { type: 'file', dir: this.storeDir },
      wireguard: { listenPort: this.listenPort, implementation: 'auto', wireguardGoPath: wireguardGoPath() },
      resyncIntervalSeconds: 30,
      logLevel: 'info',
      // The whole pod range of the address plan: dropped unless a ready tunnel covers it.
      steering: { clusterCidrs: topo.podRanges(this.addressPlan) },
    };
    return deepMerge(deepMerge(base, this.opts.agentConfig ?? {}), extra ?? {});
  }

  /** Writes the node's agent.json and starts the agent inside the node's namespaces. */
  async startAgent(node: string, extraConfig?: Readonly<Record<string, unknown>>): Promise<number> {
    this.assertLive();
    const s = this.mustNode(node);
    if (s.agent?.running() === true) throw new Error(`agent on ${node} is already running (pid ${s.agent.pid})`);
    if (s.holder === undefined) throw new Error(`node ${node} has no mount-namespace holder`);
    s.agentExtra = extraConfig ?? s.agentExtra;
    const cfgPath = this.agentConfigPath(node);
    await writeFile(cfgPath, `${JSON.stringify(this.agentConfig(node, s.agentExtra), null, 2)}\n`, { mode: 0o600 });
    // The heap limit the chart sets too (values.yaml agent.maxHeapMiB).
    const cmd = this.opts.agentCommand ?? [
      process.execPath,
      '--max-old-space-size=128',
      join(repoRoot(), 'bin', 'sealnet-agent.js'),
    ];
    const agent = spawnBackground(
      ['nsenter', '-t', String(s.holder.pid), '-n', '-m', `--wd=${repoRoot()}`, '--', ...cmd, '--config', cfgPath],
      {
        logFile: this.agentLogPath(node),
      },
    );
    s.agent = agent;
    s.agentStarts++;
    s.agentExitRequested = false;
    void agent.exited.then((e) => {
      s.agentLastExit = e;
    });
    this.log(`agent ${node}: started (pid ${agent.pid})`);
    return agent.pid;
  }

  /** Sends `signal` (default SIGKILL: a crash) to the agent and waits until it exited. */
  async killAgent(node: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const a = this.mustNode(node).agent;
    if (a === undefined || !a.running()) return;
    this.mustNode(node).agentExitRequested = true;
    a.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`agent on ${node} ignored ${signal} for 10 s`)), 10_000);
    });
    try {
      await Promise.race([a.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL after `timeoutMs` (default 10 s); resolves once it exited. */
  async stopAgent(node: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const s = this.mustNode(node);
    if (s.agent?.running() === true) s.agentExitRequested = true;
    await s.agent?.stop({ signal: 'SIGTERM', timeoutMs: opts.timeoutMs ?? 10_000 });
  }

  /** stopAgent + startAgent (with new extra config, or the previous one). */
  async restartAgent(node: string, extraConfig?: Readonly<Record<string, unknown>>): Promise<number> {
    await this.stopAgent(node);
    return this.startAgent(node, extraConfig);
  }

  /** Whether the node's agent runs, its pid, start count and last exit. */
  agentStatus(node: string): AgentStatus {
    const s = this.mustNode(node);
    return {
      running: s.agent?.running() ?? false,
      pid: s.agent?.running() === true ? s.agent.pid : undefined,
      starts: s.agentStarts,
      lastExit: s.agentLastExit,
    };
  }

  /** Resolves when the node's current agent exits. */
  agentExited(node: string): Promise<{ code: number | undefined; signal: NodeJS.Signals | undefined }> {
    const a = this.mustNode(node).agent;
    return a === undefined ? Promise.resolve({ code: undefined, signal: undefined }) : a.exited;
  }

  /** The last `n` lines of a node's agent log (each clipped to 300 characters). */
  agentLogTail(node: string, n = 5): string[] {
    const lines = safeRead(this.agentLogPath(node))
      .trimEnd()
      .split('\n')
      .filter((l) => l !== '');
    return lines.slice(-n).map((l) => {
      const t = readableLogLine(l);
      return t.length > 300 ? `${t.slice(0, 300)}…` : t;
    });
  }

  /**
   * Nodes whose agent exited without the harness asking (killAgent/stopAgent), each with its
   * exit status and last log lines; empty while every started agent runs or was stopped on purpose.
   */
  agentFailures(): string[] {
    const out: string[] = [];
    for (const [name, s] of this.nodeStates) {
      if (s.agent === undefined || s.agent.running() || s.agentExitRequested) continue;
      const e = s.agentLastExit;
      const how =
        e === undefined
          ? 'exited'
          : e.signal !== undefined
            ? `was killed by ${e.signal}`
            : `exited with code ${e.code ?? '?'}`;
      out.push(
        `agent on ${name} ${how}; last log lines:\n    ${this.agentLogTail(name).join('\n    ') || '(log empty)'}\n    (log: ${this.agentLogPath(name)})`,
      );
    }
    return out;
  }

  /**
   * A {@link FailFast} source for harness waits: fails as soon as any node's agent exits
   * without the harness asking, with that agent's last log lines as the reason.
   */
  agentGuard(): FailFast {
    // One race per set of running agents, not one per poll: a 20 ms poll would otherwise
    // hang thousands of handlers on the same exit promises.
    let key = '';
    let raced: Promise<void> = new Promise<void>(() => undefined);
    return {
      check: () => {
        if (this.destroying !== undefined) return `cluster ${this.prefix} was destroyed`;
        const f = this.agentFailures();
        return f.length === 0 ? undefined : f.join('\n  ');
      },
      changed: () => {
        const running = [...this.nodeStates.values()].flatMap((s) => (s.agent?.running() === true ? [s.agent] : []));
        const now = running.map((a) => a.pid).join(',');
        if (now !== key) {
          key = now;
          // Let the exit handler above (agentLastExit) run first.
          raced =
            running.length === 0
              ? new Promise<void>(() => undefined)
              : Promise.race(running.map((a) => a.exited)).then(() => sleep(0));
        }
        return raced;
      },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Running things

  /** Runs a command in a node's network + mount namespaces. */
  execNode(node: string, argv: readonly string[], opts?: RunOptions): Promise<ExecResult> {
    return run([...this.nodePrefixArgv(node), ...argv], opts);
  }

  /** Runs a command in a pod's network namespace. */
  execPod(pod: string, argv: readonly string[], opts?: RunOptions): Promise<ExecResult> {
    return run(['nsenter', `--net=/run/netns/${this.pod(pod).netns}`, '--', ...argv], opts);
  }

  /** Runs a command in the underlay namespace. */
  execUnderlay(argv: readonly string[], opts?: RunOptions): Promise<ExecResult> {
    return run(['nsenter', `--net=/run/netns/${this.underlayNetns}`, '--', ...argv], opts);
  }

  /** Starts a background command in a node (killed by destroy()). */
  spawnNode(node: string, argv: readonly string[], opts: { logFile?: string } = {}): BackgroundProcess {
    return spawnBackground([...this.nodePrefixArgv(node), ...argv], opts);
  }

  /** Starts a background command in a pod (killed by destroy()). */
  spawnPod(pod: string, argv: readonly string[], opts: { logFile?: string } = {}): BackgroundProcess {
    return spawnBackground(['nsenter', `--net=/run/netns/${this.pod(pod).netns}`, '--', ...argv], opts);
  }

  private nodePrefixArgv(node: string): string[] {
    const h = this.mustNode(node).holder;
    if (h === undefined || !h.running()) throw new Error(`node ${node} has no running mount-namespace holder`);
    return ['nsenter', '-t', String(h.pid), '-n', '-m', '--'];
  }

  /** `ping` from a pod (or node) to a pod name, node name or address, parsed. */
  async ping(from: string, to: string, opts?: PingOptions): Promise<PingResult> {
    const argv = pingArgv(this.resolve(to), opts);
    const timeoutMs = 5000 + 1000 * (opts?.count ?? 3) * ((opts?.intervalS ?? 0.2) + (opts?.waitS ?? 1));
    const r = this.nodeStates.has(from)
      ? await this.execNode(from, argv, { check: false, timeoutMs })
      : await this.execPod(from, argv, { check: false, timeoutMs });
    return parsePing(`${r.stdout}\n${r.stderr}`);
  }

  /**
   * Forgets learned path MTUs in a pod or node (`ip route flush cache`, and `ip -6 route flush
   * cache` when the cluster has IPv6: the first only flushes IPv4): each MTU probe starts fresh.
   */
  async flushRouteCache(target: string): Promise<void> {
    const exec = (argv: readonly string[]): Promise<ExecResult> =>
      this.nodeStates.has(target) ? this.execNode(target, argv) : this.execPod(target, argv);
    await exec(['ip', 'route', 'flush', 'cache']);
    if (this.addressPlan.v6 || this.opts.ipv6 === true) await exec(['ip', '-6', 'route', 'flush', 'cache']);
  }

  /** A directory under the run dir for a test's files (created). */
  async workDir(name: string): Promise<string> {
    const d = join(this.runDir, 'work', name);
    await mkdir(d, { recursive: true });
    return d;
  }

  /** Starts tcpdump on the underlay bridge; analyse with `stop()`. */
  async startCapture(
    opts: Partial<Omit<CaptureOptions, 'netns' | 'iface'>> & { name?: string } = {},
  ): Promise<Capture> {
    this.assertLive();
    const dir = await this.workDir('captures');
    const c = await startCapture({
      netns: this.underlayNetns,
      iface: topo.UNDERLAY_BRIDGE,
      file: opts.file ?? join(dir, `${opts.name ?? `cap-${Date.now()}`}.pcap`),
      podCidrs: opts.podCidrs ?? topo.podRanges(this.addressPlan),
      // Both links' ports: a key rotation moves a node to listenPort + 1 and back.
      wireguardPorts: opts.wireguardPorts ?? [this.listenPort, this.listenPort + 1],
      // WireGuard over this underlay: 60 (IPv4) / 80 (IPv6) bytes below eth0's MTU.
      wireguardMtus: opts.wireguardMtus ?? [(this.opts.mtu ?? 1500) - (this.addressPlan.underlay === 4 ? 60 : 80)],
      ...(opts.canaries !== undefined ? { canaries: opts.canaries } : {}),
      ...(opts.samples !== undefined ? { samples: opts.samples } : {}),
      ...(opts.bufferKiB !== undefined ? { bufferKiB: opts.bufferKiB } : {}),
    });
    this.captures.add(c);
    return c;
  }

  // -------------------------------------------------------------------------------------------
  // WireGuard / encryption state

  /** `wg show <iface> dump` in a node, parsed, private and preshared keys dropped. Undefined if absent. */
  async wgDump(node: string, iface?: string): Promise<WgDump | undefined> {
    if (iface === undefined) {
      // After a key rotation the node's key lives on the other link (sealwg1, then sealwg0 again):
      // the link holding the key the node publishes, else the first that exists.
      const published = (await this.nodeDoc(node))?.metadata.annotations[ANNOTATIONS.wireguardPublicKey];
      const dumps = (await Promise.all(WG_INTERFACES.map((i) => this.wgDump(node, i)))).filter(
        (d): d is WgDump => d !== undefined,
      );
      return dumps.find((d) => d.publicKey === published) ?? dumps[0];
    }
    const r = await this.execNode(node, ['wg', 'show', iface, 'dump'], { check: false, timeoutMs: 10_000 });
    if (r.code !== 0) return undefined;
    return parseWgDump(r.stdout);
  }

  /** A node's Node document as the store holds it now. */
  nodeDoc(node: string): Promise<NodeDoc | undefined> {
    return readNodeDoc(this.storeDir, node);
  }

  /**
   * Tunnel state of every node pair; with `probe`, also one ping each way between the first
   * pods of the two nodes (which also triggers WireGuard handshakes).
   */
  encryptionStatus(opts: { probe?: boolean } = {}): Promise<EncryptionStatus> {
    return encryptionStatus(this, opts);
  }

  /** Polls until every pair has tunnels and pings both ways; throws with what is missing. */
  waitEncrypted(opts: { timeoutMs?: number; pollMs?: number; failFast?: boolean } = {}): Promise<EncryptionStatus> {
    return waitEncrypted(this, opts);
  }

  // -------------------------------------------------------------------------------------------
  // Teardown

  /**
   * Kills every process in the run's namespaces (agents, wireguard-go, holders, pod tools,
   * tcpdump), deletes the namespaces and the run directory (unless `keep`). Safe to call twice.
   */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      for (const c of this.captures) c.abort();
      const keep = this.opts.keep ?? process.env.SEALNET_KEEP_RUNDIR === '1';
      const r = teardownSync({ netns: this.netnsList(), runDir: this.runDir, keepRunDir: keep });
      if (r.survivors.length > 0)
        this.log(`cluster ${this.prefix}: processes survived SIGKILL: ${r.survivors.join(', ')}`);
      this.removeHooks();
      this.log(
        `cluster ${this.prefix}: destroyed (${r.killed} processes, ${r.netns.length} namespaces)${keep ? `; run dir kept: ${this.runDir}` : ''}`,
      );
    })();
    return this.destroying;
  }

  /**
   * Leaves the cluster running after this process exits (demo --keep): removes the exit and
   * signal hooks and marks the run as kept so orphan cleanup leaves it alone.
   */
  detach(): void {
    this.removeHooks();
    const ownerPath = join(this.runDir, 'owner.json');
    const owner = JSON.parse(readFileSync(ownerPath, 'utf8')) as OwnerRecord;
    writeFileSync(ownerPath, `${JSON.stringify({ ...owner, kept: true })}\n`);
  }

  private installHooks(): void {
    const exit = (): void => {
      if (this.destroying !== undefined) return;
      teardownSync({
        netns: this.netnsList(),
        runDir: this.runDir,
        keepRunDir: this.opts.keep ?? process.env.SEALNET_KEEP_RUNDIR === '1',
      });
    };
    const signals: [NodeJS.Signals, () => void][] = [];
    if (this.opts.handleSignals !== false) {
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
        signals.push([sig, () => void this.destroy().finally(() => process.exit(SIGNAL_EXIT[sig] ?? 1))]);
      }
    }
    process.on('exit', exit);
    for (const [sig, fn] of signals) process.on(sig, fn);
    this.hooks = { exit, signals };
  }

  private removeHooks(): void {
    if (this.hooks === undefined) return;
    process.off('exit', this.hooks.exit);
    for (const [sig, fn] of this.hooks.signals) process.off(sig, fn);
    this.hooks = undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Helpers

  private assertLive(): void {
    if (this.destroying !== undefined) throw new Error(`cluster ${this.prefix} was destroyed`);
  }

  private mustNode(name: string): NodeState {
    const s = this.nodeStates.get(name);
    if (s === undefined) throw new Error(`no node ${name} in cluster ${this.prefix}`);
    return s;
  }

  /** `ip [-n ns] [-force] -batch -` with the given lines. */
  private async ipBatch(
    netns: string | undefined,
    lines: readonly string[],
    opts: { force?: boolean } = {},
  ): Promise<void> {
    if (lines.length === 0) return;
    const argv = [
      'ip',
      ...(netns !== undefined ? ['-n', netns] : []),
      ...(opts.force === true ? ['-force'] : []),
      '-batch',
      '-',
    ];
    await run(argv, { input: `${lines.join('\n')}\n`, check: opts.force !== true });
  }

  private async sysctl(netns: string, settings: readonly string[]): Promise<void> {
    await run(['nsenter', `--net=/run/netns/${netns}`, '--', 'sysctl', '-q', '-e', '-w', ...settings]);
  }
}

/** A pino JSON line as "level: msg (code)"; anything else unchanged. */
function readableLogLine(line: string): string {
  try {
    const o = JSON.parse(line) as { level?: number; msg?: unknown; code?: unknown };
    if (typeof o.msg !== 'string') return line;
    const level = o.level === undefined ? '' : o.level >= 50 ? 'error: ' : o.level >= 40 ? 'warn: ' : '';
    return `${level}${o.msg}${typeof o.code === 'string' ? ` (${o.code})` : ''}`;
  } catch {
    return line;
  }
}

function safeRead(path: string): string {
  try {
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  } catch {
    return '';
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge key by key; anything else in `b` replaces `a`'s value. */
function deepMerge(
  a: Readonly<Record<string, unknown>>,
  b: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = isPlainObject(cur) && isPlainObject(v) ? deepMerge(cur, v) : v;
  }
  return out;
}
