// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sealnet traffic steering at TC (clsact) (fail-closed steering).
 *
 * Three classifiers share one set of maps (pinned under /sys/fs/bpf/sealnet):
 *
 *   sealnet_egress     egress of the underlay interface. Every plaintext packet that can leave
 *                      the node crosses this hook, whatever produced it (pod, host, another
 *                      tool's redirect), so fail-closed is enforced here. Destination in the
 *                      remote LPM map: ready -> bpf_redirect into the tunnel; not ready -> drop.
 *   sealnet_ingress    ingress of the underlay interface. Plaintext whose source is a remote pod
 *                      prefix is dropped: the receiver refuses what a misconfigured or fail-open
 *                      sender leaked, so a leak breaks connectivity instead of passing silently.
 *                      With node-to-node encryption the same holds for a remote node address:
 *                      only tunnel packets (and IPv6 neighbour discovery) may come from it.
 *
 * Exempt prefixes (the API server) pass whichever end of the packet they are: a node must reach
 * the API server, and the API server's replies must reach the node, even before the node has a
 * key, so both directions on both hooks look at source and destination. Except for remote pod
 * prefixes: a packet to one (egress) or from one (ingress) is judged by its entry first, so an
 * exemption never opens a plaintext path to or from pods on other nodes.
 *
 * The tunnel's own packets are known at egress by their mark only (WireGuard's fwmark, the
 * output mark of sealnet's XFRM states), never by port or protocol number, which any pod or
 * host process can choose.
 *   sealnet_from_pod   ingress of a pod-facing interface (optional). Sets skb->mark for entries
 *                      in XFRM mode: XFRM picks its policy during routing, before the egress
 *                      qdisc, so a mark set at underlay egress would come too late.
 *
 * Layout of every map key and value is mirrored in routing/bpf/layout.ts; the kernel test
 * compares both through the object's BTF. Zero values are always the safe ones: a zero config
 * means fail-closed, a zero entry means not ready.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* ---- map layouts (mirrored in layout.ts) ---- */

#define SEALNET_FAMILY_V4 4
#define SEALNET_FAMILY_V6 6

/* LPM key: prefixlen counts the 32 family bits too (IPv4 /24 -> 32 + 24). One trie holds both
 * families; the family word keeps an IPv4 address apart from an IPv4-mapped IPv6 address. */
struct lpm_key {
	__u32 prefixlen;
	__u32 family;
	__u8 addr[16];
};

enum entry_state {
	STATE_NOT_READY = 0, /* a peer owns the prefix, its tunnel is not usable: drop */
	STATE_READY = 1,     /* steer into the tunnel */
	STATE_NO_PEER = 2,   /* known to be remote (cluster pod range), no peer owns it: drop */
};

enum entry_action {
	ACTION_REDIRECT = 0, /* bpf_redirect(ifindex) into the tunnel device (WireGuard) */
	ACTION_MARK = 1,     /* set skb->mark for an XFRM policy (IPsec) */
};

enum entry_kind {
	KIND_POD = 0,  /* pod CIDR: never a tunnel endpoint, so port/ESP exemptions do not apply */
	KIND_NODE = 1, /* node address (node-to-node encryption): tunnel packets to it pass */
};

struct remote_value {
	__u32 ifindex;
	__u32 mark;
	__u32 peer_id;
	__u8 state;
	__u8 action;
	__u8 kind;
	__u8 reserved;
};

#define CONFIG_F_FAIL_OPEN 1u /* pass (and count) what fail-closed would drop */
#define CONFIG_F_ESP 2u       /* the node runs IPsec: ESP arriving at the underlay is tunnel traffic */

struct config {
	__u32 flags;
	__u16 wg_port;     /* WireGuard listen port (host order); 0 = none. A rotation's second link
			    * listens on wg_port + 1 (tunnels/rotation/wireguard.ts). */
	__u16 esp_udp_port; /* UDP-encapsulated ESP port (4500); 0 = none */
	__u32 wg_fwmark;   /* mark the tunnel's own sockets put on their packets; 0 = none */
	__u32 mark_mask;   /* bits of skb->mark ACTION_MARK owns */
};

enum hook {
	HOOK_EGRESS = 0,
	HOOK_INGRESS = 1,
	HOOK_FROM_POD = 2,
	HOOK_MAX = 4,
};

enum reason {
	CNT_REDIRECTED = 0,
	CNT_MARKED = 1,
	CNT_DROP_NOT_READY = 2,
	CNT_DROP_NO_PEER = 3,
	CNT_DROP_BYPASS = 4,       /* plaintext to an XFRM-mode peer reached egress: XFRM missed it */
	CNT_DROP_BAD_ENTRY = 5,    /* ready entry without a usable ifindex */
	CNT_DROP_PLAINTEXT_IN = 6, /* ingress: plaintext from a remote pod prefix */
	CNT_PASS_ENCRYPTED = 7,
	CNT_PASS_EXEMPT = 8,
	CNT_PASS_OTHER = 9,
	CNT_PASS_FAIL_OPEN = 10,
	CNT_PASS_DECRYPTED = 11,
	CNT_DROP_NO_TUNNEL = 12,   /* ready entry whose tunnel device no longer exists */
	CNT_DROP_ENCAPSULATED = 13, /* a pod packet inside an overlay's VXLAN/Geneve/IPIP packet */
	CNT_REASONS = 16,
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key);
	__type(value, struct remote_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sealnet_remote SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key);
	__type(value, __u32);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sealnet_exempt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct config);
	__uint(max_entries, 1);
} sealnet_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, HOOK_MAX * CNT_REASONS);
} sealnet_counters SEC(".maps");

