// save / load: round trips in every format, several images per archive,
// interop with skopeo and umoci, and hostile archives.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { Store } from '../image/store.js';
import { sha256, type Digest } from '../image/digest.js';
import { resolveImage, writeImage, type StoredImage } from '../image/images.js';
import { ArchiveError, loadArchive, saveImages, type ArchiveFormat } from '../image/archive.js';
import { main } from '../cli/main.js';
import { TempDirs } from './helpers.js';

const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

interface TarEntry {
  name: string;
  data?: Buffer | string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device';
  linkname?: string;
  mode?: number;
}

async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: Buffer) => chunks.push(c));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const data = e.data === undefined ? undefined : Buffer.from(e.data);
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      mtime: new Date(0),
      linkname: e.linkname,
      size: data?.length ?? 0,
    };
    await new Promise<void>((resolve, reject) => {
      if (data) pack.entry(header, data, (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const BUSYBOX = readFileSync('/bin/busybox');

/** A two-layer image: busybox + sh symlink, then a text file. */
async function makeImage(store: Store, tags: string[], text = 'hello from tsbuild\n'): Promise<StoredImage> {
  const layers = [
    await makeTar([
      { name: 'bin/', type: 'directory' },
      { name: 'bin/busybox', data: BUSYBOX, mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    ]),
    await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hello.txt', data: text },
    ]),
  ];
  return store.withWriteSession(async () => {
    const descs = [];
    for (const l of layers) {
      const blob = await store.putBlob(gzipSync(l));
      descs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: blob.digest, size: blob.size });
    }
    return writeImage(
      store,
      {
        config: {
          architecture: 'amd64',
          os: 'linux',
          created: '2024-01-01T00:00:00Z',
          config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] },
          rootfs: { type: 'layers', diff_ids: layers.map((l) => sha256(l)) },
          history: [{ created_by: 'busybox' }, { created_by: `text ${text.length}` }],
        },
        layers: descs,
      },
      tags,
    );
  });
}

function diffIds(img: StoredImage): string[] {
  return img.layers.map((l) => l.diffId);
}

async function freshStore(): Promise<Store> {
  return Store.open(dirs.make('archive-store'));
}

