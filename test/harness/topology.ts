/**
 * The namespace cluster's address plan and the `ip -batch` scripts that build it, as pure
 * functions. Addresses come only from 198.18.0.0/15 (underlay) and 100.64.0.0/10 (pods) and,
 * for IPv6, from the ULA prefix fd00:5ea1::/48 ("5ea1": seal); nothing here ever targets the
 * root namespace: every script runs under `ip -n <ns>`, and every veth is created with both
 * ends inside namespaces of the run.
 *
 * IPv6 plan (node index i, pod index j, both written in hex inside the address):
 *   underlay    fd00:5ea1::/64             node i: fd00:5ea1::<i>
 *   pods        fd00:5ea1:1::/56           node i's pod CIDR fd00:5ea1:1:<i>::/64,
 *                                          gateway fd00:5ea1:1:<i>::1, pod j fd00:5ea1:1:<i>::<10+j>
 * A cluster is IPv4-only, dual-stack or IPv6-only ({@link IpFamily}); in a dual-stack cluster the
 * underlay family (the WireGuard endpoints) is chosen separately ({@link AddressPlan}).
 */

/** Largest node index (198.18.0.<i>, 100.64.<i>.0/24). */
export const MAX_NODE_INDEX = 254;
/** Largest pod index per node (100.64.<i>.<10+j>). */
export const MAX_POD_INDEX = 200;
/** The underlay bridge in the underlay namespace. */
export const UNDERLAY_BRIDGE = 'br0';
/** The routed "pod network" bridge in each node. */
export const POD_BRIDGE = 'cni0';
/** Every node/underlay address the harness hands out lies in this range (RFC 2544 benchmarking). */
export const UNDERLAY_RANGE = '198.18.0.0/15';
/** Every pod address the harness hands out lies in this range (RFC 6598 shared address space). */
export const POD_RANGE = '100.64.0.0/10';

/** Every IPv6 node/underlay address lies in this range (ULA, fd00:5ea1::/48). */
export const UNDERLAY_RANGE6 = 'fd00:5ea1::/64';
/** Every IPv6 pod address lies in this range. */
export const POD_RANGE6 = 'fd00:5ea1:1::/56';

/** Which address families a cluster has. */
export type IpFamily = 'ipv4' | 'ipv6' | 'dual';

/**
 * A cluster's families: which ones pods and nodes get, and which one carries the tunnel
 * (listed first in a Node's InternalIPs, so the agent publishes it as its endpoint).
 */
export interface AddressPlan {
  readonly v4: boolean;
  readonly v6: boolean;
  readonly underlay: 4 | 6;
}

/** The plan of a family choice; `underlay` only matters for dual stack (default IPv4). */
export function addressPlan(family: IpFamily, underlay?: 4 | 6): AddressPlan {
  if (family === 'ipv4') {
    if (underlay === 6) throw new Error('an IPv4-only cluster cannot have an IPv6 underlay');
    return { v4: true, v6: false, underlay: 4 };
  }
  if (family === 'ipv6') {
    if (underlay === 4) throw new Error('an IPv6-only cluster cannot have an IPv4 underlay');
    return { v4: false, v6: true, underlay: 6 };
  }
  return { v4: true, v6: true, underlay: underlay ?? 4 };
}

/** Node `n<i>`'s name. */
export const nodeName = (i: number): string => `n${i}`;
/** Pod `j` of node `i`. */
export const podName = (i: number, j: number): string => `n${i}p${j}`;
/** Underlay address of node `i` (no prefix length). */
export const nodeAddress = (i: number): string => `198.18.0.${i}`;
/** Pod CIDR of node `i`. */
export const podCidr = (i: number): string => `100.64.${i}.0/24`;
/** The node's address on its pod bridge: the pods' default gateway. */
export const podGateway = (i: number): string => `100.64.${i}.1`;
/** Address of pod `j` on node `i`. */
export const podAddress = (i: number, j: number): string => `100.64.${i}.${10 + j}`;

/** IPv6 underlay address of node `i`. */
export const nodeAddress6 = (i: number): string => `fd00:5ea1::${i.toString(16)}`;
/** IPv6 pod CIDR of node `i`. */
export const podCidr6 = (i: number): string => `fd00:5ea1:1:${i.toString(16)}::/64`;
/** The node's IPv6 address on its pod bridge. */
export const podGateway6 = (i: number): string => `fd00:5ea1:1:${i.toString(16)}::1`;
/** IPv6 address of pod `j` on node `i`. */
export const podAddress6 = (i: number, j: number): string => `fd00:5ea1:1:${i.toString(16)}::${(10 + j).toString(16)}`;