/* ---- packet parsing ---- */

#define IPPROTO_ESP_ 50
#define IPV6_FRAG_HDR 44
#define IPV6_MAX_EXT 6 /* extension headers walked before giving up on the upper layer */
#define IP_FRAG_OFFSET_MASK 0x1fff

struct pkt {
	struct lpm_key dst;
	struct lpm_key src;
	__u8 proto;     /* L4 protocol; 0 when unknown (non-first fragment, unparsed header) */
	__u8 has_ports;
	__u8 icmp6_type; /* ICMPv6 type when proto is ICMPv6 */
	__u16 l4_off;   /* offset of the L4 header from the network header; 0 when unknown */
	__u16 sport;    /* host order */
	__u16 dport;
};

/* Reads relative to the network header, so the same code works on Ethernet and L3 devices. */
static __always_inline int load_net(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_NET);
}

static __always_inline void load_ports(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u16 ports[2];

	p->l4_off = off;
	if (p->proto == IPPROTO_ICMPV6) {
		__u8 type;

		if (load_net(skb, off, &type, sizeof(type)) == 0)
			p->icmp6_type = type;
		return;
	}
	if (p->proto != IPPROTO_UDP)
		return;
	if (load_net(skb, off, ports, sizeof(ports)) < 0)
		return;
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
	p->has_ports = 1;
}

