import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { coreLimit, disableCoreDumps } from './coredump.js';

const read = (p: string): Promise<string> => readFile(p, 'utf8');

describe('disableCoreDumps', () => {
  it('sets RLIMIT_CORE to 0:0 on a process (a child here, not the test runner)', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = child.pid!;
      // The hard limit starts above 0 here (soft 0, hard unlimited on this machine): the test can fail.
      expect(await coreLimit(pid, read)).not.toEqual({ soft: '0', hard: '0' });
      await disableCoreDumps(read, pid);
      expect(await coreLimit(pid, read)).toEqual({ soft: '0', hard: '0' });
    } finally {
      child.kill();
    }
  });
});
