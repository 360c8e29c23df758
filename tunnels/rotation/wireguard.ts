/**
 * The agent's side of key rotation: runs the pure state machine of
 * `keymgr/rotation.ts` against the key store, the state file and what the reconciler observed,
 * and tells the reconciler which links, keys and routes a pass should program.
 *
 * Every pass: {@link RotationController.plan} (links and keys for this pass, from the state as
 * persisted) → the reconciler applies it → {@link RotationController.annotations} (published
 * after apply, so a phase is announced only once its datapath is in place) →
 * {@link RotationController.after} (one machine step on fresh facts; the new state is persisted
 * before its effects run, so a crash at any point resumes).
 */
import { Gauge } from 'prom-client';
import { fingerprint, generateKeyPair, zeroKey, type PublicKey } from '../../keymgr/keys.js';
import type { KeyStore } from '../../keymgr/keystore.js';
import {
  autoRotationDueAt,
  DEFAULT_ROTATION_SETTINGS,
  announcedPhaseCounts,
  rotationIntent,
  stepRotation,
  type PeerFollow,
  type PeerReport,
  type RotationEffect,
  type RotationIntent,
  type RotationSettings,
  type RotationState,
} from '../../keymgr/rotation.js';
import type { RotationStateFile } from '../../keymgr/rotationstore.js';
import { decodeNode, formatEndpoint } from '../plan/annotations.js';
import { canonicalCidr } from '../../common/ip.js';
import { ANNOTATIONS, WG_INTERFACES } from '../../common/constants.js';
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { recordRotation, type AgentMetrics } from '../../common/metrics.js';
import type { DesiredPeer, RawNode } from '../ports/model.js';
import type { ObservedPeer } from '../ports/index.js';
import {
  decodeRotateRequest,
  decodeRotationStatus,
  encodeRotationReports,
  encodeRotationStatus,
  type PeerRotationReport,
  type RotationStatus,
} from '../plan/rotation-codec.js';

/** One of this node's WireGuard links with the key it should hold. */
export interface OwnLink {
  readonly name: string;
  readonly listenPort: number;
  readonly privateKeyFile: string;
  readonly publicKey: PublicKey;
}

/** What one reconcile pass programs for this node's own keys. */
export interface RotationPassPlan {
  /** The link of the current key. */
  readonly active: OwnLink;
  /** Delete the active link once routes left it (end of a rotation): never (re)create it. */
  readonly retireActive: boolean;
  /** The link of the new key during a rotation. */
  readonly incoming: OwnLink | undefined;
  /** Remote nodes whose prefixes route into the incoming link. */
  readonly viaIncoming: 'all' | readonly string[];
  /** Mirror the active link's egress into the incoming link. */
  readonly mirror: boolean;
  /** The key and port the node publishes as its own. */
  readonly published: {
    readonly publicKey: PublicKey;
    readonly listenPort: number;
    readonly epoch: number;
    readonly createdAt: Date;
  };
}

/** What the reconciler observed in a pass, for {@link RotationController.after}. */
export interface RotationFacts {
  readonly nodes: readonly RawNode[];
  readonly synced: boolean;
  /** The pass applied everything without an error. */
  readonly applied: boolean;
  /** Remote nodes this node has a tunnel to (the planner's peers). */
  readonly peers: readonly string[];
  /** Remote nodes with a completed handshake on the incoming link. */
  readonly incomingHandshakes: ReadonlySet<string>;
  /** The active link still exists. */
  readonly activeLinkPresent: boolean;
}

/** Options of {@link RotationController}. */
export interface RotationControllerOptions {
  readonly nodeName: string;
  /** Base listen port: slot s listens on base + s. */
  readonly listenPort: number;
  readonly settings: RotationSettings;
  readonly keystore: KeyStore;
  readonly stateFile: RotationStateFile;
  readonly log: Logger;
  readonly metrics?: AgentMetrics | undefined;
  /** Asks for a reconcile pass (after a transition, or when a timer fires). */
  readonly wake: () => void;
  /** Clock; defaults to Date.now. */
  readonly now?: () => number;
}

