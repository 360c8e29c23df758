import { describe, expect, it } from '@jest/globals';
import { parseFlags, takeFlags } from './args.js';

describe('parseFlags', () => {
  const options = {
    node: { type: 'string', multiple: true },
    all: { type: 'boolean' },
    out: { type: 'string' },
  } as const;

  it('reads strings, repeated strings, booleans and --flag=value', () => {
    const { values } = parseFlags(['--node', 'a', '--node=b', '--all', '--out', 'x'], { options });
    expect(values).toEqual({ node: ['a', 'b'], all: true, out: 'x' });
  });

  it.each([
    [['--nodes', 'a'], 'p: unknown flag "--nodes"'],
    [['--node'], 'p: flag --node needs a value'],
    [['--node', '--all'], 'p: flag --node needs a value'],
    [['--out', ''], 'p: flag --out needs a value'],
    [['--all=yes'], 'p: flag --all takes no value'],
    [['extra'], 'p: unexpected argument "extra"'],
  ])('refuses %j naming the argument', (args, message) => {
    expect(() => parseFlags(args, { options, prefix: 'p: ' })).toThrow(message);
  });

  it('appends the usage text when given', () => {
    expect(() => parseFlags(['--x'], { options, usage: 'usage: tool [--node N]' })).toThrow(
      /unknown flag "--x"\nusage: tool/,
    );
  });

  it('allows as many positionals as asked', () => {
    expect(parseFlags(['r.json'], { options, maxPositionals: 1 }).positionals).toEqual(['r.json']);
  });
});

describe('takeFlags', () => {
  const options = { store: { type: 'string' }, json: { type: 'boolean' } } as const;

  it('takes global flags wherever they stand and leaves the command its own, in order', () => {
    const { values, rest } = takeFlags(['--store', 'file', 'status', '--node', 'a', '--json', '--node=b'], { options });
    expect(values).toEqual({ store: 'file', json: true });
    expect(rest).toEqual(['status', '--node', 'a', '--node=b']);
  });

  it('refuses a global flag without its value', () => {
    expect(() => takeFlags(['status', '--store'], { options })).toThrow('flag --store needs a value');
  });
});
