/**
 * The TypeScript layout table against the kernel's own headers: a C program generated from the
 * table prints sizeof/offsetof/field width of every struct field and the value of every
 * constant, compiled with gcc against <linux/xfrm.h> and <linux/netlink.h>, and the numbers must
 * be identical. Field names are the kernel's, so a renamed or missing field fails to compile.
 */
import { describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../common/spawn.js';
import { K, LAYOUT } from './xfrm-layout.js';

const TIMEOUT_MS = 60_000;

function cProgram(): string {
  const lines: string[] = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <sys/socket.h>',
    '#include <netinet/in.h>',
    '#include <linux/netlink.h>',
    '#include <linux/xfrm.h>',
    'int main(void) {',
    '  printf("{\\"structs\\":{");',
  ];
  Object.entries(LAYOUT).forEach(([name, s], i) => {
    lines.push(
      `  printf("%s\\"${name}\\":{\\"cType\\":\\"${s.cType}\\",\\"size\\":%zu,\\"fields\\":{", ${i === 0 ? '""' : '","'}, sizeof(${s.cType}));`,
    );
    Object.entries(s.fields).forEach(([field, [, width]], j) => {
      const sep = j === 0 ? '' : ',';
      if (width === 'flex') {
        lines.push(`  printf("${sep}\\"${field}\\":[%zu,\\"flex\\"]", offsetof(${s.cType}, ${field}));`);
      } else {
        lines.push(
          `  printf("${sep}\\"${field}\\":[%zu,%zu]", offsetof(${s.cType}, ${field}), sizeof(((${s.cType} *)0)->${field}));`,
        );
      }
    });
    lines.push('  printf("}}");');
  });
  lines.push('  printf("},\\"constants\\":{");');
  Object.keys(K).forEach((name, i) => {
    lines.push(`  printf("${i === 0 ? '' : ','}\\"${name}\\":%llu", (unsigned long long)(${name}));`);
  });
  lines.push('  printf("}}\\n");', '  return 0;', '}');
  return lines.join('\n');
}

describe('XFRM layout table vs <linux/xfrm.h>', () => {
  it(
    'matches every size, offset, field width and constant of the installed kernel headers',
    async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'sealnet-xfrm-layout-'));
      try {
        const src = path.join(dir, 'layout.c');
        const bin = path.join(dir, 'layout');
        await writeFile(src, cProgram());
        await run('gcc', ['-std=gnu11', '-Wall', '-Werror', '-o', bin, src], { timeoutMs: 30_000 });
        const { stdout } = await run(bin, [], { timeoutMs: 10_000 });
        const kernel = JSON.parse(stdout) as { structs: unknown; constants: unknown };
        expect(kernel.structs).toEqual(JSON.parse(JSON.stringify(LAYOUT)));
        expect(kernel.constants).toEqual({ ...K });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    TIMEOUT_MS,
  );

  it('covers every structure the encoder and decoder use', () => {
    // A struct added to the codec but not to this table would go unchecked.
    expect(Object.keys(LAYOUT).sort()).toEqual(
      [
        'nlattr',
        'nlmsgerr',
        'nlmsghdr',
        'xfrm_address_t',
        'xfrm_algo',
        'xfrm_algo_aead',
        'xfrm_id',
        'xfrm_lifetime_cfg',
        'xfrm_lifetime_cur',
        'xfrm_mark',
        'xfrm_replay_state',
        'xfrm_replay_state_esn',
        'xfrm_selector',
        'xfrm_stats',
        'xfrm_user_tmpl',
        'xfrm_userpolicy_id',
        'xfrm_userpolicy_info',
        'xfrm_userpolicy_type',
        'xfrm_usersa_id',
        'xfrm_usersa_info',
      ].sort(),
    );
  });
});
