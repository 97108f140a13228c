// Dockerfile text -> typed instructions (instructions.ts), in BuildKit's two
// steps: lines -> nodes (directives, continuations, comments, heredocs, flags
// split from arguments), then nodes -> typed instructions (per-instruction
// argument rules, flag validation). No variable is expanded here: values keep
// `$VAR`, quotes and escapes as written; the executor expands the fields
// listed in builder/README.md with expand.ts.
import {
  DockerfileError,
  type ArgInstruction,
  type CommandLine,
  type CopyInstruction,
  type Dockerfile,
  type FromInstruction,
  type Heredoc,
  type Instruction,
  type Location,
  type RunInstruction,
  type RunMount,
  type Stage,
} from './instructions.js';
import { expandWords } from './expand.js';

/** The 18 Dockerfile instructions. */
export const INSTRUCTION_NAMES = [
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK',
  'LABEL', 'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
] as const;
const KNOWN = new Set<string>(INSTRUCTION_NAMES);
const VALID_DIRECTIVES = new Set(['escape', 'syntax', 'check']);
const HEREDOC_INSTRUCTIONS = new Set(['RUN', 'COPY', 'ADD']);
const RESERVED_STAGE_NAMES = new Set(['scratch', 'context']);

type Warning = Dockerfile['warnings'][number];

/** One logical line: continuations joined, flags split off, heredoc bodies attached. */
interface Node {
  /** Instruction name upper-cased, and as written. */
  cmd: string;
  cmdRaw: string;
  /** Raw `--name=value` words (quotes and escapes already removed, as BuildKit). */
  flags: string[];
  /** Argument text after the flags, trimmed. */
  rest: string;
  /** A flag whose quote never closed (it swallowed the rest of the line). */
  unterminated?: string;
  /** The whole logical line, trimmed. */
  original: string;
  loc: Location;
  heredocs: Heredoc[];
}

// ---------------------------------------------------------------- helpers

const LEADING_SPACE = /^[\t\n\v\f\r \u0085\u00a0]+/;
const WS_SPLIT = /[\t\v\f\r ]+/;

function trimLeft(s: string): string {
  return s.replace(LEADING_SPACE, '');
}
function isComment(line: string): boolean {
  return trimLeft(line).startsWith('#');
}
function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Edit distance counting a swap of two neighbours as one edit ("from" vs "form"). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate within a small edit distance, for "did you mean" hints. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const dist = editDistance(w, c.toLowerCase());
    if (dist < bestD) {
      bestD = dist;
      best = c;
    }
  }
  const limit = Math.max(1, Math.min(2, Math.floor(w.length / 3)));
  return best !== undefined && bestD <= limit ? best : undefined;
}

/** BuildKit's parseWords: split at unquoted whitespace, keeping quotes and escapes in the words. */
export function splitWordsRaw(rest: string, esc: string): string[] {
  const words: string[] = [];
  const chars = [...rest];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= chars.length; pos++) {
    const atEnd = pos === chars.length;
    let ch = atEnd ? '' : chars[pos]!;
    if (phase === 'spaces') {
      if (atEnd) break;
      if (/\s/u.test(ch)) continue;
      phase = 'word';
    }
    if (atEnd) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (/\s/u.test(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === esc) {
        if (pos + 1 === chars.length) continue; // an escape at the very end is dropped
        // unquoted: the escape and the next character are both kept, even a quote
        word += ch;
        ch = chars[++pos]!;
      }
      word += ch;
      continue;
    }
    // in quotes
    if (ch === quote) phase = 'word';
    else if (ch === esc && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      word += ch;
      ch = chars[++pos]!;
    }
    word += ch;
  }
  return words;
}

/** BuildKit's extractBuilderFlags: leading `--x` words, with quote and escape removal. */
function extractFlags(line: string): { flags: string[]; rest: string; unterminated?: string } {
  const flags: string[] = [];
  let pos = 0;
  const n = line.length;
  for (;;) {
    while (pos < n && /\s/u.test(line[pos]!)) pos++;
    if (pos >= n) return { flags, rest: '' };
    if (!(line[pos] === '-' && line[pos + 1] === '-')) return { flags, rest: line.slice(pos) };
    // read one flag word
    let word = '';
    let blankOK = false;
    let quote = '';
    while (pos < n) {
      const ch = line[pos]!;
      if (quote) {
        if (ch === quote) quote = '';
        else if (ch === '\\') {
          if (pos + 1 === n) {
            quote = '';
          } else word += line[++pos];
        } else word += ch;
        pos++;
        continue;
      }
      if (/\s/u.test(ch)) break;
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        pos++;
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 < n) word += line[++pos];
        pos++;
        continue;
      }
      word += ch;
      pos++;
    }
    if (quote) return { flags, rest: '', unterminated: word };
    if (word === '--') return { flags, rest: line.slice(pos) };
    if (blankOK || word.length > 0) flags.push(word);
  }
}

/**
 * Parses the first JSON value of `rest` as BuildKit does (Go's json.Decoder:
 * text after the value is ignored). Returns the argv, "not-strings" for a
 * valid JSON array with non-string members (an error in BuildKit), or
 * undefined when it is not a JSON array at all (then it is shell form).
 */
