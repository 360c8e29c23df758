/**
 * NetlinkRouting against the real kernel, in a scratch network namespace (DESIGN.md test tier
 * 2). The test process never opens a socket in its own namespace: the driver runs in a child
 * started with `ip netns exec` (fixtures/netlink-rpc.mjs, importing the build in dist/), and
 * every setup step and cross-check uses `ip -n <ns>`. What the driver reports is compared with
 * what iproute2 reads back, so the test does not rely on the driver's own parser.
 *
 * Addresses: 198.18.0.0/15 (underlay) and 100.64.0.0/10 (pod CIDRs) only; IPv6 cases use the
 * same ranges IPv4-mapped (::ffff:198.18.0.0/111, ::ffff:100.64.0.0/106).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROUTE_PROTOCOL, ROUTE_TABLE, RULE_PRIORITY } from '../common/constants.js';
import type { ObservedRoute } from '../tunnels/ports/index.js';
import { run } from '../common/spawn.js';
import { RpcChild } from '../test/rpc.js';

/** Per test and hook (ESM jest has no global `jest.setTimeout`); building dist/ takes longer. */
const TIMEOUT_MS = 30_000;
const BUILD_TIMEOUT_MS = 240_000;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ns = `sealk${randomBytes(4).toString('hex')}`;
/** Link names inside the namespace carry the run's prefix too (15 characters at most). */
const underlay = `${ns}u`;
const peerEnd = `${ns}p`;
const table = ROUTE_TABLE;

/** `ip -n <ns> ...`; never runs in the test's own namespace. */
async function ipns(...args: string[]): Promise<string> {
  return (await run('ip', ['-n', ns, ...args], { timeoutMs: 10_000 })).stdout;
}

/** `ip -j -n <ns> ...` parsed; a table that does not exist yet reads as empty. */
async function ipJson<T>(...args: string[]): Promise<T[]> {
  try {
    const out = await ipns('-j', ...args);
    return out.trim() === '' ? [] : (JSON.parse(out) as T[]);
  } catch (err) {
    if (String((err as { stderr?: string }).stderr).includes('FIB table does not exist')) return [];
    throw err;
  }
}

interface IpRoute {
  dst: string;
  dev?: string;
  protocol?: string;
  prefsrc?: string;
  metrics?: { mtu?: number }[];
}
interface IpRule {
  priority: number;
  table: string;
  src?: string;
  protocol?: string;
}

async function kernelRoutes(family: 4 | 6): Promise<IpRoute[]> {
  return ipJson<IpRoute>(`-${family}`, 'route', 'show', 'table', String(table));
}

async function kernelRules(family: 4 | 6): Promise<IpRule[]> {
  return (await ipJson<IpRule>(`-${family}`, 'rule', 'show')).filter((r) => r.priority === RULE_PRIORITY);
}

/** Rebuilds dist/ when a source the fixture loads is newer than its build output. */
async function ensureBuilt(): Promise<string> {
  const sources = [
    ...readdirSync(path.join(root, 'routing'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => path.join('routing', f)),
    path.join('common', 'errors.ts'),
    path.join('common', 'constants.ts'),
    path.join('common', 'ip.ts'),
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
      timeoutMs: 180_000,
    }).catch((err: unknown) => err);
    const left = stale();
    if (left.length > 0) throw new Error(`dist/ is stale for ${left.join(', ')} after building: ${String(build)}`);
  }
  return path.join(root, 'dist', 'routing', 'netlink.js');
}

/** Client for fixtures/netlink-rpc.mjs running inside the namespace. */
/** The NetlinkRouting fixture, running inside the scratch namespace. */
class RemoteRouting extends RpcChild {
  constructor(modulePath: string) {
    super([
      'ip',
      'netns',
      'exec',
      ns,
      process.execPath,
      path.join(root, 'routing', 'fixtures', 'netlink-rpc.mjs'),
      modulePath,
    ]);
  }
}

let remote: RemoteRouting | undefined;
let nsCreated = false;

