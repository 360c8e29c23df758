/**
 * The IPsec driver: makes the kernel's XFRM tables hold what `plan.ts` wants, through the
 * narrow {@link XfrmOps} interface (the addon-backed XfrmClient, or FakeXfrm in unit tests).
 *
 * Contract of {@link IpsecDriver.apply}:
 * - It reads the kernel first and changes only what differs; called twice with the same
 *   desired state, the second call changes nothing.
 * - Per peer, in dependency order: inbound states (the peer may already send with a new SPI),
 *   the outbound state, in/fwd policies, then the outbound policies that pin the outbound SPI
 *   (a policy never points at a state that is not there yet). Policy changes are atomic
 *   (XFRM_MSG_UPDPOLICY); new objects are added before old ones are deleted.
 * - A state whose key or parameters changed under the same SPI cannot be updated in place (the
 *   kernel does not change keys), so it is deleted and re-added: for an outbound state under
 *   block guards in front of the pair's outbound policies, so the gap drops instead of asking
 *   a key manager (ACQUIRE) or leaking; guards expire by themselves if the agent dies.
 * - A peer whose step fails stops there (later steps depend on it), is rolled back if it had
 *   nothing installed before, and is reported; the other peers carry on. A kernel without ESP
 *   fails every peer at once with the sentence naming the missing feature.
 * - Only owned objects (SPI range + reqid, policy priority + reqid) are ever changed or deleted;
 *   a foreign object in the way fails the peer. Owned objects that are not desired are deleted
 *   only with `prune` (after the node store synced), and never those of a failed peer.
 */
import { pairEvidence } from './evidence.js';
import type { PrivateKey, Sodium } from '../keymgr/keys.js';
import { sodiumReady } from '../keymgr/keys.js';
import { SealnetError } from '../common/errors.js';
import { deriveSaKey } from './kdf.js';
import { canonicalIP } from '../common/ip.js';
import {
  checkPolicyMark,
  compareState,
  guardPolicies,
  isGuard,
  isOwnedPolicy,
  isOwnedState,
  peerPolicies,
  peerStates,
  policyKey,
  policyLabel,
  policyMatches,
  stateKey,
  stateLabel,
  stateSpec,
  type WantedState,
} from './objects.js';
import type {
  DesiredIpsec,
  DesiredIpsecPeer,
  IpsecApplyResult,
  IpsecChange,
  IpsecPort,
  ObservedIpsec,
  ObservedSa,
  PairEvidence,
  XfrmOps,
} from '../tunnels/ports/ipsec.js';
import type { XfrmPolicy, XfrmPolicySpec, XfrmState } from '../tunnels/ports/xfrm-types.js';
import { AEAD_RFC4106, AEAD_SALT_BYTES } from '../tunnels/ports/xfrm-types.js';
import { XFRM_OUTPUT_MARK } from '../common/constants.js';
import { hasErrno } from './xfrm-errors.js';

/** The cipher key size of an AEAD key of `bytes` bytes (rfc4106 appends a 4-byte salt). */
function aeadKeyBits(name: string, bytes: number): number {
  return (name === AEAD_RFC4106 ? bytes - AEAD_SALT_BYTES : bytes) * 8;
}

/** Options of {@link IpsecDriver}. */
export interface IpsecDriverOptions {
  readonly xfrm: XfrmOps;
  /**
   * This node's IPsec private key of an epoch, or undefined when it no longer has it. The
   * driver only reads it (the key store owns and zeroes it).
   */
  readonly privateKey: (epoch: number) => PrivateKey | undefined;
}

/** Everything owned that the kernel holds, read once per apply. */
interface KernelView {
  readonly states: Map<string, XfrmState>;
  readonly foreignStates: Set<string>;
  readonly policies: Map<string, XfrmPolicy>;
}

/** Per-apply bookkeeping shared by the steps. */
interface Run {
  readonly desired: DesiredIpsec;
  readonly sodium: Sodium;
  readonly view: KernelView;
  readonly changes: IpsecChange[];
  readonly warnings: string[];
}

/** IPsec driver over XFRM. Implements {@link IpsecPort}. */
export class IpsecDriver implements IpsecPort {
  readonly #xfrm: XfrmOps;
  readonly #privateKey: (epoch: number) => PrivateKey | undefined;

  constructor(opts: IpsecDriverOptions) {
    this.#xfrm = opts.xfrm;
    this.#privateKey = opts.privateKey;
  }

