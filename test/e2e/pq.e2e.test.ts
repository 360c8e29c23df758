/**
 * The post-quantum pair secret end to end (issue 19): real agents with `postQuantum: required`,
 * real wireguard-go, the ML-KEM exchange through the tunnels, BPF steering, a capture on the
 * underlay.
 *
 *   1. every pair confirms a secret: both ends of every pair hold the same preshared key (read
 *      back from wireguard-go's UAPI with `wg show <if> preshared-keys`, compared as digests,
 *      never printed), and no pair holds none;
 *   2. pod traffic flows on every pair and the capture holds nothing but WireGuard;
 *   3. /status and the metrics say hybrid, ML-KEM-768, per pair;
 *   3b. renewals under a numbered UDP stream and a TCP stream (n1 ↔ n2) lose no datagram and
 *      break no connection, and WireGuard completes a handshake with a renewed key;
 *   4. n3's agent stops answering: once its secret expires (two renewal periods), n1 drops the
 *      pair (its pod route leaves the tunnel, n1p1 → n3p1 is dropped and counted by the guard,
 *      never sent classical-only) while n1 ↔ n2 keeps working;
 *   5. n3 then publishes a malformed ML-KEM key: n1 skips it with a reason (log line, metric).
 *
 * `sealctl audit` with a policy requiring the post-quantum secret reads compliant while every
 * pair has one (and the signed report verifies), and non-compliant, naming the pair and the end
 * that lacks it, once n3's key is malformed.
 *
 * Numbers go to stderr (PQ lines) for the report.
 */
import { jest } from '@jest/globals';
import { readFile, writeFile } from 'node:fs/promises';
import { ANNOTATIONS } from '../../common/constants.js';
import { join } from 'node:path';
import { NsCluster } from '../harness/cluster.js';
import { repoRoot } from '../harness/paths.js';
import { bpfCounters, counterOf } from '../harness/faults.js';
import { updateNodeDoc } from '../harness/nodestore.js';
import { pairVerdict, proveAllPairs } from '../harness/prove.js';
import { pskDigests } from '../harness/psk.js';
import { startTcpStream, startUdpStream } from '../harness/traffic.js';
import { run, sleep } from '../harness/exec.js';
import { metricValue, scrapeMetrics, waitFor } from '../harness/wait.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('pq.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(300_000);

const report = (line: string): void => {
  process.stderr.write(`PQ ${line}\n`);
};

async function ownKey(c: NsCluster, node: string): Promise<string> {
  const d = await c.wgDump(node);
  if (d === undefined) throw new Error(`${node} has no sealwg0`);
  return d.publicKey;
}

/** For every pair: the digests of the PSK each end holds for the other. */
async function pairPsks(c: NsCluster, nodes: readonly string[]): Promise<{ pair: string; a: string; b: string }[]> {
  const keys = new Map(await Promise.all(nodes.map(async (n) => [n, await ownKey(c, n)] as const)));
  const digests = new Map(await Promise.all(nodes.map(async (n) => [n, await pskDigests(c, n)] as const)));
  const out: { pair: string; a: string; b: string }[] = [];
  for (const [i, a] of nodes.entries())
    for (const b of nodes.slice(i + 1))
      out.push({
        pair: `${a}-${b}`,
        a: digests.get(a)!.get(keys.get(b)!) ?? 'no peer',
        b: digests.get(b)!.get(keys.get(a)!) ?? 'no peer',
      });
  return out;
}

/** What `sealctl audit --json` prints (the fields this file reads). */
interface AuditJson {
  verdict: string;
  complete: boolean;
  pairs: { a: string; b: string; compliant: boolean; postQuantum?: boolean; violations: string[] }[];
  violations: { code: string; subject: string; message: string }[];
  postQuantum?: { confirmedPairs: number; unconfirmedPairs: number };
}