function r(): RemoteRouting {
  if (remote === undefined) throw new Error('namespace setup failed');
  return remote;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('kernel tests need root (they create a scratch network namespace)');
  const modulePath = await ensureBuilt();
  await run('ip', ['netns', 'add', ns], { timeoutMs: 10_000 });
  nsCreated = true;
  await ipns('link', 'set', 'lo', 'up');
  await ipns('link', 'add', underlay, 'type', 'veth', 'peer', 'name', peerEnd);
  for (const dev of [underlay, peerEnd]) {
    // No kernel-generated fe80:: addresses: nothing outside the address plan.
    await ipns('link', 'set', dev, 'addrgenmode', 'none');
  }
  await ipns('link', 'set', peerEnd, 'up');
  await ipns('addr', 'add', '198.18.0.1/24', 'dev', underlay);
  await ipns('addr', 'add', '::ffff:198.18.0.1/120', 'dev', underlay, 'nodad');
  await ipns('addr', 'add', '198.18.1.1/24', 'dev', peerEnd);
  remote = new RemoteRouting(modulePath);
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  try {
    await remote?.stop();
  } finally {
    if (nsCreated) await run('ip', ['netns', 'del', ns], { timeoutMs: 10_000 });
  }
}, TIMEOUT_MS);

describe('links', () => {
  it(
    'reads a link and reports an absent one as undefined',
    async () => {
      const link = await r().call<{ ifindex: number; mtu: number; up: boolean }>('getLink', underlay);
      const [ip] = await ipJson<{ ifindex: number; mtu: number }>('link', 'show', 'dev', underlay);
      expect(link).toEqual({ ifindex: ip?.ifindex, mtu: 1500, up: false });
      await expect(r().call('getLink', `${ns}x`)).resolves.toBeUndefined();
    },
    TIMEOUT_MS,
  );

  it(
    'sets MTU and up, and is a no-op when everything matches',
    async () => {
      await r().call('setLink', underlay, { mtu: 1420, up: true });
      await r().call('setLink', underlay, { mtu: 1420, up: true });
      const [ip] = await ipJson<{ mtu: number; flags: string[] }>('link', 'show', 'dev', underlay);
      expect(ip?.mtu).toBe(1420);
      expect(ip?.flags).toContain('UP');
      await expect(r().call('getLink', underlay)).resolves.toMatchObject({ mtu: 1420, up: true });
      await r().call('setLink', underlay, { mtu: 1500 });
      await expect(r().call('getLink', underlay)).resolves.toMatchObject({ mtu: 1500, up: true });
    },
    TIMEOUT_MS,
  );

  it(
    'fails with NETLINK_FAILED for a missing link',
    async () => {
      await expect(r().call('setLink', `${ns}x`, { mtu: 1400 })).rejects.toMatchObject({ code: 'NETLINK_FAILED' });
    },
    TIMEOUT_MS,
  );

  it(
    'lists addresses with their link names',
    async () => {
      const addrs = await r().call<{ address: string; prefixLength: number; dev: string }[]>('listAddresses');
      expect(addrs).toEqual(
        expect.arrayContaining([
          { address: '198.18.0.1', prefixLength: 24, dev: underlay },
          { address: '::ffff:198.18.0.1', prefixLength: 120, dev: underlay },
          { address: '198.18.1.1', prefixLength: 24, dev: peerEnd },
          { address: '127.0.0.1', prefixLength: 8, dev: 'lo' },
        ]),
      );
    },
    TIMEOUT_MS,
  );
});

