/**
 * The post-quantum pair secret at run time (issue 19): one {@link PqService} per agent drives
 * every pair's exchange state machine (keymgr/pq/exchange.ts) with the real crypto, carries the
 * messages through the tunnel (transport.ts), installs each confirmed secret as the peer's
 * WireGuard preshared key, and tells the pass which pairs may not carry traffic in `required`
 * mode ({@link PqPassHook}).
 *
 * Order of a switch, so no packet is lost: the responder installs the new PSK, then
 * acknowledges; the initiator installs it once the acknowledgement's tag verified. A PSK change
 * only affects the next WireGuard handshake; the session in use stays valid (up to 180 s), and a
 * handshake that falls in the one round trip between the two installs fails and is retried by
 * WireGuard 5 s later, with both ends then holding the same key.
 *
 * Secrets (decapsulation key, shared secrets, PSKs) live in this object only, are wiped when
 * replaced, and never reach a log line, an error message or a metric label.
 */
import type { Logger } from '../../common/logger.js';
import { describeError } from '../../common/errors.js';
import { PQ_EXCHANGE_PORT } from '../../common/constants.js';
import { cidrContains, parseCidr, parseIP, canonicalIP } from '../../common/ip.js';
import type { PublicKey } from '../../keymgr/keys.js';
import {
  INITIAL_PQ_STATE,
  pairBinding,
  pqPhase,
  pqReadiness,
  stepPair,
  type PqEffect,
  type PqEvent,
  type PqPairState,
  type PqPairView,
  type PqReadiness,
  type PqRole,
  type PqSettings,
} from '../../keymgr/pq/exchange.js';
import {
  ciphertextHash,
  confirmationTag,
  derivePairSecret,
  pqInitiator,
  verifyConfirmationTag,
  type PairSecret,
} from '../../keymgr/pq/kdf.js';
import { decodePqMessage, encodePqMessage, type PqCiphertextMessage } from '../../keymgr/pq/messages.js';
import {
  decapsulate,
  encapsulate,
  encapsulationKeyHash,
  encapsulationKeyId,
  KEM_NAME,
  zeroBytes,
  type KemKeyPair,
} from '../../keymgr/pq/mlkem.js';
import { decodePqPublication, encodePqAnnotations, type PqPublication } from '../plan/pq-codec.js';
import type { WireGuardPort } from '../ports/index.js';
import type { RawNode } from '../ports/model.js';
import type { PqPairStatus, PqPassHook } from '../ports/pq.js';
import type { PqMetrics } from './metrics.js';
import { PqListener, pqRequest, type PqInbound } from './transport.js';

/** How often the service looks at every pair (renewals, retries, expiries). */
export const PQ_TICK_MS = 1_000;
/** Failed attempts back off exponentially from the retry period up to this. */
export const PQ_BACKOFF_MAX_MS = 5 * 60_000;

/** Options of {@link PqService}. */
export interface PqServiceOptions {
  readonly nodeName: string;
  readonly settings: PqSettings;
  readonly kem: KemKeyPair;
  readonly wg: Pick<WireGuardPort, 'setPresharedKey'>;
  readonly log: Logger;
  readonly metrics?: PqMetrics | undefined;
  /** Asks the reconciler for a pass (the set of blocked pairs changed). */
  readonly wake: () => void;
  /** TCP port of every agent's listener (default {@link PQ_EXCHANGE_PORT}). */
  readonly port?: number;
  readonly now?: () => number;
  /** Sends a message and returns the reply line (default: transport.ts `pqRequest`). */
  readonly send?: (a: { address: string; port: number; localAddress: string; text: string }) => Promise<string>;
  /** Starts a listener (default: transport.ts `PqListener`); tests pass a fake. */
  readonly listen?: (a: {
    address: string;
    port: number;
    admit: (remote: string) => boolean;
    handler: (m: PqInbound) => Promise<string | undefined>;
  }) => Promise<{ close(): void }>;
}

interface Pair {
  readonly node: string;
  readonly role: PqRole;
  state: PqPairState;
  pub: PqPublication;
  peerKey: PublicKey;
  /** The PSK of `state.current` (wiped when replaced). */
  psk: Uint8Array | undefined;
  /** `link:ifindex:peerKey` the PSK was last written to. */
  installedOn: string | undefined;
  pending: { renewalId: number; secret: PairSecret } | undefined;
  failures: number;
  nextTryAt: number;
  busy: boolean;
  lastProblem: string | undefined;
}

