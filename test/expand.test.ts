// Word expansion as BuildKit's shell lexer does it (builder/expand.ts).
import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../builder/instructions.js';
import { parseDockerfile } from '../builder/parser.js';
import { envListToVars, ExpandError, expandHeredoc, expandPairs, expandWord, expandWords } from '../builder/expand.js';

const vars = new Map([
  ['A', 'a'],
  ['B', 'two words'],
  ['EMPTY', ''],
  ['PATHV', '/usr/local/bin:/usr/bin'],
  ['FILE', 'archive.tar.gz'],
  ['SPACED', '  x  y  '],
  ['_u1', 'underscore'],
]);
const w = (s: string, esc = '\\') => expandWord(s, vars, esc);
const ws = (s: string, esc = '\\') => expandWords(s, vars, esc);

describe('expandWord', () => {
  it('expands $v and ${v}; unset is empty', () => {
    expect(w('$A')).toBe('a');
    expect(w('${A}')).toBe('a');
    expect(w('x$A-y')).toBe('xa-y');
    expect(w('${A}bc')).toBe('abc');
    expect(w('$Abc')).toBe(''); // the name is Abc
    expect(w('$NOPE')).toBe('');
    expect(w('$_u1')).toBe('underscore');
    expect(w('$B')).toBe('two words');
  });

  it('keeps a $ that starts no name', () => {
    expect(w('$')).toBe('$');
    expect(w('a$')).toBe('a$');
    expect(w('$/x')).toBe('$/x');
    expect(w('cost: 5$')).toBe('cost: 5$');
  });

  it('treats special and positional parameters as (unset) names', () => {
    expect(w('$1x')).toBe('x');
    expect(w('$$')).toBe('');
    expect(w('a$@b')).toBe('ab');
  });

  it('does ${v:-w} ${v-w} ${v:+w} ${v+w}', () => {
    expect(w('${NOPE:-def}')).toBe('def');
    expect(w('${EMPTY:-def}')).toBe('def');
    expect(w('${A:-def}')).toBe('a');
    expect(w('${NOPE-def}')).toBe('def');
    expect(w('${EMPTY-def}')).toBe('');
    expect(w('${A:+alt}')).toBe('alt');
    expect(w('${EMPTY:+alt}')).toBe('');
    expect(w('${NOPE:+alt}')).toBe('');
    expect(w('${EMPTY+alt}')).toBe('alt');
    expect(w('${NOPE+alt}')).toBe('');
    // the word is itself expanded and may be quoted
    expect(w('${NOPE:-$A}')).toBe('a');
    expect(w('${NOPE:-${A}x}')).toBe('ax');
    expect(w('${NOPE:-"a b"}')).toBe('a b');
    expect(w("${NOPE:-'}'}")).toBe('}');
    expect(w('${NOPE:-a\\}b}')).toBe('a}b');
  });

  it('does ${v:?msg} and ${v?msg}', () => {
    expect(w('${A:?must be set}')).toBe('a');
    expect(w('${EMPTY?x}')).toBe('');
    expect(() => w('${NOPE:?please set NOPE}')).toThrow(/NOPE: please set NOPE/);
    expect(() => w('${NOPE?}')).toThrow(/NOPE: is not allowed to be unset/);
    expect(() => w('${EMPTY:?}')).toThrow(/EMPTY: is not allowed to be empty/);
  });

  it('does prefix/suffix removal with shortest and longest matches', () => {
    expect(w('${FILE#*.}')).toBe('tar.gz');
    expect(w('${FILE##*.}')).toBe('gz');
    expect(w('${FILE%.*}')).toBe('archive.tar');
    expect(w('${FILE%%.*}')).toBe('archive');
    expect(w('${PATHV#/usr}')).toBe('/local/bin:/usr/bin');
    expect(w('${PATHV%:*}')).toBe('/usr/local/bin');
    expect(w('${FILE#nomatch}')).toBe('archive.tar.gz');
    expect(w('${FILE%?z}')).toBe('archive.tar.');
    expect(w('${NOPE#x}')).toBe('');
    expect(w('${FILE#\\*}')).toBe('archive.tar.gz');
    expect(() => w('${FILE:#x}')).toThrow(/unsupported modifier \(:#\)/);
  });

  it('does ${v/pat/repl} and ${v//pat/repl}', () => {
    expect(w('${PATHV/usr/opt}')).toBe('/opt/local/bin:/usr/bin');
    expect(w('${PATHV//usr/opt}')).toBe('/opt/local/bin:/opt/bin');
    expect(w('${PATHV//\\//_}')).toBe('_usr_local_bin:_usr_bin');
    expect(w('${FILE/.*/}')).toBe('archive');
    expect(w('${FILE/tar}')).toBe('archive..gz');
    // the replacement is expanded, then used literally ($1 is not a regexp group reference)
    expect(expandWord('${A/a/$R}', { A: 'a', R: '$1&' })).toBe('$1&');
  });

  it('reports syntax errors', () => {
    expect(() => w('${A')).toThrow(/missing '}'/);
    expect(() => w('${')).toThrow(/missing '}'/);
    expect(() => w('${}')).toThrow(/bad substitution/);
    expect(() => w('${:-x}')).toThrow(/bad substitution/);
    expect(() => w('${A:x}')).toThrow(/unsupported modifier \(:x\)/);
    expect(() => w('${A*}')).toThrow(/unsupported modifier \(\*\)/);
    expect(() => w('${NOPE:-abc')).toThrow(/missing '}'/);
    expect(() => w('"abc')).toThrow(/matching double-quote/);
    expect(() => w("'abc")).toThrow(/matching single-quote/);
    expect(() => w('"abc')).toThrow(ExpandError);
    expect(() => w('"abc')).toThrow(/failed to expand "\\"abc"/);
  });

  it('names the file and line when given a location', () => {
    const loc = { file: 'Dockerfile', startLine: 7, endLine: 7 };
    try {
      expandWord('${X:?set X with --build-arg}', vars, '\\', { loc });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(DockerfileError);
      expect((e as Error).message).toBe('Dockerfile:7: failed to expand "${X:?set X with --build-arg}": X: set X with --build-arg');
    }
  });

  it('removes quotes; single quotes are literal; double quotes expand', () => {
    expect(w('"$A b"')).toBe('a b');
    expect(w("'$A b'")).toBe('$A b');
    expect(w(`"it's"`)).toBe("it's");
    expect(w(`'say "hi"'`)).toBe('say "hi"');
    expect(w('a"b"c')).toBe('abc');
    expect(w('""')).toBe('');
    expect(w('"${NOPE:-x y}"')).toBe('x y');
    expect(w('  spaced  out  ')).toBe('  spaced  out  ');
  });

  it('handles the escape character outside and inside double quotes', () => {
    expect(w('\\$A')).toBe('$A');
    expect(w('\\"x\\"')).toBe('"x"');
    expect(w("\\'")).toBe("'");
    expect(w('a\\ b')).toBe('a b');
    expect(w('\\\\')).toBe('\\');
    expect(w('\\n')).toBe('n');
    expect(w('trailing\\')).toBe('trailing');
    // inside "": only " $ and the escape itself are escapable
    expect(w('"\\$A"')).toBe('$A');
    expect(w('"\\"q\\""')).toBe('"q"');
    expect(w('"\\\\"')).toBe('\\');
    expect(w('"\\n"')).toBe('\\n');
    expect(w('"c:\\dir"')).toBe('c:\\dir');
    // inside '': nothing is escapable
    expect(w("'\\$A'")).toBe('\\$A');
  });

  it('uses the escape directive character', () => {
    expect(w('c:\\dir\\$A', '`')).toBe('c:\\dir\\a');
    expect(w('`$A', '`')).toBe('$A');
    expect(w('"a`"b"', '`')).toBe('a"b');
    expect(w('"c:\\"', '`')).toBe('c:\\');
  });

  it('accepts a plain object or a function as variables', () => {
    expect(expandWord('$X-$Y', { X: '1', Y: '2' })).toBe('1-2');
    expect(expandWord('$X${Y:-d}', (n) => (n === 'X' ? 'x' : undefined))).toBe('xd');
    expect(expandWord('$toString', {})).toBe(''); // not Object.prototype
  });

  it('reports which variables were looked up', () => {
    const seen: [string, boolean][] = [];
    expandWord('$A ${NOPE:-x} "$B"', vars, '\\', { onLookup: (n, f) => seen.push([n, f]) });
    expect(seen).toEqual([
      ['A', true],
      ['NOPE', false],
      ['B', true],
    ]);
  });

  it('can leave unset variables as written', () => {
    expect(expandWord('$A $NOPE ${NOPE} ${NOPE:-d}', vars, '\\', { skipUnset: true })).toBe('a $NOPE ${NOPE} ${NOPE:-d}');
  });
});

describe('expandWords (EXPOSE)', () => {
  it('splits at whitespace, also whitespace from a variable, but not inside quotes', () => {
    expect(ws('80 443/tcp')).toEqual(['80', '443/tcp']);
    expect(ws('$B')).toEqual(['two', 'words']);
    expect(ws('"$B"')).toEqual(['two words']);
    expect(ws('$SPACED')).toEqual(['x', 'y']);
    expect(ws('a$B')).toEqual(['atwo', 'words']);
    expect(ws('  ')).toEqual([]);
    expect(ws('$NOPE')).toEqual([]);
    expect(ws('a\\ b c')).toEqual(['a b', 'c']);
    expect(ws("'x y' z")).toEqual(['x y', 'z']);
  });
});

describe('expandPairs (ENV and LABEL)', () => {
  it('expands a whole line against one snapshot: ENV a=x b=$a uses the old a', () => {
    const env = new Map([['a', 'old']]);
    const out = expandPairs(
      [
        { key: 'a', value: 'x' },
        { key: 'b', value: '$a' },
        { key: 'c', value: '"${a}-$d"' },
      ],
      env,
    );
    expect(out).toEqual([
      { key: 'a', value: 'x' },
      { key: 'b', value: 'old' },
      { key: 'c', value: 'old-' },
    ]);
  });

  it('removes quotes and escapes from keys and values', () => {
    expect(expandPairs([{ key: '"com.example key"', value: "'v $x'" }], {})).toEqual([{ key: 'com.example key', value: 'v $x' }]);
    expect(expandPairs([{ key: 'D', value: '\\"escaped\\"' }], {})).toEqual([{ key: 'D', value: '"escaped"' }]);
  });
});

describe('expandHeredoc (COPY <<EOF bodies)', () => {
  it('expands variables but keeps quotes; the backslash still escapes', () => {
    const v = { name: 'world' };
    expect(expandHeredoc('Hello ${name}!\n', v)).toBe('Hello world!\n');
    expect(expandHeredoc("Hello '${name}'!\n", v)).toBe("Hello 'world'!\n");
    expect(expandHeredoc('Hello "${name}"!\n', v)).toBe('Hello "world"!\n');
    expect(expandHeredoc('\\$name\n', v)).toBe('$name\n');
    expect(expandHeredoc('\\\\\n', v)).toBe('\\\n');
    expect(expandHeredoc("it's\n", v)).toBe("it's\n");
  });
});

describe('envListToVars', () => {
  it('reads an image config Env list', () => {
    const m = envListToVars(['PATH=/bin:/usr/bin', 'EMPTY=', 'NOVALUE', 'X=a=b']);
    expect(m.get('PATH')).toBe('/bin:/usr/bin');
    expect(m.get('EMPTY')).toBe('');
    expect(m.get('NOVALUE')).toBe('');
    expect(m.get('X')).toBe('a=b');
    expect(expandWord('$PATH', m)).toBe('/bin:/usr/bin');
  });
});

describe('parser + expansion end to end', () => {
  it('gives the config values a moby-lineage builder gives (checked with buildah 1.28 here)', () => {
    const df = parseDockerfile(
      [
        'FROM scratch',
        'ENV a=x b=$a c="${a}-q" d=\'$a\' e=\\$a f="x\\"y" g=a\\ b h=${nope:-dflt} i=${a:+alt} k="${a}"',
        'ENV LEG some  "value" here',
        'LABEL "com.x y"="v w" z=$A',
        'EXPOSE 80 $A',
      ].join('\n'),
      'Dockerfile',
    );
    const vars = new Map([
      ['a', 'old'],
      ['A', 'argA'],
    ]);
    const [env, leg, label, expose] = df.stages[0]!.instructions;
    if (env?.kind !== 'ENV' || leg?.kind !== 'ENV' || label?.kind !== 'LABEL' || expose?.kind !== 'EXPOSE') throw new Error('unexpected parse');
    expect(expandPairs(env.pairs, vars).map((p) => `${p.key}=${p.value}`)).toEqual([
      'a=x', 'b=old', 'c=old-q', 'd=$a', 'e=$a', 'f=x"y', 'g=a b', 'h=dflt', 'i=alt', 'k=old',
    ]);
    expect(expandPairs(leg.pairs, vars)).toEqual([{ key: 'LEG', value: 'some  value here' }]);
    expect(expandPairs(label.pairs, vars)).toEqual([
      { key: 'com.x y', value: 'v w' },
      { key: 'z', value: 'argA' },
    ]);
    expect(expose.ports.flatMap((p) => expandWords(p, vars))).toEqual(['80', 'argA']);
  });
});
