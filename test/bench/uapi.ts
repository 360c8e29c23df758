/**
 * Reading a node's WireGuard peers through wireguard-go's UAPI socket directly, from the
 * root mount namespace via `/proc/<holder>/root`. The join benchmark polls every node many
 * times a second; spawning `nsenter … wg show dump` for each look costs tens of milliseconds
 * on a loaded 2-CPU machine and would both blur the measurement and slow the agents down.
 *
 * The UAPI `get` answer starts with the interface's private key: it is skipped while parsing
 * and never kept, returned or logged.
 */
import { realpathSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { WG_SOCKET_DIR } from '../../common/constants.js';

/** A peer as UAPI reports it (public key converted to the base64 `wg` and annotations use). */
export interface UapiPeer {
  readonly publicKey: string;
  readonly allowedIPs: readonly string[];
}

/**
 * Path of a node's UAPI socket seen from here. `/var/run` is usually a symlink to `/run`, and
 * an absolute symlink met after `/proc/<pid>/root` resolves against *our* root, so the
 * directory is resolved first and appended to the magic link.
 */
export function uapiSocketVia(holderPid: number, iface: string): string {
  let dir = WG_SOCKET_DIR;
  try {
    dir = realpathSync(WG_SOCKET_DIR);
  } catch {
    // not present in our namespace: keep the literal path
  }
  return join(`/proc/${holderPid}/root`, dir, `${iface}.sock`);
}

/** Parses a UAPI `get` answer into peers; throws on a non-zero errno. Skips every secret. */
export function parseUapiGet(text: string): UapiPeer[] {
  const peers: { publicKey: string; allowedIPs: string[] }[] = [];
  let errno: string | undefined;
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'public_key') peers.push({ publicKey: Buffer.from(value, 'hex').toString('base64'), allowedIPs: [] });
    else if (key === 'allowed_ip') peers[peers.length - 1]?.allowedIPs.push(value);
    else if (key === 'errno') errno = value;
  }
  if (errno !== '0') throw new Error(`UAPI get failed: errno=${errno ?? '(missing)'}`);
  return peers;
}

/** Asks a wireguard-go daemon for its peers over UAPI; rejects after `timeoutMs`. */
export function uapiPeers(socketPath: string, timeoutMs = 2000): Promise<UapiPeer[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(socketPath);
    let done = false;
    const timer = setTimeout(() => finish(new Error(`UAPI ${socketPath}: no answer in ${timeoutMs} ms`)), timeoutMs);
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err !== undefined) return reject(err);
      try {
        resolve(parseUapiGet(Buffer.concat(chunks).toString('utf8')));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    };
    sock.on('connect', () => sock.write('get=1\n\n'));
    sock.on('data', (b: Buffer) => {
      chunks.push(b);
      // The answer ends with an empty line after errno=…
      if (Buffer.concat(chunks).includes('\n\n')) finish();
    });
    sock.on('end', () => finish());
    sock.on('error', (e) => finish(e));
  });
}
