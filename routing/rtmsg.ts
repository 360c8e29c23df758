/**
 * Pure translation between sealnet's routing types and the rtnetlink message objects of the
 * `netlink` package (which stay inside `routing/`). No I/O: unit-tested without a kernel.
 */
import { endianness } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import type { rt } from 'netlink';
import { ROUTE_PROTOCOL } from '../common/constants.js';
import type { ObservedRoute, RuleSpec } from '../tunnels/ports/index.js';
import { afOf, familyOfAf, formatCidrBytes, formatIpBytes, type IpBytes, type IpPrefix } from '../common/ip.js';

// Kernel constants the `netlink` package exposes as string-keyed enums; numeric here because
// parsed messages carry either the enum key or, for values it does not know, the number.
const RTN_UNICAST = 1;
const RTN_LOCAL = 2;
const RT_SCOPE_LINK = 253;
/** On delete, "any scope" (iproute2 does the same). */
const RT_SCOPE_NOWHERE = 255;
const FR_ACT_TO_TBL = 1;
/** `rtm_table` / `frh.table` is a u8; ids above 255 go in RTA_TABLE / FRA_TABLE only. */
const RT_TABLE_UNSPEC = 0;

const littleEndian = endianness() === 'LE';

/** The pieces of an rtnetlink request: fixed header and attributes. */
export interface RtRequest<D, A> {
  readonly data: D;
  readonly attrs: A;
}

/** A route as {@link encodeRouteReplace} needs it: parsed, with the link already resolved. */
export interface RouteToInstall {
  readonly dst: IpPrefix;
  readonly oif: number;
  readonly mtu: number;
  readonly src?: IpBytes | undefined;
  readonly table: number;
}

/** Value for the u8 table field of the fixed header; the full id always goes in an attribute. */
export function headerTable(table: number): number {
  return table < 256 ? table : RT_TABLE_UNSPEC;
}

/** The table a route or rule message belongs to (the attribute wins: the header is a u8). */
export function tableOf(msg: { data: { table?: number }; attrs: { table?: number } }): number {
  return msg.attrs.table ?? msg.data.table ?? 0;
}

/** Numeric value of a field the `netlink` package parsed into an enum key when it knew it. */
export function enumValue(
  mapping: Record<string, string | number>,
  value: string | number | undefined,
): number | undefined {
  if (value === undefined || typeof value === 'number') return value;
  const n = mapping[value];
  return typeof n === 'number' ? n : undefined;
}

/** RTM_NEWROUTE (with NLM_F_CREATE|NLM_F_REPLACE) for one sealnet route: `dst dev X mtu M [src S] proto 206 table T`. */
export function encodeRouteReplace(route: RouteToInstall): RtRequest<rt.Route, rt.RouteAttrs> {
  return {
    data: {
      family: afOf(route.dst.family),
      dstLen: route.dst.prefixLength,
      table: headerTable(route.table),
      // Not a member of the package's enum (any value above RTPROT_STATIC is free for daemons).
      protocol: ROUTE_PROTOCOL as rt.RouteProtocol,
      // A route without a gateway reaches its destination directly on the link (iproute2 does
      // the same); the kernel ignores the scope for IPv6.
      scope: RT_SCOPE_LINK,
      type: RTN_UNICAST,
    },
    attrs: {
      dst: route.dst.bytes,
      oif: route.oif,
      table: route.table,
      // Not locked (no RTAX_LOCK): path MTU discovery may still lower it below this.
      metrics: { mtu: u32(route.mtu) },
      ...(route.src === undefined ? {} : { prefsrc: route.src.bytes }),
    },
  };
}

/**
 * RTM_DELROUTE for `dst` in `table`, restricted to routes carrying sealnet's protocol: the
 * kernel (IPv4 `fib_table_delete`, IPv6 `ip6_route_del`) skips routes whose protocol differs,
 * so a route someone else put in the table is never deleted.
 */
