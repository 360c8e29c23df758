/**
 * The scale bench's Node generator, status shapes, churn schedule and bounded waits (pure or
 * with fakes: no API server here; the bench itself measures sizes through the API server).
 */
import { ANNOTATIONS } from '../../common/constants.js';
import { Churn } from './scale-churn.js';
import {
  KUBELET_IMAGES,
  kubeletHeartbeatPatch,
  kubeletObject,
  kubeletStatus,
  LegacyStatus,
  statusAnnotation,
  SUMMARY_MAX_BYTES,
  summaryStatus,
} from './scale-kubelet.js';
import { simNode, type SimNode, type SimStore } from './scale-sim.js';
import { bounded } from './scale-wait.js';
import { lastLine } from './scale.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const NOW = new Date('2026-12-06T12:00:00Z');

describe('kubelet-sized Nodes', () => {
  it('are 10-20 KiB before managed fields, with 50 images, 5 conditions and node info', () => {
    const n = simNode(42);
    const obj = { ...kubeletObject(n), status: kubeletStatus(n, NOW) };
    const bytes = Buffer.byteLength(JSON.stringify(obj));
    expect(bytes).toBeGreaterThan(10 * 1024);
    expect(bytes).toBeLessThan(20 * 1024);
    const st = obj.status as { images: { names: string[] }[]; conditions: unknown[]; nodeInfo: Record<string, string> };
    expect(st.images).toHaveLength(KUBELET_IMAGES);
    expect(st.images.every((i) => /@sha256:[0-9a-f]{64}$/.test(i.names[0] as string))).toBe(true);
    expect(st.conditions).toHaveLength(5);
    expect(st.nodeInfo.kubeletVersion).toBe('v1.36.4');
    expect(obj.spec.podCIDR).toBe(n.podCIDR);
  });

  it('heartbeat patches only touch condition heartbeats', () => {
    const p = kubeletHeartbeatPatch(NOW);
    expect(Object.keys(p.status)).toEqual(['conditions']);
    expect(p.status.conditions.every((c) => Object.keys(c).sort().join() === 'lastHeartbeatTime,type')).toBe(true);
  });
});

describe('status annotation shapes', () => {
  it('summary stays within 1 KiB whatever N (up to 20,000)', () => {
    for (const n of [1, 2, 100, 5000, 10_000, 20_000])
      expect(Buffer.byteLength(summaryStatus('s16000', n, NOW))).toBeLessThanOrEqual(SUMMARY_MAX_BYTES);
  });

  it('legacy is what encodeStatus publishes: grows with N up to the 64 KiB bound, then omits peers', () => {
    const legacy = new LegacyStatus();
    const small = legacy.valueFor('s00001', 10, NOW);
    const big = legacy.valueFor('s00001', 5000, NOW);
    expect(Buffer.byteLength(small)).toBeLessThan(2048);
    expect(Buffer.byteLength(big)).toBeGreaterThan(60 * 1024);
    expect(Buffer.byteLength(big)).toBeLessThanOrEqual(64 * 1024);
    const r = JSON.parse(big) as { node: string; omitted: number; peers: unknown[] };
    expect(r.node).toBe('s00001');
    expect(r.omitted + r.peers.length).toBe(4999);
    expect(r.omitted).toBeGreaterThan(0);
  });

  it('none publishes nothing', () => {
    expect(statusAnnotation('none', new LegacyStatus(), 's1', 10, NOW)).toEqual({});
    expect(Object.keys(statusAnnotation('summary', new LegacyStatus(), 's1', 10, NOW))).toEqual([ANNOTATIONS.status]);
  });
});

describe('churn', () => {
  it('issues updates at N / period per second, round-robin, and counts what a slow store could not take', async () => {
    const seen: string[] = [];
    const store: SimStore = {
      write: async () => undefined,
      patch: async () => undefined,
      remove: async () => undefined,
      heartbeat: async (ns: readonly SimNode[]) => void seen.push(...ns.map((n) => n.name)),
    };
    const nodes = Array.from({ length: 10 }, (_, i) => simNode(i + 1));
    const c = new Churn(store, nodes, { periodS: 0.5 }); // 20 updates/s
    await new Promise((r) => setTimeout(r, 1000));
    const st = await c.stop();
    expect(st.targetPerSecond).toBe(20);
    expect(st.done).toBeGreaterThanOrEqual(15);
    expect(st.done).toBeLessThanOrEqual(21);
    expect(seen.slice(0, 10)).toEqual(nodes.map((n) => n.name));

    const stuck: SimStore = { ...store, heartbeat: () => new Promise(() => undefined) };
    const s = new Churn(stuck, nodes, { periodS: 0.1, maxInFlight: 2, timeoutMs: 300 });
    await new Promise((r) => setTimeout(r, 500));
    const st2 = await s.stop();
    expect(st2.skipped).toBeGreaterThan(0);
    expect(st2.failed).toBeGreaterThan(0);
    expect(st2.lastError).toMatch(/took over 300 ms/);
  });
});

describe('bounded waits', () => {
  it('names what never settled', async () => {
    await expect(bounded('the API server', 50, new Promise(() => undefined))).rejects.toThrow(
      'timed out after 0 s waiting for the API server',
    );
    await expect(bounded('x', 1000, Promise.resolve(7))).resolves.toBe(7);
  });

  it('lastLine reads the agent log tail', () => {
    const d = mkdtempSync(join(tmpdir(), 'scale-test-'));
    try {
      writeFileSync(join(d, 'a.log'), '{"msg":"one"}\n{"msg":"FATAL ERROR: Reached heap limit"}\n\n');
      expect(lastLine(join(d, 'a.log'))).toBe('{"msg":"FATAL ERROR: Reached heap limit"}');
      expect(lastLine(join(d, 'missing.log'))).toBeUndefined();
      writeFileSync(
        join(d, 'b.log'),
        '{"msg":"synced"}\nFATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed\n 1: 0xb8 node::Abort()\n18: 0xbb835e _start\n',
      );
      expect(lastLine(join(d, 'b.log'))).toBe(
        'FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed',
      );
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
