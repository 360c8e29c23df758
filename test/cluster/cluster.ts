/**
 * The real-cluster tier's cluster (issue 15 item 3): the k8s tier's etcd + kube-apiserver
 * (test/k8s/apiserver.ts) plus kube-controller-manager and kube-scheduler in the root network
 * namespace on loopback, and N real nodes, each a kubelet with its own containerd 2.x and runc,
 * in its own network namespace on an underlay bridge and its own mount namespace
 * (test/cluster/node.sh). Routed CNI: Debian's CNI `bridge` + `host-local`, one /24 per node,
 * host-gw routes between nodes.
 *
 * Addresses: nodes 198.18.0.<i>/24 on the underlay, pods 100.64.<i>.0/24. Everything the host
 * could see carries the run prefix (`scl<hex>`): network namespaces `<prefix>-ul` and
 * `<prefix>-n<i>`, cgroup roots `/<prefix>-n<i>` in every hierarchy, the run directory
 * `/tmp/<prefix>`. {@link RealCluster.destroy} (and an exit hook) removes all of it.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NsCluster } from '../harness/cluster.js';
import { run, sleep, spawnBackground, type BackgroundProcess, type ExecResult } from '../harness/exec.js';
import { TestApiServer, freePort } from '../k8s/apiserver.js';
import { writeKubeconfig } from '../k8s/pki.js';
import { ApiRelay, NODE_API_PORT } from '../k8s/relay.js';
import { nodeMountPid } from './agent.js';
import { NodeEgress } from './egress.js';
import { buildOciArchive } from './oci.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');

/** The binaries scripts/cluster-binaries.sh prints. */
export interface ClusterBinaries {
  readonly kubelet: string;
  readonly kubeControllerManager: string;
  readonly kubeScheduler: string;
  readonly containerd: string;
  readonly containerdShim: string;
  readonly ctr: string;
  readonly runc: string;
  readonly pause: string;
  readonly testpod: string;
  readonly flannel: string | undefined;
  /** flannel's CNI plugin (`type: flannel`), for {@link RealClusterOptions.cni} `flannel`. */
  readonly flannelCni: string | undefined;
}

/** Builds (or finds) the tier's binaries with scripts/cluster-binaries.sh. */
export async function clusterBinaries(): Promise<ClusterBinaries> {
  const r = await run(['bash', join(repo, 'scripts', 'cluster-binaries.sh')], { timeoutMs: 60 * 60_000 });
  const v = new Map(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
  );
  const get = (k: string): string => {
    const p = v.get(k);
    if (p === undefined || !existsSync(p))
      throw new Error(`scripts/cluster-binaries.sh printed no usable ${k} (output: ${r.stdout})`);
    return p;
  };
  return {
    kubelet: get('KUBELET'),
    kubeControllerManager: get('KUBE_CONTROLLER_MANAGER'),
    kubeScheduler: get('KUBE_SCHEDULER'),
    containerd: get('CONTAINERD'),
    containerdShim: get('CONTAINERD_SHIM'),
    ctr: get('CTR'),
    runc: get('RUNC'),
    pause: get('PAUSE'),
    testpod: get('TESTPOD'),
    flannel: v.get('FLANNEL'),
    flannelCni: v.get('FLANNEL_CNI'),
  };
}

/** The sandbox image name containerd is told to use (our pause, imported, never pulled). */
export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';
/** The traffic pods' image (test/cluster/testpod). */
export const TESTPOD_IMAGE = 'sealnet.test/testpod:1';
export const CLUSTER_POD_CIDR = '100.64.0.0/16';

/** One node of the cluster. */
export interface RealNode {
  readonly index: number;
  readonly name: string;
  readonly netns: string;
  readonly address: string;
  readonly podCidr: string;
  readonly dir: string;
  readonly cgroupRoot: string;
  boot: BackgroundProcess | undefined;
}

/**
 * Node ports the API server can reach (test/cluster/egress.ts): the kubelet (logs, exec) and
 * the agent's `/status` listener (the chart's status.podProxy.port).
 */
export const EGRESS_PORTS = [10250, 9589] as const;

