/**
 * Peer changes and preshared keys written straight to wireguard-go's UAPI socket
 * (`/var/run/wireguard/<if>.sock`, https://www.wireguard.com/xplatform/), with no `wg` process.
 *
 * The text is what `wg set` itself writes to that socket for a userspace link (wireguard-tools
 * `userspace_set_device`): one `set=1` operation; per peer `public_key=<hex>` then either
 * `remove=true`, or `preshared_key`, `endpoint`, `persistent_keepalive_interval`,
 * `replace_allowed_ips=true` and the `allowed_ip` lines, in that order; a blank line ends it and
 * wireguard-go answers `errno=N` and a blank line. So the effect on the device is the one the
 * `wg set` argv of wgtool.ts had, with these semantics of wireguard-go (device/uapi.go):
 * - `public_key` of a peer the device lacks creates it (as `wg set peer …` does); `update_only`
 *   would suppress that, and `wg` never sends it, so neither do we.
 * - `replace_allowed_ips=true` with no `allowed_ip` after it empties the list (`allowed-ips ""`).
 * - A peer with the device's own public key is ignored, as the kernel ignores it.
 * - wireguard-go applies the operation line by line and stops at the first bad line: the lines
 *   before it stay applied. Every value is therefore validated before the first byte is sent
 *   (a bad change applies nothing); an errno ≠ 0 after that means the device refused something
 *   it could not have been told beforehand, and the error says that earlier lines may stand.
 *
 * Secrets: a preshared key exists here only as hex in a Buffer of our own, zeroed once
 * wireguard-go has answered (or the attempt failed). Nothing here logs; errors carry no values.
 */
import { connect } from 'node:net';
import { formatIP, parseIP } from '../common/ip.js';
import { SealnetError } from '../common/errors.js';
import type { PublicKey } from '../keymgr/keys.js';
import type { PeerChange } from '../tunnels/ports/index.js';
import { checkPeerChange, KEY_SHAPE } from './wgtool.js';
import { uapiSocketPath } from './userspace.js';

/** Default time for connect, write and answer of one UAPI call (as one `wg` call's timeout). */
export const UAPI_TIMEOUT_MS = 15_000;
/** The answer to a `set` is `errno=<int>\n\n`: anything longer is not wireguard-go speaking. */
export const MAX_UAPI_REPLY_BYTES = 64;

/** wireguard-go's `ipc.IpcError*` codes on Linux (negated errnos), for error messages. */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  [-5]: 'EIO: wireguard-go could not read the request',
  [-22]: 'EINVAL: wireguard-go rejected a key or value',
  [-55]: 'unknown wireguard-go error',
  [-71]: 'EPROTO: wireguard-go could not parse a line',
  [-98]: 'EADDRINUSE: wireguard-go could not bind',
};

/** Lowercase hex of a base64 key already checked against {@link KEY_SHAPE}. */
function keyHex(key: PublicKey): string {
  return Buffer.from(key, 'base64').toString('hex');
}

/**
 * The UAPI form of a checked endpoint: wireguard-go parses `ip:port` / `[ip6]:port` (Go
 * `netip.ParseAddrPort`) and resolves no names, so a host name or an IPv6 zone is refused here
 * rather than half-applied there. The address is printed canonically, as `wg` prints it after
 * resolving (`getnameinfo` numeric).
 */
function uapiEndpoint(key: PublicKey, endpoint: string): string {
  const bad = (why: string): SealnetError =>
    new SealnetError('CONFIG_INVALID', `peer ${key}: endpoint ${JSON.stringify(endpoint)} ${why}`);
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(endpoint);
  if (m === null) throw bad('is not ip:port or [ipv6]:port');
  const host = m[1] ?? m[2] ?? '';
  if (host.includes('%')) throw bad('has an IPv6 zone, which a userspace link cannot take');
  const ip = parseIP(host);
  if (ip === undefined) throw bad('is not an IP address literal (a userspace link resolves no names)');
  const port = Number(m[3]);
  if (port > 65535) throw bad('has a port above 65535');
  const text = formatIP(ip.family, ip.value);
  return ip.family === 6 ? `[${text}]:${port}` : `${text}:${port}`;
}

/**
 * Encodes peer changes as one UAPI `set` operation (the same effect as wgtool.ts
 * `peerSetBatches`' argv). Every change is validated before anything is returned.
 * @throws SealnetError `CONFIG_INVALID` naming the peer and the bad value.
 */
export function encodePeerChanges(changes: readonly PeerChange[]): string {
  const lines = ['set=1'];
  for (const change of changes) {
    const c = checkPeerChange(change);
    lines.push(`public_key=${keyHex(c.publicKey)}`);
    if (c.op === 'remove') {
      lines.push('remove=true');
      continue;
    }
    if (c.endpoint !== undefined) lines.push(`endpoint=${uapiEndpoint(c.publicKey, c.endpoint)}`);
    lines.push(`persistent_keepalive_interval=${c.persistentKeepalive}`);
    lines.push('replace_allowed_ips=true');
    for (const cidr of c.allowedIPs) lines.push(`allowed_ip=${cidr}`);
  }
  return `${lines.join('\n')}\n\n`;
}