function parseJsonArray(rest: string): { argv: string[]; trailing: string } | 'not-strings' | undefined {
  const s = trimLeft(rest);
  if (!s.startsWith('[')) return undefined;
  // find the end of the first value
  let depth = 0;
  let inStr = false;
  let end = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
      continue;
    }
    if (c === '"') inStr = true;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) {
        end = i + 1;
        break;
      }
    }
  }
  if (end < 0) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(s.slice(0, end));
  } catch {
    return undefined;
  }
  if (!Array.isArray(v)) return undefined;
  if (!v.every((x) => typeof x === 'string')) return 'not-strings';
  return { argv: v as string[], trailing: s.slice(end).trim() };
}

const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;

/** A `<<EOF` / `<<-"EOF"` word -> its name, chomp and expand flags; undefined if not a heredoc word. */
export function parseHeredocWord(word: string): { name: string; chomp: boolean; expand: boolean; fd?: number } | undefined {
  const m = HEREDOC_WORD.exec(word);
  if (!m || m[3] === '') return undefined;
  let words: string[];
  let raw: string[];
  try {
    words = expandWords(m[3]!, () => undefined, '\\', { skipUnset: true });
    raw = expandWords(m[3]!, () => undefined, '\\', { skipUnset: true, rawQuotes: true });
  } catch {
    return undefined;
  }
  if (words.length !== 1 || raw.length !== 1) return undefined;
  const quotes = (w: string) => (w.match(/['"]/g) ?? []).length;
  return {
    name: words[0]!,
    chomp: m[2] === '-',
    // any quoting in the delimiter turns expansion of the body off
    expand: quotes(words[0]!) === quotes(raw[0]!),
    ...(m[1] ? { fd: Number(m[1]) } : {}),
  };
}

function heredocsInLine(line: string) {
  let words: string[];
  try {
    words = expandWords(line, () => undefined, '\\', { rawQuotes: true, rawEscapes: true, skipUnset: true });
  } catch {
    return [];
  }
  const out: { name: string; chomp: boolean; expand: boolean }[] = [];
  for (const w of words) {
    const h = parseHeredocWord(w);
    if (h) out.push(h);
  }
  return out;
}

// ------------------------------------------------------------ Go durations

const DURATION_UNITS: Record<string, number> = {
  ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9,
};

/** Go's time.ParseDuration, in nanoseconds ("1m30s", "1.5h", "300ms", "0"). */
export function parseGoDuration(s: string): number {
  const orig = s;
  const bad = () => new Error(`time: invalid duration ${JSON.stringify(orig)}`);
  let neg = false;
  if (s[0] === '-' || s[0] === '+') {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw bad();
  let total = 0;
  while (s !== '') {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(s)!;
    const [num, int = '', frac] = m;
    if (int === '' && (frac === undefined || frac === '')) throw bad();
    s = s.slice(num.length);
    const u = /^[^0-9.]+/.exec(s)?.[0];
    if (!u) throw new Error(`time: missing unit in duration ${JSON.stringify(orig)}`);
    const mult = DURATION_UNITS[u];
    if (mult === undefined) throw new Error(`time: unknown unit ${JSON.stringify(u)} in duration ${JSON.stringify(orig)}`);
    s = s.slice(u.length);
    total += Number(int || '0') * mult + (frac ? Math.round(Number(`0.${frac}`) * mult) : 0);
  }
  return neg ? -total : total;
}

// ------------------------------------------------------------------ flags

type FlagKind = 'string' | 'bool' | 'strings';
type FlagSpec = Record<string, FlagKind>;

const FLAG_SPECS: Record<string, FlagSpec> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'strings', network: 'string', security: 'string' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', exclude: 'strings', parents: 'bool' },
  ADD: { chown: 'string', chmod: 'string', link: 'bool', exclude: 'strings', checksum: 'string', 'keep-git-dir': 'bool', unpack: 'bool' },
  HEALTHCHECK: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

interface ParsedFlags {
  str(name: string): string | undefined;
  bool(name: string): boolean | undefined;
  list(name: string): string[];
}

function parseFlags(node: Node, spec: FlagSpec = FLAG_SPECS[node.cmd] ?? {}): ParsedFlags {
  const values = new Map<string, string | string[]>();
  const names = Object.keys(spec);
  for (const arg of node.flags) {
    if (!arg.startsWith('--')) throw new DockerfileError(`${node.cmd}: flag should start with --: ${arg}`, node.loc);
    if (arg === '--') break;
    const body = arg.slice(2);
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const value = eq >= 0 ? body.slice(eq + 1) : undefined;
    const kind = spec[name];
    if (!kind) {
      if (names.length === 0) {
        throw new DockerfileError(`unknown flag: --${name}: ${node.cmd} takes no flags (remove --${name})`, node.loc);
      }
      const hint = suggest(name, names);
      const extra = node.cmd === 'ADD' && (name === 'from' || name === 'parents') ? ` (use COPY --${name}: ADD has no --${name})` : '';
      throw new DockerfileError(
        `unknown flag: --${name}${hint ? ` (did you mean --${hint}?)` : extra}; ${node.cmd} accepts ${names.map((x) => `--${x}`).join(', ')}`,
        node.loc,
      );
    }
    if (values.has(name) && kind !== 'strings') throw new DockerfileError(`duplicate flag specified: --${name} (give it once)`, node.loc);
    if (kind === 'bool') {
      if (value === '') throw new DockerfileError(`missing a value on flag: --${name} (write --${name} or --${name}=true|false)`, node.loc);
      const lower = (value ?? 'true').toLowerCase();
      if (lower !== 'true' && lower !== 'false') {
        throw new DockerfileError(`expecting boolean value for flag --${name}, not: ${value}`, node.loc);
      }
      values.set(name, lower);
    } else {
      if (value === undefined) throw new DockerfileError(`missing a value on flag: --${name} (write --${name}=VALUE)`, node.loc);
      if (kind === 'string') values.set(name, value);
      else values.set(name, [...((values.get(name) as string[] | undefined) ?? []), value]);
    }
  }
  return {
    str: (n) => values.get(n) as string | undefined,
    bool: (n) => {
      const v = values.get(n);
      return v === undefined ? undefined : v === 'true';
    },
    list: (n) => (values.get(n) as string[] | undefined) ?? [],
  };
}

// ------------------------------------------------------------ --mount

/** encoding/csv's reading of one record (`a=b,"c=d,e"`), as BuildKit reads --mount. */
function parseCsvRecord(s: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new Error('extraneous or missing " in quoted-field');
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i++];
      }
      if (i < s.length && s[i] !== ',') throw new Error('extraneous or missing " in quoted-field');
    } else {
      while (i < s.length && s[i] !== ',') {
        if (s[i] === '"') throw new Error('bare " in non-quoted-field');
        field += s[i++];
      }
    }
    fields.push(field);
    if (i >= s.length) return fields;
    i++; // comma
  }
}

