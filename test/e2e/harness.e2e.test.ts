/**
 * The namespace cluster harness itself: the topology is what DESIGN.md says, the plaintext
 * sanity baseline is detected by the capture (a capture that cannot fail proves nothing),
 * and every run leaves nothing behind: not on destroy(), not on SIGTERM, not after SIGKILL
 * (cleanupStale). Needs root, iproute2, tcpdump, nsenter/unshare.
 */
import { jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NsCluster, cleanupStale } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import { findProcesses, listNetns } from '../harness/teardown.js';
import {
  canaryPingPattern,
  newCanary,
  runCanary,
  startCanaryServer,
  startTcpStream,
  startUdpStream,
} from '../harness/traffic.js';

const isRoot = process.getuid?.() === 0;
const d = isRoot ? describe : describe.skip;
if (!isRoot) process.stderr.write('harness.e2e: skipped, needs root\n');

jest.setTimeout(60_000);

/** Nothing of a run is left: namespaces, processes (by netns or run dir), run dir. */
function expectGone(prefix: string, runDir: string): void {
  expect(listNetns().filter((n) => n.startsWith(`${prefix}-`))).toEqual([]);
  expect(findProcesses([], [`${runDir}/`, `${prefix}-`])).toEqual([]);
  expect(existsSync(runDir)).toBe(false);
}

function netnsInode(path: string): number {
  return statSync(path).ino;
}