function listTar(file: string): string[] {
  const r = spawnSync('tar', ['-tf', file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split('\n');
}

function run(cmd: string, args: string[], cwd?: string) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

describe('save and load round trips', () => {
  for (const format of ['docker-archive', 'oci-archive', 'oci-dir'] as ArchiveFormat[]) {
    it(`${format}: a saved image loads into a fresh store with the same identity`, async () => {
      const src = await freshStore();
      const img = await makeImage(src, ['app:latest']);
      const out = path.join(dirs.make('archive-out'), format === 'oci-dir' ? 'layout' : 'app.tar');
      const saved = await saveImages(src, ['app'], out, format);
      expect(saved.images).toEqual([{ digest: img.digest, id: img.id, tags: ['docker.io/library/app:latest'] }]);
      // Nothing but the output next to it.
      expect(readdirSync(path.dirname(out))).toEqual([path.basename(out)]);

      const dst = await freshStore();
      const res = await loadArchive(dst, out);
      expect(res.images).toHaveLength(1);
      expect(res.images[0]!.tags).toEqual(['docker.io/library/app:latest']);
      const loaded = await resolveImage(dst, 'app:latest');
      expect(loaded.id).toBe(img.id);
      expect(diffIds(loaded)).toEqual(diffIds(img));
      if (format === 'docker-archive') {
        expect(res.format).toBe('docker-archive');
        // Layers were stored gzip-compressed again.
        for (const l of loaded.layers) {
          expect(l.descriptor.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
          expect(sha256(gunzipSync(await dst.readBlob(l.descriptor.digest as Digest)))).toBe(l.diffId);
        }
      } else {
        expect(res.format).toBe('oci-layout');
        expect(loaded.digest).toBe(img.digest);
        expect(loaded.manifestBytes.equals(img.manifestBytes)).toBe(true);
      }
      expect(readdirSync(dst.tmpDir)).toEqual([]);
    });
  }

  it('docker-archive has the Docker 25 layout with uncompressed layers, and is deterministic', async () => {
    const store = await freshStore();
    const img = await makeImage(store, ['app:1']);
    const d = dirs.make('archive-out');
    await saveImages(store, ['app:1'], path.join(d, 'a.tar'));
    await saveImages(store, ['app:1'], path.join(d, 'b.tar'));
    expect(readFileSync(path.join(d, 'a.tar')).equals(readFileSync(path.join(d, 'b.tar')))).toBe(true);
    const names = listTar(path.join(d, 'a.tar'));
    expect(names).toEqual(expect.arrayContaining(['blobs/', 'blobs/sha256/', 'index.json', 'manifest.json', 'oci-layout', 'repositories']));
    const x = dirs.make('archive-x');
    run('tar', ['-xf', path.join(d, 'a.tar'), '-C', x]);
    const manifest = JSON.parse(readFileSync(path.join(x, 'manifest.json'), 'utf8'));
    expect(manifest).toEqual([
      {
        Config: `blobs/sha256/${img.id.slice(7)}`,
        RepoTags: ['app:1'],
        Layers: diffIds(img).map((id) => `blobs/sha256/${id.slice(7)}`),
      },
    ]);
    for (const l of manifest[0].Layers as string[]) {
      const data = readFileSync(path.join(x, l));
      expect(sha256(data)).toBe(`sha256:${path.basename(l)}`); // plain tar: blob digest == diff_id
    }
    expect(JSON.parse(readFileSync(path.join(x, 'repositories'), 'utf8'))).toEqual({ app: { '1': diffIds(img)[1]!.slice(7) } });
    const index = JSON.parse(readFileSync(path.join(x, 'index.json'), 'utf8'));
    expect(index.manifests[0].annotations).toEqual({
      'io.containerd.image.name': 'docker.io/library/app:1',
      'org.opencontainers.image.ref.name': '1',
    });
  });

  it('several images in one archive, in every format; a bare repository saves all its tags', async () => {
    const src = await freshStore();
    const a = await makeImage(src, ['app:1', 'app:2'], 'a\n');
    const b = await makeImage(src, ['localhost:5000/team/web:v3'], 'b\n');
    for (const format of ['docker-archive', 'oci-archive', 'oci-dir'] as ArchiveFormat[]) {
      const out = path.join(dirs.make('archive-out'), 'multi');
      const saved = await saveImages(src, ['app', 'localhost:5000/team/web:v3'], out, format);
      expect(saved.images.map((i) => i.digest)).toEqual([a.digest, b.digest]);
      const dst = await freshStore();
      const res = await loadArchive(dst, out);
      const tags = res.images.flatMap((i) => i.tags).sort();
      expect(tags).toEqual(['docker.io/library/app:1', 'docker.io/library/app:2', 'localhost:5000/team/web:v3']);
      expect((await resolveImage(dst, 'app:2')).id).toBe(a.id);
      expect((await resolveImage(dst, 'localhost:5000/team/web:v3')).id).toBe(b.id);
      expect(diffIds(await resolveImage(dst, 'localhost:5000/team/web:v3'))).toEqual(diffIds(b));
    }
  });

  it('an image saved by ID has no name and loads untagged', async () => {
    const src = await freshStore();
    const img = await makeImage(src, ['app:latest']);
    const out = path.join(dirs.make('archive-out'), 'id.tar');
    await saveImages(src, [img.id.slice(7, 19)], out);
    const dst = await freshStore();
    const res = await loadArchive(dst, out);
    expect(res.images).toEqual([{ digest: expect.any(String), id: img.id, tags: [] }]);
    expect((await dst.readIndex()).tags).toEqual({});
    expect((await resolveImage(dst, img.id)).id).toBe(img.id);
  });

  it('streams: save to a Writable, load from a Readable (also gzip-compressed)', async () => {
    const src = await freshStore();
    const img = await makeImage(src, ['app:latest']);
    const chunks: Buffer[] = [];
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    });
    await saveImages(src, ['app:latest'], sink, 'oci-archive');
    const tarBytes = Buffer.concat(chunks);
    for (const bytes of [tarBytes, gzipSync(tarBytes)]) {
      const dst = await freshStore();
      const input = new PassThrough();
      input.end(bytes);
      const res = await loadArchive(dst, input);
      expect(res.images[0]!.digest).toBe(img.digest);
    }
  });

  it('a failure in the middle of writing leaves nothing behind', async () => {
    const src = await freshStore();
    const img = await makeImage(src, ['app:latest']);
    // A second image whose layer is zstd: a docker-archive needs it decompressed, which Node 20 cannot do.
    const zstdLayer = await src.putBlob(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]));
    await src.withWriteSession(() =>
      writeImage(
        src,
        {
          config: { ...img.config, rootfs: { type: 'layers', diff_ids: [sha256('whatever')] } },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: zstdLayer.digest, size: zstdLayer.size }],
        },
        ['zst:latest'],
      ),
    );
    const d = dirs.make('archive-out');
    await expect(saveImages(src, ['app:latest', 'zst:latest'], path.join(d, 'x.tar'))).rejects.toThrow(/zstd-compressed.*oci-archive or oci-dir/);
    expect(readdirSync(d)).toEqual([]);
    // The OCI formats copy it as it is.
    await saveImages(src, ['zst:latest'], path.join(d, 'zst'), 'oci-dir');
    expect(readdirSync(d)).toEqual(['zst']);
    await expect(saveImages(src, ['app'], path.join(d, 'no/such/dir/x.tar'))).rejects.toThrow(/cannot write the archive to .*no\/such\/dir\/x.tar/);
    await expect(saveImages(src, ['app'], path.join(d, 'zst'), 'oci-dir')).rejects.toThrow(/already exists/);
  });

  it('refuses an unknown image and writes nothing', async () => {
    const src = await freshStore();
    await makeImage(src, ['app:latest']);
    const d = dirs.make('archive-out');
    await expect(saveImages(src, ['app:latest', 'nope:1'], path.join(d, 'x.tar'))).rejects.toThrow(/No such image: nope:1/);
    expect(readdirSync(d)).toEqual([]);
  });
});

