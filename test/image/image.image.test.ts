/**
 * The agent image (issue 15): `scripts/image.sh` twice (the base layer cached) gives the same
 * manifest digest and the same archive bytes; the archive is a valid OCI layout that skopeo
 * reads; and the unpacked image runs `sealnet-agent --version` (through its tini entrypoint, as
 * the image's unprivileged user, in a chroot in private mount and PID namespaces, tini as PID 1:
 * no daemon), and carries
 * the tools the agent spawns. Needs root (chroot) and the network to Debian's mirror and the npm
 * registry on a cold cache.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const run = (argv: string[], env: Record<string, string> = {}): string =>
  execFileSync(argv[0] as string, argv.slice(1), {
    cwd: repo,
    env: { ...process.env, LC_ALL: 'C', ...env },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 1_500_000,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

describe('agent image (scripts/image.sh)', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'sealnet-image-test.'));
  const outA = path.join(work, 'a');
  const outB = path.join(work, 'b');
  const rootfs = path.join(work, 'rootfs');
  let digestA = '';
  let archive = '';
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('builds twice to the same manifest digest and the same archive bytes', () => {
    digestA = run(['bash', 'scripts/image.sh'], { SEALNET_IMAGE_OUT: outA }).trim();
    archive = path.join(outA, 'sealnet-agent.oci.tar');
    const digestB = run(['bash', 'scripts/image.sh'], { SEALNET_IMAGE_OUT: outB }).trim();
    expect(digestA).toMatch(/^sha256:[0-9a-f]{64}$/);
    // (A commit between the two builds changes the revision label and SOURCE_DATE_EPOCH: a
    // different digest then is right.)
    expect(digestB).toBe(digestA);
    expect(sha256(path.join(outB, 'sealnet-agent.oci.tar'))).toBe(sha256(archive));
    expect(readFileSync(`${archive}.digest`, 'utf8').trim()).toBe(digestA);
  }, 1_800_000);

  it('is an OCI layout whose manifest digest is the one printed, readable by skopeo', () => {
    const layout = path.join(work, 'layout');
    mkdirSync(layout);
    run(['tar', '-xf', archive, '-C', layout]);
    expect(JSON.parse(readFileSync(path.join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]?.digest).toBe(digestA);
    // Every blob is stored under its own digest.
    const blob = (d: string): string => path.join(layout, 'blobs', 'sha256', d.replace(/^sha256:/, ''));
    const manifest = JSON.parse(readFileSync(blob(digestA), 'utf8')) as { config: Descriptor; layers: Descriptor[] };
    for (const d of [index.manifests[0] as Descriptor, manifest.config, ...manifest.layers]) {
      expect(`sha256:${sha256(blob(d.digest))}`).toBe(d.digest);
    }
    const inspect = JSON.parse(run(['skopeo', 'inspect', `oci-archive:${archive}`])) as {
      Digest: string;
      Labels: Record<string, string>;
      Layers: string[];
      Architecture: string;
    };
    expect(inspect.Digest).toBe(digestA);
    expect(inspect.Architecture).toBe('amd64');
    expect(inspect.Layers).toEqual(manifest.layers.map((l) => l.digest));
    const head = run(['git', 'rev-parse', 'HEAD']).trim();
    expect(inspect.Labels['org.opencontainers.image.revision']).toMatch(new RegExp(`^${head}(-dirty)?$`));

    // Unpack the layers in order into a root file system (our layers have no whiteouts).
    mkdirSync(rootfs);
    for (const l of manifest.layers) run(['tar', '-xzf', blob(l.digest), '-C', rootfs]);
    rmSync(layout, { recursive: true, force: true });
  }, 300_000);

  it('runs `sealnet-agent --version` through its entrypoint as the unprivileged image user', () => {
    expect(existsSync(path.join(rootfs, 'usr/local/bin/node'))).toBe(true);
    const config = JSON.parse(run(['skopeo', 'inspect', '--config', `oci-archive:${archive}`])) as {
      config: { User: string; Entrypoint: string[]; Env: string[] };
    };
    expect(config.config.User).toBe('65532:65532');
    const env = Object.fromEntries(
      config.config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
    );
    const inImage = (argv: string[], user = config.config.User): string =>
      execFileSync('unshare', ['--mount', '--pid', '--fork', '--', 'chroot', `--userspec=${user}`, rootfs, ...argv], {
        env: { ...env, LC_ALL: 'C' },
        encoding: 'utf8',
        timeout: 60_000,
      });
    const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string };
    expect(inImage([...config.config.Entrypoint, '--version']).trim()).toBe(
      `sealnet-agent ${pkg.version} (node v20.20.2)`,
    );
    // The tools the agent spawns, from the image's own layers (the host's are not visible).
    expect(inImage(['wg', '--version'])).toMatch(/^wireguard-tools v1\./);
    expect(inImage(['ip', '-V'])).toMatch(/iproute2/);
    expect(inImage(['tc', '-V'])).toMatch(/iproute2/);
    expect(inImage(['bpftool', 'version'], '0:0')).toMatch(/bpftool v/);
    expect(inImage(['wireguard-go', '--version'])).toMatch(/wireguard-go v0\.0\.\d+/);
    expect(inImage(['sealctl', '--help'])).toMatch(/sealctl/);
    // The native modules load with the image's node and libraries: netlink (its npm prebuild),
    // and the project's own addons built by scripts/build-addons.sh.
    const load =
      "const r = require('module').createRequire('/opt/sealnet/package.json'); for (const m of ['netlink', '/opt/sealnet/ipsec/addon/build/Release/sealnet_xfrm.node', '/opt/sealnet/routing/bpf/addon/build/Release/sealnet_bpf.node']) console.log(Object.keys(r(m)).length > 0)";
    expect(inImage(['node', '-e', load]).trim().split('\n')).toEqual(['true', 'true', 'true']);
    for (const f of [
      'opt/sealnet/ipsec/addon/build/Release/sealnet_xfrm.node',
      'opt/sealnet/routing/bpf/addon/build/Release/sealnet_bpf.node',
      'opt/sealnet/.cache/bpf/steer.o',
      'opt/sealnet/dist/tunnels/agent/main.js',
    ]) {
      expect(existsSync(path.join(rootfs, f))).toBe(true);
    }
  }, 120_000);
});
