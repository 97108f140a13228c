// `save` and `load`: images to and from tarballs and OCI image layouts.
//
// In go-containerregistry terms this file holds two sources (a Docker archive
// and an OCI layout, both read from an unpacked directory) and three sinks (a
// Docker archive, an OCI archive and an OCI layout directory), written through
// one small LayoutSink interface that is either a tar stream or a directory.
//
// Formats written
// ---------------
//  oci-dir / oci-archive: an OCI image layout (image-spec v1.1 image-layout.md):
//    oci-layout, index.json, blobs/sha256/<hex>. Blobs are the store's blobs,
//    byte for byte, so the manifest digest survives a round trip. Each name an
//    image is saved under becomes one index.json entry annotated like Docker 25
//    and BuildKit do: org.opencontainers.image.ref.name = the tag ("latest"),
//    io.containerd.image.name = the full name (docker.io/library/app:latest).
//    `skopeo ... oci:DIR:latest` and `umoci unpack --image DIR:latest` find it.
//
//  docker-archive (the default, as `docker save`): the layout Docker 25+ writes,
//    which is a Docker archive and an OCI layout at the same time:
//      blobs/sha256/<hex>   layers as UNCOMPRESSED tar (digest = diff_id), the
//                           config (digest = image ID) and an OCI manifest
//      index.json, oci-layout
//      manifest.json        [{"Config":"blobs/sha256/<id>","RepoTags":[...],"Layers":["blobs/sha256/<diff_id>",...]}]
//      repositories         {"app":{"latest":"<top layer hex>"}}
//    Uncompressed layers because every `docker load` (old and new) and skopeo's
//    docker-archive: transport accept them, and because then the layer blob
//    digest equals the diff_id, which keeps the embedded OCI layout consistent.
//    A gzip layer is decompressed twice (once to learn its size for the tar
//    header and check its diff_id, once to stream it) rather than buffered.
//
//  Output is deterministic for the same store content: fixed entry order,
//  mtime 0, uid/gid 0, mode 0644/0755, compact JSON. Files are written beside
//  their destination and renamed into place on success.
//
// Formats read
// ------------
//  Anything with a manifest.json is read as a Docker archive: Docker's legacy
//  layout (<id>/layer.tar, <hex>.json, symlinked duplicate layers), Docker 25+
//  (blobs/sha256/...), skopeo's (<hex>.tar). Layers may be gzip or plain tar;
//  plain layers are gzipped on ingest, gzip layers kept as they are; each
//  layer's diff_id is checked against the config while streaming. Docker
//  archives get a new OCI manifest (deterministic, so loading twice gives the
//  same digest). Otherwise an OCI layout (oci-layout + index.json) is read and
//  its manifests are kept verbatim; every blob is checked against its digest
//  and size (and layers against their diff_id when not zstd).
//
//  An archive is untrusted input. A tar is first unpacked into a private temp
//  dir inside the store (store.tmpPath): only regular files and directories
//  are written; entry names must be plain relative paths (no absolute paths,
//  no "..", no NUL); symlinks and hardlinks are never created on disk, they
//  are remembered as aliases and may only point at other entries inside the
//  archive. Paths named inside manifest.json / index.json go through the same
//  checks. Blobs enter the store only verified; the index is updated last, in
//  one write, so a failed load leaves nothing in it (unreferenced blobs are
//  left to GC). The temp dir is removed in every case.
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { z } from 'zod';
import { fsyncDir } from './atomic.js';
import { HashCounter, hexOf, isDigest, sha256, type Digest } from './digest.js';
import { resolveImage, shortTag, tagKey, type StoredImage } from './images.js';
import {
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
  isIndexType,
  isManifestType,
  layerCompression,
} from './mediatypes.js';
import { formatReference, parseReference, repositoryName } from './reference.js';
import { parseImageConfig, parseManifestJson, type Descriptor, type ImageConfig, type ImageManifest } from './schemas.js';
import type { ImageRecord, Store } from './store.js';

export type ArchiveFormat = 'docker-archive' | 'oci-archive' | 'oci-dir';
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['docker-archive', 'oci-archive', 'oci-dir'];

/** A problem with an archive or layout being read or written; the message names the file. */
export class ArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveError';
  }
}

export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';

/** JSON documents (manifests, configs, index.json) larger than this are refused. */
const MAX_JSON_BYTES = 32 * 1024 * 1024;
const EPOCH = new Date(0);

// ============================================================== save

export interface SavedImage {
  digest: Digest;
  id: Digest;
  /** Full tag keys (docker.io/library/app:latest) the image was saved under. */
  tags: string[];
}

export interface SaveResult {
  format: ArchiveFormat;
  images: SavedImage[];
}

interface SaveItem {
  image: StoredImage;
  names: string[];
}

/**
 * Writes the images named by refs (names, IDs, digests) to out: a Writable
 * (archive formats only) or a path (a file for the archive formats, a
 * directory that must not exist yet, or be empty, for oci-dir).
 *
 * Names follow `docker save`: "app:1" saves that tag, a bare repository "app"
 * saves every tag of it, an ID or digest saves the image without a name.
 */
