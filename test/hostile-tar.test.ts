// Hostile layers, built in the test with tar-stream. Each case applies into
// base/target next to a sentinel dir base/outside that the hostile paths aim at
// (by absolute path or by ../ relative to target). After every case we check,
// through the filesystem, that base/outside is byte-for-byte unchanged and that
// nothing new appeared in base besides target.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { applyLayer, LayerError, type ApplyOptions } from '../image/layer-applier.js';
import { llistxattr } from '../image/native.js';
import { secureJoin } from '../image/safepath.js';
import { makeTar, TempDirs } from './helpers.js';

const temps = new TempDirs();
afterAll(() => temps.cleanup());

/** Rewrites the typeflag of the header at `offset` and fixes its checksum. */
function patchTypeflag(tar: Buffer, offset: number, flag: string): Buffer {
  const out = Buffer.from(tar);
  out[offset + 156] = flag.charCodeAt(0);
  out.fill(0x20, offset + 148, offset + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[offset + i]!;
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, offset + 148, 'latin1');
  return out;
}

function streamOf(buf: Buffer): PassThrough {
  const p = new PassThrough();
  p.end(buf);
  return p;
}

/** Everything observable about a tree: names, types, modes, owners, sizes, contents, link targets, nlink, mtimes, xattrs. */
function fingerprint(root: string): string {
  const h = createHash('sha256');
  const walk = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = path.join(rel, n);
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      h.update(`${r}\0${st.mode}\0${st.uid}:${st.gid}\0${st.size}\0${st.nlink}\0${st.mtimeMs}\0${st.ino}\0`);
      h.update(llistxattr(p).sort().join(','));
      if (st.isFile()) h.update(fs.readFileSync(p));
      if (st.isSymbolicLink()) h.update(fs.readlinkSync(p));
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return h.digest('hex');
}

interface Setup {
  base: string;
  target: string;
  outside: string;
  /** target-relative path that climbs to base/outside: "../outside" */
  up: string;
}

function setup(): Setup {
  const base = temps.make('hostile');
  const target = path.join(base, 'target');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(target);
  fs.mkdirSync(path.join(outside, 'subdir'), { recursive: true });
  fs.writeFileSync(path.join(outside, 'victim'), 'original');
  fs.writeFileSync(path.join(outside, 'subdir/inner'), 'inner');
  fs.utimesSync(path.join(outside, 'victim'), 1_000_000, 1_000_000);
  fs.utimesSync(path.join(outside, 'subdir'), 1_000_000, 1_000_000);
  fs.utimesSync(outside, 1_000_000, 1_000_000);
  return { base, target, outside, up: path.relative(target, outside) };
}

/**
 * Applies the layer and checks containment. Returns the error (if any) so the
 * case can assert on it; a non-LayerError failure fails the test.
 */
async function run(
  s: Setup,
  tar: Buffer,
  opts: ApplyOptions = { mode: 'merged' },
): Promise<LayerError | undefined> {
  const before = fingerprint(s.outside);
  const baseBefore = fs.readdirSync(s.base).sort();
  const etcPasswd = fs.statSync('/etc/passwd');
  let error: LayerError | undefined;
  try {
    await applyLayer(streamOf(tar), s.target, opts);
  } catch (err) {
    if (!(err instanceof LayerError)) throw err;
    error = err;
  }
  expect(fingerprint(s.outside)).toBe(before);
  expect(fs.readFileSync(path.join(s.outside, 'victim'), 'utf8')).toBe('original');
  expect(fs.readdirSync(s.base).sort()).toEqual(baseBefore);
  const after = fs.statSync('/etc/passwd');
  expect([after.nlink, after.mtimeMs, after.size]).toEqual([etcPasswd.nlink, etcPasswd.mtimeMs, etcPasswd.size]);
  return error;
}

async function expectRejected(s: Setup, tar: Buffer, message: RegExp, opts?: ApplyOptions): Promise<void> {
  const err = await run(s, tar, opts);
  expect(err, 'expected a LayerError').toBeInstanceOf(LayerError);
  expect(err!.message).toMatch(message);
}

