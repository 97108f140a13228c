// The builder end to end on the busybox base: config and history like
// BuildKit's, the files each layer holds, and the build cache.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildEnv, leftovers, meta } from './build-helpers.js';

const env = new BuildEnv();
beforeAll(() => env.init('build'));
afterAll(() => env.cleanup());

const SIX_STEPS = `FROM busybox
ENV APP_HOME=/srv/app GREETING="hello world"
WORKDIR $APP_HOME
COPY a.txt b.txt ./
RUN echo "$GREETING" > greeting.txt && cat a.txt b.txt > both.txt
CMD ["sh", "-c", "cat greeting.txt"]
`;

describe('tsbuild -t app . basics', () => {
  it('builds config, history and layers like BuildKit', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
LABEL org.example.name="demo app" version=1
ENV PATH=/usr/local/bin:/usr/bin:/bin A=1
ENV B=\${A}-two
USER 1000:1000
EXPOSE 8080 53/udp
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo hi
STOPSIGNAL SIGINT
VOLUME /data
`,
    });
    const r = await env.build(dir, { tags: ['meta:1'] });
    const img = await env.image('meta:1');
    expect(img.id).toBe(r.image.id);
    const c = img.config.config!;
    expect(c.Labels).toEqual({ 'org.example.name': 'demo app', version: '1' });
    expect(c.Env).toEqual(['PATH=/usr/local/bin:/usr/bin:/bin', 'A=1', 'B=1-two']);
    expect(c.User).toBe('1000:1000');
    expect(c.ExposedPorts).toEqual({ '8080/tcp': {}, '53/udp': {} });
    expect(c.Entrypoint).toEqual(['/bin/sh', '-c']);
    // CMD after ENTRYPOINT in the same stage is kept; shell form goes through SHELL.
    expect(c.Cmd).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(c.StopSignal).toBe('SIGINT');
    expect(c.Volumes).toEqual({ '/data': {} });
    // Only the base layer: metadata instructions add history entries with empty_layer.
    expect(img.layers).toHaveLength(1);
    const hist = img.config.history!;
    expect(hist.slice(1).map((h) => h.created_by)).toEqual([
      'LABEL org.example.name=demo app version=1',
      'ENV PATH=/usr/local/bin:/usr/bin:/bin A=1',
      'ENV B=1-two',
      'USER 1000:1000',
      'EXPOSE map[53/udp:{} 8080/tcp:{}]',
      'ENTRYPOINT ["/bin/sh" "-c"]',
      'CMD ["/bin/sh" "-c" "echo hi"]',
      'STOPSIGNAL SIGINT',
      'VOLUME [/data]',
    ]);
    expect(hist.slice(1).every((h) => h.empty_layer === true && h.comment === 'buildkit.dockerfile.v0')).toBe(true);
  });

  it('ENTRYPOINT resets a CMD inherited from the base image', async () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nENTRYPOINT ["echo"]\n' });
    await env.build(dir, { tags: ['ep:1'] });
    const c = (await env.image('ep:1')).config.config!;
    expect(c.Entrypoint).toEqual(['echo']);
    expect(c.Cmd).toBeUndefined();
  });

  it('RUN and COPY become layers holding exactly their changes; WORKDIR creates its dir', async () => {
    const dir = env.context({ Dockerfile: SIX_STEPS, 'a.txt': 'A\n', 'b.txt': { content: 'B\n', mode: 0o600 } });
    const r = await env.build(dir, { tags: ['app:latest'] });
    expect(r.steps).toBe(6);
    expect(r.cached).toBe(0);
    const img = await env.image('app');
    expect(img.config.config!.WorkingDir).toBe('/srv/app');
    expect(img.config.config!.Cmd).toEqual(['sh', '-c', 'cat greeting.txt']);
    // base + WORKDIR + COPY + RUN
    expect(img.layers).toHaveLength(4);
    const hist = img.config.history!.slice(1);
    expect(hist.map((h) => [h.created_by, h.empty_layer ?? false])).toEqual([
      ['ENV APP_HOME=/srv/app GREETING=hello world', true],
      ['WORKDIR /srv/app', false],
      ['COPY a.txt b.txt ./ # buildkit', false],
      ['RUN /bin/sh -c echo "$GREETING" > greeting.txt && cat a.txt b.txt > both.txt # buildkit', false],
      ['CMD ["sh" "-c" "cat greeting.txt"]', true],
    ]);
    const workdirLayer = await env.layerEntries(img, 1);
    expect(workdirLayer.map((e) => [e.name, e.type, e.mode.toString(8)])).toEqual([
      ['srv/', 'directory', '755'],
      ['srv/app/', 'directory', '755'],
    ]);
    const copyLayer = await env.layerEntries(img, 2);
    expect(copyLayer.map((e) => [e.name, e.mode.toString(8), e.uid, e.gid, e.content])).toEqual([
      ['srv/', '755', 0, 0, undefined],
      ['srv/app/', '755', 0, 0, undefined],
      ['srv/app/a.txt', '644', 0, 0, 'A\n'],
      ['srv/app/b.txt', '600', 0, 0, 'B\n'],
    ]);
    const runLayer = await env.layerEntries(img, 3);
    expect(runLayer.filter((e) => e.type === 'file').map((e) => [e.name, e.content])).toEqual([
      ['srv/app/both.txt', 'A\nB\n'],
      ['srv/app/greeting.txt', 'hello world\n'],
    ]);
    const fsDir = await env.rootfs(img);
    expect(fs.readFileSync(path.join(fsDir, 'srv/app/greeting.txt'), 'utf8')).toBe('hello world\n');
    expect(leftovers(env.root)).toEqual([]);
  });

  it('a rebuild is all CACHED and gives the same image; touching a file keeps the cache', async () => {
    const dir = env.context({ Dockerfile: SIX_STEPS, 'a.txt': 'A\n', 'b.txt': 'B\n' });
    const first = await env.build(dir, { tags: ['cache:1'] });
    const again = await env.build(dir, { tags: ['cache:1'] });
    expect(again.cached).toBe(5);
    expect(again.image.digest).toBe(first.image.digest);
    // Numbered as BuildKit numbers: FROM is 1, then only the filesystem steps; names expanded.
    expect(again.log).toMatch(/#\d+ \[2\/4\] WORKDIR \/srv\/app\n#\d+ CACHED/);
    expect(again.log).toMatch(/#\d+ \[3\/4\] COPY a.txt b.txt \.\/\n#\d+ CACHED/);
    expect(again.log).toMatch(/#\d+ \[4\/4\] RUN echo "hello world" > greeting.txt && cat a.txt b.txt > both.txt\n#\d+ CACHED/);
    expect(again.log).toMatch(/RUN echo .*\n#\d+ CACHED/);
    // Same content, new mtime: still cached.
    const later = Date.now() / 1000 + 100;
    fs.utimesSync(path.join(dir, 'b.txt'), later, later);
    const touched = await env.build(dir, { tags: ['cache:1'] });
    expect(touched.cached).toBe(5);
    expect(touched.image.digest).toBe(first.image.digest);
  });

  it('one changed byte in a non-first COPY source rebuilds that step and the ones after it', async () => {
    const dir = env.context({
      Dockerfile: 'FROM busybox\nCOPY one.txt /one.txt\nCOPY two /two/\nRUN cat /two/x > /x\nENV DONE=1\n',
      'one.txt': '1',
      'two/x': 'xxxx',
      'two/deep/y': 'yyyy',
    });
    const first = await env.build(dir);
    expect(first.cached).toBe(0);
    fs.writeFileSync(path.join(dir, 'two/deep/y'), 'yyyz');
    const second = await env.build(dir);
    // COPY one.txt cached; COPY two, RUN and ENV rebuilt.
    expect(second.cached).toBe(1);
    expect(second.log).toMatch(/COPY one.txt \/one.txt\n#\d+ CACHED/);
    expect(second.log).toMatch(/COPY two \/two\/\n#\d+ DONE/);
    expect(second.log).toMatch(/RUN cat \/two\/x > \/x\n#\d+ DONE/);
    expect(second.image.digest).not.toBe(first.image.digest);
    // A mode change alone also invalidates (tar metadata, not mtime).
    fs.chmodSync(path.join(dir, 'two/x'), 0o755);
    const third = await env.build(dir);
    expect(third.cached).toBe(1);
  });

  it('--no-cache runs every step again', async () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN echo $RANDOM > /r\n' });
    await env.build(dir);
    const r = await env.build(dir, { noCache: true });
    expect(r.cached).toBe(0);
    expect(r.log).toMatch(/RUN echo \$RANDOM > \/r\n#\d+ DONE/);
  });

  it('SOURCE_DATE_EPOCH gives the same digest from two different stores and contexts', async () => {
    const files = { Dockerfile: SIX_STEPS, 'a.txt': 'A\n', 'b.txt': 'B\n' };
    const a = await env.newStore('sde-a');
    const b = await env.newStore('sde-b');
    const r1 = await env.build(env.context(files), { store: a.store, sourceDateEpoch: 1700000000 });
    await new Promise((r) => setTimeout(r, 1100));
    const r2 = await env.build(env.context(files), { store: b.store, buildArgs: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(r2.image.digest).toBe(r1.image.digest);
    expect(r1.image.config.created).toBe('2023-11-14T22:13:20.000Z');
    expect(r1.image.config.history!.every((h) => h.created === '2023-11-14T22:13:20.000Z' || h.created_by === 'tsbuild import')).toBe(true);
    const entries = await env.layerEntries(r1.image, 3, a.store);
    expect(entries.every((e) => e.mtime <= 1700000000)).toBe(true);
  });

  it('leaves owners, modes and special bits of RUN changes in the layer', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
RUN mkdir -p /opt/d && echo s > /opt/d/suid && chown 12:34 /opt/d/suid && chmod 4755 /opt/d/suid \\
 && echo h > /opt/d/h1 && ln /opt/d/h1 /opt/d/h2 && ln -s /etc/passwd /opt/d/link && mkfifo /opt/d/fifo
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(meta(path.join(root, 'opt/d/suid'))).toEqual({ type: 'file', mode: '4755', uid: 12, gid: 34 });
    expect(fs.statSync(path.join(root, 'opt/d/h1')).ino).toBe(fs.statSync(path.join(root, 'opt/d/h2')).ino);
    expect(fs.readlinkSync(path.join(root, 'opt/d/link'))).toBe('/etc/passwd');
    expect(fs.lstatSync(path.join(root, 'opt/d/fifo')).isFIFO()).toBe(true);
    const entries = await env.layerEntries(r.image, -1);
    expect(entries.find((e) => e.name === 'opt/d/h2')).toMatchObject({ type: 'link', linkname: 'opt/d/h1' });
  });

  it('deletions across layers become whiteouts; rm -rf + mkdir of a dir becomes an opaque dir', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
RUN mkdir -p /d/sub && echo 1 > /d/keep && echo 2 > /d/gone && echo 3 > /d/sub/x
RUN rm /d/gone
RUN rm -rf /d/sub && mkdir /d/sub && echo new > /d/sub/y
`,
    });
    const r = await env.build(dir);
    const del = await env.layerEntries(r.image, -2);
    expect(del.map((e) => e.name)).toEqual(['d/', 'd/.wh.gone']);
    const opq = await env.layerEntries(r.image, -1);
    expect(opq.map((e) => e.name)).toEqual(['d/', 'd/sub/', 'd/sub/.wh..wh..opq', 'd/sub/y']);
    const root = await env.rootfs(r.image);
    expect(fs.readdirSync(path.join(root, 'd')).sort()).toEqual(['keep', 'sub']);
    expect(fs.readdirSync(path.join(root, 'd/sub'))).toEqual(['y']);
  });

  it('a RUN that changes nothing adds no layer (empty_layer)', async () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN true\n' });
    const r = await env.build(dir);
    expect(r.image.layers).toHaveLength(1);
    const last = r.image.config.history!.at(-1)!;
    expect(last).toMatchObject({ created_by: 'RUN /bin/sh -c true # buildkit', empty_layer: true });
  });
});
