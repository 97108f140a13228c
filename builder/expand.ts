// Shell-word expansion as BuildKit's Dockerfile frontend does it (its
// shell/lex.go): `$v`, `${v}`, `${v:-w}` `${v-w}` `${v:+w}` `${v+w}`
// `${v:?msg}` `${v?msg}`, `${v#pat}` `${v##pat}` `${v%pat}` `${v%%pat}`,
// `${v/pat/repl}` `${v//pat/repl}`, single and double quotes, the escape
// character (`\` or the one set by the `escape` directive), and quote removal.
//
// This is not a shell: no command substitution, no globbing, no arithmetic.
// Which instruction fields go through it is listed in builder/README.md.
import { DockerfileError, type Location } from './instructions.js';

/** Variables visible to an expansion: a Map, a plain object, or a lookup function. */
export type Vars =
  | ReadonlyMap<string, string>
  | Readonly<Record<string, string | undefined>>
  | ((name: string) => string | undefined);

export interface ExpandOptions {
  /** Escape character (the `escape` directive). Default `\`. */
  escapeChar?: string;
  /** Quotes are ordinary characters (heredoc bodies: only `$` and escapes are special). */
  skipQuotes?: boolean;
  /** Keep quote characters in the output (still honouring their meaning). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output (still honouring their meaning). */
  rawEscapes?: boolean;
  /** Leave references to unset variables as written (`$x`, `${x:-y}`). */
  skipUnset?: boolean;
  /** Called for each variable looked up, with whether it was set (for cache keys and "unused arg" notes). */
  onLookup?: (name: string, found: boolean) => void;
  /** When given, errors are DockerfileErrors at this location; otherwise ExpandError. */
  loc?: Location;
}

/** A word that cannot be expanded (unterminated quote, bad `${...}`, `${v:?msg}` with v unset). */
export class ExpandError extends Error {}

const EOF = '';

function isSpace(ch: string): boolean {
  // Go's unicode.IsSpace
  return /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u.test(ch);
}
const isDigit = (ch: string) => /^\p{Nd}$/u.test(ch);
const isNameChar = (ch: string) => /^[\p{L}\p{Nd}_]$/u.test(ch);
const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);