/* Returns 0 for a parsed IPv4/IPv6 packet, -1 for anything else (ARP, LLDP, truncated). */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (load_net(skb, 0, &ip, sizeof(ip)) < 0 || ip.version != 4)
			return -1;
		p->dst.family = p->src.family = SEALNET_FAMILY_V4;
		p->dst.prefixlen = p->src.prefixlen = 32 + 32;
		__builtin_memcpy(p->dst.addr, &ip.daddr, 4);
		__builtin_memcpy(p->src.addr, &ip.saddr, 4);
		if (bpf_ntohs(ip.frag_off) & IP_FRAG_OFFSET_MASK)
			return 0; /* non-first fragment: no L4 header */
		p->proto = ip.protocol;
		load_ports(skb, (__u32)ip.ihl * 4, p);
		return 0;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u32 off = sizeof(ip6);
		__u8 next;

		if (load_net(skb, 0, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
			return -1;
		p->dst.family = p->src.family = SEALNET_FAMILY_V6;
		p->dst.prefixlen = p->src.prefixlen = 32 + 128;
		__builtin_memcpy(p->dst.addr, &ip6.daddr, 16);
		__builtin_memcpy(p->src.addr, &ip6.saddr, 16);
		next = ip6.nexthdr;
		/* Walk the extension headers (RFC 8200 section 4) to the upper-layer header, at most
		 * IPV6_MAX_EXT of them (the verifier needs a bound). The destination was read above, so
		 * a chain too long or truncated changes nothing about steering: proto stays 0 (unknown),
		 * and unknown is never "encrypted" (is_encrypted) nor neighbour discovery, so such a
		 * packet is steered or dropped, never passed as tunnel traffic. */
#pragma unroll
		for (int i = 0; i < IPV6_MAX_EXT; i++) {
			__u8 h[4];

			if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS && next != IPV6_FRAG_HDR && next != IPPROTO_AH)
				break;
			if (load_net(skb, off, h, sizeof(h)) < 0)
				return 0;
			if (next == IPV6_FRAG_HDR) {
				/* nexthdr(1) reserved(1) offset+flags(2): only a first fragment has ports. */
				if (((h[2] << 8) | h[3]) & 0xfff8)
					return 0;
				off += 8;
			} else if (next == IPPROTO_AH) {
				off += ((__u32)h[1] + 2) * 4; /* RFC 4302: length in 4-octet units, minus 2 */
			} else {
				off += ((__u32)h[1] + 1) * 8; /* length in 8-octet units, not counting the first */
			}
			next = h[0];
		}
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS || next == IPV6_FRAG_HDR || next == IPPROTO_AH)
			return 0; /* chain longer than IPV6_MAX_EXT: upper layer unknown */
		p->proto = next;
		load_ports(skb, off, p);
		return 0;
	}
	return -1;
}

/* ---- overlays (VXLAN, Geneve, IPIP) ---- */

/* An encapsulating CNI (flannel VXLAN, Calico VXLAN/IPIP, Geneve) hands a pod packet to its
 * tunnel device, which sends it inside an outer node-to-node header: at the underlay the outer
 * addresses are node addresses, so the pod prefix checks above never see it. Under sealnet no
 * pod packet to or from a remote pod prefix may travel that way (the tunnel is sealnet's, and a
 * pod packet inside an overlay is plaintext on the wire), so the inner header is read and judged
 * by the same map. The ports are the well-known ones: VXLAN 4789 (IANA) and 8472 (Linux's
 * default, flannel's), Geneve 6081. The agent refuses to start beside an overlay device on
 * another port (routing/overlay.ts), so no overlay goes unread. */
#define VXLAN_PORT_IANA 4789
#define VXLAN_PORT_LINUX 8472
#define GENEVE_PORT 6081
#define ETH_P_TEB_ 0x6558 /* transparent Ethernet bridging: Geneve carrying an Ethernet frame */
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_IN_IP 41

/* Reads the inner packet's addresses at `off` (from the network header), `ethertype` its
 * protocol. Returns 0 when it holds an IPv4/IPv6 header. */