  async checkKernel(families: readonly (4 | 6)[]): Promise<void> {
    // Dumping policies proves the XFRM netlink interface and permissions; then ESP per family.
    await this.#xfrm.dumpPolicies();
    for (const family of [...new Set(families)].sort()) await this.#xfrm.checkEsp(family);
  }

  async apply(desired: DesiredIpsec, opts: { readonly prune: boolean }): Promise<IpsecApplyResult> {
    checkPolicyMark(desired.policyMark);
    const run: Run = { desired, sodium: await sodiumReady(), view: await this.#read(), changes: [], warnings: [] };
    try {
      const ready: string[] = [];
      const failed: { node: string; error: Error }[] = [];
      let fatal: Error | undefined;
      for (const peer of desired.peers) {
        if (fatal !== undefined) {
          failed.push({ node: peer.node, error: fatal });
          continue;
        }
        try {
          await this.#applyPeer(run, peer);
          ready.push(peer.node);
        } catch (err) {
          const error = err instanceof Error ? err : new Error(String(err));
          failed.push({ node: peer.node, error });
          if (error instanceof SealnetError && error.code === 'KERNEL_FEATURE_MISSING') fatal = error;
        }
      }
      const unpruned = await this.#prune(
        run,
        desired,
        failed.map((f) => f.node),
        opts.prune,
      );
      return {
        ready: ready.sort(),
        failed: failed.sort((a, b) => (a.node < b.node ? -1 : 1)),
        changes: run.changes,
        unpruned,
        warnings: run.warnings,
      };
    } finally {
      // Dumped states carry their keys.
      for (const s of run.view.states.values()) s.aead?.key.fill(0);
    }
  }

  pairEvidence(desired: DesiredIpsec, peer: DesiredIpsecPeer, observed: ObservedIpsec): PairEvidence {
    return pairEvidence(desired, peer, observed);
  }

  async observe(): Promise<ObservedIpsec> {
    const states: ObservedSa[] = [];
    for (const s of await this.#xfrm.dumpStates()) {
      const aead =
        s.aead === undefined
          ? undefined
          : { name: s.aead.name, icvBits: s.aead.icvBits, cipherBits: aeadKeyBits(s.aead.name, s.aead.key.length) };
      s.aead?.key.fill(0);
      if (!isOwnedState(s)) continue;
      states.push({
        direction: s.outputMark?.value === XFRM_OUTPUT_MARK ? 'out' : 'in',
        spi: s.spi,
        src: s.src,
        dst: s.dst,
        esn: s.esn,
        replayWindow: s.replayWindow,
        current: s.current,
        replayDrops: s.stats.replay,
        integrityFailures: s.stats.integrityFailed,
        sequence: s.sequence,
        aead,
      });
    }
    const policies = (await this.#xfrm.dumpPolicies()).filter(isOwnedPolicy);
    return { states: states.sort((a, b) => a.spi - b.spi), policies };
  }

  async #read(): Promise<KernelView> {
    const states = new Map<string, XfrmState>();
    const foreignStates = new Set<string>();
    for (const s of await this.#xfrm.dumpStates()) {
      const key = stateKey(s.dst, s.spi);
      if (isOwnedState(s)) states.set(key, s);
      else {
        s.aead?.key.fill(0);
        if (s.proto === 50) foreignStates.add(key);
      }
    }
    const policies = new Map<string, XfrmPolicy>();
    for (const p of await this.#xfrm.dumpPolicies()) {
      if (p.type === 0 && p.ifId === 0) policies.set(policyKey(p), p);
    }
    return { states, foreignStates, policies };
  }

