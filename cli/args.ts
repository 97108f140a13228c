// A small Docker-CLI-style flag parser: long flags (--name v, --name=v), short
// flags (-t v, -tv, grouped booleans -it), repeated flags, `--` and, for
// commands like `run`, stopping at the first positional so the container's own
// arguments are left alone.

export interface FlagSpec {
  name: string; // long name without dashes
  short?: string; // one letter
  type: 'bool' | 'string' | 'list';
  description: string;
  default?: string | boolean;
  /** Value placeholder in help output. */
  arg?: string;
  hidden?: boolean;
}

export interface ParsedArgs {
  flags: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export class UsageError extends Error {}

export function parseArgs(argv: string[], specs: FlagSpec[], opts: { stopAtPositional?: boolean; command: string }): ParsedArgs {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags: ParsedArgs['flags'] = {};
  for (const s of specs) {
    if (s.type === 'list') flags[s.name] = [];
    else if (s.default !== undefined) flags[s.name] = s.default;
  }
  const positionals: string[] = [];
  const set = (spec: FlagSpec, value: string | undefined, display: string) => {
    if (spec.type === 'bool') {
      if (value === undefined || value === 'true') flags[spec.name] = true;
      else if (value === 'false') flags[spec.name] = false;
      else throw new UsageError(`invalid argument "${value}" for "${display}" flag: expected true or false`);
      return;
    }
    if (value === undefined) throw new UsageError(`flag needs an argument: ${display}`);
    if (spec.type === 'list') (flags[spec.name] as string[]).push(value);
    else flags[spec.name] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
      const spec = byLong.get(name);
      if (!spec) throw new UsageError(`unknown flag: --${name}`);
      let value: string | undefined = eq === -1 ? undefined : a.slice(eq + 1);
      if (value === undefined && spec.type !== 'bool') {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: --${name}`);
        value = argv[++i];
      }
      set(spec, value, `--${name}`);
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      // Grouped shorts: -it, -p8080:80, -e=K=V
      for (let j = 1; j < a.length; j++) {
        const ch = a[j]!;
        const spec = byShort.get(ch);
        if (!spec) throw new UsageError(`unknown shorthand flag: '${ch}' in ${a}`);
        if (spec.type === 'bool') {
          if (a[j + 1] === '=') {
            set(spec, a.slice(j + 2), `-${ch}`);
            break;
          }
          set(spec, undefined, `-${ch}`);
          continue;
        }
        let value = a.slice(j + 1);
        if (value.startsWith('=')) value = value.slice(1);
        if (value === '') {
          if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: '${ch}' in -${ch}`);
          value = argv[++i]!;
        }
        set(spec, value, `-${ch}`);
        break;
      }
      continue;
    }
    positionals.push(a);
    if (opts.stopAtPositional) {
      positionals.push(...argv.slice(i + 1));
      break;
    }
  }
  return { flags, positionals };
}

export function str(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function bool(p: ParsedArgs, name: string): boolean {
  return p.flags[name] === true;
}

export function list(p: ParsedArgs, name: string): string[] {
  const v = p.flags[name];
  return Array.isArray(v) ? v : [];
}

export function helpText(usage: string, description: string, specs: FlagSpec[]): string {
  const lines = [`Usage:  tsbuild ${usage}`, '', description];
  const visible = specs.filter((s) => !s.hidden);
  if (visible.length) {
    lines.push('', 'Options:');
    for (const s of visible) {
      const left = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'bool' ? '' : ` ${s.arg ?? (s.type === 'list' ? 'list' : 'string')}`}`;
      lines.push(`  ${left.padEnd(32)} ${s.description}${s.default !== undefined && s.default !== false ? ` (default ${JSON.stringify(s.default)})` : ''}`);
    }
  }
  return lines.join('\n');
}