const MOUNT_TYPES = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'] as const;
const MOUNT_KEY_ALIASES: Record<string, string> = {
  type: 'type', from: 'from', source: 'source', src: 'source',
  target: 'target', dst: 'target', destination: 'target', dest: 'target',
  readonly: 'readonly', ro: 'readonly', readwrite: 'rw', rw: 'rw',
  id: 'id', sharing: 'sharing', required: 'required', mode: 'mode', uid: 'uid', gid: 'gid', size: 'size', env: 'env',
};

/**
 * Checks a mount's options (after expansion, or at parse time for values
 * without `$`). Throws a plain Error with what to fix.
 */
export function checkMount(m: RunMount): void {
  const literal = (v: string | undefined) => v !== undefined && !v.includes('$');
  const o = m.options;
  const isBool = (v: string) => /^(1|0|t|f|true|false|TRUE|FALSE|True|False|T|F)$/.test(v);
  for (const k of ['readonly', 'rw', 'required'] as const) {
    if (literal(o[k]) && !isBool(o[k]!)) throw new Error(`invalid value for ${k}: ${o[k]}`);
  }
  if (o.required !== undefined && m.type !== 'secret' && m.type !== 'ssh') {
    throw new Error(`unexpected key 'required' for mount type '${m.type}' (only secret and ssh mounts take it)`);
  }
  if (o.sharing !== undefined) {
    if (m.type !== 'cache') throw new Error(`invalid cache sharing set for ${m.type} mount (sharing= is for type=cache)`);
    if (literal(o.sharing) && !['shared', 'private', 'locked'].includes(o.sharing.toLowerCase())) {
      throw new Error(`unsupported sharing value "${o.sharing}" (use shared, private or locked)`);
    }
  }
  if (o.size !== undefined && m.type !== 'tmpfs') throw new Error(`unexpected key 'size' for mount type '${m.type}' (size= is for type=tmpfs)`);
  if (o.env !== undefined && m.type !== 'secret') throw new Error(`unexpected key 'env' for mount type '${m.type}' (env= is for type=secret)`);
  const fileInfo = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache';
  for (const k of ['mode', 'uid', 'gid'] as const) {
    if (o[k] === undefined) continue;
    if (!fileInfo) throw new Error(`${k} not allowed for "${m.type}" type mounts`);
    if (literal(o[k]) && !(k === 'mode' ? /^[0-7]+$/ : /^[0-9]+$/).test(o[k]!)) throw new Error(`invalid value ${o[k]} for ${k}`);
  }
  if (m.type === 'secret') {
    if (o.from !== undefined) throw new Error('secret mount should not have a from');
    if (o.source === undefined && o.target === undefined && o.id === undefined && o.env === undefined) {
      throw new Error('invalid secret mount: give id=, target= or env=');
    }
    if (o.source !== undefined && o.id !== undefined) throw new Error("both source and id can't be set on a secret mount");
  }
  if ((m.type === 'bind' || m.type === 'cache' || m.type === 'tmpfs') && o.target === undefined) {
    throw new Error(`a type=${m.type} mount needs target=PATH`);
  }
  if (literal(o.from) && o.from === '') throw new Error('from= must name a stage or image');
}

