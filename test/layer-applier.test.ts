// Layer applier: format detection, diffId, whiteouts in both modes, metadata
// ordering, and interop with archives written by GNU tar.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { applyLayer, LayerError } from '../image/layer-applier.js';
import { lgetxattr, llistxattr, lsetxattr, mknod, S_IFCHR } from '../image/native.js';
import { makeTar, TempDirs } from './helpers.js';

const temps = new TempDirs();
afterAll(() => temps.cleanup());

function streamOf(buf: Buffer): PassThrough {
  const p = new PassThrough();
  p.end(buf);
  return p;
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(path.join(root, r));
      const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isCharacterDevice() ? 'c' : 'f';
      out.push(`${kind} ${r}${kind === 'f' ? `=${fs.readFileSync(path.join(root, r), 'utf8')}` : ''}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

describe('applyLayer: input formats', () => {
  it('accepts plain tar and gzip, with diffId = sha256 of the tar', async () => {
    const tar = await makeTar([{ header: { name: 'a.txt' }, body: 'hello' }]);
    const d1 = temps.make('la');
    const d2 = temps.make('la');
    const r1 = await applyLayer(streamOf(tar), d1, { mode: 'merged' });
    const r2 = await applyLayer(streamOf(zlib.gzipSync(tar)), d2, { mode: 'merged' });
    expect(r1).toEqual({ diffId: sha(tar), entries: 1 });
    expect(r2).toEqual(r1);
    expect(fs.readFileSync(path.join(d2, 'a.txt'), 'utf8')).toBe('hello');
  });

  it('accepts the empty layer (1024 zero bytes) with the well-known diffId', async () => {
    const r = await applyLayer(streamOf(zlib.gzipSync(Buffer.alloc(1024))), temps.make('la'), { mode: 'merged' });
    expect(r).toEqual({ diffId: 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef', entries: 0 });
  });

  it('hashes trailing bytes after the end-of-archive marker too', async () => {
    const tar = Buffer.concat([await makeTar([{ header: { name: 'x' }, body: 'x' }]), Buffer.alloc(4096)]);
    const r = await applyLayer(streamOf(tar), temps.make('la'), { mode: 'merged' });
    expect(r.diffId).toBe(sha(tar));
  });

  it('rejects empty input, garbage and zstd with LayerError', async () => {
    await expect(applyLayer(streamOf(Buffer.alloc(0)), temps.make('la'), { mode: 'merged' })).rejects.toThrow(LayerError);
    await expect(applyLayer(streamOf(Buffer.from('not a layer at all')), temps.make('la'), { mode: 'merged' })).rejects.toThrow(
      /only 18 bytes, not a gzip or tar stream/,
    );
    await expect(applyLayer(streamOf(Buffer.alloc(4096, 'garbage')), temps.make('la'), { mode: 'merged' })).rejects.toThrow(
      /neither gzip-compressed nor a tar archive/,
    );
    await expect(
      applyLayer(streamOf(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(600)])), temps.make('la'), {
        mode: 'merged',
      }),
    ).rejects.toThrow(/zstd/);
  });

  it('propagates errors of the input stream', async () => {
    const p = new PassThrough();
    p.write((await makeTar([{ header: { name: 'x' }, body: 'x' }])).subarray(0, 512));
    setTimeout(() => p.destroy(new Error('network went away')), 10);
    await expect(applyLayer(p, temps.make('la'), { mode: 'merged' })).rejects.toThrow(/network went away/);
  });

  it('reads archives written by GNU tar (pax, xattrs, long names, hardlinks)', async () => {
    const src = temps.make('la-gnu-src');
    fs.mkdirSync(path.join(src, 'dir/sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'dir/sub/file'), 'content');
    const long = `${'n'.repeat(120)}/${'m'.repeat(110)}`;
    fs.mkdirSync(path.join(src, 'n'.repeat(120)));
    fs.writeFileSync(path.join(src, long), 'long');
    fs.linkSync(path.join(src, 'dir/sub/file'), path.join(src, 'dir/hl'));
    fs.symlinkSync('sub/file', path.join(src, 'dir/sym'));
    fs.chmodSync(path.join(src, 'dir/sub/file'), 0o4750);
    lsetxattr(path.join(src, 'dir/sub/file'), 'user.k', Buffer.from([0xff, 0x00, 0x80]));
    fs.lchownSync(path.join(src, 'dir/sym'), 77, 88);
    for (const format of ['pax', 'gnu']) {
      const xattrFlags = format === 'pax' ? ['--xattrs', '--xattrs-include=*'] : [];
      const tar = execFileSync('tar', [...xattrFlags, `--format=${format}`, '-C', src, '-cf', '-', '.'], {
        maxBuffer: 1 << 24,
      });
      const dst = temps.make('la-gnu-dst');
      await applyLayer(streamOf(tar), dst, { mode: 'merged' });
      expect(tree(dst)).toEqual(tree(src));
      expect(fs.statSync(path.join(dst, 'dir/sub/file')).mode & 0o7777).toBe(0o4750);
      expect(fs.statSync(path.join(dst, 'dir/hl')).ino).toBe(fs.statSync(path.join(dst, 'dir/sub/file')).ino);
      expect(fs.lstatSync(path.join(dst, 'dir/sym')).uid).toBe(77);
      if (format === 'pax') expect(lgetxattr(path.join(dst, 'dir/sub/file'), 'user.k')).toEqual(Buffer.from([0xff, 0x00, 0x80]));
    }
  });
});

describe('applyLayer: semantics', () => {
  it('replaces files by dirs and dirs by files, keeps an existing dir and its children', async () => {
    const dst = temps.make('la-rep');
    fs.mkdirSync(path.join(dst, 'wasdir/child'), { recursive: true });
    fs.writeFileSync(path.join(dst, 'wasfile'), 'f');
    fs.mkdirSync(path.join(dst, 'keep'));
    fs.writeFileSync(path.join(dst, 'keep/old'), 'old');
    const tar = await makeTar([
      { header: { name: 'wasdir', type: 'file' }, body: 'now a file' },
      { header: { name: 'wasfile/', type: 'directory' } },
      { header: { name: 'wasfile/in', type: 'file' }, body: 'in' },
      { header: { name: 'keep/', type: 'directory', mode: 0o700 } },
      { header: { name: 'keep/new', type: 'file' }, body: 'new' },
    ]);
    await applyLayer(streamOf(tar), dst, { mode: 'merged' });
    expect(tree(dst)).toEqual(['d keep', 'f keep/new=new', 'f keep/old=old', 'f wasdir=now a file', 'd wasfile', 'f wasfile/in=in']);
    expect(fs.statSync(path.join(dst, 'keep')).mode & 0o777).toBe(0o700);
  });

  it('sets dir modes and mtimes after the children are written; setuid survives chown', async () => {
    const dst = temps.make('la-meta');
    const tar = await makeTar([
      { header: { name: 'ro/', type: 'directory', mode: 0o555, mtime: new Date(1_000_000_000_000) } },
      { header: { name: 'ro/child', type: 'file', mode: 0o4755, uid: 1000, gid: 1000 }, body: 'x' },
      { header: { name: 'ro/sgid/', type: 'directory', mode: 0o2775, uid: 5, gid: 6, mtime: new Date(1_100_000_000_000) } },
      { header: { name: 'ro/sgid/f', type: 'file', mode: 0o2711, uid: 5, gid: 6 }, body: 'y' },
      { header: { name: 'implicit/parent/file', type: 'file' }, body: 'z' },
    ]);
    await applyLayer(streamOf(tar), dst, { mode: 'merged' });
    const ro = fs.statSync(path.join(dst, 'ro'));
    expect(ro.mode & 0o7777).toBe(0o555);
    expect(ro.mtimeMs).toBe(1_000_000_000_000);
    const child = fs.statSync(path.join(dst, 'ro/child'));
    expect([child.mode & 0o7777, child.uid, child.gid]).toEqual([0o4755, 1000, 1000]);
    const sgid = fs.statSync(path.join(dst, 'ro/sgid'));
    expect([sgid.mode & 0o7777, sgid.uid, sgid.gid, sgid.mtimeMs]).toEqual([0o2775, 5, 6, 1_100_000_000_000]);
    expect(fs.statSync(path.join(dst, 'ro/sgid/f')).mode & 0o7777).toBe(0o2711);
    expect(fs.statSync(path.join(dst, 'implicit')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dst, 'implicit/parent')).mode & 0o7777).toBe(0o755);
  });

  it('merged mode: .wh.x removes files and whole dirs; opaque removes only what lower layers put there', async () => {
    const dst = temps.make('la-wh');
    for (const d of ['gone-dir/deep', 'opq/sub', 'opq/kept-dir']) fs.mkdirSync(path.join(dst, d), { recursive: true });
    for (const f of ['gone-file', 'gone-dir/deep/f', 'opq/lower1', 'opq/sub/lower2', 'opq/kept-dir/lower3', 'stay'])
      fs.writeFileSync(path.join(dst, f), 'lower');
    const tar = await makeTar([
      { header: { name: '.wh.gone-dir' } },
      { header: { name: '.wh.gone-file' } },
      { header: { name: '.wh.never-existed' } },
      { header: { name: 'opq/', type: 'directory' } },
      { header: { name: 'opq/kept-dir/', type: 'directory' } },
      { header: { name: 'opq/kept-dir/upper', type: 'file' }, body: 'upper' },
      { header: { name: 'opq/new', type: 'file' }, body: 'upper' },
      // deliberately after its siblings: must not delete what this layer wrote
      { header: { name: 'opq/.wh..wh..opq' } },
    ]);
    const r = await applyLayer(streamOf(tar), dst, { mode: 'merged' });
    expect(r.entries).toBe(8);
    expect(tree(dst)).toEqual(['d opq', 'd opq/kept-dir', 'f opq/kept-dir/upper=upper', 'f opq/new=upper', 'f stay=lower']);
  });

  it('snapshot mode: whiteouts become 0:0 char devices, opaque markers an xattr; layer-supplied overlay xattrs are dropped', async () => {
    const dst = temps.make('la-snap');
    const tar = await makeTar([
      { header: { name: '.wh.gone' } },
      { header: { name: 'o/', type: 'directory' } },
      { header: { name: 'o/.wh..wh..opq' } },
      { header: { name: 'o/.wh.x' } },
      { header: { name: 'forged/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.user.ok': 'v' } } },
      { header: { name: '.wh..wh.plnk/', type: 'directory' } },
    ]);
    await applyLayer(streamOf(tar), dst, { mode: 'snapshot' });
    for (const w of ['gone', 'o/x']) {
      const st = fs.lstatSync(path.join(dst, w));
      expect(st.isCharacterDevice() && st.rdev === 0).toBe(true);
    }
    expect(lgetxattr(path.join(dst, 'o'), 'trusted.overlay.opaque')?.toString()).toBe('y');
    expect(llistxattr(path.join(dst, 'forged'))).toEqual(['user.ok']);
    expect(fs.existsSync(path.join(dst, '.wh..wh.plnk'))).toBe(false);
  });

  it('hardlinks may point at files from lower layers (merged) and at symlinks, not at dirs or missing files', async () => {
    const dst = temps.make('la-hl');
    fs.writeFileSync(path.join(dst, 'lowerfile'), 'l');
    fs.mkdirSync(path.join(dst, 'adir'));
    await applyLayer(
      streamOf(
        await makeTar([
          { header: { name: 'hl', type: 'link', linkname: 'lowerfile' } },
          { header: { name: 'sym', type: 'symlink', linkname: '/nowhere' } },
          { header: { name: 'hl-sym', type: 'link', linkname: './sym' } },
        ]),
      ),
      dst,
      { mode: 'merged' },
    );
    expect(fs.statSync(path.join(dst, 'hl')).ino).toBe(fs.statSync(path.join(dst, 'lowerfile')).ino);
    expect(fs.readlinkSync(path.join(dst, 'hl-sym'))).toBe('/nowhere');
    await expect(
      applyLayer(streamOf(await makeTar([{ header: { name: 'x', type: 'link', linkname: 'adir' } }])), dst, { mode: 'merged' }),
    ).rejects.toThrow(/entry "x": hardlink target "adir" is a directory/);
    await expect(
      applyLayer(streamOf(await makeTar([{ header: { name: 'x', type: 'link', linkname: 'missing' } }])), dst, { mode: 'merged' }),
    ).rejects.toThrow(/does not exist/);
  });

  it('applies a "./" root entry to the target dir itself', async () => {
    const dst = temps.make('la-root');
    await applyLayer(
      streamOf(await makeTar([{ header: { name: './', type: 'directory', mode: 0o711, mtime: new Date(1_234_000_000) } }])),
      dst,
      { mode: 'merged' },
    );
    const st = fs.statSync(dst);
    expect(st.mode & 0o7777).toBe(0o711);
    expect(st.mtimeMs).toBe(1_234_000_000);
  });

  it('an existing whiteout device in a snapshot is replaced by a later real entry', async () => {
    const dst = temps.make('la-snap2');
    mknod(path.join(dst, 'x'), S_IFCHR, 0, 0);
    await applyLayer(streamOf(await makeTar([{ header: { name: 'x' }, body: 'real' }])), dst, { mode: 'snapshot' });
    expect(fs.readFileSync(path.join(dst, 'x'), 'utf8')).toBe('real');
  });
});
