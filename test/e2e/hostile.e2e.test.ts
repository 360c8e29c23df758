/**
 * Hostile peers end to end (issue 16): one namespace cluster (4 nodes, mode wireguard,
 * node-to-node on), real agents, real wireguard-go, BPF at TC, captures on the underlay. n4 is
 * the compromised node: its agent is killed (the attacker holds the node) and the test writes
 * its Node document the way root on n4 could (annotations and status.addresses). For each class:
 *
 *   1. huge numbers (a key epoch of 2^32, 15-digit IPsec epochs)
 *   2. node addresses (node-to-node): 169.254.169.254, n1's InternalIP, multicast, a public
 *      resolver, an address in n1's pod CIDR
 *   6. n1's public key copied (and n3's agent restarted while the copy is published: an agent
 *      without in-memory history keeps n1, from the first-seen owners in its state dir)
 *   9. n1's endpoint taken
 *  10. a loopback endpoint, a multicast endpoint
 *  5/11. a 200 kB annotation, and control characters and bidi overrides in the mode, the
 *      endpoint and the status summary (which `sealctl nodes`/`status` print)
 *
 * the test asserts: n4 is skipped or bounded with a counted reason on every honest agent
 * (metrics); every honest pair (n1, n2, n3) is still encrypted under capture, pod to pod, host to
 * pod and host to host; no honest agent exited or restarted (same pids; n3 only by the test's
 * own restart); and at the end no agent log line longer than 2 KiB, and no control or bidi
 * character on `sealctl nodes` / `sealctl status` output.
 *
 * Class 7 (a phase announced forever) is proved at unit level only (keymgr/rotation.test.ts,
 * tunnels/rotation/hostile-rotation.test.ts): it needs max-key-age rotations to fire during the
 * run. Each assertion is shown able to fail in the same run: the counted reasons start at 0, the
 * hostile values are checked to be in the store (200 kB, raw control characters) and to reach the
 * output escaped, and a last control removes n1's guard and rule and sees the capture fail.
 */
import { jest } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ANNOTATIONS } from '../../common/constants.js';
import type { CaptureResult } from '../harness/capture.js';
import { NsCluster } from '../harness/cluster.js';
import { run, type ExecResult } from '../harness/exec.js';
import { readNodeDoc, updateNodeDoc, type NodeDoc } from '../harness/nodestore.js';
import { repoRoot } from '../harness/paths.js';
import { hostCanaryPing, pairVerdict, proveAllPairs } from '../harness/prove.js';
import { newCanary } from '../harness/traffic.js';
import { metricValue, scrapeMetrics, waitFor } from '../harness/wait.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('hostile.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(240_000);

const HONEST = ['n1', 'n2', 'n3'] as const;
const HOSTILE = 'n4';
/** No agent log line may be longer than this. */
const MAX_LOG_LINE = 2048;
/** C0 (but newline and tab), DEL, C1 and the bidi controls. */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

const report = (line: string): void => {
  process.stderr.write(`HOSTILE ${line}\n`);
};

