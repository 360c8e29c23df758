import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandProbeAdapter, parseProbeAnswer } from './probe.js';

const PAIRS = [{ a: 'n1', b: 'n2' }];
const ok = {
  a: 'n1',
  b: 'n2',
  ran: true,
  trafficOk: true,
  tunnelPackets: 12,
  plaintextPackets: 0,
  canaryLeaks: 0,
  captureComplete: true,
  encryptedOnWire: true,
  detail: 'ok',
};
const answer = (results: unknown[], extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ version: 1, adapter: 'test', note: 'n', results, ...extra });

describe('probe answers', () => {
  it('accepts a valid answer', () => {
    expect(parseProbeAnswer(answer([ok]), PAIRS)).toEqual({ adapter: 'test', note: 'n', results: [ok] });
  });

  it.each([
    ['not JSON', 'nope', 'no valid JSON'],
    ['an unknown field', answer([ok], { extra: 1 }), 'unknown field extra'],
    ['another version', answer([ok], { version: 2 }), 'version 2'],
    ['an unrequested pair', answer([{ ...ok, b: 'n9' }]), 'pair n1~n9, which was not requested'],
    ['a repeated pair', answer([ok, ok]), 'repeats pair n1~n2'],
    ['a missing field', answer([{ ...ok, detail: undefined }]), 'results[0].detail is missing'],
    ['a negative count', answer([{ ...ok, tunnelPackets: -1 }]), 'tunnelPackets must be a non-negative integer'],
    [
      '"encrypted" against its own numbers',
      answer([{ ...ok, plaintextPackets: 3 }]),
      'claims encryptedOnWire for n1~n2 but its own counts do not support it',
    ],
  ])('rejects %s', (_l, text, msg) => {
    expect(() => parseProbeAnswer(text, PAIRS)).toThrow(msg);
  });
});

describe('CommandProbeAdapter', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sealnet-probe-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('sends the pairs on stdin and reads the answer from stdout', async () => {
    const script = join(dir, 'echo.mjs');
    await writeFile(
      script,
      `let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s);process.stdout.write(JSON.stringify({version:1,adapter:'echo',note:'from stdin',results:r.pairs.map(p=>(${JSON.stringify(ok)}))}))});`,
    );
    expect(await new CommandProbeAdapter([process.execPath, script]).probe(PAIRS)).toEqual({
      ok: true,
      adapter: 'echo',
      note: 'from stdin',
      results: [ok],
    });
  });

  it('reports a failing, missing or slow program as a probe that did not run', async () => {
    const fails = join(dir, 'fail.mjs');
    await writeFile(fails, "process.stderr.write('no capture tool\\n'); process.exit(3);");
    expect(await new CommandProbeAdapter([process.execPath, fails]).probe(PAIRS)).toEqual({
      ok: false,
      error: expect.stringContaining('exited with 3: no capture tool'),
    });
    expect(await new CommandProbeAdapter(['/nonexistent/probe']).probe(PAIRS)).toEqual({
      ok: false,
      error: expect.stringContaining('cannot start probe command /nonexistent/probe'),
    });
    const slow = join(dir, 'slow.mjs');
    await writeFile(slow, 'setTimeout(() => {}, 10000);');
    expect(await new CommandProbeAdapter([process.execPath, slow], { timeoutMs: 300 }).probe(PAIRS)).toEqual({
      ok: false,
      error: expect.stringContaining('timed out'),
    });
  });
});
