/**
 * What the chart lets a mistake or a compromised node do, checked
 * by rendering it with the pinned helm (no API server: the unit tier) and by running its purge
 * script on a scratch directory. The API server's side of the admission policy is proved in
 * `policy.k8s.test.ts`.
 */
import * as k8s from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { link, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ANNOTATIONS } from '../../common/constants.js';
import { SUMMARY_MAX_BYTES } from '../../tunnels/status/summary.js';
import { encodeNode } from '../../tunnels/plan/annotations.js';
import { run } from '../harness/exec.js';
import { k8sBinaries } from './binaries.js';
import { CHART_DIR, findManifest, helm, parseManifests, renderChart } from './chart.js';

// A cold k8s-binaries cache builds helm first (minutes); a warm one answers in about a second.
jest.setTimeout(120_000);

let helmBin: string;
beforeAll(async () => {
  helmBin = (await k8sBinaries()).helm;
}, 60 * 60_000);

describe('agent.stateDir is restricted to /var/lib/sealnet', () => {
  it.each(['/var/lib/sealnet', '/var/lib/sealnet/prod', '/var/lib/sealnet/a_b/c-1.d'])(
    'renders %s into the hostPath, the mount and the agent config',
    async (dir) => {
      const objs = parseManifests(await renderChart(helmBin, { set: [`agent.stateDir=${dir}`] }));
      const ds = findManifest<k8s.V1DaemonSet>(objs, 'DaemonSet');
      expect(ds.spec?.template.spec?.volumes?.find((v) => v.name === 'state')?.hostPath?.path).toBe(dir);
      expect(ds.spec?.template.spec?.containers[0]?.volumeMounts?.find((m) => m.name === 'state')?.mountPath).toBe(dir);
      const cm = findManifest<k8s.V1ConfigMap>(objs, 'ConfigMap');
      expect((JSON.parse(cm.data?.['agent.json'] ?? '{}') as { stateDir?: string }).stateDir).toBe(dir);
    },
  );

  const refused = [
    '/',
    '/var',
    '/etc',
    '/var/lib',
    '/root',
    '/var/lib/kubelet',
    '/var/lib/sealnet-x',
    '/var/lib/sealnet/',
    '/var/lib/sealnet/..',
    '/var/lib/sealnet/../../etc',
    '/var/lib/sealnet/./x',
    'var/lib/sealnet',
    '/tmp/sealnet',
  ];
  it.each(refused)('the schema refuses stateDir=%s', async (dir) => {
    const r = await helm(
      helmBin,
      ['template', 'sealnet', CHART_DIR, '--kube-version', 'v1.36.4', '--set', `agent.stateDir=${dir}`],
      { check: false },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain('stateDir');
  });
  it.each(refused)('the template refuses stateDir=%s with schema validation skipped', async (dir) => {
    const r = await helm(
      helmBin,
      [
        'template',
        'sealnet',
        CHART_DIR,
        '--kube-version',
        'v1.36.4',
        '--skip-schema-validation',
        '--set',
        `agent.stateDir=${dir}`,
        '--set',
        'cleanup.enabled=true',
        '--set',
        'cleanup.purgeState=true',
      ],
      { check: false },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('agent.stateDir must be /var/lib/sealnet or a directory below it');
  });

  it('ships purge-state.sh beside cleanup.sh, byte for byte, and the cleanup pod runs cleanup.sh', async () => {
    const objs = parseManifests(
      await renderChart(helmBin, { set: ['cleanup.enabled=true', 'cleanup.purgeState=true'] }),
    );
    const cm = findManifest<k8s.V1ConfigMap>(objs, 'ConfigMap');
    expect(cm.data?.['purge-state.sh']).toBe(await readFile(join(CHART_DIR, 'files', 'purge-state.sh'), 'utf8'));
    expect(cm.data?.['cleanup.sh']).toContain('purge-state.sh');
    const env = findManifest<k8s.V1DaemonSet>(objs, 'DaemonSet').spec?.template.spec?.containers[0]?.env ?? [];
    // The chart never widens the purge root: the script's default (/var/lib/sealnet) holds.
    expect(env.map((e) => e.name)).not.toContain('SEALNET_PURGE_ROOT');
    expect(env.find((e) => e.name === 'SEALNET_STATE_DIR')?.value).toBe('/var/lib/sealnet');
  });
});

describe('purge-state.sh scrubs keys and deletes only under its root', () => {
  const script = join(CHART_DIR, 'files', 'purge-state.sh');
  const SECRET = 'not-a-real-key-but-a-canary-0123456789';
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sealnet-purge-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const purge = (target: string, root = join(dir, 'root')) =>
    run(['sh', script, target], { check: false, env: { SEALNET_PURGE_ROOT: root } });

  /** A state dir with a key file that also has a hard link outside it (what an unlink alone leaves readable). */
  async function stateWithLinkedKey(): Promise<{ state: string; copy: string; outside: string }> {
    const state = join(dir, 'root', 'state');
    await mkdir(join(state, 'keys'), { recursive: true });
    await writeFile(join(state, 'keys', 'wireguard-current.key'), SECRET, { mode: 0o600 });
    await writeFile(join(state, 'rotation.json'), '{}');
    const copy = join(dir, 'hardlink-of-key');
    await link(join(state, 'keys', 'wireguard-current.key'), copy);
    const outside = join(dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'keep'), 'keep');
    await symlink(outside, join(state, 'link-to-outside'));
    return { state, copy, outside };
  }

  it('control: a plain unlink (the old find -delete) leaves the key readable through another link', async () => {
    const { state, copy } = await stateWithLinkedKey();
    await run(['find', state, '-mindepth', '1', '-delete']);
    expect(await readFile(copy, 'utf8')).toBe(SECRET);
  });

  it('overwrites every file before unlinking it, empties the dir, and leaves symlink targets alone', async () => {
    const { state, copy, outside } = await stateWithLinkedKey();
    const r = await purge(state);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('2 files scrubbed');
    expect(await readdir(state)).toEqual([]);
    expect(await readFile(copy, 'utf8')).not.toContain(SECRET.slice(0, 8));
    expect(await readFile(join(outside, 'keep'), 'utf8')).toBe('keep');
  });

  it.each([
    ['a directory outside the root', (d: string) => join(d, 'outside')],
    ['a symlink from inside the root to outside it', (d: string) => join(d, 'root', 'state', 'link-to-outside')],
    ['a path that climbs out with ..', (d: string) => join(d, 'root', 'state', '..', '..', 'outside')],
    ['/var', () => '/var'],
  ])('refuses %s and deletes nothing', async (_what, target) => {
    const { state, copy, outside } = await stateWithLinkedKey();
    const r = await purge(target(dir));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('refusing to purge');
    expect(await readFile(join(outside, 'keep'), 'utf8')).toBe('keep');
    expect(await readFile(copy, 'utf8')).toBe(SECRET);
    expect((await readdir(state)).sort()).toEqual(['keys', 'link-to-outside', 'rotation.json']);
  });

  it('refuses a purge root shallower than two levels (SEALNET_PURGE_ROOT=/)', async () => {
    const { state } = await stateWithLinkedKey();
    const r = await purge(state, '/');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('at least two levels deep');
    expect(await readdir(state)).toContain('keys');
  });
});

describe('the admission policy bounds what an agent writes', () => {
  async function limits(set: readonly string[] = []): Promise<Map<string, number>> {
    const objs = parseManifests(await renderChart(helmBin, { set }));
    const policy = findManifest<{ spec: { variables: { name: string; expression: string }[] } }>(
      objs,
      'ValidatingAdmissionPolicy',
    );
    const text = policy.spec.variables.find((v) => v.name === 'maxValueBytes')?.expression ?? '';
    return new Map([...text.matchAll(/'(sealnet\.io\/[a-z-]+)': (\d+)/g)].map((m) => [m[1] as string, Number(m[2])]));
  }

  it('allows exactly the annotations agents publish (all of common/constants.ts but the operator-written rotate request)', async () => {
    expect([...(await limits()).keys()].sort()).toEqual(
      Object.values(ANNOTATIONS)
        .filter((k) => k !== ANNOTATIONS.rotateRequest)
        .sort(),
    );
  });

  it('bounds each small field above its longest legitimate value', async () => {
    const l = await limits();
    const key = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=';
    // Worst cases the agent writes: a full IPv6 endpoint, 15-digit epochs (the decoders' limit).
    const own = encodeNode({
      mode: 'wireguard',
      wireguardPublicKey: key as never,
      endpointHost: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      endpointPort: 65535,
      keyEpoch: 999999999999999,
      keyCreated: new Date('2026-12-31T23:59:59.999Z'),
    });
    const worst: Record<string, string> = {
      ...own,
      [ANNOTATIONS.wireguardNextPublicKey]: key,
      [ANNOTATIONS.nextEndpoint]: own[ANNOTATIONS.endpoint] as string,
      [ANNOTATIONS.ipsecPublicKey]: key,
      [ANNOTATIONS.ipsecKeyEpoch]: '999999999999999',
      [ANNOTATIONS.ipsecNextKey]: `999999999999999:${key}`,
      [ANNOTATIONS.ipsecPreviousKey]: `999999999999999:${key}`,
    };
    for (const [k, v] of Object.entries(worst)) expect([k, Buffer.byteLength(v) <= (l.get(k) ?? 0)]).toEqual([k, true]);
  });

  it("bounds status within 4x of the agent's summary cap, so the bound tightens when the cap does", async () => {
    // The policy must never refuse what the agent writes, and should not allow much more: when
    // SUMMARY_MAX_BYTES changes, this fails until values.yaml's status bound follows.
    const status = (await limits()).get(ANNOTATIONS.status) ?? 0;
    expect(status).toBeGreaterThanOrEqual(SUMMARY_MAX_BYTES);
    expect(status).toBeLessThanOrEqual(4 * SUMMARY_MAX_BYTES);
  });

  it('takes the bounds from values, and the schema refuses nonsense', async () => {
    expect((await limits(['admissionPolicy.maxValueBytes.status=4096'])).get(ANNOTATIONS.status)).toBe(4096);
    const r = await helm(
      helmBin,
      [
        'template',
        'sealnet',
        CHART_DIR,
        '--kube-version',
        'v1.36.4',
        '--set',
        'admissionPolicy.maxValueBytes.field=1000000',
      ],
      { check: false },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('field');
  });
});
