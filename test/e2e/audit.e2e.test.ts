/**
 * Status, metrics and signed audits end to end (issue "Status, metrics and signed compliance
 * audits"): real agents in a namespace cluster publish a bounded status summary on their Node
 * and serve the full report on `/status`; `sealctl status` and `sealctl audit` (run as the real
 * CLI) list Nodes through the file store and fetch every agent's full report over the Unix
 * socket in its state dir (the default layout beside the store), an active probe sends
 * canary traffic under an underlay capture, and every violation is provoked for real: a tunnel
 * peer removed from the kernel, fail-closed turned off in an agent's config, an old key, the
 * FIPS profile against WireGuard, a stopped and a killed agent.
 *
 * The cluster runs without WireGuard keepalives so that, once traffic stops, byte counters and
 * handshake times stand still and the metrics can be compared with `sealctl status` exactly.
 */
import { jest } from '@jest/globals';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NsCluster } from '../harness/cluster.js';
import { run, sleep, type ExecResult } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import { parseProm } from '../harness/prom.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('audit.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(240_000);

const HEARTBEAT_S = 4;

interface StatusJson {
  generatedAt: string;
  partial: boolean;
  nodes: {
    name: string;
    health: string;
    problem?: string;
    report?: {
      at: string;
      key: { fingerprint: string; createdAt: string };
      steering: { failClosed: boolean };
      agent: string;
    };
  }[];
  pairs: {
    a: string;
    b: string;
    state: string;
    partial: boolean;
    notes: string[];
    sides: {
      node: string;
      state: string;
      peerKey?: string;
      ownKey?: string;
      handshake?: number;
      rx?: number;
      tx?: number;
      asOf?: string;
    }[];
  }[];
}

interface AuditJson {
  verdict: string;
  complete: boolean;
  report: string;
  page: string;
  signer: string;
  probe: { requested: boolean; ran: boolean; adapter?: string; note: string };
  pairs: { a: string; b: string; state: string; compliant: boolean; partial: boolean; violations: string[] }[];
  violations: { code: string; subject: string; message: string }[];
}

let c: NsCluster;
let work: string;
let signingKey: string;
let clusterFile: string;

async function sealctl(args: readonly string[]): Promise<ExecResult> {
  return run(
    [process.execPath, join(repoRoot(), 'bin', 'sealctl.js'), '--store', 'file', '--store-dir', c.storeDir, ...args],
    { check: false, timeoutMs: 180_000 },
  );
}

async function status(): Promise<StatusJson> {
  const r = await sealctl(['status', '--json']);
  return JSON.parse(r.stdout) as StatusJson;
}

async function waitStatus(what: string, ok: (s: StatusJson) => boolean, timeoutMs = 40_000): Promise<StatusJson> {
  const deadline = Date.now() + timeoutMs;
  let last: StatusJson | undefined;
  while (Date.now() < deadline) {
    last = await status();
    if (ok(last)) return last;
    await sleep(500);
  }
  throw new Error(
    `timed out waiting for ${what}; last status: ${JSON.stringify(last?.pairs.map((p) => [p.a, p.b, p.state, p.notes]))} ${JSON.stringify(last?.nodes.map((n) => [n.name, n.health, n.problem]))}`,
  );
}

const allEncrypted = (s: StatusJson): boolean =>
  !s.partial && s.pairs.length === 3 && s.pairs.every((p) => p.state === 'encrypted');

let auditN = 0;
async function audit(args: readonly string[]): Promise<{ r: ExecResult; json: AuditJson | undefined; out: string }> {
  const out = join(work, `audit-${++auditN}`);
  const r = await sealctl(['audit', '--json', '--out', out, '--signing-key', signingKey, ...args]);
  let json: AuditJson | undefined;
  try {
    json = JSON.parse(r.stdout) as AuditJson;
  } catch {
    json = undefined;
  }
  return { r, json, out };
}

const probeArgs = (): string[] => [
  '--probe-command',
  process.execPath,
  '--probe-arg',
  join(repoRoot(), 'dist', 'test', 'harness', 'audit-probe.js'),
  '--probe-arg=--cluster',
  '--probe-arg',
  clusterFile,
];