/** One `--mount=` value -> RunMount (type validated; option names normalised; values unexpanded). */
export function parseMount(value: string): RunMount {
  let fields: string[];
  try {
    fields = parseCsvRecord(value);
  } catch (e) {
    throw new Error(`failed to parse csv mounts: ${(e as Error).message}`);
  }
  let type: RunMount['type'] = 'bind';
  const options: Record<string, string> = {};
  for (const field of fields) {
    const eq = field.indexOf('=');
    const rawKey = (eq >= 0 ? field.slice(0, eq) : field).toLowerCase();
    const key = MOUNT_KEY_ALIASES[rawKey];
    if (!key) {
      const hint = suggest(rawKey, Object.keys(MOUNT_KEY_ALIASES));
      throw new Error(`unexpected key '${rawKey}' in '${field}'${hint ? ` (did you mean ${hint}?)` : ''}`);
    }
    if (eq < 0) {
      if (key === 'readonly' || key === 'rw' || key === 'required') {
        options[key] = 'true';
        continue;
      }
      throw new Error(`invalid field '${field}' must be a key=value pair`);
    }
    const v = field.slice(eq + 1);
    if (key === 'type') {
      const t = v.toLowerCase();
      if (!(MOUNT_TYPES as readonly string[]).includes(t)) {
        const hint = suggest(t, MOUNT_TYPES);
        throw new Error(`unsupported mount type "${v}"${hint ? ` (did you mean ${hint}?)` : ''}; use one of ${MOUNT_TYPES.join(', ')}`);
      }
      type = t as RunMount['type'];
      continue;
    }
    if (key === 'from' && /\$./.test(v)) {
      throw new Error("'from' doesn't support variable expansion, define alias stage instead");
    }
    options[key] = v;
  }
  const m: RunMount = { type, options };
  checkMount(m);
  return m;
}

// ------------------------------------------------------------- scanning

interface ScanResult {
  directives: Record<string, string>;
  escapeChar: string;
  nodes: Node[];
  warnings: Warning[];
}

function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (text.endsWith('\n')) lines.pop();
  for (let i = 0; i < lines.length; i++) if (lines[i]!.endsWith('\r')) lines[i] = lines[i]!.slice(0, -1);
  if (lines[0]?.startsWith('\uFEFF')) lines[0] = lines[0].slice(1);
  return lines;
}

function splitCommand(line: string): { cmdRaw: string; flags: string[]; rest: string; unterminated?: string } {
  const t = line.trim();
  const m = WS_SPLIT.exec(t);
  if (!m) return { cmdRaw: t, flags: [], rest: '' };
  const cmdRaw = t.slice(0, m.index);
  const { flags, rest, unterminated } = extractFlags(t.slice(m.index + m[0].length));
  return { cmdRaw, flags, rest: rest.trim(), ...(unterminated !== undefined ? { unterminated } : {}) };
}

/** Whether a node may carry heredocs (RUN/COPY/ADD in shell form, also as an ONBUILD trigger). */
function canContainHeredoc(cmd: string, rest: string): boolean {
  if (cmd === 'ONBUILD') {
    const sub = splitCommand(rest);
    return canContainHeredoc(sub.cmdRaw.toUpperCase(), sub.rest);
  }
  if (!HEREDOC_INSTRUCTIONS.has(cmd)) return false;
  const j = parseJsonArray(rest);
  return !(j && j !== 'not-strings');
}

function scan(text: string, file: string, withDirectives: boolean, escapeChar = '\\'): ScanResult {
  const lines = splitLines(text);
  const directives: Record<string, string> = {};
  const warnings: Warning[] = [];
  const nodes: Node[] = [];
  let esc = escapeChar;
  let directivesDone = !withDirectives;
  const at = (startLine: number, endLine = startLine): Location => ({ file, startLine, endLine });

  let i = 0;
  while (i < lines.length) {
    const raw = lines[i]!;
    const lineNo = i + 1;
    i++;
    const left = trimLeft(raw);
    if (!directivesDone) {
      const m = /^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$/.exec(left);
      const key = m?.[1]!.toLowerCase();
      if (!m || !VALID_DIRECTIVES.has(key!)) {
        directivesDone = true;
      } else {
        if (key! in directives) {
          throw new DockerfileError(`only one ${key} parser directive can be used (remove the second)`, at(lineNo));
        }
        const value = m[2]!;
        directives[key!] = value;
        if (key === 'escape') {
          if (value !== '`' && value !== '\\') {
            throw new DockerfileError(`invalid escape token '${value}' does not match \` or \\ (use # escape=\` or # escape=\\)`, at(lineNo));
          }
          esc = value;
        } else if (key === 'syntax') {
          warnings.push({ loc: at(lineNo), message: `syntax directive ignored: tsbuild has its own Dockerfile frontend (asked for ${value})` });
        } else if (key === 'check') {
          checkCheckDirective(value, at(lineNo), warnings);
        }
        continue;
      }
    }
    if (isComment(raw)) continue;
    const contRe = new RegExp(`${escapeRe(esc)}[ \\t]*$`);
    const trimCont = (s: string): [string, boolean] => {
      const m = contRe.exec(s);
      return m ? [s.slice(0, m.index), false] : [s, true];
    };
    let [line, ended] = trimCont(left);
    if (ended && line === '') continue;
    let emptyContinuation = false;
    while (!ended && i < lines.length) {
      const r = lines[i]!;
      i++;
      if (isComment(r)) continue;
      if (trimLeft(r) === '') {
        emptyContinuation = true;
        continue;
      }
      const [c, e] = trimCont(r);
      line += c;
      ended = e;
    }
    const loc = at(lineNo, i);
    const original = line.trim();
    const { cmdRaw, flags, rest, unterminated } = splitCommand(line);
    const cmd = cmdRaw.toUpperCase();
    const node: Node = { cmd, cmdRaw, flags, rest, original, loc, heredocs: [] };
    if (unterminated !== undefined) node.unterminated = unterminated;
    if (emptyContinuation) {
      warnings.push({ loc, message: 'empty continuation line (a blank line inside a \\-continued instruction); this will become an error in future Dockerfile versions' });
    }
    if (canContainHeredoc(cmd, rest) && line.includes('<<')) {
      for (const h of heredocsInLine(line)) {
        let content = '';
        let terminated = false;
        while (i < lines.length) {
          const r = lines[i]!;
          i++;
          const candidate = h.chomp ? r.replace(/^\t+/, '') : r;
          if (candidate === h.name) {
            terminated = true;
            break;
          }
          content += r + '\n';
        }
        if (!terminated) {
          throw new DockerfileError(
            `unterminated heredoc: no line "${h.name}" ends the <<${h.chomp ? '-' : ''}${h.name} that starts here (add a line containing only ${h.name})`,
            at(lineNo, i),
          );
        }
        if (h.chomp) content = content.replace(/^\t+/gm, '');
        node.heredocs.push({ name: h.name, content, expand: h.expand, chomp: h.chomp });
      }
      node.loc = at(lineNo, i);
    }
    nodes.push(node);
  }
  return { directives, escapeChar: esc, nodes, warnings };
}

