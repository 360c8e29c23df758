/**
 * The WireGuard driver: kernel WireGuard when the kernel has it, `wireguard-go` otherwise.
 *
 * Contract (tunnels/ports/index.ts `WireGuardPort`): read before write, change only what differs,
 * adopt what exists. A restarted agent finds its link (kernel or a still-running wireguard-go
 * daemon) and leaves it and its sessions alone; the private key is re-set only when the public
 * key the device reports differs from the expected one, because a key change expires every
 * session on the interface.
 */
import { access, readFile } from 'node:fs/promises';
import { release } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { scrubAndUnlink, writeAtomic } from '../keymgr/atomicfile.js';
import { SealnetError } from '../common/errors.js';
import type {
  ObservedInterface,
  ObservedPeer,
  PeerChange,
  WireGuardImpl,
  WireGuardPort,
} from '../tunnels/ports/index.js';
import type { PublicKey } from '../keymgr/keys.js';
import { run, SpawnError } from '../common/spawn.js';
import { parseDump } from './dump.js';
import {
  findTunOwners,
  removeStaleSocket,
  startWireGuardGo,
  stopProcesses,
  uapiSocketExists,
  uapiSocketPath,
} from './userspace.js';
import {
  interfaceSetArgs,
  peerSetBatches,
  presharedKeyArgs,
  runWg,
  wgShowDump,
  type InterfaceSettings,
} from './wgtool.js';
import { encodePeerChanges, encodePresharedKey, uapiSet } from './uapi.js';

/** Structured log sink; fields never carry key material (public keys excepted). */
export type DriverLog = (msg: string, fields: Record<string, unknown>) => void;

/** Options of {@link WireGuardDriver}. */
export interface WireGuardDriverOptions {
  /** `wg` binary. Default `wg` (on PATH). */
  readonly wgPath?: string;
  /** `wireguard-go` binary for the userspace fallback. Default `wireguard-go` (on PATH). */
  readonly wireguardGoPath?: string;
  /** `ip` (iproute2) binary. Default `ip`. */
  readonly ipPath?: string;
  /**
   * Which implementation to create a missing link with: `kernel` only, `userspace` only, or
   * `auto` (kernel, falling back to userspace when the kernel lacks WireGuard). An existing
   * link is adopted whatever its implementation.
   */
  readonly impl?: 'auto' | 'kernel' | 'userspace';
  /** How long wireguard-go may take to serve its socket. Default 10 s. */
  readonly startTimeoutMs?: number;
  readonly log?: DriverLog;
  /**
   * Directory (0700, the key store's) for the short-lived 0600 file a preshared key reaches `wg`
   * through; required for {@link WireGuardDriver.setPresharedKey}.
   */
  readonly secretDir?: string;
  /**
   * How peer changes and preshared keys reach a userspace (wireguard-go) link: `uapi` (default)
   * writes them to its UAPI socket, `wg` spawns `wg set` as for a kernel link (comparisons,
   * and a way back should a wireguard-go build misbehave). Kernel links always use `wg`.
   */
  readonly userspaceSet?: 'uapi' | 'wg';
}

/** Link facts from `ip -d -j link show`. */
interface LinkInfo {
  readonly ifindex: number;
  /** rtnetlink kind: `wireguard`, `tun`, … (undefined for kindless devices such as `lo`). */
  readonly kind: string | undefined;
  readonly up: boolean;
}

/** Linux IFNAMSIZ-1, and no characters that would escape the socket directory. */
const LINK_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

function checkName(name: string): void {
  if (!LINK_NAME.test(name)) {
    throw new SealnetError(
      'CONFIG_INVALID',
      `WireGuard interface name ${JSON.stringify(name)} is not 1-15 of [A-Za-z0-9_.-]`,
    );
  }
}

/** Driver for one node's WireGuard links; stateless between calls (the kernel is the state). */
export class WireGuardDriver implements WireGuardPort {
  private readonly wg: string;
  private readonly wireguardGo: string;
  private readonly ip: string;
  private readonly impl: 'auto' | 'kernel' | 'userspace';
  private readonly startTimeoutMs: number;
  private readonly log: DriverLog;
  private readonly secretDir: string | undefined;
  private readonly userspaceSet: 'uapi' | 'wg';

  constructor(opts: WireGuardDriverOptions = {}) {
    this.secretDir = opts.secretDir;
    this.userspaceSet = opts.userspaceSet ?? 'uapi';
    this.wg = opts.wgPath ?? 'wg';
    this.wireguardGo = opts.wireguardGoPath ?? 'wireguard-go';
    this.ip = opts.ipPath ?? 'ip';
    this.impl = opts.impl ?? 'auto';
    this.startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    this.log = opts.log ?? ((): void => undefined);
  }