/** The agent's post-quantum exchange; see the module comment. */
export class PqService implements PqPassHook {
  private readonly o: PqServiceOptions;
  private readonly port: number;
  private readonly selfKemKeyId: string;
  private readonly selfKemKeyHash: Uint8Array;
  private readonly pairs = new Map<string, Pair>();
  private link: { name: string; ifindex: number; selfKey: PublicKey } | undefined;
  private address: string | undefined;
  private listener: { close(): void } | undefined;
  private listening: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** {@link blockedKey} of the last {@link blocked} answer (what the pass programmed). */
  private lastBlocked = '';
  private lastNodes: readonly RawNode[] = [];
  private readonly logged = new Set<string>();

  constructor(o: PqServiceOptions) {
    this.o = o;
    this.port = o.port ?? PQ_EXCHANGE_PORT;
    this.selfKemKeyId = encapsulationKeyId(o.kem.encapsulationKey);
    this.selfKemKeyHash = encapsulationKeyHash(o.kem.encapsulationKey);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** Starts the periodic tick (the listener starts once the own address is known). */
  start(): void {
    if (this.o.settings.mode === 'off' || this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), PQ_TICK_MS);
    this.timer.unref();
  }

  /** Stops the tick and the listener; wipes every secret held. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.listener?.close();
    this.listener = undefined;
    for (const p of this.pairs.values()) wipePair(p);
    this.pairs.clear();
  }

  /** {@inheritDoc PqPassHook.ownAnnotations} */
  ownAnnotations(self: RawNode, localAddresses: readonly string[]): Record<string, string> | undefined {
    if (this.o.settings.mode === 'off') return undefined;
    const address = ownExchangeAddress(self.podCIDRs, localAddresses);
    if (address === undefined) {
      this.logOnce(
        'self:no-address',
        'warn',
        "no local address inside this node's own pod CIDRs: cannot publish a post-quantum exchange address (the pod network gives the node one, e.g. its pod gateway)",
      );
      return undefined;
    }
    if (address !== this.address || (this.listener === undefined && this.listening === undefined)) {
      this.address = address;
      this.startListener(address);
    }
    return encodePqAnnotations({ kemKey: this.o.kem.encapsulationKey, address });
  }

  /** {@inheritDoc PqPassHook.blocked} */
  blocked(nodes: readonly RawNode[]): ReadonlyMap<string, string | undefined> {
    const out = new Map<string, string | undefined>();
    if (this.o.settings.mode !== 'required') return out;
    const now = this.now();
    for (const raw of nodes) {
      if (raw.name === this.o.nodeName) continue;
      const pair = this.pairs.get(raw.name);
      if (pair !== undefined && this.readiness(pair, now).ready) continue;
      const pub = pair?.pub ?? decodePqPublication(raw);
      out.set(raw.name, pub.ok ? pub.address : undefined);
    }
    this.lastBlocked = blockedKey(out);
    return out;
  }

  /** {@inheritDoc PqPassHook.programmed} */
  programmed(a: Parameters<PqPassHook['programmed']>[0]): void {
    if (this.o.settings.mode === 'off') return;
    this.link = { name: a.link, ifindex: a.ifindex, selfKey: a.selfKey };
    this.lastNodes = a.nodes;
    const byName = new Map(a.nodes.map((n) => [n.name, n]));
    for (const [node, p] of this.pairs) {
      if (!a.peers.has(node) || !byName.has(node)) {
        wipePair(p);
        this.pairs.delete(node);
      }
    }
    for (const [node, peerKey] of a.peers) {
      const raw = byName.get(node);
      if (raw === undefined || node === this.o.nodeName) continue;
      const pub = decodePqPublication(raw);
      const existing = this.pairs.get(node);
      if (existing !== undefined) {
        existing.pub = pub;
        existing.peerKey = peerKey;
      } else {
        this.pairs.set(node, {
          node,
          role: pqInitiator(this.o.nodeName, node) === this.o.nodeName ? 'initiator' : 'responder',
          state: INITIAL_PQ_STATE,
          pub,
          peerKey,
          psk: undefined,
          installedOn: undefined,
          pending: undefined,
          failures: 0,
          nextTryAt: 0,
          busy: false,
          lastProblem: undefined,
        });
      }
      const p = this.pairs.get(node)!;
      if (!pub.ok && p.lastProblem !== pub.problem) {
        p.lastProblem = pub.problem;
        // A peer that has not published yet (starting) is ordinary: info; a malformed value warns.
        this.o.log[pub.problem.endsWith(' is missing') ? 'info' : 'warn'](
          { peer: node, reason: pub.problem },
          'peer publishes no usable post-quantum key; its pair is skipped (classical in preferred mode, dropped in required mode)',
        );
      } else if (pub.ok) p.lastProblem = undefined;
    }
    this.o.metrics?.badPublications.set([...this.pairs.values()].filter((p) => !p.pub.ok).length);
  }

