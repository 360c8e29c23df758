import { classifyOverlays, overlayRefusal, parseOverlayLinks } from './overlay.js';

/** `ip -d -j link show` as iproute2 6.1 prints it (trimmed to the fields read). */
const IP_JSON = JSON.stringify([
  { ifname: 'lo', flags: ['LOOPBACK', 'UP'], linkinfo: undefined },
  { ifname: 'eth0', flags: ['BROADCAST', 'UP'], linkinfo: { info_kind: 'veth' } },
  {
    ifname: 'flannel.1',
    flags: ['BROADCAST', 'MULTICAST', 'UP'],
    linkinfo: { info_kind: 'vxlan', info_data: { id: 1, port: 8472 } },
  },
  { ifname: 'vxlan.calico', flags: ['UP'], linkinfo: { info_kind: 'vxlan', info_data: { id: 4096, port: 4789 } } },
  { ifname: 'genev_sys_6081', flags: ['UP'], linkinfo: { info_kind: 'geneve', info_data: { port: 6081 } } },
  { ifname: 'tunl0', flags: ['NOARP', 'UP'], linkinfo: { info_kind: 'ipip' } },
  { ifname: 'gre0', flags: ['NOARP'], linkinfo: { info_kind: 'gre' } },
  { ifname: 'sealwg0', flags: ['UP'], linkinfo: { info_kind: 'wireguard' } },
]);

describe('overlay devices', () => {
  it('parses the encapsulating links only, with port and state', () => {
    expect(parseOverlayLinks(IP_JSON)).toEqual([
      { name: 'flannel.1', kind: 'vxlan', port: 8472, up: true },
      { name: 'vxlan.calico', kind: 'vxlan', port: 4789, up: true },
      { name: 'genev_sys_6081', kind: 'geneve', port: 6081, up: true },
      { name: 'tunl0', kind: 'ipip', port: undefined, up: true },
      { name: 'gre0', kind: 'gre', port: undefined, up: false },
    ]);
    expect(parseOverlayLinks('')).toEqual([]);
  });

  it("flannel's, Calico's and Geneve's default overlays are guarded; a down GRE fallback device is ignored", () => {
    const v = classifyOverlays(parseOverlayLinks(IP_JSON));
    expect(v.guarded.map((l) => l.name)).toEqual(['flannel.1', 'vxlan.calico', 'genev_sys_6081', 'tunl0']);
    expect(v.unguarded).toEqual([]);
    expect(overlayRefusal(v)).toBeUndefined();
  });

  it('refuses, naming the link and the fix, a VXLAN on another port (even down), a Geneve on another port, an up GRE', () => {
    const v = classifyOverlays([
      { name: 'flannel.1', kind: 'vxlan', port: 4790, up: false },
      { name: 'gn0', kind: 'geneve', port: 7000, up: true },
      { name: 'gre1', kind: 'gretap', port: undefined, up: true },
      { name: 'vx9', kind: 'vxlan', port: undefined, up: true },
    ]);
    expect(v.guarded).toEqual([]);
    expect(v.unguarded.map((u) => u.link.name)).toEqual(['flannel.1', 'gn0', 'gre1', 'vx9']);
    const err = overlayRefusal(v);
    expect(err?.message).toMatch(/refusing to run fail-open/);
    expect(err?.message).toContain('flannel.1: vxlan on UDP port 4790 (the guard reads vxlan on 4789, 8472 only)');
    expect(err?.message).toContain('gre1: gretap');
    expect(err?.message).toContain('Backend.Port');
  });
});