export async function saveImages(
  store: Store,
  refs: string[],
  out: Writable | string,
  format: ArchiveFormat = 'docker-archive',
): Promise<SaveResult> {
  if (!ARCHIVE_FORMATS.includes(format)) throw new ArchiveError(`unknown archive format "${format}" (use ${ARCHIVE_FORMATS.join(', ')})`);
  if (refs.length === 0) throw new ArchiveError('save: no images given');
  if (format === 'oci-dir' && typeof out !== 'string') throw new ArchiveError('the oci-dir format needs a directory path to write to');
  // Shared GC lock: the garbage collector must not remove blobs while we stream them.
  return store.withWriteSession(async () => {
    const items = await selectImages(store, refs);
    const sink: LayoutSink =
      format === 'oci-dir' ? await DirSink.create(out as string) : typeof out === 'string' ? await TarSink.toFile(out) : TarSink.toStream(out);
    try {
      if (format === 'docker-archive') await writeDockerArchive(store, items, sink);
      else await writeOciLayout(store, items, sink);
      await sink.finish();
    } catch (e) {
      await sink.abort();
      throw e;
    }
    return {
      format,
      images: items.map((it) => ({ digest: it.image.digest, id: it.image.id, tags: [...it.names] })),
    };
  });
}

function hasExplicitTagOrDigest(s: string): boolean {
  if (s.includes('@')) return true;
  const colon = s.lastIndexOf(':');
  return colon >= 0 && colon > s.lastIndexOf('/');
}

async function selectImages(store: Store, refs: string[]): Promise<SaveItem[]> {
  const items = new Map<Digest, SaveItem>();
  const add = async (image: StoredImage, name?: string) => {
    let it = items.get(image.digest);
    if (!it) items.set(image.digest, (it = { image, names: [] }));
    if (name && !it.names.includes(name)) it.names.push(name);
  };
  const idx = await store.readIndex();
  for (const ref of refs) {
    // A repository without tag: every tag of it, as `docker save app` does.
    if (!hasExplicitTagOrDigest(ref) && !/^(sha256:)?[a-f0-9]{64}$/.test(ref)) {
      let repo: string | undefined;
      try {
        repo = repositoryName(parseReference(ref));
      } catch {
        repo = undefined;
      }
      const keys = repo ? Object.keys(idx.tags).filter((k) => k.startsWith(`${repo}:`)).sort() : [];
      if (keys.length > 0) {
        for (const k of keys) await add(await resolveImage(store, k), k);
        continue;
      }
    }
    const image = await resolveImage(store, ref);
    let name: string | undefined;
    try {
      const r = parseReference(ref);
      if (!r.digest) {
        const key = formatReference({ domain: r.domain, path: r.path, tag: r.tag ?? 'latest' });
        if (idx.tags[key] === image.digest) name = key;
      }
    } catch {
      name = undefined; // an ID or ID prefix
    }
    await add(image, name);
  }
  return [...items.values()];
}

function tagOf(key: string): string {
  const r = parseReference(key);
  return r.tag ?? 'latest';
}

function nameAnnotations(key: string): Record<string, string> {
  return { [ANNOTATION_IMAGE_NAME]: key, [ANNOTATION_REF_NAME]: tagOf(key) };
}

