/**
 * The sealnet agent as the real-cluster tier sees it on a kubelet node: the DaemonSet's rollout,
 * its container's processes (to kill them the way a crash or an OOM kill would), and the kernel
 * state sealnet leaves on a node (to prove `helm uninstall` after the cleanup step leaves none).
 *
 * The names are those of common/constants.ts (the ones charts/sealnet/files/cleanup.sh removes).
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import {
  BPF_PIN_DIR,
  DEFAULT_STATE_DIR,
  ROUTE_TABLE,
  TC_HANDLE,
  WG_INTERFACES,
  WG_SOCKET_DIR,
} from '../../common/constants.js';
import { run, sleep } from '../harness/exec.js';
import type { RealCluster, RealNode } from './cluster.js';

/** Reads `/proc/<pid>/<f>`, or undefined when the process is gone. */
function procRead(pid: string, f: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${f}`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Waits until the DaemonSet's rollout is complete: the controller saw the latest spec and every
 * scheduled pod is updated and ready. Throws with `describe()`'s text at the deadline.
 */
export async function waitDaemonSet(
  cluster: RealCluster,
  o: { namespace: string; name: string; want: number; timeoutMs: number; describe: () => Promise<string> },
): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  const path =
    '{.metadata.generation}/{.status.observedGeneration}/{.status.desiredNumberScheduled}/{.status.updatedNumberScheduled}/{.status.numberReady}/{.status.numberAvailable}';
  let last = '';
  for (;;) {
    const r = await cluster.api.kubectl(['get', 'ds', '-n', o.namespace, o.name, '-o', `jsonpath=${path}`], {
      check: false,
    });
    last = r.stdout.trim();
    const [gen, seen, desired, updated, ready, available] = last.split('/').map(Number);
    if (gen === seen && desired === o.want && updated === o.want && ready === o.want && available === o.want) return;
    if (Date.now() > deadline)
      throw new Error(
        `DaemonSet ${o.namespace}/${o.name} not rolled out after ${o.timeoutMs} ms ` +
          `(generation/observed/desired/updated/ready/available ${last})\n${await o.describe()}`,
      );
    await sleep(1000);
  }
}

/**
 * SIGKILLs the agent container's processes on `node` (tini, the supervisor, the agent and
 * wireguard-go): what the kernel does to a container killed by the OOM killer or a runtime crash.
 * Only processes in this run's node cgroup are considered. Returns how many were signalled.
 */
export function killAgentProcesses(node: RealNode): number {
  let killed = 0;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const cg = procRead(e, 'cgroup');
    if (cg === undefined || !cg.includes(`${node.cgroupRoot}/`)) continue;
    const argv = (procRead(e, 'cmdline') ?? '').split('\0');
    const agentish =
      argv.includes('/etc/sealnet/supervise.sh') ||
      argv.includes('/etc/sealnet/agent.json') ||
      argv.some((a) => a.endsWith('/wireguard-go'));
    if (!agentish) continue;
    try {
      process.kill(Number(e), 'SIGKILL');
      killed++;
    } catch {
      // exited meanwhile
    }
  }
  return killed;
}

/**
 * A process of `node` inside its private mount namespace (its containerd), for `nsenter -t PID -m`.
 * Its network namespace is checked against the node's: a PID from the host's namespaces would
 * make the caller read the host's /sys/fs/bpf.
 */
export function nodeMountPid(node: RealNode): number {
  const want = statSync(`/run/netns/${node.netns}`).ino;
  const hostMnt = readlinkSync('/proc/self/ns/mnt');
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const argv = (procRead(e, 'cmdline') ?? '').split('\0');
    if (!argv.some((a) => a.endsWith('/containerd')) || !argv.includes(`${node.dir}/containerd.toml`)) continue;
    try {
      const net = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${e}/ns/net`));
      if (net === null || Number(net[1]) !== want) continue;
      if (readlinkSync(`/proc/${e}/ns/mnt`) === hostMnt) continue;
      return Number(e);
    } catch {
      // exited meanwhile
    }
  }
  throw new Error(`no containerd of node ${node.name} in its own network and mount namespaces`);
}

/**
 * Every piece of sealnet state on `node`, one line each (empty: the node is clean): its links,
 * the policy rule and routes of its table, its TC filters, its BPF pins, wireguard-go sockets,
 * XFRM states and key files.
 */
export async function sealnetResidue(cluster: RealCluster, node: RealNode): Promise<string[]> {
  const out: string[] = [];
  const net = (argv: string[]): Promise<string> =>
    cluster.nodeExec(node, argv, { check: false }).then((r) => r.stdout.trim());
  const links = await net(['ip', '-o', 'link', 'show']);
  for (const l of WG_INTERFACES) if (new RegExp(`^\\d+: ${l}[:@]`, 'm').test(links)) out.push(`link ${l}`);
  for (const l of (await net(['ip', 'rule', 'show'])).split('\n'))
    if (l.includes(`lookup ${ROUTE_TABLE}`)) out.push(`rule ${l.trim()}`);
  for (const fam of ['-4', '-6'])
    for (const l of (await net(['ip', fam, 'route', 'show', 'table', String(ROUTE_TABLE)])).split('\n'))
      if (l !== '') out.push(`route ${fam} table ${ROUTE_TABLE}: ${l}`);
  for (const dir of ['ingress', 'egress'])
    for (const l of (await net(['tc', 'filter', 'show', 'dev', 'eth0', dir])).split('\n'))
      if (l.includes(`handle 0x${TC_HANDLE.toString(16)}`)) out.push(`tc ${dir} eth0: ${l.trim()}`);
  for (const l of (await net(['ip', 'xfrm', 'state', 'list'])).split('\n'))
    if (l.startsWith('src ')) out.push(`xfrm state ${l}`);
  // Files live in the node's mount namespace (its own bpffs, /run tmpfs and /var/lib overlay).
  const pid = String(nodeMountPid(node));
  const files = await run(
    ['nsenter', '-t', pid, '-m', '--', 'find', BPF_PIN_DIR, WG_SOCKET_DIR, DEFAULT_STATE_DIR, '-mindepth', '1'],
    { check: false },
  );
  // The directories themselves may stay (hostPath DirectoryOrCreate); nothing in them may.
  for (const l of files.stdout.split('\n'))
    if (l.startsWith(`${WG_SOCKET_DIR}/`) ? WG_INTERFACES.some((w) => l.includes(w)) : l !== '') out.push(`file ${l}`);
  if (
    await run(['nsenter', '-t', pid, '-m', '--', 'test', '-e', BPF_PIN_DIR], { check: false }).then((r) => r.code === 0)
  )
    out.push(`file ${BPF_PIN_DIR}`);
  return out;
}
