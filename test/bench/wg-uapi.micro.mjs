// Micro benchmark (not a test, not part of `npm run bench`): one peer change (applyPeers of one
// PeerChange) and one preshared-key install (setPresharedKey) on a wireguard-go link, through
// `wg set` (userspaceSet: 'wg', the old path) and through the UAPI socket (the default), with the
// real driver from dist/. The two paths run interleaved in one process (the order flips every
// round), so machine load hits both alike. Wall time per call, and the agent's own CPU per call
// (process.cpuUsage: this process only). `wg` children's CPU (from /proc/self/stat cutime+cstime,
// 10 ms ticks) is reported as a mean over all calls, since a tick is coarser than one call.
// wireguard-go's own work is the same on both paths (`wg set` also speaks UAPI to it).
//
// Root. Runs itself inside a scratch network namespace and a private mount namespace with a tmpfs
// on /var/run/wireguard, so nothing in the root namespaces is touched; removes both on exit.
// Run after `npm run build`: node test/bench/wg-uapi.micro.mjs [samples=40]
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = resolve(HERE, '../../dist');
const IF = 'sealwg0';
const { run } = await import(pathToFileURL(join(DIST, 'common/spawn.js')).href);

function keypair() {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const b64 = (s) => Buffer.from(s ?? '', 'base64url').toString('base64');
  return { priv: b64(privateKey.export({ format: 'jwk' }).d), pub: b64(publicKey.export({ format: 'jwk' }).x) };
}

async function outer() {
  const samples = Number(process.argv[2] ?? 40);
  if (process.getuid?.() !== 0) throw new Error('root needed (network and mount namespaces)');
  const ns = `sealbu${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), `${ns}-`)); // 0700: key file and the psk files of `wg`
  const self = keypair();
  writeFileSync(join(dir, 'self.key'), `${self.priv}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'self.pub'), `${self.pub}\n`);
  // The mount point of the private tmpfs; an empty directory on the host is harmless.
  mkdirSync('/var/run/wireguard', { recursive: true });
  await run('ip', ['netns', 'add', ns]);
  try {
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const inner = `mount -t tmpfs none /var/run/wireguard && exec "${process.execPath}" "${fileURLToPath(import.meta.url)}" --inner "${dir}" ${samples}`;
    await new Promise((res, rej) => {
      const c = spawn(
        'ip',
        ['netns', 'exec', ns, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', inner],
        {
          stdio: 'inherit',
        },
      );
      c.on('error', rej);
      c.on('close', (code) => (code === 0 ? res() : rej(new Error(`inner run: exit ${code}`))));
    });
  } finally {
    // Whatever still runs in our namespace (the wireguard-go daemon) is ours: end it by pid.
    const pids = (
      await run('ip', ['netns', 'pids', ns]).then(
        (r) => r.stdout,
        () => '',
      )
    )
      .split(/\s+/)
      .filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** This process's reaped children's CPU, µs (cutime + cstime, in clock ticks of 10 ms). */
function childrenCpuUs() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * 10_000; // fields 16 and 17 of stat(5)
}

async function inner(dir, samples) {
  const { WireGuardDriver } = await import(pathToFileURL(join(DIST, 'wireguard/driver.js')).href);
  const common = { impl: 'userspace', secretDir: dir };
  const viaWg = new WireGuardDriver({ ...common, userspaceSet: 'wg' });
  const viaUapi = new WireGuardDriver(common);
  await viaUapi.ensureLink({
    name: IF,
    privateKeyFile: join(dir, 'self.key'),
    publicKey: readFileSync(join(dir, 'self.pub'), 'utf8').trim(),
    listenPort: 51880,
    fwmark: 0,
  });
  const peer = keypair().pub;
  let n = 0;
  // Each call changes something real: a new allowed IP, a fresh key.
  const change = () => [
    {
      op: 'set',
      publicKey: peer,
      endpoint: '198.18.0.2:51880',
      allowedIPs: [`100.64.${n++ % 256}.0/24`],
      persistentKeepalive: 0,
    },
  ];
  const ops = {
    'applyPeers wg': () => viaWg.applyPeers(IF, change()),
    'applyPeers uapi': () => viaUapi.applyPeers(IF, change()),
    'setPresharedKey wg': () => viaWg.setPresharedKey(IF, peer, randomBytes(32)),
    'setPresharedKey uapi': () => viaUapi.setPresharedKey(IF, peer, randomBytes(32)),
  };
  const res = Object.fromEntries(Object.keys(ops).map((k) => [k, { wall: [], cpu: [], children: 0 }]));
  const names = Object.keys(ops);
  for (let round = -5; round < samples; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const ch0 = childrenCpuUs();
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await ops[name]();
      const wall = Number(process.hrtime.bigint() - t0) / 1e6;
      const c = process.cpuUsage(c0);
      if (round < 0) continue; // warm-up
      res[name].wall.push(wall);
      res[name].cpu.push((c.user + c.system) / 1000);
      res[name].children += (childrenCpuUs() - ch0) / 1000;
    }
  }
  const shown = (await viaUapi.show(IF)).peers.find((p) => p.publicKey === peer);
  if (shown?.allowedIPs[0] !== `100.64.${(n - 1) % 256}.0/24`) throw new Error('last change not read back');

  const q = (xs, p) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))];
  };
  const fmt = (xs) =>
    `${q(xs, 0.5).toFixed(2).padStart(6)} ms (p10 ${q(xs, 0.1).toFixed(2)}, p90 ${q(xs, 0.9).toFixed(2)}, max ${Math.max(...xs).toFixed(2)})`;
  console.log(`micro benchmark: ${samples} samples per path, interleaved, wireguard-go link in a scratch namespace`);
  console.log(`node ${process.version}, ${names.length} ops per round, order flipped every round`);
  for (const name of names) {
    const r = res[name];
    console.log(
      `${name.padEnd(21)} wall ${fmt(r.wall)} | agent CPU ${fmt(r.cpu)} | wg children CPU mean ${(r.children / samples).toFixed(2)} ms`,
    );
  }
  for (const op of ['applyPeers', 'setPresharedKey']) {
    const a = res[`${op} wg`];
    const b = res[`${op} uapi`];
    console.log(
      `${op}: wg/uapi median ratio: wall ${(q(a.wall, 0.5) / q(b.wall, 0.5)).toFixed(1)}x, agent CPU ${(q(a.cpu, 0.5) / q(b.cpu, 0.5)).toFixed(1)}x`,
    );
  }
}

if (process.argv[2] === '--inner') {
  await inner(process.argv[3], Number(process.argv[4]));
} else {
  await outer();
}
