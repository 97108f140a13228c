// .dockerignore as Docker and BuildKit read it (moby/patternmatcher and its
// ignorefile reader), plus what a context walker needs to be fast: compiled
// patterns, a per-directory match state to pass down, and "could anything
// under this excluded directory be re-included by a `!` pattern" so whole
// trees (node_modules, .git) are skipped without reading them.
//
// Rules:
// - one pattern per line; a line starting with `#` (in column 1) is a comment;
//   blank lines are ignored; surrounding whitespace is trimmed;
// - patterns are cleaned like Go's filepath.Clean (`./a/../b//c/` -> `b/c`) and a
//   leading `/` is dropped: every pattern is anchored at the context root;
// - `*` matches within one path component, `?` one character, `[a-z]` and
//   `[^a-z]` a class, `\` escapes the next character, `**` any number of
//   components (also none);
// - a pattern excludes the paths it matches *and everything below them*;
// - `!pattern` re-includes; the last matching line wins.
// - `<Dockerfile-name>.dockerignore` beside the Dockerfile takes precedence over
//   `.dockerignore` at the context root (BuildKit; the legacy builder had only the latter).
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export class DockerignoreError extends Error {}

interface Pattern {
  /** The cleaned pattern text without `!`. */
  text: string;
  exclusion: boolean;
  line: number;
  match: (p: string) => boolean;
  /** Leading path components before the first one with a wildcard (for skipping dirs). */
  literalDirs: string[];
  /** All components literal (no wildcard or escape). */
  literal: boolean;
}

/** Go's path.Clean for slash-separated paths. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const s = out.join('/');
  return rooted ? '/' + s : s || '.';
}

const WILDCARD = /[*?[\\]/;

function regexEscape(ch: string): string {
  return /[.+()|{}$^\]]/.test(ch) ? '\\' + ch : ch;
}

/** Compiles one cleaned pattern into a matcher, as patternmatcher does (including its `**x` suffix rule). */
function compile(pattern: string): (p: string) => boolean {
  let re = '^';
  let type: 'exact' | 'prefix' | 'suffix' | 'regexp' = 'exact';
  const chars = [...pattern];
  for (let i = 0, n = 0; i < chars.length; i++, n++) {
    const ch = chars[i]!;
    if (ch === '*') {
      if (chars[i + 1] === '*') {
        i++;
        if (chars[i + 1] === '/') i++; // `**/` is `**`
        if (i + 1 >= chars.length) {
          // `**` at the end: everything below
          if (type === 'exact') type = 'prefix';
          else {
            re += '.*';
            type = 'regexp';
          }
        } else {
          re += '(.*/)?';
          type = 'regexp';
        }
        if (n === 0) type = 'suffix';
      } else {
        re += '[^/]*';
        type = 'regexp';
      }
    } else if (ch === '?') {
      re += '[^/]';
      type = 'regexp';
    } else if (ch === '\\') {
      if (i + 1 < chars.length) {
        re += '\\' + chars[++i];
        type = 'regexp';
      } else re += '\\\\';
    } else if (ch === '[') {
      // a class, as Go's filepath.Match reads it ([^...] negates); checkSyntax ran first
      let j = i + 1;
      re += '[';
      if (chars[j] === '^') {
        re += '^';
        j++;
      }
      for (; chars[j] !== ']'; j++) {
        let c = chars[j]!;
        if (c === '\\') c = chars[++j]!;
        else if (c === '-') {
          re += '-';
          continue;
        }
        re += /[\\\]\[\-^]/.test(c) ? '\\' + c : c;
      }
      re += ']';
      i = j;
      type = 'regexp';
    } else re += regexEscape(ch);
  }
  switch (type) {
    case 'exact':
      return (p) => p === pattern;
    case 'prefix': {
      const prefix = pattern.slice(0, -2);
      return (p) => p.startsWith(prefix);
    }
    case 'suffix': {
      const suffix = pattern.slice(2);
      return (p) => p.endsWith(suffix) || (suffix[0] === '/' && p === suffix.slice(1));
    }
    default: {
      let rx: RegExp;
      try {
        rx = new RegExp(re + '$', 'u');
      } catch {
        throw new DockerignoreError('syntax error in pattern');
      }
      return (p) => rx.test(p);
    }
  }
}