static __always_inline int inner_addrs(struct __sk_buff *skb, __u32 off, __u16 ethertype, struct lpm_key *src,
				       struct lpm_key *dst)
{
	if (ethertype == ETH_P_IP) {
		struct iphdr ip;

		if (load_net(skb, off, &ip, sizeof(ip)) < 0 || ip.version != 4)
			return -1;
		src->family = dst->family = SEALNET_FAMILY_V4;
		src->prefixlen = dst->prefixlen = 32 + 32;
		__builtin_memcpy(src->addr, &ip.saddr, 4);
		__builtin_memcpy(dst->addr, &ip.daddr, 4);
		return 0;
	}
	if (ethertype == ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (load_net(skb, off, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
			return -1;
		src->family = dst->family = SEALNET_FAMILY_V6;
		src->prefixlen = dst->prefixlen = 32 + 128;
		__builtin_memcpy(src->addr, &ip6.saddr, 16);
		__builtin_memcpy(dst->addr, &ip6.daddr, 16);
		return 0;
	}
	return -1;
}

/* The addresses of the packet inside an overlay packet: VXLAN or Geneve (by UDP destination
 * port), IPIP or IPv6-in-IPv4. Returns 0 when `p` is one and the inner header was read. */
static __always_inline int encapsulated(struct __sk_buff *skb, const struct pkt *p, struct lpm_key *src,
					struct lpm_key *dst)
{
	__u32 off;
	__u16 ethertype;

	if (p->l4_off == 0)
		return -1;
	if (p->proto == IPPROTO_IPIP_)
		return inner_addrs(skb, p->l4_off, ETH_P_IP, src, dst);
	if (p->proto == IPPROTO_IPV6_IN_IP)
		return inner_addrs(skb, p->l4_off, ETH_P_IPV6, src, dst);
	if (p->proto != IPPROTO_UDP || !p->has_ports)
		return -1;
	off = p->l4_off + 8; /* UDP header */
	if (p->dport == VXLAN_PORT_IANA || p->dport == VXLAN_PORT_LINUX) {
		off += 8 + ETH_HLEN; /* VXLAN header (RFC 7348), inner Ethernet */
		if (load_net(skb, off - 2, &ethertype, sizeof(ethertype)) < 0)
			return -1;
		return inner_addrs(skb, off, bpf_ntohs(ethertype), src, dst);
	}
	if (p->dport == GENEVE_PORT) {
		__u8 g[4];

		/* RFC 8926: ver(2) opt_len(6) | flags | protocol type(16); options of opt_len * 4 bytes. */
		if (load_net(skb, off, g, sizeof(g)) < 0)
			return -1;
		ethertype = ((__u16)g[2] << 8) | g[3];
		off += 8 + (__u32)(g[0] & 0x3f) * 4;
		if (ethertype == ETH_P_TEB_) {
			if (load_net(skb, off + ETH_HLEN - 2, &ethertype, sizeof(ethertype)) < 0)
				return -1;
			ethertype = bpf_ntohs(ethertype);
			off += ETH_HLEN;
		}
		return inner_addrs(skb, off, ethertype, src, dst);
	}
	return -1;
}

/* ---- verdict helpers ---- */

static __always_inline void count(__u32 hook, __u32 reason, struct __sk_buff *skb)
{
	__u32 idx = hook * CNT_REASONS + reason;
	struct counter *c = bpf_map_lookup_elem(&sealnet_counters, &idx);

	if (c) {
		c->packets += 1;
		c->bytes += skb->len;
	}
}

static __always_inline struct config *config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sealnet_config, &zero);
}

/* The tunnel's own packets leaving the node: WireGuard puts its fwmark on every packet it sends
 * (the kernel module sets skb->mark, wireguard-go SO_MARK) and sealnet's outbound XFRM states set
 * the same value as their output mark (XFRM_OUTPUT_MARK), fragments included. Ports and protocol
 * numbers prove nothing here: a pod can send UDP to or from port 51880, or raw IP protocol 50,
 * and its packets reach this hook with mark 0 (the kernel clears skb->mark when a packet crosses
 * network namespaces). Without a configured mark nothing is tunnel traffic. */
static __always_inline int is_tunnel_out(struct __sk_buff *skb, const struct config *cfg)
{
	return cfg->wg_fwmark != 0 && (skb->mark & cfg->wg_fwmark) == cfg->wg_fwmark;
}

/* Tunnel traffic arriving: UDP to one of this node's tunnel ports (the WireGuard listen port, the
 * port of a rotation's second link, the ESP-in-UDP port), or ESP when the node runs IPsec. Only
 * the destination port counts: it names the socket here that receives the packet, and that
 * socket discards what is not the tunnel's. A source port is whatever the sender chose. */
static __always_inline int is_tunnel_in(const struct config *cfg, const struct pkt *p)
{
	if (p->proto == IPPROTO_ESP_)
		return (cfg->flags & CONFIG_F_ESP) != 0;
	if (!p->has_ports)
		return 0;
	if (cfg->wg_port != 0 && (p->dport == cfg->wg_port || p->dport == (__u32)cfg->wg_port + 1))
		return 1;
	if (cfg->esp_udp_port != 0 && p->dport == cfg->esp_udp_port)
		return 1;
	return 0;
}