  /** {@inheritDoc WireGuardPort.ensureLink} */
  async ensureLink(opts: {
    readonly name: string;
    readonly privateKeyFile: string;
    readonly publicKey: PublicKey;
    readonly listenPort: number;
    readonly fwmark: number;
  }): Promise<{ impl: WireGuardImpl; created: boolean; ifindex: number }> {
    const { name } = opts;
    checkName(name);
    let link = await this.linkInfo(name);
    let created = false;
    let impl: WireGuardImpl;
    if (link !== undefined) {
      impl = implOf(name, link);
      if (impl === 'userspace' && !(await uapiSocketExists(name))) {
        throw new SealnetError(
          'WG_FAILED',
          `${name} is a TUN device but ${uapiSocketPath(name)} does not exist: its wireguard-go runs in another ` +
            'mount namespace (is /var/run/wireguard shared with the host?) or the device is not WireGuard',
        );
      }
      if (this.impl !== 'auto' && impl !== this.impl) {
        this.log('adopting existing WireGuard link of the other implementation', {
          name,
          found: impl,
          configured: this.impl,
        });
      }
    } else {
      impl = await this.createLink(name);
      created = true;
      link = await this.linkInfo(name);
      if (link === undefined) throw new SealnetError('WG_FAILED', `${name} vanished right after it was created`);
    }

    const observed = await this.show(name);
    if (observed === undefined) throw new SealnetError('WG_FAILED', `${name} exists but wg cannot read it`);
    const want = interfaceDiff(observed.iface, opts);
    const args = interfaceSetArgs(name, want);
    if (args !== undefined) {
      this.log('setting WireGuard interface', {
        name,
        listenPort: want.listenPort,
        fwmark: want.fwmark,
        privateKey: want.privateKeyFile !== undefined ? 'changed' : 'unchanged',
      });
      await this.wgSet(args, `configure ${name}`);
      if (want.privateKeyFile !== undefined) {
        const after = await this.show(name);
        if (after?.iface.publicKey !== opts.publicKey) {
          throw new SealnetError(
            'KEY_INVALID',
            `${name}: after loading ${opts.privateKeyFile} the interface's public key is ${after?.iface.publicKey ?? '(none)'}, expected ${opts.publicKey}`,
          );
        }
      }
    }
    if (!link.up) await this.ipRun(['link', 'set', 'dev', name, 'up'], `bring ${name} up`);
    return { impl, created, ifindex: link.ifindex };
  }

  /** {@inheritDoc WireGuardPort.show} */
  async show(name: string): Promise<{ iface: ObservedInterface; peers: ObservedPeer[] } | undefined> {
    checkName(name);
    // `wg show dump | sed` on userspace links too: UAPI `get=1` would hand the private key and
    // every preshared key to this process as a string it cannot zero; the pipe keeps them out.
    let stdout: string;
    try {
      stdout = await wgShowDump(this.wg, name);
    } catch (err) {
      if (err instanceof SpawnError && (await this.linkInfo(name)) === undefined) return undefined;
      throw new SealnetError('WG_FAILED', `cannot read WireGuard device ${name}`, { cause: err });
    }
    return parseDump(stdout);
  }

  /** {@inheritDoc WireGuardPort.applyPeers} */
  async applyPeers(name: string, changes: readonly PeerChange[]): Promise<void> {
    checkName(name);
    if (changes.length === 0) return;
    // Every change is validated before the first call on either path (the UAPI encoder, or
    // `peerSetBatches` for `wg`), so a bad change applies nothing; each path validates once.
    const viaWg = (): Promise<number> => this.applyPeerBatches(name, peerSetBatches(name, changes), changes.length);
    let calls: number;
    if (await this.viaUapi(name)) {
      // A userspace link: the same changes as one UAPI `set` (uapi.ts), no `wg` process. The
      // encoder also refuses what only `wg` could do (resolve a host name).
      const sent = await uapiSet(name, encodePeerChanges(changes), { what: `${changes.length} peer changes` });
      calls = sent === 'applied' ? 1 : await viaWg();
    } else {
      calls = await viaWg();
    }
    this.log('applied WireGuard peer changes', {
      name,
      set: changes.filter((c) => c.op === 'set').length,
      removed: changes.filter((c) => c.op === 'remove').length,
      calls,
    });
  }

