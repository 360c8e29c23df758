/**
 * Finds the external commands that the project's scripts and tests run, from their text alone
 * (nothing is imported or executed): words in command position in shell scripts, and the command
 * of spawn/execFile-style calls (and argv arrays handed to the project's spawn wrappers) in
 * TypeScript. Wrappers such as `ip netns exec NS CMD`, `nsenter … CMD`, `env X=1 CMD` and
 * `sh -c SCRIPT` are followed to the command they run. Used by commands.test.ts.
 */

/** One command found in a file. `dynamic` means the scanner could not read a literal name. */
export interface Found {
  readonly file: string;
  readonly line: number;
  /** The command word (a name, a path, or for dynamic ones the expression text). */
  readonly word: string;
  readonly dynamic: boolean;
  /** Function names defined in the same file (shell), so a call of one is no command. */
  readonly definedIn?: ReadonlySet<string>;
}

/** How a wrapper command finds the command it runs (commands.json `wrappers`). */
export interface WrapperRule {
  /** Literal words that must follow for the rule to apply (e.g. `netns exec` after `ip`). */
  readonly prefix?: readonly string[];
  /** Options that take a separate value word. */
  readonly optionsWithValue?: readonly string[];
  /** Options after which nothing is run (`command -v`). */
  readonly probeOptions?: readonly string[];
  /** Positional words before the command (`timeout DURATION CMD`, `chroot DIR CMD`). */
  readonly positional?: number;
  /** `VAR=value` words may precede the command (`env`). */
  readonly assignments?: boolean;
  /** The option whose value is a shell script (`sh -c SCRIPT`). */
  readonly scriptOption?: string;
  /** Index of the argument that is a shell script (`trap SCRIPT SIGNAL`). */
  readonly scriptArg?: number;
  /** The command follows `-exec`/`-execdir` (`find`). */
  readonly execOption?: readonly string[];
}

/** One word of a command line: literal text, or an expansion the scanner cannot read. */
export interface Word {
  readonly text: string;
  readonly dynamic: boolean;
  readonly line: number;
}

/** Follows wrapper rules from the start of `words`, calling `emit` for each command run. */
export function resolveArgv(
  words: readonly Word[],
  ctx: {
    readonly wrappers: Readonly<Record<string, WrapperRule>>;
    emit: (w: Word) => void;
    script: (text: string, line: number) => void;
  },
): void {
  let i = 0;
  while (i < words.length) {
    const cmd = words[i] as Word;
    ctx.emit(cmd);
    if (cmd.dynamic) return;
    const rule = ctx.wrappers[baseName(cmd.text)];
    if (rule === undefined) return;
    i++;
    if (rule.prefix !== undefined) {
      for (const p of rule.prefix) {
        if (words[i]?.text !== p || words[i]?.dynamic) return;
        i++;
      }
    }
    if (rule.scriptArg !== undefined) {
      const s = words[i + rule.scriptArg];
      if (s !== undefined && !s.dynamic && s.text !== '-') ctx.script(s.text, s.line);
      return;
    }
    // options, then positionals, then the command
    let next: number | undefined;
    for (; i < words.length; i++) {
      const w = words[i] as Word;
      // A template literal `--net=${…}` (TypeScript) or "--x=$y" (shell) is still an option.
      if (w.dynamic && /^[`"]?-/.test(w.text)) continue;
      if (w.dynamic && rule.assignments && /^[`"]?[A-Za-z_][A-Za-z0-9_]*=/.test(w.text)) continue;
      if (w.dynamic) break;
      if (rule.execOption?.includes(w.text)) {
        next = i + 1;
        break;
      }
      if (rule.execOption !== undefined) continue;
      if (rule.probeOptions?.includes(w.text)) return;
      if (rule.scriptOption !== undefined && w.text === rule.scriptOption) {
        const s = words[i + 1];
        if (s !== undefined && !s.dynamic) ctx.script(s.text, s.line);
        else if (s !== undefined) ctx.emit({ ...s, text: `${cmd.text} ${w.text} ${s.text}` });
        return;
      }
      if (w.text === '--') {
        i++;
        break;
      }
      if (rule.assignments && /^[A-Za-z_][A-Za-z0-9_]*=/.test(w.text)) continue;
      if (w.text.startsWith('-') && w.text.length > 1) {
        if (rule.optionsWithValue?.includes(w.text)) i++;
        continue;
      }
      break;
    }
    if (rule.execOption !== undefined) {
      if (next === undefined) return;
      i = next;
      continue;
    }
    if (rule.scriptOption !== undefined) return; // `sh FILE`: runs a file, scanned on its own
    i += rule.positional ?? 0;
    if (i >= words.length) return;
  }
}

/** The last path element of a command word. */
export function baseName(word: string): string {
  return word.slice(word.lastIndexOf('/') + 1);
}
