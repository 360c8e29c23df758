/**
 * {@link RoutingPort} over rtnetlink, through the `netlink` package: routes in sealnet's table,
 * the `lookup` rule, link MTU/state, route lookups and addresses, for IPv4 and IPv6.
 *
 * Ownership: every route sealnet installs carries
 * `protocol ROUTE_PROTOCOL`; only such routes are listed, and deletes are restricted to them
 * by the kernel itself.
 */
import { createRtNetlink, FlagsNew, type RtNetlinkSocket } from 'netlink';
import { ROUTE_PROTOCOL } from '../common/constants.js';
import { SealnetError } from '../common/errors.js';
import type { ObservedRoute, RoutingPort, RuleSpec } from '../tunnels/ports/index.js';
import {
  AF_INET,
  AF_INET6,
  formatIpBytes,
  parseCidrBytes,
  parseIpBytes,
  type IpBytes,
  type IpPrefix,
} from '../common/ip.js';
import {
  decodeAddress,
  decodeLink,
  decodeRoute,
  encodeRouteDelete,
  encodeRouteGet,
  encodeRouteReplace,
  encodeRule,
  errnoName,
  errorText,
  isLocalRoute,
  routeProtocol,
  ruleMatches,
  tableOf,
} from './rtmsg.js';

/** Options of {@link NetlinkRouting}. */
export interface NetlinkRoutingOptions {
  /** Per-request timeout (default 5000 ms): a kernel that never answers must not hang the agent. */
  readonly timeoutMs?: number | undefined;
}

type LinkFacts = { ifindex: number; name: string; mtu: number; up: boolean };

/** Errnos meaning "no such object" for deletes and lookups. */
const GONE = new Set(['ESRCH', 'ENOENT', 'ENODEV']);
/** Errnos of a route lookup that finds no route. */
const NO_ROUTE = new Set(['ENETUNREACH', 'EHOSTUNREACH']);
/** Upper bound on duplicate rules removed in one call (guards against a kernel that keeps answering). */
const MAX_RULE_DELETES = 64;

/**
 * The rtnetlink routing driver. The socket is opened by the constructor and belongs to the
 * network namespace the process is in at that moment (a netlink socket keeps the namespace it
 * was created in): construct it inside the node's namespace. Requests are serialized (the
 * kernel allows one dump at a time per socket). Call {@link close} when done.
 */
export class NetlinkRouting implements RoutingPort {
  readonly #socket: RtNetlinkSocket;
  readonly #timeoutMs: number;
  /** Tail of the request chain: one request in flight at a time. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(opts: NetlinkRoutingOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#socket = createRtNetlink();
    // Socket-level errors (e.g. ENOBUFS on receive) would crash the process as an unhandled
    // 'error' event; every request reports its own failure through its promise instead.
    this.#socket.socket.on('error', () => undefined);
  }

  /** Closes the socket. Further calls fail with `NETLINK_FAILED`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.socket.close();
  }

  /** @inheritdoc */
  async listRoutes(table: number): Promise<ObservedRoute[]> {
    const what = `list routes in table ${table}`;
    const [v4, v6, links] = [
      await this.#call(what, (s, o) => s.getRoutes({ family: AF_INET }, undefined, o)),
      await this.#call(what, (s, o) => s.getRoutes({ family: AF_INET6 }, undefined, o)),
      await this.#linksByIndex(what),
    ];
    const out: ObservedRoute[] = [];
    for (const msg of [...v4, ...v6]) {
      if (tableOf(msg) !== table || routeProtocol(msg) !== ROUTE_PROTOCOL) continue;
      const route = decodeRoute(msg, (i) => links.get(i)?.name);
      if (route !== undefined) out.push(route);
    }
    return out.sort(compareRoutes);
  }

