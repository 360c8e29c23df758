/**
 * Strict parser of `wg show <if> dump` (wireguard-tools show.c `dump_print`), pure.
 *
 * Format, tab-separated, one record per line:
 *   line 1   private-key public-key listen-port fwmark
 *   peers    public-key preshared-key endpoint allowed-ips latest-handshake rx-bytes tx-bytes
 *            persistent-keepalive
 *
 * Line 1 holds the interface's private key and every peer line may hold a preshared key. Both
 * are dropped the moment their field is split off, and no error message ever quotes them: an
 * error names the line number and the field, and quotes a value only for fields that cannot be
 * secret. Use {@link redactDump} before logging raw dump text.
 */
import { parsePublicKey } from '../keymgr/keys.js';
import { canonicalCidr, compareCidrs, formatIP, parseIP } from '../common/ip.js';
import { SealnetError } from '../common/errors.js';
import type { ObservedInterface, ObservedPeer } from '../tunnels/ports/index.js';

/** What {@link parseDump} returns: the interface (private key withheld) and its peers in dump order. */
export interface ParsedDump {
  readonly iface: ObservedInterface;
  readonly peers: ObservedPeer[];
}

const NONE = '(none)';
/** What {@link DUMP_SECRET_FILTER} writes in place of a secret. */
export const WITHHELD = '(withheld)';

/**
 * `sed` script that replaces the secret column of `wg show <if> dump` — the private key (field 1
 * of line 1) and each peer's preshared key (field 2 of every later line) — with
 * {@link WITHHELD}. The driver pipes `wg` through it (common/spawn.ts `runPiped`), so the
 * agent reads its peers without the private key ever entering its memory (issue 16 finding 13).
 */
