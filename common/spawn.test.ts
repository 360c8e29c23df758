import { run, runPiped, SpawnError } from './spawn.js';

async function failure(p: Promise<unknown>): Promise<SpawnError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SpawnError);
    return err as SpawnError;
  }
  throw new Error('expected a SpawnError');
}

describe('run', () => {
  it('passes arguments verbatim, without a shell, with LC_ALL=C and a minimal env', async () => {
    const { stdout } = await run(process.execPath, [
      '-e',
      'console.log(JSON.stringify([process.argv.slice(1), process.env.LC_ALL, process.env.HOME]))',
      '$HOME',
      'a b',
      '',
    ]);
    expect(JSON.parse(stdout)).toEqual([['$HOME', 'a b', ''], 'C', null]);
  });

  it('feeds input to stdin and adds env', async () => {
    const { stdout } = await run(
      process.execPath,
      ['-e', 'process.stdin.pipe(process.stdout); process.stdout.write(process.env.X)'],
      { input: 'hello ', env: { X: 'y' } },
    );
    expect(stdout).toBe('yhello ');
  });

  it('reports command, exit code and stderr', async () => {
    const e = await failure(run(process.execPath, ['-e', 'process.stderr.write("boom\\n"); process.exit(3)']));
    expect(e.code).toBe('SPAWN_FAILED');
    expect(e.exitCode).toBe(3);
    expect(e.stderr).toBe('boom\n');
    expect(e.message).toContain('exit code 3: boom');
    expect(e.message).toContain(process.execPath);
  });

  it('applies redact to stderr in the error', async () => {
    const e = await failure(
      run(process.execPath, ['-e', 'process.stderr.write(Buffer.from("c2VjcmV0", "base64")); process.exit(1)'], {
        redact: (s) => s.replace('secret', 'XX'),
      }),
    );
    expect(e.stderr).toBe('XX');
    expect(e.message).not.toContain('secret');
  });

  it('times out', async () => {
    const e = await failure(run(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { timeoutMs: 200 }));
    expect(e.timedOut).toBe(true);
    expect(e.message).toContain('timed out after 200 ms');
  });

  it('reports a missing program', async () => {
    const e = await failure(run('/nonexistent/sealnet-no-such-tool', []));
    expect(e.errno).toBe('ENOENT');
    expect(e.exitCode).toBeUndefined();
  });
});

describe('runPiped', () => {
  const node = (code: string): { cmd: string; args: string[] } => ({ cmd: process.execPath, args: ['-e', code] });
  // Reads its stdin and prints a digest of what it got, so the test can tell what passed the pipe.
  const upper = node('let s="";process.stdin.on("data",(c)=>s+=c).on("end",()=>process.stdout.write(s.toUpperCase()))');

  it('connects first to second child to child and returns only what second prints', async () => {
    const { stdout } = await runPiped(node('process.stdout.write("secret-abc\\n".repeat(20000))'), upper);
    expect(stdout).toBe('SECRET-ABC\n'.repeat(20000));
  });

  it('never hands this process what first prints (the filter decides)', async () => {
    const { stdout } = await runPiped(node('process.stdout.write("PRIVATE\\tpub\\n")'), {
      cmd: 'sed',
      args: ['s/^[^\t]*/(withheld)/'],
    });
    expect(stdout).toBe('(withheld)\tpub\n');
  });

  it('reports the first program when it fails, with its stderr redacted', async () => {
    // The secret is decoded inside the child, so it is in its stderr but not in its argv.
    const e = await failure(
      runPiped(
        node('process.stderr.write("no such device " + Buffer.from("c2VjcmV0", "base64") + "\\n"); process.exit(1)'),
        upper,
        { redact: (s) => s.replace('secret', '(redacted)') },
      ),
    );
    expect(e.cmd).toBe(process.execPath);
    expect(e.exitCode).toBe(1);
    expect(e.stderr).toContain('no such device (redacted)');
    expect(e.message).not.toContain('secret');
  });

  it('reports the second program when it fails, also when the first then dies of the broken pipe', async () => {
    const e = await failure(runPiped(node('process.stdout.write("x")'), node('process.exit(4)')));
    expect(e.exitCode).toBe(4);
    // The first keeps writing into a pipe nobody reads any more: it fails too (EPIPE).
    const both = await failure(
      runPiped(node('setInterval(() => process.stdout.write("x".repeat(65536)), 1)'), node('process.exit(4)')),
    );
    expect([both.cmd, both.exitCode]).toEqual([process.execPath, 4]);
  });

  it('times out both and reports a missing program', async () => {
    const t = await failure(runPiped(node('setTimeout(() => {}, 60000)'), upper, { timeoutMs: 300 }));
    expect(t.timedOut).toBe(true);
    const m = await failure(runPiped({ cmd: '/nonexistent/sealnet-tool', args: [] }, upper));
    expect(m.errno).toBe('ENOENT');
  });
});
