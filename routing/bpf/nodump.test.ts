import { execFileSync } from 'node:child_process';
import { SealnetError } from '../../common/errors.js';
import { addonPath, disableDumpable } from './syscall.js';

describe('disableDumpable', () => {
  it('turns the dumpable flag of the calling process off (checked in a child, so the test runner keeps its own)', () => {
    // noDump returns the flag as the kernel reports it (PR_GET_DUMPABLE) after the call; a
    // Node process starts with it at 1.
    const out = execFileSync(
      process.execPath,
      ['-e', `const a = require(${JSON.stringify(addonPath())}); process.stdout.write(String(a.noDump()));`],
      { encoding: 'utf8' },
    );
    expect(out).toBe('0');
  });

  it('throws naming the errno or the value when the flag did not go to 0', () => {
    expect(() => disableDumpable({ noDump: () => -1 })).toThrow(SealnetError);
    expect(() => disableDumpable({ noDump: () => -1 })).toThrow(/PR_SET_DUMPABLE, 0\) failed with errno 1/);
    expect(() => disableDumpable({ noDump: () => 1 })).toThrow(/still 1/);
    expect(() => disableDumpable({ noDump: () => 0 })).not.toThrow();
  });
});
