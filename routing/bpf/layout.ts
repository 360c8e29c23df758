/**
 * Byte layout of the maps of `routing/bpf/steer.c`, as pure encode/decode functions. The C
 * structs are the source of truth; the kernel test reads the object's BTF and checks every size
 * and offset here against it. Multi-byte fields are in host byte order (the kernel's LPM trie
 * takes `prefixlen` in host order; the program reads the other fields as native integers), and
 * addresses in network order.
 */
import { endianness } from 'node:os';
import { formatCidrBytes, parseCidrBytes, parseIpBytes } from '../../common/ip.js';
import { SealnetError } from '../../common/errors.js';
import type { SteeringEntry, SteeringSettings } from '../../tunnels/ports/index.js';

const LE = endianness() === 'LE';

/** `struct lpm_key`: u32 prefixlen, u32 family, u8 addr[16]. */
export const KEY_SIZE = 24;
/** `struct remote_value`: u32 ifindex, u32 mark, u32 peer_id, u8 state, u8 action, u8 kind, u8 reserved. */
export const REMOTE_VALUE_SIZE = 16;
/** Exempt map value: one u32 (unused by the program; 1 when written). */
export const EXEMPT_VALUE_SIZE = 4;
/** `struct config`: u32 flags, u16 wg_port, u16 esp_udp_port, u32 wg_fwmark, u32 mark_mask. */
export const CONFIG_SIZE = 16;
/** `struct counter`: u64 packets, u64 bytes (per CPU). */
export const COUNTER_SIZE = 16;
/** Bits of the family word in a key's prefix length. */
const FAMILY_BITS = 32;

/** Field offsets, checked against BTF by the kernel test. */
export const OFFSETS = {
  lpm_key: { prefixlen: 0, family: 4, addr: 8 },
  remote_value: { ifindex: 0, mark: 4, peer_id: 8, state: 12, action: 13, kind: 14, reserved: 15 },
  config: { flags: 0, wg_port: 4, esp_udp_port: 6, wg_fwmark: 8, mark_mask: 12 },
  counter: { packets: 0, bytes: 8 },
} as const;

/** Map sizes the program declares (max_entries), checked when pinned maps are adopted. */
export const MAX_REMOTE_ENTRIES = 65536;
export const MAX_EXEMPT_ENTRIES = 4096;

/** Entry states; 0 is the safe default (a zeroed value drops). */
export const STATES = ['not-ready', 'ready', 'no-peer'] as const;
/** What a ready entry does with a packet. */
export const ACTIONS = ['redirect', 'mark'] as const;
/** What a prefix is: a pod CIDR or a node address (tunnel packets to a node pass). */
export const KINDS = ['pod', 'node'] as const;

export type EntryState = (typeof STATES)[number];
export type EntryAction = (typeof ACTIONS)[number];
export type EntryKind = (typeof KINDS)[number];

/** `CONFIG_F_FAIL_OPEN`: pass and count what fail-closed would drop. Unset in a zeroed config. */
export const CONFIG_F_FAIL_OPEN = 1;
/** `CONFIG_F_ESP`: ESP arriving at the underlay is tunnel traffic (mode ipsec). Unset: it is not. */
export const CONFIG_F_ESP = 2;

/** Hooks, in counter-index order (`hook * REASONS.length + reason`). */
export const HOOKS = ['egress', 'ingress', 'from_pod'] as const;
/** Slots per hook in the counter array (C: `CNT_REASONS`). */
export const REASON_SLOTS = 16;
/** Hooks the counter array has room for (C: `HOOK_MAX`). */
export const HOOK_SLOTS = 4;
/** Counter reasons in index order (C: `enum reason`), with the verdict each stands for. */
export const REASONS = [
  { name: 'redirected', verdict: 'redirect' },
  { name: 'marked', verdict: 'pass' },
  { name: 'not_ready', verdict: 'drop' },
  { name: 'no_peer', verdict: 'drop' },
  { name: 'xfrm_bypass', verdict: 'drop' },
  { name: 'bad_entry', verdict: 'drop' },
  { name: 'plaintext_in', verdict: 'drop' },
  { name: 'encrypted', verdict: 'pass' },
  { name: 'exempt', verdict: 'pass' },
  { name: 'other', verdict: 'pass' },
  { name: 'fail_open', verdict: 'pass' },
  { name: 'decrypted', verdict: 'pass' },
  { name: 'no_tunnel', verdict: 'drop' },
  { name: 'encapsulated', verdict: 'drop' },
] as const;