export function encodeRouteDelete(dst: IpPrefix, table: number): RtRequest<rt.Route, rt.RouteAttrs> {
  return {
    data: {
      family: afOf(dst.family),
      dstLen: dst.prefixLength,
      table: headerTable(table),
      // Not a member of the package's enum (any value above RTPROT_STATIC is free for daemons).
      protocol: ROUTE_PROTOCOL as rt.RouteProtocol,
      scope: RT_SCOPE_NOWHERE,
    },
    attrs: { dst: dst.bytes, table },
  };
}

/** RTM_GETROUTE (no dump): the kernel's route lookup for one address, as `ip route get` does. */
export function encodeRouteGet(address: IpBytes): RtRequest<rt.Route, rt.RouteAttrs> {
  return {
    data: { family: afOf(address.family), dstLen: address.bytes.length * 8 },
    attrs: { dst: address.bytes },
  };
}

/** A route message as an {@link ObservedRoute}, or undefined for a family sealnet does not handle. */
export function decodeRoute(
  msg: rt.RouteMessage,
  linkName: (ifindex: number) => string | undefined,
): ObservedRoute | undefined {
  const family = familyOfAf(msg.data.family);
  if (family === undefined) return undefined;
  const dstLen = msg.data.dstLen ?? 0;
  const dst = msg.attrs.dst ?? Buffer.alloc(family === 4 ? 4 : 16);
  const mtu = msg.attrs.metrics?.mtu;
  return {
    dst: formatCidrBytes(dst, dstLen),
    dev: msg.attrs.oif === undefined ? undefined : linkName(msg.attrs.oif),
    mtu: mtu === undefined || mtu.length !== 4 ? undefined : readU32(mtu),
    src: msg.attrs.prefsrc === undefined ? undefined : formatIpBytes(msg.attrs.prefsrc),
    table: tableOf(msg),
    protocol: routeProtocol(msg),
  };
}

/** `rtm_protocol` of a route message as a number. */
export function routeProtocol(msg: rt.RouteMessage): number {
  return enumValue(RouteProtocolValues, msg.data.protocol) ?? -1;
}

/** True for a route that delivers locally (an address of this host), as a route lookup reports it. */
export function isLocalRoute(msg: rt.RouteMessage): boolean {
  return enumValue(RouteTypeValues, msg.data.type) === RTN_LOCAL;
}

/** RTM_NEWRULE / RTM_DELRULE for `priority P lookup T` with no selectors. */
export function encodeRule(
  rule: RuleSpec,
  opts: { protocol?: number | undefined } = {},
): RtRequest<rt.Rule, rt.RuleAttrs> {
  return {
    data: { family: afOf(rule.family), table: headerTable(rule.table), action: FR_ACT_TO_TBL },
    attrs: {
      priority: rule.priority,
      table: rule.table,
      ...(opts.protocol === undefined ? {} : { protocol: opts.protocol }),
    },
  };
}

/**
 * True if `msg` is exactly the rule `priority P lookup T` for the family: same priority, table
 * and action, and no selector (from/to/fwmark/iif/oif/uid/ports/tos/not) that would make it a
 * different rule someone else owns. The rule's protocol is not compared, so a rule created by
 * `ip rule` or an older agent is adopted.
 */
export function ruleMatches(msg: rt.RuleMessage, rule: RuleSpec): boolean {
  const { data, attrs } = msg;
  if (familyOfAf(data.family) !== rule.family) return false;
  if ((attrs.priority ?? 0) !== rule.priority || tableOf(msg) !== rule.table) return false;
  if (enumValue(RuleActionValues, data.action) !== FR_ACT_TO_TBL) return false;
  const selectors = [
    data.dstLen,
    data.srcLen,
    data.tos,
    attrs.fwmark,
    attrs.fwmask,
    attrs.goto,
    attrs.l3Mdev,
    attrs.ipProto,
  ];
  if (selectors.some((v) => v !== undefined && v !== 0)) return false;
  if (attrs.iifname !== undefined || attrs.oifname !== undefined || attrs.uidRange !== undefined) return false;
  if (attrs.sportRange !== undefined || attrs.dportRange !== undefined || attrs.tunId !== undefined) return false;
  // The kernel reports both suppressors on every rule, -1 meaning "unset".
  if (isSet(attrs.suppressIfgroup) || isSet(attrs.suppressPrefixlen)) return false;
  return data.flags?.invert !== true;
}

