import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sodiumReady } from '../../keymgr/keys.js';
import { reportsOf, STATUS_NOW, statusNode, statusPq, statusReport } from '../../test/status-fixtures.js';
import { MemoryNodeStore } from '../ports/kernel.fake.js';
import type { RawNode } from '../ports/model.js';
import type { PeerStatus } from '../status/report.js';
import type { ReportFetcher } from './fetch.js';
import { parseAuditArgs, runAudit, runVerify } from './audit.js';

describe('parseAuditArgs', () => {
  it('passes --probe-arg values verbatim, flag-like ones included, in order', () => {
    const a = parseAuditArgs(
      ['--probe-command', '/bin/probe', '--probe-arg', '--cluster', '--probe-arg', 'c.json', '--node', 'n1'],
      {},
    );
    expect(a.probeCommand).toEqual(['/bin/probe', '--cluster', 'c.json']);
    expect(a.only).toEqual(['n1']);
  });

  it.each([
    [['--polcy', 'x'], 'audit: unknown flag "--polcy"'],
    [['--out'], 'audit: flag --out needs a value'],
    [['--probe-timeout', '0'], '--probe-timeout must be 1 to 86400 seconds'],
    [['--policy', 'p.json', '--profile', 'fips'], 'give --policy or --profile, not both'],
    [['--probe-arg', 'x'], '--probe-arg needs --probe-command'],
  ])('refuses %j', (args, message) => {
    expect(() => parseAuditArgs(args, {})).toThrow(message);
  });
});

/** A memory store that says it synced as soon as a command starts it. */
class SyncedStore extends MemoryNodeStore {
  override async start(events: Parameters<MemoryNodeStore['start']>[0]): Promise<void> {
    await super.start(events);
    queueMicrotask(() => events.onSynced());
  }
}

describe('sealctl audit with requirePostQuantum', () => {
  let dir: string;
  beforeAll(async () => {
    await sodiumReady();
    dir = await mkdtemp(join(tmpdir(), 'sealnet-audit-pq-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** n3 publishes a malformed ML-KEM key: n1 and n2 hold no secret with it (required: dropping), yet n3 claims one with both. */
  function cluster(): RawNode[] {
    const names = ['n1', 'n2', 'n3'];
    const reason = 'the peer publishes no usable ML-KEM encapsulation key: not base64';
    const none = (self: string): Partial<PeerStatus> => ({
      state: 'dropping',
      pq: statusPq(self, 'n3', {
        protection: 'none',
        phase: 'idle',
        secretAgeSeconds: undefined,
        lastRenewal: undefined,
        reason,
      }),
    });
    return names.map((x) =>
      statusNode(
        x,
        statusReport(
          x,
          names,
          {},
          Object.fromEntries(
            names.filter((o) => o !== x).map((o) => [o, o === 'n3' ? none(x) : { pq: statusPq(x, o) }]),
          ),
        ),
      ),
    );
  }

  const fetcher: ReportFetcher = {
    fetch: async (node) => reportsOf(cluster()).get(node) ?? { ok: false, reason: 'no such node' },
  };

  async function auditPq(json: boolean, out: string): Promise<{ code: number; text: string }> {
    const policy = join(dir, 'policy.json');
    await writeFile(policy, '{"version":1,"name":"pq-only","requirePostQuantum":true}');
    let text = '';
    const code = await runAudit({
      store: new SyncedStore(cluster()),
      storeType: 'file',
      json,
      args: ['--policy', policy, '--out', join(dir, out), '--signing-key', join(dir, 'signing.key')],
      fetcher,
      now: () => STATUS_NOW,
      write: (s) => void (text += s),
    });
    return { code, text };
  }

  it('names each pair without a confirmed secret on both ends, the end that lacks it, and counts them', async () => {
    const { code, text } = await auditPq(false, 'text');
    expect(code).toBe(1);
    expect(text).toContain('audit: NON-COMPLIANT — policy pq-only; 3 nodes, 3 pairs\n');
    expect(text).toContain('  n1 ↔ n2: compliant\n      post-quantum: confirmed by both ends\n');
    expect(text).toContain(
      '      post-quantum-missing [n1~n3]: no confirmed post-quantum secret on both ends of n1 ↔ n3: n1 lacks it (n1 reports protection none with n3: "the peer publishes no usable ML-KEM encapsulation key: not base64"); policy pq-only requires one\n',
    );
    expect(text).toContain('post-quantum: 1 of 3 pairs protected by a confirmed secret on both ends\n');
  });

  it('--json carries the per-pair flag and the counts; the signed report verifies and a changed pq field does not', async () => {
    const { code, text } = await auditPq(true, 'json');
    expect(code).toBe(1);
    const j = JSON.parse(text) as {
      pairs: { a: string; b: string; postQuantum: boolean; violations: string[] }[];
      postQuantum: unknown;
    };
    expect(j.pairs.map((p) => [`${p.a}~${p.b}`, p.postQuantum])).toEqual([
      ['n1~n2', true],
      ['n1~n3', false],
      ['n2~n3', false],
    ]);
    expect(j.pairs[1]?.violations).toEqual(['pair-not-encrypted', 'post-quantum-missing']);
    expect(j.postQuantum).toEqual({ confirmedPairs: 1, unconfirmedPairs: 2 });
    const file = join(dir, 'json', 'report.json');
    const verify = async (): Promise<{ code: number; out: string }> => {
      let out = '';
      const c = await runVerify({
        args: [file, '--public-key', join(dir, 'signing.pub')],
        json: false,
        write: (s) => void (out += s),
      });
      return { code: c, out };
    };
    const ok = await verify();
    expect([ok.code, ok.out.split('\n')[0]]).toEqual([0, expect.stringContaining(': VALID — signed by')]);
    const report = await readFile(file, 'utf8');
    // n3's claim about n1, as the report records it, changed from hybrid to something else.
    const claim = '"protection": "none"';
    expect(report).toContain(claim);
    await writeFile(file, report.replace(claim, '"protection": "hybrid"'));
    const bad = await verify();
    expect([bad.code, bad.out]).toEqual([
      1,
      expect.stringContaining('the Ed25519 signature does not match the report content'),
    ]);
  });
});
