/**
 * Supply-chain checks of the build scripts, each shown failing on tampered
 * input. Every script runs from a copy in a scratch "repo" (the scripts locate their caches
 * beside themselves), so nothing here touches the project's node_modules, .cache or the machine's
 * k8s binaries cache.
 *
 * - scripts/install-node-modules.sh: npm runs no package's install script; a package with one
 *   that the script does not handle by name stops the install.
 * - scripts/build-wireguard-go.sh: only a version with a recorded module hash is built, and only
 *   from a module (zip and extracted source) with that hash; a modified binary is rebuilt.
 *   Offline: the Go module proxy is the machine's module cache (GOPROXY=file://), which
 *   scripts/setup.sh filled when it built wireguard-go; the checksum database is off here because the
 *   test proves the script's own check, not the go command's.
 * - scripts/k8s-binaries.sh: a cached binary whose sha256 differs from the manifest written at
 *   build time is never executed.
 */
import { appendFile, chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jest } from '@jest/globals';
import { run } from './harness/exec.js';
import { repoRoot } from './harness/paths.js';

jest.setTimeout(300_000);

const sha256 = async (file: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

/** A scratch repo holding a copy of one script under scripts/. */
async function scratchRepo(root: string, script: string): Promise<string> {
  const repo = join(root, 'repo');
  await mkdir(join(repo, 'scripts'), { recursive: true });
  await copyFile(join(repoRoot(), 'scripts', script), join(repo, 'scripts', script));
  return repo;
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sealnet-supply-'));
});
afterEach(async () => {
  // The Go module cache is read-only by design.
  await run(['chmod', '-R', 'u+w', dir], { check: false });
  await rm(dir, { recursive: true, force: true });
});

