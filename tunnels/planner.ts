/**
 * The pure planner: cluster snapshot + self + config → desired kernel state.
 * No I/O, no clock reads, sorted output (DESIGN.md "Data flow"). The reconciler diffs the
 * result against what the kernel holds; the planner never sees the kernel.
 */
import type { PublicKey } from '../keymgr/keys.js';
import { tunnelMtu } from '../routing/mtu.js';
import { decodeNode } from './annotations.js';
import { cidrContains, cidrsOverlap, compareCidrs, parseCidr, parseIP } from './cidr.js';
import { ROUTE_TABLE, WG_FWMARK, WG_INTERFACE } from './constants.js';
import type { DesiredPeer, DesiredRoute, DesiredState, Mode, PeerNode, RawNode, SkippedNode } from './model.js';

/** Who this agent is. */
export interface PlanSelf {
  readonly name: string;
  readonly wireguardPublicKey: PublicKey;
  /**
   * Addresses on this node (any interface). One inside the node's own pod CIDR (a CNI bridge
   * gateway such as flannel's cni0) becomes the source of host-to-remote-pod traffic, so replies
   * come back through the tunnel.
   */
  readonly localAddresses: readonly string[];
}

/** Agent configuration the plan depends on. */
export interface PlanConfig {
  readonly mode: Mode;
  readonly listenPort: number;
  readonly persistentKeepalive: number;
  /** MTU of the underlay link carrying the tunnel (jumbo frames included). */
  readonly underlayMtu: number;
  /** Address family of the underlay (outer header size). */
  readonly underlayFamily: 4 | 6;
  /** Extra encapsulation below the tunnel. */
  readonly overlay?: 'none' | 'vxlan' | 'geneve';
}

/** Everything `plan()` reads. */
export interface PlanInput {
  readonly nodes: readonly RawNode[];
  readonly self: PlanSelf;
  readonly config: PlanConfig;
  /**
   * Node → public key currently programmed (from the previous apply). Breaks ties when two
   * nodes claim the same key or overlapping pod CIDRs: the established owner keeps it, and a
   * newcomer cannot hijack a working pair by copying a key.
   */
  readonly established?: Readonly<Record<string, PublicKey>>;
}

const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Computes the desired state. Pure and deterministic. */
export function plan(input: PlanInput): DesiredState {
  const { self, config } = input;
  const established = input.established ?? {};
  const skipped: SkippedNode[] = [];
  const selfRaw = input.nodes.find((n) => n.name === self.name);
  const ownCidrs = (selfRaw?.podCIDRs ?? []).map((c) => parseCidr(c)).filter((c) => c !== undefined);

  // 1. Decode every remote node on its own: one bad node never affects another.
  const decoded: PeerNode[] = [];
  for (const raw of [...input.nodes].sort(byName)) {
    if (raw.name === self.name) continue;
    const r = decodeNode(raw);
    if (!r.ok) {
      skipped.push({ name: raw.name, reason: r.reason, detail: r.detail });
      continue;
    }
    if (r.node.mode !== config.mode) {
      skipped.push({ name: raw.name, reason: 'mode-mismatch', detail: `node ${raw.name} runs mode ${r.node.mode}, this node runs ${config.mode}` });
      continue;
    }
    if (r.node.wireguardPublicKey === self.wireguardPublicKey) {
      skipped.push({ name: raw.name, reason: 'key-equals-self', detail: `node ${raw.name} publishes this node's own public key` });
      continue;
    }
    const ownOverlap = r.node.podCIDRs.find((c) => ownCidrs.some((o) => { const p = parseCidr(c); return p !== undefined && cidrsOverlap(p, o); }));
    if (ownOverlap !== undefined) {
      skipped.push({ name: raw.name, reason: 'pod-cidr-conflict', detail: `node ${raw.name} pod CIDR ${ownOverlap} overlaps this node's own pod CIDRs` });
      continue;
    }
    decoded.push(r.node);
  }

  // 2. Conflicts between remote nodes: a shared key or overlapping pod CIDRs. The established
  //    owner (if any) keeps it; everyone else involved is skipped.
  const accepted = resolveConflicts(decoded, established, skipped);

  // 3. Peers and routes.
  const mtu = tunnelMtu({ underlayMtu: config.underlayMtu, mode: config.mode, family: config.underlayFamily, overlay: config.overlay ?? 'none' });
  const peers: DesiredPeer[] = accepted.map((n) => ({
    node: n.name,
    publicKey: n.wireguardPublicKey,
    endpoint: n.endpointHost.includes(':') ? `[${n.endpointHost}]:${n.endpointPort}` : `${n.endpointHost}:${n.endpointPort}`,
    allowedIPs: n.podCIDRs,
    persistentKeepalive: config.persistentKeepalive,
  }));
  const routes: DesiredRoute[] = [];
  for (const n of accepted) {
    for (const dst of n.podCIDRs) {
      const family = parseCidr(dst)?.family;
      routes.push({ dst, dev: WG_INTERFACE, mtu, src: pickSource(family, ownCidrs, self.localAddresses), table: ROUTE_TABLE });
    }
  }
  routes.sort((a, b) => compareCidrs(a.dst, b.dst));
  skipped.sort(byName);

  return {
    mode: config.mode,
    link: { name: WG_INTERFACE, listenPort: config.listenPort, mtu, fwmark: WG_FWMARK },
    peers,
    routes,
    skipped,
  };
}

function pickSource(family: 4 | 6 | undefined, ownCidrs: readonly NonNullable<ReturnType<typeof parseCidr>>[], addresses: readonly string[]): string | undefined {
  const candidates = addresses.filter((a) => ownCidrs.some((c) => c.family === family && cidrContains(c, a)));
  // Numeric order (lowest address first): stable and what an operator expects.
  return [...candidates].sort((a, b) => { const x = parseIP(a)!.value; const y = parseIP(b)!.value; return x < y ? -1 : x > y ? 1 : 0; })[0];
}

function resolveConflicts(nodes: readonly PeerNode[], established: Readonly<Record<string, PublicKey>>, skipped: SkippedNode[]): PeerNode[] {
  const loser = new Map<string, SkippedNode>();
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i]!;
      const b = nodes[j]!;
      let what: string | undefined;
      if (a.wireguardPublicKey === b.wireguardPublicKey) what = 'duplicate-key';
      else if (a.podCIDRs.some((x) => b.podCIDRs.some((y) => { const px = parseCidr(x); const py = parseCidr(y); return px !== undefined && py !== undefined && cidrsOverlap(px, py); }))) what = 'pod-cidr-conflict';
      if (what === undefined) continue;
      const aOwns = established[a.name] === a.wireguardPublicKey;
      const bOwns = established[b.name] === b.wireguardPublicKey;
      const detail = what === 'duplicate-key' ? `nodes ${a.name} and ${b.name} publish the same public key` : `nodes ${a.name} and ${b.name} have overlapping pod CIDRs`;
      const reason = what as 'duplicate-key' | 'pod-cidr-conflict';
      // Only a sole established owner keeps it; if both or neither were established, both lose.
      const aKeeps = aOwns && !bOwns;
      const bKeeps = bOwns && !aOwns;
      if (!aKeeps) loser.set(a.name, { name: a.name, reason, detail: bKeeps ? `${detail}; ${b.name} had it first` : detail });
      if (!bKeeps) loser.set(b.name, { name: b.name, reason, detail: aKeeps ? `${detail}; ${a.name} had it first` : detail });
    }
  }
  skipped.push(...loser.values());
  return nodes.filter((n) => !loser.has(n.name));
}
