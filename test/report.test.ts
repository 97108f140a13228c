// The image report: sizes per layer paired with history, and bytes wasted by
// files that later layers overwrite or delete, checked to the byte on images
// made with the real layer writer (overlay-style whiteouts and opaque dirs in
// upper dirs, as a RUN step leaves them) and with `tsbuild import`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sha256, type Digest } from '../image/digest.js';
import { resolveImage, writeImage, type StoredImage } from '../image/images.js';
import { tarDirectory, writeLayer } from '../image/layer-writer.js';
import { MEDIA_TYPES } from '../image/mediatypes.js';
import { lsetxattr, mknod, S_IFCHR } from '../image/native.js';
import { imageReport, renderReport, type ImageReport } from '../image/report.js';
import type { Descriptor, ImageConfig } from '../image/schemas.js';
import { Store } from '../image/store.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { gzipSync } from 'node:zlib';
import { makeTar, TempDirs } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

function file(root: string, rel: string, size: number, fill = 'x'): void {
  const p = path.join(root, rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, Buffer.alloc(size, fill));
}
function dir(root: string, rel: string): void {
  mkdirSync(path.join(root, rel), { recursive: true });
}
/** An overlayfs whiteout in an upper dir: a char device 0:0. */
function whiteout(root: string, rel: string): void {
  mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  mknod(path.join(root, rel), S_IFCHR | 0o000, 0, 0);
}
function opaque(root: string, rel: string): void {
  dir(root, rel);
  lsetxattr(path.join(root, rel), 'trusted.overlay.opaque', Buffer.from('y'));
}

interface Made {
  desc: Descriptor;
  diffId: Digest;
  tarSize: number;
}

async function layer(store: Store, d: string, mode: 'dir' | 'overlay-upper', lowerDirs: string[] = []): Promise<Made> {
  const w = await store.blobWriter();
  const r = await writeLayer(d, { mode, lowerDirs, sourceDateEpoch: 1704067200 }, w.stream);
  await w.commit({ digest: r.digest, size: r.size });
  return { desc: { mediaType: MEDIA_TYPES.OCI_LAYER_GZIP, digest: r.digest, size: r.size }, diffId: r.diffId, tarSize: r.uncompressedSize };
}

async function image(store: Store, layers: Made[], history: ImageConfig['history'], tag: string): Promise<StoredImage> {
  const config: ImageConfig = {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history,
  };
  return store.withWriteSession(() => writeImage(store, { config, layers: layers.map((l) => l.desc) }, [tag]));
}