/** Options of {@link RealCluster.start}. */
export interface RealClusterOptions {
  readonly nodes?: number;
  /** Extra OCI archives imported into every node's containerd (e.g. the agent image). */
  readonly images?: readonly string[];
  /** Repository given to those archives on import (`ctr images import --base-name`). */
  readonly imageBaseName?: string;
  readonly log?: (line: string) => void;
  /**
   * The pod network. `routed` (default): Debian's bridge + host-local, host-gw routes set by the
   * harness. `flannel`: flanneld (VXLAN backend, kube subnet manager against the real API server)
   * on every node, and flannel's CNI plugin delegating to bridge; no routes from the harness.
   */
  readonly cni?: 'routed' | 'flannel';
}

/** The VXLAN UDP port flannel's Linux VXLAN backend uses by default (the kernel's, not IANA's 4789). */
export const FLANNEL_VXLAN_PORT = 8472;

/** A control plane and N kubelet nodes. */
export class RealCluster {
  readonly prefix: string;
  readonly dir: string;
  readonly nodes: RealNode[] = [];
  /** Nodes taken out by {@link retireNode}: no longer in `nodes`, still torn down with the run. */
  private readonly retired: RealNode[] = [];
  readonly underlayNetns: string;
  api!: TestApiServer;
  bins!: ClusterBinaries;
  private relay: ApiRelay | undefined;
  private egress: NodeEgress | undefined;
  /** Taints a node's kubelet registers its Node with (`registerWithTaints`), by node index. */
  private readonly nodeTaints = new Map<number, readonly { key: string; effect: string }[]>();
  /** Every `ip:port` the API server's egress was asked to reach (a copy). */
  egressConnects(): string[] {
    return [...(this.egress?.proxy.connects ?? [])];
  }
  private controllerManager: BackgroundProcess | undefined;
  private scheduler: BackgroundProcess | undefined;
  private readonly log: (line: string) => void;
  private destroyed = false;
  private readonly exitHook = (): void => this.teardownSync();

  private constructor(private readonly opts: RealClusterOptions) {
    this.prefix = `scl${randomBytes(2).toString('hex')}`;
    this.dir = join(tmpdir(), this.prefix);
    this.underlayNetns = `${this.prefix}-ul`;
    this.log = opts.log ?? (() => undefined);
  }

  /** Builds everything; on failure tears down what was built and rethrows. */
  static async start(opts: RealClusterOptions = {}): Promise<RealCluster> {
    const c = new RealCluster(opts);
    process.on('exit', c.exitHook);
    try {
      await c.build();
      return c;
    } catch (err) {
      await c.destroy();
      throw err;
    }
  }

  private async build(): Promise<void> {
    const t0 = Date.now();
    this.bins = await clusterBinaries();
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // The API server reaches node addresses (pod proxy, kubelet) through a dialer in each node.
    this.egress = new NodeEgress(join(this.dir, 'egress'));
    await this.egress.start();
    this.api = await TestApiServer.start({ log: this.log, clusterEgressUds: this.egress.socketPath });
    this.log(`control plane API ready after ${Date.now() - t0} ms`);
    await this.startControllers();
    const images = join(this.dir, 'images');
    mkdirSync(images, { recursive: true });
    await buildOciArchive({
      work: join(this.dir, 'oci-pause'),
      out: join(images, 'pause.tar'),
      ref: PAUSE_IMAGE,
      binary: this.bins.pause,
      name: 'pause',
      entrypoint: ['/pause'],
    });
    await buildOciArchive({
      work: join(this.dir, 'oci-testpod'),
      out: join(images, 'testpod.tar'),
      ref: TESTPOD_IMAGE,
      binary: this.bins.testpod,
      name: 'testpod',
      entrypoint: ['/testpod'],
    });
    await run(['ip', 'netns', 'add', this.underlayNetns]);
    const ul = (args: string[]): Promise<ExecResult> => run(['ip', '-n', this.underlayNetns, ...args]);
    await ul(['link', 'add', 'br0', 'type', 'bridge']);
    await ul(['link', 'set', 'br0', 'up']);
    this.relay = new ApiRelay({ dir: join(this.dir, 'relay'), port: this.api.port });
    const n = this.opts.nodes ?? 3;
    if (this.opts.cni === 'flannel') await this.flannelRbac();
    for (let i = 1; i <= n; i++) await this.addNode(i);
    if (this.opts.cni === 'flannel') for (const node of this.nodes) await this.startFlannel(node);
    for (const node of this.nodes) await this.waitNodeReady(node.name, 120_000);
    this.log(`cluster of ${n} nodes Ready after ${Date.now() - t0} ms`);
  }