interface KeyFacts {
  readonly current: { publicKey: PublicKey; epoch: number; createdAt: Date; file: string };
  readonly next: { publicKey: PublicKey; epoch: number; createdAt: Date; file: string } | undefined;
}

/** Longest a wake-up timer is set for; the periodic resync covers anything further out. */
const MAX_WAKE_MS = 60_000;

/** Drives this node's key rotations. One per agent. */
export class RotationController {
  private readonly o: RotationControllerOptions;
  private readonly now: () => number;
  private state: RotationState | undefined;
  private keys: KeyFacts | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastError: string | undefined;
  private closed = false;
  /** Phase whose datapath the current pass programs (set by plan()). */
  private plannedPhase: string | undefined;
  /** What the previous pass observed, for the step at the start of the next one. */
  private lastFacts: (Omit<RotationFacts, 'nodes' | 'synced'> & { readonly phase: string | undefined }) | undefined;
  private readonly phaseGauge: Gauge<'phase'> | undefined;

  constructor(opts: RotationControllerOptions) {
    this.o = opts;
    this.now = opts.now ?? Date.now;
    const registers = opts.metrics === undefined ? undefined : [opts.metrics.registry];
    if (registers !== undefined) {
      this.phaseGauge = new Gauge({
        name: 'sealnet_rotation_phase',
        help: 'Key rotation phase of this node (1 for the current phase)',
        labelNames: ['phase'],
        registers,
      });
    }
  }

  /** Reads the persisted state and the key slots. Call once before the first pass. */
  async load(): Promise<void> {
    // A key write interrupted by a crash (kill -9 while generating the next key) leaves a
    // temporary file holding a private key: scrub it now, not a minute later.
    for (const w of await this.o.keystore.sweep('wireguard', { olderThanMs: 0 }))
      this.o.log.warn({}, `key store: ${w}`);
    const read = await this.o.stateFile.read(this.now());
    for (const w of read.warnings) this.o.log.warn({}, `rotation state: ${w}`);
    this.state = read.state;
    await this.refreshKeys();
    const r = this.state.rotation;
    if (r !== undefined) this.o.log.info({ id: r.id, phase: r.phase }, `resuming rotation ${r.id} in phase ${r.phase}`);
    this.observePhase();
  }

  /** Stops timers. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
  }

  /** The key this node publishes now (status): the new one from the grace period on. */
  published(): { publicKey: PublicKey; epoch: number; createdAt: Date } {
    const p = this.peek().published;
    return { publicKey: p.publicKey, epoch: p.epoch, createdAt: p.createdAt };
  }

  /** Name of the link carrying the published key (status reads its peers). */
  publishedLink(): string {
    const p = this.peek();
    return p.incoming !== undefined && p.published.publicKey === p.incoming.publicKey ? p.incoming.name : p.active.name;
  }

  /**
   * The active link and its key when no rotation is in flight (what a restart may restore
   * from the last applied state, tunnels/reconcile/restore.ts); undefined during a rotation.
   */
  idleLink(): OwnLink | undefined {
    const p = this.peek();
    return p.incoming === undefined && !p.retireActive ? p.active : undefined;
  }

  /** {@link plan} without marking a pass as planned (status readers). */
  private peek(): RotationPassPlan {
    const planned = this.plannedPhase;
    try {
      return this.plan();
    } finally {
      this.plannedPhase = planned;
    }
  }

  /** The current machine state (status, tests). */
  current(): RotationState {
    return this.mustState();
  }

