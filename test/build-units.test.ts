// Unit tests of the executor's pure parts: the merged view of snapshot dirs,
// wildcards, --chmod, parallel gzip, RUN command lines, --secret flags, the
// stage plan, Go duration strings.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { TempDirs } from './helpers.js';
import { goDuration } from '../builder/build.js';
import { ParallelGzip } from '../builder/compress.js';
import { globToRegExp, parseChmod } from '../builder/copy.js';
import { MergedView } from '../builder/merged.js';
import { parseDockerfile } from '../builder/parser.js';
import { parseSecretFlag, runCommand, runCreatedBy } from '../builder/run.js';
import { planStages } from '../builder/stages.js';
import { lsetxattr, mknod, S_IFCHR } from '../image/native.js';
import type { RunInstruction } from '../builder/instructions.js';

const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

describe('MergedView', () => {
  it('applies whiteouts and opaque dirs across snapshot layers, and resolves links inside the root', () => {
    const base = dirs.make('mv');
    const lower = path.join(base, 'lower');
    const upper = path.join(base, 'upper');
    fs.mkdirSync(path.join(lower, 'd/sub'), { recursive: true });
    fs.writeFileSync(path.join(lower, 'd/keep'), 'k');
    fs.writeFileSync(path.join(lower, 'd/gone'), 'g');
    fs.writeFileSync(path.join(lower, 'd/sub/old'), 'o');
    fs.mkdirSync(path.join(lower, 'etc'));
    fs.writeFileSync(path.join(lower, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    fs.symlinkSync('/', path.join(lower, 'rootlink'));
    fs.symlinkSync('../../../../etc', path.join(lower, 'd/up'));
    fs.mkdirSync(path.join(upper, 'd/sub'), { recursive: true });
    mknod(path.join(upper, 'd/gone'), S_IFCHR | 0o600, 0, 0);
    lsetxattr(path.join(upper, 'd/sub'), 'trusted.overlay.opaque', Buffer.from('y'));
    fs.writeFileSync(path.join(upper, 'd/sub/new'), 'n');
    const v = new MergedView([upper, lower]);
    expect(v.readdir(['d'])).toEqual(['keep', 'sub', 'up']);
    expect(v.readdir(['d', 'sub'])).toEqual(['new']);
    expect(v.kind(['d', 'gone'])).toBe('none');
    expect(v.kind(['d', 'sub', 'old'])).toBe('none');
    expect(v.lookup(['d', 'keep'])!.abs).toBe(path.join(lower, 'd/keep'));
    expect(v.resolve('/rootlink/rootlink/etc/passwd', true)).toEqual(['etc', 'passwd']);
    expect(v.resolve('/d/up/passwd', true)).toEqual(['etc', 'passwd']);
    expect(v.readFile('/rootlink/etc/passwd')!.toString()).toMatch(/^root:/);
    expect(v.resolve('/../../x')).toEqual(['x']);
  });
});

describe('small parsers', () => {
  it('wildcards follow Go filepath.Match', () => {
    expect(globToRegExp('*.txt').test('a.txt')).toBe(true);
    expect(globToRegExp('*.txt').test('a/b.txt')).toBe(false);
    expect(globToRegExp('f?.md').test('f1.md')).toBe(true);
    expect(globToRegExp('[a-c]x').test('bx')).toBe(true);
    expect(globToRegExp('[^a-c]x').test('bx')).toBe(false);
    expect(globToRegExp('\\*').test('*')).toBe(true);
  });

  it('--chmod octal and symbolic', () => {
    expect(parseChmod('0755')(0o600, false)).toBe(0o755);
    expect(parseChmod('u+x,g-r')(0o644, false)).toBe(0o704);
    expect(parseChmod('a=rX')(0o600, true)).toBe(0o555);
    expect(parseChmod('a=rX')(0o600, false)).toBe(0o444);
    expect(() => parseChmod('u+q')).toThrow(/--chmod/);
  });

  it('Go duration strings as BuildKit writes HEALTHCHECK into history', () => {
    expect(goDuration(undefined)).toBe('0s');
    expect(goDuration(30e9)).toBe('30s');
    expect(goDuration(90e9)).toBe('1m30s');
    expect(goDuration(3600e9)).toBe('1h0m0s');
    expect(goDuration(1.5e9)).toBe('1.5s');
    expect(goDuration(500e6)).toBe('500ms');
  });

  it('--secret flags', () => {
    expect(parseSecretFlag('id=a,src=/f')).toEqual(['a', { src: '/f' }]);
    expect(parseSecretFlag('id=a,env=TOKEN')).toEqual(['a', { env: 'TOKEN' }]);
    expect(parseSecretFlag('id=a,type=env')).toEqual(['a', { env: 'a' }]);
    expect(() => parseSecretFlag('src=/f')).toThrow(/id= is required/);
  });

  it('RUN command lines: shell, exec, heredoc script, shebang file, inline heredocs', () => {
    const run = (text: string) => parseDockerfile(`FROM scratch\n${text}`, 'Dockerfile').stages[0]!.instructions[0] as RunInstruction;
    const sh = ['/bin/sh', '-c'];
    expect(runCommand(run('RUN echo hi'), sh).args).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(runCommand(run('RUN ["a", "b"]'), sh).args).toEqual(['a', 'b']);
    expect(runCommand(run('RUN <<EOF\necho 1\nEOF'), sh).args).toEqual(['/bin/sh', '-c', 'echo 1\n']);
    const she = runCommand(run('RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF'), sh);
    expect(she.args).toEqual(['/dev/pipes/EOF']);
    expect(she.files[0]).toMatchObject({ target: '/dev/pipes/EOF', mode: 0o755 });
    expect(runCommand(run('RUN cat <<EOF > /x\nhi\nEOF'), sh).args).toEqual(['/bin/sh', '-c', 'cat <<EOF > /x\nhi\nEOF']);
    expect(runCreatedBy(['/bin/sh', '-c', 'make'], [['A', '1']])).toBe('RUN |1 A=1 /bin/sh -c make # buildkit');
  });

  it('stage plans: only what the target needs, dependencies through FROM, --from and mounts', () => {
    const df = parseDockerfile(
      `FROM busybox AS a
FROM busybox AS b
RUN --mount=type=bind,from=a,target=/a true
FROM b AS c
FROM busybox AS d
COPY --from=c /x /x
FROM busybox AS unused
`,
      'Dockerfile',
    );
    const plan = planStages(df, 'd', (w) => w);
    expect(plan.needed.map((s) => s.from.stageName)).toEqual(['a', 'b', 'c', 'd']);
    expect(plan.deps.get(2)!.map((s) => s.from.stageName)).toEqual(['b']);
    expect(plan.displayName(df.stages[0]!)).toBe('a');
  });
});

describe('ParallelGzip', () => {
  it('is one gzip member any reader takes, byte-identical for the same input', async () => {
    const data = Buffer.concat([crypto.randomBytes(1_500_000), Buffer.alloc(2_700_000, 'layer ')]);
    const run = async () => {
      const chunks: Buffer[] = [];
      await pipeline(
        Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]),
        new ParallelGzip(1),
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) chunks.push(c);
        },
      );
      return Buffer.concat(chunks);
    };
    const a = await run();
    const b = await run();
    expect(a.equals(b)).toBe(true);
    expect(zlib.gunzipSync(a).equals(data)).toBe(true);
    const f = path.join(dirs.make('pgz'), 'x.gz');
    fs.writeFileSync(f, a);
    expect(execFileSync('gzip', ['-dc', f], { maxBuffer: 64 << 20 }).equals(data)).toBe(true);
    // A single member: gzip -l sees one entry with the right size.
    expect(execFileSync('gzip', ['-lv', f], { encoding: 'utf8' })).toContain(String(data.length));
  });
});
