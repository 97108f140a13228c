// Layer writer: round trip through applyLayer for every file type, determinism,
// and a real overlayfs upper dir (whiteouts, opaque dirs) checked against the
// merged view the kernel showed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writable, PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLayer } from '../image/layer-applier.js';
import { tarDirectory, writeLayer, type LayerWriterOptions } from '../image/layer-writer.js';
import { lgetxattr, llistxattr, lsetxattr, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../image/native.js';
import { TempDirs } from './helpers.js';

const temps = new TempDirs();
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.splice(0).reverse()) {
    try {
      execFileSync('umount', [m]);
    } catch {
      /* already unmounted */
    }
  }
  temps.cleanup();
});

/** One line per path: type, mode, owner, size, content hash, link target, xattrs, mtime (seconds). */
function manifest(root: string, opts: { dirMtimes?: boolean } = {}): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = rel === '' ? root : path.join(root, rel);
    for (const name of fs.readdirSync(abs).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      const type = st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isCharacterDevice()
            ? 'char'
            : st.isBlockDevice()
              ? 'block'
              : st.isFIFO()
                ? 'fifo'
                : 'file';
      const xattrs = llistxattr(p)
        .filter((n) => !n.startsWith('trusted.overlay.'))
        .sort()
        .map((n) => `${n}=${lgetxattr(p, n)!.toString('hex')}`)
        .join(',');
      const fields = [
        r,
        type,
        (st.mode & 0o7777).toString(8),
        `${st.uid}:${st.gid}`,
        type === 'file' ? `${st.size}:${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}` : '',
        type === 'symlink' ? `-> ${fs.readlinkSync(p)}` : '',
        type === 'char' || type === 'block' ? `rdev=${st.rdev}` : '',
        type !== 'file' && type !== 'symlink' && st.nlink > 1 && type !== 'dir' ? `nlink=${st.nlink}` : '',
        type === 'file' ? `nlink=${st.nlink}` : '',
        xattrs,
        type !== 'dir' || opts.dirMtimes !== false ? `mtime=${Math.floor(st.mtimeMs / 1000)}` : '',
      ];
      out.push(fields.join(' | '));
      if (type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

/** Sink that just hashes; writeLayer resolves when it finishes. */
function nullSink(): Writable {
  return new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });
}

async function layerBytes(dir: string, opts: LayerWriterOptions): Promise<{ gz: Buffer; result: Awaited<ReturnType<typeof writeLayer>> }> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      cb();
    },
  });
  const result = await writeLayer(dir, opts, sink);
  return { gz: Buffer.concat(chunks), result };
}

function streamOf(buf: Buffer): PassThrough {
  const p = new PassThrough();
  p.end(buf);
  return p;
}

/** Entry names of an uncompressed tar, via GNU tar (an independent reader). */
function gnuTarList(tar: Buffer): string[] {
  return execFileSync('tar', ['-tf', '-'], { input: tar, maxBuffer: 64 << 20 })
    .toString('utf8')
    .split('\n')
    .filter(Boolean);
}

async function tarBytes(dir: string, opts: LayerWriterOptions): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of tarDirectory(dir, opts)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const CAP_NET_BIND_AND_SETUID = Buffer.from('0000000280040000000000000000000000000000', 'hex'); // v2, bytes >= 0x80 on purpose
const LONG = `${'deep-directory-name/'.repeat(6)}${'f'.repeat(60)}.txt`; // > 100 bytes, needs PAX or prefix
const LONGER = `${'ü'.repeat(70)}/${'x'.repeat(120)}`; // non-ASCII and one component > 100 bytes

