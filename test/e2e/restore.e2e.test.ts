/**
 * Restart with the link gone (issue 15): what a `helm upgrade` does to a node running
 * wireguard-go — the agent dies and wireguard-go with it, the tunnel link disappears, the new
 * agent starts while its node store has not synced yet (in a cluster: ~13 s of client start,
 * list and watch). Here: kill -9 of n1's agent, `ip link del sealwg0` (wireguard-go exits with
 * it), and a restart whose file store appears only STORE_DELAY_MS later (the restarted agent's
 * store directory is a path that becomes a link to the real store then).
 *
 * Under a numbered UDP stream n2p1 → n1p1 (each datagram carries a canary) and a capture on the
 * underlay, measured twice: with `wireguard.restoreLastApplied: false` (the behaviour before
 * the restore) and with the default (the last applied state programmed at start). Both runs
 * must leak nothing; the restore run must have its tunnel back before the store appeared, the
 * run without must not (the sanity check that the scenario measures what it claims). Loss and
 * time to the first datagram through the new tunnel are printed, not asserted.
 */
import { jest } from '@jest/globals';
import { readFile, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import { newCanary, startUdpStream, type UdpStreamResult } from '../harness/traffic.js';
import { waitFor } from '../harness/wait.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('restore.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(240_000);

const STORE_DELAY_MS = 8000;
const PPS = 200;

/** What one kill-and-restart cost one direction. */
interface Direction {
  readonly sent: number;
  /** Datagrams not received (sent − received over the whole run). */
  readonly lost: number;
  readonly longestGap: number;
  /** ms from the agent's start to the send time of the first datagram received after the gap. */
  readonly firstAfterStartMs: number | undefined;
  /** The first datagram through the new tunnel left before the store appeared. */
  readonly beforeStore: boolean;
}

/** What one kill-and-restart cost. */
interface Outcome {
  readonly restore: boolean;
  /** n2p1 → n1p1 (into the restarted node). */
  readonly inbound: Direction;
  /** n1p1 → n2p1 (out of it: through its steering). */
  readonly outbound: Direction;
  readonly podPlaintextPackets: number;
  readonly canaryHits: number;
  readonly captureComplete: boolean;
  readonly kernelDropped: number | undefined;
  readonly restoreLine: string | undefined;
}

const report = (line: string): void => {
  process.stderr.write(`restore.e2e: ${line}\n`);
};

describe('agent killed and its wireguard-go link deleted, restarted before its store syncs', () => {
  let c: NsCluster;
  beforeAll(async () => {
    c = await NsCluster.create({ nodes: 2, podsPerNode: 1 });
    await c.waitEncrypted({ timeoutMs: 60_000 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  const stateFile = (): string => join(String(c.agentConfig('n1').stateDir), 'last-applied.json');

  /** Loss of one direction's stream around the kill. */
  const measure = (r: UdpStreamResult, started: number, storeAt: number): Direction => {
    // The kill's gap is the longest one; the first datagram after it went through the new tunnel.
    const gap = [...r.gaps].sort((a, b) => b.count - a.count)[0];
    const firstSentAt = gap === undefined ? undefined : r.startedAt + ((gap.from + gap.count) * 1000) / r.pps;
    return {
      sent: r.sent,
      lost: r.lost,
      longestGap: r.longestGap,
      firstAfterStartMs: firstSentAt === undefined ? undefined : Math.round(firstSentAt - started),
      beforeStore: firstSentAt !== undefined && firstSentAt < storeAt,
    };
  };

  async function killAndRestart(restore: boolean): Promise<Outcome> {
    const tag = restore ? 'on' : 'off';
    // The state the restarted agent may restore: written by n1's last clean pass after its sync.
    await waitFor(
      'n1 wrote its last applied state',
      async () => ((await readFile(stateFile(), 'utf8').catch(() => '')).includes('"peers":[{') ? true : undefined),
      { timeoutMs: 30_000, pollMs: 200 },
    );
    const canary = newCanary();
    const cap = await c.startCapture({ name: `restore-${tag}`, canaries: [canary], bufferKiB: 65_536 });
    const inbound = await startUdpStream(c, { from: 'n2p1', to: 'n1p1', pps: PPS, canary, name: `restore-in-${tag}` });
    const outbound = await startUdpStream(c, {
      from: 'n1p1',
      to: 'n2p1',
      port: 7202,
      pps: PPS,
      canary,
      name: `restore-out-${tag}`,
    });
    const flowing = async (): Promise<number[]> =>
      Promise.all([inbound, outbound].map(async (st) => (await st.status())?.received ?? 0));
    await waitFor('both streams flow', async () => ((await flowing()).every((n) => n > PPS) ? true : undefined), {
      timeoutMs: 15_000,
    });
    const delayed = join(await c.workDir('restore'), `store-${tag}`);
    await rm(delayed, { force: true });
    await c.killAgent('n1', 'SIGKILL');
    const del = await c.execNode('n1', ['ip', 'link', 'del', 'sealwg0'], { check: false });
    expect(del.code).toBe(0);
    const logBefore = (await readFile(c.agentLogPath('n1'), 'utf8')).length;
    const started = Date.now();
    await c.startAgent('n1', { store: { type: 'file', dir: delayed }, wireguard: { restoreLastApplied: restore } });
    await sleep(STORE_DELAY_MS);
    const storeAt = Date.now();
    await symlink(c.storeDir, delayed);
    // Flowing again both ways, and the restarted agent reconciled against the store.
    const at = await flowing();
    await waitFor(
      'both streams flow again after the store appeared',
      async () => ((await flowing()).every((n, i) => n > at[i]! + PPS) ? true : undefined),
      { timeoutMs: 60_000, pollMs: 250 },
    );
    await c.waitEncrypted({ timeoutMs: 60_000 });
    const rin = (await inbound.stop())!;
    const rout = (await outbound.stop())!;
    const capture = await cap.stop();
    const log = (await readFile(c.agentLogPath('n1'), 'utf8')).slice(logBefore);
    const restoreLine = log.split('\n').find((l) => l.includes('restored the last applied state'));
    // Back to the normal config (the real store) for the next run.
    await c.restartAgent('n1', {});
    await c.waitEncrypted({ timeoutMs: 60_000 });
    return {
      restore,
      inbound: measure(rin, started, storeAt),
      outbound: measure(rout, started, storeAt),
      podPlaintextPackets: capture.podPlaintextPackets,
      canaryHits: capture.canaryHits,
      captureComplete: capture.complete,
      kernelDropped: capture.kernelDropped,
      restoreLine,
    };
  }

  const line = (o: Outcome): string => {
    const d = (name: string, x: Direction): string =>
      `${name}: lost ${x.lost} of ${x.sent} datagrams (longest gap ${x.longestGap}), first through the new tunnel ${x.firstAfterStartMs} ms after the agent started`;
    return `restore ${o.restore ? 'on' : 'off'}: ${d('n2p1→n1p1', o.inbound)}; ${d('n1p1→n2p1', o.outbound)}; store appeared at ${STORE_DELAY_MS} ms; plaintext ${o.podPlaintextPackets}, canary ${o.canaryHits}, capture complete ${o.captureComplete} (kernel dropped ${o.kernelDropped})${o.restoreLine === undefined ? '' : `; ${o.restoreLine}`}`;
  };

  const outcomes: Outcome[] = [];

  it('without the restore (wireguard.restoreLastApplied false): nothing leaks, the tunnel waits for the store', async () => {
    const o = await killAndRestart(false);
    report(line(o));
    expect(o.captureComplete).toBe(true);
    expect([o.podPlaintextPackets, o.canaryHits]).toEqual([0, 0]);
    expect(o.restoreLine).toBeUndefined();
    // The sanity check of the scenario: without a restore nothing flows before the store is there.
    expect([o.inbound.beforeStore, o.outbound.beforeStore]).toEqual([false, false]);
  });

  it('with the restore: the tunnel is back both ways before the store synced, nothing leaks', async () => {
    const o = await killAndRestart(true);
    report(line(o));
    expect(o.captureComplete).toBe(true);
    expect([o.podPlaintextPackets, o.canaryHits]).toEqual([0, 0]);
    expect(o.restoreLine).toBeDefined();
    expect([o.inbound.beforeStore, o.outbound.beforeStore]).toEqual([true, true]);
  });
});