/** Node `i`'s InternalIPs, the underlay family first (the agent's endpoint is the first). */
export function nodeAddresses(plan: AddressPlan, i: number): string[] {
  const v4 = plan.v4 ? [nodeAddress(i)] : [];
  const v6 = plan.v6 ? [nodeAddress6(i)] : [];
  return plan.underlay === 4 ? [...v4, ...v6] : [...v6, ...v4];
}

/** Node `i`'s pod CIDRs (`spec.podCIDRs`): IPv4 first, as Kubernetes orders a dual-stack node's. */
export function podCidrs(plan: AddressPlan, i: number): string[] {
  return [...(plan.v4 ? [podCidr(i)] : []), ...(plan.v6 ? [podCidr6(i)] : [])];
}

/** Pod `j` of node `i`'s addresses, IPv4 first. */
export function podAddresses(plan: AddressPlan, i: number, j: number): string[] {
  return [...(plan.v4 ? [podAddress(i, j)] : []), ...(plan.v6 ? [podAddress6(i, j)] : [])];
}

/** The cluster-wide pod ranges of a plan (the agents' steering.clusterCidrs, the capture's pod ranges). */
export function podRanges(plan: AddressPlan): string[] {
  return [...(plan.v4 ? [POD_RANGE] : []), ...(plan.v6 ? [POD_RANGE6] : [])];
}

/** Namespace names of a run. Kept short: they show up in every `ip netns` listing. */
export const netnsNames = {
  underlay: (prefix: string): string => `${prefix}-u`,
  node: (prefix: string, i: number): string => `${prefix}-n${i}`,
  pod: (prefix: string, i: number, j: number): string => `${prefix}-n${i}p${j}`,
};

/**
 * Host-side veth names. They live inside the run's namespaces, but carry the prefix anyway so
 * that a leaked one (there should be none) is attributable. IFNAMSIZ allows 15 characters.
 */
export const vethNames = {
  /** Underlay end of node `i`'s eth0. */
  underlay: (prefix: string, i: number): string => `${prefix}n${i}`,
  /** Node end of pod `j`'s eth0. */
  pod: (prefix: string, j: number): string => `${prefix}p${j}`,
};

/** Checks a run prefix: lowercase alphanumerics, short enough for veth names. */
export function checkPrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9]{2,10}$/.test(prefix))
    throw new Error(
      `bad run prefix ${JSON.stringify(prefix)}: want 3–11 lowercase letters/digits starting with a letter`,
    );
}

/** Underlay namespace script: the bridge everything hangs off. */
export function underlayBatch(): string[] {
  return ['link set lo up', `link add ${UNDERLAY_BRIDGE} type bridge`, `link set ${UNDERLAY_BRIDGE} up`];
}

/** Underlay script attaching node veths (created by {@link nodeBatch}) to the bridge. */
export function underlayAttachBatch(prefix: string, nodeIndexes: readonly number[]): string[] {
  return nodeIndexes.map((i) => `link set ${vethNames.underlay(prefix, i)} master ${UNDERLAY_BRIDGE} up`);
}

/** Options of one node's build script. */
export interface NodeBatchOptions {
  readonly prefix: string;
  readonly index: number;
  readonly pods: number;
  readonly mtu: number;
  readonly podMtu: number;
  /** Indexes of the other nodes whose pod CIDRs this node routes over the underlay. */
  readonly peers: readonly number[];
  /** Families (default IPv4 only). */
  readonly plan?: AddressPlan;
}

/**
 * One node's script: eth0 (a veth whose other end goes into the underlay namespace), the pod
 * bridge, one veth per pod (other end into the pod's namespace), and flannel-host-gw routes:
 * every remote pod CIDR via the owning node's underlay address, in the main table.
 */