  /** The links, keys and routes of this pass, from the state (marks the phase as planned). */
  plan(): RotationPassPlan {
    const state = this.mustState();
    this.plannedPhase = this.phaseName();
    const keys = this.mustKeys();
    const intent = rotationIntent(state);
    const activeKey = keys.current;
    const active: OwnLink = {
      name: WG_INTERFACES[intent.activeSlot],
      listenPort: this.o.listenPort + intent.activeSlot,
      privateKeyFile: activeKey.file,
      publicKey: activeKey.publicKey,
    };
    const incomingKey = intent.incomingKey === undefined ? undefined : this.keyByPublicKey(intent.incomingKey);
    const incoming: OwnLink | undefined =
      intent.incomingSlot === undefined || incomingKey === undefined
        ? undefined
        : {
            name: WG_INTERFACES[intent.incomingSlot],
            listenPort: this.o.listenPort + intent.incomingSlot,
            privateKeyFile: incomingKey.file,
            publicKey: incomingKey.publicKey,
          };
    const pub =
      intent.published === 'next' && incoming !== undefined && incomingKey !== undefined
        ? {
            publicKey: incomingKey.publicKey,
            listenPort: incoming.listenPort,
            epoch: incomingKey.epoch,
            createdAt: incomingKey.createdAt,
          }
        : {
            publicKey: keys.current.publicKey,
            listenPort: active.listenPort,
            epoch: keys.current.epoch,
            createdAt: keys.current.createdAt,
          };
    return {
      active,
      // Retire only with the incoming link in place: without it there would be nothing to route to.
      retireActive: intent.retireActive && incoming !== undefined,
      incoming,
      viaIncoming: incoming === undefined ? [] : intent.viaIncoming,
      mirror: intent.mirror && incoming !== undefined,
      published: pub,
    };
  }

  /**
   * The rotation annotations to publish after this pass applied its datapath: next key and
   * endpoint while peers should stage it, and the progress status.
   */
  annotations(endpointHost: string): Record<string, string | undefined> {
    const state = this.mustState();
    const r = state.rotation;
    const intent: RotationIntent = rotationIntent(state);
    const nextKey =
      intent.announceNext && intent.incomingSlot !== undefined && r?.nextPublicKey !== undefined
        ? r.nextPublicKey
        : undefined;
    const last =
      state.last === undefined
        ? undefined
        : {
            id: state.last.id,
            completedAt: new Date(state.last.completedAt),
            epoch: state.last.epoch,
            lagging: state.last.lagging,
          };
    const status: RotationStatus =
      r === undefined
        ? { phase: 'idle', ...(last !== undefined ? { last } : {}) }
        : {
            phase: r.phase,
            id: r.id,
            since: new Date(r.phaseSince),
            epoch: r.nextEpoch,
            ...(r.graceUntil !== undefined && (r.phase === 'grace' || r.phase === 'finishing')
              ? { graceUntil: new Date(r.graceUntil) }
              : {}),
            ...(last !== undefined ? { last } : {}),
            ...(this.lastError !== undefined ? { error: this.lastError } : {}),
          };
    return {
      [ANNOTATIONS.rotation]: encodeRotationStatus(status),
      [ANNOTATIONS.wireguardNextPublicKey]: nextKey,
      [ANNOTATIONS.nextEndpoint]:
        nextKey === undefined || intent.incomingSlot === undefined
          ? undefined
          : formatEndpoint(endpointHost, this.o.listenPort + intent.incomingSlot),
    };
  }

  /**
   * One machine step on what the pass observed; carries out the effects of transitions (the new
   * state is persisted first) and asks for another pass when the state changed. Never throws:
   * failures are logged, published in the status and retried on the next pass.
   */
  async after(facts: RotationFacts): Promise<void> {
    // The datapath this pass applied is that of the phase it planned; a pass that planned
    // another phase (the state moved meanwhile) applied nothing of the current one.
    const applied = facts.applied && this.plannedPhase === this.phaseName();
    this.lastFacts = {
      phase: this.plannedPhase,
      applied: facts.applied,
      peers: facts.peers,
      incomingHandshakes: facts.incomingHandshakes,
      activeLinkPresent: facts.activeLinkPresent,
    };
    await this.advance({ ...facts, applied }, true);
  }

  /**
   * Start of a pass: one step on the fresh node list with what the previous pass observed, so
   * a transition that peers' reports allow takes effect in this pass instead of the next one.
   * Returns this pass's {@link plan}.
   */
  async begin(nodes: readonly RawNode[], synced: boolean): Promise<RotationPassPlan> {
    const last = this.lastFacts;
    if (last !== undefined) {
      await this.advance(
        {
          nodes,
          synced,
          peers: last.peers,
          incomingHandshakes: last.incomingHandshakes,
          activeLinkPresent: last.activeLinkPresent,
          applied: last.applied && last.phase === this.phaseName(),
        },
        false,
      );
    }
    return this.plan();
  }