/* The tunnel device of a ready entry still exists. An agent killed with its link deleted (or a
 * link deleted under a running agent) leaves an ifindex that names nothing; bpf_redirect() would
 * still return TC_ACT_REDIRECT and the kernel would drop the packet later (skb_do_redirect), out
 * of sight of the counters. bpf_check_mtu() resolves the ifindex in the packet's namespace and
 * fails with -ENODEV when there is no such device. A device that exists but is down is not
 * caught here (the kernel drops what is redirected to it). */
static __always_inline int tunnel_exists(struct __sk_buff *skb, __u32 ifindex)
{
	__u32 mtu = 0;

	return bpf_check_mtu(skb, ifindex, &mtu, 0, 0) >= 0;
}

/* IPv6 neighbour discovery (router/neighbour solicitation and advertisement, redirect) between
 * nodes: it must stay on the underlay, or neighbour unreachability detection fails and the
 * underlay itself (the tunnel's UDP included) breaks. It never carries payload. */
static __always_inline int is_neighbor_discovery(const struct pkt *p)
{
	return p->proto == IPPROTO_ICMPV6 && p->icmp6_type >= 133 && p->icmp6_type <= 137;
}

/* Either end of the packet in the exempt map. Never asked for a packet to or from a remote pod
 * prefix: an exemption (the API server's address) must not open a plaintext path to pods. */
static __always_inline int is_exempt(struct pkt *p)
{
	return bpf_map_lookup_elem(&sealnet_exempt, &p->dst) || bpf_map_lookup_elem(&sealnet_exempt, &p->src);
}

/* Offset of the network header from skb->data at TC egress: ETH_HLEN on an Ethernet underlay,
 * 0 on an L3 device; -1 when neither holds the parsed header (then nothing is rewritten). */
static __always_inline int net_offset(struct __sk_buff *skb, const struct pkt *p)
{
	__u32 daddr_off = p->dst.family == SEALNET_FAMILY_V4 ? 16 : 24;
	__u8 d[4];

	if (bpf_skb_load_bytes(skb, ETH_HLEN + daddr_off, d, sizeof(d)) == 0 && __builtin_memcmp(d, p->dst.addr, 4) == 0)
		return ETH_HLEN;
	if (bpf_skb_load_bytes(skb, daddr_off, d, sizeof(d)) == 0 && __builtin_memcmp(d, p->dst.addr, 4) == 0)
		return 0;
	return -1;
}

#define TCP_FLAG_SYN 0x02
#define TCP_OPT_MSS 2
#define TCP_CSUM_OFF 16

/* Node-to-node encryption: host TCP to a node address takes its MSS from the underlay route
 * (1460), but the packet is redirected into the tunnel, whose MTU is smaller, and a full-size
 * segment would be lost there with no ICMP to tell the sender. So the MSS option of a SYN (and
 * SYN-ACK) to a node address is lowered to fit the tunnel device's MTU (read from the device:
 * bpf_check_mtu). Both ends run this, so both directions use the smaller segments. Linux puts
 * the MSS option first; a SYN with it elsewhere is left alone. */
static __always_inline void clamp_mss(struct __sk_buff *skb, const struct pkt *p, __u32 ifindex)
{
	__u8 tcp[24]; /* the fixed header and the first option */
	__u32 mtu = 0;
	__u16 mss, want, old_be, new_be;
	int nh;

	if (p->proto != IPPROTO_TCP || p->l4_off == 0)
		return;
	if (load_net(skb, p->l4_off, tcp, sizeof(tcp)) < 0)
		return;
	if (!(tcp[13] & TCP_FLAG_SYN) || (tcp[12] >> 4) < 6 || tcp[20] != TCP_OPT_MSS || tcp[21] != 4)
		return;
	if (bpf_check_mtu(skb, ifindex, &mtu, 0, 0) < 0 || mtu <= 100)
		return;
	want = mtu - (p->dst.family == SEALNET_FAMILY_V4 ? 40 : 60);
	mss = ((__u16)tcp[22] << 8) | tcp[23];
	if (mss <= want)
		return;
	nh = net_offset(skb, p);
	if (nh < 0)
		return;
	old_be = bpf_htons(mss);
	new_be = bpf_htons(want);
	/* With CHECKSUM_PARTIAL (locally generated) the helper leaves the field alone: the
	 * checksum is completed later over the rewritten bytes. */
	bpf_l4_csum_replace(skb, nh + p->l4_off + TCP_CSUM_OFF, old_be, new_be, sizeof(__u16));
	bpf_skb_store_bytes(skb, nh + p->l4_off + 22, &new_be, sizeof(new_be), 0);
}

