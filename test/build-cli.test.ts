// The build command line: the short form, tags, -q, --iidfile, --label,
// --output, -f anywhere, stdin contexts, progress styles and the summary.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildEnv, CLI, leftovers } from './build-helpers.js';
import { Progress } from '../builder/progress.js';

const env = new BuildEnv();
beforeAll(() => env.init('cli'));
afterAll(() => env.cleanup());

const DF = 'FROM busybox\nARG WHO=nobody\nRUN echo "hi $WHO" > /hi\nCMD ["cat", "/hi"]\n';

describe('tsbuild build', () => {
  it('`tsbuild -t app .` is `tsbuild build -t app .`; -t repeats; -q prints only the image ID', () => {
    const dir = env.context({ Dockerfile: DF });
    const a = env.cli(['-t', 'short:1', '.'], { cwd: dir });
    expect(a.code, a.err).toBe(0);
    expect(a.err).toMatch(/Built short:1 sha256:[0-9a-f]{12} in [\d.]+s: 4 steps, 0 cached, [\d.]+[kM]?B/);
    const b = env.cli(['build', '-q', '-t', 'long:1', '--tag', 'long:2', '.'], { cwd: dir });
    expect(b.code, b.err).toBe(0);
    expect(b.out).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(b.err).toBe('');
    const images = env.cli(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']).out;
    const id = b.out.trim().slice(7, 19);
    expect(images).toContain(`long:1 ${id}`);
    expect(images).toContain(`long:2 ${id}`);
    expect(images).toContain(`short:1 ${id}`);
    const run = env.cli(['run', '--rm', 'long:2']);
    expect(run.out).toBe('hi nobody\n');
  });

  it('--build-arg (value or from the environment), --label, --iidfile', () => {
    const dir = env.context({ Dockerfile: DF });
    const iid = path.join(env.dirs.make('iid'), 'id.txt');
    const r = env.cli(['build', '-q', '--build-arg', 'WHO', '--label', 'team=core', '--label', 'empty', '--iidfile', iid, '-t', 'args:1', dir], { env: { WHO: 'from-env' } });
    expect(r.code, r.err).toBe(0);
    expect(fs.readFileSync(iid, 'utf8')).toBe(r.out.trim());
    expect(env.cli(['run', '--rm', 'args:1']).out).toBe('hi from-env\n');
    const insp = JSON.parse(env.cli(['inspect', 'args:1']).out)[0];
    expect(insp.Config.Labels).toEqual({ team: 'core', empty: '' });
  });

  it('--output type=oci and type=docker write archives that load back', () => {
    const dir = env.context({ Dockerfile: DF });
    const out = env.dirs.make('out');
    const r = env.cli(['build', '-q', '-t', 'exported:1', '--output', `type=oci,dest=${out}/oci.tar`, '-o', `type=docker,dest=${out}/docker.tar`, dir]);
    expect(r.code, r.err).toBe(0);
    const ociList = execFileSync('tar', ['-tf', `${out}/oci.tar`], { encoding: 'utf8' });
    expect(ociList).toMatch(/index\.json/);
    expect(ociList).toMatch(/oci-layout/);
    const dockerList = execFileSync('tar', ['-tf', `${out}/docker.tar`], { encoding: 'utf8' });
    expect(dockerList).toMatch(/manifest\.json/);
    const { root } = { root: path.join(env.dirs.make('load-root'), 'root') };
    const load = env.cli(['load', '-i', `${out}/docker.tar`], { root });
    expect(load.code, load.err).toBe(0);
    expect(load.out).toMatch(/Loaded image: exported:1/);
    const bad = env.cli(['build', '-o', `type=tar,dest=${out}`, dir]);
    expect(bad.code).toBe(125);
    expect(bad.err).toContain(`--output type=tar: ${out} is a directory: give a file name (dest=FILE)`);
    const noParent = env.cli(['build', '-o', `type=oci,dest=${out}/missing/oci.tar`, dir]);
    expect(noParent.code).toBe(125);
    expect(noParent.err).toContain(`--output type=oci: directory ${out}/missing does not exist: create it first`);
  });

  it('--output type=tar,dest=FILE and -o - write the files of the result as one tar', () => {
    const dir = env.context({
      Dockerfile: 'FROM busybox AS b\nRUN mkdir -p /out/sub && echo bin > /out/app && chmod 750 /out/app && ln -s app /out/link && chown 7:8 /out/sub\nFROM scratch\nCOPY --from=b /out /\n',
    });
    const out = env.dirs.make('tar-out');
    const r = env.cli(['build', '-q', '--output', `type=tar,dest=${out}/files.tar`, dir]);
    expect(r.code, r.err).toBe(0);
    expect(fs.readdirSync(out)).toEqual(['files.tar']); // no temp file left beside it
    const list = execFileSync('tar', ['-tvf', `${out}/files.tar`], { encoding: 'utf8' }).trim().split('\n');
    expect(list.map((l) => l.split(/\s+/).slice(5).join(' ')).sort()).toEqual(['app', 'link -> app', 'sub/']);
    expect(list.find((l) => l.endsWith(' app'))).toMatch(/^-rwxr-x--- 0\/0 /);
    expect(list.find((l) => l.endsWith(' sub/'))).toMatch(/^d\S+ 7\/8 /);
    // -o -: the same tar on stdout (the build's progress stays on stderr).
    const piped = spawnSync('node', [CLI, '--root', env.root, 'build', '-o', '-', '--progress', 'plain', dir], { maxBuffer: 64 << 20 });
    expect(piped.status, piped.stderr.toString()).toBe(0);
    expect(piped.stdout).toEqual(fs.readFileSync(`${out}/files.tar`));
  });

  it('--output type=local,dest=DIR and -o DIR write the files of the result (whiteouts applied, --target honoured)', () => {
    const dir = env.context({
      Dockerfile: 'FROM busybox AS b\nRUN mkdir -p /out/sub && echo bin > /out/app && chmod 750 /out/app && ln -s app /out/link && rm /etc/passwd\nFROM scratch\nCOPY --from=b /out /\n',
    });
    const out = path.join(env.dirs.make('local-out'), 'result');
    const r = env.cli(['build', '-q', '-o', out, dir]);
    expect(r.code, r.err).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['app', 'link', 'sub']);
    expect(fs.readFileSync(path.join(out, 'app'), 'utf8')).toBe('bin\n');
    expect(fs.statSync(path.join(out, 'app')).mode & 0o7777).toBe(0o750);
    expect(fs.readlinkSync(path.join(out, 'link'))).toBe('app');
    const stage = path.join(env.dirs.make('local-out2'), 'b');
    const t = env.cli(['build', '-q', '--target', 'b', '--output', `type=local,dest=${stage}`, dir]);
    expect(t.code, t.err).toBe(0);
    expect(fs.existsSync(path.join(stage, 'bin', 'busybox'))).toBe(true);
    expect(fs.existsSync(path.join(stage, 'etc', 'passwd'))).toBe(false); // deleted by a later layer
    const file = path.join(env.dirs.make('local-file'), 'f');
    fs.writeFileSync(file, 'x');
    const notDir = env.cli(['build', '-q', '-o', file, dir]);
    expect(notDir.code).toBe(125);
    expect(notDir.err).toContain(`${file} exists and is not a directory`);
  });

  it('--report json prints the image report on stdout, progress stays on stderr', () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN echo x > /f && echo y > /f\n' });
    const r = env.cli(['build', '--progress=plain', '--report', 'json', '-t', 'reported:1', dir]);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out);
    expect(rep.total.layers).toBe(2);
    expect(rep.tags).toContain('docker.io/library/reported:1');
    expect(r.err).toMatch(/RUN echo x/);
    const text = env.cli(['build', '--report', 'text', dir]);
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(/RUN/);
    expect(env.cli(['build', '-q', '--report', 'json', dir]).code).toBe(125);
  });

  it('--cache-from reuses the recorded steps of an image built elsewhere (through an OCI archive)', async () => {
    const files = { Dockerfile: 'FROM busybox\nWORKDIR /app\nCOPY data.txt .\nRUN cat data.txt > copy.txt && date +%s%N > built-at\nENV X=1\n', 'data.txt': 'data\n' };
    const out = env.dirs.make('cachefrom');
    const a = env.cli(['build', '-q', '-t', 'cachesrc:1', '--output', `type=oci,dest=${out}/img.tar`, env.context(files)]);
    expect(a.code, a.err).toBe(0);
    const other = await env.newStore('cachefrom-b');
    const load = env.cli(['load', '-i', `${out}/img.tar`], { root: other.root });
    expect(load.code, load.err).toBe(0);
    // Same Dockerfile and files in another directory of another store: every filesystem step comes from the image.
    const b = env.cli(['build', '--progress=plain', '--cache-from', 'cachesrc:1', '--cache-from', 'not-there:1', '-t', 'rebuilt:1', env.context(files)], { root: other.root });
    expect(b.code, b.err).toBe(0);
    expect(b.err).toMatch(/WORKDIR \/app\n#\d+ CACHED/);
    expect(b.err).toMatch(/COPY data.txt \.\n#\d+ CACHED/);
    expect(b.err).toMatch(/RUN cat data.txt .*\n#\d+ CACHED/);
    expect(b.err).toMatch(/WARNING: --cache-from not-there:1: .*building without it/);
    const src = await env.image('cachesrc:1');
    const rebuilt = await env.image('rebuilt:1', other.store);
    expect(rebuilt.layers.map((l) => l.diffId)).toEqual(src.layers.map((l) => l.diffId));
    expect(rebuilt.config.config).toEqual(src.config.config);
    // A change in the context re-runs COPY and what follows.
    const changed = env.cli(['build', '--progress=plain', '--cache-from', 'cachesrc:1', env.context({ ...files, 'data.txt': 'other\n' })], { root: other.root });
    expect(changed.err).toMatch(/COPY data.txt \.\n#\d+ DONE/);
  });

  it('-f names a Dockerfile outside the context; -f - reads it from stdin', () => {
    const ctx = env.context({ 'data.txt': 'data\n' });
    const dfDir = env.dirs.make('dfdir');
    fs.writeFileSync(path.join(dfDir, 'app.Dockerfile'), 'FROM busybox\nCOPY data.txt /data.txt\n');
    const a = env.cli(['build', '-q', '-f', path.join(dfDir, 'app.Dockerfile'), '-t', 'fflag:1', ctx]);
    expect(a.code, a.err).toBe(0);
    const b = env.cli(['build', '-q', '-f', '-', '-t', 'fstdin:1', ctx], { input: 'FROM busybox\nCOPY data.txt /copied.txt\n' });
    expect(b.code, b.err).toBe(0);
    expect(env.cli(['run', '--rm', 'fstdin:1', 'cat', '/copied.txt']).out).toBe('data\n');
  });

  it('- reads a tar context (or a bare Dockerfile) from stdin', () => {
    const ctx = env.context({ Dockerfile: 'FROM busybox\nCOPY data.txt /data.txt\n', 'data.txt': 'tarred\n' });
    const tar = execFileSync('tar', ['-C', ctx, '-czf', '-', '.']);
    const r = env.cli(['build', '-q', '-t', 'tarctx:1', '-'], { input: tar });
    expect(r.code, r.err).toBe(0);
    expect(env.cli(['run', '--rm', 'tarctx:1', 'cat', '/data.txt']).out).toBe('tarred\n');
    const bare = env.cli(['build', '-q', '-t', 'bare:1', '-'], { input: 'FROM busybox\nENV BARE=1\n' });
    expect(bare.code, bare.err).toBe(0);
    const noctx = env.cli(['build', '-t', 'bare:2', '-'], { input: 'FROM busybox\nCOPY x /x\n' });
    expect(noctx.code).toBe(1);
    expect(noctx.err).toMatch(/Dockerfile:2: .*"x" not found in the build context/);
    expect(leftovers(env.root)).toEqual([]);
  });

  it('--progress=plain shows step numbers, output with timestamps, DONE and CACHED', () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN echo line-one && echo line-two\nCOPY Dockerfile /df\n' });
    const first = env.cli(['build', '--progress=plain', dir]);
    expect(first.code, first.err).toBe(0);
    expect(first.err).toMatch(/#\d+ \[1\/3\] FROM busybox\n#\d+ DONE \d+\.\ds/);
    expect(first.err).toMatch(/#(\d+) \[2\/3\] RUN echo line-one && echo line-two\n#\1 \d+\.\d{3} line-one\n#\1 \d+\.\d{3} line-two\n#\1 DONE \d+\.\ds/);
    const second = env.cli(['build', '--progress=plain', dir]);
    expect(second.err).toMatch(/#(\d+) \[2\/3\] RUN echo line-one && echo line-two\n#\1 CACHED/);
    expect(second.err).toMatch(/#(\d+) \[3\/3\] COPY Dockerfile \/df\n#\1 CACHED/);
    expect(second.err).toMatch(/3 steps, 2 cached/);
  });

  it('--network=none reaches RUN steps; --pull with an unreachable registry fails naming the image and the reason', () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN ls /sys/class/net > /nets\n' });
    const r = env.cli(['build', '--network=none', '-t', 'net:1', dir]);
    expect(r.code, r.err).toBe(0);
    expect(env.cli(['run', '--rm', 'net:1', 'cat', '/nets']).out).toBe('lo\n');
    const p = env.cli(['build', '--pull', '-t', 'net:2', dir]);
    expect(p.code).toBe(1);
    expect(p.err).toMatch(/Dockerfile:1: --pull: image busybox is not in the local store; import or pull it.*pulling it failed: .*docker\.io/);
  });
});

describe('tty progress', () => {
  it('redraws a view with the elapsed time, step lines, CACHED and the tail of running output', () => {
    const chunks: string[] = [];
    const sink = { write: (s: string) => chunks.push(s), isTTY: true, columns: 60 } as unknown as NodeJS.WritableStream;
    const p = new Progress(sink, 'auto');
    expect(p.mode).toBe('tty');
    const a = p.step('[1/3] FROM busybox');
    a.done();
    const b = p.step('[2/3] COPY a /a');
    b.cached();
    const c = p.step('[3/3] RUN make');
    c.output(Buffer.from('compiling 1\ncompiling 2\n'));
    (p as unknown as { draw(): void }).draw();
    const running = chunks.join('');
    expect(running).toMatch(/\[\+\] Building \d+\.\ds \(2\/3\)/);
    expect(running).toMatch(/ => CACHED \[2\/3\] COPY a \/a/);
    expect(running).toMatch(/=> => # compiling 2/);
    c.error('exit code: 2');
    p.end();
    const all = chunks.join('');
    // The failed step's output is printed in full.
    expect(all).toMatch(/> \[3\/3\] RUN make:\n#3 compiling 1\n#3 compiling 2/);
    expect(all).toMatch(/\x1b\[\d+F\x1b\[J/);
  });
});