  private phaseName(): string {
    return this.mustState().rotation?.phase ?? 'idle';
  }

  private async advance(facts: RotationFacts, wakeOnChange: boolean): Promise<void> {
    if (this.closed) return;
    // `facts.applied` is about the datapath of the phase the machine is in now. Once a step moves
    // it to another phase, nothing of that phase has been applied or announced yet: its
    // datapath (the mirror, routes into the new link) and its announcement wait for a pass.
    const factsPhase = this.phaseName();
    let changed = false;
    let wakeInMs: number | undefined;
    try {
      if (this.mustState().rotation !== undefined) await this.refreshKeys();
      for (let i = 0; i < 8; i++) {
        const keys = this.mustKeys();
        const self = facts.nodes.find((n) => n.name === this.o.nodeName);
        const requestText = self?.annotations[ANNOTATIONS.rotateRequest];
        const request = requestText === undefined ? undefined : decodeRotateRequest(requestText);
        if (request !== undefined && !request.ok)
          this.noteOnce(`ignoring ${ANNOTATIONS.rotateRequest} on ${this.o.nodeName}: ${request.error}`);
        const step = stepRotation(this.mustState(), {
          now: this.now(),
          synced: facts.synced,
          self: this.o.nodeName,
          settings: this.o.settings,
          currentKey: {
            publicKey: keys.current.publicKey,
            epoch: keys.current.epoch,
            createdAt: keys.current.createdAt.getTime(),
          },
          nextKey: keys.next === undefined ? undefined : { publicKey: keys.next.publicKey, epoch: keys.next.epoch },
          request: request?.ok === true ? { id: request.request.id } : undefined,
          peers: this.follows(facts.nodes, facts.peers, facts.incomingHandshakes),
          othersRotating: this.othersRotating(facts.nodes, this.now()),
          autoAhead: this.autoAhead(facts.nodes, keys.current),
          activeLinkPresent: facts.activeLinkPresent,
          applied: facts.applied && this.phaseName() === factsPhase,
        });
        for (const e of step.events)
          this.o.log.info({ rotation: step.state.rotation?.id ?? this.mustState().rotation?.id }, e);
        wakeInMs = step.wakeInMs;
        const moved = step.state !== this.mustState();
        if (moved) {
          const before = this.mustState();
          await this.o.stateFile.write(step.state);
          this.state = step.state;
          changed = true;
          if (before.rotation !== undefined && step.state.rotation === undefined && this.o.metrics !== undefined)
            recordRotation(this.o.metrics, { kind: 'wireguard', result: 'completed' });
        }
        if (step.effects.length > 0) {
          for (const e of step.effects) await this.run(e);
          await this.refreshKeys();
        }
        if (!moved && step.effects.length === 0) break;
      }
      this.lastError = undefined;
    } catch (err) {
      const msg = describeError(err);
      if (msg !== this.lastError) this.o.log.error({ err: msg }, 'key rotation step failed; retrying');
      this.lastError = msg;
      this.o.metrics?.errors.inc({ step: 'rotation' });
      wakeInMs = 1000;
    }
    this.observePhase();
    if (changed && wakeOnChange) this.o.wake();
    this.schedule(changed && wakeOnChange ? undefined : wakeInMs);
  }

  /** Carries out one effect. Idempotent where the machine may ask twice after a crash. */
  private async run(e: RotationEffect): Promise<void> {
    const ks = this.o.keystore;
    switch (e.type) {
      case 'generate-next-key': {
        const pair = await generateKeyPair();
        try {
          await ks.writeKey('wireguard', 'next', pair, { createdAt: new Date(this.now()), epoch: e.epoch });
        } finally {
          zeroKey(pair.privateKey);
        }
        this.o.log.info({ key: fingerprint(pair.publicKey), epoch: e.epoch }, 'generated the next WireGuard key');
        return;
      }
      case 'erase-next-key':
        await ks.erase('wireguard', 'next');
        return;
      case 'promote-next-key': {
        const promoted = await ks.promoteNext('wireguard');
        zeroKey(promoted.privateKey);
        this.o.log.info(
          { key: fingerprint(promoted.publicKey), epoch: promoted.epoch },
          'new WireGuard key promoted; the old private key is overwritten and removed',
        );
        return;
      }
    }
  }