async function fetchIn(node: string, path: string, token?: string): Promise<{ status: number; body: string }> {
  const script = `fetch('http://127.0.0.1:9588${path}',{headers:process.env.T?{authorization:'Bearer '+process.env.T}:{}}).then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})),e=>{console.error(String(e));process.exit(1)})`;
  const r = await c.execNode(node, [process.execPath, '-e', script], { env: token === undefined ? {} : { T: token } });
  return JSON.parse(r.stdout) as { status: number; body: string };
}

const codes = (j: AuditJson | undefined): string[] =>
  [...new Set((j?.violations ?? []).map((v) => `${v.code}@${v.subject}`))].sort();

beforeAll(async () => {
  c = await NsCluster.create({
    nodes: 3,
    podsPerNode: 1,
    agentConfig: {
      status: { heartbeatSeconds: HEARTBEAT_S, minIntervalSeconds: 1 },
      wireguard: { persistentKeepalive: 0 },
      resyncIntervalSeconds: 3600,
    },
  });
  work = await c.workDir('audit');
  signingKey = join(work, 'signer', 'signing.key');
  clusterFile = join(work, 'cluster.json');
  await writeFile(clusterFile, JSON.stringify({ ...c.topology(), mode: c.mode, listenPort: c.listenPort }));
  await c.waitEncrypted({ timeoutMs: 30_000 });
  await waitStatus('every pair encrypted', allEncrypted);
});
afterAll(async () => {
  await c?.destroy();
});

