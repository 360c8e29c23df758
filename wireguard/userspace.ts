/**
 * The userspace implementation: starting, finding and stopping `wireguard-go`.
 *
 * wireguard-go daemonizes by default: the process we start creates the TUN device and opens the
 * UAPI socket `/var/run/wireguard/<if>.sock`, re-executes itself in the background with both
 * passed down as fds and exits 0 (non-zero with a message on stderr if either step failed). We
 * start it in a new session (`detached`), so the daemon is in no process group of the agent's
 * and keeps the tunnel up when the agent dies, kill -9 included. A TUN device disappears with
 * the last process holding it, so "link exists" implies "its wireguard-go is alive".
 */
import { spawn } from 'node:child_process';
import { access, readFile, readdir, readlink, unlink } from 'node:fs/promises';
import { SealnetError } from '../common/errors.js';
import { WG_SOCKET_DIR } from '../common/constants.js';

/** Path of the UAPI socket wireguard-go serves for interface `name` (fixed by wireguard-go and wg). */
export function uapiSocketPath(name: string): string {
  return `${WG_SOCKET_DIR}/${name}.sock`;
}

/** True if the UAPI socket file of `name` exists in this mount namespace. */
export async function uapiSocketExists(name: string): Promise<boolean> {
  try {
    await access(uapiSocketPath(name));
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `wireguard-go <name>` and waits until its daemon serves the UAPI socket.
 * @throws SealnetError `WG_FAILED` when the launcher fails or the socket does not appear in time.
 */
export async function startWireGuardGo(
  binary: string,
  name: string,
  opts: { timeoutMs: number },
): Promise<{ stderr: string }> {
  const deadline = Date.now() + opts.timeoutMs;
  // Minimal environment: without WG_PROCESS_FOREGROUND it daemonizes; without LOG_LEVEL the
  // daemon's stdio is /dev/null, so it holds none of our pipes and cannot die of SIGPIPE later.
  const child = spawn(binary, [name], {
    detached: true,
    cwd: '/',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
  });
  let output = '';
  const collect = (b: Buffer): void => {
    if (output.length < 8192) output += b.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const exit = await new Promise<{ code: number | null; signal: string | null } | Error>((resolve) => {
    const timer = setTimeout(() => resolve(new Error('timeout')), Math.max(0, deadline - Date.now()));
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  child.unref();
  if (exit instanceof Error) {
    if (exit.message === 'timeout' && child.pid !== undefined) {
      // Only the launcher we started, by its id; a daemon it forked (if any) has its own pid.
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      throw new SealnetError(
        'WG_FAILED',
        `${binary} ${name}: did not finish starting within ${opts.timeoutMs} ms (it must daemonize: is WG_PROCESS_FOREGROUND set?)`,
      );
    }
    throw new SealnetError('WG_FAILED', `${binary} ${name}: could not start: ${exit.message}`, { cause: exit });
  }
  const text = stripBanner(output);
  if (exit.code !== 0) {
    const how = exit.signal !== null ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    throw new SealnetError('WG_FAILED', `${binary} ${name}: ${how}${text === '' ? '' : `: ${text}`}`);
  }
  while (!(await uapiSocketExists(name))) {
    if (Date.now() >= deadline) {
      throw new SealnetError(
        'WG_FAILED',
        `${binary} ${name}: started, but ${uapiSocketPath(name)} did not appear within ${opts.timeoutMs} ms`,
      );
    }
    await sleep(20);
  }
  return { stderr: text };
}

/** wireguard-go's box-drawn "kernel has first class support" banner, dropped from messages. */
function stripBanner(text: string): string {
  return text
    .split('\n')
    .filter((l) => !/^[│┌└]/.test(l))
    .join('\n')
    .trim();
}

/**
 * Pids of the processes in this network namespace holding the TUN device `name` open: the
 * wireguard-go daemon serving it (the kernel's tun fdinfo names the interface: `iff: <name>`).
 * Matching the namespace matters: interface names repeat across namespaces.
 */
export async function findTunOwners(name: string): Promise<number[]> {
  const myNet = await readlink('/proc/self/ns/net');
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      if ((await readlink(`/proc/${pid}/ns/net`)) !== myNet) continue;
      for (const fd of await readdir(`/proc/${pid}/fd`)) {
        if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) !== '/dev/net/tun') continue;
        const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
        if (new RegExp(`^iff:\\s*${escapeRegExp(name)}$`, 'm').test(info)) {
          pids.push(pid);
          break;
        }
      }
    } catch {
      // The process exited while we looked, or is not ours to inspect.
    }
  }
  return pids;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** True while `pid` runs (a zombie counts as gone: it holds no fds). */
export async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ...": the state follows the last ')'.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Stops the given wireguard-go processes: SIGTERM (it closes the device and removes its socket),
 * then SIGKILL after `graceMs`. Resolves when all are gone.
 * @throws SealnetError `WG_FAILED` if one survives SIGKILL for `graceMs` more.
 */
export async function stopProcesses(pids: readonly number[], graceMs: number): Promise<void> {
  const signalAll = (targets: readonly number[], sig: NodeJS.Signals): void => {
    for (const pid of targets) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  const waitGone = async (ms: number): Promise<number[]> => {
    const until = Date.now() + ms;
    for (;;) {
      const alive: number[] = [];
      for (const pid of pids) if (await processAlive(pid)) alive.push(pid);
      if (alive.length === 0 || Date.now() >= until) return alive;
      await sleep(20);
    }
  };
  signalAll(pids, 'SIGTERM');
  const stubborn = await waitGone(graceMs);
  if (stubborn.length === 0) return;
  signalAll(stubborn, 'SIGKILL');
  const left = await waitGone(graceMs);
  if (left.length > 0)
    throw new SealnetError('WG_FAILED', `wireguard-go pid ${left.join(',')} still running after SIGKILL`);
}

/** Removes a UAPI socket left behind by a killed wireguard-go; missing is fine. */
export async function removeStaleSocket(name: string): Promise<void> {
  await unlink(uapiSocketPath(name)).catch(() => undefined);
}
