/**
 * WireGuard key rotation on **kernel WireGuard** under traffic (issue 17), in the qemu guest.
 *
 * The host tiers rotate on wireguard-go, where the rotating node's two links are two processes:
 * while it mirrors each datagram onto both, the peer's one `wg set` that moves the node's pod
 * CIDRs to the new key can drop a datagram whose new-key copy arrives just before it and whose
 * old-key copy just after (the lag between the two processes; test/e2e/rotation.e2e.test.ts,
 * SWITCH_WINDOW_ONE_S). Production runs kernel WireGuard, where both links encrypt in the kernel.
 * This suite measures that path: 3 agents on kernel links (no wireguard-go), one long-lived TCP
 * stream per pair, numbered UDP n1→n2, n2→n1 and n3→n1 at 100/s, an underlay capture, then
 * `sealctl keys rotate --all --wait`. It checks that nothing broke or went
 * out in plaintext, that every rotated node ends on its other link with its new key and nothing
 * left over, and counts the data path's UDP loss from the request until sealctl returned (the
 * receiver's own socket-buffer drops taken off, see rotation-load.ts `lossIn`); the numbers and
 * where each gap fell are printed.
 */
import { jest } from '@jest/globals';
import { ANNOTATIONS, WG_INTERFACES } from '../../common/constants.js';
import type { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import { leftovers, parseRotateSummary, publishedKeys, stateFile } from '../harness/rotation.js';
import { newCanary } from '../harness/traffic.js';
import { encryptedCluster, noter, sealctl, waitFor } from './ipsec-cluster.js';
import { guestTitle, inGuest } from './pair.js';
import { agentEvents, counterDeltas, countersWhy, nodeCounters } from './rotation-diag.js';
import {
  GUEST_ROTATION,
  lossIn,
  lossWhy,
  startCapturedLoad,
  stopLoad,
  TOTAL_LOSS_FRACTION,
  trackSenders,
  type LoadResult,
} from './rotation-load.js';

const suite = inGuest ? describe : describe.skip;
jest.setTimeout(600_000);

const note = noter('wg-rotation');
const UDP_PPS = 100;
/**
 * Most a stream's data path may lose in the window, in seconds of its traffic: the shape of the
 * known switch window (target 0, not met: the exact numbers are printed). Most local runs lost 0,
 * one lost 2 in one gap while peers moved prefixes to the new keys; one CI run lost 13-16 per
 * stream in two gaps 0.4 s apart (all three streams at once, cause not placed; the counters are
 * printed now). A loss spread over the rotation, more gaps than the
 * stream has rotating ends (each end switches once) or a longer outage fails.
 */
const SWITCH_WINDOW_S = 0.2;
/** Counters that can place a lost datagram: receiver sockets, the guest's backlogs, BPF drops, link errors. */
const DROP_COUNTERS = /Rcvbuf|softnet|verdict="drop"|reconcile_errors|^link:.*(errors|dropped)/;

/** Each target's `sealnet.io/rotate-request` annotation as it is now. */
async function rotateRequests(c: NsCluster, targets: readonly string[]): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = {};
  for (const t of targets) out[t] = (await c.nodeDoc(t))?.metadata.annotations?.[ANNOTATIONS.rotateRequest];
  return out;
}

