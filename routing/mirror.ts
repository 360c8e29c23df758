/**
 * The rotation mirror: while a node's peers move from its old key to the new one, a
 * u32 match-all filter with `mirred egress mirror` on the new link's egress copies every packet
 * into the old link. A WireGuard receiver accepts a packet only from the peer that
 * owns its source address, so whichever of the two keys a peer currently accepts, exactly one
 * copy gets through: no loss while peers move their allowed IPs one by one.
 *
 * Spawns `tc` like a syscall (argument array, `LC_ALL=C`, timeout). Only sealnet's own links are
 * ever touched, and only the filter at {@link MIRROR_TC_PRIORITY} on their egress.
 */
import { MIRROR_TC_PRIORITY } from '../common/constants.js';
import { SealnetError } from '../common/errors.js';
import type { MirrorPort } from '../tunnels/ports/index.js';
import { run, SpawnError } from '../common/spawn.js';

const TC_TIMEOUT_MS = 10_000;
/** u32 handle of the one filter: hash table 800 (the default), node 1. */
const HANDLE = '800::1';
const LINK = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

function check(name: string): void {
  if (!LINK.test(name))
    throw new SealnetError('CONFIG_INVALID', `link name ${JSON.stringify(name)} is not 1-15 of [A-Za-z0-9_.-]`);
}

/** Where the egress of a link is mirrored to, from `tc -j filter show dev X egress`. Pure. */
export function parseMirrorTarget(json: string): string | undefined {
  let rows: unknown;
  try {
    rows = JSON.parse(json === '' ? '[]' : json);
  } catch (err) {
    throw new SealnetError('NETLINK_FAILED', 'tc -j filter show: output is not JSON', { cause: err });
  }
  if (!Array.isArray(rows)) return undefined;
  for (const row of rows) {
    const r = row as { pref?: unknown; kind?: unknown; options?: { actions?: unknown } };
    if (r.pref !== MIRROR_TC_PRIORITY || r.kind !== 'u32' || !Array.isArray(r.options?.actions)) continue;
    for (const a of r.options.actions as {
      kind?: unknown;
      mirred_action?: unknown;
      direction?: unknown;
      to_dev?: unknown;
    }[]) {
      if (
        a.kind === 'mirred' &&
        a.mirred_action === 'mirror' &&
        a.direction === 'egress' &&
        typeof a.to_dev === 'string'
      )
        return a.to_dev;
    }
  }
  return undefined;
}

/** Qdisc kinds in `tc -j qdisc show dev X` output. Pure. */
export function parseQdiscKinds(json: string): string[] {
  let rows: unknown;
  try {
    rows = JSON.parse(json === '' ? '[]' : json);
  } catch (err) {
    throw new SealnetError('NETLINK_FAILED', 'tc -j qdisc show: output is not JSON', { cause: err });
  }
  return Array.isArray(rows)
    ? rows.flatMap((r) => (typeof (r as { kind?: unknown }).kind === 'string' ? [(r as { kind: string }).kind] : []))
    : [];
}

/** IPv4 addresses in `ip -j -4 addr show dev X` output. Pure. */
export function parseAddresses(json: string): string[] {
  let rows: unknown;
  try {
    rows = JSON.parse(json === '' ? '[]' : json);
  } catch (err) {
    throw new SealnetError('NETLINK_FAILED', 'ip -j addr show: output is not JSON', { cause: err });
  }
  const out: string[] = [];
  if (!Array.isArray(rows)) return out;
  for (const r of rows as { addr_info?: { family?: unknown; local?: unknown }[] }[]) {
    for (const a of r.addr_info ?? []) if (a.family === 'inet' && typeof a.local === 'string') out.push(a.local);
  }
  return out;
}

/** {@link MirrorPort} on the kernel, through `tc` and `ip`. */
export class TcMirror implements MirrorPort {
  private readonly tc: string;
  private readonly ip: string;

  constructor(opts: { tcPath?: string; ipPath?: string } = {}) {
    this.tc = opts.tcPath ?? 'tc';
    this.ip = opts.ipPath ?? 'ip';
  }

