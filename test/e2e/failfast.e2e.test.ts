/**
 * Fail fast (issue 17, item 5): when an agent exits during a harness wait, the wait ends at
 * once with the agent's last log lines instead of running out its timeout. The agent here is a
 * stand-in that prints one line and exits 3, as the real agent does on a kernel without ESP.
 */
import { NsCluster } from '../harness/cluster.js';

const LAST_WORDS = 'sealnet-agent: fatal: this kernel has no ESP (test stand-in)';

const isRoot = process.getuid?.() === 0;
const d = isRoot ? describe : describe.skip;
if (!isRoot) process.stderr.write('failfast.e2e: skipped, needs root\n');

d('harness waits fail fast on a dead agent', () => {
  let c: NsCluster | undefined;
  afterEach(async () => {
    await c?.destroy();
    c = undefined;
  });

  it('waitEncrypted ends within seconds, not at its 60 s timeout, and quotes the agent', async () => {
    c = await NsCluster.create({
      nodes: 2,
      podsPerNode: 1,
      agentCommand: [
        process.execPath,
        '-e',
        `console.error(${JSON.stringify(LAST_WORDS)}); setTimeout(() => process.exit(3), 300)`,
        '--',
      ],
    });
    const t0 = Date.now();
    const err = await c.waitEncrypted({ timeoutMs: 60_000 }).catch((e: unknown) => e as Error);
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(LAST_WORDS);
    expect((err as Error).message).toMatch(/agent on n[12] exited with code 3/);
    expect(took).toBeLessThan(10_000);
    expect(c.agentFailures().length).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it('an agent the harness stops on purpose is not a failure', async () => {
    c = await NsCluster.create({
      nodes: 2,
      podsPerNode: 1,
      agentCommand: [process.execPath, '-e', 'setInterval(() => undefined, 1000)', '--'],
    });
    await c.stopAgent('n1');
    expect(c.agentFailures()).toEqual([]);
    expect(c.agentGuard().check()).toBeUndefined();
  }, 30_000);
});