function checkCheckDirective(value: string, loc: Location, warnings: Warning[]): void {
  // # check=skip=RuleA,RuleB;error=true   — BuildKit's linter settings. tsbuild has
  // no linter; the value is kept in `directives` and only its shape is checked.
  for (const part of value.split(';')) {
    const p = part.trim();
    if (!p) continue;
    const [k, v] = p.split('=', 2) as [string, string | undefined];
    const key = k.trim().toLowerCase();
    if (key === 'skip') continue;
    if (key === 'error' && v !== undefined && /^(true|false)$/i.test(v.trim())) continue;
    warnings.push({ loc, message: `check directive: unknown setting "${p}" (expected skip=RULE,... or error=true|false)` });
  }
}

// ------------------------------------------------------- node -> instruction

function needArgs(node: Node, what: string): never {
  throw new DockerfileError(`${node.cmd} requires ${what}`, node.loc);
}

function commandLine(node: Node, warnings: Warning[], allowEmpty = false): CommandLine {
  const j = parseJsonArray(node.rest);
  if (j === 'not-strings') {
    throw new DockerfileError(`${node.cmd}: when using JSON array syntax, arrays must be comprised of strings only`, node.loc);
  }
  if (j) {
    if (j.trailing) warnings.push({ loc: node.loc, message: `${node.cmd}: text after the JSON array is ignored: ${j.trailing}` });
    return { form: 'exec', argv: j.argv };
  }
  if (node.rest === '' && !allowEmpty) {
    needArgs(node, `a command (write ${node.cmd} ["executable", "arg"] or ${node.cmd} command args)`);
  }
  if (/^\[\s*['"]/.test(node.rest)) {
    warnings.push({ loc: node.loc, message: `${node.cmd}: not a valid JSON array, so it runs as a shell command (/bin/sh -c ${node.rest}); check the quotes and commas` });
  }
  return { form: 'shell', command: node.rest };
}

function keyValues(node: Node, esc: string): { key: string; value: string }[] {
  const words = splitWordsRaw(node.rest, esc);
  if (words.length === 0) needArgs(node, 'at least one argument (KEY=VALUE ...)');
  if (!words[0]!.includes('=')) {
    // legacy `ENV key value with spaces`
    const m = WS_SPLIT.exec(node.rest);
    if (!m) {
      throw new DockerfileError(`${node.cmd} must have two arguments (write ${node.cmd} ${node.rest}=VALUE)`, node.loc);
    }
    return [{ key: node.rest.slice(0, m.index), value: node.rest.slice(m.index + m[0].length) }];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) {
      throw new DockerfileError(`Syntax error - can't find = in ${JSON.stringify(w)}. Must be of the form: name=value`, node.loc);
    }
    if (eq === 0) throw new DockerfileError(`${node.cmd} names can not be blank (in ${JSON.stringify(w)})`, node.loc);
    return { key: w.slice(0, eq), value: w.slice(eq + 1) };
  });
}

function listArgs(node: Node, warnings: Warning[]): { args: string[]; json: boolean } {
  const j = parseJsonArray(node.rest);
  if (j === 'not-strings') {
    throw new DockerfileError(`${node.cmd}: when using JSON array syntax, arrays must be comprised of strings only`, node.loc);
  }
  if (j) {
    if (j.trailing) warnings.push({ loc: node.loc, message: `${node.cmd}: text after the JSON array is ignored: ${j.trailing}` });
    return { args: j.argv, json: true };
  }
  return { args: node.rest === '' ? [] : node.rest.split(WS_SPLIT), json: false };
}

const ONE_ARG_HINT: Record<string, string> = {
  WORKDIR: 'WORKDIR /path',
  USER: 'USER name[:group] or USER uid[:gid]',
  STOPSIGNAL: 'STOPSIGNAL SIGTERM',
  MAINTAINER: 'MAINTAINER name',
};

function oneArg(node: Node): string {
  if (node.rest === '') needArgs(node, `exactly one argument (${ONE_ARG_HINT[node.cmd]})`);
  return node.rest;
}

