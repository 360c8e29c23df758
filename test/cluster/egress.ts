/**
 * The API server's way into the nodes of the real-cluster tier, as konnectivity gives it in
 * clusters whose control plane has no route to the nodes. The API server runs in the root
 * network namespace, which has no route to node addresses (and must get none); its `cluster`
 * egress (pods/proxy, kubelet logs and exec) goes to an HTTP CONNECT proxy on a Unix socket
 * (test/k8s/podproxy.ts). A CONNECT to `<node IP>:<port>` is handed to a dialer running inside
 * that node's network namespace, which opens a real TCP connection to `<node IP>:<port>` there:
 * what answers is whatever listens on the node's address — the agent's `/status` listener (the
 * chart's `status.podProxy`), the kubelet — exactly as the API server would reach it directly.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep, spawnBackground, type BackgroundProcess } from '../harness/exec.js';
import { AgentEgressProxy } from '../k8s/podproxy.js';

/** Dialer inside a node's namespace: one Unix listener per port, each connecting to `<host>:<port>`. */
const NODE_DIALER = `
const net = require('net');
const fs = require('fs');
const [host, ...pairs] = process.argv.slice(1);
for (const pair of pairs) {
  const [sock, port] = pair.split('=');
  fs.rmSync(sock, { force: true });
  net.createServer((c) => {
    const u = net.connect(Number(port), host);
    const end = () => { c.destroy(); u.destroy(); };
    c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end);
    c.pipe(u); u.pipe(c);
  }).listen(sock, () => console.log('listening ' + sock));
}
`;

/** The CONNECT proxy plus one dialer per node. */
export class NodeEgress {
  readonly proxy: AgentEgressProxy;
  private readonly dialers: BackgroundProcess[] = [];

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.proxy = new AgentEgressProxy(join(dir, 'egress.sock'), (address, port) => {
      const path = this.socketOf(address, port);
      return existsSync(path) ? path : undefined;
    });
  }

  /** The Unix socket the API server's CONNECT proxy uses (`TestApiServer` `clusterEgressUds`). */
  get socketPath(): string {
    return this.proxy.socketPath;
  }

  private socketOf(address: string, port: number): string {
    return join(this.dir, `${address}-${port}.sock`);
  }

  async start(): Promise<void> {
    await this.proxy.start();
  }

  /** Starts the dialer of a node (network namespace `netns`, address `address`) for `ports`. */
  async addNode(netns: string, address: string, ports: readonly number[]): Promise<void> {
    const logFile = join(this.dir, `${netns}.dialer.log`);
    const pairs = ports.map((p) => `${this.socketOf(address, p)}=${p}`);
    const dialer = spawnBackground(
      ['nsenter', `--net=/run/netns/${netns}`, '--', process.execPath, '-e', NODE_DIALER, address, ...pairs],
      { logFile },
    );
    this.dialers.push(dialer);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (!dialer.running()) throw new Error(`egress dialer in ${netns} exited; see ${logFile}`);
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      if (pairs.every((p) => log.includes(`listening ${p.split('=')[0]}`))) return;
      await sleep(50);
    }
    throw new Error(`egress dialer in ${netns} did not listen within 10 s`);
  }

  /** Stops the dialers and the proxy. */
  async stop(): Promise<void> {
    await Promise.all(this.dialers.map((d) => d.stop({ timeoutMs: 2000 })));
    await this.proxy.stop();
  }
}