  /** Peers as the machine sees them: their report about our new key, and the handshake. */
  private follows(nodes: readonly RawNode[], peers: readonly string[], handshakes: ReadonlySet<string>): PeerFollow[] {
    const r = this.mustState().rotation;
    const fp = r?.nextPublicKey === undefined ? undefined : fingerprint(r.nextPublicKey as PublicKey);
    const reports = new Map<string, PeerReport>();
    // No next key (idle): no report can be about it, and every pass would walk every node.
    for (const raw of fp === undefined ? [] : nodes) {
      if (raw.name === this.o.nodeName) continue;
      const d = decodeNode(raw);
      const mine = d.ok ? d.node.rotationReports?.[this.o.nodeName] : undefined;
      if (mine !== undefined && mine.fingerprint === fp) reports.set(raw.name, mine.state);
    }
    // Without a peer list (none yet), the nodes that report are all that is known.
    const names = peers.length > 0 ? peers : [...reports.keys()];
    return [...names]
      .sort()
      .map((name) => ({ name, report: reports.get(name) ?? 'none', handshake: handshakes.has(name) }));
  }

  private othersRotating(nodes: readonly RawNode[], now: number): number {
    let n = 0;
    for (const raw of nodes) {
      if (raw.name === this.o.nodeName) continue;
      const d = decodeNode(raw);
      if (!d.ok || d.node.rotationPhase === undefined) continue;
      // Only a fresh announcement counts: a node stuck in (or lying about) a phase does not hold
      // every other node's automatic rotation forever.
      const st = decodeRotationStatus(raw.annotations[ANNOTATIONS.rotation] ?? '');
      if (announcedPhaseCounts(st?.since?.getTime(), now, this.o.settings)) n++;
    }
    return n;
  }

  /**
   * autoRotationDueAt() of each node object (null: not idle, or nothing to judge by), with the
   * maximum age it was computed for: a node object is immutable, so one hash and one date parse
   * per object, not one per node per step (5,000 nodes, several steps a pass).
   */
  private readonly dueOf = new WeakMap<RawNode, { readonly maxKeyAgeMs: number; readonly due: number | null }>();

  /**
   * Idle nodes whose automatic rotation is due before ours, judged from what they publish (key
   * epoch and creation time) with our own maximum age (the chart sets one for the cluster).
   */
  private autoAhead(nodes: readonly RawNode[], current: KeyFacts['current']): number {
    const maxKeyAgeMs = this.o.settings.maxKeyAgeMs;
    const mine = autoRotationDueAt({
      node: this.o.nodeName,
      epoch: current.epoch,
      createdAt: current.createdAt.getTime(),
      maxKeyAgeMs,
    });
    if (mine === undefined) return 0;
    const now = this.now();
    let n = 0;
    for (const raw of nodes) {
      if (raw.name === this.o.nodeName) continue;
      let memo = this.dueOf.get(raw);
      if (memo === undefined || memo.maxKeyAgeMs !== maxKeyAgeMs) {
        const d = decodeNode(raw);
        const created = Date.parse(raw.annotations[ANNOTATIONS.keyCreated] ?? '');
        const due =
          !d.ok || d.node.rotationPhase !== undefined || Number.isNaN(created)
            ? null
            : (autoRotationDueAt({ node: raw.name, epoch: d.node.keyEpoch, createdAt: created, maxKeyAgeMs }) ?? null);
        memo = { maxKeyAgeMs, due };
        this.dueOf.set(raw, memo);
      }
      const due = memo.due;
      if (due === null) continue;
      if (due <= now && (due < mine || (due === mine && raw.name < this.o.nodeName))) n++;
    }
    return n;
  }

  private keyByPublicKey(pub: string | undefined): KeyFacts['current'] | undefined {
    const k = this.mustKeys();
    if (pub === undefined) return undefined;
    if (k.current.publicKey === pub) return k.current;
    if (k.next?.publicKey === pub) return k.next;
    return undefined;
  }