export type Hook = (typeof HOOKS)[number];
export type ReasonName = (typeof REASONS)[number]['name'];

/** One LPM entry of the remote map, decoded (the port's type; cidr in routing/ipaddr form). */
export type RemoteEntry = SteeringEntry;
/** The program's configuration (one array element). */
export type SteeringConfig = SteeringSettings;

function u32(b: Buffer, off: number): number {
  return LE ? b.readUInt32LE(off) : b.readUInt32BE(off);
}
function putU32(b: Buffer, off: number, v: number): void {
  if (LE) b.writeUInt32LE(v >>> 0, off);
  else b.writeUInt32BE(v >>> 0, off);
}
function u16(b: Buffer, off: number): number {
  return LE ? b.readUInt16LE(off) : b.readUInt16BE(off);
}
function putU16(b: Buffer, off: number, v: number): void {
  if (LE) b.writeUInt16LE(v, off);
  else b.writeUInt16BE(v, off);
}
function u64(b: Buffer, off: number): bigint {
  return LE ? b.readBigUInt64LE(off) : b.readBigUInt64BE(off);
}

function checkUint(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max)
    throw new SealnetError('INTERNAL', `${what} must be an integer from 0 to ${max}, got ${v}`);
}

/**
 * Encodes a prefix (`100.64.2.0/24`, `fd00::/64`) as an LPM key. Host bits are cleared (the
 * trie matches only the prefix, but a canonical key makes equal prefixes equal bytes).
 * @throws SealnetError (`CONFIG_INVALID`) for text that is not a prefix or an address.
 */
export function encodeKey(cidr: string): Buffer {
  const p = cidr.includes('/') ? parseCidrBytes(cidr, { hostBits: 'clear' }) : hostPrefix(cidr);
  if (p === undefined) throw new SealnetError('CONFIG_INVALID', `not an IP prefix: ${JSON.stringify(cidr)}`);
  const key = Buffer.alloc(KEY_SIZE);
  putU32(key, OFFSETS.lpm_key.prefixlen, FAMILY_BITS + p.prefixLength);
  putU32(key, OFFSETS.lpm_key.family, p.family);
  p.bytes.copy(key, OFFSETS.lpm_key.addr);
  return key;
}

function hostPrefix(addr: string): { family: 4 | 6; bytes: Buffer; prefixLength: number } | undefined {
  const ip = parseIpBytes(addr);
  return ip === undefined ? undefined : { ...ip, prefixLength: ip.bytes.length * 8 };
}

/** Decodes an LPM key to its canonical prefix text. */
export function decodeKey(key: Buffer): string {
  if (key.length !== KEY_SIZE) throw new SealnetError('INTERNAL', `LPM key has ${key.length} bytes, want ${KEY_SIZE}`);
  const family = u32(key, OFFSETS.lpm_key.family);
  const bits = u32(key, OFFSETS.lpm_key.prefixlen) - FAMILY_BITS;
  const len = family === 4 ? 4 : family === 6 ? 16 : 0;
  if (len === 0 || bits < 0 || bits > len * 8)
    throw new SealnetError('INTERNAL', `malformed LPM key ${key.toString('hex')}`);
  return formatCidrBytes(key.subarray(OFFSETS.lpm_key.addr, OFFSETS.lpm_key.addr + len), bits);
}

/** Encodes a remote-map value. */
export function encodeRemoteValue(e: Omit<RemoteEntry, 'cidr'>): Buffer {
  checkUint('ifindex', e.ifindex, 0xffffffff);
  checkUint('mark', e.mark, 0xffffffff);
  checkUint('peerId', e.peerId, 0xffffffff);
  const v = Buffer.alloc(REMOTE_VALUE_SIZE);
  const o = OFFSETS.remote_value;
  putU32(v, o.ifindex, e.ifindex);
  putU32(v, o.mark, e.mark);
  putU32(v, o.peer_id, e.peerId);
  v[o.state] = indexOf(STATES, e.state, 'state');
  v[o.action] = indexOf(ACTIONS, e.action, 'action');
  v[o.kind] = indexOf(KINDS, e.kind, 'kind');
  return v;
}

/** Decodes a remote-map value. Unknown enum values decode as the safe reading (not-ready). */
export function decodeRemoteValue(cidr: string, v: Buffer): RemoteEntry {
  if (v.length !== REMOTE_VALUE_SIZE)
    throw new SealnetError('INTERNAL', `remote value has ${v.length} bytes, want ${REMOTE_VALUE_SIZE}`);
  const o = OFFSETS.remote_value;
  return {
    cidr,
    state: STATES[v[o.state] ?? 0] ?? 'not-ready',
    action: ACTIONS[v[o.action] ?? 0] ?? 'redirect',
    kind: KINDS[v[o.kind] ?? 0] ?? 'pod',
    ifindex: u32(v, o.ifindex),
    mark: u32(v, o.mark),
    peerId: u32(v, o.peer_id),
  };
}