  /** {@inheritDoc WireGuardPort.setPresharedKey} */
  async setPresharedKey(name: string, peer: PublicKey, psk: Uint8Array): Promise<void> {
    checkName(name);
    if (psk.length !== 32) throw new SealnetError('KEY_INVALID', `preshared key has ${psk.length} bytes, expected 32`);
    if (this.secretDir === undefined) {
      throw new SealnetError('INTERNAL', 'WireGuard driver has no secretDir for preshared keys');
    }
    // `wg set peer <key>` creates a missing peer, and so does UAPI `public_key=` (wg sends no
    // `update_only`): the caller installs only on peers the last pass read back. A race with a
    // removal leaves a peer with no allowed IPs and no endpoint, which routes nothing and the
    // next pass prunes (no `wg show` here: one call per install).
    if (await this.viaUapi(name)) {
      // Userspace link: the key goes to wireguard-go over its socket as hex in a Buffer of our
      // own, zeroed once wireguard-go has answered.
      const message = encodePresharedKey(peer, psk);
      try {
        if ((await uapiSet(name, message, { what: 'a preshared key' })) === 'applied') return;
      } finally {
        message.fill(0);
      }
    }
    // Kernel link: the key goes through a file, as the private key does: `wg` opens the path it
    // is given, and Node's child stdin is a socket, which /dev/stdin cannot open (ENXIO). The
    // file is created 0600 with O_EXCL in the key store's 0700 directory and overwritten with
    // zeros before it is unlinked.
    const text = new Uint8Array(Buffer.from(`${Buffer.from(psk).toString('base64')}\n`));
    const file = `.psk-${randomBytes(8).toString('hex')}`;
    const path = join(this.secretDir, file);
    try {
      await writeAtomic(this.secretDir, file, text, { how: 'create' });
      await runWg(this.wg, presharedKeyArgs(name, peer, path));
    } catch (err) {
      throw new SealnetError('WG_FAILED', `cannot set the preshared key of a peer on ${name}`, { cause: err });
    } finally {
      text.fill(0);
      await scrubAndUnlink(path).catch(() => false);
    }
  }

  /** {@inheritDoc WireGuardPort.deleteLink} */
  async deleteLink(name: string): Promise<void> {
    checkName(name);
    const link = await this.linkInfo(name);
    if (link !== undefined && link.kind !== 'tun') {
      implOf(name, link);
      await this.ipRun(['link', 'del', 'dev', name], `delete ${name}`);
      this.log('deleted WireGuard link', { name, impl: 'kernel' });
      return;
    }
    // Userspace (or already gone): stopping wireguard-go removes its TUN device and socket.
    const pids = await findTunOwners(name);
    if (pids.length > 0) await stopProcesses(pids, 3000);
    if ((await this.linkInfo(name)) !== undefined) {
      await this.ipRun(['link', 'del', 'dev', name], `delete ${name}`);
    }
    await removeStaleSocket(name);
    if (link !== undefined) this.log('deleted WireGuard link', { name, impl: 'userspace', stopped: pids });
  }

  /**
   * True when peer changes for `name` should go over UAPI: configured so, and the socket file
   * is there (a kernel link has none). A stale socket is caught when connecting (`no-socket`).
   */
  private async viaUapi(name: string): Promise<boolean> {
    return this.userspaceSet === 'uapi' && (await uapiSocketExists(name));
  }

  /** The `wg set` path: batches in order; returns the number of calls. */
  private async applyPeerBatches(
    name: string,
    batches: readonly { args: string[]; count: number }[],
    total: number,
  ): Promise<number> {
    let applied = 0;
    for (const batch of batches) {
      try {
        await runWg(this.wg, batch.args);
      } catch (err) {
        const what = `wg set ${name}: applied ${applied} of ${total} peer changes, then failed`;
        throw new SealnetError('WG_FAILED', what, { cause: err });
      }
      applied += batch.count;
    }
    return batches.length;
  }