describe('status and metrics', () => {
  it('sealctl status shows every pair encrypted from both ends, and the Prometheus metrics say exactly the same', async () => {
    // Let traffic settle (WireGuard answers received data with a keepalive within 10 s), then
    // wait for reports generated after that, so nothing moves between report and scrape.
    await sleep(11_000);
    const quiet = Date.now();
    const s = await waitStatus(
      'reports newer than the quiet point',
      (x) => allEncrypted(x) && x.nodes.every((n) => n.report !== undefined && Date.parse(n.report.at) > quiet + 500),
    );
    for (const node of c.nodeNames()) {
      const m = parseProm((await fetchIn(node, '/metrics')).body);
      const view = s.nodes.find((n) => n.name === node)!;
      expect(m.value('sealnet_key_info', { kind: 'wireguard', fingerprint: view.report!.key.fingerprint })).toBe(1);
      expect(m.value('sealnet_key_created_timestamp_seconds', { kind: 'wireguard' })).toBe(
        Date.parse(view.report!.key.createdAt) / 1000,
      );
      expect(m.value('sealnet_peers_by_state', { state: 'encrypted' })).toBe(2);
      expect(m.value('sealnet_ready')).toBe(1);
      expect(m.type('sealnet_reconcile_duration_seconds')).toBe('HISTOGRAM');
      expect(m.type('sealnet_bpf_packets_total')).toBe('COUNTER');
      expect(m.value('sealnet_key_rotations_total', { kind: 'wireguard', result: 'completed' })).toBe(0);
      // O(1) series: aggregates of the same report `sealctl status` fetched.
      const sides = s.pairs
        .filter((x) => x.a === node || x.b === node)
        .map((p) => p.sides.find((x) => x.node === node)!);
      for (const side of sides) {
        expect(side.state).toBe('encrypted');
        expect(side.handshake).toBeGreaterThan(0);
        expect(side.rx).toBeGreaterThan(0);
      }
      expect(m.value('sealnet_tunnel_receive_bytes_total')).toBe(sides.reduce((a, x) => a + (x.rx ?? 0), 0));
      expect(m.value('sealnet_tunnel_transmit_bytes_total')).toBe(sides.reduce((a, x) => a + (x.tx ?? 0), 0));
      const worstAge = Math.floor(Date.now() / 1000) - Math.min(...sides.map((x) => x.handshake!));
      expect(Math.abs(m.value('sealnet_peer_handshake_age_worst_seconds') - worstAge)).toBeLessThanOrEqual(2);
      expect(m.samples('sealnet_peer_state')).toHaveLength(0); // per-peer series are opt-in
      // The whole exposition stays small: no series per peer.
      const text = (await fetchIn(node, '/metrics')).body;
      expect(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length).toBeLessThan(150);
    }
    // The Node carries only the bounded summary, consistent with the full report.
    for (const node of c.nodeNames()) {
      const text = (await c.nodeDoc(node))!.metadata.annotations['sealnet.io/status']!;
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024);
      const summary = JSON.parse(text) as {
        v: number;
        counts: Record<string, number>;
        worst: unknown[];
        key: { fingerprint: string };
      };
      expect([summary.v, summary.counts, summary.worst]).toEqual([
        2,
        { encrypted: 2, pending: 0, dropping: 0, misconfigured: 0 },
        [],
      ]);
      expect(summary.key.fingerprint).toBe(s.nodes.find((n) => n.name === node)!.report!.key.fingerprint);
    }
    const table = await sealctl(['status']);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('status as each agent reports it now');
    expect(table.stdout).toMatch(/n1 ↔ n2\s+encrypted\s+wireguard\s+wireguard-chacha20poly1305/);
  });

  it('/status needs the bearer token and shows fingerprints, never keys; /readyz is ready', async () => {
    const token = (await readFile(join(c.runDir, 'n1', 'state', 'status.token'), 'utf8')).trim();
    expect((await fetchIn('n1', '/status')).status).toBe(401);
    expect((await fetchIn('n1', '/status', 'f'.repeat(64))).status).toBe(401);
    const ok = await fetchIn('n1', '/status', token);
    expect(ok.status).toBe(200);
    const report = JSON.parse(ok.body) as { node: string; peers: { node: string; state: string }[] };
    expect(report.node).toBe('n1');
    expect(report.peers.map((p) => [p.node, p.state])).toEqual([
      ['n2', 'encrypted'],
      ['n3', 'encrypted'],
    ]);
    for (const n of c.nodeNames())
      expect(ok.body).not.toContain((await c.nodeDoc(n))!.metadata.annotations['sealnet.io/wireguard-public-key']);
    const priv = (await readFile(join(c.runDir, 'n1', 'state', 'keys', 'wireguard.key'), 'utf8')).trim();
    expect(ok.body).not.toContain(priv);
    expect(await fetchIn('n1', '/readyz')).toEqual({ status: 200, body: 'ready\n' });
  });
});

