/**
 * Fail-fast and hang guards of the harness waits (issue 17, items 5 and 6). Unit tier: plain
 * promises and one child process, no namespaces.
 */
import { jest } from '@jest/globals';
import { run } from './exec.js';
import { dumpPending, installWatchdog, trackWait, waitFor, WaitAbortedError, type FailFast } from './wait.js';

/** A FailFast source that fails `afterMs` after creation, like an agent that dies at start. */
function failingAfter(afterMs: number, reason: string): FailFast {
  const at = Date.now() + afterMs;
  const fired = new Promise<void>((r) => setTimeout(r, afterMs));
  return { check: () => (Date.now() >= at ? reason : undefined), changed: () => fired };
}

describe('waitFor', () => {
  it('ends at once, with the reason, when its fail-fast source fails, not at its 30 s deadline', async () => {
    const t0 = Date.now();
    const err = await waitFor('something that never comes', async () => undefined, {
      timeoutMs: 30_000,
      pollMs: 1000,
      failFast: failingAfter(200, 'agent on n1 exited with code 3; last log lines: no ESP'),
    }).catch((e: unknown) => e);
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(WaitAbortedError);
    expect((err as Error).message).toMatch(
      /something that never comes: agent on n1 exited with code 3; last log lines: no ESP/,
    );
    // A 1 s poll and a 30 s deadline: only the fail-fast path can end it this early.
    expect(took).toBeLessThan(900);
  });

  it('ends at once when the source has already failed before the wait', async () => {
    const ff: FailFast = { check: () => 'gone', changed: () => new Promise(() => undefined) };
    await expect(waitFor('x', async () => 1, { timeoutMs: 10_000, failFast: ff })).rejects.toThrow(
      /waiting for x: gone/,
    );
  });

  it('returns the value when the source stays healthy', async () => {
    let n = 0;
    const ff: FailFast = { check: () => undefined, changed: () => new Promise(() => undefined) };
    await expect(
      waitFor('n to reach 3', async () => (++n >= 3 ? n : undefined), { timeoutMs: 5000, pollMs: 10, failFast: ff }),
    ).resolves.toBe(3);
  });

  it('registers itself while pending, for the watchdog dump, and unregisters after', async () => {
    let release: (() => void) | undefined;
    const gate = new Promise<void>((r) => (release = r));
    let polled = false;
    const p = waitFor(
      'the gate to open',
      async () => {
        polled = true;
        await gate;
        return true;
      },
      { timeoutMs: 5000 },
    );
    while (!polled) await new Promise((r) => setTimeout(r, 5));
    expect(dumpPending()).toMatch(/the gate to open \(for [0-9.]+ s, deadline in [0-9.]+ s\)/);
    release?.();
    await p;
    expect(dumpPending()).not.toMatch(/the gate to open/);
    const done = trackWait('a stream to close');
    expect(dumpPending()).toMatch(/a stream to close \(for [0-9.]+ s, no deadline\)/);
    done();
  });
});

describe('run', () => {
  it('returns when the child exits although a grandchild keeps its stdout pipe open', async () => {
    const t0 = Date.now();
    // `sleep` inherits the pipe: 'close' only comes when it exits, 20 s later.
    const r = await run(['sh', '-c', 'sleep 20 & echo $!']);
    const took = Date.now() - t0;
    const pid = Number(r.stdout.trim());
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
    expect(r.code).toBe(0);
    expect(pid).toBeGreaterThan(1);
    expect(r.stderr).toMatch(/output pipes stayed open/);
    expect(took).toBeLessThan(8000);
  }, 15_000);
});

describe('installWatchdog', () => {
  it('prints the pending waits on SIGUSR2, and reports a drained event loop with work unfinished', () => {
    const out: string[] = [];
    const exit = jest.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    const done = trackWait('the API server to answer /readyz');
    let finished = false;
    const uninstall = installWatchdog({ name: 't', write: (t) => out.push(t), finished: () => finished });
    try {
      process.emit('SIGUSR2', 'SIGUSR2');
      expect(out.join('')).toMatch(/t: SIGUSR2\npending waits: \n  - the API server to answer \/readyz/);
      process.emit('beforeExit', 0);
      expect(out.join('')).toMatch(/event loop went idle with work unfinished/);
      expect(exit).toHaveBeenCalledWith(1);
      finished = true;
      exit.mockClear();
      process.emit('beforeExit', 0);
      expect(exit).not.toHaveBeenCalled();
    } finally {
      uninstall();
      done();
      exit.mockRestore();
    }
  });
});