function buildTree(root: string): void {
  const w = (rel: string, data: string | Buffer, mode = 0o644): void => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), data);
    fs.chmodSync(path.join(root, rel), mode);
  };
  w('regular.txt', 'hello world\n');
  w('empty', '');
  w('big.bin', Buffer.alloc(3 * 1024 * 1024 + 17, 7));
  w('bin/su', '#!/bin/sh\n', 0o4755);
  w('bin/wall', 'x', 0o2755);
  w('bin/ping', 'ping', 0o755);
  lsetxattr(path.join(root, 'bin/ping'), 'security.capability', CAP_NET_BIND_AND_SETUID);
  w('mode0', 'secret', 0o000);
  fs.mkdirSync(path.join(root, 'tmp'));
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  fs.mkdirSync(path.join(root, 'emptydir'));
  fs.chmodSync(path.join(root, 'emptydir'), 0o750);
  fs.symlinkSync('/etc/passwd', path.join(root, 'abs-link'));
  fs.symlinkSync('../regular.txt', path.join(root, 'bin/rel-link'));
  fs.symlinkSync('dangling/target', path.join(root, 'dangling'));
  w('hard/a', 'shared content');
  fs.linkSync(path.join(root, 'hard/a'), path.join(root, 'hard/b'));
  fs.linkSync(path.join(root, 'hard/a'), path.join(root, 'z-hard-c'));
  fs.mkdirSync(path.join(root, 'dev'));
  mknod(path.join(root, 'dev/null'), S_IFCHR | 0o666, 1, 3);
  fs.chmodSync(path.join(root, 'dev/null'), 0o666); // mknod honours the umask
  mknod(path.join(root, 'dev/sda1'), S_IFBLK | 0o660, 8, 1);
  mknod(path.join(root, 'dev/big'), S_IFCHR | 0o600, 300, 70000); // major > 255, minor > 255
  mknod(path.join(root, 'fifo'), S_IFIFO | 0o620, 0, 0);
  w('owned', 'mine', 0o640);
  fs.lchownSync(path.join(root, 'owned'), 1234, 5678);
  fs.lchownSync(path.join(root, 'abs-link'), 1234, 5678);
  fs.lchownSync(path.join(root, 'emptydir'), 4321, 8765);
  w('xattrs', 'x');
  lsetxattr(path.join(root, 'xattrs'), 'user.comment', Buffer.from('a value with spaces = and\nnewline'));
  lsetxattr(path.join(root, 'xattrs'), 'user.binary', Buffer.from([0, 1, 2, 0xff, 0xfe, 0x0a, 0x3d]));
  lsetxattr(path.join(root, 'emptydir'), 'user.dirattr', Buffer.from('d'));
  w('with space/and ünïcødé ☃.txt', 'snow');
  w(LONG, 'long');
  w(LONGER, 'longer');
  fs.symlinkSync(`/${'t'.repeat(150)}`, path.join(root, 'long-link'));
  w('uid-big', 'u');
  fs.lchownSync(path.join(root, 'uid-big'), 3_000_000, 3_000_001); // needs PAX uid/gid
  // Varied mtimes, dirs last so creating children does not bump them.
  let t = 1_600_000_000;
  const all: string[] = [];
  const collect = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(root, rel))) {
      const r = path.join(rel, n);
      all.push(r);
      if (fs.lstatSync(path.join(root, r)).isDirectory()) collect(r);
    }
  };
  collect('');
  all.sort((a, b) => b.length - a.length);
  for (const r of all) fs.lutimesSync(path.join(root, r), t, (t += 3) + 0.5);
}

