/**
 * Core dumps off for the agent: a core file of the agent holds its private keys. Node has no
 * setrlimit binding, so the limit is lowered with util-linux `prlimit --pid` on this process
 * (lowering one's own soft and hard limit needs no privilege). PR_SET_DUMPABLE is not reachable:
 * it is a prctl(2) on the calling thread's process, which only native code can make (a helper
 * process cannot do it for us); the kernel clears "dumpable" itself for set-uid/capability
 * changes only.
 */
import { run } from './spawn.js';

/** Reads the current RLIMIT_CORE (soft, hard) of `pid` from /proc; undefined if unreadable. */
export async function coreLimit(
  pid: number,
  read: (path: string) => Promise<string>,
): Promise<{ soft: string; hard: string } | undefined> {
  const text = await read(`/proc/${pid}/limits`).catch(() => undefined);
  const m = text === undefined ? null : /^Max core file size\s+(\S+)\s+(\S+)/m.exec(text);
  return m === null ? undefined : { soft: m[1]!, hard: m[2]! };
}

/**
 * Sets RLIMIT_CORE to 0 (soft and hard) for this process and checks it took effect.
 * @throws SpawnError when `prlimit` fails; Error when the limit did not change.
 */
export async function disableCoreDumps(read: (path: string) => Promise<string>, pid = process.pid): Promise<void> {
  await run('prlimit', [`--pid=${pid}`, '--core=0:0'], { timeoutMs: 5_000 });
  const after = await coreLimit(pid, read);
  if (after === undefined || after.soft !== '0' || after.hard !== '0')
    throw new Error(
      `RLIMIT_CORE is still ${after === undefined ? 'unknown' : `${after.soft}:${after.hard}`} after prlimit`,
    );
}
