/**
 * The one argv parser: `node:util` `parseArgs`, strict, with its errors turned into
 * `CONFIG_INVALID` errors that name the flag and, when given, end with the usage text.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SealnetError } from './errors.js';

/** Options as `parseArgs` takes them. */
export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

type Values<T extends FlagSpec> = {
  [K in keyof T]?: T[K] extends { type: 'boolean' }
    ? T[K] extends { multiple: true }
      ? boolean[]
      : boolean
    : T[K] extends { multiple: true }
      ? string[]
      : string;
};

/** Error for a bad command line: `prefix` (e.g. `keys rotate: `) + message (+ usage). */
function bad(prefix: string, msg: string, usage: string | undefined): SealnetError {
  return new SealnetError('CONFIG_INVALID', `${prefix}${msg}${usage === undefined ? '' : `\n${usage}`}`);
}

/**
 * Parses `args` strictly against `options`. At most `maxPositionals` positionals (default 0).
 * Unknown flags, flags without their value (including a value that looks like a flag) and
 * extra positionals throw `CONFIG_INVALID` naming the argument.
 */
export function parseFlags<T extends FlagSpec>(
  args: readonly string[],
  spec: { readonly options: T; readonly maxPositionals?: number; readonly prefix?: string; readonly usage?: string },
): { values: Values<T>; positionals: string[] } {
  const prefix = spec.prefix ?? '';
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: spec.options, strict: true, allowPositionals: true });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const name = /'(-[^' ]+)/.exec((err as Error).message)?.[1] ?? '';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw bad(prefix, `unknown flag ${JSON.stringify(name)}`, spec.usage);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const option = spec.options[name.replace(/^--?/, '')];
      if (option?.type === 'boolean') throw bad(prefix, `flag ${name} takes no value`, spec.usage);
      throw bad(prefix, `flag ${name} needs a value`, spec.usage);
    }
    throw bad(prefix, (err as Error).message, spec.usage);
  }
  for (const [k, v] of Object.entries(parsed.values)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (typeof one === 'string' && one === '') throw bad(prefix, `flag --${k} needs a value`, spec.usage);
    }
  }
  const max = spec.maxPositionals ?? 0;
  if (parsed.positionals.length > max)
    throw bad(prefix, `unexpected argument ${JSON.stringify(parsed.positionals[max])}`, spec.usage);
  return { values: parsed.values as Values<T>, positionals: parsed.positionals };
}

/**
 * Splits out the flags of `options` wherever they appear (global flags of a CLI with
 * subcommands); everything else, flags of the subcommand included, is returned in order as
 * `rest` for the subcommand's own {@link parseFlags}.
 */
export function takeFlags<T extends FlagSpec>(
  args: readonly string[],
  spec: { readonly options: T; readonly prefix?: string },
): { values: Values<T>; rest: string[] } {
  const { tokens } = parseArgs({
    args: [...args],
    options: spec.options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, unknown> = {};
  const rest: string[] = [];
  const taken = new Set<number>();
  for (const t of tokens) {
    if (t.kind !== 'option' || !(t.name in spec.options)) continue;
    const o = spec.options[t.name]!;
    if (o.type === 'string' && (t.value === undefined || t.value === '' || t.value.startsWith('--'))) {
      throw new SealnetError('CONFIG_INVALID', `${spec.prefix ?? ''}flag ${t.rawName} needs a value`);
    }
    values[t.name] = o.type === 'boolean' ? true : t.value;
    taken.add(t.index);
    if (o.type === 'string' && t.inlineValue !== true) taken.add(t.index + 1);
  }
  args.forEach((a, i) => {
    if (!taken.has(i)) rest.push(a);
  });
  return { values: values as Values<T>, rest };
}