describe('a compromised node (n4) cannot hijack, stall or blind the honest nodes', () => {
  let c: NsCluster;
  /** n4's document as its honest agent left it: every class starts from it. */
  let base: NodeDoc;
  /** Honest agents' pids: none may change except by the test's own restart. */
  const pids = new Map<string, number | undefined>();
  const expectedStarts = new Map<string, number>();

  beforeAll(async () => {
    c = await NsCluster.create({
      nodes: 4,
      podsPerNode: 1,
      agentConfig: { steering: { nodeToNode: true } },
    });
    await c.waitEncrypted({ timeoutMs: 45_000 });
    // The attacker takes n4 over: its agent stops writing, the test writes n4's Node instead.
    await c.killAgent(HOSTILE);
    base = (await readNodeDoc(c.storeDir, HOSTILE))!;
    for (const n of HONEST) {
      pids.set(n, c.agentStatus(n).pid);
      expectedStarts.set(n, c.agentStatus(n).starts);
    }
  });
  afterAll(async () => {
    await c?.destroy();
  });

  /** Writes n4's document: `base` with annotations and addresses changed. */
  async function hostile(o: { annotations?: Record<string, string | undefined>; addresses?: string[] }): Promise<void> {
    await updateNodeDoc(c.storeDir, HOSTILE, (d) => {
      const ann: Record<string, string> = { ...base.metadata.annotations };
      for (const [k, v] of Object.entries(o.annotations ?? {})) {
        if (v === undefined) delete ann[k];
        else ann[k] = v;
      }
      d.metadata.annotations = ann;
      d.status.addresses = (o.addresses ?? base.status.addresses.map((a) => a.address)).map((address) => ({
        type: 'InternalIP',
        address,
      }));
    });
  }

  /** Waits until `ok` holds for the metrics of every node in `nodes` (default: the honest ones). */
  async function waitMetrics(
    what: string,
    ok: (m: string, node: string) => boolean,
    nodes: readonly string[] = HONEST,
  ): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const n of nodes) {
      out[n] = await waitFor(
        `${n}: ${what}`,
        async () => {
          const m = await scrapeMetrics(c, n).catch(() => '');
          return ok(m, n) ? m : undefined;
        },
        { timeoutMs: 20_000, failFast: c.agentGuard() },
      );
    }
    return out;
  }

  /** Every honest pair encrypted (pods, host to pod, host to host), and no honest agent restarted. */
  async function honestStillEncrypted(name: string): Promise<void> {
    const proof = await proveAllPairs(c, { mode: 'wireguard', hostToPod: true, nodes: HONEST, captureName: name });
    expect(proof.pairs.map(pairVerdict)).toEqual([
      ['n1', 'n2', true],
      ['n1', 'n3', true],
      ['n2', 'n3', true],
    ]);
    expect(proof.capture.podPlaintextPackets).toBe(0);
    expect(proof.capture.canaryHits).toBe(0);
    // Host to host (node-to-node): canary pings between node addresses, only WireGuard on the wire.
    const canary = newCanary();
    const cap = await c.startCapture({ name: `${name}-hosts`, canaries: [canary] });
    let received: string[];
    let hosts: CaptureResult;
    try {
      received = await Promise.all(
        HONEST.flatMap((a) =>
          HONEST.filter((b) => b !== a).map(async (b) => {
            const r = await c.execNode(a, hostCanaryPing(canary, c.node(b).address), {
              check: false,
              timeoutMs: 20_000,
            });
            return `${a}>${b} ${/(\d+) received/.exec(r.stdout)?.[1] ?? '0'}`;
          }),
        ),
      );
    } finally {
      hosts = await cap.stop();
    }
    expect(received.filter((r) => !r.endsWith(' 3'))).toEqual([]);
    expect(hosts.complete).toBe(true);
    expect(hosts.canaryHits).toBe(0);
    expect(hosts.totalPackets - hosts.byKind.arp).toBe(hosts.wireguardPackets);
    for (const [a, b] of [
      ['1', '2'],
      ['1', '3'],
      ['2', '3'],
    ])
      for (const k of [`198.18.0.${a}>198.18.0.${b}`, `198.18.0.${b}>198.18.0.${a}`])
        expect(hosts.wireguardByEndpoints[k] ?? 0).toBeGreaterThan(0);
    assertNoRestart();
    report(
      `${name}: honest pairs encrypted (${proof.capture.wireguardPackets} WireGuard pod/host packets, host-to-host ${hosts.wireguardPackets} WireGuard, 0 plaintext, 0 canary)`,
    );
  }

  function assertNoRestart(): void {
    expect(c.agentFailures()).toEqual([]);
    for (const n of HONEST) {
      expect([n, c.agentStatus(n).pid]).toEqual([n, pids.get(n)]);
      expect([n, c.agentStatus(n).starts]).toEqual([n, expectedStarts.get(n)]);
    }
  }

  const skipped = (m: string, reason: string): number => metricValue(m, 'sealnet_nodes_skipped', `reason="${reason}"`);

  it('baseline: nothing skipped, nothing refused, every honest pair encrypted', async () => {
    for (const n of HONEST) {
      const m = await scrapeMetrics(c, n);
      expect([n, metricValue(m, 'sealnet_nodes_skipped')]).toEqual([n, 0]);
      expect([n, metricValue(m, 'sealnet_node_addresses_rejected')]).toEqual([n, 0]);
      expect([n, metricValue(m, 'sealnet_key_owner_conflicts_total')]).toEqual([n, 0]);
    }
    await honestStillEncrypted('baseline');
  });

  it('class 1, huge numbers: a key epoch of 2^32 and 15-digit IPsec epochs skip n4 with a reason', async () => {
    await hostile({
      annotations: {
        [ANNOTATIONS.keyEpoch]: '4294967296',
        [ANNOTATIONS.ipsecKeyEpoch]: '999999999999999',
        [ANNOTATIONS.ipsecNextKey]: `4294967296:${base.metadata.annotations[ANNOTATIONS.wireguardPublicKey]}`,
      },
    });
    await waitMetrics('n4 skipped as annotations-invalid', (m) => skipped(m, 'annotations-invalid') === 1);
    await honestStillEncrypted('class1');
  });

  it('class 2, node addresses: metadata, multicast, a public resolver, n1s InternalIP and pod range are refused and counted; n1 keeps its address', async () => {
    await hostile({
      addresses: [
        base.status.addresses[0]!.address,
        '169.254.169.254',
        '224.0.0.251',
        '8.8.8.8',
        '198.18.0.1',
        '100.64.1.7',
      ],
    });
    const ms = await waitMetrics('n4 addresses refused', (m, n) => {
      const r = (reason: string): number => metricValue(m, 'sealnet_node_addresses_rejected', `reason="${reason}"`);
      // n1 sees its own address; n2 and n3 see n1's, which n1 keeps (contested).
      return (
        r('not-unicast') === 2 &&
        r('outside-node-cidrs') === 1 &&
        r('in-pod-cidr') === 1 &&
        (n === 'n1' ? r('own-address') === 1 : r('contested') === 1)
      );
    });
    for (const n of HONEST) {
      expect([n, skipped(ms[n]!, 'annotations-invalid')]).toEqual([n, 0]);
      report(
        `class2 ${n}: ${ms[n]!.split('\n')
          .filter((l) => l.startsWith('sealnet_node_addresses_rejected{'))
          .join(' ')}`,
      );
    }
    // n1's host prefix stays on n1's peer on n2 and n3; n4's peer gets only its own address.
    for (const n of ['n2', 'n3']) {
      const dump = await c.wgDump(n);
      const byEndpoint = Object.fromEntries((dump?.peers ?? []).map((p) => [p.endpoint, [...p.allowedIPs].sort()]));
      expect([n, byEndpoint['198.18.0.1:51880']]).toEqual([n, ['100.64.1.0/24', '198.18.0.1/32']]);
      expect([n, byEndpoint['198.18.0.4:51880']]).toEqual([n, ['100.64.4.0/24', '198.18.0.4/32']]);
    }
    await honestStillEncrypted('class2');
  });

  it('class 6, a copied key: n4 publishing n1s key is skipped; n3 restarted meanwhile still keeps n1', async () => {
    const n1Key = (await c.nodeDoc('n1'))!.metadata.annotations[ANNOTATIONS.wireguardPublicKey]!;
    await hostile({ annotations: { [ANNOTATIONS.wireguardPublicKey]: n1Key } });
    await waitMetrics('n4 skipped as duplicate-key', (m) => skipped(m, 'duplicate-key') === 1, ['n2', 'n3']);
    await waitMetrics('n4 skipped as key-equals-self', (m) => skipped(m, 'key-equals-self') === 1, ['n1']);
    await waitMetrics(
      'the key-ownership conflict counted',
      (m) => metricValue(m, 'sealnet_key_owner_conflicts_total') >= 1,
      ['n2', 'n3'],
    );
    // An agent without in-memory history (a restart) while the copy is published.
    await c.stopAgent('n3');
    pids.set('n3', await c.startAgent('n3'));
    expectedStarts.set('n3', (expectedStarts.get('n3') ?? 0) + 1);
    const m3 = await waitMetrics(
      'restarted n3 skips n4 and keeps n1',
      (m) => skipped(m, 'duplicate-key') === 1 && metricValue(m, 'sealnet_reconciles_total', 'result="ok"') >= 1,
      ['n3'],
    );
    expect(metricValue(m3.n3!, 'sealnet_key_owner_conflicts_total')).toBeGreaterThanOrEqual(1);
    const peers = (await c.wgDump('n3'))?.peers ?? [];
    expect(peers.find((p) => p.publicKey === n1Key)?.endpoint).toBe('198.18.0.1:51880');
    await honestStillEncrypted('class6');
  });

  it('class 9, n1s endpoint taken: n4 is skipped as endpoint-conflict, n1 keeps it', async () => {
    await hostile({ annotations: { [ANNOTATIONS.endpoint]: '198.18.0.1:51880' } });
    await waitMetrics('n4 skipped as endpoint-conflict', (m) => skipped(m, 'endpoint-conflict') === 1);
    await honestStillEncrypted('class9');
  });

  it.each([
    ['loopback', '127.0.0.1:51880'],
    ['multicast', '224.0.0.1:51880'],
  ])('class 10, a %s endpoint: n4 is skipped with a reason', async (_, endpoint) => {
    await hostile({ annotations: { [ANNOTATIONS.endpoint]: endpoint } });
    await waitMetrics(`n4 skipped for endpoint ${endpoint}`, (m) => skipped(m, 'annotations-invalid') === 1);
    const log = await readFile(c.agentLogPath('n2'), 'utf8');
    expect(log.split('\n').some((l) => l.includes('skipping node n4') && l.includes(endpoint.split(':')[0]!))).toBe(
      true,
    );
    await honestStillEncrypted(`class10-${_}`);
  });

  it('classes 5 and 11, a 200 kB annotation and control characters: bounded, counted, escaped; no long log line, no control character on sealctl', async () => {
    const big = 'A'.repeat(200_000);
    const esc = '\u001b[2J\u001b]0;pwned\u0007';
    const bidi = '\u202etxet desrever\u202c';
    const statusRaw = JSON.parse(base.metadata.annotations[ANNOTATIONS.status] ?? '{}') as Record<string, unknown>;
    const hostileStatus = JSON.stringify({
      ...statusRaw,
      errors: [`${esc}step failed${bidi}`],
      worst: [{ node: `n1${esc}`, state: 'dropping', reason: `${bidi}${esc}` }],
    });
    const before = await Promise.all(HONEST.map((n) => scrapeMetrics(c, n)));
    // 200 kB in a key n4 must publish: dropped by the store (oversized), the node skipped.
    await hostile({ annotations: { [ANNOTATIONS.endpoint]: big, [ANNOTATIONS.status]: hostileStatus } });
    const doc = (await readNodeDoc(c.storeDir, HOSTILE))!;
    expect(doc.metadata.annotations[ANNOTATIONS.endpoint]!.length).toBe(200_000); // the input really is 200 kB
    // The file store hands the value on; the decoder refuses it and quotes 64 characters of it.
    await waitMetrics(
      'the 200 kB value refused and counted',
      (m, n) =>
        skipped(m, 'annotations-invalid') === 1 &&
        metricValue(m, 'sealnet_invalid_input_total', 'source="annotations"') >
          metricValue(
            before[HONEST.indexOf(n as (typeof HONEST)[number])]!,
            'sealnet_invalid_input_total',
            'source="annotations"',
          ),
    );
    // The line is written, or held back by the per-(node, reason) rate limit and counted.
    await loggedOrHeldBack('the 200 kB value', (l) => l.includes('(200000 chars)'), before);
    await honestStillEncrypted('class11-big');

    // Control characters and bidi overrides in the mode and the endpoint.
    const before1 = await Promise.all(HONEST.map((n) => scrapeMetrics(c, n)));
    await hostile({
      annotations: { [ANNOTATIONS.mode]: `wireguard${esc}`, [ANNOTATIONS.status]: hostileStatus },
    });
    await loggedOrHeldBack('the mode', (l) => l.includes('skipping node n4') && l.includes('sealnet.io/mode'), before1);
    const before2 = await Promise.all(HONEST.map((n) => scrapeMetrics(c, n)));
    await hostile({
      annotations: { [ANNOTATIONS.endpoint]: `198.18.0.4${bidi}:51880`, [ANNOTATIONS.status]: hostileStatus },
    });
    await loggedOrHeldBack('the endpoint', (l) => l.includes('skipping node n4') && l.includes('u{202e}'), before2);
    const raw = (await readNodeDoc(c.storeDir, HOSTILE))!.metadata.annotations;
    expect(UNSAFE.test(raw[ANNOTATIONS.endpoint]!) && UNSAFE.test(raw[ANNOTATIONS.status]!)).toBe(true); // the input holds them

    // What an operator runs.
    const nodes = await sealctl(['nodes']);
    const status = await sealctl(['status']);
    report(`sealctl nodes (exit ${nodes.code}):\n${nodes.stdout}${nodes.stderr}`);
    report(`sealctl status (exit ${status.code}):\n${status.stdout.slice(0, 3000)}${status.stderr.slice(0, 1000)}`);
    for (const r of [nodes, status]) {
      expect(UNSAFE.test(r.stdout)).toBe(false);
      expect(UNSAFE.test(r.stderr)).toBe(false);
    }
    // The hostile endpoint reached the operator, escaped (not dropped, not raw).
    expect(nodes.stdout).toContain('\\u{202e}');
    await honestStillEncrypted('class11-text');
  });

  it('no agent log line is longer than 2 KiB, and none holds a control or bidi character', async () => {
    let longest = { node: '', len: 0 };
    let lines = 0;
    for (const n of [...HONEST, HOSTILE]) {
      for (const l of (await readFile(c.agentLogPath(n), 'utf8')).split('\n')) {
        lines++;
        if (l.length > longest.len) longest = { node: n, len: l.length };
        expect([n, UNSAFE.test(l) ? l.slice(0, 200) : '']).toEqual([n, '']);
      }
    }
    report(`agent logs: ${lines} lines, longest ${longest.len} characters (${longest.node})`);
    expect(longest.len).toBeLessThanOrEqual(MAX_LOG_LINE);
    assertNoRestart();
  });

  it('control: with n1s guard and rule removed, the same capture proof sees n1s pod traffic in plaintext', async () => {
    // Proof that the assertion above can fail: n1 sends pod traffic by the CNI's routes.
    await c.killAgent('n1');
    await c.execNode('n1', ['tc', 'filter', 'del', 'dev', 'eth0', 'egress'], { check: false });
    await c.execNode('n1', ['ip', 'rule', 'del', 'priority', '90'], { check: false });
    const proof = await proveAllPairs(c, { mode: 'wireguard', nodes: HONEST, captureName: 'control' });
    report(
      `control: ${proof.capture.podPlaintextPackets} plaintext pod packets, ${proof.capture.canaryHits} canary hits`,
    );
    expect(proof.capture.podPlaintextPackets).toBeGreaterThan(0);
    expect(proof.pairs.find((p) => p.a === 'n1' && p.b === 'n2')?.encrypted).toBe(false);
  });

  /**
   * Waits until every honest agent counted one more invalid input than in `before` and either
   * wrote a line matching `line` (its length bounded) or held it back (counted).
   */
  async function loggedOrHeldBack(
    what: string,
    line: (l: string) => boolean,
    before: readonly string[],
  ): Promise<void> {
    const count = (m: string): number => metricValue(m, 'sealnet_invalid_input_total', 'source="annotations"');
    const held = (m: string): number =>
      metricValue(m, 'sealnet_log_lines_suppressed_total', 'reason="annotations-invalid"');
    for (const [i, n] of HONEST.entries()) {
      const got = await waitFor(
        `${n} to log or hold back ${what}`,
        async () => {
          const m = await scrapeMetrics(c, n).catch(() => '');
          if (count(m) <= count(before[i]!)) return undefined;
          const lines = (await readFile(c.agentLogPath(n), 'utf8')).split('\n').filter(line);
          if (lines.length > 0) return { lines, held: false };
          return held(m) > held(before[i]!) ? { lines, held: true } : undefined;
        },
        { timeoutMs: 20_000, failFast: c.agentGuard() },
      );
      report(
        `${n}: ${what} ${got.held ? 'held back by the rate limit (counted)' : `logged (${got.lines.at(-1)!.length} characters)`}`,
      );
      for (const l of got.lines) expect(l.length).toBeLessThan(MAX_LOG_LINE);
    }
  }

  async function sealctl(args: readonly string[]): Promise<ExecResult> {
    return run(
      [process.execPath, join(repoRoot(), 'bin', 'sealctl.js'), '--store', 'file', '--store-dir', c.storeDir, ...args],
      {
        check: false,
        timeoutMs: 30_000,
      },
    );
  }
});
