/**
 * Node and agent lifecycle for the real-cluster tier (issue 15, "What must be shown"): what an
 * operator does to a running cluster (import an image on a node, restart a kubelet) and what the
 * tier reads back to judge it (the agents' pods, WireGuard peers, tunnel links, published keys).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ANNOTATIONS } from '../../common/constants.js';
import { run, sleep, spawnBackground } from '../harness/exec.js';
import { nodeMountPid } from './agent.js';
import type { RealCluster, RealNode } from './cluster.js';

/** Runs argv in the node's network AND mount namespace (wg, ctr: their sockets live in its /run). */
export function nodeNsExec(
  node: RealNode,
  argv: readonly string[],
  o: { check?: boolean; timeoutMs?: number } = {},
): ReturnType<typeof run> {
  const pid = String(nodeMountPid(node));
  return run(['nsenter', '-t', pid, '-m', '-n', '--', ...argv], {
    check: o.check ?? true,
    timeoutMs: o.timeoutMs ?? 30_000,
  });
}

/** Imports an OCI archive into the node's containerd (what a successful pull would leave). */
export async function importImage(
  cluster: RealCluster,
  node: RealNode,
  archive: string,
  baseName: string,
): Promise<void> {
  await nodeNsExec(
    node,
    [
      cluster.bins.ctr,
      '-n',
      'k8s.io',
      'images',
      'import',
      '--base-name',
      baseName,
      '--platform',
      'linux/amd64',
      archive,
    ],
    { timeoutMs: 180_000 },
  );
}

/** The agent pod of one node as the API server reports it. */
export interface AgentPod {
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  readonly phase: string;
  readonly containerId: string | undefined;
  readonly imageId: string | undefined;
  readonly image: string | undefined;
  readonly restartCount: number;
  /** Why the container is not running (e.g. ErrImagePull, ImagePullBackOff), when it is waiting. */
  readonly waiting: string | undefined;
  readonly ready: boolean;
}

/** The sealnet agent pods, by node name. */
export async function agentPods(cluster: RealCluster): Promise<Map<string, AgentPod>> {
  const r = await cluster.api.kubectl([
    'get',
    'pods',
    '-n',
    'sealnet',
    '-l',
    'app.kubernetes.io/name=sealnet',
    '-o',
    'json',
  ]);
  const items = (
    JSON.parse(r.stdout) as {
      items: {
        metadata: { name: string; uid: string; deletionTimestamp?: string };
        spec: { nodeName?: string };
        status: {
          phase?: string;
          containerStatuses?: {
            containerID?: string;
            imageID?: string;
            image?: string;
            restartCount: number;
            ready: boolean;
            state?: { waiting?: { reason?: string } };
          }[];
        };
      }[];
    }
  ).items;
  const out = new Map<string, AgentPod>();
  for (const it of items) {
    if (it.spec.nodeName === undefined || it.metadata.deletionTimestamp !== undefined) continue;
    const c = it.status.containerStatuses?.[0];
    out.set(it.spec.nodeName, {
      name: it.metadata.name,
      uid: it.metadata.uid,
      node: it.spec.nodeName,
      phase: it.status.phase ?? '',
      containerId: c?.containerID,
      imageId: c?.imageID,
      image: c?.image,
      restartCount: c?.restartCount ?? 0,
      waiting: c?.state?.waiting?.reason,
      ready: c?.ready ?? false,
    });
  }
  return out;
}

/** The WireGuard public key a Node publishes ('' when none yet). */
export async function publishedKey(cluster: RealCluster, nodeName: string): Promise<string> {
  const key = ANNOTATIONS.wireguardPublicKey.replace(/\./g, '\\.').replace(/\//g, '/');
  const r = await cluster.api.kubectl(['get', 'node', nodeName, '-o', `jsonpath={.metadata.annotations.${key}}`], {
    check: false,
  });
  return r.code === 0 ? r.stdout.trim() : '';
}

/** Every WireGuard peer public key configured on the node's sealnet links (`wg show all peers`). */
export async function wgPeers(node: RealNode): Promise<string[]> {
  const r = await nodeNsExec(node, ['wg', 'show', 'all', 'peers'], { check: false });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 2 && /^sealwg\d$/.test(f[0] ?? ''))
    .map((f) => f[1] ?? '')
    .sort();
}

/** `name:ifindex` of the node's sealnet links (a new ifindex = the link was re-created). */
export async function linkIds(cluster: RealCluster, node: RealNode): Promise<string[]> {
  const r = await cluster.nodeExec(node, ['ip', '-o', 'link', 'show'], { check: false });
  return r.stdout
    .split('\n')
    .map((l) => /^(\d+): (sealwg\d)[:@]/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[2]}:${m[1]}`)
    .sort();
}

/** Polls `until` every `everyMs` until it returns true; throws `what()` at the deadline. */
export async function waitFor(
  until: () => Promise<boolean>,
  o: { timeoutMs: number; everyMs?: number; what: () => Promise<string> | string },
): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  while (!(await until())) {
    if (Date.now() > deadline) throw new Error(`after ${o.timeoutMs} ms: ${await o.what()}`);
    await sleep(o.everyMs ?? 1000);
  }
}

/**
 * Restarts the node's kubelet the way `systemctl restart kubelet` does: SIGTERM, wait for the
 * exit, start it again with the same flags (node.sh's) in the node's namespaces. Containers keep
 * running under containerd meanwhile. Returns the new kubelet's PID.
 */
export async function restartKubelet(cluster: RealCluster, node: RealNode): Promise<number> {
  const config = `--config=${node.dir}/kubelet.yaml`;
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv[0] === cluster.bins.kubelet && argv.includes(config)) pids.push(Number(e));
  }
  if (pids.length !== 1) throw new Error(`expected one kubelet of ${node.name}, found PIDs [${pids.join(', ')}]`);
  const mnt = String(nodeMountPid(node));
  const old = pids[0] ?? 0;
  process.kill(old, 'SIGTERM');
  await waitFor(
    async () => {
      try {
        process.kill(old, 0);
        return false;
      } catch {
        return true;
      }
    },
    { timeoutMs: 30_000, everyMs: 100, what: () => `kubelet ${old} of ${node.name} did not exit on SIGTERM` },
  );
  const p = spawnBackground(
    [
      'nsenter',
      '-t',
      mnt,
      '-m',
      '-n',
      '--',
      cluster.bins.kubelet,
      config,
      `--kubeconfig=${node.dir}/kubelet.kubeconfig`,
      `--hostname-override=${node.name}`,
      `--node-ip=${node.address}`,
      `--volume-plugin-dir=${node.dir}/volume-plugins`,
      '--v=1',
    ],
    { logFile: join(node.dir, 'kubelet-restarted.log') },
  );
  return p.pid;
}