  private async startControllers(): Promise<void> {
    const kc = this.api.adminKubeconfig;
    const cmPort = await freePort();
    this.controllerManager = spawnBackground(
      [
        this.bins.kubeControllerManager,
        `--kubeconfig=${kc}`,
        `--authentication-kubeconfig=${kc}`,
        `--authorization-kubeconfig=${kc}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${cmPort}`,
        `--cert-dir=${join(this.dir, 'kcm-certs')}`,
        '--leader-elect=false',
        `--root-ca-file=${this.api.pki.caCert}`,
        `--service-account-private-key-file=${this.api.pki.saKey}`,
        '--use-service-account-credentials=false',
        // Node CIDRs are set by the harness (each node's CNI config names its /24).
        '--allocate-node-cidrs=false',
        '--controllers=*',
        '--v=1',
      ],
      { logFile: join(this.dir, 'kube-controller-manager.log') },
    );
    const schedPort = await freePort();
    this.scheduler = spawnBackground(
      [
        this.bins.kubeScheduler,
        `--kubeconfig=${kc}`,
        `--authentication-kubeconfig=${kc}`,
        `--authorization-kubeconfig=${kc}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${schedPort}`,
        `--cert-dir=${join(this.dir, 'sched-certs')}`,
        '--leader-elect=false',
        '--v=1',
      ],
      { logFile: join(this.dir, 'kube-scheduler.log') },
    );
  }

