/**
 * The agent beside an overlay it cannot guard (issue 15), in a scratch network namespace: a real
 * kernel VXLAN link on UDP 4790 (not a port the steering program reads) makes `sealnet-agent`
 * exit 2 at start with a message naming the link, before it attaches or publishes anything. The
 * same agent beside flannel's port (8472) goes past the check (the control: the refusal is the
 * link's port, not something else of the namespace).
 *
 * Addresses: none (the links stay down). Everything carries the run prefix and is removed.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../common/spawn.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const prefix = `sealo${randomBytes(3).toString('hex')}`;
const work = mkdtempSync(path.join(tmpdir(), `${prefix}-`));

/** Runs the agent in `netns` for at most `ms`; returns its exit code (undefined: still running, killed) and stderr. */
function agent(netns: string, ms: number): Promise<{ code: number | undefined; stderr: string }> {
  const state = mkdtempSync(path.join(work, 'state-'));
  const argv = [
    `--net=/run/netns/${netns}`,
    '--',
    process.execPath,
    path.join(root, 'bin', 'sealnet-agent.js'),
    '--node-name',
    'n1',
    '--store',
    'file',
    '--store-dir',
    state,
    '--state-dir',
    state,
    '--metrics-address',
    '127.0.0.1:19588',
    '--cluster-cidr',
    '100.64.0.0/16',
  ];
  return new Promise((resolve) => {
    const child = spawn('nsenter', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? undefined, stderr });
    });
  });
}

afterAll(async () => {
  for (const ns of [`${prefix}a`, `${prefix}b`]) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

describe('agent start beside an overlay', () => {
  it('refuses (exit 2, naming the link) beside VXLAN on a port the guard does not read; goes past the check beside flannel 8472', async () => {
    const bad = `${prefix}a`;
    const good = `${prefix}b`;
    await run('ip', ['netns', 'add', bad]);
    await run('ip', ['-n', bad, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'dstport', '4790']);
    await run('ip', ['netns', 'add', good]);
    await run('ip', ['-n', good, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472']);
    const refused = await agent(bad, 30_000);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/refusing to run fail-open.*flannel\.1: vxlan on UDP port 4790/);
    const ran = await agent(good, 8_000);
    expect(ran.stderr).not.toMatch(/refusing to run fail-open/);
    expect(ran.code).not.toBe(2);
  }, 60_000);
});