/** Accumulates the words of ProcessWords: whitespace from variables splits, quoted text does not. */
class Words {
  private words: string[] = [];
  private cur = '';
  private inWord = false;
  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.cur.length > 0) {
        this.words.push(this.cur);
        this.cur = '';
        this.inWord = false;
      }
    } else this.addRaw(ch);
  }
  addRaw(s: string): void {
    this.cur += s;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }
  get(): string[] {
    if (this.cur.length > 0) {
      this.words.push(this.cur);
      this.cur = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class Lexer {
  private pos = 0;
  private rawEscapes: boolean;
  private readonly esc: string;

  constructor(
    private readonly src: string,
    private readonly lookup: (name: string) => string | undefined,
    private readonly opts: ExpandOptions,
  ) {
    this.esc = opts.escapeChar ?? '\\';
    this.rawEscapes = !!opts.rawEscapes;
  }

  private peek(): string {
    if (this.pos >= this.src.length) return EOF;
    return String.fromCodePoint(this.src.codePointAt(this.pos)!);
  }
  private next(): string {
    const ch = this.peek();
    this.pos += ch.length;
    return ch;
  }

  private getVar(name: string): string | undefined {
    const v = this.lookup(name);
    this.opts.onLookup?.(name, v !== undefined);
    return v;
  }

  run(): { word: string; words: string[] } {
    const [word, words] = this.processStopOn(null, this.rawEscapes);
    if (this.pos < this.src.length) throw new ExpandError(`unexpected "${this.src.slice(this.pos)}"`);
    return { word, words };
  }

  /** Scans until one of `stops` (consumed) or the end; `stops` null = until the end. */
  private processStopOn(stops: string[] | null, rawEscapes: boolean): [string, string[]] {
    const savedRaw = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let result = '';
      const words = new Words();
      while (this.peek() !== EOF) {
        const ch = this.peek();
        if (stops && stops.includes(ch)) {
          this.next();
          return [result, words.get()];
        }
        if (ch === '$') {
          const t = this.processDollar();
          result += t;
          words.addString(t);
          continue;
        }
        if (!this.opts.skipQuotes && (ch === "'" || ch === '"')) {
          const t = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          result += t;
          words.addRaw(t);
          continue;
        }
        let c = this.next();
        if (c === this.esc) {
          if (this.rawEscapes) {
            words.addRaw(c);
            result += c;
          }
          c = this.next();
          if (c === EOF) break; // an escape at the very end is dropped
          words.addRaw(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stops) throw new ExpandError(`unexpected end of statement while looking for matching ${stops.join(' or ')}`);
      return [result, words.get()];
    } finally {
      this.rawEscapes = savedRaw;
    }
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; ' cannot be escaped inside.
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new ExpandError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    // Literal except `$` and the escape character, which escapes only `"`, `$` and itself.
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new ExpandError('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        const ch = this.next();
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      if (p === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = this.next();
      if (ch === this.esc) {
        const n = this.peek();
        if (n === EOF) continue; // dropped; the loop then reports the missing quote
        if (n === '"' || n === '$' || n === this.esc) {
          if (this.rawEscapes) result += ch;
          ch = this.next();
        }
      }
      result += ch;
    }
  }

  private processName(): string {
    let name = '';
    for (;;) {
      const ch = this.peek();
      if (ch === EOF) break;
      if (name.length === 0 && isDigit(ch)) {
        while (this.peek() !== EOF && isDigit(this.peek())) name += this.next();
        return name;
      }
      if (name.length === 0 && SPECIAL_PARAMS.has(ch)) return this.next();
      if (!isNameChar(ch)) break;
      name += this.next();
    }
    return name;
  }

  private processDollar(): string {
    this.next(); // $
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const v = this.getVar(name);
      if (v === undefined && this.opts.skipUnset) return '$' + name;
      return v ?? '';
    }
    this.next(); // {
    const p = this.peek();
    if (p === EOF) throw new ExpandError("syntax error: missing '}'");
    if (p === '{' || p === '}' || p === ':') throw new ExpandError('syntax error: bad substitution');
    const name = this.processName();
    if (name === '') throw new ExpandError('syntax error: bad substitution');
    let ch = this.next();
    if (ch === EOF) throw new ExpandError("syntax error: missing '}'");
    let mod = ch;
    if (ch === '}') {
      const v = this.getVar(name);
      if (v === undefined && this.opts.skipUnset) return '${' + name + '}';
      return v ?? '';
    }
    if (ch === '/') return this.processReplace(name);
    let nullIsUnset = false;
    if (ch === ':') {
      nullIsUnset = true;
      ch = this.next();
      mod += ch;
    }
    if (!['+', '-', '?', '#', '%'].includes(ch)) throw new ExpandError(`unsupported modifier (${mod}) in substitution`);
    const patternMod = ch === '#' || ch === '%';
    if (nullIsUnset && patternMod) throw new ExpandError(`unsupported modifier (${mod}) in substitution`);
    let word: string;
    try {
      [word] = this.processStopOn(['}'], patternMod);
    } catch (e) {
      if (this.peek() === EOF) throw new ExpandError("syntax error: missing '}'");
      throw e;
    }
    const value = this.getVar(name);
    if (value === undefined && this.opts.skipUnset) return '${' + name + mod + word + '}';
    const unset = value === undefined || (nullIsUnset && value === '');
    switch (ch) {
      case '-':
        return unset ? word : value!;
      case '+':
        return unset ? '' : word;
      case '?':
        if (value === undefined) throw new ExpandError(`${name}: ${word || 'is not allowed to be unset'}`);
        if (unset) throw new ExpandError(`${name}: ${word || 'is not allowed to be empty'}`);
        return value;
      default: {
        // # and %: shortest match; ## and %%: longest.
        let greedy = false;
        if (word.startsWith(ch)) {
          greedy = true;
          word = word.slice(1);
        }
        const v = value ?? '';
        const re = patternRegex(word, true);
        const full = new RegExp(`^(?:${re})$`, 'su');
        const n = v.length;
        if (ch === '#') {
          if (greedy) {
            for (let i = n; i >= 0; i--) if (full.test(v.slice(0, i))) return v.slice(i);
          } else {
            for (let i = 0; i <= n; i++) if (full.test(v.slice(0, i))) return v.slice(i);
          }
        } else if (greedy) {
          for (let i = 0; i <= n; i++) if (full.test(v.slice(i))) return v.slice(0, i);
        } else {
          for (let i = n; i >= 0; i--) if (full.test(v.slice(i))) return v.slice(0, i);
        }
        return v;
      }
    }
  }

  private processReplace(name: string): string {
    const all = this.peek() === '/';
    if (all) this.next();
    let pattern: string;
    let replacement = '';
    let stop: string;
    try {
      [pattern] = this.processStopOn(['/', '}'], true);
      stop = this.src[this.pos - 1]!;
    } catch (e) {
      if (this.peek() === EOF) throw new ExpandError("syntax error: missing '}'");
      throw e;
    }
    if (stop === '/') {
      try {
        [replacement] = this.processStopOn(['}'], true);
      } catch (e) {
        if (this.peek() === EOF) throw new ExpandError("syntax error: missing '}'");
        throw e;
      }
    }
    const value = this.getVar(name);
    if (value === undefined && this.opts.skipUnset) return '${' + name + (all ? '//' : '/') + pattern + '/' + replacement + '}';
    const v = value ?? '';
    if (pattern === '') return v;
    const re = new RegExp(patternRegex(pattern, true), all ? 'gsu' : 'su');
    return v.replace(re, () => replacement);
  }
}

/**
 * A shell pattern (`*`, `?`, `\*` `\?` `\\` escapes; no bracket expressions,
 * as BuildKit) as a regular expression source.
 */
function patternRegex(pattern: string, greedy: boolean): string {
  let out = '';
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '*') out += greedy ? '.*' : '.*?';
    else if (c === '?') out += '.';
    else if (c === '\\') {
      const n = chars[i + 1];
      if (n === '}' || n === '/') continue; // escaped only for ${...} syntax
      if (n === '*' || n === '?' || n === '\\') {
        out += '\\' + n;
        i++;
      } else throw new ExpandError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${n ?? ''}'`);
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return out;
}

function toLookup(vars: Vars): (name: string) => string | undefined {
  if (typeof vars === 'function') return vars;
  if (vars instanceof Map) return (n) => vars.get(n);
  const rec = vars as Readonly<Record<string, string | undefined>>;
  return (n) => (Object.prototype.hasOwnProperty.call(rec, n) ? rec[n] : undefined);
}

function run(word: string, vars: Vars, opts: ExpandOptions) {
  try {
    return new Lexer(word, toLookup(vars), opts).run();
  } catch (e) {
    if (e instanceof ExpandError) {
      const msg = `failed to expand ${JSON.stringify(word)}: ${e.message}`;
      if (opts.loc) throw new DockerfileError(msg, opts.loc);
      throw new ExpandError(msg);
    }
    throw e;
  }
}

/** Expands one word (quotes removed, whitespace kept): BuildKit's ProcessWord. */
export function expandWord(word: string, vars: Vars, escapeChar = '\\', opts: ExpandOptions = {}): string {
  return run(word, vars, { escapeChar, ...opts }).word;
}

/**
 * Expands and splits into words (whitespace outside quotes, including
 * whitespace that came from a variable's value, separates): BuildKit's
 * ProcessWords, used for EXPOSE.
 */
export function expandWords(word: string, vars: Vars, escapeChar = '\\', opts: ExpandOptions = {}): string[] {
  return run(word, vars, { escapeChar, ...opts }).words;
}

/**
 * ENV and LABEL: every key and value of one instruction is expanded against
 * the same snapshot of variables, so `ENV a=x b=$a` gives b the *previous* a.
 * The caller applies the results afterwards.
 */
export function expandPairs(
  pairs: readonly { key: string; value: string }[],
  vars: Vars,
  escapeChar = '\\',
  opts: ExpandOptions = {},
): { key: string; value: string }[] {
  // Every pair is expanded before any result is returned, so all see the same variables.
  return pairs.map((p) => ({
    key: expandWord(p.key, vars, escapeChar, opts),
    value: expandWord(p.value, vars, escapeChar, opts),
  }));
}

/**
 * A step's name in the progress view, as BuildKit shows it: the instruction
 * as written, the variables that are set expanded; quotes, escapes of unset
 * variables and whitespace left as they are (BuildKit's SkipUnsetEnv + RawQuotes).
 */
export function expandDisplay(text: string, vars: Vars, escapeChar = '\\'): string {
  try {
    return run(text, vars, { escapeChar, rawQuotes: true, skipUnset: true }).word;
  } catch {
    return text;
  }
}

/**
 * A heredoc body whose delimiter was not quoted (COPY/ADD `<<EOF`): `$v` and
 * `${...}` are expanded and the escape `\` works, but quotes are ordinary
 * characters (BuildKit expands these with SkipProcessQuotes and always `\`).
 */
export function expandHeredoc(content: string, vars: Vars, opts: ExpandOptions = {}): string {
  return run(content, vars, { ...opts, escapeChar: '\\', skipQuotes: true }).word;
}

/** Turns `["K=V", ...]` (an image config's Env) into Vars; a later K replaces an earlier one. */
export function envListToVars(env: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env) {
    const i = e.indexOf('=');
    m.set(i < 0 ? e : e.slice(0, i), i < 0 ? '' : e.slice(i + 1));
  }
  return m;
}