  /** Signs a kubelet client certificate (system:node:<name> in system:nodes) with the test CA. */
  private async kubeletCert(dir: string, name: string): Promise<{ cert: string; key: string }> {
    const key = join(dir, 'kubelet-client.key');
    const csr = join(dir, 'kubelet-client.csr');
    const cert = join(dir, 'kubelet-client.crt');
    const ext = join(dir, 'kubelet-client.ext');
    writeFileSync(ext, 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n');
    await run([
      'openssl',
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      csr,
      '-subj',
      `/O=system:nodes/CN=system:node:${name}`,
    ]);
    await run([
      'openssl',
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      this.api.pki.caCert,
      '-CAkey',
      this.api.pki.caKey,
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-days',
      '2',
      '-out',
      cert,
      '-extfile',
      ext,
    ]);
    return { cert, key };
  }

  /** Cgroup hierarchies the node's cgroup root must exist in (every v1 one and the unified one). */
  private static hierarchies(): string[] {
    const base = '/sys/fs/cgroup';
    return readdirSync(base)
      .map((h) => join(base, h))
      .filter((p) => existsSync(join(p, 'cgroup.procs')));
  }

  private async addNode(i: number, extraImages?: readonly string[]): Promise<void> {
    const name = `n${i}`;
    const netns = `${this.prefix}-${name}`;
    const dir = join(this.dir, name);
    const node: RealNode = {
      index: i,
      name,
      netns,
      address: `198.18.0.${i}`,
      podCidr: `100.64.${i}.0/24`,
      dir,
      cgroupRoot: `/${netns}`,
      boot: undefined,
    };
    this.nodes.push(node);
    mkdirSync(join(dir, 'images'), { recursive: true });
    for (const f of ['pause.tar', 'testpod.tar'])
      await run(['ln', '-sf', join(this.dir, 'images', f), join(dir, 'images', f)]);
    for (const [k, img] of (extraImages ?? this.opts.images ?? []).entries())
      await run(['ln', '-sf', img, join(dir, 'images', `extra${k}.tar`)]);
    for (const h of RealCluster.hierarchies()) mkdirSync(join(h, node.cgroupRoot), { recursive: true });
    // Network: veth from the underlay bridge into the node (created inside the namespaces).
    await run(['ip', 'netns', 'add', netns]);
    await run([
      'ip',
      '-n',
      this.underlayNetns,
      'link',
      'add',
      `v${i}`,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      netns,
    ]);
    await run(['ip', '-n', this.underlayNetns, 'link', 'set', `v${i}`, 'master', 'br0', 'up']);
    const nn = (args: string[]): Promise<ExecResult> => run(['ip', '-n', netns, ...args]);
    await nn(['link', 'set', 'lo', 'up']);
    await nn(['addr', 'add', `${node.address}/24`, 'dev', 'eth0']);
    await nn(['link', 'set', 'eth0', 'up']);
    await run(['ip', 'netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    // host-gw: every other node's pod /24 via that node's underlay address (flannel sets its own).
    for (let j = 1; j <= Math.max(this.opts.nodes ?? 3, i) && this.opts.cni !== 'flannel'; j++)
      if (j !== i) await nn(['route', 'add', `100.64.${j}.0/24`, 'via', `198.18.0.${j}`, 'dev', 'eth0']);
    // The API: 127.0.0.1:6443 in the node (kubelet) and the `kubernetes` Service address 10.96.0.1:443
    // (hostNetwork pods' in-cluster config) both relayed to the API server on the host's loopback.
    await this.relay?.addNode(
      {
        spawnNode: (_n: string, argv: readonly string[], o: { logFile?: string }) =>
          spawnBackground(['nsenter', `--net=/run/netns/${netns}`, '--', ...argv], o),
      } as unknown as NsCluster,
      name,
    );
    await this.egress?.addNode(netns, `198.18.0.${i}`, EGRESS_PORTS);
    const { cert, key } = await this.kubeletCert(dir, name);
    const kubeconfig = join(dir, 'kubelet.kubeconfig');
    await writeKubeconfig(kubeconfig, {
      server: `https://127.0.0.1:${NODE_API_PORT}`,
      caCert: this.api.pki.caCert,
      user: `system:node:${name}`,
      auth: { clientCert: cert, clientKey: key },
    });
    writeFileSync(
      join(dir, 'cni.conflist'),
      JSON.stringify(
        this.opts.cni === 'flannel'
          ? FLANNEL_CONFLIST
          : {
              cniVersion: '1.0.0',
              name: 'sealnet-test',
              plugins: [
                {
                  type: 'bridge',
                  bridge: 'cni0',
                  isGateway: true,
                  ipMasq: false,
                  ipam: { type: 'host-local', ranges: [[{ subnet: node.podCidr }]], routes: [{ dst: '0.0.0.0/0' }] },
                },
              ],
            },
      ),
    );
    writeFileSync(
      join(dir, 'containerd.toml'),
      containerdConfig(this.bins, this.opts.cni === 'flannel' ? [dirname(this.flannelBin('flannelCni'))] : []),
    );
    writeFileSync(
      join(dir, 'kubelet.yaml'),
      kubeletConfig({
        caCert: this.api.pki.caCert,
        cgroupRoot: node.cgroupRoot,
        address: node.address,
        registerWithTaints: this.nodeTaints.get(i),
      }),
    );
    const env = {
      BIN_PATH: [dirname(this.bins.containerd), dirname(this.bins.runc)].join(':'),
      CONTAINERD_BIN: this.bins.containerd,
      CTR_BIN: this.bins.ctr,
      KUBELET_BIN: this.bins.kubelet,
      NODE_NAME: name,
      NODE_IP: node.address,
      EXTRA_IMAGE_BASE: this.opts.imageBaseName ?? '',
    };
    node.boot = spawnBackground(
      [
        'nsenter',
        `--net=/run/netns/${netns}`,
        '--',
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        'bash',
        join(here, 'node.sh'),
        dir,
      ],
      { logFile: join(dir, 'boot.log'), env },
    );
    // The Node object appears once kubelet registers; then the harness gives it its pod CIDR
    // (what kube-controller-manager's nodeipam would do, with the /24 the CNI config names).
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (!node.boot.running())
        throw new Error(
          `node ${name} boot script exited: ${tail(join(dir, 'boot.log'))}\nkubelet: ${tail(join(dir, 'kubelet.log'))}\ncontainerd: ${tail(join(dir, 'containerd.log'))}`,
        );
      const r = await this.api.kubectl(['get', 'node', name, '-o', 'jsonpath={.metadata.name}'], { check: false });
      if (r.code === 0) break;
      if (Date.now() > deadline)
        throw new Error(`node ${name} did not register in 120 s: ${tail(join(dir, 'kubelet.log'))}`);
      await sleep(500);
    }
    await this.api.kubectl([
      'patch',
      'node',
      name,
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { podCIDR: node.podCidr, podCIDRs: [node.podCidr] } }),
    ]);
  }

