/**
 * Fetching every agent's full report: bounded fan-out, a timeout, one reason per agent that does
 * not answer; `sealctl status` and `sealctl audit` mark exactly those agents' pairs PARTIAL.
 * The agents here are real HTTP servers on Unix sockets (the file store's path), some answering,
 * one silent (never answers), one refusing the token, one with no agent at all.
 */
import { mkdtemp, mkdir, rm, writeFile, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sodiumReady } from '../../keymgr/keys.js';
import { STATUS_NOW, statusNode, statusReport } from '../../test/status-fixtures.js';
import { MemoryNodeStore } from '../ports/kernel.fake.js';
import { fetchReports, SocketFetcher, type ReportFetcher } from './fetch.js';
import { runStatus } from './status.js';
import { runAudit } from './audit.js';
import type { FetchedReport } from '../status/join.js';

const NAMES = ['n1', 'n2', 'n3', 'n4', 'n5'];
let dir: string;
const servers: Server[] = [];

beforeAll(async () => {
  await sodiumReady();
  dir = await mkdtemp(join(tmpdir(), 'sealnet-fetch-'));
  await mkdir(join(dir, 'store'));
  for (const n of NAMES) {
    const state = join(dir, n, 'state');
    await mkdir(state, { recursive: true });
    if (n === 'n5') {
      await rm(join(dir, n), { recursive: true }); // no agent ever ran on n5
      continue;
    }
    const token = `${n}`.padEnd(64, 'a').replace(/[^0-9a-f]/g, 'a');
    await writeFile(join(state, 'status.token'), `${token}\n`);
    const server = createServer((req, res) => {
      if (n === 'n3') return; // silent: accepts the connection, never answers
      const wanted = n === 'n4' ? 'wrong' : token;
      if (req.headers.authorization !== `Bearer ${wanted}`) {
        res.writeHead(401);
        res.end('unauthorized\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(statusReport(n, NAMES)));
    });
    await new Promise<void>((r) => server.listen(join(state, 'status.sock'), r));
    servers.push(server);
  }
});

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  await rm(dir, { recursive: true, force: true });
});

const fetcher = (): SocketFetcher => SocketFetcher.besideStore(join(dir, 'store'));
const nodes = () => NAMES.map((n) => statusNode(n, undefined, n === 'n5' ? {} : {}));

describe("fetching agents' reports", () => {
  it("gets each answering agent's report and one reason per agent that does not answer", async () => {
    const t0 = Date.now();
    const r = await fetchReports(NAMES, fetcher(), { timeoutMs: 1500, concurrency: 2 });
    expect(Date.now() - t0).toBeLessThan(6000);
    expect([...r.keys()].sort()).toEqual(NAMES);
    expect(r.get('n1')?.ok).toBe(true);
    expect(r.get('n2')?.ok).toBe(true);
    expect(r.get('n3')).toEqual({ ok: false, reason: 'no answer within 1.5 s' });
    expect(r.get('n4')).toEqual({ ok: false, reason: 'the agent refused the status token (HTTP 401)' });
    expect(r.get('n5')).toMatchObject({
      ok: false,
      reason: expect.stringContaining(`no agent state dir with a status token at ${join(dir, 'n5', 'state')}`),
    });
  });

  it('never has more than `concurrency` requests in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    const slow: ReportFetcher = {
      async fetch(): Promise<FetchedReport> {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return { ok: false, reason: 'x' };
      },
    };
    const names = Array.from({ length: 100 }, (_, i) => `m${i}`);
    const r = await fetchReports(names, slow, { concurrency: 16 });
    expect(r.size).toBe(100);
    expect(peak).toBe(16);
  });

  it('sealctl status and sealctl audit mark exactly the pairs of agents that did not answer PARTIAL, with the reason', async () => {
    // The store's nodes: n1..n4 carry sealnet annotations (agents ran there), n5 none.
    const list = NAMES.map((n) =>
      n === 'n5'
        ? { name: n, annotations: {}, podCIDRs: ['100.64.5.0/24'], internalIPs: ['198.18.0.5'] }
        : statusNode(n, undefined),
    );
    // Each command starts the store and waits for its sync; a MemoryNodeStore syncs when told.
    const store = new MemoryNodeStore(list);
    const syncing = setInterval(() => {
      store.setSynced(false);
      store.setSynced(true);
    }, 50);
    let out = '';
    const code = await runStatus({
      store,
      json: true,
      args: ['--fetch-timeout', '1'],
      fetcher: fetcher(),
      now: () => STATUS_NOW,
      write: (s) => void (out += s),
    });
    expect(code).toBe(1);
    const s = JSON.parse(out) as {
      partial: boolean;
      nodes: { name: string; health: string; problem?: string }[];
      pairs: { a: string; b: string; state: string; partial: boolean }[];
    };
    expect(s.nodes.map((n) => [n.name, n.health])).toEqual([
      ['n1', 'ok'],
      ['n2', 'ok'],
      ['n3', 'unreachable'],
      ['n4', 'unreachable'],
      ['n5', 'no-agent'],
    ]);
    expect(s.nodes.find((n) => n.name === 'n3')?.problem).toBe(
      'the agent on n3 did not give its status: no answer within 1 s',
    );
    expect(s.nodes.find((n) => n.name === 'n4')?.problem).toBe(
      'the agent on n4 did not give its status: the agent refused the status token (HTTP 401)',
    );
    const partial = s.pairs.filter((p) => p.partial).map((p) => `${p.a}~${p.b}`);
    expect(partial).toEqual(['n1~n3', 'n1~n4', 'n1~n5', 'n2~n3', 'n2~n4', 'n2~n5', 'n3~n4', 'n3~n5', 'n4~n5']);
    expect(s.pairs.find((p) => p.a === 'n1' && p.b === 'n2')).toMatchObject({ state: 'encrypted', partial: false });

    out = '';
    const outDir = join(dir, 'audit-out');
    const audit = await runAudit({
      store,
      storeType: 'file',
      json: true,
      args: ['--out', outDir, '--signing-key', join(dir, 'signing.key'), '--fetch-timeout', '1'],
      fetcher: fetcher(),
      now: () => STATUS_NOW,
      write: (x) => void (out += x),
    });
    expect(audit).toBe(1);
    const a = JSON.parse(out) as {
      verdict: string;
      complete: boolean;
      pairs: { a: string; b: string; partial: boolean; violations: string[] }[];
    };
    expect([a.verdict, a.complete]).toEqual(['non-compliant', false]);
    expect(a.pairs.filter((p) => p.partial).map((p) => `${p.a}~${p.b}`)).toEqual(partial);
    expect(a.pairs.find((p) => p.a === 'n1' && p.b === 'n3')?.violations).toContain('status-unreachable');
    const md = await readFile(join(outDir, 'report.md'), 'utf8');
    expect(md).toContain('the agent on n3 did not give its status: no answer within 1 s');
    clearInterval(syncing);
  }, 30_000);
});