/* Drops, or under fail-open passes, and counts which. */
static __always_inline int deny(struct __sk_buff *skb, const struct config *cfg, __u32 hook, __u32 reason)
{
	if (cfg->flags & CONFIG_F_FAIL_OPEN) {
		count(hook, CNT_PASS_FAIL_OPEN, skb);
		return TC_ACT_OK;
	}
	count(hook, reason, skb);
	return TC_ACT_SHOT;
}

/* ---- programs ---- */

SEC("tc")
int sealnet_egress(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct remote_value *v;
	struct config *cfg = config();

	if (!cfg)
		return TC_ACT_SHOT; /* cannot happen for an array map; never fail open */
	if (parse(skb, &p) < 0) {
		count(HOOK_EGRESS, CNT_PASS_OTHER, skb);
		return TC_ACT_OK;
	}
	/* An overlay packet carrying a packet to a remote pod prefix: the pod packet bypassed the
	 * tunnel (its routes are gone, or its peer never was ready) and would leave in plaintext.
	 * Judged before any exemption: the outer destination may be an exempt node address. */
	{
		struct lpm_key isrc = {}, idst = {};

		if (encapsulated(skb, &p, &isrc, &idst) == 0) {
			v = bpf_map_lookup_elem(&sealnet_remote, &idst);
			if (v && v->kind == KIND_POD)
				return deny(skb, cfg, HOOK_EGRESS, CNT_DROP_ENCAPSULATED);
		}
	}
	v = bpf_map_lookup_elem(&sealnet_remote, &p.dst);
	/* A remote pod prefix is decided by its entry alone, before any exemption or tunnel test:
	 * an exempt source (the API server on this node replying to a remote pod) or an exempt
	 * address inside a pod range must not leave in plaintext, and the tunnel never sends to a
	 * pod address, so a packet to one is never the tunnel's own. */
	if (!v || v->kind != KIND_POD) {
		if (is_exempt(&p)) {
			count(HOOK_EGRESS, CNT_PASS_EXEMPT, skb);
			return TC_ACT_OK;
		}
		/* To a node address (node-to-node encryption) the tunnel's own packets must pass:
		 * redirecting them into the tunnel would loop them. Everything else to a node address is
		 * redirected. */
		if (is_tunnel_out(skb, cfg)) {
			count(HOOK_EGRESS, CNT_PASS_ENCRYPTED, skb);
			return TC_ACT_OK;
		}
		if (!v) {
			count(HOOK_EGRESS, CNT_PASS_OTHER, skb);
			return TC_ACT_OK;
		}
		if (is_neighbor_discovery(&p)) {
			count(HOOK_EGRESS, CNT_PASS_OTHER, skb);
			return TC_ACT_OK;
		}
	}
	if (v->state == STATE_NO_PEER)
		return deny(skb, cfg, HOOK_EGRESS, CNT_DROP_NO_PEER);
	if (v->state != STATE_READY)
		return deny(skb, cfg, HOOK_EGRESS, CNT_DROP_NOT_READY);
	if (v->action == ACTION_MARK)
		return deny(skb, cfg, HOOK_EGRESS, CNT_DROP_BYPASS);
	if (v->ifindex == 0 || v->ifindex == skb->ifindex)
		return deny(skb, cfg, HOOK_EGRESS, CNT_DROP_BAD_ENTRY);
	if (!tunnel_exists(skb, v->ifindex))
		return deny(skb, cfg, HOOK_EGRESS, CNT_DROP_NO_TUNNEL);
	if (v->kind == KIND_NODE)
		clamp_mss(skb, &p, v->ifindex);
	count(HOOK_EGRESS, CNT_REDIRECTED, skb);
	return bpf_redirect(v->ifindex, 0);
}

