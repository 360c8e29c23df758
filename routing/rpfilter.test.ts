import { describe, expect, it } from '@jest/globals';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { effectiveRpFilter, ensureLooseRpFilter } from './rpfilter.js';

function confDir(all: number, link: number | undefined): string {
  const d = mkdtempSync(join(tmpdir(), 'sealnet-rpf-'));
  mkdirSync(join(d, 'all'));
  writeFileSync(join(d, 'all', 'rp_filter'), `${all}\n`);
  if (link !== undefined) {
    mkdirSync(join(d, 'sealwg0'));
    writeFileSync(join(d, 'sealwg0', 'rp_filter'), `${link}\n`);
  }
  return d;
}

describe('ensureLooseRpFilter', () => {
  it('is the larger of all and the link, as the kernel applies it', () => {
    expect(effectiveRpFilter(1, 0)).toBe(1);
    expect(effectiveRpFilter(1, 2)).toBe(2);
    expect(effectiveRpFilter(0, 0)).toBe(0);
  });

  it.each([
    [1, 0, true, '2'],
    [0, 1, true, '2'],
    [2, 0, false, '0'],
    [0, 0, false, '0'],
    [1, 2, false, '2'],
  ])('all=%i link=%i: writes %s, link ends at %s', async (all, link, wrote, after) => {
    const d = confDir(all, link);
    try {
      expect(await ensureLooseRpFilter('sealwg0', d)).toBe(wrote);
      expect(readFileSync(join(d, 'sealwg0', 'rp_filter'), 'utf8').trim()).toBe(after);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('names the file when the link does not exist, and refuses odd link names', async () => {
    const d = confDir(1, undefined);
    try {
      await expect(ensureLooseRpFilter('sealwg0', d)).rejects.toThrow(`cannot read ${join(d, 'sealwg0', 'rp_filter')}`);
      await expect(ensureLooseRpFilter('../all', d)).rejects.toThrow('is not 1-15');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