  private async refreshKeys(): Promise<void> {
    const ks = this.o.keystore;
    const cur = await ks.read('wireguard', 'current');
    if (cur === undefined) throw new Error(`no current WireGuard key in ${ks.keysDir}`);
    zeroKey(cur.privateKey);
    const next = await ks.read('wireguard', 'next');
    if (next !== undefined) zeroKey(next.privateKey);
    for (const w of [...cur.warnings, ...(next?.warnings ?? [])]) this.o.log.warn({}, `key store: ${w}`);
    this.keys = {
      current: { publicKey: cur.publicKey, epoch: cur.epoch, createdAt: cur.createdAt, file: cur.privateKeyFile },
      next:
        next === undefined
          ? undefined
          : { publicKey: next.publicKey, epoch: next.epoch, createdAt: next.createdAt, file: next.privateKeyFile },
    };
  }

  private schedule(wakeInMs: number | undefined): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (wakeInMs === undefined || this.closed) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.o.wake();
      },
      Math.min(Math.max(wakeInMs, 0), MAX_WAKE_MS),
    );
    this.timer.unref();
  }

  private observePhase(): void {
    if (this.phaseGauge === undefined) return;
    this.phaseGauge.reset();
    this.phaseGauge.set({ phase: this.mustState().rotation?.phase ?? 'idle' }, 1);
  }

  private readonly noted = new Set<string>();
  private noteOnce(msg: string): void {
    if (this.noted.has(msg)) return;
    this.noted.add(msg);
    this.o.log.warn({}, msg);
  }

  private mustState(): RotationState {
    if (this.state === undefined) throw new Error('RotationController.load() was not called');
    return this.state;
  }

  private mustKeys(): KeyFacts {
    if (this.keys === undefined) throw new Error('RotationController.load() was not called');
    return this.keys;
  }
}

/** Default settings from the agent config's `rotation` block (seconds → milliseconds). */
export function rotationSettings(cfg: {
  readonly graceSeconds: number;
  readonly peerTimeoutSeconds: number;
  readonly maxKeyAgeSeconds: number;
  readonly maxConcurrentAuto: number;
}): RotationSettings {
  return {
    ...DEFAULT_ROTATION_SETTINGS,
    graceMs: cfg.graceSeconds * 1000,
    peerTimeoutMs: cfg.peerTimeoutSeconds * 1000,
    maxKeyAgeMs: cfg.maxKeyAgeSeconds * 1000,
    maxConcurrentAuto: cfg.maxConcurrentAuto,
  };
}

/**
 * What this node reports about other nodes' rotations (`sealnet.io/rotation-peers`), from the
 * peers read back from every link after apply. `staged`: every link holds the key; `moved`:
 * on every link the key owns all of the node's pod CIDRs. Pure.
 */
export function rotationReports(
  following: readonly { readonly node: string; readonly publicKey: PublicKey; readonly podCIDRs: readonly string[] }[],
  links: readonly (readonly ObservedPeer[])[],
): Record<string, PeerRotationReport> {
  const out: Record<string, PeerRotationReport> = {};
  if (links.length === 0) return out;
  for (const f of following) {
    const held = links.map((peers) => peers.find((p) => p.publicKey === f.publicKey));
    if (held.some((p) => p === undefined)) continue;
    const moved = held.every((p) => f.podCIDRs.every((c) => p!.allowedIPs.some((a) => canonicalCidr(a) === c)));
    out[f.node] = { fingerprint: fingerprint(f.publicKey), state: moved ? 'moved' : 'staged' };
  }
  return out;
}

/** The report annotation value, or undefined (removed) when there is nothing to report. */
export function encodeReportsAnnotation(reports: Record<string, PeerRotationReport>): string | undefined {
  return Object.keys(reports).length === 0 ? undefined : encodeRotationReports(reports);
}

/** Nodes whose desired peers on the incoming link completed a handshake there. */
export function handshakesByNode(desired: readonly DesiredPeer[], observed: readonly ObservedPeer[]): Set<string> {
  const byKey = new Map(observed.map((p) => [p.publicKey as string, p]));
  const out = new Set<string>();
  for (const d of desired) if ((byKey.get(d.publicKey)?.latestHandshake ?? 0) > 0) out.add(d.node);
  return out;
}