describe('tarDirectory / writeLayer', () => {
  let src: string;
  beforeAll(() => {
    src = temps.make('lw-src');
    buildTree(src);
  });

  it('round-trips every file type through applyLayer', async () => {
    const { gz, result } = await layerBytes(src, { mode: 'dir' });
    expect(result.size).toBe(gz.length);
    expect(result.digest).toBe(`sha256:${createHash('sha256').update(gz).digest('hex')}`);
    const tar = zlib.gunzipSync(gz);
    expect(result.uncompressedSize).toBe(tar.length);
    expect(result.diffId).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);

    const dst = temps.make('lw-dst');
    const applied = await applyLayer(streamOf(gz), dst, { mode: 'merged' });
    expect(applied.diffId).toBe(result.diffId);
    expect(manifest(dst)).toEqual(manifest(src));
    // The capability survived byte for byte (it has bytes >= 0x80).
    expect(lgetxattr(path.join(dst, 'bin/ping'), 'security.capability')).toEqual(CAP_NET_BIND_AND_SETUID);
    // Hardlinks are one inode again.
    expect(fs.statSync(path.join(dst, 'hard/a')).ino).toBe(fs.statSync(path.join(dst, 'z-hard-c')).ino);
  });

  it('is deterministic: same input, same bytes and digests', async () => {
    const a = await layerBytes(src, { mode: 'dir' });
    const b = await layerBytes(src, { mode: 'dir' });
    expect(b.result).toEqual(a.result);
    expect(b.gz.equals(a.gz)).toBe(true);
    // A copy with identical metadata (different inode numbers, creation order) gives the same layer.
    const copy = temps.make('lw-copy');
    await applyLayer(streamOf(a.gz), copy, { mode: 'merged' });
    const c = await layerBytes(copy, { mode: 'dir' });
    expect(c.result.diffId).toBe(a.result.diffId);
    expect(c.result.digest).toBe(a.result.digest);
  });

  it('writes an ordered, well-formed tar that GNU tar reads', async () => {
    const tar = await tarBytes(src, { mode: 'dir' });
    expect(tar.length % 512).toBe(0);
    expect(tar.subarray(-1024).equals(Buffer.alloc(1024))).toBe(true);
    const names = gnuTarList(tar);
    expect(names).toContain('bin/');
    expect(names).toContain('hard/b');
    expect(names).toContain(LONG);
    expect(names).toContain(LONGER);
    expect(names).toContain('with space/and ünïcødé ☃.txt');
    expect(names.some((n) => n.startsWith('./') || n.startsWith('/'))).toBe(false);
    // Parents before children, siblings in byte order.
    const idx = (n: string): number => names.indexOf(n);
    expect(idx('bin/')).toBeLessThan(idx('bin/ping'));
    expect(idx('bin/ping')).toBeLessThan(idx('bin/rel-link'));
    expect(idx('hard/a')).toBeLessThan(idx('hard/b'));
    // GNU tar's verbose listing shows the hardlink and device numbers as we wrote them.
    const verbose = execFileSync('tar', ['--numeric-owner', '-tvf', '-'], { input: tar }).toString();
    expect(verbose).toMatch(/hard\/b link to hard\/a/);
    expect(verbose).toMatch(/z-hard-c link to hard\/a/);
    expect(verbose).toMatch(/crw-rw-rw- 0\/0\s+1,3 .* dev\/null/);
    expect(verbose).toMatch(/-rw-r----- 1234\/5678 .* owned/);
    expect(verbose).toMatch(/-rwsr-xr-x .* bin\/su/);
    expect(verbose).toMatch(/drwxrwxrwt .* tmp\//);
    expect(verbose).toMatch(/3000000\/3000001 .* uid-big/);
    // uname/gname are empty: the verbose listing never shows "root".
    expect(verbose).not.toMatch(/root/);
  });

  it('clamps mtimes to SOURCE_DATE_EPOCH', async () => {
    const dir = temps.make('lw-sde');
    fs.writeFileSync(path.join(dir, 'new'), 'n');
    fs.writeFileSync(path.join(dir, 'old'), 'o');
    fs.utimesSync(path.join(dir, 'new'), 2_000_000_000, 2_000_000_000);
    fs.utimesSync(path.join(dir, 'old'), 1_000_000_000, 1_000_000_000);
    const tar = await tarBytes(dir, { mode: 'dir', sourceDateEpoch: 1_500_000_000 });
    const dst = temps.make('lw-sde-dst');
    await applyLayer(streamOf(tar), dst, { mode: 'merged' });
    expect(Math.floor(fs.statSync(path.join(dst, 'new')).mtimeMs / 1000)).toBe(1_500_000_000);
    expect(Math.floor(fs.statSync(path.join(dst, 'old')).mtimeMs / 1000)).toBe(1_000_000_000);
  });

  it('streams large files without holding them (output arrives before input is done)', async () => {
    // 64 MiB sparse file: we only check the stream is incremental, not memory.
    const dir = temps.make('lw-big');
    const fd = fs.openSync(path.join(dir, 'huge'), 'w');
    fs.ftruncateSync(fd, 64 * 1024 * 1024);
    fs.closeSync(fd);
    let maxChunk = 0;
    let total = 0;
    for await (const c of tarDirectory(dir, { mode: 'dir' })) {
      maxChunk = Math.max(maxChunk, (c as Buffer).length);
      total += (c as Buffer).length;
    }
    expect(total).toBe(512 + 64 * 1024 * 1024 + 1024);
    expect(maxChunk).toBeLessThanOrEqual(1024 * 1024);
    const r = await writeLayer(dir, { mode: 'dir' }, nullSink());
    expect(r.uncompressedSize).toBe(total);
  });
});