  /** Installs one peer; on failure rolls back what it created if the peer had nothing before. */
  async #applyPeer(run: Run, peer: DesiredIpsecPeer): Promise<void> {
    const wanted = peerStates(peer);
    const { accept, out } = peerPolicies(peer, run.desired);
    const hadAny =
      wanted.some((w) => run.view.states.has(stateKey(w.dst, w.sa.spi))) ||
      [...accept, ...out].some((p) => run.view.policies.has(policyKey(p)));
    const created: ({ kind: 'state'; w: WantedState } | { kind: 'policy'; p: XfrmPolicySpec })[] = [];
    try {
      for (const w of wanted) {
        if (await this.#ensureState(run, w, out)) created.push({ kind: 'state', w });
      }
      for (const p of [...accept, ...out]) {
        if (await this.#ensurePolicy(run, p, peer.node)) created.push({ kind: 'policy', p });
      }
    } catch (err) {
      if (!hadAny) await this.#rollback(run, peer.node, created);
      throw err;
    }
  }

  async #rollback(
    run: Run,
    node: string,
    created: readonly ({ kind: 'state'; w: WantedState } | { kind: 'policy'; p: XfrmPolicySpec })[],
  ): Promise<void> {
    for (const c of [...created].reverse()) {
      try {
        if (c.kind === 'policy') {
          await this.#xfrm.deletePolicy(c.p);
          run.changes.push({ op: 'delete-policy', target: policyLabel(c.p), node });
        } else {
          await this.#xfrm.deleteState({ dst: c.w.dst, spi: c.w.sa.spi });
          run.changes.push({ op: 'delete-state', target: stateLabel({ ...c.w, spi: c.w.sa.spi }), node });
        }
      } catch (err) {
        run.warnings.push(`rolling back peer ${node}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  /** Derives the key of a wanted state. */
  #key(run: Run, w: WantedState): Uint8Array {
    const localEpoch = w.direction === 'out' ? w.sa.srcEpoch : w.sa.dstEpoch;
    const privateKey = this.#privateKey(localEpoch);
    if (privateKey === undefined) {
      throw new SealnetError(
        'KEY_INVALID',
        `no local IPsec private key for epoch ${localEpoch} (needed by ${stateLabel({ ...w, spi: w.sa.spi })} of peer ${w.node})`,
      );
    }
    const self = run.desired.self;
    return deriveSaKey(run.sodium, {
      privateKey,
      peerPublicKey: w.sa.peerPublicKey,
      role: w.direction === 'out' ? 'sender' : 'receiver',
      sa: {
        srcNode: w.direction === 'out' ? self : w.node,
        dstNode: w.direction === 'out' ? w.node : self,
        spi: w.sa.spi,
        srcEpoch: w.sa.srcEpoch,
        dstEpoch: w.sa.dstEpoch,
        srcGeneration: w.sa.srcGeneration,
        dstGeneration: w.sa.dstGeneration,
        keyBits: run.desired.keyBits,
      },
    });
  }

  /** Makes one state right. Returns true when it created it (it was absent). */
  async #ensureState(run: Run, w: WantedState, outPolicies: readonly XfrmPolicySpec[]): Promise<boolean> {
    const key = stateKey(w.dst, w.sa.spi);
    const label = stateLabel({ ...w, spi: w.sa.spi });
    if (run.view.foreignStates.has(key)) {
      throw new SealnetError(
        'NETLINK_FAILED',
        `state ${label} of peer ${w.node} collides with an ESP state sealnet does not own (same destination and SPI); not touching it`,
      );
    }
    const material = this.#key(run, w);
    try {
      const spec = stateSpec(w, material, run.desired);
      const obs = run.view.states.get(key);
      if (obs === undefined) {
        await this.#xfrm.addState(spec);
        run.changes.push({ op: 'add-state', target: label, node: w.node });
        return true;
      }
      const cmp = compareState(obs, spec, (a, b) => run.sodium.memcmp(a, b));
      obs.aead?.key.fill(0);
      if (cmp === 'equal-key-unverifiable') {
        run.warnings.push(
          `the kernel withholds SA keys (lockdown): a changed key under the unchanged ${label} cannot be detected`,
        );
      }
      if (cmp !== 'differs') return false;
      if (w.direction === 'out')
        await this.#replaceGuarded(run, w.node, outPolicies, () => this.#replaceState(run, w, spec, label));
      else await this.#replaceState(run, w, spec, label);
      return false;
    } finally {
      material.fill(0);
    }
  }

  async #replaceState(
    run: Run,
    w: WantedState,
    spec: Parameters<XfrmOps['addState']>[0],
    label: string,
  ): Promise<void> {
    await this.#xfrm.deleteState({ dst: w.dst, spi: w.sa.spi });
    await this.#xfrm.addState(spec);
    run.changes.push({ op: 'replace-state', target: label, node: w.node });
  }

  /** Runs `step` with block guards in front of the given outbound policies; always removes them. */
  async #replaceGuarded(
    run: Run,
    node: string,
    outPolicies: readonly XfrmPolicySpec[],
    step: () => Promise<void>,
  ): Promise<void> {
    const guards = outPolicies.flatMap(guardPolicies);
    const placed: XfrmPolicySpec[] = [];
    try {
      for (const g of guards) {
        try {
          await this.#xfrm.addPolicy(g);
        } catch (err) {
          // A guard left by a crashed run (it would expire by itself): take it over.
          if (!hasErrno(err, 'EEXIST')) throw err;
          await this.#xfrm.updatePolicy(g);
        }
        placed.push(g);
        run.changes.push({ op: 'add-guard', target: policyLabel(g), node });
      }
      await step();
    } finally {
      for (const g of placed) {
        try {
          await this.#xfrm.deletePolicy(g);
          run.changes.push({ op: 'delete-guard', target: policyLabel(g), node });
        } catch (err) {
          run.warnings.push(
            `removing guard ${policyLabel(g)}: ${err instanceof Error ? err.message : String(err)} (it expires by itself)`,
          );
        }
      }
    }
  }

  /** Makes one policy right. Returns true when it created it. */
  async #ensurePolicy(run: Run, spec: XfrmPolicySpec, node: string): Promise<boolean> {
    const label = policyLabel(spec);
    const obs = run.view.policies.get(policyKey(spec));
    if (obs !== undefined && !isOwnedPolicy(obs)) {
      throw new SealnetError(
        'NETLINK_FAILED',
        `policy ${label} of peer ${node} collides with a policy sealnet does not own (same selector, direction and mark); not touching it`,
      );
    }
    if (obs === undefined) {
      await this.#xfrm.addPolicy(spec);
      run.changes.push({ op: 'add-policy', target: label, node });
      return true;
    }
    if (!isGuard(obs) && policyMatches(obs, spec)) return false;
    await this.#xfrm.updatePolicy(spec);
    run.changes.push({ op: 'update-policy', target: label, node });
    return false;
  }

  /** Deletes owned objects nobody wants (only with `prune`); returns how many were kept. */
  async #prune(run: Run, desired: DesiredIpsec, failedNodes: readonly string[], prune: boolean): Promise<number> {
    const wantStates = new Set<string>();
    const wantPolicies = new Set<string>();
    const keepAddresses = new Set<string>();
    for (const peer of desired.peers) {
      for (const w of peerStates(peer)) wantStates.add(stateKey(w.dst, w.sa.spi));
      const { accept, out } = peerPolicies(peer, desired);
      for (const p of [...accept, ...out]) wantPolicies.add(policyKey(p));
      // A failed peer keeps whatever it had: its old SAs may be what still carries its traffic.
      if (failedNodes.includes(peer.node)) keepAddresses.add(canonicalIP(peer.remoteAddress));
    }
    const touchesKept = (addrs: readonly string[]): boolean => addrs.some((a) => keepAddresses.has(canonicalIP(a)));
    const policies = [...run.view.policies.values()].filter((p) => isOwnedPolicy(p) && !wantPolicies.has(policyKey(p)));
    const states = [...run.view.states.values()].filter((s) => !wantStates.has(stateKey(s.dst, s.spi)));
    // Guards only exist during a replacement: one seen now is a crashed run's leftover.
    const doomedPolicies = policies.filter(
      (p) => isGuard(p) || !touchesKept(p.templates.flatMap((t) => [t.src, t.dst])),
    );
    const doomedStates = states.filter((s) => !touchesKept([s.src, s.dst]));
    let kept = policies.length - doomedPolicies.length + (states.length - doomedStates.length);
    if (!prune) return kept + doomedPolicies.length + doomedStates.length;
    // Outbound policies go first (they point at states), then in/fwd, then states.
    const order = { out: 0, fwd: 1, in: 2 } as const;
    for (const p of doomedPolicies.sort((a, b) => order[a.dir] - order[b.dir])) {
      try {
        await this.#xfrm.deletePolicy(p);
        run.changes.push({
          op: isGuard(p) ? 'delete-guard' : 'delete-policy',
          target: policyLabel(p),
          node: undefined,
        });
      } catch (err) {
        kept++;
        run.warnings.push(`pruning policy ${policyLabel(p)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    for (const s of doomedStates) {
      try {
        await this.#xfrm.deleteState({ dst: s.dst, spi: s.spi, mark: s.mark });
        run.changes.push({ op: 'delete-state', target: stateLabel(s), node: undefined });
      } catch (err) {
        kept++;
        run.warnings.push(`pruning state ${stateLabel(s)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return kept;
  }
}
