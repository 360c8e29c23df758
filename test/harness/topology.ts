/**
 * The namespace cluster's address plan and the `ip -batch` scripts that build it, as pure
 * functions. Addresses come only from 198.18.0.0/15 (underlay) and 100.64.0.0/10 (pods);
 * nothing here ever targets the root namespace: every script runs under `ip -n <ns>`, and
 * every veth is created with both ends inside namespaces of the run.
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
  if (!/^[a-z][a-z0-9]{2,10}$/.test(prefix)) throw new Error(`bad run prefix ${JSON.stringify(prefix)}: want 3–11 lowercase letters/digits starting with a letter`);
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
}

/**
 * One node's script: eth0 (a veth whose other end goes into the underlay namespace), the pod
 * bridge, one veth per pod (other end into the pod's namespace), and flannel-host-gw routes:
 * every remote pod CIDR via the owning node's underlay address, in the main table.
 */
export function nodeBatch(o: NodeBatchOptions): string[] {
  const { prefix, index: i } = o;
  const lines = [
    'link set lo up',
    `link add eth0 mtu ${o.mtu} type veth peer name ${vethNames.underlay(prefix, i)} mtu ${o.mtu} netns ${netnsNames.underlay(prefix)}`,
    `addr add ${nodeAddress(i)}/24 dev eth0`,
    'link set eth0 up',
    `link add ${POD_BRIDGE} mtu ${o.podMtu} type bridge`,
    `addr add ${podGateway(i)}/24 dev ${POD_BRIDGE}`,
    `link set ${POD_BRIDGE} up`,
  ];
  for (let j = 1; j <= o.pods; j++) {
    const v = vethNames.pod(prefix, j);
    lines.push(`link add ${v} mtu ${o.podMtu} type veth peer name eth0 mtu ${o.podMtu} netns ${netnsNames.pod(prefix, i, j)}`);
    lines.push(`link set ${v} master ${POD_BRIDGE} up`);
  }
  for (const k of o.peers) lines.push(podRouteLine('add', k));
  return lines;
}

/** The main-table route a node holds to node `k`'s pods (what flannel host-gw installs). */
export function podRouteLine(op: 'add' | 'del', k: number): string {
  return op === 'add' ? `route add ${podCidr(k)} via ${nodeAddress(k)} dev eth0` : `route del ${podCidr(k)}`;
}

/** One pod's script: address, up, default route via the node's pod bridge. */
export function podBatch(i: number, j: number): string[] {
  return ['link set lo up', `addr add ${podAddress(i, j)}/24 dev eth0`, 'link set eth0 up', `route add default via ${podGateway(i)} dev eth0`];
}

/** sysctls of a node: a router with loose reverse-path filtering. */
export function nodeSysctls(ipv6: boolean): string[] {
  return [
    'net.ipv4.ip_forward=1',
    'net.ipv4.conf.all.rp_filter=2',
    'net.ipv4.conf.default.rp_filter=2',
    ...bridgeNetfilterOff(),
    ...(ipv6 ? [] : ipv6Off()),
  ];
}

/**
 * br_netfilter (loaded on many hosts) would run bridged frames through iptables and
 * defragment them, hiding what really crosses the wire; turn it off in our bridges' namespaces.
 */
export function bridgeNetfilterOff(): string[] {
  return ['net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0', 'net.bridge.bridge-nf-call-arptables=0'];
}

/** IPv6 off: no router solicitations or MLD noise on an IPv4-only test network. */
export function ipv6Off(): string[] {
  return ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
}
