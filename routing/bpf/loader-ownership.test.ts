/**
 * Which classifier in sealnet's tc slot is sealnet's own, when tc cannot name programs.
 *
 * In the agent's container (NET_ADMIN and BPF, no SYS_ADMIN) `tc -j filter show` prints a
 * program's id but not its name: naming it takes BPF_PROG_GET_FD_BY_ID, which needs
 * CAP_SYS_ADMIN. Seen under real kubelets (test/cluster): an agent restarted after its container
 * was killed refused its own classifier ("holds a program sealnet did not load (unknown)") and
 * never became ready again. The loader now matches the id against the programs pinned under its
 * pin directory. tc and bpftool are replaced by scripts that print what the container sees.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BpfLoader } from './loader.js';

/** Kernel ids of the pinned programs (the kernel truncates names to 15 characters). */
const PINNED = [
  { file: 'sealnet_egress', id: 41, name: 'sealnet_egress', tag: 'e1' },
  { file: 'sealnet_ingress', id: 42, name: 'sealnet_ingress', tag: 'i1' },
  { file: 'sealnet_from_pod', id: 43, name: 'sealnet_from_po', tag: 'f1' },
];

describe('BpfLoader ownership of the tc slot without CAP_SYS_ADMIN', () => {
  let dir: string;
  let pinDir: string;
  let progDir: string;
  let filters: string;
  let loader: BpfLoader;

  /** What `tc -j filter show dev eth0 <dir>` prints: one bpf filter in sealnet's slot. */
  const slotWith = (prog: Record<string, unknown>): void =>
    writeFileSync(filters, JSON.stringify([{ kind: 'bpf', pref: 1, options: { handle: '0x5188', prog } }]));

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sealnet-loader-'));
    pinDir = path.join(dir, 'pins');
    progDir = path.join(pinDir, 'prog_0123456789abcdef');
    mkdirSync(progDir, { recursive: true });
    for (const p of PINNED) writeFileSync(path.join(progDir, p.file), '');
    filters = path.join(dir, 'filters.json');
    const tc = path.join(dir, 'tc');
    writeFileSync(
      tc,
      [
        '#!/bin/sh',
        'case "$*" in',
        `  "-j qdisc show"*) echo '[{"kind":"clsact"}]' ;;`,
        `  "-j filter show"*) cat '${filters}' ;;`,
        `  *) echo "$*" >>'${path.join(dir, 'tc-calls')}' ;;`,
        'esac',
        '',
      ].join('\n'),
    );
    const bpftool = path.join(dir, 'bpftool');
    writeFileSync(
      bpftool,
      [
        '#!/bin/sh',
        'case "$*" in',
        ...PINNED.map(
          (p) => `  *"/${p.file}") echo '{"id":${p.id},"name":"${p.name}","tag":"${p.tag}","map_ids":[]}' ;;`,
        ),
        '  *) exit 1 ;;',
        'esac',
        '',
      ].join('\n'),
    );
    chmodSync(tc, 0o755);
    chmodSync(bpftool, 0o755);
    loader = new BpfLoader({ pinDir, tc, bpftool, objectPath: path.join(dir, 'steer.o') });
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('takes its own pinned program, shown by id only, as its own (attach is a no-op)', async () => {
    slotWith({ id: 41 });
    await expect(loader.attach({ dev: 'eth0', hook: 'egress' }, progDir)).resolves.toBe('unchanged');
  });

  it('refuses a foreign program shown by id only', async () => {
    slotWith({ id: 99 });
    await expect(loader.attach({ dev: 'eth0', hook: 'egress' }, progDir)).rejects.toThrow(
      /holds a program sealnet did not load/,
    );
  });

  it('refuses a foreign program that tc names, even with a pinned id', async () => {
    slotWith({ id: 41, name: 'cilium_egress', tag: 'zz' });
    await expect(loader.attach({ dev: 'eth0', hook: 'egress' }, progDir)).rejects.toThrow(/cilium_egress/);
  });

  it('reports its id-only attachments with the pinned names (from_pod told from ingress)', async () => {
    slotWith({ id: 43 });
    const found = await loader.attachments('eth0');
    expect(found).toEqual([
      { dev: 'eth0', hook: 'egress', progId: 43, progName: 'sealnet_from_po', progTag: 'f1' },
      { dev: 'eth0', hook: 'from_pod', progId: 43, progName: 'sealnet_from_po', progTag: 'f1' },
    ]);
  });

  it('detaches its id-only classifier and leaves a foreign one', async () => {
    slotWith({ id: 42 });
    await expect(loader.detach({ dev: 'eth0', hook: 'ingress' })).resolves.toBe(true);
    slotWith({ id: 7 });
    await expect(loader.detach({ dev: 'eth0', hook: 'ingress' })).resolves.toBe(false);
  });
});
