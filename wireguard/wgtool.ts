/**
 * `wg` (wireguard-tools) spawned like a syscall, and the pure argv builders for `wg set`.
 *
 * Secrets: the private key reaches `wg` only as a file path. `wg` quotes a malformed key file's
 * content on stderr ("Key is not the correct length or format: `…'"), so stderr is redacted
 * before it goes into any error. `wg show dump` prints the private key (and preshared keys):
 * {@link wgShowDump} pipes it through `sed` child to child, so those never reach this process.
 */
import type { PublicKey } from '../keymgr/keys.js';
import { canonicalCidr } from '../common/ip.js';
import { SealnetError } from '../common/errors.js';
import type { PeerChange } from '../tunnels/ports/index.js';
import { run, runPiped } from '../common/spawn.js';
import { DUMP_SECRET_FILTER } from './dump.js';

/** Default timeout of one `wg` call: a `wg set` with thousands of peers takes well under 1 s. */
export const WG_TIMEOUT_MS = 15_000;
/** Upper bound on the summed argv bytes of one `wg set` (Linux allows 2 MB; stay far below). */
export const MAX_WG_SET_ARGV_BYTES = 100 * 1024;

const KEY_SHAPE_ANYWHERE = /[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=/g;
/** A base64 WireGuard key: 32 bytes exactly (the last character leaves no bits over). */
export const KEY_SHAPE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/**
 * `wg` stderr safe to put into an error: anything `wg` quotes between a backtick and a quote
 * (key-file content among it) and every key-shaped token are replaced by `(redacted)`.
 */
export function redactWgStderr(text: string): string {
  return text.replace(/`[^'\n]*'/g, "`(redacted)'").replace(KEY_SHAPE_ANYWHERE, '(redacted)');
}

/** Runs `wg args…` (no shell, `LC_ALL=C`, timeout), stderr redacted in errors. */
export async function runWg(
  wgPath: string,
  args: readonly string[],
  opts: { timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return run(wgPath, args, { timeoutMs: opts.timeoutMs ?? WG_TIMEOUT_MS, redact: redactWgStderr });
}

/**
 * argv of `wg set <name> peer <key> preshared-key <file>`: the preshared key itself reaches `wg`
 * through the file (base64 and a newline, as `wg genpsk` prints it), never through argv.
 */
export function presharedKeyArgs(name: string, peer: PublicKey, file: string): string[] {
  if (!KEY_SHAPE.test(peer)) throw new SealnetError('CONFIG_INVALID', 'preshared key for a malformed peer key');
  if (file === '' || file.includes('\0')) throw new SealnetError('CONFIG_INVALID', 'preshared key file path is empty');
  return ['set', name, 'peer', peer, 'preshared-key', file];
}

/**
 * `wg show <name> dump` with its secrets withheld: `wg`'s stdout goes straight into
 * `sed DUMP_SECRET_FILTER` (a pipe between the two children), and only `sed`'s output — the
 * private key and preshared keys replaced by `(withheld)` — is read here. Parse it with
 * dump.ts `parseDump`.
 * @throws SpawnError when `wg` (e.g. no such device) or `sed` fails; stderr redacted.
 */
export async function wgShowDump(
  wgPath: string,
  name: string,
  opts: { timeoutMs?: number; sedPath?: string } = {},
): Promise<string> {
  const { stdout } = await runPiped(
    { cmd: wgPath, args: ['show', name, 'dump'] },
    { cmd: opts.sedPath ?? 'sed', args: [DUMP_SECRET_FILTER] },
    { timeoutMs: opts.timeoutMs ?? WG_TIMEOUT_MS, redact: redactWgStderr },
  );
  return stdout;
}

/** Interface settings for one `wg set`; only the fields present are changed. */
export interface InterfaceSettings {
  /** Path of a file holding the base64 private key (never the key itself). */
  readonly privateKeyFile?: string;
  readonly listenPort?: number;
  /** 0 turns the fwmark off. */
  readonly fwmark?: number;
}

/** argv (after the program name) of `wg set <name> …` for interface settings; undefined if nothing to set. */
export function interfaceSetArgs(name: string, s: InterfaceSettings): string[] | undefined {
  const args: string[] = [];
  if (s.listenPort !== undefined) {
    if (!Number.isInteger(s.listenPort) || s.listenPort < 0 || s.listenPort > 65535) {
      throw new SealnetError('CONFIG_INVALID', `listen port ${s.listenPort} is not 0-65535`);
    }
    args.push('listen-port', String(s.listenPort));
  }
  if (s.fwmark !== undefined) {
    if (!Number.isInteger(s.fwmark) || s.fwmark < 0 || s.fwmark > 0xffffffff) {
      throw new SealnetError('CONFIG_INVALID', `fwmark ${s.fwmark} is not a 32-bit unsigned integer`);
    }
    args.push('fwmark', s.fwmark === 0 ? 'off' : `0x${s.fwmark.toString(16)}`);
  }
  if (s.privateKeyFile !== undefined) {
    if (s.privateKeyFile === '' || s.privateKeyFile.includes('\0')) {
      throw new SealnetError('CONFIG_INVALID', 'private key file path is empty or contains NUL');
    }
    args.push('private-key', s.privateKeyFile);
  }
  return args.length === 0 ? undefined : ['set', name, ...args];
}

/** A peer change whose every value has been checked; the text forms are canonical. */
export type CheckedPeerChange =
  | { readonly op: 'remove'; readonly publicKey: PublicKey }
  | {
      readonly op: 'set';
      readonly publicKey: PublicKey;
      /** `host:port` / `[v6]:port` as given, or undefined for "leave the endpoint alone". */
      readonly endpoint: string | undefined;
      /** Canonical CIDRs (host bits cleared); empty empties the peer's list. */
      readonly allowedIPs: readonly string[];
      /** Seconds; 0 turns persistent keepalive off. */
      readonly persistentKeepalive: number;
    };

/**
 * Validates one change so no value can smuggle in another clause (argv) or line (UAPI); the one
 * validator behind both {@link peerClause} and the UAPI encoder (uapi.ts).
 * @throws SealnetError `CONFIG_INVALID` naming the peer and the bad value.
 */
export function checkPeerChange(change: PeerChange): CheckedPeerChange {
  const key: PublicKey = change.publicKey;
  if (!KEY_SHAPE.test(key)) throw new SealnetError('CONFIG_INVALID', 'peer change has a malformed public key');
  if (change.op === 'remove') return { op: 'remove', publicKey: key };

  if (change.endpoint !== '') {
    if (!/^(?:\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]|[0-9.]+|[A-Za-z0-9.-]+):[0-9]{1,5}$/.test(change.endpoint)) {
      throw new SealnetError(
        'CONFIG_INVALID',
        `peer ${key}: endpoint ${JSON.stringify(change.endpoint)} is not host:port`,
      );
    }
  }
  const allowedIPs = change.allowedIPs.map((c) => {
    // A comma inside one entry would add an allowed IP nobody asked for.
    const canon = canonicalCidr(c);
    if (canon === undefined) {
      throw new SealnetError('CONFIG_INVALID', `peer ${key}: allowed IP ${JSON.stringify(c)} is not a CIDR`);
    }
    return canon;
  });
  const ka = change.persistentKeepalive;
  if (!Number.isInteger(ka) || ka < 0 || ka > 65535) {
    throw new SealnetError('CONFIG_INVALID', `peer ${key}: persistent keepalive ${ka} is not 0-65535`);
  }
  return {
    op: 'set',
    publicKey: key,
    endpoint: change.endpoint === '' ? undefined : change.endpoint,
    allowedIPs,
    persistentKeepalive: ka,
  };
}

/** The `peer …` clause of one change, validated so no value can smuggle in another clause. */
export function peerClause(change: PeerChange): string[] {
  const c = checkPeerChange(change);
  if (c.op === 'remove') return ['peer', c.publicKey, 'remove'];
  const clause = ['peer', c.publicKey];
  if (c.endpoint !== undefined) clause.push('endpoint', c.endpoint);
  // `allowed-ips` replaces the peer's whole list atomically; "" empties it.
  clause.push('allowed-ips', c.allowedIPs.join(','));
  // Last, as Tailscale does: enabling keepalive sends a packet at once.
  clause.push('persistent-keepalive', c.persistentKeepalive === 0 ? 'off' : String(c.persistentKeepalive));
  return clause;
}

function argvBytes(args: readonly string[]): number {
  return args.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
}

/**
 * Splits peer changes into as few `wg set <name> peer …` argv lists as fit `maxBytes` each,
 * preserving order. A single clause larger than `maxBytes` gets a call of its own.
 */
export function peerSetBatches(
  name: string,
  changes: readonly PeerChange[],
  opts: { maxBytes?: number } = {},
): { args: string[]; count: number }[] {
  const maxBytes = opts.maxBytes ?? MAX_WG_SET_ARGV_BYTES;
  const batches: { args: string[]; count: number }[] = [];
  const prefix = ['set', name];
  let cur: { args: string[]; count: number } | undefined;
  let curBytes = 0;
  for (const change of changes) {
    const clause = peerClause(change);
    const bytes = argvBytes(clause);
    if (cur === undefined || (cur.count > 0 && curBytes + bytes > maxBytes)) {
      cur = { args: [...prefix], count: 0 };
      curBytes = argvBytes(prefix);
      batches.push(cur);
    }
    cur.args.push(...clause);
    cur.count++;
    curBytes += bytes;
  }
  return batches;
}