/**
 * Go's filepath.Match syntax check (patternmatcher rejects what it rejects):
 * an unterminated or empty `[...]` class, a range with a missing end, or a
 * trailing `\`.
 */
function checkSyntax(p: string): void {
  const chars = [...p];
  const bad = (why: string) => new DockerignoreError(`syntax error in pattern (${why})`);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '\\') {
      if (i + 1 >= chars.length) throw bad('a trailing \\ escapes nothing');
      i++;
    } else if (c === '[') {
      let j = i + 1;
      if (chars[j] === '^') j++;
      let n = 0;
      for (;;) {
        if (j >= chars.length) throw bad('unterminated [ class');
        if (chars[j] === ']' && n > 0) break;
        // one element: a char or a lo-hi range
        const lo = chars[j] === '\\' ? chars[++j] : chars[j];
        if (lo === undefined || lo === ']' || lo === '-') throw bad(lo === ']' ? 'empty [] class' : 'bad [ class');
        j++;
        if (chars[j] === '-') {
          j++;
          const hi = chars[j] === '\\' ? chars[++j] : chars[j];
          if (hi === undefined || hi === ']' || hi === '-') throw bad('bad range in [ class');
          if (hi < lo) throw bad('reversed range in [ class');
          j++;
        }
        n++;
      }
      i = j;
    }
  }
}

/** Per-directory match results to pass to children (BuildKit's MatchInfo). */
export interface MatchState {
  parentMatched: boolean[];
}

/** A compiled .dockerignore. Paths are context-relative with `/` separators ("src/app.py"). */
export class DockerIgnore {
  private readonly patterns: Pattern[];
  readonly hasExceptions: boolean;
  private readonly onlyLiteralExceptions: boolean;

  /** @param lines raw lines (or already-read patterns); `source` names the file in errors. */
  constructor(
    lines: readonly string[] = [],
    readonly source = '.dockerignore',
  ) {
    this.patterns = [];
    lines.forEach((raw, idx) => {
      const p = normaliseLine(raw, idx === 0);
      if (p === undefined) return;
      let text = p;
      let exclusion = false;
      if (text.startsWith('!')) {
        exclusion = true;
        text = text.slice(1);
        if (text === '') {
          throw new DockerignoreError(`${source}:${idx + 1}: illegal exclusion pattern: "!" (write !PATH to re-include PATH)`);
        }
      }
      try {
        checkSyntax(text);
        const match = compile(text);
        const parts = text.split('/');
        const firstWild = parts.findIndex((c) => WILDCARD.test(c));
        this.patterns.push({
          text,
          exclusion,
          line: idx + 1,
          match,
          literal: firstWild < 0,
          literalDirs: firstWild < 0 ? parts : parts.slice(0, firstWild),
        });
      } catch (e) {
        if (e instanceof DockerignoreError) {
          throw new DockerignoreError(`${source}:${idx + 1}: ${e.message}: ${JSON.stringify(raw.trim())}`);
        }
        throw e;
      }
    });
    const exceptions = this.patterns.filter((p) => p.exclusion);
    this.hasExceptions = exceptions.length > 0;
    this.onlyLiteralExceptions = exceptions.every((p) => p.literal);
  }