describe('sealctl audit', () => {
  let compliant: { out: string; json: AuditJson };

  it('passes a compliant cluster, with an active probe on every pair, and the signed report verifies', async () => {
    const { r, json, out } = await audit(probeArgs());
    expect(r.stderr).toBe('');
    expect(json?.verdict).toBe('compliant');
    expect(r.code).toBe(0);
    expect(json?.complete).toBe(true);
    expect(json?.probe).toMatchObject({ requested: true, ran: true, adapter: 'sealnet-nscluster' });
    expect(json?.pairs.map((p) => [p.a, p.b, p.compliant])).toEqual([
      ['n1', 'n2', true],
      ['n1', 'n3', true],
      ['n2', 'n3', true],
    ]);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
      pairs: {
        probe: { encryptedOnWire: boolean; tunnelPackets: number; plaintextPackets: number; canaryLeaks: number };
      }[];
    };
    for (const p of report.pairs)
      expect(p.probe).toMatchObject({ encryptedOnWire: true, plaintextPackets: 0, canaryLeaks: 0 });
    expect(report.pairs.every((p) => p.probe.tunnelPackets > 0)).toBe(true);
    const page = await readFile(join(out, 'report.md'), 'utf8');
    expect(page).toContain('# sealnet compliance audit: COMPLIANT');
    expect(page).toContain('| n1 ↔ n2 | encrypted | yes |');
    const v = await sealctl([
      'audit',
      'verify',
      join(out, 'report.json'),
      '--public-key',
      join(work, 'signer', 'signing.pub'),
    ]);
    expect([v.code, v.stdout]).toEqual([0, expect.stringContaining('VALID — signed by sha256:')]);
    // Unpinned, the same intact report is not accepted; the message says how to pin.
    const unpinned = await sealctl(['audit', 'verify', join(out, 'report.json')]);
    expect([unpinned.code, unpinned.stdout]).toEqual([
      1,
      expect.stringContaining('pin the signer with --public-key FILE'),
    ]);
    compliant = { out, json: json! };
  });

  it('a report edited by one byte fails verification (anywhere in the file), and so does an edited page', async () => {
    const src = join(compliant.out, 'report.json');
    const bytes = await readFile(src);
    const text = bytes.toString('utf8');
    const positions = [
      0,
      text.indexOf('"compliant"') + 1,
      text.indexOf('"generatedAt"') + 20,
      text.indexOf('"value"') + 12,
      text.indexOf('\n  "'),
      bytes.length - 2,
    ];
    for (const [i, pos] of positions.entries()) {
      const dir = join(work, `tampered-${i}`);
      await mkdir(dir, { recursive: true });
      const t = Buffer.from(bytes);
      t[pos] = (t[pos] ?? 0) ^ 0x01;
      await writeFile(join(dir, 'report.json'), t);
      const v = await sealctl([
        'audit',
        'verify',
        join(dir, 'report.json'),
        '--public-key',
        join(work, 'signer', 'signing.pub'),
      ]);
      expect([pos, v.code, v.stdout]).toEqual([pos, 1, expect.stringContaining('INVALID')]);
    }
    const dir = join(work, 'tampered-page');
    await mkdir(dir, { recursive: true });
    await copyFile(src, join(dir, 'report.json'));
    await writeFile(
      join(dir, 'report.md'),
      (await readFile(join(compliant.out, 'report.md'), 'utf8')).replace(
        '| n1 ↔ n2 | encrypted | yes |',
        '| n1 ↔ n2 | encrypted | yeS |',
      ),
    );
    const v = await sealctl([
      'audit',
      'verify',
      join(dir, 'report.json'),
      '--public-key',
      join(work, 'signer', 'signing.pub'),
    ]);
    expect([v.code, v.stdout]).toEqual([
      1,
      expect.stringContaining('the Markdown page does not match the signed report'),
    ]);
  });

  it('names a disallowed algorithm (FIPS profile against WireGuard) and an old key (a policy with a tiny maximum age)', async () => {
    const fips = await audit(['--profile', 'fips']);
    expect([fips.r.code, fips.json?.verdict]).toEqual([1, 'non-compliant']);
    expect(codes(fips.json)).toEqual([
      'algorithm-not-allowed@n1',
      'algorithm-not-allowed@n2',
      'algorithm-not-allowed@n3',
    ]);
    expect(fips.json?.violations[0]?.message).toBe(
      'n1 uses wireguard-chacha20poly1305; policy fips allows only ipsec-esp-aes-gcm-128, ipsec-esp-aes-gcm-256',
    );
    expect(fips.json?.pairs.every((p) => !p.compliant && p.violations.includes('algorithm-not-allowed'))).toBe(true);
    const policy = join(work, 'tiny-key-age.json');
    await writeFile(policy, JSON.stringify({ version: 1, name: 'rotate-often', maxKeyAge: '1s' }));
    const old = await audit(['--policy', policy]);
    expect([old.r.code, old.json?.verdict]).toEqual([1, 'non-compliant']);
    expect(codes(old.json)).toEqual(['key-too-old@n1', 'key-too-old@n2', 'key-too-old@n3']);
    expect(old.json?.violations[0]?.message).toMatch(
      /^the key of n1 \([0-9a-f]{16}, created .*\) is \d+ s old; policy rotate-often allows at most 1s$/,
    );
    // The human output says why, per pair.
    const text = await sealctl([
      'audit',
      '--profile',
      'fips',
      '--out',
      join(work, 'fips-text'),
      '--signing-key',
      signingKey,
    ]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('audit: NON-COMPLIANT — policy fips; 3 nodes, 3 pairs');
    expect(text.stdout).toContain('n1 ↔ n2: NOT compliant (encrypted)');
    expect(text.stdout).toContain('algorithm-not-allowed [n1]: n1 uses wireguard-chacha20poly1305');
    expect(text.stdout).toContain('active probe: NOT RUN');
  });

  it('names fail-closed turned off in one agent config, only on that node’s pairs', async () => {
    await c.restartAgent('n3', { steering: { failClosed: false } });
    await waitStatus(
      'n3 to report fail-closed off',
      (s) =>
        s.nodes.find((n) => n.name === 'n3')?.report?.steering.failClosed === false &&
        s.nodes.every((n) => n.health === 'ok'),
    );
    const a = await audit([]);
    expect([a.r.code, a.json?.verdict, a.json?.complete]).toEqual([1, 'non-compliant', true]);
    expect(codes(a.json)).toEqual(['fail-closed-off@n3']);
    expect(a.json?.pairs.map((p) => [p.a, p.b, p.compliant])).toEqual([
      ['n1', 'n2', true],
      ['n1', 'n3', false],
      ['n2', 'n3', false],
    ]);
    expect(a.json?.violations[0]?.message).toBe(
      'fail-closed is off on n3: pod traffic to a node without a ready tunnel is passed in plaintext',
    );
    await c.restartAgent('n3', {});
    await waitStatus(
      'n3 back to fail-closed',
      (s) => s.nodes.find((n) => n.name === 'n3')?.report?.steering.failClosed === true && allEncrypted(s),
    );
  });

  it('names a pair that is not encrypted (its tunnel peer removed from the kernel): status, /readyz, audit and the probe all see it', async () => {
    const n3Key = (await c.nodeDoc('n3'))!.metadata.annotations['sealnet.io/wireguard-public-key']!;
    await c.execNode('n1', ['wg', 'set', 'sealwg0', 'peer', n3Key, 'remove']);
    const s = await waitStatus(
      'n1 ↔ n3 dropping',
      (x) => x.pairs.find((p) => p.a === 'n1' && p.b === 'n3')?.state === 'dropping',
    );
    expect(s.pairs.find((p) => p.a === 'n1' && p.b === 'n3')?.notes).toEqual([
      'n1 → n3: dropping (no tunnel peer with its key is programmed; fail-closed drops its pod traffic)',
    ]);
    const ready = await fetchIn('n1', '/readyz');
    expect([ready.status, ready.body]).toEqual([
      503,
      expect.stringContaining('peer n3: no tunnel peer with its key is programmed'),
    ]);
    expect((await sealctl(['status'])).code).toBe(1);
    const a = await audit(probeArgs());
    expect([a.r.code, a.json?.verdict]).toEqual([1, 'non-compliant']);
    expect(codes(a.json)).toEqual(['pair-not-encrypted@n1~n3', 'probe-failed@n1~n3']);
    expect(a.json?.violations.find((v) => v.code === 'pair-not-encrypted')?.message).toContain(
      'n1 ↔ n3 is dropping: n1 → n3: dropping',
    );
    expect(a.json?.violations.find((v) => v.code === 'probe-failed')?.message).toContain(
      "the probe's canary traffic did not get through",
    );
    expect(a.json?.pairs.map((p) => [p.a, p.b, p.compliant])).toEqual([
      ['n1', 'n2', true],
      ['n1', 'n3', false],
      ['n2', 'n3', true],
    ]);
    // Fail-closed held: the probe saw no plaintext between n1 and n3.
    const report = JSON.parse(await readFile(a.json!.report, 'utf8')) as {
      pairs: { a: string; b: string; probe: { plaintextPackets: number; canaryLeaks: number } }[];
    };
    expect(report.pairs.find((p) => p.a === 'n1' && p.b === 'n3')?.probe).toMatchObject({
      plaintextPackets: 0,
      canaryLeaks: 0,
    });
    // A change made behind the agent's back is repaired by the next full pass: the periodic
    // resync (an hour in this cluster) or SIGHUP, which asks for one now. Store events do not
    // re-read the tunnel (they are applied from the agent's kernel view).
    process.kill(c.agentStatus('n1').pid!, 'SIGHUP');
    await c.waitEncrypted({ timeoutMs: 20_000 });
    await waitStatus('every pair encrypted again', allEncrypted);
  });

  it('a stopped agent and a killed one are named, their pairs are partial, and the audit is never compliant', async () => {
    await c.stopAgent('n2');
    const s = await waitStatus('n2 stopped', (x) => x.nodes.find((n) => n.name === 'n2')?.health === 'stopped');
    expect(s.partial).toBe(true);
    expect(s.pairs.filter((p) => p.a === 'n2' || p.b === 'n2').every((p) => p.state === 'unknown' && p.partial)).toBe(
      true,
    );
    const table = await sealctl(['status']);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/n1 ↔ n2\s+unknown.*PARTIAL/);
    expect(table.stdout).toContain('n2: stopped: the agent on n2 stopped at');
    const stopped = await audit([]);
    expect([stopped.r.code, stopped.json?.verdict, stopped.json?.complete]).toEqual([1, 'non-compliant', false]);
    expect(codes(stopped.json)).toEqual(['agent-stopped@n2', 'pair-not-encrypted@n1~n2', 'pair-not-encrypted@n2~n3']);
    expect(stopped.json?.pairs.map((p) => [p.a, p.b, p.compliant, p.partial])).toEqual([
      ['n1', 'n2', false, true],
      ['n1', 'n3', true, false],
      ['n2', 'n3', false, true],
    ]);

    await c.startAgent('n2');
    await waitStatus('n2 running again', (x) => x.nodes.find((n) => n.name === 'n2')?.health === 'ok');
    await c.killAgent('n2', 'SIGKILL');
    // Killed: no last summary, the socket refuses: unreachable at once (no waiting for staleness).
    const gone = await waitStatus(
      'n2 unreachable',
      (x) => x.nodes.find((n) => n.name === 'n2')?.health === 'unreachable',
      20_000,
    );
    expect(gone.nodes.find((n) => n.name === 'n2')?.problem).toContain(
      'the agent on n2 did not give its status: the agent is not listening on',
    );
    const killed = await audit([]);
    expect([killed.r.code, killed.json?.verdict, killed.json?.complete]).toEqual([1, 'non-compliant', false]);
    expect(codes(killed.json)).toContain('status-unreachable@n2');
    await c.startAgent('n2');
  });

  it('bad input: a malformed policy, an unknown node, bad flags: a clear error, exit 2, no report', async () => {
    const bad = join(work, 'bad-policy.json');
    await writeFile(bad, '{"version": 1, "maxKeyAge": 30}');
    const p = await audit(['--policy', bad]);
    expect([p.r.code, p.r.stderr]).toEqual([
      2,
      `sealctl: invalid audit policy ${bad}: maxKeyAge must be a duration such as "90d", "12h", "15m" or "30s" (at most 3650d), got 30\n`,
    ]);
    await writeFile(bad, '{"version": 1,');
    expect((await audit(['--policy', bad])).r.stderr).toContain('not valid JSON');
    const unknown = await audit(['--node', 'n9']);
    expect([unknown.r.code, unknown.r.stderr]).toEqual([2, 'sealctl: unknown node n9 (the store lists: n1, n2, n3)\n']);
    await expect(readFile(join(unknown.out, 'report.json'))).rejects.toThrow();
    const st = await sealctl(['status', '--node', 'n9']);
    expect([st.code, st.stderr]).toEqual([2, 'sealctl: unknown node n9 (the store lists: n1, n2, n3)\n']);
    const flag = await sealctl(['audit', '--polcy', bad]);
    expect([flag.code, flag.stderr]).toEqual([2, 'sealctl: audit: unknown flag "--polcy"\n']);
    const missing = await sealctl(['audit', 'verify', join(work, 'nope.json')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read report');
  });
});
