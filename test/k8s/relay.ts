/**
 * How agents inside node namespaces reach an API server that listens on the root namespace's
 * loopback, without adding any address or route anywhere.
 *
 *   agent ──TCP──► 127.0.0.1:6443 in the node's netns   (forwarder process inside the node)
 *         ──unix──► <run dir>/relay/<node>.sock          (filesystem: shared by all netns)
 *         ──TCP──► 127.0.0.1:<port> in the root netns   (this process: kube-apiserver)
 *
 * Why this and not an API server inside the underlay: the API server then outlives any one
 * namespace cluster, keeps listening on loopback only, and the test process, kubectl and helm
 * talk to it directly. The relay also sees every connection an agent opens, which is how the
 * outage test measures reconnect backoff. TLS is end to end (the relay moves bytes); the serving
 * certificate's SAN 127.0.0.1 matches on both sides. What this does not model: API traffic
 * crossing the underlay (the fail-closed exemption for API-server endpoints is not exercised).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { NsCluster } from '../harness/cluster.js';
import { sleep, type BackgroundProcess } from '../harness/exec.js';

/** The port agents dial inside their node namespace. */
export const NODE_API_PORT = 6443;

/** Forwarder run inside a node's namespace: TCP 127.0.0.1:<port> → unix socket. */
const NODE_FORWARDER = `
const net = require('net');
const [sock, port] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(sock);
  const end = () => { c.destroy(); u.destroy(); };
  c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end);
  c.pipe(u); u.pipe(c);
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));
`;

interface NodeRelay {
  server: Server;
  forwarder: BackgroundProcess;
  sockets: Set<Socket>;
  /** Times (ms since epoch) of every connection the node's agent opened. */
  connections: number[];
  /** Bytes relayed (TLS, as on the wire) from the API server to the node, and back. */
  bytes: { toNode: number; fromNode: number };
}

/** Relays of all nodes of one namespace cluster to one API server. */
export class ApiRelay {
  private readonly dir: string;
  private readonly target: { host: string; port: number };
  private readonly nodes = new Map<string, NodeRelay>();

  constructor(o: { dir: string; port: number }) {
    this.dir = o.dir;
    this.target = { host: '127.0.0.1', port: o.port };
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Starts the root-side unix listener and the forwarder inside `node`; resolves once both listen. */
  async addNode(cluster: NsCluster, node: string): Promise<void> {
    if (this.nodes.has(node)) throw new Error(`relay for ${node} exists`);
    const path = join(this.dir, `${node}.sock`);
    rmSync(path, { force: true });
    const sockets = new Set<Socket>();
    const connections: number[] = [];
    const bytes = { toNode: 0, fromNode: 0 };
    const server = createServer((c) => {
      connections.push(Date.now());
      const u = connect(this.target.port, this.target.host);
      sockets.add(c);
      sockets.add(u);
      const end = (): void => {
        c.destroy();
        u.destroy();
        sockets.delete(c);
        sockets.delete(u);
      };
      for (const s of [c, u]) {
        s.on('error', end);
        s.on('close', end);
      }
      c.on('data', (b: Buffer) => {
        bytes.fromNode += b.length;
      });
      u.on('data', (b: Buffer) => {
        bytes.toNode += b.length;
      });
      c.pipe(u);
      u.pipe(c);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    const logFile = join(this.dir, `${node}.forwarder.log`);
    const forwarder = cluster.spawnNode(node, [process.execPath, '-e', NODE_FORWARDER, path, String(NODE_API_PORT)], {
      logFile,
    });
    this.nodes.set(node, { server, forwarder, sockets, connections, bytes });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (!forwarder.running()) throw new Error(`API forwarder in ${node} exited; see ${logFile}`);
      if ((await readFile(logFile, 'utf8').catch(() => '')).includes('listening')) return;
      await sleep(50);
    }
    throw new Error(`API forwarder in ${node} did not listen within 10 s`);
  }

  /** Connection times of a node's agent (a copy). */
  connections(node: string): number[] {
    return [...(this.nodes.get(node)?.connections ?? [])];
  }

  /** Bytes relayed so far for a node's agent (a copy; zeros for an unknown node). */
  bytes(node: string): { toNode: number; fromNode: number } {
    const b = this.nodes.get(node)?.bytes;
    return { toNode: b?.toNode ?? 0, fromNode: b?.fromNode ?? 0 };
  }

  /** Stops a node's relay (its forwarder dies with the node's namespaces anyway). */
  async removeNode(node: string): Promise<void> {
    const r = this.nodes.get(node);
    if (r === undefined) return;
    this.nodes.delete(node);
    for (const s of r.sockets) s.destroy();
    await r.forwarder.stop({ timeoutMs: 2000 });
    await new Promise<void>((resolve) => r.server.close(() => resolve()));
  }

  /** Stops every relay. */
  async close(): Promise<void> {
    await Promise.all([...this.nodes.keys()].map((n) => this.removeNode(n)));
  }
}