export function nodeBatch(o: NodeBatchOptions): string[] {
  const { prefix, index: i } = o;
  const plan = o.plan ?? IPV4_ONLY;
  // nodad: duplicate address detection would hold each address "tentative" for a second or
  // more (no traffic from it); every address here is unique by construction.
  const lines = [
    'link set lo up',
    `link add eth0 mtu ${o.mtu} type veth peer name ${vethNames.underlay(prefix, i)} mtu ${o.mtu} netns ${netnsNames.underlay(prefix)}`,
    ...(plan.v4 ? [`addr add ${nodeAddress(i)}/24 dev eth0`] : []),
    ...(plan.v6 ? [`addr add ${nodeAddress6(i)}/64 dev eth0 nodad`] : []),
    'link set eth0 up',
    `link add ${POD_BRIDGE} mtu ${o.podMtu} type bridge`,
    ...(plan.v4 ? [`addr add ${podGateway(i)}/24 dev ${POD_BRIDGE}`] : []),
    ...(plan.v6 ? [`addr add ${podGateway6(i)}/64 dev ${POD_BRIDGE} nodad`] : []),
    `link set ${POD_BRIDGE} up`,
  ];
  for (let j = 1; j <= o.pods; j++) {
    const v = vethNames.pod(prefix, j);
    lines.push(
      `link add ${v} mtu ${o.podMtu} type veth peer name eth0 mtu ${o.podMtu} netns ${netnsNames.pod(prefix, i, j)}`,
    );
    lines.push(`link set ${v} master ${POD_BRIDGE} up`);
  }
  for (const k of o.peers) lines.push(...podRouteLines('add', k, plan));
  return lines;
}

const IPV4_ONLY: AddressPlan = { v4: true, v6: false, underlay: 4 };

/** The main-table route a node holds to node `k`'s IPv4 pods (what flannel host-gw installs). */
export function podRouteLine(op: 'add' | 'del', k: number): string {
  return op === 'add' ? `route add ${podCidr(k)} via ${nodeAddress(k)} dev eth0` : `route del ${podCidr(k)}`;
}

/** The main-table routes a node holds to node `k`'s pods, one per family, each via the node's address of that family. */
export function podRouteLines(op: 'add' | 'del', k: number, plan: AddressPlan = IPV4_ONLY): string[] {
  const v6 = op === 'add' ? `route add ${podCidr6(k)} via ${nodeAddress6(k)} dev eth0` : `route del ${podCidr6(k)}`;
  return [...(plan.v4 ? [podRouteLine(op, k)] : []), ...(plan.v6 ? [v6] : [])];
}

/** One pod's script: addresses, up, default routes via the node's pod bridge. */
export function podBatch(i: number, j: number, plan: AddressPlan = IPV4_ONLY): string[] {
  return [
    'link set lo up',
    ...(plan.v4 ? [`addr add ${podAddress(i, j)}/24 dev eth0`] : []),
    ...(plan.v6 ? [`addr add ${podAddress6(i, j)}/64 dev eth0 nodad`] : []),
    'link set eth0 up',
    ...(plan.v4 ? [`route add default via ${podGateway(i)} dev eth0`] : []),
    ...(plan.v6 ? [`route add ::/0 via ${podGateway6(i)} dev eth0`] : []),
  ];
}

/** sysctls of a node: a router (both families) with loose reverse-path filtering. */
export function nodeSysctls(ipv6: boolean): string[] {
  return [
    'net.ipv4.ip_forward=1',
    'net.ipv4.conf.all.rp_filter=2',
    'net.ipv4.conf.default.rp_filter=2',
    ...bridgeNetfilterOff(),
    ...(ipv6 ? ['net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1'] : ipv6Off()),
  ];
}

/**
 * IPv6 on a test network, set in a fresh namespace before any link exists so every link
 * inherits it: no duplicate address detection (link-local addresses would stay tentative for
 * a second; the global ones carry `nodad` anyway), no router advertisements accepted (the
 * harness installs every route itself), IPv6 explicitly on.
 */
export function ipv6TestDefaults(): string[] {
  return [
    'net.ipv6.conf.all.disable_ipv6=0',
    'net.ipv6.conf.default.disable_ipv6=0',
    'net.ipv6.conf.all.accept_dad=0',
    'net.ipv6.conf.default.accept_dad=0',
    'net.ipv6.conf.all.dad_transmits=0',
    'net.ipv6.conf.default.dad_transmits=0',
    'net.ipv6.conf.all.accept_ra=0',
    'net.ipv6.conf.default.accept_ra=0',
  ];
}

/**
 * br_netfilter (loaded on many hosts) would run bridged frames through iptables and
 * defragment them, hiding what really crosses the wire; turn it off in our bridges' namespaces.
 */
export function bridgeNetfilterOff(): string[] {
  return [
    'net.bridge.bridge-nf-call-iptables=0',
    'net.bridge.bridge-nf-call-ip6tables=0',
    'net.bridge.bridge-nf-call-arptables=0',
  ];
}

/** IPv6 off: no router solicitations or MLD noise on an IPv4-only test network. */
export function ipv6Off(): string[] {
  return ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
}
