/**
 * The README's first command, as a user runs it: `npm run demo` (bin/demo.js) builds a 3-node
 * cluster, says PASS only when every pair is encrypted and every node's published status says so,
 * and a `sealctl audit` run the moment it returns (with `--keep`) reads a complete, compliant
 * cluster. The plaintext baseline (`--no-encryption`) must fail: proof the demo's capture sees a
 * leak.
 */
import { jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../harness/paths.js';
import { listNetns } from '../harness/teardown.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('demo.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(300_000);

const execFileAsync = promisify(execFile);
const DEMO_STATE_FILE = '/run/sealnet-demo/state.json';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function nodeScript(argv: readonly string[], timeoutMs = 240_000): Promise<Run> {
  return execFileAsync(process.execPath, argv, { timeout: timeoutMs, maxBuffer: 64 << 20 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

const demo = (args: readonly string[]): Promise<Run> => nodeScript([join(repoRoot(), 'bin', 'demo.js'), ...args]);

/** The `--json` line: the last line of stdout. */
function lastJson(out: string): Record<string, unknown> {
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? '') as Record<string, unknown>;
}

let work: string;
let keptPrefix: string | undefined;

beforeAll(async () => {
  // A kept demo of somebody else would make `--keep` refuse: say so instead of removing it.
  if (existsSync(DEMO_STATE_FILE))
    throw new Error(`a kept demo cluster is running (${DEMO_STATE_FILE}); remove it with: npm run demo -- --down`);
  work = await mkdtemp(join(tmpdir(), 'sealnet-demo-e2e-'));
});

afterAll(async () => {
  if (keptPrefix !== undefined && existsSync(DEMO_STATE_FILE)) await demo(['--down']);
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe('npm run demo', () => {
  it('--keep --json: PASS only once every status is published; an audit right after is complete and compliant; --down removes it all', async () => {
    const r = await demo(['--nodes', '3', '--mode', 'wireguard', '--json', '--keep']);
    const report = lastJson(r.stdout);
    keptPrefix = (report.topology as { prefix?: string } | undefined)?.prefix;
    expect({ code: r.code, tail: r.code === 0 ? '' : r.stdout.slice(-3000) + r.stderr.slice(-2000) }).toEqual({
      code: 0,
      tail: '',
    });
    expect(report).toMatchObject({
      ok: true,
      nodes: 3,
      pairs: 3,
      encryptedPairs: 3,
      plaintextPackets: 0,
      canaryLeaks: 0,
      statusPublished: true,
      kept: true,
    });
    expect(r.stdout).toContain('RESULT: PASS: 3/3 pairs encrypted');
    expect(keptPrefix).toMatch(/^seal/);

    // The moment the demo returned: what an auditor gets.
    const ctl = report.ctl as string[];
    const out = join(work, 'audit');
    const audit = await nodeScript([
      ...ctl.slice(1),
      'audit',
      '--json',
      '--out',
      out,
      '--signing-key',
      join(work, 'signing.key'),
    ]);
    const verdict = JSON.parse(audit.stdout) as { verdict: string; complete: boolean; violations: unknown[] };
    expect({
      code: audit.code,
      verdict: verdict.verdict,
      complete: verdict.complete,
      violations: verdict.violations,
    }).toEqual({
      code: 0,
      verdict: 'compliant',
      complete: true,
      violations: [],
    });
    const status = await nodeScript([...ctl.slice(1), 'status', '--json']);
    expect(status.code).toBe(0);
    const st = JSON.parse(status.stdout) as { partial: boolean; pairs: { state: string }[] };
    expect({ partial: st.partial, states: st.pairs.map((p) => p.state) }).toEqual({
      partial: false,
      states: ['encrypted', 'encrypted', 'encrypted'],
    });

    const down = await demo(['--down']);
    expect(down.code).toBe(0);
    expect(down.stdout).toContain(`removed demo cluster ${keptPrefix}`);
    expect(listNetns().filter((n) => n.startsWith(`${keptPrefix}-`))).toEqual([]);
    expect(existsSync(DEMO_STATE_FILE)).toBe(false);
    keptPrefix = undefined;
  });

  it('--no-encryption (the baseline) fails, and its capture sees the plaintext and the canary', async () => {
    const r = await demo(['--nodes', '2', '--no-encryption', '--json']);
    const report = lastJson(r.stdout);
    expect(r.code).toBe(1);
    expect(report).toMatchObject({ ok: false, encryption: false, statusPublished: false, encryptedPairs: 0 });
    expect(report.plaintextPackets as number).toBeGreaterThan(0);
    expect(report.canaryLeaks as number).toBeGreaterThan(0);
    expect(r.stdout).toContain('RESULT: SANITY BASELINE');
  });
});
