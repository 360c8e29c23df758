/**
 * `sealctl status`: one row per node pair from every agent's full report (tunnels/status/
 * report.ts), fetched on demand from the agents (tunnels/cli/fetch.ts: the API server's pod proxy,
 * or the agents' Unix sockets with the file store) and joined from both ends
 * (tunnels/status/join.ts). An agent that does not answer makes its pairs PARTIAL, with the reason.
 */
import { escapeText } from '../../common/text.js';
import { sodiumReady } from '../../keymgr/keys.js';
import { describeError, SealnetError } from '../../common/errors.js';
import { parseFlags } from '../../common/args.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStore } from '../ports/index.js';
import { age, bytes } from '../audit/render.js';
import { joinStatus, type ClusterStatus } from '../status/join.js';
import type { PeerPq } from '../status/report.js';
import {
  FETCH_FLAGS,
  fetcherFor,
  fetchReports,
  fetchSettings,
  type FetchSettings,
  type ReportFetcher,
} from './fetch.js';

/** A started store: the live node list until {@link OpenStore.close}. */
export interface OpenStore {
  list(): readonly RawNode[];
  /** Transient errors the store reported (malformed documents, watch restarts). */
  readonly problems: readonly string[];
  close(): Promise<void>;
}

/** Starts the store and waits until it has synced (15 s limit). */
export async function openStore(store: NodeStore): Promise<OpenStore> {
  const problems: string[] = [];
  const detail: string[] = [];
  await new Promise<void>((resolve, reject) => {
    // Say why when the store said why (a 403 for an operator without the role, say).
    const timer = setTimeout(
      () =>
        reject(
          new SealnetError(
            'STORE_IO',
            `node store did not sync within 15 s (${detail.at(-1) ?? 'API server unreachable?'})`,
          ),
        ),
      15_000,
    );
    store
      .start({
        onChange: () => undefined,
        onSynced: () => {
          clearTimeout(timer);
          resolve();
        },
        onError: (e) => {
          problems.push(e.message);
          detail.push(describeError(e).slice(0, 400));
        },
      })
      .catch((err: unknown) => {
        clearTimeout(timer);
        reject(err);
      });
  }).catch(async (err: unknown) => {
    await store.stop().catch(() => undefined);
    throw err;
  });
  return { list: () => store.list(), problems, close: () => store.stop() };
}

/** Lists every node once the store has synced (15 s limit). */
export async function listNodes(store: NodeStore): Promise<{ nodes: readonly RawNode[]; problems: string[] }> {
  const open = await openStore(store);
  const nodes = open.list();
  await open.close();
  return { nodes, problems: [...open.problems] };
}

/** Parsed `status` arguments (after the command word). */
export interface StatusArgs {
  readonly only: readonly string[];
  readonly fetch: FetchSettings;
}

/** Parses `status [--node NAME]...`. */
export function parseStatusArgs(args: readonly string[]): StatusArgs {
  const { values } = parseFlags(args, {
    options: { node: { type: 'string', multiple: true }, ...FETCH_FLAGS },
    prefix: 'status: ',
  });
  return { only: values.node ?? [], fetch: fetchSettings(values) };
}