function blobName(d: Digest): string {
  return `blobs/sha256/${hexOf(d)}`;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

const OCI_LAYOUT_FILE = json({ imageLayoutVersion: '1.0.0' });

async function writeOciLayout(store: Store, items: SaveItem[], sink: LayoutSink): Promise<void> {
  await sink.addDir('blobs');
  await sink.addDir('blobs/sha256');
  const written = new Set<string>();
  const blob = async (d: Digest) => {
    if (written.has(d)) return;
    written.add(d);
    const size = await store.blobSize(d);
    await sink.addStream(blobName(d), size, () => store.blobStream(d));
  };
  const manifests: Descriptor[] = [];
  for (const { image, names } of items) {
    for (const l of image.manifest.layers) await blob(l.digest as Digest);
    await blob(image.manifest.config.digest as Digest);
    await blob(image.digest);
    const desc = { mediaType: image.record.mediaType, digest: image.digest, size: image.record.size };
    if (names.length === 0) manifests.push(desc);
    for (const n of names) manifests.push({ ...desc, annotations: nameAnnotations(n) });
  }
  await sink.addBytes('index.json', json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  await sink.addBytes('oci-layout', OCI_LAYOUT_FILE);
}

/** Size and diff_id of a layer's uncompressed tar, and how to stream it. */
interface TarLayer {
  diffId: Digest;
  size: number;
  open: () => Readable;
}

async function uncompressedLayer(store: Store, image: StoredImage, i: number): Promise<TarLayer> {
  const { descriptor, diffId } = image.layers[i]!;
  const d = descriptor.digest as Digest;
  const compression = layerCompression(descriptor.mediaType);
  if (compression === 'none') {
    if (d !== diffId) throw new ArchiveError(`image ${image.digest}: uncompressed layer ${d} does not match its diff_id ${diffId}`);
    return { diffId, size: await store.blobSize(d), open: () => store.blobStream(d) };
  }
  if (compression !== 'gzip') {
    throw new ArchiveError(`image ${image.digest}: layer ${d} is ${compression}-compressed, which cannot be decompressed here; save it as oci-archive or oci-dir instead`);
  }
  const open = () => {
    const src = store.blobStream(d);
    const gunzip = createGunzip();
    src.on('error', (e) => gunzip.destroy(e));
    return src.pipe(gunzip);
  };
  const got = await hashStream(open());
  if (got.digest !== diffId) {
    throw new ArchiveError(`image ${image.digest}: layer ${d} decompresses to ${got.digest}, but the config's diff_id is ${diffId}`);
  }
  return { diffId, size: got.size, open };
}

async function writeDockerArchive(store: Store, items: SaveItem[], sink: LayoutSink): Promise<void> {
  await sink.addDir('blobs');
  await sink.addDir('blobs/sha256');
  const written = new Set<string>();
  const index: Descriptor[] = [];
  const manifestJson: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { image, names } of items) {
    const layers: TarLayer[] = [];
    for (let i = 0; i < image.layers.length; i++) {
      const l = await uncompressedLayer(store, image, i);
      layers.push(l);
      if (!written.has(l.diffId)) {
        written.add(l.diffId);
        await sink.addStream(blobName(l.diffId), l.size, l.open);
      }
    }
    if (!written.has(image.id)) {
      written.add(image.id);
      await sink.addBytes(blobName(image.id), image.configBytes);
    }
    // The OCI manifest Docker 25 puts beside manifest.json: plain-tar layers, OCI types.
    const manifest = json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: image.id, size: image.configBytes.length },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.diffId, size: l.size })),
    });
    const md = sha256(manifest);
    if (!written.has(md)) {
      written.add(md);
      await sink.addBytes(blobName(md), manifest);
    }
    const desc = { mediaType: OCI_MANIFEST, digest: md, size: manifest.length };
    if (names.length === 0) index.push(desc);
    for (const n of names) index.push({ ...desc, annotations: nameAnnotations(n) });
    manifestJson.push({ Config: blobName(image.id), RepoTags: names.map(shortTag), Layers: layers.map((l) => blobName(l.diffId)) });
    const top = layers[layers.length - 1];
    for (const n of names) {
      if (!top) break;
      const short = shortTag(n);
      const colon = short.lastIndexOf(':');
      (repositories[short.slice(0, colon)] ??= {})[short.slice(colon + 1)] = hexOf(top.diffId);
    }
  }
  await sink.addBytes('index.json', json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: index }));
  await sink.addBytes('manifest.json', json(manifestJson));
  await sink.addBytes('oci-layout', OCI_LAYOUT_FILE);
  if (Object.keys(repositories).length > 0) await sink.addBytes('repositories', json(repositories));
}

// ---------------------------------------------------------------- sinks

/** Where a layout's files go: a tar stream or a directory. Entries are added one at a time. */
interface LayoutSink {
  addDir(name: string): Promise<void>;
  addBytes(name: string, data: Buffer): Promise<void>;
  /** open() must produce exactly size bytes. */
  addStream(name: string, size: number, open: () => Readable): Promise<void>;
  /** Completes the output (flush, fsync, rename into place). */
  finish(): Promise<void>;
  /** Removes whatever was written (for paths) after a failure. */
  abort(): Promise<void>;
}

function siblingTemp(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

class TarSink implements LayoutSink {
  private pack = tar.pack();
  private piped: Promise<void>;
  private failed?: Error;
  /** The blob being streamed, closed on abort. */
  private current?: Readable;

  private constructor(
    out: Writable,
    private file?: { tmp: string; target: string },
  ) {
    this.piped = pipeline(this.pack, out);
    this.piped.catch((e: Error) => {
      this.failed ??= e;
    });
  }

  static async toFile(target: string): Promise<TarSink> {
    const abs = path.resolve(target);
    const st = await fsp.stat(abs).catch(() => undefined);
    if (st?.isDirectory()) throw new ArchiveError(`cannot write the archive to ${target}: it is a directory`);
    const tmp = siblingTemp(abs);
    const ws = createWriteStream(tmp, { mode: 0o644, flags: 'wx' });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', (e) => reject(new ArchiveError(`cannot write the archive to ${target}: ${e.message}`)));
    });
    return new TarSink(ws, { tmp, target: abs });
  }

  static toStream(out: Writable): TarSink {
    return new TarSink(out);
  }

  private header(name: string, type: 'file' | 'directory', size: number): Partial<tar.Header> & { name: string } {
    return { name, type, size, mode: type === 'directory' ? 0o755 : 0o644, mtime: EPOCH, uid: 0, gid: 0, uname: '', gname: '' };
  }

  private check(): void {
    if (this.failed) throw this.failed;
  }

  async addDir(name: string): Promise<void> {
    this.check();
    await new Promise<void>((resolve, reject) => this.pack.entry(this.header(`${name}/`, 'directory', 0), (e) => (e ? reject(e) : resolve())));
  }

  async addBytes(name: string, data: Buffer): Promise<void> {
    this.check();
    await new Promise<void>((resolve, reject) => this.pack.entry(this.header(name, 'file', data.length), data, (e) => (e ? reject(e) : resolve())));
  }

  async addStream(name: string, size: number, open: () => Readable): Promise<void> {
    this.check();
    let done!: Promise<void>;
    const entry = (() => {
      let w!: NodeJS.WritableStream;
      done = new Promise<void>((resolve, reject) => {
        w = this.pack.entry(this.header(name, 'file', size), (e) => (e ? reject(e) : resolve())) as unknown as NodeJS.WritableStream;
      });
      return w;
    })();
    done.catch(() => {});
    const source = open();
    this.current = source;
    try {
      await Promise.race([pipeline(source, entry), this.piped.then(() => {})]);
      this.check();
      await done;
    } finally {
      this.current = undefined;
    }
  }

  async finish(): Promise<void> {
    this.check();
    this.pack.finalize();
    await this.piped;
    if (this.file) {
      const fh = await fsp.open(this.file.tmp, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(this.file.tmp, this.file.target);
      await fsyncDir(path.dirname(this.file.target));
    }
  }

  async abort(): Promise<void> {
    this.current?.destroy();
    this.pack.destroy();
    await this.piped.catch(() => {});
    if (this.file) await fsp.rm(this.file.tmp, { force: true });
  }
}