describe('post-quantum pair secret, required mode, 3 nodes', () => {
  let c: NsCluster;
  const t0 = Date.now();
  let auditN = 0;
  const sealctl = async (args: readonly string[]): Promise<Awaited<ReturnType<typeof run>>> =>
    run(
      [process.execPath, join(repoRoot(), 'bin', 'sealctl.js'), '--store', 'file', '--store-dir', c.storeDir, ...args],
      {
        check: false,
        timeoutMs: 60_000,
      },
    );
  /** `sealctl audit --json` with a policy requiring the post-quantum secret. */
  async function pqAudit(): Promise<{ code: number | undefined; json: AuditJson; out: string; signer: string }> {
    const work = await c.workDir('pq-audit');
    const policy = join(work, 'policy.json');
    await writeFile(policy, '{"version":1,"name":"pq-e2e","requirePostQuantum":true}');
    const out = join(work, `audit-${++auditN}`);
    const signer = join(work, 'signer', 'signing.key');
    const r = await sealctl(['audit', '--json', '--policy', policy, '--out', out, '--signing-key', signer]);
    return { code: r.code, json: JSON.parse(r.stdout) as AuditJson, out, signer };
  }
  beforeAll(async () => {
    c = await NsCluster.create({
      nodes: 3,
      podsPerNode: 1,
      agentConfig: { postQuantum: { mode: 'required', renewMinutes: 1 } },
    });
    await c.waitEncrypted({ timeoutMs: 60_000 });
    report(`cluster encrypted after ${Date.now() - t0} ms`);
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('sets the same preshared key on both ends of every pair (compared as digests)', async () => {
    const psks = await waitFor(
      'a confirmed preshared key on both ends of every pair',
      async () => {
        const p = await pairPsks(c, ['n1', 'n2', 'n3']);
        return p.every((x) => x.a === x.b && /^[0-9a-f]{64}$/.test(x.a)) ? p : undefined;
      },
      { timeoutMs: 60_000, pollMs: 500, failFast: c.agentGuard() },
    );
    expect(psks.map((p) => [p.pair, p.a === p.b])).toEqual([
      ['n1-n2', true],
      ['n1-n3', true],
      ['n2-n3', true],
    ]);
    // Three different pairs, three different secrets.
    expect(new Set(psks.map((p) => p.a)).size).toBe(3);
    report(`psk confirmed on every pair after ${Date.now() - t0} ms`);
  });

  it('carries pod traffic on every pair, only as WireGuard on the wire', async () => {
    const proof = await proveAllPairs(c, { mode: 'wireguard' });
    expect(proof.directions.filter((d) => d.errors.length > 0)).toEqual([]);
    expect(proof.capture.complete).toBe(true);
    expect(proof.capture.podPlaintextPackets).toBe(0);
    expect(proof.capture.canaryHits).toBe(0);
    expect(proof.capture.wireguardPackets).toBeGreaterThan(20);
    expect(proof.pairs.map(pairVerdict)).toEqual([
      ['n1', 'n2', true],
      ['n1', 'n3', true],
      ['n2', 'n3', true],
    ]);
  });

  it('reports every pair hybrid with ML-KEM-768 in the metrics and /status', async () => {
    for (const n of ['n1', 'n2', 'n3']) {
      const m = await scrapeMetrics(c, n);
      expect([n, metricValue(m, 'sealnet_pq_pairs', 'protection="hybrid"')]).toEqual([n, 2]);
      expect([n, metricValue(m, 'sealnet_pq_pairs', 'protection="none"')]).toEqual([n, 0]);
    }
    // sealctl from the root namespace, like audit.e2e: it reaches each agent over its Unix socket.
    const r = await run(
      [
        process.execPath,
        join(repoRoot(), 'bin', 'sealctl.js'),
        '--store',
        'file',
        '--store-dir',
        c.storeDir,
        'status',
        '--json',
      ],
      { check: false, timeoutMs: 60_000 },
    );
    const stdout = r.stdout;
    const s = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      pairs?: { a: string; b: string; sides: { pq?: { protection: string; kem: string } }[] }[];
    };
    const pq = (s.pairs ?? []).map((p) => [`${p.a}-${p.b}`, ...p.sides.map((x) => `${x.pq?.protection} ${x.pq?.kem}`)]);
    report(`sealctl status pq: ${JSON.stringify(pq)}`);
    expect(pq).toEqual([
      ['n1-n2', 'hybrid ML-KEM-768', 'hybrid ML-KEM-768'],
      ['n1-n3', 'hybrid ML-KEM-768', 'hybrid ML-KEM-768'],
      ['n2-n3', 'hybrid ML-KEM-768', 'hybrid ML-KEM-768'],
    ]);
  });

  it('sealctl audit with a policy requiring the post-quantum secret reads compliant, and the signed report verifies', async () => {
    const a = await pqAudit();
    report(`sealctl audit (requirePostQuantum): ${a.json.verdict}, ${JSON.stringify(a.json.postQuantum)}`);
    // The post-quantum evidence first, then the verdict (which also needs every pair encrypted).
    expect(a.json.pairs.map((p) => [`${p.a}-${p.b}`, p.postQuantum])).toEqual([
      ['n1-n2', true],
      ['n1-n3', true],
      ['n2-n3', true],
    ]);
    expect(a.json.postQuantum).toEqual({ confirmedPairs: 3, unconfirmedPairs: 0 });
    expect(a.json.violations.filter((v) => v.code === 'post-quantum-missing')).toEqual([]);
    const v = await sealctl([
      'audit',
      'verify',
      join(a.out, 'report.json'),
      '--public-key',
      a.signer.replace(/\.key$/, '.pub'),
    ]);
    expect([v.code, v.stdout]).toEqual([0, expect.stringContaining('VALID')]);
    expect([a.code, a.json.verdict, a.json.complete, a.json.violations]).toEqual([0, 'compliant', true, []]);
  });

  it('renews under a numbered UDP stream and a TCP stream: 0 datagrams lost, 0 connections broken', async () => {
    const udp = await startUdpStream(c, { from: 'n1p1', to: 'n2p1', pps: 200 });
    const tcp = await startTcpStream(c, { from: 'n2p1', to: 'n1p1' });
    const k2 = await ownKey(c, 'n2');
    const first = (await pskDigests(c, 'n1')).get(k2);
    const changes: number[] = [];
    let last = first;
    // Two renewal periods and a WireGuard rekey (every 120 s): at least one handshake runs with a
    // renewed key, which needs both ends to hold it.
    const until = Date.now() + 135_000;
    while (Date.now() < until) {
      await sleep(2000);
      const now = (await pskDigests(c, 'n1')).get(k2);
      if (now !== last) {
        changes.push(Date.now());
        last = now;
      }
    }
    const u = await udp.stop();
    const t = await tcp.stop();
    const peer = (await c.wgDump('n1'))?.peers.find((p) => p.publicKey === k2);
    const handshakeMs = (peer?.latestHandshake ?? 0) * 1000;
    report(
      `renewals seen on n1→n2: ${changes.length}; udp sent ${u?.sent} lost ${u?.lost}; tcp breaks ${t.client?.breaks.length}, gaps ${t.server?.gaps.length}; handshake ${Math.round((handshakeMs - (changes[0] ?? 0)) / 1000)} s after the first renewal`,
    );
    expect(changes.length).toBeGreaterThanOrEqual(1);
    expect(handshakeMs).toBeGreaterThan(changes[0]!);
    const psks = await pairPsks(c, ['n1', 'n2']);
    expect(psks[0]!.a).toBe(psks[0]!.b);
    expect(u?.sent).toBeGreaterThan(20_000);
    expect(u?.lost).toBe(0);
    expect(t.client?.breaks).toEqual([]);
    expect(t.server?.gaps).toEqual([]);
  });

  it('drops a pair whose peer stops answering once its secret expires, never classical-only', async () => {
    const ping = async (from: string, to: string): Promise<number> =>
      (await c.ping(from, to, { count: 2, waitS: 1 })).received;
    expect(await ping('n1p1', 'n3p1')).toBeGreaterThan(0);
    await c.killAgent('n3');
    const killedAt = Date.now();
    // n3's wireguard-go keeps running: without the exchange only the expiry can drop the pair.
    await waitFor(
      "n1 taking n3's pod route out of the tunnel",
      async () => {
        const r = (await c.execNode('n1', ['ip', 'route', 'show', 'table', '5188'])).stdout;
        return !r.includes('100.64.3.0/24') && r.includes('100.64.3.1 ') ? r : undefined;
      },
      { timeoutMs: 150_000, pollMs: 1000 },
    );
    report(`pair n1-n3 dropped ${Date.now() - killedAt} ms after n3's agent stopped (limit: 120 s secret age)`);
    const before = await bpfCounters(c, 'n1');
    expect(await ping('n1p1', 'n3p1')).toBe(0);
    const after = await bpfCounters(c, 'n1');
    expect(counterOf(after, 'egress', 'not_ready') - counterOf(before, 'egress', 'not_ready')).toBeGreaterThan(0);
    // The other pair is untouched.
    expect(await ping('n1p1', 'n2p1')).toBeGreaterThan(0);
    const m = await scrapeMetrics(c, 'n1');
    expect(metricValue(m, 'sealnet_pq_pairs', 'protection="none"')).toBe(1);
  });

  it('skips a peer publishing a malformed ML-KEM key with a reason, and keeps running', async () => {
    await updateNodeDoc(c.storeDir, 'n3', (doc) => {
      doc.metadata.annotations = {
        ...doc.metadata.annotations,
        [ANNOTATIONS.pqKemKey]: Buffer.alloc(1184, 0xff).toString('base64'),
      };
    });
    await waitFor(
      'n1 counting an unusable post-quantum peer',
      async () => (metricValue(await scrapeMetrics(c, 'n1'), 'sealnet_pq_peers_unusable') === 1 ? true : undefined),
      { timeoutMs: 30_000, pollMs: 500 },
    );
    const log = await readFile(c.agentLogPath('n1'), 'utf8');
    const line = log
      .split('\n')
      .find((l) => l.includes('peer publishes no usable post-quantum key') && l.includes('modulus check'));
    expect(line).toMatch(/"peer":"n3".*fails the FIPS 203 modulus check/);
    report(`n1 logged: ${(JSON.parse(line!) as { reason: string }).reason}`);
    expect(c.agentStatus('n1').running).toBe(true);
    expect((await c.ping('n1p1', 'n2p1', { count: 2, waitS: 1 })).received).toBeGreaterThan(0);

    // The audit: n1 ↔ n3 has no secret on n1's end (n3's key is malformed; n3's agent is gone
    // too), n1 ↔ n2 still has one on both ends.
    const a = await pqAudit();
    const missing = a.json.violations.filter((v) => v.code === 'post-quantum-missing');
    report(`sealctl audit after n3's key went bad: ${a.json.verdict}; ${missing.map((v) => v.message).join(' | ')}`);
    expect([a.code, a.json.verdict]).toEqual([1, 'non-compliant']);
    expect(a.json.pairs.map((p) => [`${p.a}-${p.b}`, p.postQuantum])).toEqual([
      ['n1-n2', true],
      ['n1-n3', false],
      ['n2-n3', false],
    ]);
    expect(missing.map((v) => v.subject)).toEqual(['n1~n3', 'n2~n3']);
    expect(missing[0]?.message).toMatch(
      /^no confirmed post-quantum secret on both ends of n1 ↔ n3: neither n1 nor n3 confirms one \(n1 reports protection none with n3: "the peer publishes no usable ML-KEM encapsulation key: .*modulus check.*"; n3 gave no usable status \(.*\)\); policy pq-e2e requires one$/,
    );
    expect(a.json.pairs[0]?.compliant).toBe(true);
  });
});