/** Throws a clear error for names the store does not list. */
export function checkKnownNodes(nodes: readonly RawNode[], names: readonly string[]): void {
  const known = new Set(nodes.map((n) => n.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0)
    throw new SealnetError(
      'CONFIG_INVALID',
      `unknown node${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (the store lists: ${[...known].sort().join(', ') || 'no nodes'})`,
    );
}

/** One side's post-quantum cell: protection, KEM and secret age (`–` when off or unknown). */
function pq(p: PeerPq | undefined): string {
  if (p === undefined) return '–';
  if (p.protection !== 'hybrid') return p.protection;
  return `hybrid ${p.kem} ${p.secretAgeSeconds === undefined ? '' : age(p.secretAgeSeconds)}`.trimEnd();
}

/** The table `sealctl status` prints. */
export function renderStatusTable(s: ClusterStatus): string {
  const out: string[] = [];
  out.push(
    'status as each agent reports it now (its /status, fetched through the API server or its socket; AS OF says when each answered)',
  );
  const rows = [
    [
      'PAIR',
      'STATE',
      'MODE',
      'ALGORITHM',
      'KEYS (A / B)',
      'KEY AGE',
      'HANDSHAKE A→B / B→A',
      'BYTES A rx/tx · B rx/tx',
      'POST-QUANTUM (A / B)',
      'AS OF (A / B)',
      'DATA',
    ],
  ];
  const nowMs = Date.parse(s.generatedAt);
  const asOf = (t: string | undefined): string =>
    t === undefined ? '–' : `${age(Math.floor((nowMs - Date.parse(t)) / 1000))} ago`;
  for (const p of s.pairs) {
    const [a, b] = p.sides;
    rows.push([
      `${p.a} ↔ ${p.b}`,
      p.state,
      p.mode ?? '–',
      p.algorithm ?? '–',
      `${a.ownKey ?? '–'} / ${b.ownKey ?? '–'}`,
      `${age(a.keyAgeSeconds)} / ${age(b.keyAgeSeconds)}`,
      `${a.handshake === 0 ? 'never' : age(a.handshakeAgeSeconds)} / ${b.handshake === 0 ? 'never' : age(b.handshakeAgeSeconds)}`,
      `${bytes(a.rx)}/${bytes(a.tx)} · ${bytes(b.rx)}/${bytes(b.tx)}`,
      `${pq(a.pq)} / ${pq(b.pq)}`,
      `${asOf(a.asOf)} / ${asOf(b.asOf)}`,
      p.partial ? 'PARTIAL' : 'complete',
    ]);
  }
  // Node names, modes, algorithms and reasons come from other nodes: escaped before printing.
  for (const r of rows) r.forEach((c, i) => (r[i] = escapeText(c)));
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows)
    out.push(
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    );
  const notes = s.pairs.filter((p) => p.notes.length > 0);
  if (notes.length > 0) out.push('', 'why:');
  for (const p of notes) for (const n of p.notes) out.push(escapeText(`  ${p.a} ↔ ${p.b}: ${n}`));
  const bad = s.nodes.filter((n) => n.health !== 'ok');
  if (bad.length > 0) out.push('', 'nodes without usable status (their pairs are PARTIAL):');
  for (const n of bad) out.push(escapeText(`  ${n.name}: ${n.health}: ${n.problem ?? ''}`));
  if (s.pairs.length === 0) out.push('(no node pairs)');
  return `${out.join('\n')}\n`;
}

/** Runs `sealctl status`; returns the exit code (0: every pair encrypted with complete data). */
export async function runStatus(opts: {
  store: NodeStore;
  json: boolean;
  args: readonly string[];
  fetcher?: ReportFetcher;
  now?: () => Date;
  write?: (s: string) => void;
}): Promise<number> {
  const write = opts.write ?? ((s: string) => void process.stdout.write(s));
  const a = parseStatusArgs(opts.args);
  await sodiumReady();
  const fetcher = opts.fetcher ?? fetcherFor(opts.store, a.fetch);
  const { nodes, problems } = await listNodes(opts.store);
  checkKnownNodes(nodes, a.only);
  const reports = await fetchReports(
    nodes.map((n) => n.name),
    fetcher,
    a.fetch,
  );
  const s = joinStatus(nodes, { now: (opts.now ?? (() => new Date()))(), reports, only: a.only });
  if (opts.json) write(`${JSON.stringify({ ...s, storeProblems: problems })}\n`);
  else {
    write(renderStatusTable(s));
    for (const p of problems) write(`store: ${escapeText(p)}\n`);
  }
  return !s.partial && s.pairs.length > 0 && s.pairs.every((p) => p.state === 'encrypted') ? 0 : 1;
}