function interval(node: Node, flags: ParsedFlags, name: string): number | undefined {
  const v = flags.str(name);
  if (v === undefined || v === '') return undefined;
  let ns: number;
  try {
    ns = parseGoDuration(v);
  } catch (e) {
    throw new DockerfileError(`HEALTHCHECK --${name}=${v}: ${(e as Error).message} (use a Go duration such as 30s, 1m30s, 500ms)`, node.loc);
  }
  if (ns === 0) return undefined;
  if (ns < 1e6) throw new DockerfileError(`HEALTHCHECK --${name}=${v}: cannot be less than 1ms`, node.loc);
  return ns;
}

function toInstruction(node: Node, esc: string, warnings: Warning[]): Instruction {
  const base = { loc: node.loc, original: node.original };
  if (node.unterminated !== undefined && KNOWN.has(node.cmd)) {
    throw new DockerfileError(`unterminated quote in flag ${node.unterminated}: close the quote (it took the rest of the line)`, node.loc);
  }
  switch (node.cmd) {
    case 'FROM': {
      const flags = parseFlags(node);
      const args = node.rest === '' ? [] : node.rest.split(WS_SPLIT);
      let stageName: string | undefined;
      if (args.length === 3 && args[1]!.toLowerCase() === 'as') {
        stageName = args[2]!.toLowerCase();
        if (!/^[a-z][a-z0-9-_.]*$/.test(stageName)) {
          throw new DockerfileError(
            `invalid name for build stage: ${JSON.stringify(args[2])}, name can't start with a number or contain symbols (use letters, digits, -, _ and .)`,
            node.loc,
          );
        }
        if (RESERVED_STAGE_NAMES.has(stageName)) {
          warnings.push({ loc: node.loc, message: `stage name "${stageName}" is reserved and cannot be used in COPY --from or FROM; rename the stage` });
        }
      } else if (args.length !== 1) {
        throw new DockerfileError('FROM requires either one or three arguments (FROM [--platform=P] IMAGE [AS NAME])', node.loc);
      }
      const platform = flags.str('platform');
      return { kind: 'FROM', ...base, image: args[0]!, ...(stageName ? { stageName } : {}), ...(platform ? { platform } : {}) };
    }
    case 'ARG': {
      parseFlags(node);
      const words = splitWordsRaw(node.rest, esc);
      if (words.length === 0) needArgs(node, 'at least one argument (ARG NAME[=DEFAULT] ...)');
      return {
        kind: 'ARG',
        ...base,
        args: words.map((w) => {
          const eq = w.indexOf('=');
          if (eq === 0) throw new DockerfileError(`ARG names can not be blank (in ${JSON.stringify(w)})`, node.loc);
          return eq < 0 ? { key: w } : { key: w.slice(0, eq), value: w.slice(eq + 1) };
        }),
      };
    }
    case 'ENV':
    case 'LABEL': {
      parseFlags(node);
      return { kind: node.cmd, ...base, pairs: keyValues(node, esc) };
    }
    case 'RUN': {
      const flags = parseFlags(node);
      const command = commandLine(node, warnings);
      const mounts = flags.list('mount').map((v) => {
        try {
          return parseMount(v);
        } catch (e) {
          throw new DockerfileError(`RUN --mount=${v}: ${(e as Error).message}`, node.loc);
        }
      });
      const network = flags.str('network');
      if (network !== undefined && !['default', 'none', 'host'].includes(network)) {
        throw new DockerfileError(`unsupported network mode ${JSON.stringify(network)} (use --network=default, none or host)`, node.loc);
      }
      const security = flags.str('security');
      if (security !== undefined && !['sandbox', 'insecure'].includes(security)) {
        throw new DockerfileError(`unsupported security mode ${JSON.stringify(security)} (use --security=sandbox or insecure)`, node.loc);
      }
      const run: RunInstruction = { kind: 'RUN', ...base, command, heredocs: node.heredocs, mounts };
      if (network !== undefined) run.network = network as RunInstruction['network'];
      if (security !== undefined) run.security = security as RunInstruction['security'];
      return run;
    }
    case 'COPY':
    case 'ADD': {
      const flags = parseFlags(node);
      const { args } = listArgs(node, warnings);
      if (args.length < 2) {
        throw new DockerfileError(
          `${node.cmd} requires at least two arguments, but ${args.length === 0 ? 'none was' : 'only one was'} provided. Destination could not be determined (write ${node.cmd} SRC... DEST)`,
          node.loc,
        );
      }
      const dest = args[args.length - 1]!;
      if (parseHeredocWord(dest)) {
        throw new DockerfileError(`${node.cmd} cannot accept a heredoc as a destination (write ${node.cmd} <<EOF DEST)`, node.loc);
      }
      const byName = new Map(node.heredocs.map((h) => [h.name, h]));
      const sources: string[] = [];
      const heredocs: Heredoc[] = [];
      for (const src of args.slice(0, -1)) {
        const h = node.heredocs.length ? parseHeredocWord(src) : undefined;
        if (h) {
          const doc = byName.get(h.name);
          heredocs.push(doc ?? { name: h.name, content: '', expand: h.expand, chomp: h.chomp });
        } else sources.push(src);
      }
      const copy: CopyInstruction = {
        kind: node.cmd,
        ...base,
        sources,
        dest,
        heredocs,
        link: flags.bool('link') ?? false,
        exclude: flags.list('exclude'),
        parents: node.cmd === 'COPY' ? (flags.bool('parents') ?? false) : false,
      };
      const from = node.cmd === 'COPY' ? flags.str('from') : undefined;
      if (from !== undefined && from !== '') copy.from = from;
      const chown = flags.str('chown');
      if (chown !== undefined && chown !== '') copy.chown = chown;
      const chmod = flags.str('chmod');
      if (chmod !== undefined && chmod !== '') copy.chmod = chmod;
      if (node.cmd === 'ADD') {
        const checksum = flags.str('checksum');
        if (checksum !== undefined && checksum !== '') copy.checksum = checksum;
        const keep = flags.bool('keep-git-dir');
        if (keep !== undefined) copy.keepGitDir = keep;
        const unpack = flags.bool('unpack');
        if (unpack !== undefined) copy.unpack = unpack;
      }
      return copy;
    }
    case 'WORKDIR':
      parseFlags(node);
      return { kind: 'WORKDIR', ...base, path: oneArg(node) };
    case 'USER':
      parseFlags(node);
      return { kind: 'USER', ...base, user: oneArg(node) };
    case 'STOPSIGNAL':
      parseFlags(node);
      return { kind: 'STOPSIGNAL', ...base, signal: oneArg(node) };
    case 'MAINTAINER':
      parseFlags(node);
      warnings.push({ loc: node.loc, message: 'MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors="..." instead' });
      return { kind: 'MAINTAINER', ...base, maintainer: oneArg(node) };
    case 'VOLUME': {
      parseFlags(node);
      const { args } = listArgs(node, warnings);
      if (args.length === 0) needArgs(node, 'at least one argument (VOLUME /path ... or VOLUME ["/path"])');
      const volumes = args.map((v) => v.trim());
      if (volumes.some((v) => v === '')) throw new DockerfileError('VOLUME specified can not be an empty string', node.loc);
      return { kind: 'VOLUME', ...base, volumes };
    }
    case 'EXPOSE': {
      parseFlags(node);
      if (node.rest === '') needArgs(node, 'at least one argument (EXPOSE 80 443/tcp 53/udp)');
      return { kind: 'EXPOSE', ...base, ports: node.rest.split(WS_SPLIT) };
    }
    case 'CMD':
    case 'ENTRYPOINT':
      parseFlags(node);
      return { kind: node.cmd, ...base, command: commandLine(node, warnings) };
    case 'SHELL': {
      parseFlags(node);
      const j = parseJsonArray(node.rest);
      if (j === 'not-strings') {
        throw new DockerfileError('SHELL: when using JSON array syntax, arrays must be comprised of strings only', node.loc);
      }
      if (!j) {
        if (node.rest === '') needArgs(node, 'at least one argument (SHELL ["/bin/sh", "-c"])');
        throw new DockerfileError(`SHELL requires the arguments to be in JSON form (write SHELL ${JSON.stringify(node.rest.split(WS_SPLIT))})`, node.loc);
      }
      if (j.argv.length === 0) needArgs(node, 'at least one argument (SHELL ["/bin/sh", "-c"])');
      return { kind: 'SHELL', ...base, shell: j.argv };
    }
    case 'HEALTHCHECK':
      return healthcheck(node, base, warnings);
    case 'ONBUILD': {
      parseFlags(node);
      if (node.rest === '') needArgs(node, 'at least one argument (ONBUILD INSTRUCTION ...)');
      const sub = splitCommand(node.rest);
      const trigger = sub.cmdRaw.toUpperCase();
      if (trigger === 'ONBUILD') throw new DockerfileError('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed', node.loc);
      if (trigger === 'FROM' || trigger === 'MAINTAINER') {
        throw new DockerfileError(`${trigger} isn't allowed as an ONBUILD trigger`, node.loc);
      }
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      for (const h of node.heredocs) expression += '\n' + h.content + h.name;
      // Validate the trigger now rather than when a child image triggers it.
      toInstruction(
        { ...sub, cmd: trigger, original: expression, loc: node.loc, heredocs: node.heredocs },
        esc,
        [],
      );
      return { kind: 'ONBUILD', ...base, expression };
    }
    default: {
      const hint = suggest(node.cmdRaw, INSTRUCTION_NAMES);
      throw new DockerfileError(
        `unknown instruction: ${node.cmdRaw}${hint ? ` (did you mean ${hint}?)` : ` (instructions are ${INSTRUCTION_NAMES.join(', ')})`}`,
        node.loc,
      );
    }
  }
}