  /** The cleaned patterns, `!` kept, in file order. */
  get rules(): string[] {
    return this.patterns.map((p) => (p.exclusion ? '!' : '') + p.text);
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** Whether a context path is excluded from the build context (it, or a parent dir, matches; the last matching line wins). */
  ignored(relPath: string): boolean {
    const file = normaliseRel(relPath);
    let parentDirs: string[] | undefined;
    let matched = false;
    for (const pat of this.patterns) {
      // an inclusion that cannot change the answer, or an exception with nothing to undo
      if (pat.exclusion !== matched) continue;
      let m = pat.match(file);
      if (!m) {
        parentDirs ??= parents(file);
        m = parentDirs.some((d) => pat.match(d));
      }
      if (m) matched = !pat.exclusion;
    }
    return matched;
  }

  /** Same as ignored(): lets a DockerIgnore serve as sourcefs.ts's PathFilter (`excludes` + `hasExceptions`). */
  excludes(relPath: string): boolean {
    return this.ignored(relPath);
  }

  /**
   * As ignored(), and returns the state to pass when checking this path's
   * children, so no parent directory is matched twice while walking.
   * Without `parent`, the parent directories are tried too. (Unlike
   * BuildKit's MatchesUsingParentResults this records every pattern, so the
   * answers always equal ignored(): `*\/tmp*` + `!keep` keeps keep/tmp1.)
   */
  check(relPath: string, parent?: MatchState): { ignored: boolean; state: MatchState } {
    const file = normaliseRel(relPath);
    let parentDirs: string[] | undefined;
    let matched = false;
    const parentMatched = new Array<boolean>(this.patterns.length);
    this.patterns.forEach((pat, i) => {
      let m = (parent && parent.parentMatched[i]) || pat.match(file);
      if (!m && !parent) {
        parentDirs ??= parents(file);
        m = parentDirs.some((d) => pat.match(d));
      }
      parentMatched[i] = m;
      if (m) matched = !pat.exclusion;
    });
    return { ignored: matched, state: { parentMatched } };
  }

  /**
   * For an ignored directory: could a `!` pattern re-include something below
   * it? When false the walker can skip the whole directory. Conservative: a
   * `!` pattern with wildcards is assumed to reach any directory its literal
   * leading components agree with.
   */
  mayReinclude(dir: string): boolean {
    if (!this.hasExceptions) return false;
    const d = normaliseRel(dir);
    const dParts = d === '.' ? [] : d.split('/');
    for (const p of this.patterns) {
      if (!p.exclusion) continue;
      if (p.literal) {
        if ((p.text + '/').startsWith(d + '/')) return true;
        continue;
      }
      const n = Math.min(p.literalDirs.length, dParts.length);
      let agree = true;
      for (let i = 0; i < n; i++) {
        if (p.literalDirs[i] !== dParts[i]) {
          agree = false;
          break;
        }
      }
      if (agree) return true;
    }
    return false;
  }

  /** True when every `!` pattern is literal (BuildKit then skips excluded dirs by a prefix test alone). */
  get exceptionsAreLiteral(): boolean {
    return this.onlyLiteralExceptions;
  }
}

function parents(file: string): string[] {
  const out: string[] = [];
  let i = file.indexOf('/');
  while (i >= 0) {
    out.push(file.slice(0, i));
    i = file.indexOf('/', i + 1);
  }
  return out;
}

function normaliseRel(p: string): string {
  let s = cleanPath(p.replace(/\\/g, '/'));
  while (s.startsWith('/')) s = s.slice(1);
  return s === '' ? '.' : s;
}

/** One .dockerignore line -> its cleaned pattern, or undefined for comments and blanks (moby's ignorefile.ReadAll). */
function normaliseLine(raw: string, first: boolean): string | undefined {
  let line = raw;
  if (first && line.startsWith('\uFEFF')) line = line.slice(1);
  if (line.endsWith('\r')) line = line.slice(0, -1);
  if (line.startsWith('#')) return undefined;
  let pattern = line.trim();
  if (pattern === '') return undefined;
  const invert = pattern.startsWith('!');
  if (invert) pattern = pattern.slice(1).trim();
  if (pattern !== '') {
    pattern = cleanPath(pattern);
    if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
  }
  return invert ? '!' + pattern : pattern;
}

/** Reads .dockerignore text into a DockerIgnore. */
export function parseDockerignore(text: string, source = '.dockerignore'): DockerIgnore {
  const lines = text.split('\n');
  if (text.endsWith('\n')) lines.pop();
  return new DockerIgnore(lines, source);
}

/**
 * The ignore rules for a build: `<Dockerfile-name>.dockerignore` beside the
 * Dockerfile if it exists, else `.dockerignore` at the context root, else none.
 * `file` is the path that was used.
 */
export async function loadDockerignore(contextDir: string, dockerfilePath?: string): Promise<{ rules: DockerIgnore; file?: string }> {
  const candidates: string[] = [];
  if (dockerfilePath) candidates.push(`${dockerfilePath}.dockerignore`);
  candidates.push(path.join(contextDir, '.dockerignore'));
  for (const f of candidates) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw new DockerignoreError(`cannot read ${f}: ${(e as Error).message}`);
    }
    return { rules: parseDockerignore(text, f), file: f };
  }
  return { rules: new DockerIgnore([]) };
}