class DirSink implements LayoutSink {
  private constructor(
    private tmp: string,
    private target: string,
  ) {}

  static async create(target: string): Promise<DirSink> {
    const abs = path.resolve(target);
    const st = await fsp.lstat(abs).catch(() => undefined);
    if (st && !(st.isDirectory() && (await fsp.readdir(abs)).length === 0)) {
      throw new ArchiveError(`cannot write the OCI layout to ${target}: it already exists (give a new or empty directory)`);
    }
    await fsp.mkdir(path.dirname(abs), { recursive: true });
    const tmp = siblingTemp(abs);
    await fsp.mkdir(tmp, { mode: 0o755 });
    return new DirSink(tmp, abs);
  }

  async addDir(name: string): Promise<void> {
    await fsp.mkdir(path.join(this.tmp, name), { recursive: true, mode: 0o755 });
  }

  async addBytes(name: string, data: Buffer): Promise<void> {
    await fsp.writeFile(path.join(this.tmp, name), data, { mode: 0o644 });
  }

  async addStream(name: string, size: number, open: () => Readable): Promise<void> {
    const p = path.join(this.tmp, name);
    const counter = new HashCounter();
    await pipeline(open(), counter, createWriteStream(p, { mode: 0o644 }));
    if (counter.size !== size) throw new ArchiveError(`${name}: wrote ${counter.size} bytes, expected ${size}`);
  }

  async finish(): Promise<void> {
    // fsync every file, then the directories, then move the whole layout into place.
    const syncTree = async (dir: string) => {
      for (const ent of await fsp.readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, ent.name);
        if (ent.isDirectory()) await syncTree(p);
        else {
          const fh = await fsp.open(p, 'r');
          try {
            await fh.sync();
          } finally {
            await fh.close();
          }
        }
      }
      await fsyncDir(dir);
    };
    await syncTree(this.tmp);
    // An empty directory at the target is replaced (rename(2) does that for empty dirs).
    await fsp.rename(this.tmp, this.target);
    await fsyncDir(path.dirname(this.target));
  }

  async abort(): Promise<void> {
    await fsp.rm(this.tmp, { recursive: true, force: true });
  }
}

// ============================================================== load

export interface LoadedImage {
  /** Manifest digest in the store. */
  digest: Digest;
  /** Image ID (config digest). */
  id: Digest;
  /** Full tag keys (docker.io/library/app:latest) pointed at the image. */
  tags: string[];
}

export interface LoadResult {
  format: 'docker-archive' | 'oci-layout';
  images: LoadedImage[];
}

export interface LoadOptions {
  /** Name used in error messages for a stream input (default "stdin"). */
  source?: string;
}

/**
 * Loads every image of a Docker archive or an OCI layout into the store.
 * input: a path to a tar (optionally gzip-compressed) or to a layout directory,
 * or a Readable carrying a tar.
 */