export const DUMP_SECRET_FILTER = String.raw`1s/^[^\t]*/(withheld)/;2,$s/^\([^\t]*\)\t[^\t]*/\1\t(withheld)/`;
const OFF = 'off';
const INTERFACE_FIELDS = ['private-key', 'public-key', 'listen-port', 'fwmark'] as const;
const PEER_FIELDS = [
  'public-key',
  'preshared-key',
  'endpoint',
  'allowed-ips',
  'latest-handshake',
  'transfer-rx',
  'transfer-tx',
  'persistent-keepalive',
] as const;
/** Shape of any 32-byte key in standard base64 (not a validity check: that is keymgr's job). */
const KEY_SHAPE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
/** The same shape, unanchored, for redaction. */
const KEY_SHAPE_ANYWHERE = /[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=/g;
const REDACTED = '(redacted)';
/**
 * Column of the secret and of the public key by field count: `wg show <if> dump` interface (4)
 * and peer (8) lines, `wg show all dump` interface (5) and peer (9) lines.
 */
const REDACT_LAYOUTS: Readonly<Record<number, { secret: number; publicKey: number }>> = {
  4: { secret: 0, publicKey: 1 },
  5: { secret: 1, publicKey: 2 },
  8: { secret: 1, publicKey: 0 },
  9: { secret: 2, publicKey: 1 },
};
const U64_MAX = (1n << 64n) - 1n;

function fail(line: number, field: string, problem: string): never {
  throw new SealnetError('WG_FAILED', `wg dump line ${line}, field ${field}: ${problem}`);
}

/** Quotes a non-secret value for an error message, shortened. */
function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/** Parses an unsigned decimal without sign, spaces or leading zeros, up to `max`. */
function parseUnsigned(text: string, max: bigint): bigint | undefined {
  if (!/^(0|[1-9][0-9]*)$/.test(text) || text.length > 20) return undefined;
  const v = BigInt(text);
  return v <= max ? v : undefined;
}

function parsePort(text: string, line: number, field: string): number {
  const v = parseUnsigned(text, 65535n);
  if (v === undefined) fail(line, field, `not a port number (0-65535): ${quote(text)}`);
  return Number(v);
}

function parseFwmark(text: string, line: number): number {
  if (text === OFF) return 0;
  // show.c prints a non-zero fwmark as "0x%x".
  if (!/^0x[0-9a-f]{1,8}$/.test(text)) fail(line, 'fwmark', `want "off" or 0x<hex>: ${quote(text)}`);
  const v = Number.parseInt(text.slice(2), 16);
  if (v === 0) fail(line, 'fwmark', 'zero is printed as "off", not 0x0');
  return v;
}

/**
 * A u64 counter or timestamp as a number. Byte counters can pass 2^53 (9 PB) on a long-lived
 * fast link; they are then rounded to the nearest double instead of failing the whole read,
 * which only costs precision in metrics.
 */
function parseCounter(text: string, line: number, field: string): number {
  const v = parseUnsigned(text, U64_MAX);
  if (v === undefined) fail(line, field, `not an unsigned 64-bit integer: ${quote(text)}`);
  return Number(v);
}

function parseKeepalive(text: string, line: number): number {
  if (text === OFF) return 0;
  const v = parseUnsigned(text, 65535n);
  if (v === undefined || v === 0n) fail(line, 'persistent-keepalive', `want "off" or 1-65535: ${quote(text)}`);
  return Number(v);
}

function parseKey(text: string, line: number, field: string) {
  try {
    return parsePublicKey(text);
  } catch (err) {
    // keymgr's messages never quote the key; a public key would not be secret anyway.
    fail(line, field, err instanceof Error ? err.message : 'invalid public key');
  }
}

/** Checks that a secret field is "(none)" or key-shaped, without ever quoting it. */
function checkSecretField(text: string, line: number, field: string): void {
  if (text !== NONE && text !== WITHHELD && !KEY_SHAPE.test(text))
    fail(line, field, 'not "(none)", "(withheld)" or a base64 32-byte key (value withheld)');
}

/** `a.b.c.d:port` or `[v6]:port` / `[v6%scope]:port`, with the address in canonical form. */
function parseEndpoint(text: string, line: number): string | undefined {
  if (text === NONE) return undefined;
  const m = /^(?:\[([0-9A-Fa-f:.]+)(%[A-Za-z0-9_.-]+)?\]|([0-9.]+)):([0-9]+)$/.exec(text);
  if (m === null) fail(line, 'endpoint', `want ip:port or [ip6]:port: ${quote(text)}`);
  const [, v6, scope, v4, portText = ''] = m;
  const addr = parseIP(v6 ?? v4 ?? '');
  if (addr === undefined || addr.family !== (v6 !== undefined ? 6 : 4)) {
    fail(line, 'endpoint', `not an IPv${v6 !== undefined ? 6 : 4} address: ${quote(text)}`);
  }
  const port = parsePort(portText, line, 'endpoint');
  if (port === 0) fail(line, 'endpoint', `port 0: ${quote(text)}`);
  const host = formatIP(addr.family, addr.value);
  return addr.family === 6 ? `[${host}${scope ?? ''}]:${port}` : `${host}:${port}`;
}

function parseAllowedIPs(text: string, line: number): string[] {
  if (text === NONE) return [];
  const out = new Set<string>();
  for (const item of text.split(',')) {
    const c = canonicalCidr(item);
    if (c === undefined) fail(line, 'allowed-ips', `not a CIDR: ${quote(item)}`);
    out.add(c);
  }
  return [...out].sort(compareCidrs);
}

/** Splits dump text into lines: `\n`-terminated, only a final empty line tolerated. */
function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * Parses the output of `wg show <if> dump` (one interface, no interface-name column).
 * Peers are returned in dump order; allowed IPs canonical and sorted.
 * @throws SealnetError `WG_FAILED` naming the line and field (never quoting a secret).
 */
export function parseDump(text: string): ParsedDump {
  const lines = splitLines(text);
  if (lines.length === 0) fail(1, 'interface', 'empty dump');

  // Line 1: the private key is split off and discarded before anything else happens.
  const head = (lines[0] ?? '').split('\t');
  if (head.length !== INTERFACE_FIELDS.length) {
    fail(
      1,
      'interface',
      `want ${INTERFACE_FIELDS.length} tab-separated fields, got ${head.length} (line withheld: it holds the private key)`,
    );
  }
  checkSecretField(head[0] ?? '', 1, 'private-key');
  head[0] = '';
  const [, pubText = '', portText = '', fwmarkText = ''] = head;
  const iface: ObservedInterface = {
    publicKey: pubText === NONE ? undefined : parseKey(pubText, 1, 'public-key'),
    listenPort: parsePort(portText, 1, 'listen-port'),
    fwmark: parseFwmark(fwmarkText, 1),
  };

  const peers: ObservedPeer[] = [];
  const seen = new Set<string>();
  for (let i = 1; i < lines.length; i++) {
    const n = i + 1;
    const f = (lines[i] ?? '').split('\t');
    if (f.length !== PEER_FIELDS.length) {
      fail(
        n,
        'peer',
        `want ${PEER_FIELDS.length} tab-separated fields, got ${f.length} (line withheld: it may hold a preshared key)`,
      );
    }
    checkSecretField(f[1] ?? '', n, 'preshared-key');
    f[1] = '';
    const [pub = '', , endpoint = '', allowed = '', handshake = '', rx = '', tx = '', keepalive = ''] = f;
    const publicKey = parseKey(pub, n, 'public-key');
    if (seen.has(publicKey)) fail(n, 'public-key', `peer ${publicKey} listed twice`);
    seen.add(publicKey);
    peers.push({
      publicKey,
      endpoint: parseEndpoint(endpoint, n),
      allowedIPs: parseAllowedIPs(allowed, n),
      latestHandshake: parseCounter(handshake, n, 'latest-handshake'),
      rxBytes: parseCounter(rx, n, 'transfer-rx'),
      txBytes: parseCounter(tx, n, 'transfer-tx'),
      persistentKeepalive: parseKeepalive(keepalive, n),
    });
  }
  return { iface, peers };
}

/**
 * Dump text with every secret replaced by `(redacted)`, safe to log: the private key of
 * interface lines and the preshared key of peer lines, in both `wg show <if> dump` and
 * `wg show all dump` (extra interface-name column) layouts. A line of any other shape has
 * every key-shaped token replaced, and a malformed first line is withheld entirely.
 */
export function redactDump(text: string): string {
  const out = text.split('\n').map((line, i) => {
    if (line === '') return line;
    const f = line.split('\t');
    const layout = REDACT_LAYOUTS[f.length];
    if (layout === undefined) return i === 0 ? REDACTED : line.replace(KEY_SHAPE_ANYWHERE, REDACTED);
    return f
      .map((field, j) => {
        if (j === layout.secret) return field === NONE ? field : REDACTED;
        // Only the public-key column may keep a key-shaped value.
        return j === layout.publicKey ? field : field.replace(KEY_SHAPE_ANYWHERE, REDACTED);
      })
      .join('\t');
  });
  return out.join('\n');
}