describe('hostile layers', () => {
  it('../escape is rejected', async () => {
    const s = setup();
    await expectRejected(s, await makeTar([{ header: { name: '../escape' }, body: 'x' }]), /entry "\.\.\/escape": .*climbs above the root/);
    await expectRejected(s, await makeTar([{ header: { name: `${s.up}/victim` }, body: 'pwned' }]), /climbs above the root/);
  });

  it('a/../../escape is rejected', async () => {
    const s = setup();
    await expectRejected(s, await makeTar([{ header: { name: 'a/../../escape' }, body: 'x' }]), /entry "a\/\.\.\/\.\.\/escape"/);
  });

  it('absolute paths land inside the target', async () => {
    const s = setup();
    expect(await run(s, await makeTar([{ header: { name: `${s.outside}/victim` }, body: 'pwned' }]))).toBeUndefined();
    expect(fs.readFileSync(path.join(s.target, s.outside, 'victim'), 'utf8')).toBe('pwned');
  });

  it('symlink to / then writing through it stays inside', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'link', type: 'symlink', linkname: '/' } },
      { header: { name: `link${s.outside}/victim` }, body: 'pwned' },
      { header: { name: `link${s.outside}/newdir/`, type: 'directory' } },
    ]);
    expect(await run(s, tar)).toBeUndefined();
    expect(fs.readFileSync(path.join(s.target, s.outside, 'victim'), 'utf8')).toBe('pwned');
    expect(fs.readlinkSync(path.join(s.target, 'link'))).toBe('/');
  });

  it('relative symlinks climbing out (link -> ../outside, link -> ../../..) resolve inside', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'up', type: 'symlink', linkname: s.up } },
      { header: { name: 'up/victim' }, body: 'pwned' },
      { header: { name: 'deep/link', type: 'symlink', linkname: '../../../../..' } },
      { header: { name: `deep/link/${s.outside.slice(1)}/subdir/inner` }, body: 'pwned' },
    ]);
    expect(await run(s, tar)).toBeUndefined();
    // `..` is clamped at the target: "../outside" from the target root is target/outside.
    expect(fs.readFileSync(path.join(s.target, 'outside/victim'), 'utf8')).toBe('pwned');
    expect(fs.readFileSync(path.join(s.target, s.outside, 'subdir/inner'), 'utf8')).toBe('pwned');
  });

  it('symlink chains (a -> b, b -> outside) resolve inside', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'a', type: 'symlink', linkname: 'b' } },
      { header: { name: 'b', type: 'symlink', linkname: s.outside } },
      { header: { name: 'c', type: 'symlink', linkname: 'a/subdir' } },
      { header: { name: 'a/victim' }, body: 'pwned' },
      { header: { name: 'c/inner' }, body: 'pwned' },
    ]);
    expect(await run(s, tar)).toBeUndefined();
    expect(fs.readFileSync(path.join(s.target, s.outside, 'victim'), 'utf8')).toBe('pwned');
    expect(fs.readFileSync(path.join(s.target, s.outside, 'subdir/inner'), 'utf8')).toBe('pwned');
  });

  it('symlink loops are an error, not a hang', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'a', type: 'symlink', linkname: 'b' } },
      { header: { name: 'b', type: 'symlink', linkname: 'a' } },
      { header: { name: 'a/x' }, body: 'x' },
    ]);
    await expectRejected(s, tar, /entry "a\/x": .*too many levels of symbolic links/);
  });

  it('hardlink to /etc/passwd is rejected (resolved inside the target, where it does not exist)', async () => {
    const s = setup();
    await expectRejected(
      s,
      await makeTar([{ header: { name: 'pw', type: 'link', linkname: '/etc/passwd' } }]),
      /entry "pw": hardlink target "\/etc\/passwd" does not exist/,
    );
    await expectRejected(
      s,
      await makeTar([{ header: { name: 'v', type: 'link', linkname: `${s.outside}/victim` } }]),
      /does not exist/,
    );
  });

  it('hardlink to ../outside is rejected', async () => {
    const s = setup();
    await expectRejected(
      s,
      await makeTar([{ header: { name: 'v', type: 'link', linkname: `${s.up}/victim` } }]),
      /entry "v": hardlink target ".*" is outside the layer root/,
    );
  });

  it('hardlink through a planted symlink is rejected', async () => {
    const s = setup();
    await expectRejected(
      s,
      await makeTar([
        { header: { name: 'ln', type: 'symlink', linkname: s.outside } },
        { header: { name: 'rel', type: 'symlink', linkname: s.up } },
        { header: { name: 'h', type: 'link', linkname: 'ln/victim' } },
      ]),
      /entry "h": hardlink target "ln\/victim" does not exist/,
    );
    await expectRejected(
      setup(),
      await makeTar([
        { header: { name: 'rel', type: 'symlink', linkname: '../outside' } },
        { header: { name: 'h', type: 'link', linkname: 'rel/victim' } },
      ]),
      /does not exist/,
    );
  });

  it('"." as a symlink or a file is rejected', async () => {
    const s = setup();
    await expectRejected(s, await makeTar([{ header: { name: '.', type: 'symlink', linkname: s.outside } }]), /root of the layer must be a directory/);
    await expectRejected(s, await makeTar([{ header: { name: '.' }, body: 'x' }]), /root of the layer must be a directory/);
    await expectRejected(s, await makeTar([{ header: { name: './', type: 'fifo' } }]), /root of the layer must be a directory/);
    await expectRejected(s, await makeTar([{ header: { name: '/', type: 'symlink', linkname: '/' } }]), /root of the layer/);
    expect(fs.lstatSync(s.target).isDirectory()).toBe(true);
  });

  it('whiteouts that would delete the root or escape are rejected', async () => {
    const s = setup();
    await expectRejected(s, await makeTar([{ header: { name: '.wh...' } }]), /invalid whiteout target "\.\."/);
    await expectRejected(s, await makeTar([{ header: { name: '.wh..' } }]), /invalid whiteout target "\."/);
    await expectRejected(s, await makeTar([{ header: { name: 'sub/.wh.' } }]), /invalid whiteout target ""/);
    await expectRejected(s, await makeTar([{ header: { name: '../.wh.outside' } }]), /climbs above the root/);
    await expectRejected(s, await makeTar([{ header: { name: `${s.up}/.wh.victim` } }]), /climbs above the root/);
    expect(fs.existsSync(s.target)).toBe(true);
  });

  it('whiteouts through planted symlinks stay inside (merged and snapshot)', async () => {
    for (const mode of ['merged', 'snapshot'] as const) {
      const s = setup();
      const tar = await makeTar([
        { header: { name: 'rel', type: 'symlink', linkname: s.up } },
        { header: { name: 'abs', type: 'symlink', linkname: s.outside } },
        { header: { name: 'rel/.wh.victim' } },
        { header: { name: 'abs/.wh.victim' } },
        { header: { name: 'abs/.wh.subdir' } },
        { header: { name: 'rel/.wh..wh..opq' } },
        { header: { name: 'abs/.wh..wh..opq' } },
      ]);
      expect(await run(s, tar, { mode })).toBeUndefined();
    }
  });

  it('a directory entry ".." is rejected', async () => {
    const s = setup();
    await expectRejected(s, await makeTar([{ header: { name: '../', type: 'directory', mode: 0o777 } }]), /entry "\.\.\/"/);
    await expectRejected(s, await makeTar([{ header: { name: 'a/../..', type: 'directory', mode: 0o777 } }]), /climbs above/);
  });

  it('a file replacing a planted symlink replaces the link instead of writing through it', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'evil', type: 'symlink', linkname: `${s.outside}/victim` } },
      { header: { name: 'evil2', type: 'symlink', linkname: s.up } },
      { header: { name: 'evil3', type: 'symlink', linkname: s.outside } },
      { header: { name: 'evil' }, body: 'pwned' },
      { header: { name: 'evil2/', type: 'directory', mode: 0o777 } },
      { header: { name: 'evil3', type: 'character-device', devmajor: 1, devminor: 3 } },
      { header: { name: 'evil2/victim' }, body: 'pwned' },
    ]);
    expect(await run(s, tar)).toBeUndefined();
    expect(fs.lstatSync(path.join(s.target, 'evil')).isFile()).toBe(true);
    expect(fs.readFileSync(path.join(s.target, 'evil'), 'utf8')).toBe('pwned');
    expect(fs.lstatSync(path.join(s.target, 'evil2')).isDirectory()).toBe(true);
    expect(fs.lstatSync(path.join(s.target, 'evil3')).isCharacterDevice()).toBe(true);
  });

  it('a hardlink to a planted symlink links the symlink itself; writing it later replaces it', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'ln', type: 'symlink', linkname: `${s.outside}/victim` } },
      { header: { name: 'h', type: 'link', linkname: 'ln' } },
      { header: { name: 'h' }, body: 'pwned' },
    ]);
    expect(await run(s, tar)).toBeUndefined();
    expect(fs.readlinkSync(path.join(s.target, 'ln'))).toBe(`${s.outside}/victim`);
  });

  it('rewriting a hardlinked name replaces the link; the other name keeps its content', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'orig' }, body: 'original' },
      { header: { name: 'h', type: 'link', linkname: 'orig' } },
      { header: { name: 'h' }, body: 'pwned' },
    ]);
    expect(await run(s, tar)).toBeUndefined();
    expect(fs.readFileSync(path.join(s.target, 'orig'), 'utf8')).toBe('original');
    expect(fs.readFileSync(path.join(s.target, 'h'), 'utf8')).toBe('pwned');
  });

  it('global PAX headers cannot rename entries', async () => {
    const s = setup();
    const pack = await makeTar([{ header: { name: 'inside' }, body: 'x' }]);
    // A global header ('g') whose path points outside, in front of the archive.
    const g = await makeTar([{ header: { name: 'g', pax: { path: `${s.up}/victim` } }, body: '' }]);
    const withGlobal = Buffer.concat([patchTypeflag(g.subarray(0, 512), 0, 'g'), g.subarray(512, 1024), pack]);
    expect(await run(s, withGlobal)).toBeUndefined();
    expect(fs.readFileSync(path.join(s.target, 'inside'), 'utf8')).toBe('x');
  });

  it('truncated archives are rejected, wherever they are cut', async () => {
    const s = setup();
    const tar = await makeTar([
      { header: { name: 'f1' }, body: 'a'.repeat(3000) },
      { header: { name: 'f2' }, body: 'b'.repeat(10) },
    ]);
    for (const cut of [100, 512, 700, 3584, 3800, tar.length - 1024]) {
      await expectRejected(s, tar.subarray(0, cut), /truncated archive/);
      await expectRejected(s, zlib.gzipSync(tar.subarray(0, cut)), /truncated archive/);
    }
    // A gzip stream cut short is an error too, not a hang.
    const gz = zlib.gzipSync(tar);
    for (const cut of [10, 40, gz.length - 4]) await expectRejected(s, gz.subarray(0, cut), /gzip|truncated/);
  });

  it('gzip garbage and corrupt headers are rejected', async () => {
    const s = setup();
    const garbage = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), createHash('sha512').update('x').digest()]);
    await expectRejected(s, garbage, /corrupt gzip stream/);
    const tar = await makeTar([{ header: { name: 'f' }, body: 'x' }]);
    const bad = Buffer.from(tar);
    bad[10] ^= 0xff; // breaks the checksum of the first header
    await expectRejected(s, Buffer.concat([Buffer.alloc(512, 1), tar]), /neither gzip-compressed nor a tar/);
    await expectRejected(s, zlib.gzipSync(bad), /checksum/);
  });

  it('unsupported entry types and NUL bytes in names are rejected', async () => {
    const s = setup();
    const tar = await makeTar([{ header: { name: 'sparse' }, body: 'x' }]);
    await expectRejected(s, patchTypeflag(tar, 0, 'S'), /entry "sparse": unsupported tar entry type "S"/);
    await expectRejected(s, patchTypeflag(tar, 0, 'V'), /unsupported tar entry type/);
    await expectRejected(s, await makeTar([{ header: { name: 'ok', pax: { path: 'a\0b' } }, body: 'x' }]), /NUL/);
    await expectRejected(
      s,
      await makeTar([{ header: { name: 'ok', pax: { 'GNU.sparse.major': '1' } }, body: 'x' }]),
      /GNU sparse files are not supported/,
    );
  });

  it('oversized extended headers are rejected instead of buffered', async () => {
    const s = setup();
    await expectRejected(
      s,
      await makeTar([{ header: { name: 'f', pax: { comment: 'x'.repeat(2 << 20) } }, body: 'x' }]),
      /extended header of \d+ bytes is too large/,
    );
  });

  it('writing beneath a file is an error', async () => {
    const s = setup();
    await expectRejected(
      s,
      await makeTar([
        { header: { name: 'f' }, body: 'x' },
        { header: { name: 'f/x' }, body: 'y' },
      ]),
      /entry "f\/x": .*not a directory/,
    );
  });

  it('layer-supplied trusted.overlay.* xattrs cannot forge opaque dirs in a snapshot', async () => {
    const s = setup();
    await run(
      s,
      await makeTar([{ header: { name: 'd/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } } }]),
      { mode: 'snapshot' },
    );
    expect(llistxattr(path.join(s.target, 'd'))).toEqual([]);
  });
});

describe('secureJoin', () => {
  it('scopes symlinks to the root', () => {
    const s = setup();
    fs.symlinkSync('/', path.join(s.target, 'root'));
    fs.symlinkSync('../../..', path.join(s.target, 'up'));
    fs.mkdirSync(path.join(s.target, 'dir'));
    fs.symlinkSync('../dir', path.join(s.target, 'dir/self'));
    const root = fs.realpathSync(s.target);
    expect(secureJoin(root, 'root/etc/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(secureJoin(root, 'up/x')).toBe(path.join(root, 'x'));
    expect(secureJoin(root, '/../../x')).toBe(path.join(root, 'x'));
    expect(secureJoin(root, 'dir/self/self/f')).toBe(path.join(root, 'dir/f'));
    expect(secureJoin(root, 'root')).toBe(path.join(root, 'root'));
    expect(secureJoin(root, 'root', { followFinal: true })).toBe(root);
    expect(secureJoin(root, '')).toBe(root);
  });
});
