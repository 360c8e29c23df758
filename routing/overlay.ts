/**
 * Overlay devices beside sealnet (issue 15). An encapsulating CNI (flannel VXLAN, Calico
 * VXLAN/IPIP, Geneve) sends a pod packet inside an outer node-to-node header, so the underlay
 * guard sees node addresses only. The steering program (routing/bpf/steer.c, `encapsulated()`)
 * reads the inner packet of VXLAN on UDP 4789/8472, Geneve on 6081, IPIP and IPv6-in-IP and drops
 * one to or from a remote pod prefix. An overlay it cannot read (another port, GRE) would carry
 * pod packets past it in plaintext: the agent refuses to start beside one ({@link checkOverlays}).
 */
import { SealnetError } from '../common/errors.js';
import { run } from '../common/spawn.js';

/** UDP ports whose VXLAN packets the steering program reads (IANA's, Linux's/flannel's). */
export const GUARDED_VXLAN_PORTS: readonly number[] = [4789, 8472];
/** UDP port whose Geneve packets the steering program reads. */
export const GUARDED_GENEVE_PORTS: readonly number[] = [6081];
/** Link kinds that encapsulate IP the program reads by protocol number (IPIP 4, IPv6-in-IP 41). */
const GUARDED_IP_KINDS = new Set(['ipip', 'sit', 'ip6tnl']);
/** Link kinds that encapsulate and that the program does not read. */
const UNGUARDED_KINDS = new Set(['gre', 'gretap', 'ip6gre', 'ip6gretap', 'erspan', 'ip6erspan', 'bareudp']);

/** An encapsulating link, from `ip -d -j link show`. */
export interface OverlayLink {
  readonly name: string;
  readonly kind: string;
  /** UDP destination port (VXLAN, Geneve). */
  readonly port: number | undefined;
  readonly up: boolean;
}

/** What {@link classifyOverlays} found. */
export interface OverlayVerdict {
  /** Overlay links whose encapsulated pod packets the guard reads (dropped when they bypass the tunnel). */
  readonly guarded: readonly OverlayLink[];
  /** Overlay links whose packets the guard cannot read, each with why. */
  readonly unguarded: readonly { readonly link: OverlayLink; readonly why: string }[];
}

/** The encapsulating links in `ip -d -j link show` output (other links are left out). Pure. */
export function parseOverlayLinks(json: string): OverlayLink[] {
  const links = JSON.parse(json === '' ? '[]' : json) as unknown;
  if (!Array.isArray(links)) throw new SealnetError('NETLINK_FAILED', 'ip -d -j link show: not a JSON array');
  const out: OverlayLink[] = [];
  for (const l of links as Record<string, unknown>[]) {
    const info = (l['linkinfo'] ?? {}) as { info_kind?: unknown; info_data?: { port?: unknown } };
    const kind = typeof info.info_kind === 'string' ? info.info_kind : '';
    if (kind !== 'vxlan' && kind !== 'geneve' && !GUARDED_IP_KINDS.has(kind) && !UNGUARDED_KINDS.has(kind)) continue;
    const port = typeof info.info_data?.port === 'number' ? info.info_data.port : undefined;
    const flags = Array.isArray(l['flags']) ? (l['flags'] as unknown[]) : [];
    out.push({ name: String(l['ifname'] ?? '?'), kind, port, up: flags.includes('UP') });
  }
  return out;
}

/**
 * Sorts overlay links into those the guard reads and those it cannot. A VXLAN/Geneve link on
 * another port is unguarded whether up or not (a CNI creates it before it sets it up); a GRE-family
 * link only when up (the kernel makes a down `gre0`, `erspan0`… fallback device in every namespace
 * once the module is loaded). Pure.
 */
export function classifyOverlays(links: readonly OverlayLink[]): OverlayVerdict {
  const guarded: OverlayLink[] = [];
  const unguarded: { link: OverlayLink; why: string }[] = [];
  for (const link of links) {
    if (link.kind === 'vxlan' || link.kind === 'geneve') {
      const ports = link.kind === 'vxlan' ? GUARDED_VXLAN_PORTS : GUARDED_GENEVE_PORTS;
      if (link.port !== undefined && ports.includes(link.port)) guarded.push(link);
      else
        unguarded.push({
          link,
          why: `${link.kind} on UDP port ${link.port ?? 'unknown'} (the guard reads ${link.kind} on ${ports.join(', ')} only)`,
        });
    } else if (GUARDED_IP_KINDS.has(link.kind)) {
      guarded.push(link);
    } else if (link.up) {
      unguarded.push({ link, why: `${link.kind} (the guard does not read inside ${link.kind})` });
    }
  }
  return { guarded, unguarded };
}

/** The refusal for unguarded overlays: names each link, why, and what to do. */
export function overlayRefusal(v: OverlayVerdict): SealnetError | undefined {
  if (v.unguarded.length === 0) return undefined;
  const list = v.unguarded.map((u) => `${u.link.name}: ${u.why}`).join('; ');
  return new SealnetError(
    'KERNEL_FEATURE_MISSING',
    `refusing to run fail-open: pod traffic could leave this node in plaintext inside an overlay sealnet cannot guard (${list}). ` +
      `Configure the CNI's VXLAN on port 4789 or 8472 (flannel: Backend.Port) or Geneve on 6081, or use a routed CNI backend`,
  );
}

/** Reads the node's overlay links (`ip -d -j link show`) and classifies them. */
export async function checkOverlays(): Promise<OverlayVerdict> {
  const r = await run('ip', ['-d', '-j', 'link', 'show'], { timeoutMs: 10_000 });
  return classifyOverlays(parseOverlayLinks(r.stdout));
}
