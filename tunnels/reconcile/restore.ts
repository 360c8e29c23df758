/**
 * Start-up restore (mode wireguard): before the node store synced, program what the last clean
 * pass applied (`<stateDir>/last-applied.json`, codec tunnels/plan/lastapplied.ts) so a restarted
 * agent whose link died with it (wireguard-go in the old pod) has its tunnels back within about a
 * second instead of after the store sync. The first pass after the sync reconciles as always:
 * it adopts what is there and prunes what the store no longer wants.
 *
 * The safety rule, in the order of {@link restoreLastApplied}: the file is checked like hostile
 * input (a foreign, corrupted or out-of-scope file is logged and ignored); the link is the one the
 * key store's key belongs to (the private key comes from the key store, never from the file);
 * peers are only set, never removed; routes only into the link; a steering entry is `ready` only
 * when the peer that owns its prefix was read back from the link, every other one drops. So a
 * restore never opens a plaintext path: the worst a stale peer can do is fail its handshake
 * (its key changed meanwhile) until the first pass after the sync corrects it.
 */
import { ROUTE_TABLE, RULE_PRIORITY, WG_FWMARK, WG_INTERFACE, WG_INTERFACES } from '../../common/constants.js';
import { describeError } from '../../common/errors.js';
import { diffPeers, diffRoutes } from '../plan/diff.js';
import { decodeLastApplied, type LastApplied } from '../plan/lastapplied.js';
import type { SteeringEntry } from '../ports/index.js';
import type { ReconcilerDeps } from './deps.js';

/** What {@link restoreLastApplied} did. */
export type RestoreResult =
  | {
      readonly restored: true;
      readonly peers: number;
      readonly routes: number;
      readonly steering: number;
      readonly linkCreated: boolean;
      readonly errors: readonly string[];
    }
  | { readonly restored: false; readonly reason: string };

/**
 * Programs the last applied state (see the file comment). Never throws: failures are logged
 * and counted (`sealnet_reconcile_errors_total{step="restore"}`), the agent goes on as before.
 */
