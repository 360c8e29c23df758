/**
 * The last hop of the API server's pod proxy in the Kubernetes tier. The API server runs in the
 * root namespace and agents in node namespaces; the root namespace has no route to node
 * addresses (and must get none). So the API server's `cluster` egress goes through this HTTP
 * CONNECT proxy on a Unix socket (apiserver.ts `clusterEgressUds`, the way konnectivity carries
 * it in real clusters): `CONNECT <pod IP>:<port>` is answered by connecting to the agent of the
 * node with that address, on the Unix socket in its state dir that serves the same endpoints as
 * its TCP listener (tunnels/agent/main.ts). Everything before it is the real API server: the
 * operator's authentication and RBAC for `pods/proxy`, the Pod lookup, the proxying.
 */
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

/** CONNECT proxy from pod IPs to Unix sockets (agents' status sockets, or relays into node networks). */
export class AgentEgressProxy {
  private readonly server: Server;
  private readonly open = new Set<Socket>();
  /** Every CONNECT target seen (`ip:port`), for tests. */
  readonly connects: string[] = [];

  constructor(
    readonly socketPath: string,
    /** The Unix socket that reaches `address:port` (an agent's status socket, or a relay into a node's network). */
    private readonly socketFor: (address: string, port: number) => string | undefined,
  ) {
    this.server = createServer((c) => {
      this.open.add(c);
      c.on('close', () => this.open.delete(c));
      this.handle(c);
    });
  }

  async start(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, () => resolve());
    });
  }

  /** Closes the listener and every tunnel still open (the API server keeps them alive). */
  async stop(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.open) c.destroy();
    await closed;
    rmSync(this.socketPath, { force: true });
  }

  private handle(c: Socket): void {
    let head = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 8192) c.destroy();
        return;
      }
      c.off('data', onData);
      const m = /^CONNECT ([^\s:]+|\[[^\]]+\]):(\d+) HTTP\/1\.[01]\r\n/.exec(head.subarray(0, end).toString('latin1'));
      const rest = head.subarray(end + 4);
      if (m === null) {
        c.end('HTTP/1.1 400 Bad Request\r\n\r\n');
        return;
      }
      const target = `${m[1]}:${m[2]}`;
      this.connects.push(target);
      const path = this.socketFor((m[1] as string).replace(/^\[|\]$/g, ''), Number(m[2]));
      if (path === undefined) {
        c.end('HTTP/1.1 502 Bad Gateway\r\n\r\nno node has this address\r\n');
        return;
      }
      const up = connect(path);
      up.once('connect', () => {
        c.write('HTTP/1.1 200 Connection established\r\n\r\n');
        if (rest.length > 0) up.write(rest);
        c.pipe(up);
        up.pipe(c);
      });
      up.on('error', () => {
        if (!c.writableEnded) c.end('HTTP/1.1 503 Service Unavailable\r\n\r\n');
      });
      c.on('error', () => up.destroy());
      c.on('close', () => up.destroy());
    };
    c.on('data', onData);
    c.on('error', () => undefined);
  }
}
