// RUN (shell and exec forms, SHELL, heredocs, --mount, --network), ARG
// scoping and build args, ONBUILD, HEALTHCHECK, MAINTAINER, USER.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildEnv, meta } from './build-helpers.js';

const env = new BuildEnv();
beforeAll(() => env.init('run'));
afterAll(() => env.cleanup());

const read = (root: string, p: string) => fs.readFileSync(path.join(root, p), 'utf8');

describe('RUN', () => {
  it('shell form through SHELL, exec form, and heredocs', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
RUN ["/bin/sh", "-c", "echo exec > /exec"]
SHELL ["/bin/sh", "-ec"]
RUN echo shell > /shell
RUN <<EOF
echo one > /h1
echo two >> /h1
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /h2
EOF
RUN cat <<EOF > /h3
inline $HOME
EOF
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(read(root, 'exec')).toBe('exec\n');
    expect(read(root, 'shell')).toBe('shell\n');
    expect(read(root, 'h1')).toBe('one\ntwo\n');
    expect(read(root, 'h2')).toBe('script /dev/pipes/EOF\n');
    expect(read(root, 'h3')).toBe('inline /root\n');
    const by = r.image.config.history!.slice(1).map((h) => h.created_by);
    expect(by[0]).toBe('RUN /bin/sh -c echo exec > /exec # buildkit');
    expect(by[2]).toBe('RUN /bin/sh -ec echo shell > /shell # buildkit');
    expect(r.image.config.config!.Shell).toEqual(['/bin/sh', '-ec']);
    // Nothing of /dev/pipes ends up in a layer.
    for (let i = 1; i < r.image.layers.length; i++) {
      expect((await env.layerEntries(r.image, i)).some((e) => e.name.startsWith('dev/'))).toBe(false);
    }
  });

  it('runs as USER, in WORKDIR (created owned by USER), with ENV', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group
USER app
WORKDIR /home/app/work
ENV X=y
RUN id -u > out && pwd >> out && echo $X >> out
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(read(root, 'home/app/work/out')).toBe('1000\n/home/app/work\ny\n');
    expect(meta(path.join(root, 'home/app/work'))).toEqual({ type: 'dir', mode: '0755', uid: 1000, gid: 1000 });
  });

  it('ARG scoping, --build-arg, ENV over ARG, platform args, proxies, and history prefixes', async () => {
    const dir = env.context({
      Dockerfile: `ARG BASE=busybox
ARG VERSION=1.0
FROM $BASE
ARG VERSION
ARG MODE=debug
ARG OVER=arg
ENV OVER=env
ARG TARGETARCH
ARG UNSET
RUN echo "$VERSION $MODE $OVER $TARGETARCH [$UNSET] $http_proxy" > /args
`,
    });
    const r = await env.build(dir, { buildArgs: { MODE: 'release', http_proxy: 'http://proxy:3128', NOTUSED: 'x' } });
    const root = await env.rootfs(r.image);
    expect(read(root, 'args')).toBe(`1.0 release env amd64 [] http://proxy:3128\n`);
    const run = r.image.config.history!.at(-1)!.created_by!;
    // Every declared ARG, with the value the command sees ("" when unset; ENV wins), as BuildKit writes it.
    expect(run).toMatch(/^RUN \|5 VERSION=1\.0 MODE=release OVER=env TARGETARCH=amd64 UNSET= \/bin\/sh -c echo/);
    const argHistory = r.image.config.history!.map((h) => h.created_by).filter((c) => c!.startsWith('ARG'));
    expect(argHistory).toEqual(['ARG VERSION=1.0', 'ARG MODE=release', 'ARG OVER=arg', 'ARG TARGETARCH=amd64', 'ARG UNSET']);
    expect(run).not.toContain('http_proxy=');
    expect(r.warnings.join('\n')).toMatch(/build-args \[NOTUSED\] were not consumed/);
    // ARG values are not in the image's config.
    expect(r.image.config.config!.Env).toEqual(['OVER=env']);
    // Changing a build arg that a RUN sees invalidates it.
    const again = await env.build(dir, { buildArgs: { MODE: 'release', http_proxy: 'http://proxy:3128' } });
    expect(again.cached).toBe(again.steps - 1);
    const changed = await env.build(dir, { buildArgs: { MODE: 'other' } });
    expect(changed.log).toMatch(/RUN echo .*\n#\d+ DONE/);
  });

  it('--mount=type=cache persists between builds and stays out of the layer; tmpfs and bind too', async () => {
    const files = {
      Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/var/cache/app --mount=type=tmpfs,target=/scratch --mount=type=bind,source=data,target=/data \\
    echo run >> /var/cache/app/log && cat /var/cache/app/log | wc -l > /count && echo t > /scratch/t && cat /data/d.txt > /fromdata \\
    && (touch /data/new 2>/dev/null && echo rw || echo ro) > /bindmode
`,
      'data/d.txt': 'from context',
    };
    const dir = env.context(files);
    const r1 = await env.build(dir);
    const r2 = await env.build(dir, { noCache: true });
    const root = await env.rootfs(r2.image);
    expect(read(root, 'count').trim()).toBe('2');
    expect(read(root, 'fromdata')).toBe('from context');
    expect(read(root, 'bindmode')).toBe('ro\n');
    for (const r of [r1, r2]) {
      const names = (await env.layerEntries(r.image, -1)).map((e) => e.name);
      expect(names.sort()).toEqual(['bindmode', 'count', 'fromdata']);
    }
    // A change in the bound context files invalidates the RUN.
    fs.writeFileSync(path.join(dir, 'data/d.txt'), 'changed');
    const r3 = await env.build(dir);
    expect(r3.cached).toBe(0);
  });

  it('cache sharing: private gives concurrent users their own instance, shared one between them; locked waits', async () => {
    // Stages a and b run at the same time; each waits (through a shared cache of its
    // own) until the other has started, then lists what it sees in /c.
    const dockerfile = (sharing: string, tries: number) => {
      const stage = (me: string, other: string) => `FROM busybox AS ${me}
RUN --mount=type=cache,id=sync,target=/sync --mount=type=cache,id=c,target=/c,sharing=${sharing} \\
    echo ${me} > /c/${me} && touch /sync/${me} && i=0; while [ ! -e /sync/${other} ] && [ $i -lt ${tries} ]; do sleep 0.05; i=$((i+1)); done; \\
    sleep 0.2; ls /c > /seen
`;
      return `${stage('a', 'b')}${stage('b', 'a')}FROM busybox\nCOPY --from=a /seen /a-seen\nCOPY --from=b /seen /b-seen\n`;
    };
    const seen = async (sharing: string, tries = 600) => {
      const { store } = await env.newStore(`cache-${sharing}`);
      const r = await env.build(env.context({ Dockerfile: dockerfile(sharing, tries) }), { store });
      const root = await env.rootfs(r.image, store);
      const dirs = fs.readdirSync(path.join(store.root, 'cachemounts')).filter((n) => !n.endsWith('.id'));
      return { a: read(root, 'a-seen'), b: read(root, 'b-seen'), instances: dirs.length };
    };
    const priv = await seen('private');
    expect([priv.a, priv.b]).toEqual(['a\n', 'b\n']);
    expect(priv.instances).toBe(3); // sync, and c twice
    const shared = await seen('shared');
    expect([shared.a, shared.b]).toEqual(['a\nb\n', 'a\nb\n']);
    expect(shared.instances).toBe(2);
    // locked: the second cannot start while the first holds the cache, so the
    // first one's wait runs out (2 s) seeing only itself; the second sees both.
    const locked = await seen('locked', 40);
    expect([locked.a, locked.b].sort()).toEqual(locked.a.length < locked.b.length ? ['a\n', 'a\nb\n'] : ['a\nb\n', 'b\n']);
    expect(locked.instances).toBe(2);
  });

  it('--mount=type=cache,from= starts the cache as a copy of a stage dir', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox AS seed
RUN mkdir -p /seeddir && echo seeded > /seeddir/s
FROM busybox
RUN --mount=type=cache,target=/c,from=seed,source=/seeddir cat /c/s > /got && echo more > /c/m
RUN --mount=type=cache,target=/c,from=seed,source=/seeddir ls /c > /list
RUN --mount=type=cache,target=/c ls /c > /plain
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(read(root, 'got')).toBe('seeded\n');
    expect(read(root, 'list')).toBe('m\ns\n');
    expect(read(root, 'plain')).toBe(''); // no from=: another cache, empty
  });

  it('--mount=type=secret: readable during RUN, never in a layer or the history', async () => {
    const secretFile = path.join(env.dirs.make('secret'), 'token');
    fs.writeFileSync(secretFile, 's3cr3t-value');
    const dir = env.context({
      Dockerfile: `FROM busybox
RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /len && ls -la /run/secrets > /ls
RUN --mount=type=secret,id=token,env=TOKEN echo "\${#TOKEN}" > /envlen
RUN --mount=type=secret,id=absent echo fine > /optional
`,
    });
    const r = await env.build(dir, { secrets: new Map([['token', { src: secretFile }]]) });
    const root = await env.rootfs(r.image);
    expect(read(root, 'len').trim()).toBe('12');
    expect(read(root, 'envlen').trim()).toBe('12');
    expect(read(root, 'optional')).toBe('fine\n');
    for (let i = 1; i < r.image.layers.length; i++) {
      for (const e of await env.layerEntries(r.image, i)) {
        expect(e.name.startsWith('run/')).toBe(false);
        expect(e.content ?? '').not.toContain('s3cr3t');
      }
    }
    expect(JSON.stringify(r.image.config)).not.toContain('s3cr3t');
    const req = env.context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=missing,required cat /run/secrets/missing\n' });
    await expect(env.build(req)).rejects.toThrow(/Dockerfile:2: secret missing is required.*--secret id=missing/);
  });

  it('--network=none has only lo; the default network reaches more', async () => {
    const dir = env.context({
      Dockerfile: 'FROM busybox\nRUN --network=none ls /sys/class/net > /none\nRUN ls /sys/class/net > /default\n',
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(read(root, 'none').trim()).toBe('lo');
    expect(read(root, 'default').trim().split('\n').length).toBeGreaterThan(1);
  });

  it('RUN steps that will run get inits started ahead; a failing step ends the unused ones', () => {
    // TSBUILD_TRACE marks each launch: "launch:standby" = an init started ahead took the step.
    const traced = (args: string[]) => env.cli(args, { env: { TSBUILD_TRACE: '1' } });
    const standbys = (err: string) => err.split('\n').filter((l) => /^tsbuild-trace \d+ \S+ launch:standby$/.test(l)).length;
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN --network=none echo a > /a\nRUN --network=host echo b > /b\nRUN --network=none cat /a /b > /c\n' });
    const cold = traced(['build', '--no-cache', '--progress', 'plain', '-t', 'warm', dir]);
    expect(cold.code, cold.err).toBe(0);
    expect(standbys(cold.err)).toBe(3);
    expect(env.cli(['run', '--rm', '--network', 'none', 'warm', 'cat', '/c']).out).toBe('a\nb\n');
    // Cached: no step runs, so no init is started at all.
    const cached = traced(['build', '--progress', 'plain', '-t', 'warm', dir]);
    expect(cached.code).toBe(0);
    expect(cached.err).not.toMatch(/launch:spawned/);
    // The second RUN fails: the build still ends at once (an init left waiting would keep it alive).
    const bad = env.context({ Dockerfile: 'FROM busybox\nRUN true\nRUN exit 4\nRUN echo never\n' });
    const t0 = Date.now();
    const failed = traced(['build', '--no-cache', '--network', 'none', '--progress', 'plain', bad]);
    expect(failed.code).toBe(1);
    expect(failed.err).toMatch(/exit code: 4/);
    expect(failed.err).not.toMatch(/never/);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe('other instructions', () => {
  it('ONBUILD triggers run in the child build; HEALTHCHECK and MAINTAINER set the config', async () => {
    const parent = env.context({
      Dockerfile: `FROM busybox
ONBUILD RUN echo triggered > /trig
ONBUILD COPY child.txt /child.txt
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD wget -q localhost || exit 1
MAINTAINER Jane <jane@example.com>
`,
    });
    const p = await env.build(parent, { tags: ['parent:1'] });
    expect(p.image.config.config!.OnBuild).toEqual(['RUN echo triggered > /trig', 'COPY child.txt /child.txt']);
    expect(p.image.config.config!.Healthcheck).toEqual({ Test: ['CMD-SHELL', 'wget -q localhost || exit 1'], Interval: 30e9, Timeout: 3e9, Retries: 3 });
    expect(p.image.config.author).toBe('Jane <jane@example.com>');
    // ONBUILD changes only the config: no history entry, as BuildKit.
    expect(p.image.config.history!.some((h) => h.created_by!.startsWith('ONBUILD'))).toBe(false);
    expect(p.image.config.history!.at(-2)!.created_by).toBe(`HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] "30s" "3s" "0s" "0s" '\\x03'}`);
    const child = env.context({ Dockerfile: 'FROM parent:1\nRUN cat /trig /child.txt > /both\n', 'child.txt': 'c\n' });
    const c = await env.build(child);
    const root = await env.rootfs(c.image);
    expect(read(root, 'both')).toBe('triggered\nc\n');
    expect(c.image.config.config!.OnBuild ?? []).toEqual([]);
    const none = await env.build(env.context({ Dockerfile: 'FROM parent:1\nHEALTHCHECK NONE\n', 'child.txt': 'c' }));
    expect(none.image.config.config!.Healthcheck).toEqual({ Test: ['NONE'] });
  });

  it('FROM scratch gives BuildKit’s empty image config', async () => {
    const dir = env.context({ Dockerfile: 'FROM scratch\nCOPY f /f\n', f: 'x' });
    const r = await env.build(dir);
    expect(r.image.layers).toHaveLength(1);
    expect(r.image.config.config).toEqual({ Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' });
    expect(r.image.config.os).toBe('linux');
  });
});