describe('routes', () => {
  const v4: ObservedRoute = {
    dst: '100.64.2.0/24',
    dev: underlay,
    mtu: 1440,
    src: '198.18.0.1',
    table,
    protocol: ROUTE_PROTOCOL,
  };
  const v6: ObservedRoute = {
    dst: '::ffff:100.64.2.0/120',
    dev: underlay,
    mtu: 1420,
    src: '::ffff:198.18.0.1',
    table,
    protocol: ROUTE_PROTOCOL,
  };

  beforeAll(async () => {
    await r().call('setLink', underlay, { up: true });
  }, TIMEOUT_MS);

  it(
    'installs routes with MTU and src, marked with our protocol, and reads them back exactly',
    async () => {
      await r().call('replaceRoute', { dst: v4.dst, dev: underlay, mtu: 1440, src: '198.18.0.1', table });
      await r().call('replaceRoute', { dst: v6.dst, dev: underlay, mtu: 1420, src: '::ffff:198.18.0.1', table });
      await r().call('replaceRoute', { dst: '100.64.3.0/24', dev: underlay, mtu: 1440, table });

      await expect(r().call('listRoutes', table)).resolves.toEqual([
        v4,
        { dst: '100.64.3.0/24', dev: underlay, mtu: 1440, table, protocol: ROUTE_PROTOCOL },
        v6,
      ]);
      expect(await kernelRoutes(4)).toEqual([
        expect.objectContaining({
          dst: '100.64.2.0/24',
          dev: underlay,
          protocol: String(ROUTE_PROTOCOL),
          prefsrc: '198.18.0.1',
          metrics: [{ mtu: 1440 }],
        }),
        expect.objectContaining({
          dst: '100.64.3.0/24',
          dev: underlay,
          protocol: String(ROUTE_PROTOCOL),
          metrics: [{ mtu: 1440 }],
        }),
      ]);
      expect(await kernelRoutes(6)).toEqual([
        expect.objectContaining({
          dst: '::ffff:100.64.2.0/120',
          dev: underlay,
          protocol: String(ROUTE_PROTOCOL),
          prefsrc: '::ffff:198.18.0.1',
          metrics: [{ mtu: 1420 }],
        }),
      ]);
    },
    TIMEOUT_MS,
  );

  it(
    'replaces in place instead of adding a second route',
    async () => {
      await r().call('replaceRoute', { dst: v4.dst, dev: underlay, mtu: 1380, src: '198.18.0.1', table });
      await r().call('replaceRoute', { dst: v6.dst, dev: underlay, mtu: 1360, table });
      const routes = await r().call<ObservedRoute[]>('listRoutes', table);
      expect(routes.filter((x) => x.dst === v4.dst)).toEqual([{ ...v4, mtu: 1380 }]);
      expect(routes.filter((x) => x.dst === v6.dst)).toEqual([{ ...v6, mtu: 1360, src: undefined }]);
      expect((await kernelRoutes(4)).filter((x) => x.dst === v4.dst)).toHaveLength(1);
      expect((await kernelRoutes(6)).filter((x) => x.dst === v6.dst)).toHaveLength(1);
    },
    TIMEOUT_MS,
  );

  it(
    'neither lists nor deletes a route in the table that lacks our protocol',
    async () => {
      await ipns('-4', 'route', 'add', '100.64.9.0/24', 'dev', underlay, 'table', String(table));
      await ipns('-6', 'route', 'add', '::ffff:100.64.9.0/120', 'dev', underlay, 'table', String(table));
      const listed = await r().call<ObservedRoute[]>('listRoutes', table);
      expect(listed.map((x) => x.dst)).not.toContain('100.64.9.0/24');
      expect(listed.map((x) => x.dst)).not.toContain('::ffff:100.64.9.0/120');

      await r().call('deleteRoute', { dst: '100.64.9.0/24', table });
      await r().call('deleteRoute', { dst: '::ffff:100.64.9.0/120', table });
      expect((await kernelRoutes(4)).map((x) => x.dst)).toContain('100.64.9.0/24');
      expect((await kernelRoutes(6)).map((x) => x.dst)).toContain('::ffff:100.64.9.0/120');
    },
    TIMEOUT_MS,
  );

  it(
    'deletes its own routes, and a missing route is not an error',
    async () => {
      for (const dst of [v4.dst, v6.dst, '100.64.3.0/24']) {
        await r().call('deleteRoute', { dst, table });
        await r().call('deleteRoute', { dst, table });
      }
      await expect(r().call('listRoutes', table)).resolves.toEqual([]);
      expect((await kernelRoutes(4)).map((x) => x.dst)).toEqual(['100.64.9.0/24']);
      expect((await kernelRoutes(6)).map((x) => x.dst)).toEqual(['::ffff:100.64.9.0/120']);
    },
    TIMEOUT_MS,
  );

  it(
    'wraps kernel errors in NETLINK_FAILED naming the route and the errno',
    async () => {
      // 198.18.5.5 is not an address of this namespace: the kernel rejects the preferred source.
      await expect(
        r().call('replaceRoute', { dst: '100.64.2.0/24', dev: underlay, mtu: 1400, src: '198.18.5.5', table }),
      ).rejects.toMatchObject({
        code: 'NETLINK_FAILED',
        message: expect.stringMatching(/^failed to add route 100\.64\.2\.0\/24 table 5188: EINVAL/),
      });
      await expect(
        r().call('replaceRoute', { dst: '100.64.2.0/24', dev: `${ns}x`, mtu: 1400, table }),
      ).rejects.toMatchObject({
        code: 'NETLINK_FAILED',
        message: expect.stringContaining('no link named'),
      });
      await expect(
        r().call('replaceRoute', { dst: '100.64.2.1/24', dev: underlay, mtu: 1400, table }),
      ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    },
    TIMEOUT_MS,
  );
});

describe('rules', () => {
  /** Removes every rule at sealnet's priority, so a failed case does not leak into the next. */
  async function clearRules(family: 4 | 6): Promise<void> {
    for (let i = 0; i < 10 && (await kernelRules(family)).length > 0; i++) {
      await ipns(`-${family}`, 'rule', 'del', 'priority', String(RULE_PRIORITY));
    }
  }

  it.each([4, 6] as const)(
    'ensureRule is idempotent and collapses duplicates (IPv%i)',
    async (family) => {
      const rule = { priority: RULE_PRIORITY, table, family };
      const from = family === 4 ? '198.18.7.0/24' : '::ffff:198.18.7.0/120';
      try {
        await r().call('ensureRule', rule);
        await r().call('ensureRule', rule);
        expect(await kernelRules(family)).toEqual([
          expect.objectContaining({ src: 'all', table: String(table), protocol: String(ROUTE_PROTOCOL) }),
        ]);

        // A duplicate someone else added, and a rule with a selector, which is a different rule.
        await ipns(`-${family}`, 'rule', 'add', 'priority', String(RULE_PRIORITY), 'lookup', String(table));
        await ipns(
          `-${family}`,
          'rule',
          'add',
          'from',
          from,
          'priority',
          String(RULE_PRIORITY),
          'lookup',
          String(table),
        );
        await r().call('ensureRule', rule);
        const after = await kernelRules(family);
        expect(after.filter((x) => x.src === 'all')).toEqual([expect.objectContaining({ table: String(table) })]);
        expect(after.filter((x) => x.src !== 'all')).toEqual([expect.objectContaining({ src: from.split('/')[0] })]);

        await r().call('deleteRule', rule);
        await r().call('deleteRule', rule);
        expect(await kernelRules(family)).toEqual([expect.objectContaining({ src: from.split('/')[0] })]);
      } finally {
        await clearRules(family);
      }
    },
    TIMEOUT_MS,
  );

  it(
    'deleteRule leaves a same-priority rule of another tool that points elsewhere',
    async () => {
      try {
        await ipns('-4', 'rule', 'add', 'priority', String(RULE_PRIORITY), 'lookup', 'main');
        await r().call('ensureRule', { priority: RULE_PRIORITY, table, family: 4 });
        await r().call('deleteRule', { priority: RULE_PRIORITY, table, family: 4 });
        expect(await kernelRules(4)).toEqual([expect.objectContaining({ table: 'main' })]);
      } finally {
        await clearRules(4);
      }
    },
    TIMEOUT_MS,
  );
});

describe('linkForAddress', () => {
  it(
    'follows the kernel route lookup, rules included',
    async () => {
      await r().call('setLink', underlay, { mtu: 1450, up: true });
      await expect(r().call('linkForAddress', '198.18.0.9')).resolves.toEqual({ name: underlay, mtu: 1450 });
      await expect(r().call('linkForAddress', '198.18.1.9')).resolves.toEqual({ name: peerEnd, mtu: 1500 });
      await expect(r().call('linkForAddress', '::ffff:198.18.0.9')).resolves.toEqual({ name: underlay, mtu: 1450 });
      // No route (the namespace has no default route).
      await expect(r().call('linkForAddress', '100.127.0.1')).resolves.toBeUndefined();
      // Reachable only through sealnet's table, via the rule.
      await r().call('replaceRoute', { dst: '100.64.4.0/24', dev: peerEnd, mtu: 1400, table });
      await expect(r().call('linkForAddress', '100.64.4.9')).resolves.toBeUndefined();
      await r().call('ensureRule', { priority: RULE_PRIORITY, table, family: 4 });
      await expect(r().call('linkForAddress', '100.64.4.9')).resolves.toEqual({ name: peerEnd, mtu: 1500 });
      await r().call('deleteRule', { priority: RULE_PRIORITY, table, family: 4 });
      await r().call('deleteRoute', { dst: '100.64.4.0/24', table });
    },
    TIMEOUT_MS,
  );

  it(
    'answers with the link holding the address for an address of this host',
    async () => {
      await expect(r().call('linkForAddress', '198.18.0.1')).resolves.toEqual({ name: underlay, mtu: 1450 });
      await expect(r().call('linkForAddress', '198.18.1.1')).resolves.toEqual({ name: peerEnd, mtu: 1500 });
    },
    TIMEOUT_MS,
  );
});