suite(guestTitle('WireGuard key rotation under traffic on kernel WireGuard, 3 real agents (qemu guest kernel)'), () => {
  let c: NsCluster | undefined;
  let portBlock = 0;
  beforeAll(async () => {
    c = await encryptedCluster('wireguard', {
      log: note,
      agentConfig: { rotation: GUEST_ROTATION },
    });
  }, 300_000);
  afterAll(async () => {
    await c?.destroy();
  });

  /** Rotates `targets` under load and a capture; returns the verdicts and what it measured. */
  async function rotateUnderLoad(name: string, targets: readonly string[]) {
    const cl = c!;
    const canary = newCanary();
    const keysBefore = await publishedKeys(cl);
    const { cap, load } = await startCapturedLoad(cl, name, {
      canary,
      port0: 7300 + 100 * portBlock++,
      udp: [
        ['n1p1', 'n2p1'],
        ['n2p1', 'n1p1'],
        ['n3p1', 'n1p1'],
      ],
      udpPps: UDP_PPS,
      tcpRateBps: 32_000,
    });
    const senders = trackSenders(load);
    let result: LoadResult | undefined;
    try {
      const countersBefore = await nodeCounters(cl);
      await sleep(2000);
      const all = targets.length === cl.nodeNames().length;
      // sealctl is a node process: under TCG it needs seconds before it writes the request, so
      // the window starts when the request is in the store, not at the spawn.
      const requestsBefore = await rotateRequests(cl, targets);
      const requested = waitFor(
        'the rotation request in the store',
        async () => {
          const now = await rotateRequests(cl, targets);
          return targets.every((t) => now[t] !== undefined && now[t] !== requestsBefore[t]) ? Date.now() : undefined;
        },
        { timeoutMs: 120_000, pollMs: 100 },
      );
      const ctl = await sealctl(
        cl,
        [
          'keys',
          'rotate',
          ...(all ? ['--all'] : targets.flatMap((t) => ['--node', t])),
          '--wait',
          '--timeout',
          '240',
          '--json',
        ],
        { timeoutMs: 300_000 },
      );
      const doneAt = Date.now();
      const requestAt = await requested;
      note(
        `${name}: sealctl exited ${ctl.code} ${((doneAt - requestAt) / 1000).toFixed(1)} s after the request:\n${ctl.stdout}${ctl.stderr}`,
      );
      note(`${name}: agent events:\n  ${(await agentEvents(cl, { from: requestAt, to: doneAt })).join('\n  ')}`);
      const keysAfter = await publishedKeys(cl);
      await sleep(2000); // traffic on the new keys only
      result = await stopLoad(load);
      const progress = await senders.stop();
      const capture = await cap.stop();
      return {
        counters: counterDeltas(countersBefore, await nodeCounters(cl)),
        ctl,
        keysBefore,
        keysAfter,
        load: result,
        capture,
        requestAt,
        doneMs: doneAt - requestAt,
        window: Object.fromEntries(
          result.udp.map((u) => [
            u.name,
            lossIn(u, progress[u.name] ?? { sent: [], rcvbuf: [] }, { from: requestAt, to: doneAt }),
          ]),
        ),
      };
    } finally {
      if (result === undefined) {
        await stopLoad(load).catch(() => undefined);
        await senders.stop();
        await cap.stop().catch(() => undefined);
      }
    }
  }

  async function expectRotated(r: Awaited<ReturnType<typeof rotateUnderLoad>>, rotated: readonly string[]) {
    const cl = c!;
    const udp = r.load.udp.map((u) => {
      const w = r.window[u.name]!;
      return `${u.name.replace(/-\d+$/, '')} lost ${u.lost}/${u.sent} (${w.inside} from the request until sealctl returned, of them ${w.rcvbufInside ?? '?'} receiver socket-buffer drops; ${w.outside} outside; longest gap ${u.longestGap}${w.gaps.length > 0 ? `; gaps: ${w.gaps.join(', ')} after the request` : ''})`;
    });
    note(
      `${rotated.join(',')}: done ${r.doneMs} ms after the request (grace ${GUEST_ROTATION.graceSeconds} s included); ${r.load.tcpStreams} TCP streams (max stall ${r.load.tcpMaxStallMs} ms), ${r.load.tcpBreaks.length} broken; UDP at ${UDP_PPS}/s: ${udp.join('; ')}; WireGuard on the wire ${r.capture.wireguardPackets}`,
    );
    note(`${rotated.join(',')}: drop counters over the phase: ${countersWhy(r.counters, DROP_COUNTERS)}`);
    expect({ code: r.ctl.code, stderr: r.ctl.stderr }).toEqual({ code: 0, stderr: '' });
    const summary = parseRotateSummary(r.ctl.stdout);
    expect(summary?.ok).toBe(true);
    expect(summary?.results.map((x) => [x.node, x.done, x.lagging]).sort()).toEqual(
      [...rotated].sort().map((n) => [n, true, []]),
    );
    expect(r.load.tcpBreaks).toEqual([]);
    for (const u of r.load.udp) {
      const w = r.window[u.name]!;
      const why = `${lossWhy(u, w)}; counters over the phase ${countersWhy(r.counters, DROP_COUNTERS)}`;
      expect([u.name, u.sent > 0, u.sendErrors]).toEqual([u.name, true, 0]);
      const ends = u.name.split('-').filter((p) => rotated.some((n) => p.startsWith(`${n}p`))).length;
      const ok = w.pathInside <= Math.ceil(UDP_PPS * SWITCH_WINDOW_S) && (w.pathInside === 0 || w.gapsInside <= ends);
      expect([u.name, ok ? 'within the switch window' : why]).toEqual([u.name, 'within the switch window']);
      expect([u.name, u.lost <= TOTAL_LOSS_FRACTION * u.sent ? 'within bound' : why]).toEqual([u.name, 'within bound']);
    }
    // Nothing in plaintext: everything IP on the underlay is WireGuard (either link's port).
    const cap = r.capture;
    expect({ complete: cap.complete, plaintext: cap.podPlaintextPackets, canary: cap.canaryHits }).toEqual({
      complete: true,
      plaintext: 0,
      canary: 0,
    });
    expect(cap.totalPackets - cap.byKind.arp).toBe(cap.wireguardPackets);
    expect(cap.wireguardPackets).toBeGreaterThan(500);
    // Rotated nodes publish a new key, the others the same; every node ends with one kernel link
    // (the rotated ones on the other slot), its key files, no mirror, no wireguard-go.
    for (const n of cl.nodeNames()) {
      if (rotated.includes(n)) expect([n, r.keysAfter[n] !== r.keysBefore[n]]).toEqual([n, true]);
      else expect([n, r.keysAfter[n]]).toEqual([n, r.keysBefore[n]]);
      const l = await leftovers(cl, n);
      const slot = (await stateFile(cl, n))?.activeSlot ?? 0;
      expect({ node: n, ...l }).toStrictEqual({
        node: n,
        links: [WG_INTERFACES[slot]],
        keyFiles: ['wireguard.json', 'wireguard.key'],
        mirrors: [],
        wireguardGo: 0,
        rotating: undefined,
        published: true,
      });
      const kind = (await cl.execNode(n, ['ip', '-d', 'link', 'show', WG_INTERFACES[slot] ?? 'sealwg0'])).stdout;
      expect([n, /\bwireguard\b/.test(kind)]).toEqual([n, true]);
    }
  }

  // One test, every node at once: each node is both a rotating node and a peer that switches
  // (the one-node case is a subset; it measured the same, 0 lost, when both ran; a second test
  // costs ~4 more minutes of the qemu tier, where one pass of a WireGuard agent takes 11-14 s).
  it('rotating all nodes (sealctl keys rotate --all --wait): no TCP break, UDP loss within the switch window, only WireGuard on the wire, every node on its other link', async () => {
    const r = await rotateUnderLoad('all', c!.nodeNames());
    await expectRotated(r, c!.nodeNames());
  });
});