describe('npm: no install scripts run (install-node-modules.sh)', () => {
  /** A project depending on a local package whose install script leaves a marker file. */
  async function projectWithInstallScript(): Promise<{ repo: string; marker: string }> {
    const repo = await scratchRepo(dir, 'install-node-modules.sh');
    const pkg = join(dir, 'evil');
    await mkdir(pkg);
    await writeFile(
      join(pkg, 'package.json'),
      JSON.stringify({ name: 'evil', version: '1.0.0', scripts: { install: 'touch ../../install-script-ran' } }),
    );
    await run(['npm', 'pack', '--silent', '--pack-destination', repo], { cwd: pkg });
    await writeFile(
      join(repo, 'package.json'),
      JSON.stringify({
        name: 'scratch',
        version: '0.0.0',
        private: true,
        dependencies: { evil: 'file:evil-1.0.0.tgz' },
      }),
    );
    await run(['npm', 'install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: repo });
    return { repo, marker: join(repo, 'install-script-ran') };
  }

  it('control: a plain npm ci runs the package install script (the marker appears)', async () => {
    const { repo, marker } = await projectWithInstallScript();
    await run(['npm', 'ci', '--ignore-scripts=false', '--no-audit', '--no-fund'], {
      cwd: repo,
      env: { npm_config_ignore_scripts: 'false' },
    });
    expect(existsSync(marker)).toBe(true);
  });

  it('stops before installing when the lock file lists an install script it does not handle, naming the package', async () => {
    const { repo, marker } = await projectWithInstallScript();
    const r = await run(['bash', join(repo, 'scripts', 'install-node-modules.sh')], { check: false });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'packages with install scripts that this script does not handle: node_modules/evil@1.0.0',
    );
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(join(repo, 'node_modules'))).toBe(false);
  });

  it('runs no install script even when the lock file hides it (hasInstallScript removed)', async () => {
    const { repo, marker } = await projectWithInstallScript();
    const lock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { hasInstallScript?: boolean }>;
    };
    for (const p of Object.values(lock.packages)) delete p.hasInstallScript;
    await writeFile(join(repo, 'package-lock.json'), JSON.stringify(lock, null, 2));
    const r = await run(['bash', join(repo, 'scripts', 'install-node-modules.sh')], { check: false });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('npm ci --ignore-scripts');
    expect(existsSync(join(repo, 'node_modules', 'evil', 'package.json'))).toBe(true);
    expect(existsSync(marker)).toBe(false);
  });

  it("the project's lock file lists no install script but netlink's, which is built from source", async () => {
    const lock = JSON.parse(await readFile(join(repoRoot(), 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { hasInstallScript?: boolean }>;
    };
    expect(
      Object.entries(lock.packages)
        .filter(([, v]) => v.hasInstallScript === true)
        .map(([k]) => k),
    ).toEqual(['node_modules/netlink']);
    const pkg = JSON.parse(await readFile(join(repoRoot(), 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg).not.toHaveProperty('allowScripts');
    expect(await readFile(join(repoRoot(), '.npmrc'), 'utf8')).toMatch(/^ignore-scripts=true$/m);
  });
});

describe('wireguard-go: recorded module hash (build-wireguard-go.sh)', () => {
  const MODULE = 'golang.zx2c4.com/wireguard';
  let machineProxy: string;
  let pinned: string;
  beforeAll(async () => {
    const modcache = (await run(['go', 'env', 'GOMODCACHE'])).stdout.trim();
    machineProxy = join(modcache, 'cache', 'download');
    pinned =
      /^PINNED=(\S+)$/m.exec(await readFile(join(repoRoot(), 'scripts', 'build-wireguard-go.sh'), 'utf8'))?.[1] ?? '';
    if (!existsSync(join(machineProxy, MODULE, '@v', `${pinned}.zip`)))
      throw new Error(
        `${MODULE}@${pinned} is not in the machine's module cache: run scripts/setup.sh (it builds wireguard-go) first`,
      );
  });

  const goEnv = (proxy: string, modcache: string): Record<string, string> => ({
    GOPROXY: `file://${proxy}`,
    GOSUMDB: 'off',
    GOMODCACHE: modcache,
    GOFLAGS: '-buildvcs=false',
    GOTOOLCHAIN: 'local',
  });
  const build = (repo: string, env: Record<string, string>) =>
    run(['bash', join(repo, 'scripts', 'build-wireguard-go.sh')], { check: false, env, timeoutMs: 240_000 });

  it('refuses a WIREGUARD_GO_VERSION without a recorded hash, before downloading anything', async () => {
    const repo = await scratchRepo(dir, 'build-wireguard-go.sh');
    const r = await build(repo, {
      ...goEnv(machineProxy, join(dir, 'modcache')),
      WIREGUARD_GO_VERSION: 'v0.0.0-20250521234502-f333402bd9cb',
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`no module hash is recorded for ${MODULE}@v0.0.0-20250521234502-f333402bd9cb`);
    expect(existsSync(join(dir, 'modcache'))).toBe(false);
    expect(existsSync(join(repo, '.cache', 'bin', 'wireguard-go'))).toBe(false);
  });

  it('builds the pinned version, records the binary sha256, and rebuilds a modified binary', async () => {
    const repo = await scratchRepo(dir, 'build-wireguard-go.sh');
    const env = goEnv(machineProxy, join(dir, 'modcache'));
    const r = await build(repo, env);
    // (stderr holds the go command's "downloading" lines from the scratch module cache)
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain('build-wireguard-go:');
    const bin = join(repo, '.cache', 'bin', 'wireguard-go');
    expect(r.stdout.trim()).toBe(bin);
    expect((await readFile(`${bin}.sha256`, 'utf8')).trim()).toBe(await sha256(bin));
    // Tampered: one byte appended. The next run notices and rebuilds.
    await appendFile(bin, 'x');
    const again = await build(repo, env);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('does not match the sha256 recorded when it was built; rebuilding it');
    expect((await readFile(`${bin}.sha256`, 'utf8')).trim()).toBe(await sha256(bin));
    // ... and an untouched one is reused silently.
    const third = await build(repo, env);
    expect([third.code, third.stderr]).toEqual([0, '']);
  });

  it('refuses a module whose zip is not the recorded one (a proxy or cache serving other code)', async () => {
    const repo = await scratchRepo(dir, 'build-wireguard-go.sh');
    // A proxy serving the pinned version with one extra file in its zip.
    const proxy = join(dir, 'proxy');
    const vdir = join(proxy, MODULE, '@v');
    await mkdir(vdir, { recursive: true });
    for (const f of await readdir(join(machineProxy, MODULE, '@v')))
      if (f.startsWith(pinned) && !f.endsWith('.lock') && !f.endsWith('.ziphash'))
        await copyFile(join(machineProxy, MODULE, '@v', f), join(vdir, f));
    await writeFile(join(vdir, 'list'), `${pinned}\n`);
    const extra = join(dir, 'zipwork', `${MODULE}@${pinned}`);
    await mkdir(extra, { recursive: true });
    await writeFile(join(extra, 'backdoor.go'), 'package main\n\nfunc init() {}\n');
    await chmod(join(vdir, `${pinned}.zip`), 0o644);
    await run(['zip', '-q', join(vdir, `${pinned}.zip`), `${MODULE}@${pinned}/backdoor.go`], {
      cwd: join(dir, 'zipwork'),
    });
    const r = await build(repo, goEnv(proxy, join(dir, 'modcache')));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(new RegExp(`${MODULE}@${pinned} has module hash 'h1:[A-Za-z0-9+/=]+', recorded h1:`));
    expect(r.stderr).toContain('refusing to build it');
    expect(existsSync(join(repo, '.cache', 'bin', 'wireguard-go'))).toBe(false);
  });

  it('refuses a module whose extracted source in the module cache was modified (go install would build it)', async () => {
    const repo = await scratchRepo(dir, 'build-wireguard-go.sh');
    const modcache = join(dir, 'modcache');
    const env = goEnv(machineProxy, modcache);
    expect((await build(repo, env)).code).toBe(0);
    const main = join(modcache, `${MODULE}@${pinned}`, 'main.go');
    await chmod(main, 0o644);
    await appendFile(main, '\nfunc init() { println("modified") }\n');
    // Control: the go command itself builds the modified source without a word.
    const gobin = join(dir, 'gobin');
    const control = await run(['go', 'install', `${MODULE}@${pinned}`], {
      check: false,
      env: { ...env, GOBIN: gobin, CGO_ENABLED: '0' },
      timeoutMs: 240_000,
    });
    expect([control.code, control.stderr]).toEqual([0, '']);
    expect(existsSync(join(gobin, 'wireguard'))).toBe(true);
    // The script refuses it (forced to rebuild: no binary).
    await rm(join(repo, '.cache', 'bin', 'wireguard-go'));
    const r = await build(repo, env);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`the extracted source of ${MODULE}@${pinned}`);
    expect(r.stderr).toContain('the module cache was modified; refusing to build');
    expect(existsSync(join(repo, '.cache', 'bin', 'wireguard-go'))).toBe(false);
  });
});

describe('k8s binaries: sha256 manifest checked before any cached binary runs (k8s-binaries.sh)', () => {
  const VERSIONS = { SEALNET_K8S_VERSION: 'v1.36.4', SEALNET_ETCD_VERSION: 'v3.6.8', SEALNET_HELM_VERSION: 'v3.22.0' };
  /**
   * A cache as the script leaves it after a build, with stand-in binaries (scripts that print the
   * version and log that they ran) and their manifest lines.
   */
  async function cacheWithManifest(): Promise<{ repo: string; cache: string; ranLog: string }> {
    const repo = await scratchRepo(dir, 'k8s-binaries.sh');
    const cache = join(dir, 'cache');
    const ranLog = join(dir, 'ran.log');
    const tools: [string, string][] = [
      ['kubernetes-v1.36.4/kube-apiserver', 'Kubernetes v1.36.4'],
      ['kubernetes-v1.36.4/kubectl', 'Client Version: v1.36.4'],
      ['etcd-v3.6.8/etcd', 'etcd Version: 3.6.8'],
      ['helm-v3.22.0/helm', 'v3.22.0+g0'],
    ];
    const lines: string[] = [];
    for (const [rel, version] of tools) {
      const file = join(cache, rel);
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, `#!/bin/sh\necho ${rel} >> ${ranLog}\necho "${version}"\n`, { mode: 0o755 });
      lines.push(`${await sha256(file)}  ${rel}`);
    }
    await writeFile(join(cache, 'manifest.sha256'), `${lines.join('\n')}\n`);
    return { repo, cache, ranLog };
  }
  const script = (repo: string, cache: string) =>
    run(['bash', join(repo, 'scripts', 'k8s-binaries.sh')], {
      check: false,
      env: { ...VERSIONS, SEALNET_K8S_CACHE: cache },
    });

  it('uses cached binaries whose sha256 matches the manifest', async () => {
    const { repo, cache, ranLog } = await cacheWithManifest();
    const r = await script(repo, cache);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain(`HELM=${join(cache, 'helm-v3.22.0', 'helm')}`);
    expect(await readFile(ranLog, 'utf8')).toContain('helm-v3.22.0/helm');
  });

  it('refuses, without running anything, when a cached binary was modified after the build', async () => {
    const { repo, cache, ranLog } = await cacheWithManifest();
    const helm = join(cache, 'helm-v3.22.0', 'helm');
    await appendFile(helm, 'echo tampered\n');
    const r = await script(repo, cache);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${helm} has sha256 ${await sha256(helm)}, but`);
    expect(r.stderr).toContain('Refusing to run it; delete it to have it rebuilt');
    expect(r.stdout).toBe('');
    // No cached binary ran, not even for --version.
    expect(existsSync(ranLog)).toBe(false);
    expect((await stat(helm)).isFile()).toBe(true);
  });
});
