// COPY and ADD: Docker's path rules, owners and modes, symlinks in the image
// (never followed out to the host), archives, URLs, heredocs, --exclude,
// --link, --parents, --from, .dockerignore.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildEnv, meta, writeFiles } from './build-helpers.js';

const env = new BuildEnv();
beforeAll(() => env.init('copy'));
afterAll(() => env.cleanup());

const read = (root: string, p: string) => fs.readFileSync(path.join(root, p), 'utf8');
const exists = (root: string, p: string) => {
  try {
    fs.lstatSync(path.join(root, p));
    return true;
  } catch {
    return false;
  }
};

describe('COPY paths', () => {
  it('follows the rules for directories, trailing slashes, existing dirs and wildcards', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
COPY a.txt /newfile
COPY a.txt /newdir/
COPY a.txt /etc
COPY dir /contents
COPY *.md /docs/
COPY dir* /globdirs/
COPY a.txt b.txt /multi/
WORKDIR /w
COPY a.txt rel.txt
COPY ../../a.txt /clamped.txt
`,
      'a.txt': 'a',
      'b.txt': 'b',
      'dir/x': 'x',
      'dir/sub/y': 'y',
      'dir2/z': 'z',
      'one.md': '1',
      'two.md': '2',
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(read(root, 'newfile')).toBe('a');
    expect(read(root, 'newdir/a.txt')).toBe('a');
    expect(read(root, 'etc/a.txt')).toBe('a');
    expect(fs.readdirSync(path.join(root, 'contents')).sort()).toEqual(['sub', 'x']);
    expect(read(root, 'contents/sub/y')).toBe('y');
    expect(fs.readdirSync(path.join(root, 'docs')).sort()).toEqual(['one.md', 'two.md']);
    // Matched directories copy their contents too.
    expect(fs.readdirSync(path.join(root, 'globdirs')).sort()).toEqual(['sub', 'x', 'z']);
    expect(fs.readdirSync(path.join(root, 'multi')).sort()).toEqual(['a.txt', 'b.txt']);
    expect(read(root, 'w/rel.txt')).toBe('a');
    // `..` never leaves the context: ../../a.txt is the context's a.txt.
    expect(read(root, 'clamped.txt')).toBe('a');
    // /etc was copied up, keeping its metadata.
    expect(meta(path.join(root, 'etc'))).toEqual({ type: 'dir', mode: '0755', uid: 0, gid: 0 });
  });

  it('never writes through a symlink in the image to the host, even one pointing at /', async () => {
    const marker = `tsbuild-escape-${process.pid}-${Date.now()}`;
    const dir = env.context({
      Dockerfile: `FROM busybox
RUN ln -s / /danger && ln -s /etc /etclink && ln -s ../../../../../../tmp /up && mkdir /opt && ln -s /nonexistent/deep /opt/dangling
COPY f.txt /danger/tmp/${marker}
COPY f.txt /etclink/
COPY f.txt /up/${marker}-2
COPY dir /danger/
COPY f.txt /opt/dangling
`,
      'f.txt': 'payload',
      'dir/tmp/inside.txt': 'in',
    });
    const r = await env.build(dir);
    expect(fs.existsSync(`/tmp/${marker}`)).toBe(false);
    expect(fs.existsSync(`/tmp/${marker}-2`)).toBe(false);
    expect(fs.existsSync('/tmp/inside.txt') && fs.readFileSync('/tmp/inside.txt', 'utf8') === 'in').toBe(false);
    const root = await env.rootfs(r.image);
    expect(read(root, `tmp/${marker}`)).toBe('payload');
    expect(read(root, `tmp/${marker}-2`)).toBe('payload');
    expect(read(root, 'etc/f.txt')).toBe('payload');
    expect(read(root, 'tmp/inside.txt')).toBe('in');
    // A dangling link as the destination is followed inside the image.
    expect(read(root, 'nonexistent/deep')).toBe('payload');
    // The symlinks themselves are untouched.
    expect(fs.readlinkSync(path.join(root, 'danger'))).toBe('/');
    const entries = await env.layerEntries(r.image, 2);
    expect(entries.map((e) => e.name)).toEqual(['tmp/', `tmp/${marker}`]);
  });

  it('--chown with names from the image, ids, and --chmod (octal and symbolic)', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && echo 'staff:x:50:' >> /etc/group
COPY --chown=app f.txt /o/byname
COPY --chown=app:staff f.txt /o/bynames
COPY --chown=10:20 f.txt /o/ids
COPY --chown=7 f.txt /o/uidonly
COPY --chown=app:nogroup --chmod=0640 dir /o/dir
COPY --chmod=u+x,g-r f.txt /o/sym
COPY --chown=1:1 f.txt /new/parent/file
`,
      'f.txt': { content: 'f', mode: 0o644 },
      'dir/x': { content: 'x', mode: 0o600 },
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(meta(path.join(root, 'o/byname'))).toEqual({ type: 'file', mode: '0644', uid: 1234, gid: 2345 });
    expect(meta(path.join(root, 'o/bynames'))).toMatchObject({ uid: 1234, gid: 50 });
    expect(meta(path.join(root, 'o/ids'))).toMatchObject({ uid: 10, gid: 20 });
    expect(meta(path.join(root, 'o/uidonly'))).toMatchObject({ uid: 7, gid: 7 });
    expect(meta(path.join(root, 'o/dir/x'))).toEqual({ type: 'file', mode: '0640', uid: 1234, gid: 65534 });
    expect(meta(path.join(root, 'o/dir'))).toEqual({ type: 'dir', mode: '0640', uid: 1234, gid: 65534 });
    expect(meta(path.join(root, 'o/sym'))).toMatchObject({ mode: '0704' });
    // Parents a COPY creates belong to the --chown user.
    expect(meta(path.join(root, 'new/parent'))).toEqual({ type: 'dir', mode: '0755', uid: 1, gid: 1 });
    expect(meta(path.join(root, 'o'))).toEqual({ type: 'dir', mode: '0755', uid: 1234, gid: 2345 });
    const by = r.image.config.history!.map((h) => h.created_by);
    expect(by).toContain('COPY --chown=app:nogroup --chmod=0640 dir /o/dir # buildkit');
  });

  it('keeps hardlinks, setuid bits and symlinks from the context; the named source link is followed', async () => {
    const dir = env.context({
      Dockerfile: 'FROM busybox\nCOPY tree /tree\nCOPY link-to-file /followed\n',
      'tree/suid': { content: 's', mode: 0o4755 },
      'tree/h1': 'h',
      'tree/rel': { symlink: 'h1' },
      'tree/abs': { symlink: '/etc/passwd' },
      'file.txt': 'target content',
      'link-to-file': { symlink: 'file.txt' },
    });
    fs.linkSync(path.join(dir, 'tree/h1'), path.join(dir, 'tree/h2'));
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(meta(path.join(root, 'tree/suid'))).toEqual({ type: 'file', mode: '4755', uid: 0, gid: 0 });
    expect(fs.statSync(path.join(root, 'tree/h1')).ino).toBe(fs.statSync(path.join(root, 'tree/h2')).ino);
    expect(fs.readlinkSync(path.join(root, 'tree/rel'))).toBe('h1');
    expect(fs.readlinkSync(path.join(root, 'tree/abs'))).toBe('/etc/passwd');
    expect(meta(path.join(root, 'followed')).type).toBe('file');
    expect(read(root, 'followed')).toBe('target content');
  });

  it('--exclude, --parents and .dockerignore with ! exceptions', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
COPY --exclude=*.log --exclude=sub/skip src /ex/
COPY --parents a/b/c.txt a/d.txt /par/
COPY . /all/
`,
      '.dockerignore': 'secret.txt\n**/*.tmp\nignored\n!ignored/keep.txt\n',
      'src/app.js': 'js',
      'src/debug.log': 'log',
      'src/sub/skip': 'no',
      'src/sub/ok': 'ok',
      'a/b/c.txt': 'c',
      'a/d.txt': 'd',
      'secret.txt': 'SECRET',
      'deep/x.tmp': 'tmp',
      'deep/x.txt': 'txt',
      'ignored/drop.txt': 'drop',
      'ignored/keep.txt': 'keep',
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(fs.readdirSync(path.join(root, 'ex')).sort()).toEqual(['app.js', 'sub']);
    expect(fs.readdirSync(path.join(root, 'ex/sub'))).toEqual(['ok']);
    expect(read(root, 'par/a/b/c.txt')).toBe('c');
    expect(read(root, 'par/a/d.txt')).toBe('d');
    expect(exists(root, 'all/secret.txt')).toBe(false);
    expect(exists(root, 'all/deep/x.tmp')).toBe(false);
    expect(read(root, 'all/deep/x.txt')).toBe('txt');
    expect(fs.readdirSync(path.join(root, 'all/ignored'))).toEqual(['keep.txt']);
    // An ignored file named directly is "not found", as in BuildKit.
    const bad = env.context({ Dockerfile: 'FROM busybox\nCOPY secret.txt /\n', '.dockerignore': 'secret.txt\n', 'secret.txt': 's' });
    await expect(env.build(bad)).rejects.toThrow(/Dockerfile:2: .*secret\.txt.* not found/);
  });

  it('<Dockerfile>.dockerignore beside the Dockerfile wins over the context one', async () => {
    const dir = env.context({
      'build/app.Dockerfile': 'FROM busybox\nCOPY . /all/\n',
      'build/app.Dockerfile.dockerignore': 'b.txt\nbuild\n',
      '.dockerignore': 'a.txt\n',
      'a.txt': 'a',
      'b.txt': 'b',
    });
    const r = await env.build(dir, { file: path.join(dir, 'build/app.Dockerfile') });
    const root = await env.rootfs(r.image);
    expect(fs.readdirSync(path.join(root, 'all')).sort()).toEqual(['.dockerignore', 'a.txt']);
  });
});

describe('COPY sources other than the context', () => {
  it('heredocs, with and without expansion', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox
ARG WHO=world
COPY <<EOF /hello.txt
hello $WHO
EOF
COPY <<"EOF" /raw.txt
hello $WHO
EOF
COPY <<A <<B /two/
first
A
second
B
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(read(root, 'hello.txt')).toBe('hello world\n');
    expect(read(root, 'raw.txt')).toBe('hello $WHO\n');
    expect(read(root, 'two/A')).toBe('first\n');
    expect(read(root, 'two/B')).toBe('second\n');
    expect(meta(path.join(root, 'hello.txt')).mode).toBe('0644');
  });

  it('COPY --from a stage (by name, case-insensitive, and index) and an image keeps owners', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox AS Builder
RUN mkdir /out && echo built > /out/bin && chown 33:44 /out/bin && chmod 750 /out/bin
FROM busybox
COPY --from=builder /out/bin /app/bin
COPY --from=0 /out /out0
COPY --from=busybox:latest /etc/os-release /os-release
COPY --from=BUILDER --chown=5:6 /out/bin /app/chowned
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    expect(meta(path.join(root, 'app/bin'))).toEqual({ type: 'file', mode: '0750', uid: 33, gid: 44 });
    expect(read(root, 'out0/bin')).toBe('built\n');
    expect(read(root, 'os-release')).toMatch(/busybox/);
    expect(meta(path.join(root, 'app/chowned'))).toMatchObject({ uid: 5, gid: 6 });
    // Only the final stage's layers are in the image.
    expect(r.image.layers).toHaveLength(5);
  });

  it('COPY --link makes a layer that does not depend on the parent', async () => {
    const base1 = 'FROM busybox\nCOPY --link f.txt /opt/app/f.txt\n';
    const base2 = 'FROM busybox\nRUN mkdir -p /opt && echo other > /opt/other\nCOPY --link f.txt /opt/app/f.txt\n';
    const r1 = await env.build(env.context({ Dockerfile: base1, 'f.txt': 'f' }), { sourceDateEpoch: 1700000000 });
    const r2 = await env.build(env.context({ Dockerfile: base2, 'f.txt': 'f' }), { sourceDateEpoch: 1700000000 });
    expect(r1.image.layers.at(-1)!.diffId).toBe(r2.image.layers.at(-1)!.diffId);
    const entries = await env.layerEntries(r2.image, -1);
    expect(entries.map((e) => e.name)).toEqual(['opt/', 'opt/app/', 'opt/app/f.txt']);
    const root = await env.rootfs(r2.image);
    expect(read(root, 'opt/other')).toBe('other\n');
    expect(read(root, 'opt/app/f.txt')).toBe('f');
  });
});

describe('ADD', () => {
  it('extracts local tar, tar.gz, tar.bz2 and tar.xz archives by content, and copies other files', async () => {
    const dir = env.context({ Dockerfile: '', 'payload/p/hello.txt': 'hi', 'notatar.tar.gz': 'just text' });
    execFileSync('chown', ['-R', '123:456', path.join(dir, 'payload')]);
    execFileSync('tar', ['-C', path.join(dir, 'payload'), '-cf', path.join(dir, 'plain.tar'), 'p']);
    execFileSync('tar', ['-C', path.join(dir, 'payload'), '-czf', path.join(dir, 'archive-without-extension'), 'p']);
    execFileSync('tar', ['-C', path.join(dir, 'payload'), '-cjf', path.join(dir, 'a.tar.bz2'), 'p']);
    execFileSync('tar', ['-C', path.join(dir, 'payload'), '-cJf', path.join(dir, 'a.tar.xz'), 'p']);
    writeFiles(dir, {
      Dockerfile: `FROM busybox
ADD plain.tar /plain
ADD archive-without-extension /gz/
ADD a.tar.bz2 /bz2
ADD a.tar.xz /xz
ADD notatar.tar.gz /copied/
COPY plain.tar /notextracted/
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    for (const d of ['plain', 'gz', 'bz2', 'xz']) {
      expect(read(root, `${d}/p/hello.txt`)).toBe('hi');
      // Owners in the archive are kept.
      expect(meta(path.join(root, `${d}/p/hello.txt`))).toMatchObject({ uid: 123, gid: 456 });
    }
    expect(read(root, 'copied/notatar.tar.gz')).toBe('just text');
    expect(meta(path.join(root, 'notextracted/plain.tar')).type).toBe('file');
  });

  it('downloads an http URL with mode 600, its name, and Last-Modified as mtime', async () => {
    const server = http.createServer((req, res) => {
      if (req.url === '/files/tool.sh') {
        res.writeHead(200, { 'Last-Modified': 'Tue, 14 Nov 2023 22:13:20 GMT' });
        res.end('#!/bin/sh\necho tool\n');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    try {
      const dir = env.context({
        Dockerfile: `FROM busybox
ADD http://127.0.0.1:${port}/files/tool.sh /bin/
ADD http://127.0.0.1:${port}/files/tool.sh /renamed
`,
      });
      const r = await env.build(dir);
      const root = await env.rootfs(r.image);
      expect(read(root, 'bin/tool.sh')).toBe('#!/bin/sh\necho tool\n');
      expect(meta(path.join(root, 'bin/tool.sh'))).toEqual({ type: 'file', mode: '0600', uid: 0, gid: 0 });
      expect(Math.floor(fs.statSync(path.join(root, 'bin/tool.sh')).mtimeMs / 1000)).toBe(1700000000);
      expect(read(root, 'renamed')).toBe('#!/bin/sh\necho tool\n');
      const missing = env.context({ Dockerfile: `FROM busybox\nADD http://127.0.0.1:${port}/nope /x\n` });
      await expect(env.build(missing)).rejects.toThrow(/Dockerfile:2: .*404/);
    } finally {
      server.close();
    }
  });
});