  /**
   * @inheritdoc
   * Replacing is keyed by (dst, table[, metric]): a route for the same destination in the
   * table, whoever installed it, becomes sealnet's.
   */
  async replaceRoute(route: {
    dst: string;
    dev: string;
    mtu: number;
    src?: string | undefined;
    table: number;
  }): Promise<void> {
    const what = `add route ${route.dst} table ${route.table}`;
    const dst = parsePrefix(route.dst, 'route destination');
    const src = route.src === undefined ? undefined : parseAddress(route.src, 'route source');
    if (src !== undefined && src.family !== dst.family) {
      throw new SealnetError(
        'CONFIG_INVALID',
        `failed to ${what}: source ${route.src} is not in the destination's family`,
      );
    }
    if (!Number.isInteger(route.mtu) || route.mtu < 68 || route.mtu > 65535) {
      throw new SealnetError('CONFIG_INVALID', `failed to ${what}: MTU ${route.mtu} is not an integer in 68..65535`);
    }
    const link = await this.#linkByName(route.dev, what);
    if (link === undefined) throw new SealnetError('NETLINK_FAILED', `failed to ${what}: no link named ${route.dev}`);
    const req = encodeRouteReplace({ dst, oif: link.ifindex, mtu: route.mtu, src, table: route.table });
    await this.#call(what, (s, o) =>
      s.newRoute(req.data, req.attrs, { ...o, flags: FlagsNew.CREATE | FlagsNew.REPLACE }),
    );
  }

  /** @inheritdoc Only routes carrying sealnet's protocol are deleted; a missing route is fine. */
  async deleteRoute(route: { dst: string; table: number }): Promise<void> {
    const what = `delete route ${route.dst} table ${route.table}`;
    const req = encodeRouteDelete(parsePrefix(route.dst, 'route destination'), route.table);
    await this.#call(what, (s, o) => s.delRoute(req.data, req.attrs, o), GONE);
  }

  /**
   * @inheritdoc
   * Adds the rule (marked with FRA_PROTOCOL = ROUTE_PROTOCOL) when no exact match exists, and
   * removes exact duplicates until one is left. A rule without a protocol (`ip rule add`) can
   * only be deleted by a request that matches the first same-priority rule pointing at the
   * table, so which of the identical duplicates survives is the kernel's choice. Nothing
   * outside sealnet is expected to put rules at RULE_PRIORITY that point at ROUTE_TABLE.
   */
  async ensureRule(rule: RuleSpec): Promise<void> {
    const what = `add rule ${describeRule(rule)}`;
    const matches = await this.#matchingRules(rule, what);
    if (matches.length === 0) {
      const req = encodeRule(rule, { protocol: ROUTE_PROTOCOL });
      const flags = FlagsNew.CREATE | FlagsNew.EXCL;
      await this.#call(what, (s, o) => s.newRule(req.data, req.attrs, { ...o, flags }), new Set(['EEXIST']));
      return;
    }
    for (const dup of matches.slice(1, MAX_RULE_DELETES + 1)) {
      const req = encodeRule(rule, { protocol: dup.attrs.protocol || undefined });
      await this.#call(what, (s, o) => s.delRule(req.data, req.attrs, o), GONE);
    }
  }

  /** @inheritdoc Removes every exact match (duplicates included); absent is fine. */
  async deleteRule(rule: RuleSpec): Promise<void> {
    const what = `delete rule ${describeRule(rule)}`;
    const matches = await this.#matchingRules(rule, what);
    for (const match of matches.slice(0, MAX_RULE_DELETES)) {
      // The kernel deletes the first rule matching the fields sent; sending the protocol the
      // rule was created with keeps the delete from hitting a same-priority rule of another tool.
      const req = encodeRule(rule, { protocol: match.attrs.protocol || undefined });
      await this.#call(what, (s, o) => s.delRule(req.data, req.attrs, o), GONE);
    }
  }

  /** @inheritdoc */
  async getLink(name: string): Promise<{ ifindex: number; mtu: number; up: boolean } | undefined> {
    const link = await this.#linkByName(name, `get link ${name}`);
    return link === undefined ? undefined : { ifindex: link.ifindex, mtu: link.mtu, up: link.up };
  }

  /** @inheritdoc `up: false` brings the link down. Reads first and sends nothing if all matches. */
  async setLink(name: string, opts: { mtu?: number; up?: boolean }): Promise<void> {
    const what = `set link ${name}${opts.mtu === undefined ? '' : ` mtu ${opts.mtu}`}${opts.up === undefined ? '' : opts.up ? ' up' : ' down'}`;
    const link = await this.#linkByName(name, what);
    if (link === undefined) throw new SealnetError('NETLINK_FAILED', `failed to ${what}: no link named ${name}`);
    const mtu = opts.mtu !== undefined && opts.mtu !== link.mtu ? opts.mtu : undefined;
    const up = opts.up !== undefined && opts.up !== link.up ? opts.up : undefined;
    if (mtu === undefined && up === undefined) return;
    const data = {
      index: link.ifindex,
      ...(up === undefined ? {} : { change: { up: true as const }, flags: up ? { up: true as const } : {} }),
    };
    // One RTM_SETLINK: the kernel applies IFLA_MTU before the flag change.
    await this.#call(what, (s, o) => s.setLink(data, mtu === undefined ? {} : { mtu }, o));
  }

  /**
   * @inheritdoc
   * The kernel's own route lookup (`ip route get`), so policy rules count. For an address of
   * this host the lookup answers "local via lo"; the link holding the address is returned then.
   */
  async linkForAddress(address: string): Promise<{ name: string; mtu: number } | undefined> {
    const what = `look up the route to ${address}`;
    const ip = parseAddress(address, 'address');
    const req = encodeRouteGet(ip);
    const [route] = await this.#call(what, (s, o) => s.getRoute(req.data, req.attrs, o), NO_ROUTE);
    if (route === undefined) return undefined;
    let ifindex = route.attrs.oif;
    if (isLocalRoute(route)) {
      const own = (await this.#addresses(what)).find((a) => a.address === formatIpBytes(ip.bytes));
      ifindex = own?.ifindex ?? ifindex;
    }
    if (ifindex === undefined) return undefined;
    const link = (await this.#linksByIndex(what)).get(ifindex);
    return link === undefined ? undefined : { name: link.name, mtu: link.mtu };
  }

  /** @inheritdoc Link-local and loopback addresses included; callers choose. */
  async listAddresses(): Promise<{ address: string; prefixLength: number; dev: string }[]> {
    const what = 'list addresses';
    const addrs = await this.#addresses(what);
    const links = await this.#linksByIndex(what);
    return addrs
      .map((a) => ({ address: a.address, prefixLength: a.prefixLength, dev: links.get(a.ifindex)?.name ?? '' }))
      .sort((a, b) => a.dev.localeCompare(b.dev) || a.address.localeCompare(b.address));
  }

  async #addresses(what: string): Promise<{ address: string; prefixLength: number; ifindex: number }[]> {
    const msgs = await this.#call(what, (s, o) => s.getAddresses(undefined, undefined, o));
    return msgs.flatMap((m) => decodeAddress(m) ?? []);
  }

  async #linksByIndex(what: string): Promise<Map<number, LinkFacts>> {
    const msgs = await this.#call(what, (s, o) => s.getLinks(undefined, undefined, o));
    return new Map(msgs.map((m) => decodeLink(m)).map((l) => [l.ifindex, l]));
  }

  async #linkByName(name: string, what: string): Promise<LinkFacts | undefined> {
    const [msg] = await this.#call(what, (s, o) => s.getLink({}, { ifname: name }, o), GONE);
    return msg === undefined ? undefined : decodeLink(msg);
  }

  async #matchingRules(rule: RuleSpec, what: string) {
    const family = rule.family === 4 ? AF_INET : AF_INET6;
    const rules = await this.#call(what, (s, o) => s.getRules({ family }, undefined, o));
    return rules.filter((r) => ruleMatches(r, rule));
  }

  /**
   * Runs one request after the previous one settled. Errors become `NETLINK_FAILED` naming the
   * operation and the errno; errnos in `tolerated` resolve to an empty answer instead.
   */
  #call<T>(
    what: string,
    fn: (socket: RtNetlinkSocket, options: { timeout: number }) => Promise<T[]>,
    tolerated?: ReadonlySet<string>,
  ): Promise<T[]> {
    const attempt = async (): Promise<T[]> => {
      if (this.#closed) throw new SealnetError('NETLINK_FAILED', `failed to ${what}: the netlink socket is closed`);
      try {
        return await fn(this.#socket, { timeout: this.#timeoutMs });
      } catch (err) {
        const errno = errnoName(err);
        if (errno !== undefined && tolerated?.has(errno) === true) return [];
        throw new SealnetError('NETLINK_FAILED', `failed to ${what}: ${errorText(err)}`, { cause: err });
      }
    };
    const result = this.#queue.then(attempt, attempt);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

function parsePrefix(text: string, what: string): IpPrefix {
  const prefix = parseCidrBytes(text, { hostBits: 'reject' });
  if (prefix === undefined)
    throw new SealnetError('CONFIG_INVALID', `invalid ${what} '${text}': expected a CIDR with the host bits zero`);
  return prefix;
}

function parseAddress(text: string, what: string): IpBytes {
  const ip = parseIpBytes(text);
  if (ip === undefined)
    throw new SealnetError('CONFIG_INVALID', `invalid ${what} '${text}': expected an IPv4 or IPv6 address`);
  return ip;
}

function describeRule(rule: RuleSpec): string {
  return `priority ${rule.priority} lookup ${rule.table} (IPv${rule.family})`;
}

function compareRoutes(a: ObservedRoute, b: ObservedRoute): number {
  const fa = a.dst.includes(':') ? 6 : 4;
  const fb = b.dst.includes(':') ? 6 : 4;
  return fa - fb || (a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : 0);
}
