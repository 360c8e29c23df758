/**
 * `sealctl keys rotate --node NAME | --all [--wait] [--timeout S]`. Records the intent
 * as the `sealnet.io/rotate-request` annotation on each target Node; the node's agent carries it
 * out (keymgr/rotation.ts) and publishes its progress in `sealnet.io/rotation`. With `--wait`,
 * follows that progress and exits 0 only when every target finished (its old key and link are
 * gone) and every peer moved to the new key.
 *
 * Refuses, before writing anything: an unknown node, a node without a sealnet agent (or one
 * whose agent publishes no rotation status), and a node that already has a rotation running or
 * requested-but-not-started (two rotations at once). Modes wireguard and ipsec rotate alike
 * (tunnels/rotation/ipsec.ts for ipsec).
 */
import { randomBytes } from 'node:crypto';
import { sodiumReady } from '../../keymgr/keys.js';
import { decodeNode } from '../plan/annotations.js';
import { ANNOTATIONS, ANNOTATION_PREFIX } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStore } from '../ports/index.js';
import {
  decodeRotateRequest,
  decodeRotationStatus,
  encodeRotateRequest,
  type RotationStatus,
} from '../plan/rotation-codec.js';
import { parseFlags } from '../../common/args.js';

/** Usage of the `keys` command. */
export const KEYS_USAGE = `keys rotate (--node NAME)... | --all [--wait] [--timeout SECONDS]
            ask the agents to rotate their WireGuard keys (make-before-break); --wait follows
            progress, exit 0 only when every pair uses the new key and the old one is gone`;

/** Parsed `keys rotate` arguments. */
export interface RotateArgs {
  readonly nodes: readonly string[];
  readonly all: boolean;
  readonly wait: boolean;
  readonly timeoutSeconds: number;
}

const bad = (msg: string): SealnetError => new SealnetError('CONFIG_INVALID', msg);

/** Parses the arguments after `keys`. @throws SealnetError `CONFIG_INVALID`. */
export function parseRotateArgs(args: readonly string[]): RotateArgs {
  if (args[0] !== 'rotate')
    throw bad(`keys: unknown subcommand ${JSON.stringify(args[0] ?? '')}; usage: sealctl ${KEYS_USAGE}`);
  const { values } = parseFlags(args.slice(1), {
    options: {
      node: { type: 'string', multiple: true },
      all: { type: 'boolean' },
      wait: { type: 'boolean' },
      timeout: { type: 'string' },
    },
    prefix: 'keys rotate: ',
  });
  const nodes = values.node ?? [];
  const all = values.all === true;
  const wait = values.wait === true;
  let timeoutSeconds = 300;
  if (values.timeout !== undefined) {
    const v = values.timeout;
    if (!/^\d{1,6}$/.test(v) || Number(v) < 1)
      throw bad(`keys rotate: --timeout must be a whole number of seconds ≥ 1, got ${JSON.stringify(v)}`);
    timeoutSeconds = Number(v);
  }
  if (all && nodes.length > 0) throw bad('keys rotate: give either --node NAME or --all, not both');
  if (!all && nodes.length === 0) throw bad('keys rotate: say which keys: --node NAME (repeatable) or --all');
  if (new Set(nodes).size !== nodes.length) throw bad('keys rotate: a node is named twice');
  return { nodes, all, wait, timeoutSeconds };
}

/** A node's rotation state as sealctl sees it. */
export interface NodeRotationView {
  readonly status: RotationStatus | undefined;
  readonly request: { id: string; requestedAt: Date } | undefined;
}

/** Reads a node's rotation annotations. Pure. */
export function rotationView(n: RawNode): NodeRotationView {
  const s = n.annotations[ANNOTATIONS.rotation];
  const r = n.annotations[ANNOTATIONS.rotateRequest];
  const req = r === undefined ? undefined : decodeRotateRequest(r);
  return {
    status: s === undefined ? undefined : decodeRotationStatus(s),
    request: req?.ok === true ? req.request : undefined,
  };
}

/**
 * Which nodes to ask, or why not (every problem, so one run shows them all). Pure.
 * A request that its node has neither started nor finished is pending: asking again would be
 * a second rotation at once.
 */
export function checkTargets(
  nodes: readonly RawNode[],
  args: Pick<RotateArgs, 'nodes' | 'all'>,
): { targets: string[]; problems: string[] } {
  const problems: string[] = [];
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const names = args.all
    ? nodes
        .filter((n) => Object.keys(n.annotations).some((k) => k.startsWith(ANNOTATION_PREFIX)))
        .map((n) => n.name)
        .sort()
    : [...args.nodes];
  if (args.all && names.length === 0)
    problems.push('no node runs a sealnet agent (no node has sealnet.io/ annotations)');
  for (const name of names) {
    const n = byName.get(name);
    if (n === undefined) {
      problems.push(
        `node ${JSON.stringify(name)} does not exist${
          nodes.length > 0
            ? ` (nodes: ${nodes
                .map((x) => x.name)
                .sort()
                .join(', ')})`
            : ''
        }`,
      );
      continue;
    }
    const d = decodeNode(n);
    if (!d.ok) {
      problems.push(`node ${name}: ${d.detail}`);
      continue;
    }
    const v = rotationView(n);
    if (v.status === undefined) {
      problems.push(
        `node ${name}: its agent publishes no ${ANNOTATIONS.rotation} status (an agent without key rotation?); upgrade it first`,
      );
      continue;
    }
    if (v.status.phase !== 'idle') {
      problems.push(
        `node ${name} is already rotating (rotation ${v.status.id ?? '?'}, phase ${v.status.phase}); wait until it is done`,
      );
      continue;
    }
    if (v.request !== undefined && v.request.id !== v.status.last?.id) {
      problems.push(
        `node ${name} already has a rotation requested at ${v.request.requestedAt.toISOString()} (${v.request.id}) that its agent has not started yet (is the agent running?)`,
      );
    }
  }
  return { targets: names, problems };
}