  /** Every pair's exchange, for `sealctl status`; sorted by node. */
  status(): PqPairStatus[] {
    const now = this.now();
    return [...this.pairs.values()]
      .sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0))
      .map((p) => {
        const r = this.readiness(p, now);
        const cur = p.state.current;
        return {
          node: p.node,
          kem: KEM_NAME,
          role: p.role,
          phase: pqPhase(p.state),
          protection: r.protection,
          ready: r.ready,
          ...(r.secretAgeMs !== undefined ? { secretAgeSeconds: Math.floor(r.secretAgeMs / 1000) } : {}),
          ...(cur !== undefined && r.protection === 'hybrid'
            ? { lastRenewal: new Date(cur.establishedAt).toISOString() }
            : {}),
          ...(r.reason !== undefined ? { reason: r.reason } : {}),
        };
      });
  }

  /**
   * One look at every pair: start due exchanges (initiator), re-install a PSK a recreated link
   * lost, update the metrics, and wake the reconciler when the set of blocked pairs changed.
   * Returns when every exchange it started has finished (tests await it; the timer does not).
   */
  async tick(): Promise<void> {
    const now = this.now();
    const work: Promise<void>[] = [];
    for (const p of this.pairs.values()) {
      if (p.busy) continue;
      if (p.psk !== undefined && p.installedOn !== this.target(p)) {
        work.push(this.serial(p, () => this.install(p, p.psk!)));
        continue;
      }
      if (now < p.nextTryAt || this.address === undefined) continue;
      const step = stepPair(p.state, { type: 'tick' }, this.ctx(p, now));
      p.state = step.state;
      work.push(this.serial(p, () => this.runInitiator(p, step.effects)));
    }
    await Promise.all(work);
    this.publishMetrics();
    this.checkWake();
  }

  /** The pass asked {@link blocked} last time; if the answer would differ now, it must run again. */
  private checkWake(): void {
    if (this.o.settings.mode !== 'required') return;
    const before = this.lastBlocked;
    const now = blockedKey(this.blocked(this.lastNodes));
    if (now !== before) this.o.wake();
  }

  /** Handles one message that arrived on the listener; returns the reply line or undefined. */
  async onMessage(m: PqInbound): Promise<string | undefined> {
    const d = decodePqMessage(m.text);
    if (!d.ok) return this.refused(undefined, d.error);
    const msg = d.message;
    if (msg.type !== 'pq-ciphertext') return this.refused(undefined, 'an acknowledgement arrives only as a reply');
    if (msg.to !== this.o.nodeName) return this.refused(undefined, 'message addressed to another node');
    const p = this.pairs.get(msg.from);
    if (p === undefined || !p.pub.ok) return this.refused(undefined, 'message from a node that is not a usable peer');
    // The tunnel's authentication: the connection must come from the sender's own exchange
    // address (routed only through its WireGuard peer) to ours.
    if (canonicalIP(m.remoteAddress) !== p.pub.address || canonicalIP(m.localAddress) !== this.address) {
      return this.refused(p.node, "message did not arrive from the sender's exchange address through the tunnel");
    }
    if (p.busy) return this.refused(p.node, 'an exchange with this peer is in progress');
    let reply: string | undefined;
    await this.serial(p, async () => {
      reply = await this.runResponder(p, msg);
    });
    return reply;
  }

  // --- initiator -------------------------------------------------------------------------------

  private async runInitiator(p: Pair, effects: readonly PqEffect[]): Promise<void> {
    for (const e of effects) {
      if (e.type === 'drop-pending') this.dropPending(p, e.reason);
      if (e.type !== 'send-ciphertext') continue;
      if (!p.pub.ok || this.link === undefined || this.address === undefined) return;
      const view = this.view(p);
      const enc = encapsulate(p.pub.kemKey);
      let secret: PairSecret;
      try {
        secret = derivePairSecret(enc.sharedSecret, {
          initiator: { name: this.o.nodeName, x25519: this.link.selfKey, kemKeyHash: this.selfKemKeyHash },
          responder: { name: p.node, x25519: p.peerKey, kemKeyHash: p.pub.kemKeyHash },
          ciphertextHash: ciphertextHash(enc.ciphertext),
          renewalId: e.renewalId,
        });
      } finally {
        zeroBytes(enc.sharedSecret);
      }
      p.pending = { renewalId: e.renewalId, secret };
      const text = encodePqMessage({
        type: 'pq-ciphertext',
        from: this.o.nodeName,
        to: p.node,
        renewalId: e.renewalId,
        forKemKeyId: p.pub.kemKeyId,
        binding: view.binding!,
        ciphertext: enc.ciphertext,
      });
      let replyText: string;
      try {
        replyText = await (this.o.send ?? pqRequest)({
          address: p.pub.address,
          port: this.port,
          localAddress: this.address,
          text,
        });
      } catch (err) {
        return this.failed(p, `no reply from the peer's exchange listener: ${describeError(err)}`);
      }
      const r = decodePqMessage(replyText);
      if (!r.ok) return this.failed(p, r.error);
      const ack = r.message;
      if (ack.type !== 'pq-ack' || ack.from !== p.node || ack.to !== this.o.nodeName) {
        return this.failed(p, 'the reply is not an acknowledgement from the peer to us');
      }
      const pending = p.pending;
      const tagOk = pending !== undefined && verifyConfirmationTag(pending.secret.confirmKey, ack.renewalId, ack.tag);
      const step = stepPair(p.state, { type: 'ack', renewalId: ack.renewalId, tagOk }, this.ctx(p, this.now()));
      p.state = step.state;
      for (const f of step.effects) {
        if (f.type === 'drop-pending') this.dropPending(p, f.reason);
        if (f.type === 'refuse') return this.failed(p, f.reason);
        if (f.type === 'install-psk' && pending !== undefined) {
          this.setPsk(p, pending.secret.psk);
          zeroBytes(pending.secret.confirmKey);
          p.pending = undefined;
          await this.install(p, p.psk!);
          p.failures = 0;
          p.nextTryAt = 0;
          this.o.metrics?.exchanges.inc({ role: 'initiator', result: 'confirmed' });
          this.checkWake();
          this.o.log.info({ peer: p.node, renewal: ack.renewalId }, 'post-quantum pair secret confirmed and installed');
        }
      }
      if (!tagOk) return this.failed(p, 'the confirmation tag did not verify');
    }
  }

  private dropPending(p: Pair, reason: string): void {
    if (p.pending !== undefined) {
      zeroBytes(p.pending.secret.psk);
      zeroBytes(p.pending.secret.confirmKey);
      p.pending = undefined;
    }
    this.logOnce(`${p.node}:drop:${reason}`, 'info', `post-quantum exchange abandoned: ${reason}`, p.node);
  }

  /** A failed attempt: the pending secret goes, the next attempt backs off exponentially. */
  private failed(p: Pair, reason: string): void {
    this.o.metrics?.exchanges.inc({ role: p.role, result: 'failed' });
    if (p.pending !== undefined) {
      zeroBytes(p.pending.secret.psk);
      zeroBytes(p.pending.secret.confirmKey);
      p.pending = undefined;
    }
    p.state = { ...p.state, pending: undefined };
    p.failures++;
    const backoff = Math.min(PQ_BACKOFF_MAX_MS, this.o.settings.retryMs * 2 ** Math.min(p.failures - 1, 16));
    p.nextTryAt = this.now() + backoff;
    this.logOnce(`${p.node}:fail:${reason.slice(0, 60)}`, 'warn', `post-quantum exchange failed: ${reason}`, p.node);
  }

  // --- responder -------------------------------------------------------------------------------

  private async runResponder(p: Pair, msg: PqCiphertextMessage): Promise<string | undefined> {
    if (!p.pub.ok || this.link === undefined) return this.refused(p.node, 'the pair is not programmed yet');
    const event: PqEvent = {
      type: 'ciphertext',
      renewalId: msg.renewalId,
      forKemKeyId: msg.forKemKeyId,
      binding: msg.binding,
    };
    const step = stepPair(p.state, event, this.ctx(p, this.now()));
    let secret: PairSecret | undefined;
    for (const e of step.effects) {
      if (e.type === 'refuse') return this.refused(p.node, e.reason);
      if (e.type === 'accept-ciphertext') {
        const ss = decapsulate(msg.ciphertext, this.o.kem.decapsulationKey);
        try {
          secret = derivePairSecret(ss, {
            initiator: { name: p.node, x25519: p.peerKey, kemKeyHash: p.pub.kemKeyHash },
            responder: { name: this.o.nodeName, x25519: this.link.selfKey, kemKeyHash: this.selfKemKeyHash },
            ciphertextHash: ciphertextHash(msg.ciphertext),
            renewalId: msg.renewalId,
          });
        } finally {
          zeroBytes(ss);
        }
      }
      if (e.type === 'install-psk' && secret !== undefined) {
        // Installed before the acknowledgement goes out; the state moves only if it was.
        if (!(await this.install(p, secret.psk))) {
          zeroBytes(secret.psk);
          zeroBytes(secret.confirmKey);
          return undefined;
        }
        p.state = step.state;
        this.setPsk(p, secret.psk);
        this.checkWake();
      }
      if (e.type === 'send-ack' && secret !== undefined) {
        const tag = confirmationTag(secret.confirmKey, msg.renewalId);
        zeroBytes(secret.confirmKey);
        this.o.metrics?.exchanges.inc({ role: 'responder', result: 'confirmed' });
        this.o.log.info({ peer: p.node, renewal: msg.renewalId }, 'post-quantum pair secret installed; acknowledging');
        return encodePqMessage({ type: 'pq-ack', from: this.o.nodeName, to: p.node, renewalId: msg.renewalId, tag });
      }
    }
    return undefined;
  }

  private refused(node: string | undefined, reason: string): undefined {
    this.o.metrics?.exchanges.inc({ role: 'responder', result: 'refused' });
    this.logOnce(
      `${node ?? '?'}:refuse:${reason.slice(0, 60)}`,
      'warn',
      `post-quantum message refused: ${reason}`,
      node,
    );
    return undefined;
  }

  // --- shared ----------------------------------------------------------------------------------

  private setPsk(p: Pair, psk: Uint8Array): void {
    if (p.psk !== undefined && p.psk !== psk) zeroBytes(p.psk);
    p.psk = psk;
  }

  /** Writes the PSK to the peer on the link the last pass programmed; true when it did. */
  private async install(p: Pair, psk: Uint8Array): Promise<boolean> {
    if (this.link === undefined) return false;
    const target = this.target(p);
    try {
      await this.o.wg.setPresharedKey(this.link.name, p.peerKey, psk);
      p.installedOn = target;
      this.o.metrics?.pskInstalls.inc({ result: 'ok' });
      return true;
    } catch (err) {
      p.installedOn = undefined;
      this.o.metrics?.pskInstalls.inc({ result: 'failed' });
      this.logOnce(
        `${p.node}:install`,
        'warn',
        `cannot install the post-quantum preshared key: ${describeError(err)}`,
        p.node,
      );
      return false;
    }
  }

  private target(p: Pair): string {
    return this.link === undefined ? '' : `${this.link.name}:${this.link.ifindex}:${p.peerKey}`;
  }

  /** Readiness of a pair; a secret not (yet) written to the link does not count. */
  private readiness(p: Pair, now: number): PqReadiness {
    const installed = p.installedOn !== undefined && p.installedOn === this.target(p);
    const state = installed ? p.state : { ...p.state, current: undefined };
    const r = pqReadiness(state, this.view(p), this.o.settings, now);
    if (!installed && p.state.current !== undefined && r.protection !== 'hybrid') {
      return { ...r, reason: 'the confirmed preshared key is not installed on the link (retrying)' };
    }
    return r;
  }

  private view(p: Pair): PqPairView {
    const self = {
      name: this.o.nodeName,
      x25519: this.link?.selfKey ?? '',
      kemKeyId: this.selfKemKeyId,
    };
    const peer = p.pub.ok ? { name: p.node, x25519: p.peerKey as string, kemKeyId: p.pub.kemKeyId } : undefined;
    return {
      role: p.role,
      selfKemKeyId: this.selfKemKeyId,
      peerKemKeyId: peer?.kemKeyId,
      ...(p.pub.ok ? {} : { peerKemProblem: p.pub.problem }),
      binding:
        peer === undefined || this.link === undefined
          ? undefined
          : p.role === 'initiator'
            ? pairBinding(self, peer)
            : pairBinding(peer, self),
    };
  }

  private ctx(p: Pair, now: number): { view: PqPairView; settings: PqSettings; now: number } {
    return { view: this.view(p), settings: this.o.settings, now };
  }

  /** Runs `fn` with the pair marked busy (one exchange per pair at a time). */
  private async serial(p: Pair, fn: () => Promise<unknown>): Promise<void> {
    p.busy = true;
    try {
      await fn();
    } catch (err) {
      this.failed(p, describeError(err));
    } finally {
      p.busy = false;
    }
  }

  private publishMetrics(): void {
    const m = this.o.metrics;
    if (m === undefined) return;
    const counts = { hybrid: 0, classical: 0, none: 0 };
    const now = this.now();
    for (const p of this.pairs.values()) counts[this.readiness(p, now).protection]++;
    for (const [protection, n] of Object.entries(counts)) m.pairs.set({ protection }, n);
  }

  private startListener(address: string): void {
    this.listener?.close();
    this.listener = undefined;
    const listen =
      this.o.listen ??
      (async (a: Parameters<NonNullable<PqServiceOptions['listen']>>[0]) => {
        const l = new PqListener({
          ...a,
          onRefused: (reason) => this.o.metrics?.refusedConnections.inc({ reason }),
        });
        await l.start();
        return l;
      });
    this.listening = listen({
      address,
      port: this.port,
      admit: (remote) => {
        const r = canonicalIP(remote);
        for (const p of this.pairs.values()) if (p.pub.ok && p.pub.address === r) return true;
        return false;
      },
      handler: (m) => this.onMessage(m),
    }).then(
      (l) => {
        this.listener = l;
        this.listening = undefined;
        this.o.log.info({ address, port: this.port }, 'post-quantum exchange listener up');
      },
      (err: unknown) => {
        this.listening = undefined;
        this.address = undefined; // try again on the next pass
        this.logOnce('self:listen', 'warn', `cannot listen for post-quantum exchanges: ${describeError(err)}`);
      },
    );
  }

  /** Logs a line once per (key) while it lasts; the set is bounded. */
  private logOnce(key: string, level: 'info' | 'warn', msg: string, peer?: string): void {
    if (this.logged.has(key)) return;
    if (this.logged.size > 10_000) this.logged.clear();
    this.logged.add(key);
    this.o.log[level](peer === undefined ? {} : { peer }, msg);
  }
}

/** The node's exchange address: its lowest local address inside its own pod CIDRs, IPv4 first. */
export function ownExchangeAddress(podCIDRs: readonly string[], localAddresses: readonly string[]): string | undefined {
  const cidrs = podCIDRs.flatMap((c) => parseCidr(c, { hostBits: 'clear' }) ?? []);
  const inside = localAddresses
    .filter((a) => cidrs.some((c) => cidrContains(c, a)))
    .map((a) => ({ a: canonicalIP(a), ip: parseIP(a)! }))
    .sort((x, y) => x.ip.family - y.ip.family || (x.ip.value < y.ip.value ? -1 : x.ip.value > y.ip.value ? 1 : 0));
  return inside[0]?.a;
}

function blockedKey(m: ReadonlyMap<string, string | undefined>): string {
  return JSON.stringify([...m].sort());
}

function wipePair(p: Pair): void {
  if (p.psk !== undefined) zeroBytes(p.psk);
  if (p.pending !== undefined) {
    zeroBytes(p.pending.secret.psk);
    zeroBytes(p.pending.secret.confirmKey);
  }
  p.psk = undefined;
  p.pending = undefined;
}
