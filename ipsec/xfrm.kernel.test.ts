/**
 * The XFRM addon and client against the real kernel, in scratch network namespaces (DESIGN.md
 * test tier 2). The client runs in a child started with `ip netns exec` (fixtures/xfrm-rpc.mjs,
 * importing the build in dist/); every cross-check uses iproute2 (`ip -n <ns> xfrm ...`) or the
 * namespace's own counters, so nothing relies on the client's own decoder alone.
 *
 * On this tier's kernel XFRM policies work and ESP states do not (no CONFIG_INET_ESP): policy
 * tests are real, and a state add must fail with the sentence naming the missing feature.
 * Real ESP traffic needs the kernel test VM (test/vm/).
 *
 * Namespaces: `sealx<hex>` (the node under test) and `sealx<hex>p` (a peer it sends to), joined
 * by a veth pair. Addresses: 198.18.0.0/15 underlay, 100.64.0.0/10 pod CIDRs only.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { canonicalCidr } from '../common/ip.js';
import { run } from '../common/spawn.js';
import { RpcChild } from '../test/rpc.js';

const TIMEOUT_MS = 30_000;
const BUILD_TIMEOUT_MS = 300_000;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ns = `sealx${randomBytes(4).toString('hex')}`;
const peerNs = `${ns}p`;
const linkA = `${ns}a`;
const linkB = `${ns}b`;
const NO_ESP =
  'the kernel has no ESP support (CONFIG_INET_ESP / esp4 module); mode ipsec cannot run on this node — use mode wireguard or load esp4';

async function ip(netns: string, ...args: string[]): Promise<string> {
  return (await run('ip', ['-n', netns, ...args], { timeoutMs: 10_000 })).stdout;
}

/** XFRM counters of a namespace (/proc/net/xfrm_stat is per namespace). */
async function xfrmStat(netns: string): Promise<Record<string, number>> {
  const { stdout } = await run('ip', ['netns', 'exec', netns, 'cat', '/proc/net/xfrm_stat'], { timeoutMs: 10_000 });
  return Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .map(([k, v]) => [k!, Number(v)]),
  );
}

/** ICMP echo requests a namespace has received (/proc/net/snmp). */
async function echoesReceived(netns: string): Promise<number> {
  const { stdout } = await run('ip', ['netns', 'exec', netns, 'cat', '/proc/net/snmp'], { timeoutMs: 10_000 });
  const [head, values] = stdout.split('\n').filter((l) => l.startsWith('Icmp:'));
  const names = head!.split(/\s+/);
  return Number(values!.split(/\s+/)[names.indexOf('InEchos')]);
}

/** One ping from the node namespace; resolves with whether it was answered and what ping said. */
async function ping(to: string, mark?: number): Promise<{ ok: boolean; output: string }> {
  const args = [
    'netns',
    'exec',
    ns,
    'ping',
    '-n',
    '-c',
    '1',
    '-W',
    '1',
    ...(mark === undefined ? [] : ['-m', String(mark)]),
    to,
  ];
  try {
    const { stdout } = await run('ip', args, { timeoutMs: 10_000 });
    return { ok: true, output: stdout };
  } catch (err) {
    return { ok: false, output: String((err as { stderr?: string }).stderr ?? '') + String((err as Error).message) };
  }
}