export async function loadArchive(store: Store, input: string | Readable, opts: LoadOptions = {}): Promise<LoadResult> {
  const source = typeof input === 'string' ? input : (opts.source ?? 'stdin');
  return store.withWriteSession(async () => {
    let tmp: string | undefined;
    try {
      let src: LayoutSource;
      const st = typeof input === 'string' ? await fsp.stat(input).catch((e: NodeJS.ErrnoException) => {
        throw new ArchiveError(`cannot open ${input}: ${e.code === 'ENOENT' ? 'no such file or directory' : e.message}`);
      }) : undefined;
      if (st?.isDirectory()) {
        src = await LayoutSource.open(input as string, new Map(), source);
      } else {
        tmp = store.tmpPath('load');
        await fsp.mkdir(tmp, { mode: 0o700 });
        const stream = typeof input === 'string' ? createReadStream(input) : input;
        const aliases = await extractTar(stream, tmp, source);
        src = await LayoutSource.open(tmp, aliases, source);
      }
      const format = (await src.exists('manifest.json')) ? 'docker-archive' : 'oci-layout';
      const loaded = format === 'docker-archive' ? await readDockerArchive(store, src) : await readOciLayout(store, src);
      const images = mergeLoaded(loaded);
      // The index last, in one atomic write.
      await store.updateIndex((idx) => {
        const now = new Date().toISOString();
        for (const im of loaded) {
          idx.images[im.record.digest] ??= { ...im.record, added: now };
          for (const t of im.tags) idx.tags[t] = im.record.digest;
        }
      });
      return { format, images };
    } finally {
      if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
}

interface PendingImage {
  record: Omit<ImageRecord, 'added'>;
  tags: string[];
}

function mergeLoaded(list: PendingImage[]): LoadedImage[] {
  const byDigest = new Map<Digest, LoadedImage>();
  for (const p of list) {
    let li = byDigest.get(p.record.digest);
    if (!li) byDigest.set(p.record.digest, (li = { digest: p.record.digest, id: p.record.config, tags: [] }));
    for (const t of p.tags) if (!li.tags.includes(t)) li.tags.push(t);
  }
  return [...byDigest.values()];
}

// ---------------------------------------------------------------- tar extraction

/**
 * Validates an entry name (from a tar header or a manifest) and normalises it:
 * "./a//b/" -> "a/b". Throws for absolute paths, ".." components, NUL, empty.
 */
export function safeEntryName(name: string, where: string): string {
  if (name.includes('\0')) throw new ArchiveError(`${where}: entry name ${JSON.stringify(name)} contains a NUL byte`);
  if (name.startsWith('/')) throw new ArchiveError(`${where}: entry name ${JSON.stringify(name)} is an absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new ArchiveError(`${where}: entry name ${JSON.stringify(name)} points outside the archive ("..")`);
  if (parts.length === 0) return '';
  return parts.join('/');
}

async function gunzipIfNeeded(input: Readable): Promise<Readable> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let first: Buffer | undefined;
  const head = await it.next();
  if (!head.done) first = Buffer.isBuffer(head.value) ? head.value : Buffer.from(head.value);
  async function* chained(): AsyncGenerator<Buffer> {
    if (first) yield first;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  const rest = Readable.from(chained(), { objectMode: false });
  if (first && first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b) {
    const g = createGunzip();
    rest.on('error', (e) => g.destroy(e));
    return rest.pipe(g);
  }
  return rest;
}

/** Unpacks a tar into dir, regular files and directories only; returns link aliases (name -> target). */
async function extractTar(input: Readable, dir: string, source: string): Promise<Map<string, string>> {
  const aliases = new Map<string, string>();
  const files = new Set<string>();
  const extract = tar.extract();
  let stream: Readable;
  try {
    stream = await gunzipIfNeeded(input);
  } catch (e) {
    throw new ArchiveError(`${source}: cannot read the archive: ${(e as Error).message}`);
  }
  stream.on('error', (e) => extract.destroy(e));
  stream.pipe(extract);
  let count = 0;
  try {
    for await (const entry of extract) {
      count++;
      const h = entry.header;
      const name = safeEntryName(h.name, source);
      switch (h.type) {
        case 'file':
        case 'contiguous-file': {
          if (name === '') throw new ArchiveError(`${source}: file entry with an empty name`);
          if (aliases.has(name)) throw new ArchiveError(`${source}: entry "${name}" appears twice`);
          const p = path.join(dir, name);
          await fsp.mkdir(path.dirname(p), { recursive: true, mode: 0o700 });
          // Only files and directories exist under dir, so nothing here can lead outside it.
          await pipeline(entry, createWriteStream(p, { mode: 0o600 }));
          files.add(name);
          break;
        }
        case 'directory':
          if (name !== '') await fsp.mkdir(path.join(dir, name), { recursive: true, mode: 0o700 });
          entry.resume();
          break;
        case 'symlink':
        case 'link': {
          if (name === '' || files.has(name)) throw new ArchiveError(`${source}: link entry "${h.name}" has a bad or duplicate name`);
          const linkname = h.linkname ?? '';
          // Symlink targets are relative to the link's directory, hardlink targets to the archive root.
          if (h.type === 'symlink' && linkname.startsWith('/')) {
            throw new ArchiveError(`${source}: symlink "${name}" points at an absolute path (${linkname})`);
          }
          const rel = h.type === 'symlink' ? path.posix.join(path.posix.dirname(name), linkname) : linkname;
          if (path.posix.normalize(rel).startsWith('../') || path.posix.normalize(rel) === '..') {
            throw new ArchiveError(`${source}: ${h.type === 'link' ? 'hardlink' : 'symlink'} "${name}" points outside the archive (${linkname})`);
          }
          aliases.set(name, safeEntryName(rel, source));
          entry.resume();
          break;
        }
        default:
          throw new ArchiveError(`${source}: entry "${name}" has unsupported type ${String(h.type)} (only files, directories and links are allowed)`);
      }
    }
  } catch (e) {
    extract.destroy();
    stream.destroy();
    input.destroy();
    if (e instanceof ArchiveError) throw e;
    throw new ArchiveError(`${source}: not a valid tar archive: ${(e as Error).message}`);
  }
  if (count === 0) throw new ArchiveError(`${source}: the archive is empty`);
  return aliases;
}

// ---------------------------------------------------------------- layout source

/** Read access to an unpacked archive or a layout directory, confined to its root. */
class LayoutSource {
  private constructor(
    readonly root: string,
    private realRoot: string,
    private aliases: Map<string, string>,
    readonly source: string,
  ) {}

  static async open(root: string, aliases: Map<string, string>, source: string): Promise<LayoutSource> {
    return new LayoutSource(root, await fsp.realpath(root), aliases, source);
  }

  /** The real path of a named entry after following archive links; must be a regular file inside the root. */
  async resolve(name: string, what: string): Promise<string> {
    let n = safeEntryName(name, `${this.source}: ${what}`);
    for (let hops = 0; this.aliases.has(n); hops++) {
      if (hops > 32) throw new ArchiveError(`${this.source}: ${what}: too many levels of links at "${name}"`);
      n = this.aliases.get(n)!;
    }
    if (n === '') throw new ArchiveError(`${this.source}: ${what}: empty path`);
    let real: string;
    try {
      real = await fsp.realpath(path.join(this.root, n));
    } catch {
      throw new ArchiveError(`${this.source}: ${what}: "${name}" is not in the archive`);
    }
    if (!real.startsWith(this.realRoot + path.sep)) throw new ArchiveError(`${this.source}: ${what}: "${name}" points outside the archive`);
    const st = await fsp.stat(real);
    if (!st.isFile()) throw new ArchiveError(`${this.source}: ${what}: "${name}" is not a regular file`);
    return real;
  }

  async exists(name: string): Promise<boolean> {
    try {
      await this.resolve(name, name);
      return true;
    } catch {
      return false;
    }
  }

  async readSmall(name: string, what: string, limit = MAX_JSON_BYTES): Promise<Buffer> {
    const p = await this.resolve(name, what);
    const st = await fsp.stat(p);
    if (st.size > limit) throw new ArchiveError(`${this.source}: ${what} "${name}" is too large (${st.size} bytes, limit ${limit})`);
    return fsp.readFile(p);
  }

  /** Reads a blob of an OCI layout and checks its size and digest. */
  async readBlob(desc: Descriptor, what: string): Promise<Buffer> {
    const d = desc.digest as Digest;
    if (desc.size > MAX_JSON_BYTES) throw new ArchiveError(`${this.source}: ${what} ${d} is too large (${desc.size} bytes)`);
    const data = await this.readSmall(blobName(d), `${what} ${d}`);
    if (data.length !== desc.size) throw new ArchiveError(`${this.source}: ${what} ${blobName(d)} has ${data.length} bytes, but its descriptor says ${desc.size}`);
    const got = sha256(data);
    if (got !== d) throw new ArchiveError(`${this.source}: ${what} ${blobName(d)} does not match its digest (content is ${got})`);
    return data;
  }
}

// ---------------------------------------------------------------- stream helpers

class HashSink extends Writable {
  readonly counter = new HashCounter();
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.counter.hash.update(chunk);
    this.counter.size += chunk.length;
    cb();
  }
}

async function hashStream(input: Readable): Promise<{ digest: Digest; size: number }> {
  const sink = new HashSink();
  await pipeline(input, sink);
  return { digest: sink.counter.digest(), size: sink.counter.size };
}

async function sniff(file: string): Promise<'gzip' | 'zstd' | 'none'> {
  const fh = await fsp.open(file, 'r');
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    if (bytesRead >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    await fh.close();
  }
}

/** The diff_id (sha256 of the uncompressed tar) of a layer file, decompressing gzip. */
async function diffIdOf(file: string, compression: 'gzip' | 'none'): Promise<Digest> {
  const src = createReadStream(file);
  if (compression === 'none') return (await hashStream(src)).digest;
  const g = createGunzip();
  src.on('error', (e) => g.destroy(e));
  return (await hashStream(src.pipe(g))).digest;
}

// ---------------------------------------------------------------- docker archive

const DockerArchiveManifest = z
  .array(
    z
      .object({
        Config: z.string(),
        RepoTags: z.array(z.string()).nullish(),
        Layers: z.array(z.string()),
      })
      .passthrough(),
  )
  .min(1);

async function readDockerArchive(store: Store, src: LayoutSource): Promise<PendingImage[]> {
  const S = src.source;
  const raw = await src.readSmall('manifest.json', 'manifest.json');
  let parsedJson: unknown;
  try {
    parsedJson = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new ArchiveError(`${S}: manifest.json is not valid JSON: ${(e as Error).message}`);
  }
  const m = DockerArchiveManifest.safeParse(parsedJson);
  if (!m.success) {
    const issue = m.error.issues[0]!;
    throw new ArchiveError(`${S}: manifest.json is not a Docker archive manifest: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  // Layers already ingested, by resolved file: gzip descriptor and diff_id.
  const done = new Map<string, { desc: Descriptor; diffId: Digest }>();
  const out: PendingImage[] = [];
  for (const [i, entry] of m.data.entries()) {
    const where = `manifest.json[${i}]`;
    const configBytes = await src.readSmall(entry.Config, `${where} Config`);
    const id = sha256(configBytes);
    const named = /^([a-f0-9]{64})(?:\.json)?$/.exec(path.posix.basename(entry.Config));
    if (named && named[1] !== hexOf(id)) {
      throw new ArchiveError(`${S}: config ${entry.Config} does not match its digest (content is ${id})`);
    }
    let config: ImageConfig;
    try {
      config = parseImageConfig(configBytes, `${S}: ${entry.Config}`);
    } catch (e) {
      throw new ArchiveError((e as Error).message);
    }
    const diffIds = config.rootfs.diff_ids as Digest[];
    if (diffIds.length !== entry.Layers.length) {
      throw new ArchiveError(`${S}: ${where} lists ${entry.Layers.length} layers but its config ${entry.Config} has ${diffIds.length} diff_ids`);
    }
    const layers: Descriptor[] = [];
    for (const [j, name] of entry.Layers.entries()) {
      const what = `${where} layer ${j}`;
      const file = await src.resolve(name, what);
      const expected = diffIds[j]!;
      const prev = done.get(file);
      if (prev) {
        if (prev.diffId !== expected) throw new ArchiveError(`${S}: layer ${j} (${name}) of ${where} has diff_id ${prev.diffId}, but the config says ${expected}`);
        layers.push(prev.desc);
        continue;
      }
      const desc = await ingestDockerLayer(store, file, expected, `${S}: layer ${j} (${name}) of ${where}`);
      done.set(file, { desc, diffId: expected });
      layers.push(desc);
    }
    const tags: string[] = [];
    for (const t of entry.RepoTags ?? []) {
      try {
        tags.push(tagKey(t));
      } catch (e) {
        throw new ArchiveError(`${S}: ${where} RepoTags: ${(e as Error).message}`);
      }
    }
    // A new OCI manifest; deterministic, so the same archive always loads as the same digest.
    const manifestBytes = json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: id, size: configBytes.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    });
    await store.putBlob(configBytes, { digest: id });
    const man = await store.putBlob(manifestBytes);
    out.push({ record: { digest: man.digest, size: man.size, mediaType: OCI_MANIFEST, config: id }, tags });
  }
  return out;
}

/** Decompresses a gzip layer file and checks it against the config's diff_id. */
async function verifyGzipDiffId(file: string, diffId: Digest, what: string): Promise<void> {
  let got: Digest;
  try {
    got = await diffIdOf(file, 'gzip');
  } catch (e) {
    throw new ArchiveError(`${what}: cannot decompress the layer: ${(e as Error).message}`);
  }
  if (got !== diffId) throw new ArchiveError(`${what}: content does not match the config's diff_id: expected ${diffId}, got ${got}`);
}

/** Stores a Docker archive layer as gzip, checking its diff_id on the way. */
async function ingestDockerLayer(store: Store, file: string, diffId: Digest, what: string): Promise<Descriptor> {
  const compression = await sniff(file);
  if (compression === 'zstd') throw new ArchiveError(`${what}: zstd-compressed layers are not supported`);
  if (compression === 'gzip') {
    await verifyGzipDiffId(file, diffId, what);
    const blob = await store.ingest(createReadStream(file));
    return { mediaType: OCI_LAYER_GZIP, digest: blob.digest, size: blob.size };
  }
  // Plain tar: hash it (diff_id) while gzipping it into the store; commit only if it matches.
  const w = await store.blobWriter();
  const h = new HashCounter();
  try {
    await pipeline(createReadStream(file), h, createGzip(), w.stream);
  } catch (e) {
    await w.abort();
    throw new ArchiveError(`${what}: ${(e as Error).message}`);
  }
  if (h.digest() !== diffId) {
    await w.abort();
    throw new ArchiveError(`${what}: content does not match the config's diff_id: expected ${diffId}, got ${h.digest()}`);
  }
  const blob = await w.commit();
  return { mediaType: OCI_LAYER_GZIP, digest: blob.digest, size: blob.size };
}

// ---------------------------------------------------------------- OCI layout

const HOST_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** Names of an index.json entry: io.containerd.image.name, else ref.name when it is a full reference. */
function namesFromAnnotations(a: Record<string, string> | undefined, where: string): string[] {
  const full = a?.[ANNOTATION_IMAGE_NAME];
  const ref = a?.[ANNOTATION_REF_NAME];
  const candidate = full ?? (ref && /[:/@]/.test(ref) ? ref : undefined);
  if (!candidate) return []; // a bare tag ("latest") names no repository
  try {
    return [tagKey(candidate)];
  } catch (e) {
    throw new ArchiveError(`${where}: bad image name annotation: ${(e as Error).message}`);
  }
}

async function readOciLayout(store: Store, src: LayoutSource): Promise<PendingImage[]> {
  const S = src.source;
  if (!(await src.exists('index.json'))) {
    throw new ArchiveError(`${S}: not a Docker archive or OCI image layout (neither manifest.json nor index.json found)`);
  }
  if (!(await src.exists('oci-layout'))) throw new ArchiveError(`${S}: index.json found but no oci-layout file: not an OCI image layout`);
  let layout: { imageLayoutVersion?: unknown };
  try {
    layout = JSON.parse((await src.readSmall('oci-layout', 'oci-layout')).toString('utf8')) as typeof layout;
  } catch (e) {
    throw new ArchiveError(`${S}: oci-layout is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof layout?.imageLayoutVersion !== 'string' || !layout.imageLayoutVersion.startsWith('1.')) {
    throw new ArchiveError(`${S}: unsupported OCI image layout version ${JSON.stringify(layout?.imageLayoutVersion)}`);
  }
  const indexBytes = await src.readSmall('index.json', 'index.json');
  const top = wrapSchema(() => parseManifestJson(indexBytes, `${S}: index.json`));
  if (top.kind !== 'index') throw new ArchiveError(`${S}: index.json is an image manifest, not an image index`);
  if (top.index.manifests.length === 0) throw new ArchiveError(`${S}: index.json lists no images`);
  const out: PendingImage[] = [];
  const layersDone = new Set<string>();
  for (const [i, entry] of top.index.manifests.entries()) {
    const where = `${S}: index.json manifests[${i}]`;
    const tags = namesFromAnnotations(entry.annotations, where);
    let desc: Descriptor = entry;
    if (isIndexType(desc.mediaType)) desc = await pickPlatform(src, desc, where);
    if (!isManifestType(desc.mediaType)) throw new ArchiveError(`${where}: unsupported media type "${desc.mediaType}"`);
    const manifestBytes = await src.readBlob(desc, 'manifest');
    const parsed = wrapSchema(() => parseManifestJson(manifestBytes, `${S}: manifest ${desc.digest}`));
    if (parsed.kind !== 'manifest') throw new ArchiveError(`${where}: ${desc.digest} is an index, but its descriptor says ${desc.mediaType}`);
    const manifest: ImageManifest = parsed.manifest;
    const configBytes = await src.readBlob(manifest.config, 'config');
    const config = wrapSchema(() => parseImageConfig(configBytes, `${S}: config ${manifest.config.digest}`));
    const diffIds = config.rootfs.diff_ids as Digest[];
    if (diffIds.length !== manifest.layers.length) {
      throw new ArchiveError(`${S}: manifest ${desc.digest} has ${manifest.layers.length} layers but its config has ${diffIds.length} diff_ids`);
    }
    for (const [j, l] of manifest.layers.entries()) {
      if (layersDone.has(l.digest)) continue;
      await ingestOciLayer(store, src, l, diffIds[j]!, `${S}: layer ${j} (${blobName(l.digest as Digest)}) of manifest ${desc.digest}`);
      layersDone.add(l.digest);
    }
    await store.putBlob(configBytes, { digest: manifest.config.digest as Digest });
    await store.putBlob(manifestBytes, { digest: desc.digest as Digest });
    out.push({
      record: { digest: desc.digest as Digest, size: desc.size, mediaType: parsed.mediaType, config: manifest.config.digest as Digest },
      tags,
    });
  }
  return out;
}

function wrapSchema<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ArchiveError) throw e;
    throw new ArchiveError((e as Error).message);
  }
}

async function pickPlatform(src: LayoutSource, desc: Descriptor, where: string): Promise<Descriptor> {
  const bytes = await src.readBlob(desc, 'index');
  const parsed = wrapSchema(() => parseManifestJson(bytes, `${src.source}: index ${desc.digest}`));
  if (parsed.kind !== 'index') throw new ArchiveError(`${where}: ${desc.digest} is a manifest, but its descriptor says ${desc.mediaType}`);
  const arch = HOST_ARCH[process.arch] ?? process.arch;
  const hit = parsed.index.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch && isManifestType(m.mediaType));
  if (!hit) throw new ArchiveError(`${where}: index ${desc.digest} has no image for linux/${arch}`);
  return hit;
}

async function ingestOciLayer(store: Store, src: LayoutSource, l: Descriptor, diffId: Digest, what: string): Promise<void> {
  const d = l.digest as Digest;
  if (!isDigest(d)) throw new ArchiveError(`${what}: bad digest`);
  let compression: ReturnType<typeof layerCompression>;
  try {
    compression = layerCompression(l.mediaType);
  } catch (e) {
    throw new ArchiveError(`${what}: ${(e as Error).message}`);
  }
  if (await store.hasBlob(d)) return;
  const file = await src.resolve(blobName(d), what);
  const st = await fsp.stat(file);
  if (st.size !== l.size) throw new ArchiveError(`${what}: blob has ${st.size} bytes, but the manifest says ${l.size}`);
  if (compression === 'gzip') {
    await verifyGzipDiffId(file, diffId, what);
  } else if (compression === 'none' && d !== diffId) {
    throw new ArchiveError(`${what}: uncompressed layer digest ${d} differs from the config's diff_id ${diffId}`);
  }
  try {
    await store.ingest(createReadStream(file), { digest: d, size: l.size });
  } catch (e) {
    throw new ArchiveError(`${what}: ${(e as Error).message}`);
  }
}
