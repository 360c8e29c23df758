/** A minimal result file around some benchmarks' raw data, for the report tests. */
import type { BenchResult } from './types.js';

/** A `--quick` result of commit abc1234 started 2026-01-02 on a fake 2-CPU machine, holding `benchmarks`. */
export function fixtureResult(benchmarks: BenchResult['benchmarks'], argv: readonly string[] = []): BenchResult {
  const wg = { path: '/x', version: 'v', module: undefined, debianPackage: undefined, sha256: undefined };
  return {
    schema: 1,
    startedAt: '2026-01-02T03:04:05.000Z',
    finishedAt: undefined,
    commit: { full: undefined, short: 'abc1234' },
    argv,
    quick: true,
    environment: {
      hostname: 'h',
      cpus: 2,
      cpuModel: 'cpu',
      memTotalMiB: 1,
      kernel: 'k',
      kernelVersion: 'k',
      node: 'v20',
      iperf3: undefined,
      wgTools: undefined,
      wireguardGo: { pinned: wg, debian: wg },
      loadBefore: [1, 2, 3],
      loadAfter: [1, 1, 1],
      foreignNetnsAtStart: 0,
    },
    benchmarks,
    errors: [],
  };
}
