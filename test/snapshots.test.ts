// Snapshots: layers unpacked once by chain id, usable as overlay lowerdirs,
// shared between images, verified against diff_ids, pruned when unused.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Store } from '../image/store.js';
import { writeLayer } from '../image/layer-writer.js';
import { writeImage } from '../image/images.js';
import { chainIds, ensureSnapshots, pruneSnapshots, snapshotsDir } from '../image/snapshots.js';
import { MEDIA_TYPES } from '../image/mediatypes.js';
import { mknod, S_IFCHR } from '../image/native.js';
import { sha256, type Digest } from '../image/digest.js';
import type { ImageConfig } from '../image/schemas.js';
import { TempDirs } from './helpers.js';

const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

async function layerFrom(store: Store, dir: string, mode: 'dir' | 'overlay-upper') {
  const w = await store.blobWriter();
  const r = await writeLayer(dir, { mode, lowerDirs: [] }, w.stream);
  await w.commit({ digest: r.digest });
  return r;
}

async function twoLayerImage(store: Store, tag: string, diffIdOverride?: Digest) {
  const base = dirs.make('base');
  mkdirSync(path.join(base, 'etc'));
  writeFileSync(path.join(base, 'etc', 'os-release'), 'ID=test\n');
  writeFileSync(path.join(base, 'etc', 'keep'), 'keep\n');
  writeFileSync(path.join(base, 'hello'), 'v1\n');
  const upper = dirs.make('upper');
  mkdirSync(path.join(upper, 'etc'));
  mknod(path.join(upper, 'etc', 'os-release'), S_IFCHR | 0o000, 0, 0); // overlay whiteout
  writeFileSync(path.join(upper, 'hello'), 'v2\n');
  const l1 = await layerFrom(store, base, 'dir');
  const l2 = await layerFrom(store, upper, 'overlay-upper');
  const config = {
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [l1.diffId, diffIdOverride ?? l2.diffId] },
    history: [{ created_by: 'base' }, { created_by: 'change' }],
  } as ImageConfig;
  return writeImage(
    store,
    { config, layers: [l1, l2].map((l) => ({ mediaType: MEDIA_TYPES.OCI_LAYER_GZIP, digest: l.digest, size: l.size })) },
    [tag],
  );
}

describe('snapshots', () => {
  it('chain ids follow the OCI definition', () => {
    const a = sha256('a');
    const b = sha256('b');
    expect(chainIds([a, b])).toEqual([a, sha256(`${a} ${b}`)]);
  });

  it('unpacks each layer once and stacks into the right merged view', async () => {
    const store = await Store.open(dirs.make('root'));
    const img = await twoLayerImage(store, 'two');
    const snaps = await ensureSnapshots(store, img);
    expect(snaps).toHaveLength(2);
    // The whiteout survives in the top snapshot as an overlay whiteout (char 0:0).
    const wh = execFileSync('stat', ['-c', '%F %t:%T', path.join(snaps[1]!, 'etc', 'os-release')], { encoding: 'utf8' }).trim();
    expect(wh).toBe('character special file 0:0');
    // Read-only overlay of the two snapshots = the image's filesystem.
    const mnt = dirs.make('mnt');
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${[...snaps].reverse().join(':')}`, mnt]);
    try {
      expect(readFileSync(path.join(mnt, 'hello'), 'utf8')).toBe('v2\n');
      expect(existsSync(path.join(mnt, 'etc', 'os-release'))).toBe(false);
      expect(readFileSync(path.join(mnt, 'etc', 'keep'), 'utf8')).toBe('keep\n');
    } finally {
      execFileSync('umount', [mnt]);
    }
    // A second call reuses them (same dirs, untouched).
    const mtime = readdirSync(snapshotsDir(store)).sort();
    expect(await ensureSnapshots(store, img)).toEqual(snaps);
    expect(readdirSync(snapshotsDir(store)).sort()).toEqual(mtime);
  });

  it('two processes asking for the same snapshot at once unpack it once', async () => {
    const root = dirs.make('root');
    const store = await Store.open(root);
    await twoLayerImage(store, 'shared');
    const script = `
      const { Store } = await import(${JSON.stringify(path.resolve('dist/image/store.js'))});
      const { resolveImage } = await import(${JSON.stringify(path.resolve('dist/image/images.js'))});
      const { ensureSnapshots } = await import(${JSON.stringify(path.resolve('dist/image/snapshots.js'))});
      const s = await Store.open(process.argv[1]);
      console.log(JSON.stringify(await ensureSnapshots(s, await resolveImage(s, 'shared'))));`;
    const run = () =>
      new Promise<{ code: number; out: string }>((resolve) => {
        const p = spawn('node', ['--input-type=module', '-e', script, root], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('exit', (code) => resolve({ code: code ?? 1, out }));
      });
    const [a, b, c] = await Promise.all([run(), run(), run()]);
    expect([a.code, b.code, c.code]).toEqual([0, 0, 0]);
    expect(a.out).toBe(b.out);
    expect(a.out).toBe(c.out);
    expect(readdirSync(snapshotsDir(store)).filter((n) => !n.startsWith('tmp-'))).toHaveLength(2);
    expect(readdirSync(snapshotsDir(store)).filter((n) => n.startsWith('tmp-'))).toEqual([]);
  });

  it('refuses a layer whose content does not match the config diff_id, leaving no snapshot', async () => {
    const store = await Store.open(dirs.make('root'));
    const bogus = sha256('not the real diff id');
    const img = await twoLayerImage(store, 'liar', bogus);
    await expect(ensureSnapshots(store, img)).rejects.toThrow(new RegExp(`image config says diff_id ${bogus}`));
    const left = readdirSync(snapshotsDir(store));
    expect(left.filter((n) => n.startsWith('tmp-'))).toEqual([]);
    expect(left).toHaveLength(1); // only the good bottom layer
  });

  it('prunes snapshots that no image needs', async () => {
    const store = await Store.open(dirs.make('root'));
    const img = await twoLayerImage(store, 'gone');
    await ensureSnapshots(store, img);
    expect(readdirSync(snapshotsDir(store))).toHaveLength(2);
    expect((await pruneSnapshots(store)).removed).toBe(0);
    await store.updateIndex((idx) => {
      idx.tags = {};
      idx.images = {};
    });
    expect((await pruneSnapshots(store)).removed).toBe(2);
    expect(readdirSync(snapshotsDir(store))).toEqual([]);
  });
});