  /** Creates `name` as configured; returns the implementation it ended up with. */
  private async createLink(name: string): Promise<WireGuardImpl> {
    if (this.impl !== 'userspace') {
      try {
        await run(this.ip, ['link', 'add', 'dev', name, 'type', 'wireguard']);
        this.log('created WireGuard link', { name, impl: 'kernel' });
        return 'kernel';
      } catch (err) {
        const missing =
          err instanceof SpawnError && /Unknown device type|Operation not supported|not supported/i.test(err.stderr);
        if (!missing) throw new SealnetError('NETLINK_FAILED', `cannot create WireGuard link ${name}`, { cause: err });
        if (this.impl === 'kernel') {
          throw new SealnetError('KERNEL_FEATURE_MISSING', `the kernel has no WireGuard support (creating ${name})`, {
            cause: err,
          });
        }
        this.log('kernel has no WireGuard; starting wireguard-go', { name, binary: this.wireguardGo });
      }
    }
    const { stderr } = await startWireGuardGo(this.wireguardGo, name, { timeoutMs: this.startTimeoutMs });
    this.log('created WireGuard link', { name, impl: 'userspace', ...(stderr !== '' ? { output: stderr } : {}) });
    return 'userspace';
  }

  private async linkInfo(name: string): Promise<LinkInfo | undefined> {
    let stdout: string;
    try {
      ({ stdout } = await run(this.ip, ['-d', '-j', 'link', 'show', 'dev', name]));
    } catch (err) {
      if (err instanceof SpawnError && /does not exist/.test(err.stderr)) return undefined;
      throw new SealnetError('NETLINK_FAILED', `cannot read link ${name}`, { cause: err });
    }
    return parseLinkJson(name, stdout);
  }

  private async wgSet(args: string[], what: string): Promise<void> {
    try {
      await runWg(this.wg, args);
    } catch (err) {
      throw new SealnetError('WG_FAILED', `cannot ${what}`, { cause: err });
    }
  }

  private async ipRun(args: string[], what: string): Promise<void> {
    try {
      await run(this.ip, args);
    } catch (err) {
      throw new SealnetError('NETLINK_FAILED', `cannot ${what}`, { cause: err });
    }
  }
}

/** The interface settings that differ from what the device reports. */
export function interfaceDiff(
  observed: ObservedInterface,
  want: { privateKeyFile: string; publicKey: PublicKey; listenPort: number; fwmark: number },
): InterfaceSettings {
  return {
    // Port 0 means "any": the device then reports the random port it chose; keep it.
    ...(want.listenPort !== 0 && observed.listenPort !== want.listenPort ? { listenPort: want.listenPort } : {}),
    ...(observed.fwmark !== want.fwmark ? { fwmark: want.fwmark } : {}),
    ...(observed.publicKey !== want.publicKey ? { privateKeyFile: want.privateKeyFile } : {}),
  };
}

/** Parses `ip -d -j link show dev <name>` output. */
export function parseLinkJson(name: string, stdout: string): LinkInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (err) {
    throw new SealnetError('NETLINK_FAILED', `ip -j link show ${name}: output is not JSON`, { cause: err });
  }
  const first: unknown = Array.isArray(parsed) ? parsed[0] : undefined;
  if (typeof first !== 'object' || first === null)
    throw new SealnetError('NETLINK_FAILED', `ip -j link show ${name}: no link in output`);
  const o = first as { ifindex?: unknown; flags?: unknown; linkinfo?: { info_kind?: unknown } };
  if (typeof o.ifindex !== 'number') throw new SealnetError('NETLINK_FAILED', `ip -j link show ${name}: no ifindex`);
  const kind = typeof o.linkinfo?.info_kind === 'string' ? o.linkinfo.info_kind : undefined;
  const up = Array.isArray(o.flags) && o.flags.includes('UP');
  return { ifindex: o.ifindex, kind, up };
}

function implOf(name: string, link: LinkInfo): WireGuardImpl {
  if (link.kind === 'wireguard') return 'kernel';
  if (link.kind === 'tun') return 'userspace';
  throw new SealnetError(
    'WG_FAILED',
    `${name} exists but is a ${link.kind ?? 'kindless'} device, not WireGuard: refusing to adopt it`,
  );
}

/**
 * True if this kernel has WireGuard, loaded or loadable as a module, without creating anything:
 * `/sys/module/wireguard` exists, or the running kernel's `modules.builtin` / `modules.dep` lists
 * `wireguard.ko`. (The module may still be blocked from loading; `ensureLink` falls back then.)
 */
export async function detectKernelWireGuard(): Promise<boolean> {
  try {
    await access('/sys/module/wireguard');
    return true;
  } catch {
    // not loaded; maybe loadable
  }
  for (const file of ['modules.builtin', 'modules.dep']) {
    try {
      const text = await readFile(`/lib/modules/${release()}/${file}`, 'utf8');
      if (/(^|\/)wireguard\.ko(\.[a-z]+)?(:|$)/m.test(text)) return true;
    } catch {
      // no module tree (containers often have none)
    }
  }
  return false;
}