export async function restoreLastApplied(
  d: ReconcilerDeps,
  host: { readonly steeringAttached: () => boolean; readonly prepareSteering: (underlay: string) => Promise<void> },
): Promise<RestoreResult> {
  const { config, log } = d;
  const skip = (reason: string): RestoreResult => ({ restored: false, reason });
  if (config.mode !== 'wireguard' || d.lastApplied === undefined) return skip('not mode wireguard');
  if (!config.wireguard.restoreLastApplied) return skip('wireguard.restoreLastApplied is false');
  // The file holds no preshared keys: restored peers would be classical-only, which `required`
  // forbids. The exchange runs after the sync and gates each pair itself.
  if (config.postQuantum.mode === 'required')
    return skip('postQuantum.mode is required (no preshared keys to restore)');
  const started = Date.now();
  let text: string | undefined;
  try {
    text = await d.lastApplied.read();
  } catch (err) {
    d.metrics.invalidInput.inc({ source: 'last-applied' });
    log.warn({ err: describeError(err) }, 'cannot read the last applied state; starting without it');
    return skip('unreadable');
  }
  if (text === undefined) return skip('no file');
  const r = decodeLastApplied(text, {
    nodeName: config.nodeName,
    linkNames: WG_INTERFACES,
    table: ROUTE_TABLE,
    clusterCidrs: config.steering.clusterCidrs,
    exemptCidrs: config.steering.exemptCidrs,
    nodeToNode: config.steering.nodeToNode,
  });
  if (!r.ok) {
    d.metrics.invalidInput.inc({ source: 'last-applied' });
    log.warn(
      { error: r.error },
      'ignoring the last applied state file (it is not this node’s or not valid); starting without it: tunnels come up once the node store synced',
    );
    return skip(`invalid: ${r.error}`);
  }
  const s = r.state;
  const link = d.rotation?.idleLink() ?? (d.rotation === undefined ? defaultLink(d) : undefined);
  if (link === undefined) return skip('a key rotation is in flight');
  if (link.name !== s.link.name || link.publicKey !== s.link.publicKey || link.listenPort !== s.link.listenPort) {
    log.info({ link: link.name }, 'the last applied state was written for another link or key; starting without it');
    return skip('other link or key');
  }
  const errors: string[] = [];
  const fail = (step: string, err: unknown): void => {
    errors.push(`${step}: ${describeError(err)}`);
    d.metrics.errors.inc({ step: 'restore' });
    log.error({ step, err: describeError(err) }, `restoring the last applied state: ${step} failed`);
  };
  // Where the time goes (a loaded node: process starts of wireguard-go and wg, the BPF attach).
  const phasesMs: Record<string, number> = {};
  let mark = Date.now();
  const phase = (name: string): void => {
    const t = Date.now();
    phasesMs[name] = t - mark;
    mark = t;
  };
  phase('read');
  // A link that survived (the agent was killed, its wireguard-go or the kernel link kept) holds
  // the applied state as of the crash, newer than the file (written by full passes only): the
  // restore would only roll its peers and steering entries back. Nothing to do.
  try {
    if ((await d.routing.getLink(link.name)) !== undefined) {
      log.info({ link: link.name }, 'the tunnel link survived the restart; nothing to restore');
      return skip('the link survived');
    }
  } catch (err) {
    fail('link', err);
    return skip('link failed');
  }
  let created = false;
  let ifindex: number;
  try {
    const l = await d.wg.ensureLink({
      name: link.name,
      privateKeyFile: link.privateKeyFile,
      publicKey: link.publicKey,
      listenPort: link.listenPort,
      fwmark: WG_FWMARK,
    });
    created = l.created;
    ifindex = l.ifindex;
    const info = await d.routing.getLink(link.name);
    if (info !== undefined && (info.mtu !== s.link.mtu || !info.up))
      await d.routing.setLink(link.name, { mtu: s.link.mtu, up: true });
  } catch (err) {
    fail('link', err);
    return skip('link failed');
  }
  phase('link');
  // Peers: sets only (a restore never removes; the first pass after the sync prunes).
  let programmed = new Set<string>();
  try {
    const observed = (await d.wg.show(link.name))?.peers ?? [];
    const sets = diffPeers(s.peers, observed, { prune: false });
    if (sets.length > 0) await d.wg.applyPeers(link.name, sets);
    const back = (await d.wg.show(link.name))?.peers ?? [];
    programmed = programmedPrefixes(s, back);
  } catch (err) {
    fail('peers', err);
  }
  phase('peers');
  try {
    const routes = diffRoutes(s.routes, await d.routing.listRoutes(ROUTE_TABLE), { prune: false });
    for (const c of routes) if (c.op === 'replace') await d.routing.replaceRoute(c.route);
    const families = new Set(s.routes.map((x) => (x.dst.includes(':') ? 6 : 4)));
    for (const family of [...families].sort())
      await d.routing.ensureRule({ priority: RULE_PRIORITY, table: ROUTE_TABLE, family });
  } catch (err) {
    fail('routes', err);
  }
  phase('routes');
  let steering = 0;
  // The guard as this run attaches it (the config names no interface: the underlay is the link
  // that carries this node's endpoint address, as in a pass). Until then the pinned guard of the
  // last run stays attached with its entries, whose ifindex died with the old link: they drop.
  if (d.steering !== undefined && !host.steeringAttached()) {
    try {
      const under = await d.routing.linkForAddress(s.endpointHost);
      if (under !== undefined) await host.prepareSteering(under.name);
    } catch (err) {
      fail('steering', err);
    }
  }
  if (d.steering !== undefined && host.steeringAttached()) {
    try {
      const entries = restoredEntries(s, { ifindex, programmed });
      await d.steering.applyEntries(entries, { prune: false });
      steering = entries.length;
    } catch (err) {
      fail('steering', err);
    }
  }
  phase('steering');
  log.info(
    {
      peers: s.peers.length,
      routes: s.routes.length,
      steering,
      ready: programmed.size,
      linkCreated: created,
      ms: Date.now() - started,
      phasesMs,
    },
    'restored the last applied state; reconciling against the node store once it synced',
  );
  return { restored: true, peers: s.peers.length, routes: s.routes.length, steering, linkCreated: created, errors };
}

function defaultLink(d: ReconcilerDeps): {
  name: string;
  listenPort: number;
  privateKeyFile: string;
  publicKey: LastApplied['link']['publicKey'];
} {
  return {
    name: WG_INTERFACE,
    listenPort: d.config.wireguard.listenPort,
    privateKeyFile: d.key.privateKeyFile,
    publicKey: d.key.publicKey,
  };
}

/** Prefixes whose peer the link holds now with exactly the restored allowed IPs. */
function programmedPrefixes(
  s: LastApplied,
  back: readonly { publicKey: string; allowedIPs: readonly string[] }[],
): Set<string> {
  const byKey = new Map(back.map((p) => [p.publicKey, new Set(p.allowedIPs)]));
  const out = new Set<string>();
  for (const p of s.peers) {
    const got = byKey.get(p.publicKey);
    if (got === undefined) continue;
    for (const a of p.allowedIPs) if (got.has(a)) out.add(a);
  }
  return out;
}

/**
 * The persisted entries with the link's ifindex now: `ready` only when the prefix's peer was
 * read back (else `not-ready`, dropped); `not-ready` and `no-peer` stay as they were.
 */
export function restoredEntries(
  s: LastApplied,
  now: { readonly ifindex: number; readonly programmed: ReadonlySet<string> },
): SteeringEntry[] {
  return s.steering.map((e) => {
    const ready = e.state === 'ready' && now.programmed.has(e.cidr);
    return {
      cidr: e.cidr,
      state: ready ? 'ready' : e.state === 'ready' ? 'not-ready' : e.state,
      action: 'redirect',
      kind: e.kind,
      ifindex: ready ? now.ifindex : 0,
      mark: 0,
      peerId: e.peerId,
    };
  });
}