describe('legacy Docker archives', () => {
  it('loads <id>/layer.tar + <hex>.json with a symlinked (or hardlinked) duplicate layer', async () => {
    const a = await makeTar([{ name: 'a.txt', data: 'layer a' }]);
    const b = await makeTar([{ name: 'b.txt', data: 'layer b' }]);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: [sha256(a), sha256(b), sha256(a)] },
      }),
    );
    const id1 = '1'.repeat(64);
    const id2 = '2'.repeat(64);
    const id3 = '3'.repeat(64);
    for (const linkType of ['symlink', 'link'] as const) {
      const bytes = await makeTar([
        { name: `${id1}/`, type: 'directory' },
        { name: `${id1}/VERSION`, data: '1.0' },
        { name: `${id1}/json`, data: '{}' },
        { name: `${id1}/layer.tar`, data: a },
        { name: `${id2}/layer.tar`, data: b },
        linkType === 'symlink'
          ? { name: `${id3}/layer.tar`, type: 'symlink', linkname: `../${id1}/layer.tar` }
          : { name: `${id3}/layer.tar`, type: 'link', linkname: `${id1}/layer.tar` },
        { name: `${sha256(config).slice(7)}.json`, data: config },
        {
          name: 'manifest.json',
          data: JSON.stringify([
            { Config: `${sha256(config).slice(7)}.json`, RepoTags: ['old:1'], Layers: [`${id1}/layer.tar`, `${id2}/layer.tar`, `${id3}/layer.tar`] },
          ]),
        },
        { name: 'repositories', data: JSON.stringify({ old: { '1': id3 } }) },
      ]);
      const store = await freshStore();
      const file = path.join(dirs.make('archive-legacy'), 'old.tar');
      writeFileSync(file, bytes);
      const res = await loadArchive(store, file);
      expect(res.images[0]!.tags).toEqual(['docker.io/library/old:1']);
      const img = await resolveImage(store, 'old:1');
      expect(img.id).toBe(sha256(config));
      expect(img.configBytes.equals(config)).toBe(true);
      expect(diffIds(img)).toEqual([sha256(a), sha256(b), sha256(a)]);
      expect(img.layers[0]!.descriptor.digest).toBe(img.layers[2]!.descriptor.digest);
      // Loading the same archive again gives the same manifest.
      const again = await loadArchive(await freshStore(), file);
      expect(again.images[0]!.digest).toBe(img.digest);
    }
  });
});

