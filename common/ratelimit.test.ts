import { describe, expect, it } from '@jest/globals';
import { LogRateLimiter } from './ratelimit.js';

describe('LogRateLimiter', () => {
  it('lets a burst through, then one line per interval, and reports what it held back', () => {
    const l = new LogRateLimiter({ burst: 3, intervalMs: 60_000 });
    const ok: number[] = [];
    const reported: number[] = [];
    // One event a second for 10 minutes.
    for (let t = 0; t < 600_000; t += 1000) {
      const a = l.admit('node-h|annotations-invalid', t);
      if (a.ok) {
        ok.push(t);
        reported.push(a.suppressed);
      }
    }
    // 3 at once, then one a minute: 3 + 9 (the 10th minute's token comes at t = 600 s).
    expect(ok).toHaveLength(12);
    expect(ok.slice(0, 4)).toEqual([0, 1000, 2000, 60_000]);
    // Every line after the burst says how many were held back since the one before it.
    expect(reported.slice(0, 4)).toEqual([0, 0, 0, 57]);
    expect(reported.reduce((a, b) => a + b, 0)).toBe(600 - 12 - 59);
    // The last 59 are still held: drain has nothing until a token is back, then one summary.
    expect(l.drain(599_000)).toEqual([]);
    expect(l.drain(600_000)).toEqual([{ key: 'node-h|annotations-invalid', suppressed: 59 }]);
    expect(l.drain(700_000)).toEqual([]);
  });

  it('keys are independent: one noisy node does not silence another', () => {
    const l = new LogRateLimiter({ burst: 1, intervalMs: 60_000 });
    expect(l.admit('a|x', 0).ok).toBe(true);
    expect(l.admit('a|x', 1).ok).toBe(false);
    expect(l.admit('b|x', 2).ok).toBe(true);
    expect(l.admit('a|y', 3).ok).toBe(true);
  });

  it('refills to the burst after a quiet time, never above it', () => {
    const l = new LogRateLimiter({ burst: 2, intervalMs: 1000 });
    expect(l.admit('k', 0).ok).toBe(true);
    expect(l.admit('k', 0).ok).toBe(true);
    expect(l.admit('k', 0).ok).toBe(false);
    // An hour later: two tokens, not 3,600.
    expect([1, 2, 3].map(() => l.admit('k', 3_600_000).ok)).toEqual([true, true, false]);
  });

  it('remembers at most maxKeys keys (least recently used forgotten), and still reports their held-back lines', () => {
    const l = new LogRateLimiter({ burst: 1, intervalMs: 60_000, maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) {
      l.admit(`node-${i}|r`, i);
      l.admit(`node-${i}|r`, i); // held back
    }
    expect(l.size).toBe(100);
    const d = l.drain(10_000);
    expect(d.find((x) => x.key === '')).toEqual({ key: '', suppressed: 9900 });
  });
});