function healthcheck(node: Node, base: { loc: Location; original: string }, warnings: Warning[]): Instruction {
  const rest = node.rest;
  if (rest === '') needArgs(node, 'at least one argument (HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE)');
  const m = /^(\S+)\s*([\s\S]*)$/.exec(rest)!;
  const typ = m[1]!.toUpperCase();
  const after = m[2]!;
  if (typ === 'NONE') {
    if (after !== '') throw new DockerfileError('HEALTHCHECK NONE takes no arguments', node.loc);
    if (node.flags.length) warnings.push({ loc: node.loc, message: 'HEALTHCHECK NONE: options are ignored' });
    return { kind: 'HEALTHCHECK', ...base, test: ['NONE'] };
  }
  const flags = parseFlags(node);
  if (typ !== 'CMD') throw new DockerfileError(`Unknown type ${JSON.stringify(typ)} in HEALTHCHECK (try CMD)`, node.loc);
  const j = parseJsonArray(after);
  if (j === 'not-strings') {
    throw new DockerfileError('HEALTHCHECK: when using JSON array syntax, arrays must be comprised of strings only', node.loc);
  }
  let test: string[];
  if (j) test = ['CMD', ...j.argv];
  else test = after === '' ? [] : ['CMD-SHELL', after];
  if (test.length <= 1) throw new DockerfileError('Missing command after HEALTHCHECK CMD', node.loc);
  const hc: Extract<Instruction, { kind: 'HEALTHCHECK' }> = { kind: 'HEALTHCHECK', ...base, test };
  const iv = interval(node, flags, 'interval');
  if (iv !== undefined) hc.interval = iv;
  const to = interval(node, flags, 'timeout');
  if (to !== undefined) hc.timeout = to;
  const sp = interval(node, flags, 'start-period');
  if (sp !== undefined) hc.startPeriod = sp;
  const si = interval(node, flags, 'start-interval');
  if (si !== undefined) hc.startInterval = si;
  const r = flags.str('retries');
  if (r !== undefined && r !== '') {
    if (!/^[+-]?[0-9]+$/.test(r) || Math.abs(Number(r)) > 2147483647) {
      throw new DockerfileError(`HEALTHCHECK --retries=${r}: not a whole number`, node.loc);
    }
    const n = Number(r);
    if (n < 0) throw new DockerfileError(`--retries cannot be negative (${n})`, node.loc);
    hc.retries = n;
  }
  return hc;
}