  /** A flannel binary or a clear error (scripts/cluster-binaries.sh prints both). */
  private flannelBin(k: 'flannel' | 'flannelCni'): string {
    const p = this.bins[k];
    if (p === undefined || !existsSync(p)) throw new Error(`cni flannel: scripts/cluster-binaries.sh printed no ${k}`);
    return p;
  }

  /** flannel's RBAC as its kube-flannel.yml ships it (ClusterRole `flannel`), and its ServiceAccount. */
  private async flannelRbac(): Promise<void> {
    const docs = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-flannel' } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'flannel', namespace: 'kube-flannel' } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'flannel' },
        rules: [
          { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
          { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
        ],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'flannel' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'flannel' },
        subjects: [{ kind: 'ServiceAccount', name: 'flannel', namespace: 'kube-flannel' }],
      },
    ];
    await this.api.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }),
    });
  }

  /**
   * Starts flanneld on `node` as its DaemonSet would run it (hostNetwork, `--ip-masq
   * --kube-subnet-mgr`, its ServiceAccount's token, /run/flannel/subnet.env for the CNI plugin),
   * as a process in the node's network and mount namespaces: the image this repo can build holds
   * no iptables, which flanneld runs. Waits for its subnet file.
   */
  private async startFlannel(node: RealNode): Promise<void> {
    const dir = node.dir;
    const netConf = join(dir, 'net-conf.json');
    writeFileSync(netConf, JSON.stringify({ Network: CLUSTER_POD_CIDR, Backend: { Type: 'vxlan' } }));
    const token = (
      await this.api.kubectl(['create', 'token', 'flannel', '-n', 'kube-flannel', '--duration=24h'])
    ).stdout.trim();
    const kubeconfig = join(dir, 'flannel.kubeconfig');
    await writeKubeconfig(kubeconfig, {
      server: `https://127.0.0.1:${NODE_API_PORT}`,
      caCert: this.api.pki.caCert,
      user: 'flannel',
      auth: { token },
    });
    const pid = nodeMountPid(node);
    spawnBackground(
      [
        'nsenter',
        '-t',
        String(pid),
        '-n',
        '-m',
        '--',
        this.flannelBin('flannel'),
        '--ip-masq',
        '--kube-subnet-mgr',
        '--iface=eth0',
        `--kubeconfig-file=${kubeconfig}`,
        `--net-config-path=${netConf}`,
      ],
      { logFile: join(dir, 'flanneld.log'), env: { NODE_NAME: node.name } },
    );
    const deadline = Date.now() + 60_000;
    while (
      (await run(['nsenter', '-t', String(pid), '-m', '--', 'test', '-s', '/run/flannel/subnet.env'], { check: false }))
        .code !== 0
    ) {
      if (Date.now() > deadline)
        throw new Error(`flanneld on ${node.name} wrote no subnet.env: ${tail(join(dir, 'flanneld.log'))}`);
      await sleep(500);
    }
  }

  /** Waits until every node routes every other node's pod CIDR through flannel's VXLAN device. */
  async waitFlannelRoutes(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const node of this.nodes) {
      for (;;) {
        const r = await this.nodeExec(node, ['ip', '-4', 'route', 'show', 'dev', 'flannel.1'], { check: false });
        const missing = this.nodes.filter((o) => o !== node && !r.stdout.includes(`${o.podCidr} `));
        if (missing.length === 0) break;
        if (Date.now() > deadline)
          throw new Error(
            `${node.name} has no flannel.1 route to ${missing.map((m) => m.podCidr).join(', ')}: ${r.stdout}`,
          );
        await sleep(500);
      }
    }
  }

  /**
   * A new node joins the running cluster (what adding a machine does): the next index, its own
   * kubelet and containerd, host-gw routes to and from every node (what a routed CNI's route
   * agent would add). `images` replaces the extra images imported at boot (`[]`: none, e.g. an
   * agent image its registry cannot serve yet). Resolves once the Node is Ready.
   */
  async joinNode(
    o: { images?: readonly string[]; registerWithTaints?: readonly { key: string; effect: string }[] } = {},
  ): Promise<RealNode> {
    const i = Math.max(0, ...[...this.nodes, ...this.retired].map((n) => n.index)) + 1;
    if (o.registerWithTaints !== undefined) this.nodeTaints.set(i, o.registerWithTaints);
    await this.addNode(i, o.images);
    const node = this.nodes[this.nodes.length - 1];
    if (node === undefined || node.index !== i) throw new Error(`joined node ${i} not recorded`);
    for (const other of this.nodes)
      if (other !== node)
        await run(['ip', '-n', other.netns, 'route', 'replace', node.podCidr, 'via', node.address, 'dev', 'eth0']);
    await this.waitNodeReady(node.name, 120_000);
    return node;
  }

  /**
   * The machine behind `node` goes away (after a drain): every process of the node is killed,
   * the other nodes' routes to its pods removed, and the node leaves `nodes` (its namespaces
   * and cgroups are still removed by {@link destroy}). The Node object is the caller's to delete.
   */
  async retireNode(node: RealNode): Promise<void> {
    const at = this.nodes.indexOf(node);
    if (at < 0) throw new Error(`node ${node.name} is not a live node of this cluster`);
    node.boot?.kill('SIGKILL');
    for (let round = 0; round < 20; round++) {
      const pids = [...this.netnsPids([node]), ...this.cgroupPids([node])].filter((p) => p !== process.pid);
      if (pids.length === 0) break;
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await sleep(200);
    }
    this.nodes.splice(at, 1);
    this.retired.push(node);
    for (const other of this.nodes)
      await run(['ip', '-n', other.netns, 'route', 'del', node.podCidr], { check: false });
  }

  /** Waits until the Node reports Ready=True. */
  async waitNodeReady(name: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.api.kubectl(
        ['get', 'node', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'],
        { check: false },
      );
      if (r.stdout.trim() === 'True') return;
      if (Date.now() > deadline)
        throw new Error(`node ${name} not Ready after ${timeoutMs} ms: ${tail(join(this.dir, name, 'kubelet.log'))}`);
      await sleep(1000);
    }
  }

  /**
   * Runs argv in a node's network namespace (tcpdump, ip, wg): the node's mount namespace is not
   * needed for network state.
   */
  nodeExec(
    node: RealNode,
    argv: readonly string[],
    o: { check?: boolean; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    return run(['nsenter', `--net=/run/netns/${node.netns}`, '--', ...argv], {
      check: o.check ?? true,
      timeoutMs: o.timeoutMs ?? 30_000,
    });
  }

  /** PIDs whose cgroup (any hierarchy) lies under one of this run's node cgroup roots. */
  private cgroupPids(nodes: readonly RealNode[] = [...this.nodes, ...this.retired]): number[] {
    const pids = new Set<number>();
    for (const h of RealCluster.hierarchies()) {
      for (const node of nodes) {
        const walk = (p: string): void => {
          if (!existsSync(p)) return;
          for (const l of readFileSync(join(p, 'cgroup.procs'), 'utf8').split('\n')) if (l !== '') pids.add(Number(l));
          for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) walk(join(p, e.name));
        };
        try {
          walk(join(h, node.cgroupRoot));
        } catch {
          // raced with a removal
        }
      }
    }
    return [...pids];
  }

  /** PIDs in one of this run's network namespaces (kubelet, containerd, shims, forwarders). */
  private netnsPids(nodes?: readonly RealNode[]): number[] {
    const inodes = new Set<number>();
    const names =
      nodes === undefined
        ? [...this.nodes, ...this.retired].map((x) => x.netns).concat(this.underlayNetns)
        : nodes.map((x) => x.netns);
    for (const n of names) {
      try {
        inodes.add(statSync(`/run/netns/${n}`).ino);
      } catch {
        // absent
      }
    }
    const pids: number[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const m = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${e}/ns/net`));
        if (m !== null && inodes.has(Number(m[1]))) pids.push(Number(e));
      } catch {
        // gone
      }
    }
    return pids;
  }

  /** Kills every process of the run, deletes namespaces and cgroups, removes the run dir. */
  private teardownSync(): void {
    const kill = (pids: number[]): void => {
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    };
    for (let round = 0; round < 20; round++) {
      const pids = [...this.netnsPids(), ...this.cgroupPids()].filter((p) => p !== process.pid);
      if (pids.length === 0) break;
      kill(pids);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
    for (const h of RealCluster.hierarchies()) {
      for (const node of [...this.nodes, ...this.retired]) {
        const rm = (p: string): void => {
          if (!existsSync(p)) return;
          for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) rm(join(p, e.name));
          try {
            rmdirSync(p);
          } catch {
            // still busy: reported by the leak check
          }
        };
        rm(join(h, node.cgroupRoot));
      }
    }
    for (const n of [...this.nodes, ...this.retired].map((x) => x.netns).concat(this.underlayNetns)) {
      if (existsSync(`/run/netns/${n}`)) spawnSync('ip', ['netns', 'del', n]);
    }
    if (process.env.SEALNET_KEEP_RUNDIR !== '1') rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops the control plane and tears every node down. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const n of [...this.nodes, ...this.retired]) n.boot?.kill('SIGKILL');
    await this.relay?.close().catch(() => undefined);
    await this.egress?.stop().catch(() => undefined);
    await this.scheduler?.stop({ timeoutMs: 3000 });
    await this.controllerManager?.stop({ timeoutMs: 3000 });
    this.teardownSync();
    await this.api?.destroy();
    process.off('exit', this.exitHook);
  }
}

/** containerd 2.x config (version 3) for a node: nothing outside the node's private mounts. */
function containerdConfig(bins: ClusterBinaries, extraCniBinDirs: readonly string[] = []): string {
  return `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "/var/lib/containerd/opt"
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = "/var/lib/containerd/image-verifiers"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "${PAUSE_IMAGE}"
  [plugins.'io.containerd.cri.v1.runtime']
    enable_cdi = false
    cdi_spec_dirs = []
    # The test's sandbox has no CAP_SYS_RESOURCE: lowering oom_score_adj would fail every pod.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "${bins.runc}"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [${[...extraCniBinDirs, '/usr/lib/cni'].map((d) => JSON.stringify(d)).join(', ')}]
      conf_dir = "/etc/cni/net.d"
`;
}

/** KubeletConfiguration for one node (cgroup v1 hybrid, no systemd, no global sysctl writes). */
function kubeletConfig(o: {
  caCert: string;
  cgroupRoot: string;
  address: string;
  registerWithTaints?: readonly { key: string; effect: string }[] | undefined;
}): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      cgroupRoot: o.cgroupRoot,
      cgroupsPerQOS: true,
      protectKernelDefaults: true,
      containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
      address: o.address,
      port: 10250,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: o.caCert } },
      authorization: { mode: 'Webhook' },
      failSwapOn: false,
      resolvConf: '/etc/resolv.conf',
      // A shared test machine: no eviction, no image GC.
      evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      localStorageCapacityIsolation: false,
      serializeImagePulls: false,
      registerNode: true,
      ...(o.registerWithTaints === undefined ? {} : { registerWithTaints: o.registerWithTaints }),
      nodeStatusReportFrequency: '10s',
    },
    null,
    2,
  );
}

/** flannel's CNI config as kube-flannel.yml installs it (portmap left out: no host ports here). */
const FLANNEL_CONFLIST = {
  name: 'cbr0',
  cniVersion: '0.3.1',
  plugins: [{ type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } }],
};

function tail(path: string, lines = 20): string {
  if (!existsSync(path)) return '(no log)';
  return readFileSync(path, 'utf8').trim().split('\n').slice(-lines).join('\n');
}