describe('imageReport on a three-layer image that overwrites and deletes', () => {
  let store: Store;
  let img: StoredImage;
  let made: Made[];
  let report: ImageReport;

  beforeAll(async () => {
    const work = dirs.make('report');
    store = await Store.open(path.join(work, 'root'));
    // Layer 1: a plain directory.
    const l1 = path.join(work, 'l1');
    file(l1, 'a/big.bin', 10_000);
    file(l1, 'a/keep.txt', 100);
    file(l1, 'b/one', 1000);
    file(l1, 'b/two', 2000);
    file(l1, 'b/sub/three', 3000);
    file(l1, 'c/f', 500);
    file(l1, 'd.txt', 700);
    file(l1, 'hl1', 400);
    linkSync(path.join(l1, 'hl1'), path.join(l1, 'hl2'));
    file(l1, 'e', 50);
    file(l1, 'keep/forever', 77);
    symlinkSync('a', path.join(l1, 'sym'));
    // Layer 2: what overlayfs leaves in the upper dir after
    //   echo > a/big.bin (20000 B); rm -rf b && mkdir b && echo > b/new; rm d.txt;
    //   rm -rf c && echo > c (300 B); rm hl1; rm e && mkdir e && echo > e/x
    const l2 = path.join(work, 'l2');
    file(l2, 'a/big.bin', 20_000, 'y');
    opaque(l2, 'b');
    file(l2, 'b/new', 10);
    whiteout(l2, 'd.txt');
    file(l2, 'c', 300);
    whiteout(l2, 'hl1');
    opaque(l2, 'e'); // a new dir over a deleted file: overlay marks it opaque too
    file(l2, 'e/x', 60);
    // Layer 3: rm -rf a; rm hl2; echo > z
    const l3 = path.join(work, 'l3');
    whiteout(l3, 'a');
    whiteout(l3, 'hl2');
    file(l3, 'z', 1234);

    made = [await layer(store, l1, 'dir'), await layer(store, l2, 'overlay-upper', [l1]), await layer(store, l3, 'overlay-upper', [l2, l1])];
    img = await image(
      store,
      made,
      [
        { created_by: 'tsbuild import', comment: 'base' },
        { created_by: 'ENV A=1', empty_layer: true },
        { created_by: 'RUN /bin/sh -c change things' },
        { created_by: '/bin/sh -c #(nop)  CMD ["sh"]', empty_layer: true },
        { created_by: 'RUN /bin/sh -c rm -rf /a' },
      ],
      'report:test',
    );
    report = await imageReport(store, img);
  });

  it('pairs layers with the history steps that made them, skipping empty_layer entries', () => {
    expect(report.layers.map((l) => l.createdBy)).toEqual(['tsbuild import', 'RUN /bin/sh -c change things', 'RUN /bin/sh -c rm -rf /a']);
    expect(report.layers[0]!.comment).toBe('base');
    expect(report.tags).toEqual(['docker.io/library/report:test']);
    expect(report.id).toBe(img.id);
  });

  it('reports sizes: content, uncompressed tar, compressed blob', () => {
    expect(report.layers.map((l) => l.size)).toEqual([17_827, 20_370, 1234]);
    // hl2 is a hardlink entry: its bytes are counted once, with hl1.
    expect(report.layers.map((l) => l.files)).toEqual([10, 4, 1]);
    expect(report.layers.map((l) => l.tarSize)).toEqual(made.map((m) => m.tarSize));
    expect(report.layers.map((l) => l.compressedSize)).toEqual(made.map((m) => m.desc.size));
    expect(report.layers.map((l) => l.deletions)).toEqual([0, 3, 2]); // b opaque, d.txt, hl1; a, hl2 (e's opaque is dropped: e was a file)
    expect(report.total).toMatchObject({
      layers: 3,
      size: 17_827 + 20_370 + 1234,
      compressedSize: made.reduce((s, m) => s + m.desc.size, 0),
      tarSize: made.reduce((s, m) => s + m.tarSize, 0),
    });
  });

  it('counts bytes hidden by overwrites, whiteouts, opaque dirs and replaced parents, to the byte', () => {
    // Layer 1: big.bin 10000 (overwritten), b/* 6000 (opaque), d.txt 700 (deleted),
    // c/f 500 (c became a file), e 50 (became a dir), a/keep.txt 100 (a deleted in 3),
    // hl1/hl2 400 (only once both paths are gone, in layer 3). keep/forever stays.
    expect(report.layers[0]!.wasted).toBe(10_000 + 6000 + 700 + 500 + 50 + 100 + 400);
    expect(report.layers[0]!.wastedFiles).toBe(9);
    // Layer 2: its big.bin (20000), deleted with a/ in layer 3.
    expect(report.layers[1]!.wasted).toBe(20_000);
    expect(report.layers[2]!.wasted).toBe(0);
    expect(report.layers.map((l) => l.hides)).toEqual([0, 10_000 + 6000 + 700 + 500 + 50, 20_000 + 100 + 400]);
    expect(report.total.wasted).toBe(37_750);
    expect(report.total.wastedFiles).toBe(10);
    // What is left: keep/forever 77, b/new 10, c 300, e/x 60, z 1234.
    expect(report.total.finalSize).toBe(77 + 10 + 300 + 60 + 1234);
    expect(report.total.wastedRatio).toBeCloseTo(37_750 / 39_431, 10);
  });

  it('lists the largest wasted files with who hid them and how', () => {
    expect(report.topWasted.slice(0, 6)).toEqual([
      { path: '/a/big.bin', size: 20_000, layer: 2, hiddenBy: 3, how: 'deleted' },
      { path: '/a/big.bin', size: 10_000, layer: 1, hiddenBy: 2, how: 'overwritten' },
      { path: '/b/sub/three', size: 3000, layer: 1, hiddenBy: 2, how: 'opaque-dir' },
      { path: '/b/two', size: 2000, layer: 1, hiddenBy: 2, how: 'opaque-dir' },
      { path: '/b/one', size: 1000, layer: 1, hiddenBy: 2, how: 'opaque-dir' },
      { path: '/d.txt', size: 700, layer: 1, hiddenBy: 2, how: 'deleted' },
    ]);
    expect(report.topWasted).toContainEqual({ path: '/c/f', size: 500, layer: 1, hiddenBy: 2, how: 'parent-replaced' });
    expect(report.topWasted).toContainEqual({ path: '/e', size: 50, layer: 1, hiddenBy: 2, how: 'overwritten' });
    expect(report.topWasted).toContainEqual({ path: '/hl2', size: 400, layer: 1, hiddenBy: 3, how: 'deleted' });
    expect(report.topWasted).toHaveLength(10);
  });

  it('limits the wasted-file list', async () => {
    const r = await imageReport(store, img, { topWasted: 2 });
    expect(r.topWasted.map((f) => f.size)).toEqual([20_000, 10_000]);
    expect(r.total.wasted).toBe(37_750);
    expect((await imageReport(store, img, { topWasted: 0 })).topWasted).toEqual([]);
  });

  it('renders JSON that round-trips', () => {
    expect(JSON.parse(renderReport(report, 'json'))).toEqual(report);
  });

  it('renders a table for the terminal', () => {
    const text = renderReport(report, 'text', { width: 80 });
    const lines = text.split('\n');
    expect(lines[0]).toBe(`Image report:test  id ${img.id.slice(7, 19)}  3 layers`);
    expect(lines[1]).toMatch(/^Size 39\.4kB in layers \([\d.]+k?B compressed\), 1\.68kB visible$/);
    expect(lines[2]).toBe('Wasted 37.8kB (95.7%) in 10 files overwritten or deleted later');
    expect(lines[4]).toMatch(/^#\s+SIZE\s+COMPRESSED\s+WASTED\s+FILES\s+CREATED BY$/);
    expect(lines[5]).toMatch(/^1\s+17\.8kB\s+\S+\s+17\.8kB\s+10\s+tsbuild import$/);
    expect(lines[6]).toMatch(/^2\s+20\.4kB\s+\S+\s+20kB\s+4\s+RUN \/bin\/sh -c change things$/);
    expect(lines[7]).toMatch(/^3\s+1\.23kB\s+\S+\s+-\s+1\s+RUN \/bin\/sh -c rm -rf \/a$/);
    expect(text).toContain('Largest wasted files:');
    expect(text).toMatch(/ 20kB {2}layer 2 {2}deleted in layer 3 +\/a\/big\.bin\n/);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  });

  it('shortens long steps to the width, unless noTrunc', () => {
    const long = { ...report, layers: report.layers.map((l) => ({ ...l, createdBy: `RUN ${'apt-get install -y thing '.repeat(10)}` })) };
    const short = renderReport(long, 'text', { width: 60 });
    // Table rows and wasted files fit; the summary lines above them are not cut.
    const rows = short.split('\n').filter((l) => /^(\d|  )/.test(l));
    expect(rows).toHaveLength(3 + 10);
    for (const l of rows) expect(l.length).toBeLessThanOrEqual(60);
    expect(short).toContain('…');
    expect(renderReport(long, 'text', { width: 60, noTrunc: true })).toContain(`RUN ${'apt-get install -y thing '.repeat(10).trim()}`);
  });
});

describe('imageReport edge cases', () => {
  it('reads uncompressed layers and images without history', async () => {
    const work = dirs.make('report-plain');
    const store = await Store.open(path.join(work, 'root'));
    const d = path.join(work, 'l');
    file(d, 'x', 4096);
    file(d, 'y/z', 1);
    const info = await store.withWriteSession(() => store.ingest(tarDirectory(d, { mode: 'dir' })));
    const img = await store.withWriteSession(() =>
      writeImage(store, {
        config: { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [info.digest] } },
        layers: [{ mediaType: MEDIA_TYPES.OCI_LAYER, digest: info.digest, size: info.size }],
      }),
    );
    const r = await imageReport(store, img);
    expect(r.layers).toHaveLength(1);
    expect(r.layers[0]).toMatchObject({ createdBy: '', size: 4097, files: 2, wasted: 0, tarSize: info.size, compressedSize: info.size });
    expect(r.tags).toEqual([]);
    expect(renderReport(r, 'text', { width: 80 })).toMatch(/^1\s+4\.1kB\s+[\d.]+kB\s+-\s+2\s+<missing>$/m);
  });

  it('a file replaced in the same layer and a dir restated in a later layer', async () => {
    const work = dirs.make('report-restate');
    const store = await Store.open(path.join(work, 'root'));
    const l1 = path.join(work, 'l1');
    file(l1, 'etc/conf', 10);
    const l2 = path.join(work, 'l2');
    file(l2, 'etc/other', 5); // etc/ is written again (metadata): nothing wasted
    const made = [await layer(store, l1, 'dir'), await layer(store, l2, 'overlay-upper', [l1])];
    const img = await image(store, made, [{ created_by: 'one' }, { created_by: 'two' }], 'restate:1');
    const r = await imageReport(store, img);
    expect(r.total.wasted).toBe(0);
    expect(r.total.finalSize).toBe(15);
  });

  it('whiteouts and opaque markers never hide entries of their own layer; a duplicate entry wastes the first copy', async () => {
    const work = dirs.make('report-crafted');
    const store = await Store.open(path.join(work, 'root'));
    const crafted = async (entries: Parameters<typeof makeTar>[0]): Promise<Made> => {
      const tar = await makeTar(entries);
      const gz = gzipSync(tar);
      const info = await store.putBlob(gz);
      return { desc: { mediaType: MEDIA_TYPES.OCI_LAYER_GZIP, digest: info.digest, size: info.size }, diffId: sha256(tar), tarSize: tar.length };
    };
    const made = [
      await crafted([
        { header: { name: 'x', size: 100 }, body: Buffer.alloc(100) },
        { header: { name: 'dup', size: 30 }, body: Buffer.alloc(30) },
        { header: { name: 'dup', size: 40 }, body: Buffer.alloc(40) },
        { header: { name: 'd/', type: 'directory' } },
        { header: { name: 'd/old', size: 7 }, body: Buffer.alloc(7) },
        { header: { name: '.wh.x', size: 0 }, body: '' },
      ]),
      await crafted([
        { header: { name: 'd/', type: 'directory' } },
        { header: { name: 'd/f', size: 5 }, body: Buffer.alloc(5) },
        { header: { name: 'd/.wh..wh..opq', size: 0 }, body: '' },
      ]),
    ];
    const img = await image(store, made, [{ created_by: 'one' }, { created_by: 'two' }], 'crafted:1');
    const r = await imageReport(store, img);
    expect(r.layers.map((l) => [l.size, l.wasted, l.deletions])).toEqual([
      [177, 37, 1],
      [5, 0, 1],
    ]);
    expect(r.topWasted).toEqual([
      { path: '/dup', size: 30, layer: 1, hiddenBy: 1, how: 'overwritten' },
      { path: '/d/old', size: 7, layer: 1, hiddenBy: 2, how: 'opaque-dir' },
    ]);
    expect(r.total.finalSize).toBe(100 + 40 + 5);
    expect(r.layers.map((l) => l.tarSize)).toEqual(made.map((m) => m.tarSize));
  });

  it('an image imported with `tsbuild import`: one layer, nothing wasted, sizes as GNU tar lists them', async () => {
    const work = dirs.make('report-import');
    const tar = path.join(work, 'rootfs.tar');
    await makeBusyboxRootfs(tar);
    const root = path.join(work, 'root');
    const imp = spawnSync('node', [CLI, '--root', root, 'import', tar, 'bb:1'], { encoding: 'utf8' });
    expect(imp.status, imp.stderr).toBe(0);
    const store = await Store.open(root);
    const img = await resolveImage(store, 'bb:1');
    const r = await imageReport(store, img);
    // Regular files and their sizes, independently: GNU tar's verbose listing of the stored layer.
    const listing = spawnSync('tar', ['-tvzf', store.blobPath(img.layers[0]!.descriptor.digest as Digest)], { encoding: 'utf8' });
    expect(listing.status).toBe(0);
    const files = listing.stdout.split('\n').filter((l) => l.startsWith('-'));
    const bytes = files.reduce((s, l) => s + Number(l.trim().split(/\s+/)[2]), 0);
    expect(r.layers).toHaveLength(1);
    expect(r.layers[0]).toMatchObject({ createdBy: 'tsbuild import', size: bytes, files: files.length, wasted: 0, compressedSize: img.layers[0]!.descriptor.size });
    expect(bytes).toBeGreaterThan(500_000); // the busybox binary is in there
    expect(r.total).toMatchObject({ wasted: 0, wastedFiles: 0, finalSize: bytes });
  });
});
