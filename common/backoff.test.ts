import { describe, expect, it } from '@jest/globals';
import { backoffDelay, type BackoffOptions } from './backoff.js';

const opts = (random: number, over: Partial<BackoffOptions> = {}): BackoffOptions => ({
  baseMs: 100,
  capMs: 10_000,
  random: () => random,
  ...over,
});

describe('backoffDelay', () => {
  it.each([
    [0, 100],
    [1, 200],
    [2, 400],
    [3, 800],
    [6, 6400],
    [7, 10_000],
    [50, 10_000],
    [1e9, 10_000],
  ])('attempt %i: ceiling %i ms', (attempt, ceiling) => {
    // random() → 0.5 gives half the ceiling (floored); just below 1 gives ceiling - 1.
    expect(backoffDelay(attempt, opts(0.5))).toBe(Math.floor(ceiling / 2));
    expect(backoffDelay(attempt, opts(0.999999))).toBe(ceiling - 1);
  });

  it('full jitter: 0 is a possible delay', () => {
    expect(backoffDelay(5, opts(0))).toBe(0);
  });

  it('is always an integer in [0, ceiling)', () => {
    let seed = 17;
    const random = (): number => {
      seed = (seed * 48271) % 2147483647;
      return seed / 2147483647;
    };
    for (let attempt = 0; attempt < 40; attempt++) {
      const d = backoffDelay(attempt, { baseMs: 250, capMs: 30_000, random });
      expect(Number.isInteger(d)).toBe(true);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(Math.min(30_000, 250 * 2 ** attempt));
    }
  });

  it('spreads agents restarted together (different random draws, different delays)', () => {
    const delays = [0.1, 0.3, 0.5, 0.7, 0.9].map((r) => backoffDelay(4, opts(r)));
    expect(delays).toStrictEqual([160, 480, 800, 1120, 1440]);
  });

  it('a longer Retry-After (429) wins over the jittered delay', () => {
    expect(backoffDelay(0, opts(0.5), 3000)).toBe(3000);
  });

  it('a shorter Retry-After does not shorten the backoff', () => {
    expect(backoffDelay(6, opts(0.5), 10)).toBe(3200);
  });

  it('Retry-After is capped at five times the cap', () => {
    expect(backoffDelay(0, opts(0.5), 3_600_000)).toBe(50_000);
  });
});
