import { describe, expect, it } from '@jest/globals';
import { lossIn, lossWhy } from './rotation-load.js';
import type { UdpStreamResult } from '../harness/traffic.js';

/** A stream at 100/s that started at t = 0 (epoch ms) and lost the given runs. */
function stream(sent: number, gaps: { from: number; count: number }[]): UdpStreamResult {
  const lost = gaps.reduce((n, g) => n + g.count, 0);
  return {
    sent,
    received: sent - lost,
    lost,
    duplicates: 0,
    reordered: 0,
    longestGap: Math.max(0, ...gaps.map((g) => g.count)),
    gaps,
    sendErrors: 0,
    pps: 100,
    startedAt: 0,
  };
}
/** The sender's count sampled every 200 ms. */
const sent = Array.from({ length: 100 }, (_, i): [number, number] => [(i + 1) * 200, (i + 1) * 20]);

describe('lossIn: the rotation window of the guest suite', () => {
  const window = { from: 5_000, to: 10_000 };

  it('counts a gap sent inside the window against the path when the receiver dropped nothing', () => {
    const r = lossIn(
      stream(2000, [{ from: 700, count: 30 }]),
      {
        sent,
        rcvbuf: [
          [4_000, 5],
          [12_000, 5],
        ],
      },
      window,
    );
    expect(r).toMatchObject({ inside: 30, outside: 0, gapsInside: 1, rcvbufInside: undefined, pathInside: 30 });
    const r2 = lossIn(
      stream(2000, [{ from: 700, count: 30 }]),
      {
        sent,
        rcvbuf: [
          [5_100, 5],
          [10_900, 5],
        ],
      },
      window,
    );
    expect(r2).toMatchObject({ inside: 30, rcvbufInside: 0, pathInside: 30 });
  });

  it("takes off only the receiver's socket-buffer drops counted between samples inside the window", () => {
    const u = stream(2000, [
      { from: 100, count: 10 }, // sent by 1.2 s: outside
      { from: 700, count: 30 }, // sent by 7.2 s: inside
    ]);
    // Drops 5 before the window (not taken off), 25 inside, 40 after it (not taken off).
    const rcvbuf: [number, number][] = [
      [4_000, 5],
      [5_200, 5],
      [8_000, 30],
      [10_800, 30],
      [12_000, 70],
    ];
    const r = lossIn(u, { sent, rcvbuf }, window);
    expect(r).toMatchObject({ inside: 30, outside: 10, gapsInside: 1, rcvbufInside: 25, pathInside: 5 });
  });

  it('never takes off more than was lost inside, and counts unlisted loss as inside', () => {
    const u = { ...stream(2000, [{ from: 700, count: 3 }]), lost: 8 };
    const r = lossIn(
      u,
      {
        sent,
        rcvbuf: [
          [5_000, 0],
          [11_000, 50],
        ],
      },
      window,
    );
    expect(r).toMatchObject({ inside: 8, rcvbufInside: 50, pathInside: 0 });
  });

  it('says why in one sentence: the window split into receiver drops and the path, the bound, the gaps', () => {
    const u = stream(2000, [{ from: 700, count: 30 }]);
    const w = lossIn(
      u,
      {
        sent,
        rcvbuf: [
          [5_200, 5],
          [8_000, 30],
        ],
      },
      window,
    );
    expect(lossWhy(u, w, 20)).toBe(
      "lost 30/2000: 30 in the window (25 receiver socket-buffer drops, 5 the path's; bound 20), gaps 30 sent by 2.2 s",
    );
    expect(lossWhy(stream(100, []), lossIn(stream(100, []), { sent, rcvbuf: [] }, window))).toBe(
      "lost 0/100: 0 in the window (? receiver socket-buffer drops, 0 the path's), gaps none",
    );
  });
});