  async getMirror(from: string): Promise<string | undefined> {
    check(from);
    try {
      const { stdout } = await run(this.tc, ['-j', 'filter', 'show', 'dev', from, 'egress'], {
        timeoutMs: TC_TIMEOUT_MS,
      });
      return parseMirrorTarget(stdout.trim());
    } catch (err) {
      // No clsact qdisc yet (or no such link): nothing is mirrored.
      if (err instanceof SpawnError && /Cannot find|does not exist|No such device|Invalid handle/i.test(err.stderr))
        return undefined;
      throw new SealnetError('NETLINK_FAILED', `cannot read the tc filters of ${from}`, { cause: err });
    }
  }

  async prepare(link: string): Promise<boolean> {
    check(link);
    let kinds: string[];
    try {
      const { stdout } = await run(this.tc, ['-j', 'qdisc', 'show', 'dev', link], { timeoutMs: TC_TIMEOUT_MS });
      kinds = parseQdiscKinds(stdout.trim());
    } catch (err) {
      throw new SealnetError('NETLINK_FAILED', `cannot read the qdiscs of ${link}`, { cause: err });
    }
    if (kinds.includes('clsact')) return false;
    try {
      await run(this.tc, ['qdisc', 'add', 'dev', link, 'clsact'], { timeoutMs: TC_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof SpawnError && /File exists|Exclusivity flag on/i.test(err.stderr)) return false;
      throw new SealnetError('NETLINK_FAILED', `cannot add a clsact qdisc to ${link}`, { cause: err });
    }
    return true;
  }

  async setMirror(from: string, to: string): Promise<boolean> {
    check(from);
    check(to);
    if ((await this.getMirror(from)) === to) return false;
    // Normally done by prepare() when the link was new; here only if that never happened.
    await this.prepare(from);
    try {
      // `replace` on a fixed handle: one filter, swapped in place if it pointed elsewhere.
      await run(
        this.tc,
        [
          'filter',
          'replace',
          'dev',
          from,
          'egress',
          'pref',
          String(MIRROR_TC_PRIORITY),
          'handle',
          HANDLE,
          'u32',
          'match',
          'u32',
          '0',
          '0',
          'action',
          'mirred',
          'egress',
          'mirror',
          'dev',
          to,
        ],
        { timeoutMs: TC_TIMEOUT_MS },
      );
    } catch (err) {
      throw new SealnetError(
        'KERNEL_FEATURE_MISSING',
        `cannot mirror ${from} into ${to} (needs cls_u32 and act_mirred)`,
        { cause: err },
      );
    }
    return true;
  }

  async ensureAddress(link: string, address: string): Promise<boolean> {
    check(link);
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address))
      throw new SealnetError('CONFIG_INVALID', `${JSON.stringify(address)} is not an IPv4 address`);
    let present: boolean;
    try {
      const { stdout } = await run(this.ip, ['-j', '-4', 'addr', 'show', 'dev', link], { timeoutMs: TC_TIMEOUT_MS });
      present = parseAddresses(stdout).includes(address);
    } catch (err) {
      throw new SealnetError('NETLINK_FAILED', `cannot read the addresses of ${link}`, { cause: err });
    }
    if (present) return false;
    try {
      await run(this.ip, ['addr', 'replace', `${address}/32`, 'dev', link, 'scope', 'host'], {
        timeoutMs: TC_TIMEOUT_MS,
      });
    } catch (err) {
      throw new SealnetError('NETLINK_FAILED', `cannot add ${address}/32 to ${link}`, { cause: err });
    }
    return true;
  }

  async clearMirror(from: string): Promise<boolean> {
    check(from);
    if ((await this.getMirror(from)) === undefined) return false;
    try {
      await run(this.tc, ['filter', 'del', 'dev', from, 'egress', 'pref', String(MIRROR_TC_PRIORITY)], {
        timeoutMs: TC_TIMEOUT_MS,
      });
    } catch (err) {
      if (err instanceof SpawnError && /Cannot find|does not exist|No such device/i.test(err.stderr)) return false;
      throw new SealnetError('NETLINK_FAILED', `cannot remove the mirror from ${from}`, { cause: err });
    }
    return true;
  }
}
