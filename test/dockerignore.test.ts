// .dockerignore matching with Docker's (moby/patternmatcher) rules, and the
// walker helpers (per-directory state, may-reinclude) in builder/dockerignore.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanPath, DockerIgnore, DockerignoreError, loadDockerignore, parseDockerignore, type MatchState } from '../builder/dockerignore.js';
import { TempDirs } from './helpers.js';

const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

const rules = (...lines: string[]) => parseDockerignore(lines.join('\n'));
function expectIgnored(ig: DockerIgnore, yes: string[], no: string[]) {
  for (const p of yes) expect(ig.ignored(p), `${p} should be ignored by ${ig.rules.join(' ')}`).toBe(true);
  for (const p of no) expect(ig.ignored(p), `${p} should be kept by ${ig.rules.join(' ')}`).toBe(false);
}

describe('patterns', () => {
  it('follows the examples of the Dockerfile reference', () => {
    expectIgnored(rules('*/temp*'), ['somedir/temporary.txt', 'somedir/temp', 'somedir/temp/x'], ['temp', 'a/b/temp', 'somedir/xtemp']);
    expectIgnored(rules('*/*/temp*'), ['somedir/subdir/temporary.txt'], ['somedir/temporary.txt', 'temp']);
    expectIgnored(rules('temp?'), ['tempa', 'tempb', 'tempa/x'], ['temp', 'tempab', 'x/tempa']);
    expectIgnored(rules('**/*.go'), ['a.go', 'x/y/z.go'], ['a.gox', 'go']);
    expectIgnored(rules('*.md', '!README.md'), ['a.md', 'CHANGES.md'], ['README.md', 'docs/a.md']);
    expectIgnored(rules('*.md', '!README*.md', 'README-secret.md'), ['a.md', 'README-secret.md'], ['README.md', 'README-x.md']);
    expectIgnored(rules('*.md', 'README-secret.md', '!README*.md'), ['a.md'], ['README.md', 'README-secret.md']);
  });

  it('excludes everything below a matching directory', () => {
    expectIgnored(rules('docs'), ['docs', 'docs/a', 'docs/a/b/c.md'], ['docsx', 'a/docs', 'doc']);
    expectIgnored(rules('a/**'), ['a/b', 'a/b/c'], ['a', 'ab']);
    expectIgnored(rules('a/**/b'), ['a/b', 'a/x/b', 'a/x/y/b', 'a/x/b/c'], ['b', 'a/xb', 'ab']);
    expectIgnored(rules('**'), ['a', 'a/b', '.hidden'], []);
    expectIgnored(rules('**/__pycache__'), ['__pycache__', 'a/__pycache__/x.pyc'], ['a/__pycache__x']);
  });

  it('anchors every pattern at the context root, after cleaning', () => {
    for (const p of ['/docs', './docs', 'docs/', 'docs//', 'x/../docs', './x/./../docs/']) {
      expect(rules(p).rules, p).toEqual(['docs']);
      expectIgnored(rules(p), ['docs/a'], ['x/docs']);
    }
    expect(rules('!/a/b/').rules).toEqual(['!a/b']);
    expect(cleanPath('a/../../b')).toBe('../b');
    expect(cleanPath('/../a')).toBe('/a');
  });

  it('reads comments, blank lines, whitespace, CRLF and a BOM as Docker does', () => {
    const ig = parseDockerignore('\uFEFF# comment\r\n\r\n  *.tmp  \r\n #notacomment\r\n!  keep.tmp\n');
    expect(ig.rules).toEqual(['*.tmp', '#notacomment', '!keep.tmp']);
    expectIgnored(ig, ['a.tmp', '#notacomment'], ['keep.tmp', 'comment']);
  });

  it('supports classes, ? and escapes; regexp characters are literal', () => {
    expectIgnored(rules('[a-c]*.txt'), ['a.txt', 'c1.txt'], ['d.txt', 'A.txt']);
    expectIgnored(rules('[^a]*.txt'), ['b.txt'], ['a.txt']);
    expectIgnored(rules('x\\*y'), ['x*y'], ['xzy']);
    expectIgnored(rules('a+b', '(x)', 'a{1,2}', '$x', 'x]y', 'a.c'), ['a+b', '(x)', 'a{1,2}', '$x', 'x]y', 'a.c'], ['ab', 'aab', 'x', 'a', 'abc']);
    expectIgnored(rules('a?c'), ['abc', 'a.c'], ['a/c', 'ac']);
    expectIgnored(rules('*'), ['a', 'a/b', '.x'], []);
  });

  it('keeps patternmatcher\'s `**x` suffix rule (today\'s Docker)', () => {
    // `**foo` (no slash after **) is a plain suffix test in moby/patternmatcher
    expectIgnored(rules('**foo'), ['foo', 'afoo', 'a/b/xfoo'], ['foox']);
    expectIgnored(rules('**/foo'), ['foo', 'a/foo'], ['afoo']);
  });

  it('lets the last matching line win, also for directories re-included below an excluded one', () => {
    const ig = rules('node_modules', '!node_modules/keep', 'node_modules/keep/big');
    expectIgnored(ig, ['node_modules', 'node_modules/x', 'node_modules/keep/big', 'node_modules/keep/big/y'], ['node_modules/keep', 'node_modules/keep/a']);
    expectIgnored(rules('*', '!src', 'src/*.log'), ['a', 'src/x.log'], ['src', 'src/main.py', 'src/sub/x.log']);
  });

  it('rejects malformed patterns naming the file and line', () => {
    expect(() => parseDockerignore('ok\n[a-\n', 'ctx/.dockerignore')).toThrow(
      new DockerignoreError('ctx/.dockerignore:2: syntax error in pattern (bad range in [ class): "[a-"'),
    );
    expect(() => parseDockerignore('[abc')).toThrow(/\.dockerignore:1: syntax error in pattern \(unterminated \[ class\)/);
    expect(() => parseDockerignore('a\\')).toThrow(/trailing \\ escapes nothing/);
    expect(() => parseDockerignore('[]a]')).toThrow(/empty \[\] class/);
    expect(() => parseDockerignore('# c\n!\n')).toThrow(/\.dockerignore:2: illegal exclusion pattern: "!"/);
  });
});

describe('walker helpers', () => {
  it('tells when an excluded directory can be skipped whole', () => {
    const ig = rules('node_modules', '.git', '!node_modules/keep');
    expect(ig.mayReinclude('node_modules')).toBe(true);
    expect(ig.mayReinclude('.git')).toBe(false);
    expect(ig.mayReinclude('node_modules/other')).toBe(false);
    expect(ig.mayReinclude('node_modules/keep')).toBe(true);
    expect(rules('build').mayReinclude('build')).toBe(false);
    const wild = rules('vendor', 'src', '!src/*/keep', '!**/KEEP');
    expect(wild.exceptionsAreLiteral).toBe(false);
    expect(wild.mayReinclude('vendor')).toBe(true); // !**/KEEP can reach anywhere
    const wild2 = rules('vendor', 'src', '!src/*/keep');
    expect(wild2.mayReinclude('vendor')).toBe(false);
    expect(wild2.mayReinclude('src')).toBe(true);
    expect(wild2.mayReinclude('src/a')).toBe(true);
    expect(wild2.mayReinclude('src/a/keep')).toBe(true);
  });

  it('gives the same answers walking with per-directory state as path by path', () => {
    // a deterministic pseudo-random tree and pattern sets
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const names = ['a', 'b', 'src', 'node_modules', 'x.py', 'y.md', 'keep', '__pycache__', 'tmp1'];
    const patternPool = ['a', 'b/*', '**/*.py', '*.md', '!keep', '!**/keep', 'src/**', '!src/keep', '**/__pycache__', 'tmp?', '*/tmp*', 'node_modules', '!node_modules/keep/x.py'];
    for (let round = 0; round < 30; round++) {
      const ig = new DockerIgnore(Array.from({ length: 1 + rnd(6) }, () => patternPool[rnd(patternPool.length)]!));
      const walk = (dir: string, state: MatchState | undefined, depth: number) => {
        for (const n of names) {
          const rel = dir ? `${dir}/${n}` : n;
          const r = ig.check(rel, state);
          expect(r.ignored, `${rel} with ${ig.rules.join(' ')}`).toBe(ig.ignored(rel));
          if (r.ignored && !ig.mayReinclude(rel)) {
            // nothing below may come back
            expect(ig.ignored(`${rel}/keep/x.py`)).toBe(true);
            continue;
          }
          if (depth < 3 && !n.includes('.')) walk(rel, r.state, depth + 1);
        }
      };
      walk('', undefined, 0);
    }
  });

  it('is fast enough for a large context', () => {
    const ig = rules('node_modules', '**/*.pyc', '*.md', '!README.md', '.git', 'build/**', '**/__pycache__', 'docs/*/draft*');
    const t0 = performance.now();
    let n = 0;
    for (let i = 0; i < 100_000; i++) if (ig.ignored(`src/pkg${i % 100}/sub${i % 7}/file${i}.py${i % 3 === 0 ? 'c' : ''}`)) n++;
    expect(n).toBe(33_334);
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});

describe('loadDockerignore', () => {
  it('prefers <Dockerfile>.dockerignore beside the Dockerfile over the context root .dockerignore', async () => {
    const ctx = dirs.make('ignore');
    mkdirSync(path.join(ctx, 'docker'));
    writeFileSync(path.join(ctx, '.dockerignore'), '*.log\n');
    writeFileSync(path.join(ctx, 'docker', 'app.Dockerfile'), 'FROM busybox\n');
    writeFileSync(path.join(ctx, 'docker', 'app.Dockerfile.dockerignore'), '*.tmp\n');

    const special = await loadDockerignore(ctx, path.join(ctx, 'docker', 'app.Dockerfile'));
    expect(special.file).toBe(path.join(ctx, 'docker', 'app.Dockerfile.dockerignore'));
    expectIgnored(special.rules, ['a.tmp'], ['a.log']);

    const plain = await loadDockerignore(ctx, path.join(ctx, 'Dockerfile'));
    expect(plain.file).toBe(path.join(ctx, '.dockerignore'));
    expectIgnored(plain.rules, ['a.log'], ['a.tmp']);

    const none = await loadDockerignore(dirs.make('noignore'));
    expect(none.file).toBeUndefined();
    expect(none.rules.empty).toBe(true);
    expect(none.rules.ignored('anything')).toBe(false);
  });

  it('names the file in pattern errors', async () => {
    const ctx = dirs.make('ignore-bad');
    writeFileSync(path.join(ctx, '.dockerignore'), 'ok\n\n[z-a]\n');
    await expect(loadDockerignore(ctx)).rejects.toThrow(`${path.join(ctx, '.dockerignore')}:3: syntax error in pattern (reversed range in [ class): "[z-a]"`);
  });
});

describe('as a PathFilter (COPY --exclude and the context walker)', () => {
  it('answers excludes() like ignored() and reports exceptions', () => {
    const f = new DockerIgnore(['*.md', '!README.md'], '--exclude');
    expect(f.excludes('a.md')).toBe(true);
    expect(f.excludes('README.md')).toBe(false);
    expect(f.hasExceptions).toBe(true);
    expect(new DockerIgnore(['x']).hasExceptions).toBe(false);
  });
});
