import { describe, expect, it } from '@jest/globals';
import { parseAuditArgs } from './audit.js';

describe('parseAuditArgs', () => {
  it('passes --probe-arg values verbatim, flag-like ones included, in order', () => {
    const a = parseAuditArgs(
      ['--probe-command', '/bin/probe', '--probe-arg', '--cluster', '--probe-arg', 'c.json', '--node', 'n1'],
      {},
    );
    expect(a.probeCommand).toEqual(['/bin/probe', '--cluster', 'c.json']);
    expect(a.only).toEqual(['n1']);
  });

  it.each([
    [['--polcy', 'x'], 'audit: unknown flag "--polcy"'],
    [['--out'], 'audit: flag --out needs a value'],
    [['--probe-timeout', '0'], '--probe-timeout must be 1 to 86400 seconds'],
    [['--policy', 'p.json', '--profile', 'fips'], 'give --policy or --profile, not both'],
    [['--probe-arg', 'x'], '--probe-arg needs --probe-command'],
  ])('refuses %j', (args, message) => {
    expect(() => parseAuditArgs(args, {})).toThrow(message);
  });
});
