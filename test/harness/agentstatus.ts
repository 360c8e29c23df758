/**
 * An agent's full status report, read the way `sealctl --store file` reads it: over the Unix
 * socket in the node's state dir (`<runDir>/<node>/state/status.sock`) with the bearer token
 * beside it. The Node objects carry only a bounded summary (`sealnet.io/status`).
 */
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';

/** The parts of a full report tests read (tunnels/status/report.ts NodeStatusReport). */
export interface AgentReport {
  readonly node: string;
  readonly ready: boolean;
  readonly steering: { readonly enabled: boolean; readonly failClosed: boolean; readonly nodeToNode: boolean };
  readonly peers: readonly {
    readonly node: string;
    readonly state: string;
    readonly reason?: string;
    readonly key?: string;
    readonly handshake?: number;
    readonly rx?: number;
    readonly tx?: number;
  }[];
  readonly [k: string]: unknown;
}

/** GET /status from the agent of `node` (undefined: not answering); 5 s limit. */
export async function agentReport(runDir: string, node: string): Promise<AgentReport | undefined> {
  const dir = join(runDir, node, 'state');
  const token = (await readFile(join(dir, 'status.token'), 'utf8').catch(() => '')).trim();
  if (token === '') return undefined;
  return new Promise((resolve) => {
    const req = request(
      {
        socketPath: join(dir, 'status.sock'),
        path: '/status',
        headers: { authorization: `Bearer ${token}` },
        timeout: 5000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) return resolve(undefined);
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AgentReport);
          } catch {
            resolve(undefined);
          }
        });
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}
