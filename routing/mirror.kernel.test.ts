/**
 * The rotation mirror (routing/mirror.ts) against the real kernel, in a scratch network
 * namespace (DESIGN.md test tier 2): two TUN devices stand in for the old and the new WireGuard
 * link. `tc` and `ip` run inside the namespace through two tiny wrapper scripts, so the driver's
 * commands are exactly the ones the agent spawns, and nothing touches the test's namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../common/spawn.js';
import { TcMirror } from './mirror.js';

const TIMEOUT_MS = 30_000;
const ns = `sealk${randomBytes(4).toString('hex')}`;
const oldLink = `${ns}o`;
const newLink = `${ns}n`;
let dir: string;
let m: TcMirror;

async function inNs(...argv: string[]): Promise<string> {
  return (await run('ip', ['netns', 'exec', ns, ...argv], { timeoutMs: 10_000 })).stdout;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('mirror.kernel needs root (network namespaces)');
  await run('ip', ['netns', 'add', ns]);
  for (const l of [oldLink, newLink]) {
    await run('ip', ['-n', ns, 'tuntap', 'add', 'dev', l, 'mode', 'tun']);
    await run('ip', ['-n', ns, 'link', 'set', l, 'up']);
  }
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', ns, 'route', 'add', '100.64.9.0/24', 'dev', newLink]);
  dir = await mkdtemp(join(tmpdir(), 'sealnet-mirror-'));
  for (const tool of ['tc', 'ip']) {
    await writeFile(join(dir, tool), `#!/bin/sh\nexec ip netns exec ${ns} ${tool} "$@"\n`);
    await chmod(join(dir, tool), 0o755);
  }
  m = new TcMirror({ tcPath: join(dir, 'tc'), ipPath: join(dir, 'ip') });
}, TIMEOUT_MS);

afterAll(async () => {
  await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}, TIMEOUT_MS);

describe('TcMirror on the kernel', () => {
  it(
    'prepares the clsact qdisc once',
    async () => {
      expect(await m.prepare(newLink)).toBe(true);
      expect(await m.prepare(newLink)).toBe(false);
      expect(await inNs('tc', 'qdisc', 'show', 'dev', newLink)).toMatch(/qdisc clsact/);
    },
    TIMEOUT_MS,
  );

  it(
    'mirrors what leaves the new link into the old one, and reads it back',
    async () => {
      expect(await m.getMirror(newLink)).toBeUndefined();
      expect(await m.setMirror(newLink, oldLink)).toBe(true);
      expect(await m.setMirror(newLink, oldLink)).toBe(false);
      expect(await m.getMirror(newLink)).toBe(oldLink);
      // Three packets routed into the new link: the mirror action copied each one.
      await inNs('ping', '-c', '3', '-i', '0.2', '-W', '0.2', '100.64.9.1').catch(() => undefined);
      const stats = await inNs('tc', '-s', 'filter', 'show', 'dev', newLink, 'egress');
      expect(stats).toMatch(new RegExp(`Egress Mirror to device ${oldLink}`));
      expect(Number(/Sent \d+ bytes (\d+) pkt/.exec(stats)?.[1])).toBeGreaterThanOrEqual(3);
    },
    TIMEOUT_MS,
  );

  it(
    'removes the mirror (and only it: the qdisc stays for the next rotation)',
    async () => {
      expect(await m.clearMirror(newLink)).toBe(true);
      expect(await m.clearMirror(newLink)).toBe(false);
      expect(await m.getMirror(newLink)).toBeUndefined();
      expect(await inNs('tc', 'qdisc', 'show', 'dev', newLink)).toMatch(/qdisc clsact/);
    },
    TIMEOUT_MS,
  );

  it(
    'puts the IPv4 address on a link once',
    async () => {
      expect(await m.ensureAddress(oldLink, '100.64.1.1')).toBe(true);
      expect(await m.ensureAddress(oldLink, '100.64.1.1')).toBe(false);
      expect(await inNs('ip', '-4', 'addr', 'show', 'dev', oldLink)).toMatch(/inet 100\.64\.1\.1\/32 scope host/);
    },
    TIMEOUT_MS,
  );

  it(
    'a link without a qdisc reads as not mirrored; a missing link as well',
    async () => {
      expect(await m.getMirror(oldLink)).toBeUndefined();
      expect(await m.getMirror(`${ns}x`)).toBeUndefined();
    },
    TIMEOUT_MS,
  );
});
