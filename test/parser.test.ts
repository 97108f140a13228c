// Golden tests for the Dockerfile parser: every directory under
// test/dockerfiles/ holds a Dockerfile and expected.json — either the parsed
// result (locations shortened to "line" or "first-last") or {"error": "..."}
// with the exact message, which always starts with "Dockerfile:LINE:".
// Regenerate after a deliberate change with UPDATE_GOLDEN=1 and review the diff.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { applyChange, parseKeyValues } from '../builder/changes.js';
import { DockerfileError } from '../builder/instructions.js';
import {
  checkMount,
  parseDockerfile,
  parseGoDuration,
  parseHeredocWord,
  parseInstructions,
  parseMount,
  parseOnbuildTriggers,
  splitWordsRaw,
  suggest,
} from '../builder/parser.js';

const casesDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'dockerfiles');
const update = process.env.UPDATE_GOLDEN === '1';

function golden(text: string): unknown {
  try {
    const df = parseDockerfile(text, 'Dockerfile');
    return JSON.parse(
      JSON.stringify(df, (k, v) => {
        if (k === 'loc' && v && typeof v === 'object') {
          return v.startLine === v.endLine ? `${v.startLine}` : `${v.startLine}-${v.endLine}`;
        }
        return v;
      }),
    );
  } catch (e) {
    if (e instanceof DockerfileError) return { error: e.message };
    throw e;
  }
}

const cases = readdirSync(casesDir).filter((d) => existsSync(path.join(casesDir, d, 'Dockerfile'))).sort();

describe('golden Dockerfiles', () => {
  it('has cases for the success and error paths', () => {
    const errors = cases.filter((c) => c.startsWith('error-'));
    expect(cases.length - errors.length).toBeGreaterThanOrEqual(10);
    expect(errors.length).toBeGreaterThanOrEqual(30);
  });

  for (const name of cases) {
    it(name, () => {
      const dir = path.join(casesDir, name);
      const got = golden(readFileSync(path.join(dir, 'Dockerfile'), 'utf8'));
      const expectedFile = path.join(dir, 'expected.json');
      if (update || !existsSync(expectedFile)) writeFileSync(expectedFile, JSON.stringify(got, null, 2) + '\n');
      const want = JSON.parse(readFileSync(expectedFile, 'utf8'));
      expect(got).toEqual(want);
      if (name.startsWith('error-')) {
        expect(want.error, 'error case must fail').toMatch(/^Dockerfile:\d+: \S/);
      } else {
        expect(want.error, 'success case must parse').toBeUndefined();
      }
    });
  }
});