describe('interop', () => {
  it('skopeo reads our docker-archive', async () => {
    const store = await freshStore();
    const img = await makeImage(store, ['app:latest']);
    const out = path.join(dirs.make('archive-out'), 'app.tar');
    await saveImages(store, ['app:latest'], out, 'docker-archive');
    const info = JSON.parse(run('skopeo', ['inspect', `docker-archive:${out}`]));
    expect(info.Layers).toEqual(diffIds(img));
    expect(info.RepoTags ?? []).toBeDefined();
    const cfg = JSON.parse(run('skopeo', ['inspect', '--config', `docker-archive:${out}`]));
    expect(cfg.rootfs.diff_ids).toEqual(diffIds(img));
    const raw = run('skopeo', ['inspect', '--raw', `docker-archive:${out}`]);
    expect(JSON.parse(raw).config.digest).toBe(img.id);
  });

  it('skopeo reads our oci-archive and oci-dir', async () => {
    const store = await freshStore();
    const img = await makeImage(store, ['app:latest']);
    const d = dirs.make('archive-out');
    await saveImages(store, ['app:latest'], path.join(d, 'app.tar'), 'oci-archive');
    await saveImages(store, ['app:latest'], path.join(d, 'layout'), 'oci-dir');
    const layerDigests = img.layers.map((l) => l.descriptor.digest);
    for (const ref of [`oci-archive:${path.join(d, 'app.tar')}`, `oci:${path.join(d, 'layout')}:latest`]) {
      const info = JSON.parse(run('skopeo', ['inspect', ref]));
      expect(info.Digest).toBe(img.digest);
      expect(info.Layers).toEqual(layerDigests);
      const cfg = JSON.parse(run('skopeo', ['inspect', '--config', ref]));
      expect(cfg.rootfs.diff_ids).toEqual(diffIds(img));
    }
  });

  it('umoci unpacks our oci-dir', async () => {
    const store = await freshStore();
    await makeImage(store, ['app:latest'], 'unpacked by umoci\n');
    const d = dirs.make('archive-umoci');
    const layout = path.join(d, 'layout');
    await saveImages(store, ['app:latest'], layout, 'oci-dir');
    run('umoci', ['unpack', '--image', `${layout}:latest`, path.join(d, 'bundle')]);
    const rootfs = path.join(d, 'bundle', 'rootfs');
    expect(readFileSync(path.join(rootfs, 'etc/hello.txt'), 'utf8')).toBe('unpacked by umoci\n');
    expect(statSync(path.join(rootfs, 'bin/busybox')).size).toBe(BUSYBOX.length);
    expect(statSync(path.join(rootfs, 'bin/busybox')).mode & 0o777).toBe(0o755);
    expect(existsSync(path.join(d, 'bundle', 'config.json'))).toBe(true);
  });

  it('loads a docker-archive written by skopeo copy', async () => {
    const store = await freshStore();
    const img = await makeImage(store, ['app:latest']);
    const d = dirs.make('archive-skopeo');
    const layout = path.join(d, 'layout');
    await saveImages(store, ['app:latest'], layout, 'oci-dir');
    const out = path.join(d, 'from-skopeo.tar');
    run('skopeo', ['copy', '-q', `oci:${layout}:latest`, `docker-archive:${out}:example.com/team/app:v1`]);
    const dst = await freshStore();
    const res = await loadArchive(dst, out);
    expect(res.format).toBe('docker-archive');
    expect(res.images[0]!.tags).toEqual(['example.com/team/app:v1']);
    const loaded = await resolveImage(dst, 'example.com/team/app:v1');
    expect(loaded.id).toBe(img.id);
    expect(diffIds(loaded)).toEqual(diffIds(img));
    // And what skopeo writes as oci-archive, too (manifest kept verbatim).
    const ociOut = path.join(d, 'from-skopeo-oci.tar');
    run('skopeo', ['copy', '-q', `oci:${layout}:latest`, `oci-archive:${ociOut}:example.com/team/app:v2`]);
    const dst2 = await freshStore();
    const res2 = await loadArchive(dst2, ociOut);
    expect(res2.images[0]!.id).toBe(img.id);
  });
});