describe('overlay upper dir', () => {
  function mountOverlay(lower: string, upper: string, work: string, merged: string): void {
    execFileSync('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lower},upperdir=${upper},workdir=${work},index=off,metacopy=off,redirect_dir=off`,
      merged,
    ]);
    mounts.push(merged);
  }
  function umount(m: string): void {
    execFileSync('umount', [m]);
    mounts.splice(mounts.indexOf(m), 1);
  }

  it('turns whiteouts and opaque dirs into OCI entries and back', async () => {
    const base = temps.make('ov');
    const [L, U, W, M] = ['l', 'u', 'w', 'm'].map((n) => path.join(base, n)) as [string, string, string, string];
    for (const d of [L, U, W, M]) fs.mkdirSync(d);
    // Lower layer.
    fs.writeFileSync(path.join(L, 'file'), 'delete me');
    fs.writeFileSync(path.join(L, 'keep'), 'kept');
    fs.writeFileSync(path.join(L, 'mod.txt'), 'v1');
    fs.mkdirSync(path.join(L, 'dir2'));
    fs.writeFileSync(path.join(L, 'dir2/child'), 'c');
    fs.mkdirSync(path.join(L, 'd/sub'), { recursive: true });
    fs.writeFileSync(path.join(L, 'd/old1'), 'o1');
    fs.writeFileSync(path.join(L, 'd/sub/old2'), 'o2');
    fs.mkdirSync(path.join(L, 'keepdir'));
    fs.writeFileSync(path.join(L, 'keepdir/gone'), 'g');
    fs.writeFileSync(path.join(L, 'keepdir/stay'), 's');

    mountOverlay(L, U, W, M);
    fs.rmSync(path.join(M, 'file')); // delete a file
    fs.rmSync(path.join(M, 'dir2'), { recursive: true }); // replace a dir with a file
    fs.writeFileSync(path.join(M, 'dir2'), 'now a file');
    fs.rmSync(path.join(M, 'd'), { recursive: true }); // rm -rf d && mkdir d
    fs.mkdirSync(path.join(M, 'd'));
    fs.writeFileSync(path.join(M, 'd/new1'), 'n1');
    fs.mkdirSync(path.join(M, 'newdir')); // brand new dir
    fs.writeFileSync(path.join(M, 'newdir/f'), 'f');
    fs.appendFileSync(path.join(M, 'mod.txt'), 'v2'); // modify a file
    fs.rmSync(path.join(M, 'keepdir/gone')); // whiteout inside a merged (non-opaque) dir
    const expected = manifest(M);
    umount(M);

    // The kernel marked d opaque (and perhaps newdir too); only d replaced a lower dir.
    expect(lgetxattr(path.join(U, 'd'), 'trusted.overlay.opaque')?.toString()).toBe('y');

    const upperTar = await tarBytes(U, { mode: 'overlay-upper', lowerDirs: [L] });
    expect(gnuTarList(upperTar)).toEqual([
      '.wh.file',
      'd/',
      'd/.wh..wh..opq',
      'd/new1',
      'dir2',
      'keepdir/',
      'keepdir/.wh.gone',
      'mod.txt',
      'newdir/',
      'newdir/f',
    ]);
    expect(upperTar.includes(Buffer.from('trusted.overlay'))).toBe(false);
    // Same upper, same bytes.
    expect((await tarBytes(U, { mode: 'overlay-upper', lowerDirs: [L] })).equals(upperTar)).toBe(true);
    const lowerTar = await tarBytes(L, { mode: 'dir' });

    // Snapshot-apply both layers and let the kernel merge them again.
    const s1 = path.join(base, 's1');
    const s2 = path.join(base, 's2');
    const m2 = path.join(base, 'm2');
    for (const d of [s1, s2, m2]) fs.mkdirSync(d);
    await applyLayer(streamOf(lowerTar), s1, { mode: 'snapshot' });
    const up = await applyLayer(streamOf(upperTar), s2, { mode: 'snapshot' });
    expect(up.entries).toBe(10);
    const wo = fs.lstatSync(path.join(s2, 'file'));
    expect(wo.isCharacterDevice() && wo.rdev === 0).toBe(true);
    expect(lgetxattr(path.join(s2, 'd'), 'trusted.overlay.opaque')?.toString()).toBe('y');
    expect(lgetxattr(path.join(s2, 'newdir'), 'trusted.overlay.opaque')).toBeUndefined();
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${s2}:${s1}`, m2]);
    mounts.push(m2);
    try {
      expect(manifest(m2)).toEqual(expected);
    } finally {
      umount(m2);
    }

    // Merged-apply both layers into one dir.
    const flat = path.join(base, 'flat');
    fs.mkdirSync(flat);
    await applyLayer(streamOf(lowerTar), flat, { mode: 'merged' });
    await applyLayer(streamOf(upperTar), flat, { mode: 'merged' });
    expect(manifest(flat)).toEqual(expected);
  });

  it('emits no opaque marker for a new dir under a lower whiteout/opaque, and one for a dir under a lower-lower', async () => {
    // lowers (top first): top has opaque "a" (empty), bottom has a/b dir.
    const base = temps.make('ov2');
    const top = path.join(base, 'top');
    const bottom = path.join(base, 'bottom');
    const upper = path.join(base, 'upper');
    fs.mkdirSync(path.join(top, 'a'), { recursive: true });
    lsetxattr(path.join(top, 'a'), 'trusted.overlay.opaque', Buffer.from('y'));
    mknod(path.join(top, 'gone'), S_IFCHR, 0, 0);
    fs.mkdirSync(path.join(bottom, 'a/b'), { recursive: true });
    fs.mkdirSync(path.join(bottom, 'gone'));
    fs.mkdirSync(path.join(bottom, 'c/d'), { recursive: true });
    for (const d of ['a/b', 'gone', 'c/d']) {
      fs.mkdirSync(path.join(upper, d), { recursive: true });
      lsetxattr(path.join(upper, d), 'trusted.overlay.opaque', Buffer.from('y'));
    }
    const names = gnuTarList(await tarBytes(upper, { mode: 'overlay-upper', lowerDirs: [top, bottom] }));
    expect(names).toEqual(['a/', 'a/b/', 'c/', 'c/d/', 'c/d/.wh..wh..opq', 'gone/']);
  });
});
