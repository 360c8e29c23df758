/**
 * A real `etcd` + `kube-apiserver` for the Kubernetes API tier (DESIGN.md "Test tiers" 4).
 *
 * Both run in the root network namespace and listen on 127.0.0.1 only, on free ports; nothing
 * is added to the root namespace's addresses or routes. Agents inside node namespaces reach the
 * API server through {@link ApiRelay} (relay.ts). The API server runs with generated certs
 * (pki.ts), anonymous auth off, authorization `Node,RBAC`, the `NodeRestriction` and
 * `ValidatingAdmissionPolicy` admission plugins, service-account token issuance (TokenRequest,
 * tokens bound to Nodes), and an audit log at RequestResponse level for every write (so a test
 * can show no private key ever reached the API). There is no controller-manager or scheduler:
 * the test plays the control plane.
 *
 * {@link TestApiServer.stopApiServer}/{@link TestApiServer.startApiServer} stop and restart the
 * API server alone (same port, same etcd) to simulate an outage. {@link TestApiServer.destroy}
 * kills both processes and removes the run directory; an exit hook does the same if a test
 * forgets, and {@link cleanupStaleApiServers} removes what a killed test run left behind.
 */
import * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, sleep, spawnBackground, type BackgroundProcess, type ExecResult } from '../harness/exec.js';
import { processStartTicks } from '../harness/teardown.js';
import { k8sBinaries, type K8sBinaries } from './binaries.js';
import { generatePki, SERVICE_CIDR, writeKubeconfig, type Pki } from './pki.js';

/** Options of {@link TestApiServer.start}. */
export interface TestApiServerOptions {
  /** Parent of the run directory (default: the OS temp dir). */
  readonly runDirBase?: string;
  /** Keep the run directory (logs, audit log) after destroy (default: env SEALNET_KEEP_RUNDIR=1). */
  readonly keep?: boolean;
  readonly log?: (line: string) => void;
  /**
   * Route the API server's connections to pods and nodes (pod proxy, logs, exec) through an HTTP
   * CONNECT proxy on this Unix socket (an EgressSelectorConfiguration `cluster` egress, as
   * konnectivity does), instead of dialing pod IPs from the root namespace (which has no route
   * to them, and gets none). See podproxy.ts.
   */
  readonly clusterEgressUds?: string;
}

/** Run directories start with this; {@link cleanupStaleApiServers} looks for it. */
const RUN_PREFIX = 'sealk8s-';

const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [get, list, watch]
  - level: RequestResponse