/** Link facts from an RTM_NEWLINK message. */
export function decodeLink(msg: rt.LinkMessage): { ifindex: number; name: string; mtu: number; up: boolean } {
  return {
    ifindex: msg.data.index ?? 0,
    name: msg.attrs.ifname ?? '',
    mtu: msg.attrs.mtu ?? 0,
    up: msg.data.flags?.up === true,
  };
}

/** An RTM_NEWADDR message as `{address, prefixLength, ifindex}`, or undefined for other families. */
export function decodeAddress(
  msg: rt.AddressMessage,
): { address: string; prefixLength: number; ifindex: number } | undefined {
  const family = familyOfAf(msg.data.family);
  if (family === undefined) return undefined;
  // IPv4: IFA_LOCAL is the local address (IFA_ADDRESS is the peer on point-to-point links).
  // IPv6: IFA_ADDRESS is the local address; IFA_LOCAL appears only with a peer.
  const bytes = family === 4 ? (msg.attrs.local ?? msg.attrs.address) : (msg.attrs.address ?? msg.attrs.local);
  if (bytes === undefined) return undefined;
  return { address: formatIpBytes(bytes), prefixLength: msg.data.prefixlen ?? 0, ifindex: msg.data.index ?? 0 };
}

/**
 * Errno name (e.g. `EEXIST`) of an error from the `netlink` package, which rejects with
 * `Error("Request rejected: EEXIST")` (or the negative number when Node has no name for it).
 */
export function errnoName(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const m = /^Request rejected: (-?\w+)$/.exec(err.message);
  if (m?.[1] === undefined) return undefined;
  if (!/^-?\d+$/.test(m[1])) return m[1];
  return getSystemErrorMap().get(-Math.abs(Number(m[1])))?.[0] ?? `errno ${Math.abs(Number(m[1]))}`;
}

/** `EEXIST (file already exists)` for netlink errors, the message for anything else. */
export function errorText(err: unknown): string {
  const name = errnoName(err);
  if (name === undefined) return err instanceof Error ? err.message : String(err);
  for (const [, [n, description]] of getSystemErrorMap()) {
    if (n === name) return `${name} (${description})`;
  }
  return name;
}

/** A u32 rule attribute that is present and not -1. */
function isSet(value: Buffer | undefined): boolean {
  return value !== undefined && !(value.length === 4 && readU32(value) === 0xffffffff);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  if (littleEndian) b.writeUInt32LE(n);
  else b.writeUInt32BE(n);
  return b;
}

function readU32(b: Buffer): number {
  return littleEndian ? b.readUInt32LE(0) : b.readUInt32BE(0);
}

// Kernel values for the enum keys the `netlink` package may hand back instead of numbers
// (its `RouteProtocol`/`RouteType`/`RuleAction` enums, reproduced so that this module needs
// only the package's types).
const RouteProtocolValues: Record<string, number> = {
  REDIRECT: 1,
  KERNEL: 2,
  BOOT: 3,
  STATIC: 4,
  GATED: 8,
  RA: 9,
  MRT: 10,
  ZEBRA: 11,
  BIRD: 12,
  DNROUTED: 13,
  XORP: 14,
  NTK: 15,
  DHCP: 16,
  MROUTED: 17,
  BABEL: 42,
  BGP: 186,
  ISIS: 187,
  OSPF: 188,
  RIP: 189,
  EIGRP: 192,
};
const RouteTypeValues: Record<string, number> = {
  UNSPEC: 0,
  UNICAST: 1,
  LOCAL: 2,
  BROADCAST: 3,
  ANYCAST: 4,
  MULTICAST: 5,
  BLACKHOLE: 6,
  UNREACHABLE: 7,
  PROHIBIT: 8,
  THROW: 9,
  NAT: 10,
  XRESOLVE: 11,
};
const RuleActionValues: Record<string, number> = {
  unspec: 0,
  toTbl: 1,
  goto: 2,
  nop: 3,
  res3: 4,
  res4: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
};
