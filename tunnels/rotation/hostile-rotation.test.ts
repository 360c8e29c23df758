/**
 * Hostile peers, class "rotation stall": a node announces a rotation phase forever. Expected:
 * its announcement counts only while fresh (announcedPhaseCounts), and a key is never kept past
 * twice the maximum age (keymgr/rotation.test.ts).
 */
import { describe, expect, it } from '@jest/globals';
import { announcedPhaseCounts } from '../../keymgr/rotation.js';

const S = { graceMs: 30_000, peerTimeoutMs: 15_000 };
const NOW = Date.parse('2026-06-01T00:00:00Z');

describe('another node stuck in a rotation phase', () => {
  it('counts while the phase is fresh, not after an hour (or ten grace+timeout periods)', () => {
    expect(announcedPhaseCounts(NOW - 60_000, NOW, S)).toBe(true);
    expect(announcedPhaseCounts(NOW - 3_600_001, NOW, S)).toBe(false);
    expect(announcedPhaseCounts(NOW - 3_600_001, NOW, { graceMs: 600_000, peerTimeoutMs: 0 })).toBe(true);
  });

  it('a phase without a time, or since a time in the future, does not count', () => {
    expect(announcedPhaseCounts(undefined, NOW, S)).toBe(false);
    expect(announcedPhaseCounts(NOW + 86_400_000, NOW, S)).toBe(false);
    expect(announcedPhaseCounts(Number.NaN, NOW, S)).toBe(false);
  });
});