SEC("tc")
int sealnet_ingress(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct remote_value *v;
	struct bpf_xfrm_state xs;
	struct config *cfg = config();

	if (!cfg)
		return TC_ACT_SHOT;
	if (parse(skb, &p) < 0) {
		count(HOOK_INGRESS, CNT_PASS_OTHER, skb);
		return TC_ACT_OK;
	}
	/* What a fail-open or misconfigured sender leaked through an overlay: refused here too. */
	{
		struct lpm_key isrc = {}, idst = {};

		if (encapsulated(skb, &p, &isrc, &idst) == 0) {
			v = bpf_map_lookup_elem(&sealnet_remote, &isrc);
			if (v && v->kind == KIND_POD)
				return deny(skb, cfg, HOOK_INGRESS, CNT_DROP_ENCAPSULATED);
		}
	}
	v = bpf_map_lookup_elem(&sealnet_remote, &p.src);
	if (v && v->kind == KIND_POD) {
		/* From a remote pod prefix only an exempt destination (a remote pod reaching the API
		 * server here: its node passes that as exempt) or decrypted traffic may come in. An
		 * exempt source inside a pod range opens nothing, as on egress. */
		if (bpf_map_lookup_elem(&sealnet_exempt, &p.dst)) {
			count(HOOK_INGRESS, CNT_PASS_EXEMPT, skb);
			return TC_ACT_OK;
		}
		/* XFRM tunnel mode re-injects the decrypted inner packet through this hook, secpath set. */
		if (bpf_skb_get_xfrm_state(skb, 0, &xs, sizeof(xs), 0) == 0) {
			count(HOOK_INGRESS, CNT_PASS_DECRYPTED, skb);
			return TC_ACT_OK;
		}
		return deny(skb, cfg, HOOK_INGRESS, CNT_DROP_PLAINTEXT_IN);
	}
	if (is_exempt(&p)) {
		count(HOOK_INGRESS, CNT_PASS_EXEMPT, skb);
		return TC_ACT_OK;
	}
	if (!v) {
		count(HOOK_INGRESS, is_tunnel_in(cfg, &p) ? CNT_PASS_ENCRYPTED : CNT_PASS_OTHER, skb);
		return TC_ACT_OK;
	}
	/* A node address is in the map only with node-to-node encryption: from it, only the tunnel
	 * (decrypted traffic arrives on the tunnel device, not here) and neighbour discovery. */
	if (is_tunnel_in(cfg, &p)) {
		count(HOOK_INGRESS, CNT_PASS_ENCRYPTED, skb);
		return TC_ACT_OK;
	}
	if (is_neighbor_discovery(&p)) {
		count(HOOK_INGRESS, CNT_PASS_OTHER, skb);
		return TC_ACT_OK;
	}
	return deny(skb, cfg, HOOK_INGRESS, CNT_DROP_PLAINTEXT_IN);
}

SEC("tc")
int sealnet_from_pod(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct remote_value *v;
	struct config *cfg = config();

	if (!cfg)
		return TC_ACT_SHOT;
	if (parse(skb, &p) < 0)
		return TC_ACT_OK;
	if (bpf_map_lookup_elem(&sealnet_exempt, &p.dst))
		return TC_ACT_OK;
	v = bpf_map_lookup_elem(&sealnet_remote, &p.dst);
	/* Only marking happens here; drops and redirects are the egress hook's job. */
	if (!v || v->state != STATE_READY || v->action != ACTION_MARK) {
		count(HOOK_FROM_POD, CNT_PASS_OTHER, skb);
		return TC_ACT_OK;
	}
	skb->mark = (skb->mark & ~cfg->mark_mask) | (v->mark & cfg->mark_mask);
	count(HOOK_FROM_POD, CNT_MARKED, skb);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