`;

interface OwnerFile {
  pid: number;
  startTicks: number;
  children: number[];
}

/** A free TCP port on 127.0.0.1 (bound and released; fine for a test machine). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** GET with client-certificate auth; resolves with the status code and body (never throws on HTTP errors). */
function httpsGet(
  url: string,
  tls: { ca: string; cert: string; key: string },
  timeoutMs = 5000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ca: tls.ca, cert: tls.cert, key: tls.key, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Kills the processes of test API servers whose owning test process is gone; removes their dirs. */
export function cleanupStaleApiServers(base: string = tmpdir()): number {
  let killed = 0;
  for (const name of readdirSync(base)) {
    if (!name.startsWith(RUN_PREFIX)) continue;
    const ownerPath = join(base, name, 'owner.json');
    let owner: OwnerFile;
    try {
      owner = JSON.parse(readFileSync(ownerPath, 'utf8')) as OwnerFile;
    } catch {
      continue;
    }
    if (processStartTicks(owner.pid) === owner.startTicks) continue; // owner still alive
    for (const pid of owner.children) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // gone
      }
    }
    rmSync(join(base, name), { recursive: true, force: true });
  }
  return killed;
}

/** A running etcd + kube-apiserver pair. */
export class TestApiServer {
  readonly dir: string;
  readonly bins: K8sBinaries;
  readonly pki: Pki;
  readonly port: number;
  readonly etcdPort: number;
  readonly etcdPeerPort: number;
  /** `https://127.0.0.1:<port>`. */
  readonly url: string;
  /** Kubeconfig of a `system:masters` user (the test acting as control plane and cluster admin). */
  readonly adminKubeconfig: string;
  readonly auditLog: string;
  readonly etcdDataDir: string;

  private readonly opts: TestApiServerOptions;
  private readonly log: (line: string) => void;
  private etcd: BackgroundProcess | undefined;
  private apiserver: BackgroundProcess | undefined;
  private apiserverStarts = 0;
  private destroyed = false;
  private readonly exitHook = (): void => this.killAllSync();

  private constructor(o: {
    opts: TestApiServerOptions;
    dir: string;
    bins: K8sBinaries;
    pki: Pki;
    port: number;
    etcdPort: number;
    etcdPeerPort: number;
  }) {
    this.opts = o.opts;
    this.log = o.opts.log ?? (() => undefined);
    this.dir = o.dir;
    this.bins = o.bins;
    this.pki = o.pki;
    this.port = o.port;
    this.etcdPort = o.etcdPort;
    this.etcdPeerPort = o.etcdPeerPort;
    this.url = `https://127.0.0.1:${o.port}`;
    this.adminKubeconfig = join(o.dir, 'admin.kubeconfig');
    this.auditLog = join(o.dir, 'audit.log');
    this.etcdDataDir = join(o.dir, 'etcd');
  }

  /** Builds (or finds) the binaries, generates certs, starts etcd and the API server, waits until ready. */
  static async start(opts: TestApiServerOptions = {}): Promise<TestApiServer> {
    const base = opts.runDirBase ?? tmpdir();
    cleanupStaleApiServers(base);
    const bins = await k8sBinaries();
    const dir = join(base, `${RUN_PREFIX}${randomBytes(3).toString('hex')}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const pki = await generatePki(dir);
    const [port, etcdPort, etcdPeerPort] = [await freePort(), await freePort(), await freePort()];
    const s = new TestApiServer({ opts, dir, bins, pki, port, etcdPort, etcdPeerPort });
    process.on('exit', s.exitHook);
    s.writeOwner();
    try {
      await writeKubeconfig(s.adminKubeconfig, {
        server: s.url,
        caCert: pki.caCert,
        user: 'admin',
        auth: { clientCert: pki.adminCert, clientKey: pki.adminKey },
      });
      await writeFile(join(dir, 'audit-policy.yaml'), AUDIT_POLICY);
      if (opts.clusterEgressUds !== undefined)
        await writeFile(join(dir, 'egress.yaml'), egressConfig(opts.clusterEgressUds));
      const t0 = Date.now();
      await s.startEtcd();
      await s.startApiServer();
      s.log(`test API server ${s.url} ready in ${Date.now() - t0} ms (run dir ${dir})`);
      return s;
    } catch (err) {
      await s.destroy();
      throw err;
    }
  }

  private writeOwner(): void {
    const owner: OwnerFile = {
      pid: process.pid,
      startTicks: processStartTicks(process.pid) ?? 0,
      children: [this.etcd?.pid, this.apiserver?.pid].filter((p): p is number => p !== undefined),
    };
    writeFileSync(join(this.dir, 'owner.json'), `${JSON.stringify(owner)}\n`);
  }

  private async startEtcd(): Promise<void> {
    const peer = `http://127.0.0.1:${this.etcdPeerPort}`;
    const client = `http://127.0.0.1:${this.etcdPort}`;
    this.etcd = spawnBackground(
      [
        this.bins.etcd,
        '--name=sealnet-test',
        `--data-dir=${this.etcdDataDir}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=sealnet-test=${peer}`,
        '--initial-cluster-state=new',
        // A throw-away store on a busy 2-core machine: fsync latency is not what we test.
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      { logFile: join(this.dir, 'etcd.log') },
    );
    this.writeOwner();
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (!this.etcd.running())
        throw new Error(`etcd exited; see ${join(this.dir, 'etcd.log')}: ${tail(join(this.dir, 'etcd.log'))}`);
      const ok = await fetch(`${client}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await sleep(100);
    }
    throw new Error(`etcd not healthy after 30 s; see ${join(this.dir, 'etcd.log')}`);
  }

  private apiserverArgv(): string[] {
    const p = this.pki;
    return [
      this.bins.kubeApiserver,
      `--etcd-servers=http://127.0.0.1:${this.etcdPort}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${this.port}`,
      '--advertise-address=127.0.0.1',
      // No controller manages the `kubernetes` Service endpoints here; a loopback endpoint would be useless anyway.
      '--endpoint-reconciler-type=none',
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      `--tls-cert-file=${p.serverCert}`,
      `--tls-private-key-file=${p.serverKey}`,
      `--client-ca-file=${p.caCert}`,
      '--anonymous-auth=false',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${p.saPub}`,
      `--service-account-signing-key-file=${p.saKey}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction,ValidatingAdmissionPolicy',
      '--allow-privileged=true',
      '--profiling=false',
      `--audit-policy-file=${join(this.dir, 'audit-policy.yaml')}`,
      `--audit-log-path=${this.auditLog}`,
      '--audit-log-maxbackup=0',
      '--audit-log-maxsize=0',
      ...(this.opts.clusterEgressUds === undefined
        ? []
        : [`--egress-selector-config-file=${join(this.dir, 'egress.yaml')}`]),
      '--v=1',
    ];
  }

  /** Starts the API server (again, after {@link stopApiServer}) and waits until `/readyz` says ok. */
  async startApiServer(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.apiserver?.running() === true) throw new Error('kube-apiserver is already running');
    this.apiserverStarts++;
    const logFile = join(this.dir, `kube-apiserver.${this.apiserverStarts}.log`);
    this.apiserver = spawnBackground(this.apiserverArgv(), { logFile });
    this.writeOwner();
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const deadline = Date.now() + timeoutMs;
    const tls = {
      ca: await readFile(this.pki.caCert, 'utf8'),
      cert: await readFile(this.pki.adminCert, 'utf8'),
      key: await readFile(this.pki.adminKey, 'utf8'),
    };
    let last = '';
    while (Date.now() < deadline) {
      if (!this.apiserver.running()) throw new Error(`kube-apiserver exited; see ${logFile}: ${tail(logFile)}`);
      const r = await httpsGet(`${this.url}/readyz`, tls).catch((e: unknown) => ({ status: 0, body: String(e) }));
      if (r.status === 200) return;
      last = `${r.status} ${r.body.slice(0, 300)}`;
      await sleep(250);
    }
    throw new Error(`kube-apiserver not ready after ${timeoutMs} ms (last /readyz: ${last}); see ${logFile}`);
  }

  /** Stops the API server alone (SIGTERM, then SIGKILL after 10 s); etcd keeps running. */
  async stopApiServer(): Promise<void> {
    await this.apiserver?.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
  }

  /** Whether the API server process runs. */
  apiserverRunning(): boolean {
    return this.apiserver?.running() ?? false;
  }

  /** A client-node KubeConfig for the admin user. */
  adminConfig(): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(this.adminKubeconfig);
    return kc;
  }

  /** Runs the pinned kubectl against this API server (admin unless `kubeconfig` is given). */
  kubectl(
    args: readonly string[],
    o: { input?: string; kubeconfig?: string; check?: boolean; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    return run([this.bins.kubectl, `--kubeconfig=${o.kubeconfig ?? this.adminKubeconfig}`, ...args], {
      ...(o.input !== undefined ? { input: o.input } : {}),
      check: o.check ?? true,
      timeoutMs: o.timeoutMs ?? 60_000,
    });
  }

  /** Runs the pinned helm (with the admin kubeconfig, for commands that talk to the cluster). */
  helm(args: readonly string[], o: { check?: boolean; timeoutMs?: number } = {}): Promise<ExecResult> {
    return run([this.bins.helm, ...args], {
      check: o.check ?? true,
      timeoutMs: o.timeoutMs ?? 60_000,
      env: {
        KUBECONFIG: this.adminKubeconfig,
        HELM_CACHE_HOME: join(this.dir, 'helm', 'cache'),
        HELM_CONFIG_HOME: join(this.dir, 'helm', 'config'),
        HELM_DATA_HOME: join(this.dir, 'helm', 'data'),
      },
    });
  }

  /**
   * A token for `namespace/serviceAccount` bound to the Node `nodeName` (TokenRequest with a
   * boundObjectRef to the Node: the API server adds the node-name claim, and the token dies
   * with the Node).
   */
  async nodeBoundToken(o: {
    namespace: string;
    serviceAccount: string;
    nodeName: string;
    expirationSeconds?: number;
  }): Promise<string> {
    const core = this.adminConfig().makeApiClient(k8s.CoreV1Api);
    const node = await core.readNode({ name: o.nodeName });
    const tr = await core.createNamespacedServiceAccountToken({
      name: o.serviceAccount,
      namespace: o.namespace,
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          audiences: [],
          expirationSeconds: o.expirationSeconds ?? 3600,
          boundObjectRef: { kind: 'Node', apiVersion: 'v1', name: o.nodeName, uid: node.metadata?.uid },
        },
      },
    });
    const token = tr.status?.token;
    if (token === undefined || token === '')
      throw new Error(`TokenRequest for ${o.namespace}/${o.serviceAccount} bound to ${o.nodeName} returned no token`);
    return token;
  }

  /** A token for `namespace/serviceAccount` bound to nothing (no node claim). */
  async unboundToken(o: { namespace: string; serviceAccount: string }): Promise<string> {
    const core = this.adminConfig().makeApiClient(k8s.CoreV1Api);
    const tr = await core.createNamespacedServiceAccountToken({
      name: o.serviceAccount,
      namespace: o.namespace,
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    return tr.status?.token ?? '';
  }

  /** Kills everything and removes the run directory (unless kept). Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.apiserver?.stop({ signal: 'SIGTERM', timeoutMs: 5000 });
    await this.etcd?.stop({ signal: 'SIGTERM', timeoutMs: 5000 });
    process.off('exit', this.exitHook);
    const keep = this.opts.keep ?? process.env.SEALNET_KEEP_RUNDIR === '1';
    if (!keep) rmSync(this.dir, { recursive: true, force: true });
    this.log(`test API server ${this.url} destroyed${keep ? `; run dir kept: ${this.dir}` : ''}`);
  }

  private killAllSync(): void {
    for (const p of [this.apiserver, this.etcd]) p?.kill('SIGKILL');
    if (!(this.opts.keep ?? process.env.SEALNET_KEEP_RUNDIR === '1'))
      rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The `cluster` egress through an HTTP CONNECT proxy on a Unix socket. */
function egressConfig(uds: string): string {
  return `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: HTTPConnect
      transport:
        uds:
          udsName: ${uds}
`;
}

function tail(path: string, lines = 15): string {
  if (!existsSync(path)) return '(no log)';
  return readFileSync(path, 'utf8').trim().split('\n').slice(-lines).join('\n');
}
