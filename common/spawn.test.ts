import { run, SpawnError } from './spawn.js';

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
