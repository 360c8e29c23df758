/**
 * `sealctl`: the operator CLI. This build has `nodes` (what every node publishes, decoded and
 * validated exactly as the agents decode it), `status` (tunnels/cli/status.ts), `audit` and
 * `audit verify` (tunnels/cli/audit.ts) and `keys rotate` (tunnels/cli/keys.ts).
 */
import { escapeText } from '../../common/text.js';
import { fingerprint } from '../../keymgr/keys.js';
import { sodiumReady } from '../../keymgr/keys.js';
import { decodeNode } from '../plan/annotations.js';
import { validateConfig } from '../agent/config.js';
import { takeFlags } from '../../common/args.js';
import { describeError, SealnetError } from '../../common/errors.js';
import type { NodeStore } from '../ports/index.js';
import { FileNodeStore } from '../stores/file.js';
import type { KubeTransport } from '../stores/kubeclient.js';
import type { RequestOptions } from 'node:http';
import { runAudit, runVerify } from './audit.js';
import { runStatus } from './status.js';
import { KEYS_USAGE, runKeys } from './keys.js';

/** Usage text. */
export const SEALCTL_USAGE = `usage: sealctl [--store file --store-dir DIR | --store kubernetes [--kubeconfig FILE]] COMMAND [--json]
commands:
  nodes     every node's published sealnet state (mode, key fingerprint, endpoint, pod CIDRs, problems)
  status [--node NAME]...
            one row per node pair from every agent's published status: state, mode, algorithm,
            key fingerprints and ages, handshakes, bytes; stale or missing data marked PARTIAL
  audit [--policy FILE | --profile default|fips] [--out DIR] [--node NAME]...
        [--probe-command PROGRAM [--probe-arg ARG]... [--probe-timeout S]] [--signing-key FILE | --state-dir DIR]
            check the cluster against a policy; writes DIR/report.json (Ed25519-signed) and
            DIR/report.md; exit 0 compliant, 1 not compliant (or partial), 2 bad input
  audit verify REPORT (--public-key FILE | --fingerprint sha256:HEX | --trust FILE) [--page FILE]
            check a report's signature and content (and its Markdown page); exit 1 if tampered
  ${KEYS_USAGE}`;

interface Global {
  store: NodeStore;
  storeType: string;
  json: boolean;
  rest: string[];
}

async function parseGlobal(argv: readonly string[]): Promise<Global> {
  // Global flags may stand anywhere; everything else belongs to the command.
  const { values, rest } = takeFlags(argv, {
    options: {
      store: { type: 'string' },
      'store-dir': { type: 'string' },
      kubeconfig: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (rest[0]?.startsWith('-') === true)
    throw new SealnetError('CONFIG_INVALID', `unknown flag ${JSON.stringify(rest[0])}`);
  const storeType = values.store ?? 'kubernetes';
  const dir = values['store-dir'];
  const kubeconfig = values.kubeconfig;
  const json = values.json === true;
  // Reuse the agent's validation so both tools reject the same mistakes the same way.
  const cfg = validateConfig({
    nodeName: 'sealctl',
    store:
      storeType === 'file'
        ? { type: 'file', dir }
        : { type: storeType, ...(kubeconfig === undefined ? {} : { kubeconfig }) },
  });
  // The Kubernetes client library costs half a second and ~90 MiB to load: only when used.
  // sealctl reaches the API server through it (operators' kubeconfigs use exec and
  // auth-provider plugins, which the agent's own client does not run).
  const store =
    cfg.store.type === 'file'
      ? new FileNodeStore({ dir: cfg.store.dir })
      : new (await import('../stores/kubernetes.js')).KubernetesNodeStore({
          transport: await clientNodeTransport(cfg.store.kubeconfig),
        });
  return { store, storeType: cfg.store.type, json, rest };
}

/** A transport for the node store and the pod proxy with client-node's kubeconfig handling (every credential plugin it knows). */
async function clientNodeTransport(kubeconfig: string | undefined): Promise<KubeTransport> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  try {
    if (kubeconfig !== undefined) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new SealnetError('CONFIG_INVALID', `cannot load kubeconfig ${kubeconfig ?? '(default)'}`, { cause: err });
  }
  const server = kc.getCurrentCluster()?.server;
  if (server === undefined) throw new SealnetError('CONFIG_INVALID', 'the kubeconfig names no cluster');
  return {
    server,
    async requestOptions(): Promise<RequestOptions> {
      const o: Record<string, unknown> = {};
      await kc.applyToHTTPSOptions(o);
      return o as RequestOptions;
    },
  };
}

async function loadNodes(store: NodeStore): Promise<{ nodes: ReturnType<NodeStore['list']>; problems: string[] }> {
  const problems: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new SealnetError('STORE_IO', 'node store did not sync within 15 s')), 15_000);
    store
      .start({
        onChange: () => undefined,
        onSynced: () => {
          clearTimeout(timer);
          resolve();
        },
        onError: (e) => problems.push(e.message),
      })
      .catch(reject);
  });
  const nodes = store.list();
  await store.stop();
  return { nodes, problems };
}

