import { describe, expect, it } from '@jest/globals';
import { NodeToNodeLinks, tunnelLinkAddress } from './nodetonode.js';

const route = (
  dst: string,
  src?: string,
): { dst: string; dev: string; mtu: number; src: string | undefined; table: number } => ({
  dst,
  dev: 'sealwg0',
  mtu: 1440,
  src,
  table: 5188,
});

describe('tunnelLinkAddress', () => {
  it('is the IPv4 pod gateway, else an IPv4 endpoint, never IPv6', () => {
    expect(
      tunnelLinkAddress([route('fd00:64:2::/64', 'fd00:64:1::1'), route('100.64.2.0/24', '100.64.1.1')], '198.18.0.1'),
    ).toBe('100.64.1.1');
    expect(tunnelLinkAddress([route('100.64.2.0/24')], '198.18.0.1')).toBe('198.18.0.1');
    expect(tunnelLinkAddress([], 'fd00:198:18::1')).toBeUndefined();
  });
});

describe('NodeToNodeLinks', () => {
  function fakes(): {
    calls: string[];
    mirror: { ensureAddress: (l: string, a: string) => Promise<boolean> };
    rp: (l: string) => Promise<boolean>;
    have: Set<string>;
  } {
    const calls: string[] = [];
    const have = new Set<string>();
    return {
      calls,
      have,
      mirror: {
        ensureAddress: async (l, a) => {
          calls.push(`addr ${l} ${a}`);
          if (have.has(`addr ${l}`)) return false;
          have.add(`addr ${l}`);
          return true;
        },
      },
      rp: async (l) => {
        calls.push(`rp ${l}`);
        if (have.has(`rp ${l}`)) return false;
        have.add(`rp ${l}`);
        return true;
      },
    };
  }

  it('adds the address and loose rp_filter on every link once, then re-reads only after a while or a new link', async () => {
    const f = fakes();
    const n = new NodeToNodeLinks(f.rp);
    const ops: Record<string, number> = {};
    const errors: unknown[] = [];
    const fail = (_s: string, e: unknown): void => void errors.push(e);
    const links = [
      { name: 'sealwg0', ifindex: 7 },
      { name: 'sealwg1', ifindex: 8 },
    ];
    await n.ensure({ mirror: f.mirror, links, v4: '100.64.1.1', ops, fail, now: 0 });
    expect(ops).toEqual({ address_add: 2, sysctl_set: 2 });
    expect(f.calls).toEqual(['addr sealwg0 100.64.1.1', 'rp sealwg0', 'addr sealwg1 100.64.1.1', 'rp sealwg1']);
    await n.ensure({ mirror: f.mirror, links, v4: '100.64.1.1', ops, fail, now: 5_000 });
    expect(f.calls).toHaveLength(4);
    await n.ensure({ mirror: f.mirror, links, v4: '100.64.1.1', ops, fail, now: 20_000 });
    expect(f.calls).toHaveLength(8);
    expect(ops).toEqual({ address_add: 2, sysctl_set: 2 });
    await n.ensure({
      mirror: f.mirror,
      links: [{ name: 'sealwg0', ifindex: 9 }],
      v4: '100.64.1.1',
      ops,
      fail,
      now: 21_000,
    });
    expect(f.calls).toHaveLength(10);
    expect(errors).toEqual([]);
  });

  it('reports a failure, and tries again on the next pass', async () => {
    const f = fakes();
    let broken = true;
    const n = new NodeToNodeLinks(async (l) => {
      if (broken) throw new Error('read-only /proc/sys');
      return f.rp(l);
    });
    const errors: string[] = [];
    const ops: Record<string, number> = {};
    await n.ensure({
      mirror: f.mirror,
      links: [{ name: 'sealwg0', ifindex: 7 }],
      v4: '100.64.1.1',
      ops,
      fail: (s, e) => void errors.push(`${s}: ${String(e)}`),
      now: 0,
    });
    expect(errors).toEqual(['node_to_node: Error: read-only /proc/sys']);
    broken = false;
    await n.ensure({
      mirror: f.mirror,
      links: [{ name: 'sealwg0', ifindex: 7 }],
      v4: '100.64.1.1',
      ops,
      fail: (s, e) => void errors.push(`${s}: ${String(e)}`),
      now: 1,
    });
    expect(errors).toHaveLength(1);
    expect(ops).toEqual({ address_add: 1, sysctl_set: 1 });
  });

  it('does nothing on an IPv6-only node (no IPv4 reverse-path filter applies)', async () => {
    const f = fakes();
    await new NodeToNodeLinks(f.rp).ensure({
      mirror: f.mirror,
      links: [{ name: 'sealwg0', ifindex: 7 }],
      v4: undefined,
      ops: {},
      fail: () => undefined,
    });
    expect(f.calls).toEqual([]);
  });
});