/** A fresh request id: time-ordered and unique. */
export function newRequestId(now: Date): string {
  return `r-${now.getTime().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Outcome per node after `--wait`. */
export interface RotateResult {
  readonly node: string;
  readonly id: string;
  readonly done: boolean;
  readonly phase: string;
  readonly seconds: number | undefined;
  readonly lagging: readonly string[];
  readonly problem: string | undefined;
}

/** Where a waited-for rotation stands. Pure. */
export function judge(
  node: RawNode | undefined,
  id: string,
): { done: boolean; phase: string; lagging: readonly string[]; problem: string | undefined } {
  if (node === undefined) return { done: false, phase: 'gone', lagging: [], problem: 'the node was deleted' };
  const v = rotationView(node);
  if (v.request !== undefined && v.request.id !== id)
    return {
      done: false,
      phase: v.status?.phase ?? '?',
      lagging: [],
      problem: `superseded by another request (${v.request.id})`,
    };
  const s = v.status;
  if (s === undefined) return { done: false, phase: '?', lagging: [], problem: undefined };
  if (s.phase === 'idle' && s.last?.id === id)
    return { done: true, phase: 'done', lagging: s.last.lagging, problem: undefined };
  return { done: false, phase: s.phase === 'idle' ? 'requested' : s.phase, lagging: [], problem: s.error };
}

/** Dependencies of {@link runKeys} (injected by tests). */
export interface KeysCliDeps {
  readonly store: NodeStore;
  readonly json: boolean;
  readonly args: readonly string[];
  readonly out?: (line: string) => void;
  readonly now?: () => Date;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Runs `sealctl keys …`; returns the exit code (0 ok, 1 failed or timed out). @throws `CONFIG_INVALID` on bad input (exit 2). */
export async function runKeys(d: KeysCliDeps): Promise<number> {
  const args = parseRotateArgs(d.args);
  const out = d.out ?? ((l: string) => void process.stdout.write(`${l}\n`));
  const now = d.now ?? (() => new Date());
  const sleep = d.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  await sodiumReady();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new SealnetError('STORE_IO', 'node store did not sync within 15 s')), 15_000);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    d.store.start({ onChange: () => undefined, onSynced: done, onError: () => undefined }).then(() => {
      if (d.store.synced()) done();
    }, reject);
  });
  try {
    const { targets, problems } = checkTargets(d.store.list(), args);
    if (problems.length > 0) throw bad(`keys rotate: nothing requested:\n  ${problems.join('\n  ')}`);
    const started = now();
    const id = newRequestId(started);
    for (const t of targets)
      await d.store.patchAnnotations(t, {
        [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id, requestedAt: started }),
      });
    if (!d.json) out(`requested key rotation ${id} on ${targets.join(', ')}`);
    if (!args.wait) {
      if (d.json) out(JSON.stringify({ id, requested: targets }));
      return 0;
    }
    const deadline = started.getTime() + args.timeoutSeconds * 1000;
    // Our own writes first: until the store shows them, an older request there is not "another one".
    while (
      !targets.every(
        (t) =>
          rotationView(
            d.store.list().find((n) => n.name === t) ?? { name: t, annotations: {}, podCIDRs: [], internalIPs: [] },
          ).request?.id === id,
      )
    ) {
      if (now().getTime() >= deadline) break;
      await sleep(50);
    }
    const seen = new Map<string, string>();
    let results: RotateResult[] = [];
    for (;;) {
      const list = d.store.list();
      results = targets.map((t) => {
        const j = judge(
          list.find((n) => n.name === t),
          id,
        );
        return {
          node: t,
          id,
          done: j.done,
          phase: j.phase,
          seconds: j.done ? (now().getTime() - started.getTime()) / 1000 : undefined,
          lagging: j.lagging,
          problem: j.problem,
        };
      });
      for (const r of results) {
        if (seen.get(r.node) === r.phase) continue;
        seen.set(r.node, r.phase);
        if (!d.json)
          out(
            `  ${r.node}: ${r.phase}${r.problem !== undefined ? ` (${r.problem})` : ''} after ${((now().getTime() - started.getTime()) / 1000).toFixed(1)} s`,
          );
      }
      const superseded = results.filter((r) => r.problem?.startsWith('superseded') === true || r.phase === 'gone');
      if (results.every((r) => r.done) || superseded.length > 0 || now().getTime() >= deadline) break;
      await sleep(200);
    }
    const lagging = results.filter((r) => r.lagging.length > 0);
    const failed = results.filter((r) => !r.done);
    const ok = failed.length === 0 && lagging.length === 0;
    const seconds = (now().getTime() - started.getTime()) / 1000;
    if (d.json) {
      out(JSON.stringify({ id, requested: targets, ok, seconds, results }));
    } else {
      for (const r of failed)
        out(
          `sealctl: ${r.node}: rotation ${id} not done (${r.problem ?? `phase ${r.phase}`})${now().getTime() >= deadline ? ` after the ${args.timeoutSeconds} s timeout` : ''}`,
        );
      for (const r of lagging)
        out(
          `sealctl: ${r.node}: rotated, but ${r.lagging.join(', ')} never moved to its new key: those pairs fail closed until their agents run`,
        );
      if (ok)
        out(
          `rotation ${id} done on ${targets.length} node${targets.length === 1 ? '' : 's'} in ${seconds.toFixed(1)} s: every pair uses the new keys, the old keys are erased`,
        );
    }
    return ok ? 0 : 1;
  } finally {
    await d.store.stop();
  }
}