describe('parser pieces', () => {
  it('parses Go durations as HEALTHCHECK does', () => {
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('30s')).toBe(30e9);
    expect(parseGoDuration('1m30s')).toBe(90e9);
    expect(parseGoDuration('1.5h')).toBe(5400e9);
    expect(parseGoDuration('300ms')).toBe(300e6);
    expect(parseGoDuration('2us')).toBe(2000);
    expect(parseGoDuration('2µs')).toBe(2000);
    expect(parseGoDuration('.5s')).toBe(5e8);
    expect(parseGoDuration('-1s')).toBe(-1e9);
    expect(() => parseGoDuration('10')).toThrow(/missing unit/);
    expect(() => parseGoDuration('1d')).toThrow(/unknown unit "d"/);
    expect(() => parseGoDuration('s')).toThrow(/invalid duration/);
    expect(() => parseGoDuration('')).toThrow(/invalid duration/);
  });

  it('reads --mount values as CSV and normalises option names', () => {
    expect(parseMount('type=cache,target=/root/.cache,sharing=locked,id=pip')).toEqual({
      type: 'cache',
      options: { target: '/root/.cache', sharing: 'locked', id: 'pip' },
    });
    expect(parseMount('target=/src,src=ctx,ro')).toEqual({ type: 'bind', options: { target: '/src', source: 'ctx', readonly: 'true' } });
    expect(parseMount('type=secret,id=tok,dst=/run/t,required')).toEqual({
      type: 'secret',
      options: { id: 'tok', target: '/run/t', required: 'true' },
    });
    expect(parseMount('"type=bind,target=/a,source=b"'.replace(/^"|"$/g, ''))).toMatchObject({ type: 'bind' });
    expect(parseMount('type=tmpfs,"target=/a,b",size=10m')).toEqual({ type: 'tmpfs', options: { target: '/a,b', size: '10m' } });
    expect(() => parseMount('type=volume,target=/x')).toThrow(/unsupported mount type "volume"; use one of bind, cache, tmpfs, secret, ssh/);
    expect(() => parseMount('type=cache,target=/x,sharing=sometimes')).toThrow(/unsupported sharing value/);
    expect(() => parseMount('type=bind,target=/x,mode=0755')).toThrow(/mode not allowed for "bind"/);
    expect(() => parseMount('type=cache,target=/x,uid=abc')).toThrow(/invalid value abc for uid/);
    expect(() => parseMount('type=cache')).toThrow(/needs target=PATH/);
    expect(() => parseMount('type=cache,targt=/x')).toThrow(/unexpected key 'targt'.*did you mean target/);
    expect(() => parseMount('type=bind,target=/x,from=$STAGE')).toThrow(/doesn't support variable expansion/);
    expect(() => parseMount('type=bind,tar"get=/x')).toThrow(/bare "/);
    // values with $ are left for the executor to expand and re-check
    expect(parseMount('type=cache,target=/x,uid=$UID').options.uid).toBe('$UID');
    expect(() => checkMount({ type: 'cache', options: { target: '/x', uid: 'nobody' } })).toThrow(/invalid value nobody for uid/);
  });

  it('splits ENV/LABEL/ARG words keeping quotes and escapes', () => {
    expect(splitWordsRaw(`a=1 b="x y" c='p q' d=\\"e`, '\\')).toEqual(['a=1', 'b="x y"', "c='p q'", 'd=\\"e']);
    expect(splitWordsRaw('a="" b', '\\')).toEqual(['a=""', 'b']);
    expect(splitWordsRaw('  ', '\\')).toEqual([]);
    expect(splitWordsRaw('a=`"b c', '`')).toEqual(['a=`"b', 'c']);
    expect(splitWordsRaw('a="x\\"y z"', '\\')).toEqual(['a="x\\"y z"']);
  });

  it('recognises heredoc words as BuildKit does', () => {
    expect(parseHeredocWord('<<EOF')).toEqual({ name: 'EOF', chomp: false, expand: true });
    expect(parseHeredocWord('<<-EOF')).toEqual({ name: 'EOF', chomp: true, expand: true });
    expect(parseHeredocWord('<<"EOF"')).toEqual({ name: 'EOF', chomp: false, expand: false });
    expect(parseHeredocWord("<<'EOF'")).toEqual({ name: 'EOF', chomp: false, expand: false });
    expect(parseHeredocWord('<<E"O"F')).toEqual({ name: 'EOF', chomp: false, expand: false });
    expect(parseHeredocWord('3<<IN')).toEqual({ name: 'IN', chomp: false, expand: true, fd: 3 });
    expect(parseHeredocWord('cat<<EOF')).toBeUndefined();
    expect(parseHeredocWord('<<')).toBeUndefined();
    expect(parseHeredocWord('<<<EOF')).toBeUndefined();
  });

  it('suggests the nearest instruction or flag', () => {
    expect(suggest('RUNN', ['RUN', 'COPY'])).toBe('RUN');
    expect(suggest('cpy', ['RUN', 'COPY'])).toBe('COPY');
    expect(suggest('WORKDIRECTORY', ['RUN', 'WORKDIR'])).toBeUndefined();
  });

  it('parses ONBUILD triggers back into instructions, heredocs included', () => {
    const df = parseDockerfile('FROM busybox\nONBUILD COPY . /app\nONBUILD RUN <<EOF\necho "$HOME"\nEOF\n', 'Dockerfile');
    const triggers = df.stages[0]!.instructions.map((i) => (i.kind === 'ONBUILD' ? i.expression : ''));
    expect(triggers).toEqual(['COPY . /app', 'RUN <<EOF\necho "$HOME"\nEOF']);
    const ins = parseOnbuildTriggers(triggers, 'base:1');
    expect(ins.map((i) => i.kind)).toEqual(['COPY', 'RUN']);
    expect(ins[1]).toMatchObject({ command: { form: 'shell', command: '<<EOF' }, heredocs: [{ name: 'EOF', content: 'echo "$HOME"\n' }] });
    expect(() => parseOnbuildTriggers(['FROM x'], 'base:1')).toThrow(/base:1 ONBUILD\[0\]:1: FROM isn't allowed as an ONBUILD trigger/);
    expect(() => parseOnbuildTriggers(['RUNN x'], 'base:1')).toThrow(/unknown instruction: RUNN/);
  });

  it('parses a single instruction without a FROM (for --change)', () => {
    const { instructions } = parseInstructions('ENV A=1 B="two words"', '--change', { directives: false });
    expect(instructions).toMatchObject([{ kind: 'ENV', pairs: [{ key: 'A', value: '1' }, { key: 'B', value: '"two words"' }] }]);
  });

  it('does not touch anything on disk and is fast on a large file', () => {
    const lines = ['FROM busybox'];
    for (let i = 0; i < 20000; i++) lines.push(`RUN echo ${i} \\\n  && true`, `ENV K${i}="v ${i}"`);
    const t0 = performance.now();
    const df = parseDockerfile(lines.join('\n'), 'Dockerfile');
    const ms = performance.now() - t0;
    expect(df.stages[0]!.instructions).toHaveLength(40000);
    expect(ms).toBeLessThan(5000);
  });
});

describe('--change (builder/changes.ts, on top of the parser)', () => {
  it('applies instructions as docker import --change, expanding against the config Env', () => {
    let c = {};
    for (const ch of ['CMD ["sh"]', 'ENV A=1 B="two words"', 'WORKDIR /srv', 'EXPOSE 80', 'ENV C=$A-${B} A=2', 'WORKDIR sub/../x', 'EXPOSE 8000-8002/UDP', 'LABEL "a b"=c', 'VOLUME ["/data"]', 'ONBUILD RUN echo hi', 'USER $A', 'STOPSIGNAL SIGKILL', 'ENTRYPOINT echo hi']) {
      c = applyChange(c, ch);
    }
    expect(c).toEqual({
      Cmd: ['sh'],
      Env: ['A=2', 'B=two words', 'C=1-two words'],
      WorkingDir: '/srv/x',
      ExposedPorts: { '80/tcp': {}, '8000/udp': {}, '8001/udp': {}, '8002/udp': {} },
      Labels: { 'a b': 'c' },
      Volumes: { '/data': {} },
      OnBuild: ['RUN echo hi'],
      User: '2',
      StopSignal: 'SIGKILL',
      Entrypoint: ['/bin/sh', '-c', 'echo hi'],
    });
    expect(applyChange({ Shell: ['/bin/bash', '-c'] }, 'CMD ls')).toMatchObject({ Cmd: ['/bin/bash', '-c', 'ls'] });
  });

  it('fails clearly on what Docker rejects', () => {
    expect(() => applyChange({}, 'RUN echo hi')).toThrow(/RUN is not supported by --change/);
    expect(() => applyChange({}, 'ENV')).toThrow(/--change "ENV": ENV requires at least one argument/);
    expect(() => applyChange({}, 'CMD ["a", 1]')).toThrow(/arrays must be comprised of strings only/);
    expect(() => applyChange({}, 'EXPOSE 80/icmp')).toThrow(/invalid port "80\/icmp"/);
    expect(() => applyChange({}, 'ENV A="x')).toThrow(/matching double-quote/);
    expect(() => applyChange({}, 'CMD a\nCMD b')).toThrow(/expected one instruction/);
    expect(() => applyChange({}, '')).toThrow(/expected an instruction/);
  });

  it('keeps parseKeyValues', () => {
    expect(parseKeyValues(`k=v k2="a b" k3='c' k4=$x k5=a\\ b`, 'w')).toEqual([
      ['k', 'v'],
      ['k2', 'a b'],
      ['k3', 'c'],
      ['k4', '$x'],
      ['k5', 'a b'],
    ]);
    expect(() => parseKeyValues('novalue', 'LABEL')).toThrow(/LABEL: expected key=value, got "novalue"/);
    expect(() => parseKeyValues('a="x', 'LABEL')).toThrow(/LABEL: unterminated quote/);
  });
});

describe('robustness', () => {
  it('answers any input with a parse result or a DockerfileError, never a crash', () => {
    const tokens = ['FROM', 'RUN', 'COPY', 'ADD', 'ENV', 'ARG', 'LABEL', 'ONBUILD', 'HEALTHCHECK', 'CMD', 'SHELL', 'EXPOSE', 'busybox', ' ', ' ', '\t', '\n', '\n',
      '\\', '\\\n', '`', '"', "'", '[', ']', '"a"', ',', '=', 'a=b', '$x', '${', '}', '<<', '<<EOF', 'EOF', '<<-', '#', '# escape=`\n', '--', '--from=', '--mount=',
      'type=cache', 'target=/x', '--link', '--network=none', 'NONE', 'CMD', '-', '3<<', 'AS', 'x', '\r\n', '\u00e9', '\uFEFF'];
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let ok = 0;
    let errors = 0;
    for (let i = 0; i < 2000; i++) {
      let text = '';
      const n = 1 + rnd(40);
      for (let j = 0; j < n; j++) text += tokens[rnd(tokens.length)];
      if (rnd(2)) text = 'FROM busybox\n' + text;
      try {
        parseDockerfile(text, 'Dockerfile');
        ok++;
      } catch (e) {
        if (!(e instanceof DockerfileError)) throw new Error(`crash on ${JSON.stringify(text)}: ${(e as Error).stack}`);
        expect(e.message).toMatch(/^Dockerfile:\d+: /);
        errors++;
      }
    }
    expect(ok + errors).toBe(2000);
    expect(ok).toBeGreaterThan(0);
    expect(errors).toBeGreaterThan(100);
  });
});