describe('hostile archives', () => {
  /** Loads and expects a clean failure: the error, nothing in the index, no temp dir left. */
  async function expectRejected(bytes: Buffer, pattern: RegExp): Promise<void> {
    const store = await freshStore();
    const file = path.join(dirs.make('archive-bad'), 'bad.tar');
    writeFileSync(file, bytes);
    const err = await loadArchive(store, file).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err, 'load should fail').toBeInstanceOf(ArchiveError);
    expect(err!.message).toMatch(pattern);
    if (process.env.SHOW_ERRORS) console.log(err!.message);
    expect(err!.message).toContain(file);
    expect(await store.readIndex()).toEqual({ version: 1, images: {}, tags: {} });
    expect(readdirSync(store.tmpDir)).toEqual([]);
  }

  async function goodParts() {
    const layer = await makeTar([{ name: 'x.txt', data: 'x' }]);
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }),
    );
    return { layer, config, cfgName: `${sha256(config).slice(7)}.json` };
  }

  it('an entry named ../x', async () => {
    // The sentinel is a shared path (/tmp/x): check it did not appear, not that it is absent.
    const sentinel = path.join(dirs.make('archive-bad'), '..', 'x');
    const before = existsSync(sentinel);
    await expectRejected(await makeTar([{ name: '../x', data: 'evil' }]), /outside the archive/);
    expect(existsSync(sentinel)).toBe(before);
  });

  it('an absolute entry name', async () => {
    await expectRejected(await makeTar([{ name: '/tmp/tsbuild-evil', data: 'evil' }]), /absolute path/);
    expect(existsSync('/tmp/tsbuild-evil')).toBe(false);
  });

  it('manifest.json pointing at ../../etc/passwd', async () => {
    const { layer, config, cfgName } = await goodParts();
    const bytes = await makeTar([
      { name: cfgName, data: config },
      { name: 'l/layer.tar', data: layer },
      { name: 'manifest.json', data: JSON.stringify([{ Config: '../../etc/passwd', RepoTags: ['evil:1'], Layers: ['l/layer.tar'] }]) },
    ]);
    await expectRejected(bytes, /outside the archive/);
  });

  it('a layer path through a symlink leading out of the archive', async () => {
    const { layer, config, cfgName } = await goodParts();
    void layer;
    const bytes = await makeTar([
      { name: cfgName, data: config },
      { name: 'l/layer.tar', type: 'symlink', linkname: '../../../../etc/passwd' },
      { name: 'manifest.json', data: JSON.stringify([{ Config: cfgName, RepoTags: ['evil:1'], Layers: ['l/layer.tar'] }]) },
    ]);
    await expectRejected(bytes, /symlink "l\/layer.tar" points outside the archive/);
  });

  it('a device node entry', async () => {
    await expectRejected(await makeTar([{ name: 'dev', type: 'character-device' }]), /unsupported type character-device/);
  });

  it('a config whose content does not match its name', async () => {
    const { layer, config } = await goodParts();
    const wrong = `${'a'.repeat(64)}.json`;
    const bytes = await makeTar([
      { name: wrong, data: config },
      { name: 'l/layer.tar', data: layer },
      { name: 'manifest.json', data: JSON.stringify([{ Config: wrong, RepoTags: ['evil:1'], Layers: ['l/layer.tar'] }]) },
    ]);
    await expectRejected(bytes, /does not match its digest/);
  });

  it("a layer that does not match the config's diff_id (plain and gzip)", async () => {
    const { config, cfgName } = await goodParts();
    const other = await makeTar([{ name: 'y.txt', data: 'not what the config says' }]);
    for (const data of [other, gzipSync(other)]) {
      const bytes = await makeTar([
        { name: cfgName, data: config },
        { name: 'l/layer.tar', data },
        { name: 'manifest.json', data: JSON.stringify([{ Config: cfgName, RepoTags: ['evil:1'], Layers: ['l/layer.tar'] }]) },
      ]);
      await expectRejected(bytes, /layer 0 \(l\/layer.tar\).*does not match the config's diff_id/);
    }
  });

  it('an OCI layout blob whose content does not match its digest', async () => {
    const { layer, config } = await goodParts();
    const gz = gzipSync(layer);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(gz), size: gz.length }],
      }),
    );
    const tampered = Buffer.from(gz);
    tampered[tampered.length - 5]! ^= 0xff;
    const bytes = await makeTar([
      { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
      {
        name: 'index.json',
        data: JSON.stringify({
          schemaVersion: 2,
          manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'evil:1' } }],
        }),
      },
      { name: `blobs/sha256/${sha256(manifest).slice(7)}`, data: manifest },
      { name: `blobs/sha256/${sha256(config).slice(7)}`, data: config },
      { name: `blobs/sha256/${sha256(gz).slice(7)}`, data: tampered },
    ]);
    await expectRejected(bytes, /layer 0 .*(decompress|diff_id|digest)/);
  });

  it('an OCI layout whose config or layer blob differs from its descriptor', async () => {
    const { layer, config } = await goodParts();
    const gz = gzipSync(layer);
    const evilConfig = Buffer.from(config.toString().replace('amd64', 'arm64'));
    for (const [cfgContent, layerContent, pattern] of [
      [evilConfig, gz, /config blobs\/sha256\/[a-f0-9]{64} does not match its digest/],
      [config, gzipSync(layer, { level: 1 }).subarray(0, gz.length - 3), /layer 0 .*blob has \d+ bytes, but the manifest says/],
    ] as const) {
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(gz), size: gz.length }],
        }),
      );
      const bytes = await makeTar([
        { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
        {
          name: 'index.json',
          data: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length }] }),
        },
        { name: `blobs/sha256/${sha256(manifest).slice(7)}`, data: manifest },
        { name: `blobs/sha256/${sha256(config).slice(7)}`, data: cfgContent },
        { name: `blobs/sha256/${sha256(gz).slice(7)}`, data: layerContent },
      ]);
      await expectRejected(bytes, pattern);
    }
  });

  it('not an archive at all', async () => {
    await expectRejected(Buffer.from('hello, this is not a tar file at all'.repeat(20)), /not a valid tar archive|empty/);
    await expectRejected(await makeTar([{ name: 'README', data: 'hi' }]), /neither manifest.json nor index.json/);
  });
});