const HEX = Buffer.from('0123456789abcdef', 'latin1');

/**
 * `set=1`, `public_key=<hex>`, `preshared_key=<hex>` and the blank line, in a fresh Buffer (not
 * from Node's shared pool) that the caller zeroes when done. The key is written as hex digits
 * byte by byte, so it never becomes a (unzeroable) JavaScript string.
 * @throws SealnetError `KEY_INVALID` / `CONFIG_INVALID` for a key of the wrong size or shape.
 */
export function encodePresharedKey(peer: PublicKey, psk: Uint8Array): Buffer {
  if (psk.length !== 32) throw new SealnetError('KEY_INVALID', `preshared key has ${psk.length} bytes, expected 32`);
  if (!KEY_SHAPE.test(peer)) throw new SealnetError('CONFIG_INVALID', 'preshared key for a malformed peer key');
  const head = `set=1\npublic_key=${keyHex(peer)}\npreshared_key=`;
  const out = Buffer.alloc(head.length + 64 + 2);
  out.write(head, 0, 'latin1');
  let at = head.length;
  for (const byte of psk) {
    out[at++] = HEX[byte >> 4]!;
    out[at++] = HEX[byte & 0xf]!;
  }
  out[at++] = 0x0a;
  out[at] = 0x0a;
  return out;
}

/**
 * Reads the answer to a `set` from the bytes received so far: the errno once `errno=<n>\n\n` is
 * complete, `incomplete` while the bytes are a prefix of such an answer, `malformed` otherwise.
 */
export function parseSetReply(text: string): { errno: number } | 'incomplete' | 'malformed' {
  const m = /^errno=(-?[0-9]{1,10})\n\n$/.exec(text);
  if (m !== null) return { errno: Number(m[1]) };
  if ('errno='.startsWith(text) || /^errno=-?[0-9]{0,10}\n?$/.test(text)) return 'incomplete';
  return 'malformed';
}

/** Options of {@link uapiSet}. */
export interface UapiSetOptions {
  /** What the operation does, for error messages ("2 peer changes", "a preshared key"). */
  readonly what: string;
  /** Default {@link UAPI_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Default `uapiSocketPath(name)`; tests and benchmarks point elsewhere. */
  readonly socketPath?: string;
}

/**
 * Sends one UAPI `set` operation to the wireguard-go serving `name`, on a connection of its own,
 * and waits for its answer. Resolves `no-socket` when there is nothing to talk to (no socket file,
 * or a stale one nobody listens on: ENOENT, ECONNREFUSED, ENOTSOCK) before a byte was sent, so
 * the caller can fall back to `wg`, which then treats the link as a kernel one exactly as before.
 * @throws SealnetError `WG_FAILED` naming the link: errno ≠ 0, a malformed or oversized answer,
 * the connection closing without an answer, or no answer within the timeout.
 */
export function uapiSet(
  name: string,
  message: string | Uint8Array,
  opts: UapiSetOptions,
): Promise<'applied' | 'no-socket'> {
  const path = opts.socketPath ?? uapiSocketPath(name);
  const timeoutMs = opts.timeoutMs ?? UAPI_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const sock = connect({ path, allowHalfOpen: true });
    let connected = false;
    let reply = '';
    let settled = false;
    const fail = (why: string, cause?: unknown): void => {
      finish();
      reject(
        new SealnetError(
          'WG_FAILED',
          `UAPI set of ${opts.what} on ${name} (${path}): ${why}`,
          cause === undefined ? undefined : { cause },
        ),
      );
    };
    const finish = (): void => {
      settled = true;
      clearTimeout(timer);
      sock.destroy();
    };
    const timer = setTimeout(() => {
      if (!settled) fail(`no answer within ${timeoutMs} ms; the change may have been applied`);
    }, timeoutMs);
    sock.once('connect', () => {
      connected = true;
      sock.end(message);
    });
    sock.on('data', (chunk: Buffer) => {
      if (settled) return;
      if (reply.length + chunk.length > MAX_UAPI_REPLY_BYTES) {
        fail(`answer is longer than ${MAX_UAPI_REPLY_BYTES} bytes: not wireguard-go's errno=<n>`);
        return;
      }
      reply += chunk.toString('latin1');
      const parsed = parseSetReply(reply);
      if (parsed === 'incomplete') return;
      if (parsed === 'malformed') {
        fail(`answer ${JSON.stringify(reply)} is not errno=<n>`);
        return;
      }
      if (parsed.errno !== 0) {
        const meaning = ERRNO_NAMES[parsed.errno] ?? 'see the wireguard-go log';
        fail(
          `wireguard-go answered errno=${parsed.errno} (${meaning}); it applies a set line by line, ` +
            'so lines before the refused one may have taken effect',
        );
        return;
      }
      finish();
      resolve('applied');
    });
    sock.once('end', () => {
      if (!settled) fail('wireguard-go closed the connection without an answer');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK')) {
        finish();
        resolve('no-socket');
        return;
      }
      fail(`${err.code ?? 'socket error'}`, err);
    });
  });
}