async function cmdNodes(g: Global): Promise<number> {
  await sodiumReady();
  const { nodes, problems } = await loadNodes(g.store);
  const rows = nodes.map((n) => {
    const r = decodeNode(n);
    return r.ok
      ? {
          name: n.name,
          ok: true,
          mode: r.node.mode,
          key: fingerprint(r.node.wireguardPublicKey),
          endpoint: `${r.node.endpointHost}:${r.node.endpointPort}`,
          epoch: r.node.keyEpoch,
          podCIDRs: r.node.podCIDRs,
          problem: undefined,
        }
      : {
          name: n.name,
          ok: false,
          mode: undefined,
          key: undefined,
          endpoint: undefined,
          epoch: undefined,
          podCIDRs: n.podCIDRs,
          problem: r.detail,
        };
  });
  if (g.json) {
    process.stdout.write(`${JSON.stringify({ nodes: rows, storeProblems: problems })}\n`);
  } else {
    const lines = [['NODE', 'MODE', 'KEY', 'EPOCH', 'ENDPOINT', 'POD CIDRS', 'PROBLEM']];
    // Every cell came from a Node another agent (or anyone with node write access) wrote.
    for (const r of rows)
      lines.push(
        [
          r.name,
          r.mode ?? '-',
          r.key ?? '-',
          r.epoch === undefined ? '-' : String(r.epoch),
          r.endpoint ?? '-',
          r.podCIDRs.join(','),
          r.problem ?? '',
        ].map(escapeText),
      );
    const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
    for (const l of lines)
      process.stdout.write(
        `${l
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd()}\n`,
      );
    for (const p of problems) process.stdout.write(`store: ${escapeText(p)}\n`);
  }
  return rows.every((r) => r.ok) && problems.length === 0 ? 0 : 1;
}

function usageError(msg: string): number {
  process.stderr.write(`sealctl: ${msg}\n${SEALCTL_USAGE}\n`);
  return 2;
}

/** Bad input (flags, policy, unknown node) exits 2 with the message; other failures propagate (exit 1). */
async function exit2OnBadInput(p: Promise<number>): Promise<number> {
  try {
    return await p;
  } catch (err) {
    if (!(err instanceof SealnetError) || err.code !== 'CONFIG_INVALID') throw err;
    process.stderr.write(`sealctl: ${describeError(err)}\n`);
    return 2;
  }
}

/** Runs sealctl; returns the exit code (0 ok, 1 problems found, 2 usage error). */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${SEALCTL_USAGE}\n`);
    return argv.length === 0 ? 2 : 0;
  }
  let g: Global;
  try {
    g = await parseGlobal(argv);
  } catch (err) {
    process.stderr.write(`sealctl: ${describeError(err)}\n${SEALCTL_USAGE}\n`);
    return 2;
  }
  const [cmd] = g.rest;
  try {
    if (cmd === 'nodes') {
      if (g.rest.length > 1)
        return usageError(`nodes takes no arguments, got ${JSON.stringify(g.rest.slice(1).join(' '))}`);
      return await cmdNodes(g);
    }
    if (cmd === 'status')
      return await exit2OnBadInput(runStatus({ store: g.store, json: g.json, args: g.rest.slice(1) }));
    if (cmd === 'keys') return await exit2OnBadInput(runKeys({ store: g.store, json: g.json, args: g.rest.slice(1) }));
    if (cmd === 'audit' && g.rest[1] === 'verify')
      return await exit2OnBadInput(runVerify({ args: g.rest.slice(2), json: g.json }));
    if (cmd === 'audit')
      return await exit2OnBadInput(
        runAudit({ store: g.store, storeType: g.storeType, json: g.json, args: g.rest.slice(1) }),
      );
  } catch (err) {
    process.stderr.write(`sealctl: ${describeError(err)}\n`);
    return 1;
  }
  process.stderr.write(`sealctl: unknown command ${JSON.stringify(cmd)}\n${SEALCTL_USAGE}\n`);
  return 2;
}