function indexOf<T extends string>(list: readonly T[], v: T, what: string): number {
  const i = list.indexOf(v);
  if (i < 0) throw new SealnetError('INTERNAL', `unknown ${what} ${JSON.stringify(v)}`);
  return i;
}

/** Encodes the config element. */
export function encodeConfig(c: SteeringConfig): Buffer {
  checkUint('wireguardPort', c.wireguardPort, 0xffff);
  checkUint('espUdpPort', c.espUdpPort, 0xffff);
  checkUint('tunnelFwmark', c.tunnelFwmark, 0xffffffff);
  checkUint('markMask', c.markMask, 0xffffffff);
  const b = Buffer.alloc(CONFIG_SIZE);
  const o = OFFSETS.config;
  putU32(b, o.flags, (c.failClosed ? 0 : CONFIG_F_FAIL_OPEN) | (c.esp ? CONFIG_F_ESP : 0));
  putU16(b, o.wg_port, c.wireguardPort);
  putU16(b, o.esp_udp_port, c.espUdpPort);
  putU32(b, o.wg_fwmark, c.tunnelFwmark);
  putU32(b, o.mark_mask, c.markMask);
  return b;
}

/** Decodes the config element. */
export function decodeConfig(b: Buffer): SteeringConfig {
  if (b.length !== CONFIG_SIZE) throw new SealnetError('INTERNAL', `config has ${b.length} bytes, want ${CONFIG_SIZE}`);
  const o = OFFSETS.config;
  return {
    failClosed: (u32(b, o.flags) & CONFIG_F_FAIL_OPEN) === 0,
    esp: (u32(b, o.flags) & CONFIG_F_ESP) !== 0,
    wireguardPort: u16(b, o.wg_port),
    espUdpPort: u16(b, o.esp_udp_port),
    tunnelFwmark: u32(b, o.wg_fwmark),
    markMask: u32(b, o.mark_mask),
  };
}

/** One counter, summed over CPUs. */
export interface CounterValue {
  readonly hook: Hook;
  readonly reason: ReasonName;
  readonly verdict: 'redirect' | 'drop' | 'pass';
  readonly packets: bigint;
  readonly bytes: bigint;
}

/** An array-map index as a key (u32, host order). */
export function encodeIndex(i: number): Buffer {
  checkUint('index', i, 0xffffffff);
  const b = Buffer.alloc(4);
  putU32(b, 0, i);
  return b;
}

/** Index of a counter in the per-CPU array. */
export function counterIndex(hook: Hook, reason: ReasonName): number {
  return HOOKS.indexOf(hook) * REASON_SLOTS + REASONS.findIndex((r) => r.name === reason);
}

/** Total slots of the counter array (C: `HOOK_MAX * CNT_REASONS`). */
export const COUNTER_SLOTS = HOOK_SLOTS * REASON_SLOTS;

/**
 * Sums one per-CPU counter element over CPUs. `raw` is what BPF_MAP_LOOKUP_ELEM returns for
 * a per-CPU map: one value per possible CPU, each rounded up to 8 bytes.
 */
export function sumPerCpu(raw: Buffer): { packets: bigint; bytes: bigint } {
  if (raw.length % COUNTER_SIZE !== 0)
    throw new SealnetError('INTERNAL', `per-CPU counter has ${raw.length} bytes, not a multiple of ${COUNTER_SIZE}`);
  let packets = 0n;
  let bytes = 0n;
  for (let off = 0; off < raw.length; off += COUNTER_SIZE) {
    packets += u64(raw, off + OFFSETS.counter.packets);
    bytes += u64(raw, off + OFFSETS.counter.bytes);
  }
  return { packets, bytes };
}

/**
 * Number of possible CPUs from `/sys/devices/system/cpu/possible` text (`0-3`, `0,2-5`): the
 * count the kernel sizes per-CPU map values by.
 */
export function parsePossibleCpus(text: string): number {
  let n = 0;
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (m === null) throw new SealnetError('INTERNAL', `cannot parse possible CPUs ${JSON.stringify(text)}`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw new SealnetError('INTERNAL', `cannot parse possible CPUs ${JSON.stringify(text)}`);
    n += hi - lo + 1;
  }
  return n;
}