d('NsCluster, plaintext baseline (encryption: false)', () => {
  let c: NsCluster;
  beforeAll(async () => {
    c = await NsCluster.create({ nodes: 3, podsPerNode: 2, encryption: false });
  });
  afterAll(async () => {
    const { prefix, runDir } = c;
    await c.destroy();
    await c.destroy(); // safe twice
    expectGone(prefix, runDir);
  });

  it('builds the documented topology quickly', async () => {
    expect(c.timings.buildMs).toBeLessThan(5000);
    expect(c.netnsList().sort()).toEqual(
      [
        `${c.prefix}-n1`,
        `${c.prefix}-n1p1`,
        `${c.prefix}-n1p2`,
        `${c.prefix}-n2`,
        `${c.prefix}-n2p1`,
        `${c.prefix}-n2p2`,
        `${c.prefix}-n3`,
        `${c.prefix}-n3p1`,
        `${c.prefix}-n3p2`,
        `${c.prefix}-u`,
      ].sort(),
    );
    const addr = (await c.execNode('n2', ['ip', '-4', '-o', 'addr', 'show'])).stdout;
    expect(addr).toContain('eth0    inet 198.18.0.2/24');
    expect(addr).toContain('cni0    inet 100.64.2.1/24');
    const routes = (await c.execNode('n2', ['ip', 'route', 'show', 'table', 'main'])).stdout;
    expect(routes).toContain('100.64.1.0/24 via 198.18.0.1 dev eth0');
    expect(routes).toContain('100.64.3.0/24 via 198.18.0.3 dev eth0');
    expect(
      (await c.execNode('n2', ['sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv4.conf.all.rp_filter'])).stdout
        .split('\n')
        .slice(0, 2),
    ).toEqual(['1', '2']);
    expect((await c.execPod('n2p2', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout).toContain(
      '100.64.2.12/24',
    );
    expect((await c.execPod('n2p2', ['ip', 'route'])).stdout).toContain('default via 100.64.2.1 dev eth0');
    // The root namespace was not touched: no address from the test ranges there.
    const rootAddrs = (await import('node:child_process')).execFileSync('ip', ['-4', '-o', 'addr'], {
      encoding: 'utf8',
    });
    expect(rootAddrs).not.toMatch(/198\.1[89]\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./);
  });

  it('writes Kubernetes-shaped Node documents', async () => {
    const doc = JSON.parse(readFileSync(join(c.storeDir, 'n3.json'), 'utf8')) as unknown;
    expect(doc).toEqual({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'n3', annotations: {} },
      spec: { podCIDRs: ['100.64.3.0/24'] },
      status: { addresses: [{ type: 'InternalIP', address: '198.18.0.3' }] },
    });
  });

  it('gives each node its own mount namespace with private /var/run/wireguard and bpffs', async () => {
    await c.execNode('n1', ['sh', '-c', 'echo n1 > /var/run/wireguard/harness-probe']);
    expect((await c.execNode('n1', ['cat', '/var/run/wireguard/harness-probe'])).stdout.trim()).toBe('n1');
    expect((await c.execNode('n2', ['ls', '/var/run/wireguard'])).stdout.trim()).toBe('');
    expect(existsSync('/var/run/wireguard/harness-probe')).toBe(false);
    expect((await c.execNode('n1', ['stat', '-f', '-c', '%T', '/sys/fs/bpf'])).stdout.trim()).toBe('bpf_fs');
    expect((await c.execNode('n1', ['stat', '-f', '-c', '%T', '/var/run/wireguard'])).stdout.trim()).toBe('tmpfs');
  });

  it('routes pod to pod across nodes; the capture sees the plaintext and the canary', async () => {
    const canary = newCanary();
    const server = await startCanaryServer(c, { pod: 'n2p1' });
    const cap = await c.startCapture({ name: 'baseline', canaries: [canary] });
    const tcp = await runCanary(c, { from: 'n1p1', to: 'n2p1', proto: 'tcp', canary });
    const udp = await runCanary(c, { from: 'n1p1', to: 'n2p1', proto: 'udp', canary });
    const icmp = await c.ping('n1p2', 'n2p1', { count: 2, df: false, size: 64, patternHex: canaryPingPattern(canary) });
    const res = await cap.stop();
    await server.stop();
    expect(tcp).toMatchObject({ ok: true, echoed: 3 });
    expect(udp).toMatchObject({ ok: true, echoed: 3 });
    expect(icmp.received).toBe(2);
    expect(res.complete).toBe(true);
    expect(res.podPlaintextPackets).toBeGreaterThan(0);
    expect(res.podPlaintextFlows['100.64.1.11>100.64.2.11/tcp']).toBeGreaterThan(0);
    expect(res.podPlaintextFlows['100.64.2.11>100.64.1.11/udp']).toBeGreaterThan(0);
    expect(res.podPlaintextFlows['100.64.1.12>100.64.2.11/icmp']).toBe(2);
    expect(res.canaryHits).toBeGreaterThan(0);
    expect(res.canaries[0]?.byEndpoints['100.64.2.11>100.64.1.12']).toBe(2); // echo replies
    expect(res.wireguardPackets).toBe(0);
  });

  it('a canary server started again in the same pod is listening when startCanaryServer resolves', async () => {
    // A second proof in one cluster starts the servers again: its wait must not be satisfied by
    // the first server's output (CI once saw ECONNREFUSED on the first connection after a restart).
    const canary = newCanary();
    for (let i = 0; i < 3; i++) {
      const server = await startCanaryServer(c, { pod: 'n2p1' });
      // At once (one `ss`, a few ms; the server's node process needs far longer to start).
      const listening = (await c.execPod('n2p1', ['ss', '-Hltn', 'sport = :7001'])).stdout.trim() !== '';
      const tcp = await runCanary(c, { from: 'n1p1', to: 'n2p1', proto: 'tcp', canary, count: 1 });
      await server.stop();
      expect([i, listening, tcp.ok, tcp.error]).toEqual([i, true, true, undefined]);
    }
  });

  it('detects path-MTU errors with DF pings', async () => {
    expect(await c.ping('n1p1', 'n3p1', { size: 1472, count: 1 })).toMatchObject({
      received: 1,
      fragNeeded: false,
      messageTooLong: false,
    });
    const big = await c.ping('n1p1', 'n3p1', { size: 1473, count: 1 });
    expect(big).toMatchObject({ received: 0, messageTooLong: true, reportedMtu: 1500 });
  });

  it('runs numbered TCP and UDP streams and reports them', async () => {
    const tcp = await startTcpStream(c, { from: 'n1p1', to: 'n3p2', rateBps: 500_000 });
    const udp = await startUdpStream(c, { from: 'n3p1', to: 'n2p2', pps: 200 });
    await sleep(1000);
    const t = await tcp.stop();
    const u = await udp.stop();
    expect(t.client).toMatchObject({ connections: 1, breaks: [], done: true });
    expect(t.client?.bytesAcked).toBeGreaterThan(100_000);
    expect(t.server).toMatchObject({ gaps: [], corrupt: 0 });
    expect(u?.sent).toBeGreaterThan(100);
    expect(u?.lost).toBe(0);
  });

  it('reports a TCP stall and the UDP loss when the path is cut for a second', async () => {
    const tcp = await startTcpStream(c, { from: 'n2p1', to: 'n3p1', rateBps: 200_000, stallReportMs: 300 });
    const udp = await startUdpStream(c, { from: 'n2p2', to: 'n3p2', pps: 200 });
    // Cut n2's route to n3's pods for a second: packets are dropped (unreachable), then restore.
    await c.execNode('n2', ['ip', 'route', 'replace', 'blackhole', '100.64.3.0/24']);
    await sleep(1000);
    await c.execNode('n2', ['ip', 'route', 'replace', '100.64.3.0/24', 'via', '198.18.0.3', 'dev', 'eth0']);
    await sleep(1500);
    const t = await tcp.stop();
    const u = await udp.stop();
    expect(t.client?.maxStallMs).toBeGreaterThan(500);
    expect(t.client?.stalls.length).toBeGreaterThan(0);
    expect(u?.lost).toBeGreaterThan(100);
    expect(u?.longestGap).toBeGreaterThan(100);
  });

  it('adds and removes nodes at runtime', async () => {
    const n4 = await c.addNode({ pods: 1 });
    expect(n4).toMatchObject({ name: 'n4', address: '198.18.0.4', podCIDR: '100.64.4.0/24' });
    expect(existsSync(join(c.storeDir, 'n4.json'))).toBe(true);
    expect((await c.ping('n1p1', 'n4p1', { count: 1 })).received).toBe(1);
    expect((await c.ping('n4p1', 'n3p2', { count: 1 })).received).toBe(1);
    await c.removeNode('n4');
    expect(existsSync(join(c.storeDir, 'n4.json'))).toBe(false);
    expect(c.netnsList().filter((n) => n.includes('-n4'))).toEqual([]);
    expect((await c.execNode('n1', ['ip', 'route'])).stdout).not.toContain('100.64.4.0/24');
    expect(c.nodeNames()).toEqual(['n1', 'n2', 'n3']);
  });

  it('cleanupStale leaves runs whose owner is alive alone', () => {
    const r = cleanupStale(c.prefix);
    expect(r.prefixes).toEqual([]);
    expect(r.skipped).toEqual([{ prefix: c.prefix, reason: 'its owner process is still running' }]);
    expect(c.netnsList().length).toBe(10);
  });
});

d('NsCluster agent plumbing (stand-in agent)', () => {
  it('starts, kills and restarts agents inside the node namespaces with the config contract', async () => {
    // A stand-in that only records its argv and stays up: the harness is tested, not the agent.
    const standIn = [
      process.execPath,
      '-e',
      'console.log(JSON.stringify(process.argv.slice(1))); setInterval(() => {}, 1000)',
      '--',
    ];
    const c = await NsCluster.create({
      nodes: 2,
      encryption: true,
      agentCommand: standIn,
      agentConfig: { logLevel: 'debug' },
    });
    try {
      const st = c.agentStatus('n1');
      expect(st).toMatchObject({ running: true, starts: 1 });
      const pid = st.pid as number;
      // `nsenter` enters the namespaces and then execs the stand-in: its first output line is
      // the proof it got there (on a loaded machine the pid can still be nsenter before setns).
      const started = (): boolean =>
        existsSync(c.agentLogPath('n1')) && readFileSync(c.agentLogPath('n1'), 'utf8').includes('--config');
      for (let i = 0; i < 100 && !started(); i++) await sleep(50);
      expect(netnsInode(`/proc/${pid}/ns/net`)).toBe(netnsInode(`/run/netns/${c.prefix}-n1`));
      const holder = c.topology().nodes[0]?.holderPid as number;
      expect(netnsInode(`/proc/${pid}/ns/mnt`)).toBe(netnsInode(`/proc/${holder}/ns/mnt`));
      const cfg = JSON.parse(readFileSync(c.agentConfigPath('n1'), 'utf8')) as Record<string, unknown>;
      expect(cfg).toMatchObject({
        nodeName: 'n1',
        mode: 'wireguard',
        stateDir: join(c.runDir, 'n1', 'state'),
        store: { type: 'file', dir: c.storeDir },
        wireguard: { listenPort: 51880, implementation: 'auto' },
        resyncIntervalSeconds: 30,
        logLevel: 'debug',
      });
      expect(String((cfg.wireguard as Record<string, unknown>).wireguardGoPath)).toMatch(/wireguard-go$/);
      await sleep(300);
      expect(readFileSync(c.agentLogPath('n1'), 'utf8')).toContain(`"--config","${c.agentConfigPath('n1')}"`);

      await c.killAgent('n1');
      expect(c.agentStatus('n1')).toMatchObject({ running: false, lastExit: { signal: 'SIGKILL' } });
      await c.startAgent('n1', { logLevel: 'warn' });
      expect(JSON.parse(readFileSync(c.agentConfigPath('n1'), 'utf8'))).toMatchObject({ logLevel: 'warn' });
      const again = await c.restartAgent('n1');
      expect(c.agentStatus('n1')).toMatchObject({ running: true, pid: again, starts: 3 });
      await expect(c.startAgent('n1')).rejects.toThrow(/already running/);
    } finally {
      await c.destroy();
    }
    expectGone(c.prefix, c.runDir);
  });
});

const agentBuilt =
  existsSync(join(repoRoot(), 'dist', 'tunnels', 'agent', 'main.js')) &&
  existsSync(join(repoRoot(), 'bin', 'sealnet-agent.js'));
(isRoot && agentBuilt ? describe : describe.skip)('NsCluster with real agents (the other side of the baseline)', () => {
  it('sees only WireGuard on the wire, keeps wireguard-go across agent restarts, and cleans it up', async () => {
    const c = await NsCluster.create({ nodes: 3, encryption: true });
    try {
      await c.waitEncrypted({ timeoutMs: 45_000 });
      const canary = newCanary();
      const server = await startCanaryServer(c, { pod: 'n3p1' });
      const cap = await c.startCapture({ name: 'encrypted', canaries: [canary] });
      expect(await runCanary(c, { from: 'n1p1', to: 'n3p1', proto: 'tcp', canary })).toMatchObject({ ok: true });
      expect(await runCanary(c, { from: 'n2p1', to: 'n3p1', proto: 'udp', canary })).toMatchObject({ ok: true });
      const res = await cap.stop();
      await server.stop();
      expect(res.complete).toBe(true);
      expect(res.podPlaintextPackets).toBe(0);
      expect(res.canaryHits).toBe(0);
      expect(res.wireguardByEndpoints['198.18.0.1>198.18.0.3']).toBeGreaterThan(0);
      expect(res.wireguardByEndpoints['198.18.0.3>198.18.0.2']).toBeGreaterThan(0);

      // The userspace device lives in the node's mount namespace, not in the agent.
      const wgBefore = findProcesses([`${c.prefix}-n2`]).filter((p) => p.pid !== c.agentStatus('n2').pid);
      await c.killAgent('n2');
      expect((await c.wgDump('n2'))?.peers.length).toBe(2);
      await c.startAgent('n2');
      await c.waitEncrypted({ timeoutMs: 30_000 });
      expect(findProcesses([`${c.prefix}-n2`]).map((p) => p.pid)).toEqual(
        expect.arrayContaining(wgBefore.map((p) => p.pid)),
      );

      await c.removeNode('n3');
      expect(listNetns().filter((n) => n.startsWith(`${c.prefix}-n3`))).toEqual([]);
      await c.waitEncrypted({ timeoutMs: 30_000 });
    } finally {
      await c.destroy();
    }
    expectGone(c.prefix, c.runDir);
  });
});

/** Starts a child process that builds a cluster and waits; returns its prefix. */
async function clusterInChild(): Promise<{ child: ReturnType<typeof spawn>; prefix: string; runDir: string }> {
  const dist = join(repoRoot(), 'dist', 'test', 'harness', 'cluster.js');
  if (!existsSync(dist)) throw new Error(`${dist} missing: run npm run build first`);
  const code = `import { NsCluster } from ${JSON.stringify(dist)};
const c = await NsCluster.create({ nodes: 2, encryption: false });
c.spawnPod('n1p1', ['sleep', '1000']);
console.log(JSON.stringify({ prefix: c.prefix, runDir: c.runDir }));
setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (b: Buffer) => {
      buf += b.toString();
      if (buf.includes('\n')) resolve(buf.split('\n')[0] as string);
    });
    child.on('exit', (code2) => reject(new Error(`child exited ${code2} before reporting`)));
  });
  return { child, ...(JSON.parse(line) as { prefix: string; runDir: string }) };
}

d('cleanup on failure paths', () => {
  it('a SIGTERMed harness tears its cluster down by itself', async () => {
    const { child, prefix, runDir } = await clusterInChild();
    expect(listNetns().filter((n) => n.startsWith(`${prefix}-`)).length).toBe(5);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expectGone(prefix, runDir);
  });

  it('after a SIGKILLed harness, cleanupStale removes the orphans', async () => {
    const { child, prefix, runDir } = await clusterInChild();
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    child.kill('SIGKILL');
    await exited;
    // Nothing ran on the way out: everything is still there.
    expect(listNetns().filter((n) => n.startsWith(`${prefix}-`)).length).toBe(5);
    expect(findProcesses(listNetns().filter((n) => n.startsWith(`${prefix}-`))).length).toBeGreaterThanOrEqual(3);
    const r = cleanupStale(prefix);
    expect(r.prefixes).toContain(prefix);
    expectGone(prefix, runDir);
  });
});
