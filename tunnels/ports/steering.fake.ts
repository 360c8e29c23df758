/**
 * A {@link SteeringPort} fake that behaves like the kernel objects, for reconciler
 * unit tests: entries persist across a simulated agent restart, keys are compared as prefixes
 * (two spellings of one prefix are one entry), lookups are longest-prefix matches, and calls the
 * real driver would fail are refused (anything before `ensure`, malformed prefixes). It never
 * stands in for the kernel test (steer.kernel.test.ts), which proves the program.
 */
import { cidrContains, compareCidrs, formatCidr, parseCidr } from '../../common/ip.js';
import { SealnetError } from '../../common/errors.js';
import type { SteeringAttachment, SteeringCounter, SteeringEntry, SteeringPort, SteeringSettings } from './index.js';

/** What the egress program would do with a packet to `dst` (plaintext, not tunnel traffic). */
export interface FakeVerdict {
  readonly verdict: 'redirect' | 'drop' | 'pass';
  readonly reason:
    'redirected' | 'not_ready' | 'no_peer' | 'xfrm_bypass' | 'bad_entry' | 'exempt' | 'other' | 'fail_open';
  readonly ifindex?: number;
}

function canonical(cidr: string): string {
  const c = parseCidr(cidr.includes('/') ? cidr : `${cidr}/${cidr.includes(':') ? 128 : 32}`, { hostBits: 'clear' });
  if (c === undefined) throw new SealnetError('CONFIG_INVALID', `not an IP prefix: ${JSON.stringify(cidr)}`);
  return formatCidr(c);
}

function longest(prefixes: Iterable<string>, addr: string): string | undefined {
  let best: { cidr: string; len: number } | undefined;
  for (const p of prefixes) {
    const c = parseCidr(p, { hostBits: 'clear' });
    if (c === undefined || !cidrContains(c, addr)) continue;
    if (best === undefined || c.prefixLength > best.len) best = { cidr: p, len: c.prefixLength };
  }
  return best?.cidr;
}

/** In-memory steering datapath. */
export class FakeSteering implements SteeringPort {
  /** Kernel state: survives {@link FakeSteering.restart}. */
  readonly kernel = {
    entries: new Map<string, SteeringEntry>(),
    exempt: new Set<string>(),
    settings: undefined as SteeringSettings | undefined,
    attachments: new Map<string, SteeringAttachment>(),
    counters: new Map<string, bigint>(),
  };
  /** Calls made, in order (method names), for asserting start-up order. */
  readonly calls: string[] = [];
  #ensured = false;

  /** Simulates the agent dying and a new one starting: kernel state stays, the process forgets. */
  restart(): void {
    this.#ensured = false;
  }

  async ensure(opts: {
    readonly settings: SteeringSettings;
    readonly exempt: readonly string[];
    readonly clusterCidrs: readonly string[];
    readonly attachments: readonly SteeringAttachment[];
  }): Promise<{
    mapsCreated: boolean;
    programsLoaded: boolean;
    attached: { dev: string; hook: string; change: 'added' | 'replaced' | 'unchanged' }[];
  }> {
    this.calls.push('ensure');
    const mapsCreated = this.kernel.settings === undefined;
    this.kernel.settings = { ...opts.settings };
    this.kernel.exempt = new Set(opts.exempt.map(canonical));
    for (const c of opts.clusterCidrs.map(canonical)) {
      if (!this.kernel.entries.has(c))
        this.kernel.entries.set(c, {
          cidr: c,
          state: 'no-peer',
          action: 'redirect',
          kind: 'pod',
          ifindex: 0,
          mark: 0,
          peerId: 0,
        });
    }
    const attached = opts.attachments.map((a) => {
      const key = `${a.dev}/${a.hook}`;
      const change = this.kernel.attachments.has(key) ? ('unchanged' as const) : ('added' as const);
      this.kernel.attachments.set(key, { ...a });
      return { dev: a.dev, hook: a.hook, change };
    });
    this.#ensured = true;
    return { mapsCreated, programsLoaded: mapsCreated, attached };
  }

  async listEntries(): Promise<SteeringEntry[]> {
    this.#check('listEntries');
    return [...this.kernel.entries.values()].sort((a, b) => compareCidrs(a.cidr, b.cidr));
  }

  async applyEntries(
    entries: readonly SteeringEntry[],
    opts: { readonly prune: boolean; readonly fromLastWrite?: boolean },
  ): Promise<{ written: number; deleted: number }> {
    this.#check('applyEntries');
    const want = new Map(entries.map((e) => [canonical(e.cidr), { ...e, cidr: canonical(e.cidr) }]));
    let written = 0;
    let deleted = 0;
    for (const [k, e] of want) {
      if (JSON.stringify(this.kernel.entries.get(k)) === JSON.stringify(e)) continue;
      this.kernel.entries.set(k, e);
      written++;
    }
    if (opts.prune) {
      for (const k of [...this.kernel.entries.keys()]) {
        if (want.has(k)) continue;
        this.kernel.entries.delete(k);
        deleted++;
      }
    }
    return { written, deleted };
  }

  async counters(): Promise<SteeringCounter[]> {
    this.#check('counters');
    return [...this.kernel.counters].map(([k, packets]) => {
      const [hook, reason, verdict] = k.split('/') as [SteeringCounter['hook'], string, SteeringCounter['verdict']];
      return { hook, reason, verdict, packets, bytes: 0n };
    });
  }

  async detach(attachments: readonly SteeringAttachment[]): Promise<void> {
    this.calls.push('detach');
    for (const a of attachments) this.kernel.attachments.delete(`${a.dev}/${a.hook}`);
  }

  /**
   * What the egress program does with a plaintext packet to `dst` leaving `dev`, counted like
   * the program counts it. A device without sealnet's classifier passes everything unseen.
   */
  egress(dev: string, dst: string): FakeVerdict {
    if (!this.kernel.attachments.has(`${dev}/egress`)) return { verdict: 'pass', reason: 'other' };
    const failOpen = this.kernel.settings?.failClosed === false;
    const v = ((): FakeVerdict => {
      const hit = longest(this.kernel.entries.keys(), dst);
      const e = hit === undefined ? undefined : this.kernel.entries.get(hit);
      // As steer.c: a remote pod prefix is judged by its entry, an exemption never opens it.
      if (e?.kind !== 'pod' && longest(this.kernel.exempt, dst) !== undefined)
        return { verdict: 'pass', reason: 'exempt' };
      if (e === undefined) return { verdict: 'pass', reason: 'other' };
      if (e.state === 'no-peer') return { verdict: 'drop', reason: 'no_peer' };
      if (e.state !== 'ready') return { verdict: 'drop', reason: 'not_ready' };
      if (e.action === 'mark') return { verdict: 'drop', reason: 'xfrm_bypass' };
      if (e.ifindex === 0) return { verdict: 'drop', reason: 'bad_entry' };
      return { verdict: 'redirect', reason: 'redirected', ifindex: e.ifindex };
    })();
    const out = v.verdict === 'drop' && failOpen ? { verdict: 'pass' as const, reason: 'fail_open' as const } : v;
    const key = `egress/${out.reason}/${out.verdict}`;
    this.kernel.counters.set(key, (this.kernel.counters.get(key) ?? 0n) + 1n);
    return out;
  }

  #check(method: string): void {
    this.calls.push(method);
    if (!this.#ensured)
      throw new SealnetError('INTERNAL', `SteeringPort.${method} called before ensure(): the maps may not exist yet`);
  }
}