describe('cli', () => {
  function io() {
    let stdout = '';
    let stderr = '';
    return {
      io: {
        stdout: new Writable({
          write(c, _e, cb) {
            stdout += c.toString();
            cb();
          },
        }),
        stderr: new Writable({
          write(c, _e, cb) {
            stderr += c.toString();
            cb();
          },
        }),
      },
      out: () => stdout,
      err: () => stderr,
    };
  }

  it('save -o and load -i print what Docker prints', async () => {
    const src = await freshStore();
    const img = await makeImage(src, ['app:latest', 'app:v2']);
    const file = path.join(dirs.make('archive-cli'), 'app.tar');
    const s = io();
    expect(await main(['--root', src.root, 'save', '-o', file, 'app:latest', 'app:v2'], s.io), s.err()).toBe(0);
    const dstRoot = dirs.make('archive-cli-store');
    const l = io();
    expect(await main(['--root', dstRoot, 'load', '-q', '-i', file], l.io), l.err()).toBe(0);
    expect(l.out()).toBe('Loaded image: app:latest\nLoaded image: app:v2\n');
    const dst = await Store.open(dstRoot);
    expect((await resolveImage(dst, 'app:v2')).id).toBe(img.id);

    const byId = path.join(dirs.make('archive-cli'), 'id.tar');
    expect(await main(['--root', src.root, 'save', '--format', 'oci-archive', '-o', byId, img.id], io().io)).toBe(0);
    const l2 = io();
    expect(await main(['--root', dirs.make('archive-cli-store'), 'load', '-i', byId], l2.io), l2.err()).toBe(0);
    expect(l2.out()).toBe(`Loaded image ID: ${img.id}\n`);
  });

  it('save refuses a terminal and a bad format; load names a missing file', async () => {
    const src = await freshStore();
    await makeImage(src, ['app:latest']);
    const t = io();
    (t.io.stdout as unknown as { isTTY: boolean }).isTTY = true;
    expect(await main(['--root', src.root, 'save', 'app'], t.io)).toBe(1);
    expect(t.err()).toContain('cowardly refusing to save to a terminal. Use the -o flag or redirect');
    const f = io();
    expect(await main(['--root', src.root, 'save', '--format', 'zip', '-o', '/tmp/x', 'app'], f.io)).toBe(125);
    const m = io();
    expect(await main(['--root', src.root, 'load', '-i', '/nonexistent/tsbuild.tar'], m.io)).toBe(1);
    expect(m.err()).toContain('cannot open /nonexistent/tsbuild.tar: no such file or directory');
  });

  it('save writes the archive to stdout when it is not a terminal', async () => {
    const src = await freshStore();
    const img = await makeImage(src, ['app:latest']);
    const chunks: Buffer[] = [];
    const t = io();
    const stdout = new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    });
    expect(await main(['--root', src.root, 'save', 'app'], { stdout, stderr: t.io.stderr }), t.err()).toBe(0);
    const file = path.join(dirs.make('archive-cli'), 'stdout.tar');
    writeFileSync(file, Buffer.concat(chunks));
    const dst = await freshStore();
    const input = createReadStream(file);
    const res = await loadArchive(dst, input);
    expect(res.images[0]!.id).toBe(img.id);
    mkdirSync(path.join(dirs.make('archive-cli'), 'unused'));
  });
});