/** Rebuilds dist/ (and the addon) when a source the fixture loads is newer than its output. */
async function ensureBuilt(): Promise<string> {
  const sources = [
    ...readdirSync(path.join(root, 'ipsec'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.fake.ts'))
      .map((f) => path.join('ipsec', f)),
    ...['errors.ts', 'constants.ts', 'ip.ts', 'spawn.ts'].map((f) => path.join('common', f)),
    path.join('tunnels', 'plan', 'ipsec-sa.ts'),
    path.join('keymgr', 'keys.ts'),
  ];
  const stale = (): string[] =>
    sources.filter((src) => {
      const out = path.join(root, 'dist', src.replace(/\.ts$/, '.js'));
      return !existsSync(out) || statSync(out).mtimeMs < statSync(path.join(root, src)).mtimeMs;
    });
  if (stale().length > 0) {
    // Other folders may not type-check yet; tsc still emits, so judge by the outputs.
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const build = await run(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], {
      timeoutMs: 240_000,
    }).catch((err: unknown) => err);
    const left = stale();
    if (left.length > 0) throw new Error(`dist/ is stale for ${left.join(', ')} after building: ${String(build)}`);
  }
  await run('bash', [path.join(root, 'scripts', 'build-addons.sh')], { timeoutMs: 240_000 });
  return path.join(root, 'dist', 'ipsec');
}

interface RemoteError {
  name?: string;
  code?: string;
  errno?: string;
  message: string;
}

/** Client for fixtures/xfrm-rpc.mjs running inside the namespace. */
/** The XFRM fixture, running inside the scratch namespace. */
class RemoteXfrm extends RpcChild {
  constructor(distDir: string) {
    super(['ip', 'netns', 'exec', ns, process.execPath, path.join(root, 'ipsec', 'fixtures', 'xfrm-rpc.mjs'), distDir]);
  }
}

let remote: RemoteXfrm | undefined;
const created: string[] = [];

function x(): RemoteXfrm {
  if (remote === undefined) throw new Error('namespace setup failed');
  return remote;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('kernel tests need root (they create scratch network namespaces)');
  const distDir = await ensureBuilt();
  for (const n of [ns, peerNs]) {
    await run('ip', ['netns', 'add', n], { timeoutMs: 10_000 });
    created.push(n);
    await ip(n, 'link', 'set', 'lo', 'up');
  }
  await ip(ns, 'link', 'add', linkA, 'type', 'veth', 'peer', 'name', linkB, 'netns', peerNs);
  await ip(ns, 'link', 'set', linkA, 'addrgenmode', 'none');
  await ip(peerNs, 'link', 'set', linkB, 'addrgenmode', 'none');
  await ip(ns, 'addr', 'add', '198.18.1.1/24', 'dev', linkA);
  await ip(peerNs, 'addr', 'add', '198.18.1.2/24', 'dev', linkB);
  await ip(ns, 'link', 'set', linkA, 'up');
  await ip(peerNs, 'link', 'set', linkB, 'up');
  remote = new RemoteXfrm(distDir);
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  try {
    await remote?.stop();
  } finally {
    for (const n of created.reverse()) await run('ip', ['netns', 'del', n], { timeoutMs: 10_000 });
  }
  const { stdout } = await run('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  expect(stdout).not.toContain(ns);
}, TIMEOUT_MS);

const tmpl = { src: '198.18.1.1', dst: '198.18.1.2', spi: 0x51000001, reqid: 0x5188, mode: 'tunnel' };
const outPolicy = {
  selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24' },
  dir: 'out',
  action: 'allow',
  priority: 2,
  templates: [tmpl],
  mark: { value: 0x10, mask: 0xf0 },
};

describe('XFRM policies on the real kernel', () => {
  it(
    'adds policies that the kernel lists as sent (iproute2 cross-check) and the dump decodes',
    async () => {
      await x().call('addPolicy', outPolicy);
      await x().call('addPolicy', {
        ...outPolicy,
        dir: 'in',
        selector: { src: '100.64.2.0/24', dst: '100.64.1.0/24' },
        templates: [{ ...tmpl, src: tmpl.dst, dst: tmpl.src, spi: 0 }],
        mark: undefined,
      });
      await x().call('addPolicy', {
        ...outPolicy,
        selector: { src: '::ffff:100.64.1.0/120', dst: '::ffff:100.64.2.0/120', proto: 6, dport: 443 },
        mark: undefined,
      });

      const text = await ip(ns, 'xfrm', 'policy', 'list');
      expect(text).toMatch(
        /src 100\.64\.1\.0\/24 dst 100\.64\.2\.0\/24\s+dir out priority 2[^\n]*\n\s+mark 0x10\/0xf0\s+tmpl src 198\.18\.1\.1 dst 198\.18\.1\.2\s+proto esp spi 0x51000001 reqid 20872 mode tunnel/,
      );
      expect(text).toMatch(
        /src 100\.64\.2\.0\/24 dst 100\.64\.1\.0\/24\s+dir in priority 2[^\n]*\n\s+tmpl src 198\.18\.1\.2 dst 198\.18\.1\.1\s+proto esp reqid 20872 mode tunnel/,
      );
      expect(text).toMatch(
        /src ::ffff:100\.64\.1\.0\/120 dst ::ffff:100\.64\.2\.0\/120 proto tcp dport 443\s+dir out priority 2/,
      );

      const dumped = await x().call<Record<string, unknown>[]>('dumpPolicies');
      expect(dumped).toHaveLength(3);
      expect(dumped).toContainEqual(
        expect.objectContaining({
          selector: outPolicy.selector,
          dir: 'out',
          action: 'allow',
          priority: 2,
          mark: outPolicy.mark,
          templates: [{ ...tmpl, optional: false }],
          templateProtos: [50],
          lifetime: {},
        }),
      );
      // Decoded addresses come back in canonical form (common/ip.ts: hex groups for mapped addresses).
      expect(dumped).toContainEqual(
        expect.objectContaining({
          selector: {
            src: canonicalCidr('::ffff:100.64.1.0/120'),
            dst: canonicalCidr('::ffff:100.64.2.0/120'),
            proto: 6,
            dport: 443,
          },
        }),
      );
    },
    TIMEOUT_MS,
  );

  it(
    'matches by exact selector, direction and mark',
    async () => {
      await expect(
        x().call('getPolicy', { selector: outPolicy.selector, dir: 'out', mark: outPolicy.mark }),
      ).resolves.toMatchObject({ dir: 'out', templates: [expect.objectContaining({ spi: 0x51000001 })] });
      await expect(x().call('getPolicy', { selector: outPolicy.selector, dir: 'out' })).resolves.toBeUndefined();
      await expect(
        x().call('getPolicy', { selector: outPolicy.selector, dir: 'fwd', mark: outPolicy.mark }),
      ).resolves.toBeUndefined();
      await expect(
        x().call('getPolicy', {
          selector: { src: '100.64.1.0/25', dst: '100.64.2.0/24' },
          dir: 'out',
          mark: outPolicy.mark,
        }),
      ).resolves.toBeUndefined();
      await expect(x().call('addPolicy', { ...outPolicy, priority: 1 })).rejects.toMatchObject({
        code: 'NETLINK_FAILED',
        errno: 'EEXIST',
        message: expect.stringContaining('EEXIST'),
      });
    },
    TIMEOUT_MS,
  );

  it(
    'updates a policy in place (new template SPI) and deletes it, reporting an absent one as such',
    async () => {
      await x().call('updatePolicy', { ...outPolicy, templates: [{ ...tmpl, spi: 0x51000002 }] });
      expect(await ip(ns, 'xfrm', 'policy', 'list')).toMatch(/dst 100\.64\.2\.0\/24\s+dir out[^]*?spi 0x51000002/);
      await expect(
        x().call('getPolicy', { selector: outPolicy.selector, dir: 'out', mark: outPolicy.mark }),
      ).resolves.toMatchObject({ templates: [expect.objectContaining({ spi: 0x51000002 })] });
      await expect(x().call('dumpPolicies')).resolves.toHaveLength(3);
      for (const id of [
        { selector: outPolicy.selector, dir: 'out', mark: outPolicy.mark },
        { selector: { src: '100.64.2.0/24', dst: '100.64.1.0/24' }, dir: 'in' },
        { selector: { src: '::ffff:100.64.1.0/120', dst: '::ffff:100.64.2.0/120', proto: 6, dport: 443 }, dir: 'out' },
      ]) {
        await expect(x().call('deletePolicy', id)).resolves.toBe(true);
        await expect(x().call('deletePolicy', id)).resolves.toBe(false);
      }
      expect((await ip(ns, 'xfrm', 'policy', 'list')).trim()).toBe('');
    },
    TIMEOUT_MS,
  );
});

describe('XFRM policies decide where real packets go', () => {
  const guard = (value: number) => ({
    selector: { src: '198.18.1.1/32', dst: '198.18.1.2/32' },
    dir: 'out',
    action: 'block',
    priority: 1,
    templates: [],
    mark: { value, mask: 1 },
    lifetime: { hardAddSeconds: { $bigint: '60' } },
  });

  it(
    'a pair of mark-split block guards stops every packet (counted as XfrmOutPolBlock), none reaches the peer',
    async () => {
      expect((await ping('198.18.1.2')).ok).toBe(true);
      const before = await xfrmStat(ns);
      const echoes = await echoesReceived(peerNs);
      try {
        await x().call('addPolicy', guard(0));
        await x().call('addPolicy', guard(1));
        for (const mark of [undefined, 1, 2, 3]) {
          const r = await ping('198.18.1.2', mark);
          expect(r).toMatchObject({ ok: false, output: expect.stringContaining('Operation not permitted') });
        }
        expect((await xfrmStat(ns))['XfrmOutPolBlock']).toBe((before['XfrmOutPolBlock'] ?? 0) + 4);
        expect(await echoesReceived(peerNs)).toBe(echoes);
        // Guards expire by themselves (hard add expiry), so a crashed agent cannot leave a pair blocked.
        expect(await ip(ns, '-s', 'xfrm', 'policy', 'list')).toMatch(
          /action block[^]*?expire add: soft 0\(sec\), hard 60\(sec\)/,
        );
        // Lifetime and usage read back through the client's own decoder too.
        const dumped =
          await x().call<{ action: string; lifetime: Record<string, string>; current: { addTime: string } }[]>(
            'dumpPolicies',
          );
        expect(dumped.filter((p) => p.action === 'block').map((p) => p.lifetime)).toEqual([
          { hardAddSeconds: '60' },
          { hardAddSeconds: '60' },
        ]);
        expect(dumped.every((p) => Number(p.current.addTime) > 1_600_000_000)).toBe(true);
      } finally {
        await x().call('deletePolicy', guard(0));
        await x().call('deletePolicy', guard(1));
      }
      expect((await ping('198.18.1.2')).ok).toBe(true);
    },
    TIMEOUT_MS,
  );

  it(
    'an ESP policy without its state drops (XfrmOutNoStates) instead of sending plaintext, and creates no state',
    async () => {
      const policy = {
        selector: { src: '198.18.1.1/32', dst: '198.18.1.2/32' },
        dir: 'out',
        action: 'allow',
        priority: 2,
        templates: [{ ...tmpl, dst: '198.18.1.2' }],
      };
      const before = await xfrmStat(ns);
      const echoes = await echoesReceived(peerNs);
      await x().call('addPolicy', policy);
      try {
        expect((await ping('198.18.1.2')).ok).toBe(false);
        expect((await xfrmStat(ns))['XfrmOutNoStates']).toBeGreaterThan(before['XfrmOutNoStates'] ?? 0);
        expect(await echoesReceived(peerNs)).toBe(echoes);
        await expect(x().call('dumpStates')).resolves.toEqual([]);
      } finally {
        await x().call('deletePolicy', policy);
      }
      expect((await ping('198.18.1.2')).ok).toBe(true);
    },
    TIMEOUT_MS,
  );
});

describe('ESP states on a kernel without ESP', () => {
  const state = {
    src: '198.18.1.1',
    dst: '198.18.1.2',
    spi: 0x51000001,
    mode: 'tunnel',
    reqid: 0x5188,
    aead: {
      name: 'rfc4106(gcm(aes))',
      keyBits: 128,
      icvBits: 128,
      key: { $bytes: Array.from({ length: 20 }, (_, i) => i) },
    },
    esn: true,
    replayWindow: 1024,
    outputMark: { value: 0x5188, mask: 0xffffffff },
  };

  it(
    'fails a state add with the sentence naming the missing kernel feature',
    async () => {
      const err = await x()
        .call('addState', state)
        .catch((e: unknown) => e as RemoteError);
      expect(err).toMatchObject({ code: 'KERNEL_FEATURE_MISSING' });
      expect((err as RemoteError).message.startsWith(NO_ESP)).toBe(true);
      // The kernel parsed the whole request (ESN, replay, marks) and stopped at the algorithm.
      expect((err as RemoteError).message).toMatch(
        /add XFRM state spi 0x51000001 to 198\.18\.1\.2 failed: (ENOSYS|EPROTONOSUPPORT)/,
      );
      await expect(x().call('dumpStates')).resolves.toEqual([]);
      expect((await ip(ns, 'xfrm', 'state', 'list')).trim()).toBe('');
    },
    TIMEOUT_MS,
  );

  it(
    'tells it at start without installing anything (probe by UPDSA)',
    async () => {
      await expect(x().call('checkEsp', 4)).rejects.toMatchObject({ code: 'KERNEL_FEATURE_MISSING', message: NO_ESP });
      await expect(x().call('probeEsp', 4, 'cbc')).resolves.toBe('no-esp');
      expect((await ip(ns, 'xfrm', 'state', 'list')).trim()).toBe('');
    },
    TIMEOUT_MS,
  );

  it(
    'the driver refuses to start and leaves no half-installed pair',
    async () => {
      const r = await x().call<{
        check: { ok: boolean; message?: string };
        ready: string[];
        failed: { node: string; code: string; message: string }[];
        changes: unknown[];
        observed: { states: unknown[]; policies: unknown[] };
      }>('driverApply', {
        self: { name: 'node-a', address: '198.18.1.1', podCIDRs: ['100.64.1.0/24'] },
        peer: { name: 'node-b', address: '198.18.1.2', podCIDRs: ['100.64.2.0/24'] },
      });
      expect(r.check).toEqual({ ok: false, code: 'KERNEL_FEATURE_MISSING', message: NO_ESP });
      expect(r.ready).toEqual([]);
      expect(r.failed).toEqual([
        { node: 'node-b', code: 'KERNEL_FEATURE_MISSING', message: expect.stringContaining(NO_ESP) },
      ]);
      expect(r.observed).toEqual({ states: [], policies: [] });
      expect((await ip(ns, 'xfrm', 'state', 'list')).trim()).toBe('');
      expect((await ip(ns, 'xfrm', 'policy', 'list')).trim()).toBe('');
    },
    TIMEOUT_MS,
  );

  it(
    'leaves nothing behind in the namespace',
    async () => {
      await expect(x().call('dumpStates')).resolves.toEqual([]);
      await expect(x().call('dumpPolicies')).resolves.toEqual([]);
    },
    TIMEOUT_MS,
  );
});