// ------------------------------------------------------------------ API

export interface InstructionList {
  directives: Record<string, string>;
  escapeChar: string;
  instructions: Instruction[];
  warnings: Warning[];
}

/**
 * Parses text into a flat instruction list without stage rules (no FROM
 * needed): for `--change` values and ONBUILD triggers. `directives` false
 * treats `# escape=` lines as plain comments.
 */
export function parseInstructions(text: string, file: string, opts: { directives?: boolean; escapeChar?: string } = {}): InstructionList {
  const withDirectives = opts.directives ?? true;
  const s = scan(text, file, withDirectives, opts.escapeChar);
  const esc = s.escapeChar;
  const instructions = s.nodes.map((n) => toInstruction(n, esc, s.warnings));
  return { directives: s.directives, escapeChar: esc, instructions, warnings: s.warnings };
}

/** Parses a Dockerfile. Throws DockerfileError (file:line and what to do) for anything BuildKit rejects. */
export function parseDockerfile(text: string, file: string): Dockerfile {
  const { directives, escapeChar, instructions, warnings } = parseInstructions(text, file);
  if (instructions.length === 0) {
    throw new DockerfileError('file with no instructions: the Dockerfile is empty or only has comments (start it with FROM IMAGE)', {
      file,
      startLine: 1,
      endLine: 1,
    });
  }
  const metaArgs: ArgInstruction[] = [];
  const stages: Stage[] = [];
  const names = new Map<string, number>();
  for (const ins of instructions) {
    if (ins.kind === 'FROM') {
      if (ins.stageName !== undefined) {
        const prev = names.get(ins.stageName);
        if (prev !== undefined) {
          throw new DockerfileError(`duplicate stage name "${ins.stageName}" (also used at line ${prev}): give each stage its own name`, ins.loc);
        }
        names.set(ins.stageName, ins.loc.startLine);
      }
      stages.push({ index: stages.length, from: ins, instructions: [] });
      continue;
    }
    const stage = stages[stages.length - 1];
    if (!stage) {
      if (ins.kind === 'ARG') {
        metaArgs.push(ins);
        continue;
      }
      throw new DockerfileError(`${ins.kind} before the first FROM: only ARG may come before FROM (move it after a FROM line)`, ins.loc);
    }
    stage.instructions.push(ins);
  }
  if (stages.length === 0) {
    const last = instructions[instructions.length - 1]!;
    throw new DockerfileError('no FROM instruction: a Dockerfile needs at least one stage (add FROM IMAGE; ARGs before FROM only parameterise FROM lines)', last.loc);
  }
  for (const st of stages) {
    for (const kind of ['CMD', 'ENTRYPOINT', 'HEALTHCHECK'] as const) {
      const all = st.instructions.filter((i) => i.kind === kind);
      if (all.length > 1) {
        warnings.push({
          loc: all[all.length - 1]!.loc,
          message: `${kind} given ${all.length} times in stage ${st.from.stageName ?? st.index}: only the last one (line ${all[all.length - 1]!.loc.startLine}) takes effect`,
        });
      }
    }
  }
  return { file, directives, escapeChar, metaArgs, stages, warnings };
}

/**
 * Parses the ONBUILD triggers of a base image (its config's OnBuild list) into
 * instructions, to run right after the FROM that names the image. `where`
 * names the image for error messages.
 */
export function parseOnbuildTriggers(triggers: readonly string[], where: string): Exclude<Instruction, FromInstruction>[] {
  const out: Exclude<Instruction, FromInstruction>[] = [];
  triggers.forEach((t, idx) => {
    const { instructions } = parseInstructions(t, `${where} ONBUILD[${idx}]`, { directives: false });
    for (const ins of instructions) {
      if (ins.kind === 'FROM' || ins.kind === 'ONBUILD' || ins.kind === 'MAINTAINER') {
        throw new DockerfileError(`${ins.kind} isn't allowed as an ONBUILD trigger`, ins.loc);
      }
      out.push(ins);
    }
  });
  return out;
}
