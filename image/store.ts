// The local content-addressable store.
//
// Layout under the root (default /var/lib/tsbuild, or --root / TSBUILD_ROOT):
//   blobs/sha256/<hex>   immutable content: layer blobs, configs, manifests
//   tmp/                 ingest files (ingest-<pid>-<rand>); same filesystem, so rename is atomic
//   index.json           images (by manifest digest) and tags -> manifest digest
//   locks/               flock files (see lock.ts)
//   snapshots/           unpacked layers keyed by chain id (snapshots.ts)
//
// Invariants:
//  - A file named blobs/sha256/<hex> always holds exactly the bytes whose sha256 is <hex>:
//    content goes to tmp/ first, is hashed while written, verified, fsynced and only then
//    renamed into place. A process killed mid-write leaves at most a tmp/ file, which
//    `prune`/`gc` removes once its writer pid is dead.
//  - index.json is replaced atomically under the index lock.
//  - GC runs under the exclusive gc lock; writers hold it shared (see lock.ts).
import { createReadStream, createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { HashCounter, hexOf, isDigest, parseDigest, sha256, type Digest } from './digest.js';
import { fsyncDir, pidAlive, writeJsonAtomic } from './atomic.js';
import { withLock, type LockMode } from './lock.js';

export const DEFAULT_ROOT = '/var/lib/tsbuild';

export function resolveRoot(root?: string): string {
  return path.resolve(root || process.env.TSBUILD_ROOT || DEFAULT_ROOT);
}

export interface ImageRecord {
  /** Manifest digest: the image's identity in the store and in registries. */
  digest: Digest;
  mediaType: string;
  size: number;
  /** Config digest: the image ID shown by `images`, as Docker does. */
  config: Digest;
  /** When it entered this store (ISO 8601). */
  added: string;
}

export interface IndexFile {
  version: 1;
  images: Record<string, ImageRecord>;
  /** Full normalised reference (docker.io/library/app:latest) -> manifest digest. */
  tags: Record<string, Digest>;
}

export class NotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

export class DigestMismatchError extends Error {}

export interface BlobInfo {
  digest: Digest;
  size: number;
}

/** A blob being written. Write to `stream`, then commit() or abort(). */
export class BlobWriter {
  readonly counter = new HashCounter();
  private file: WriteStream;
  private done = false;
  /** Write here; bytes are hashed on the way to the temp file. */
  readonly stream: HashCounter;
  private finished: Promise<void>;

  constructor(
    private store: Store,
    readonly tmpPath: string,
  ) {
    this.file = createWriteStream(tmpPath, { mode: 0o644 });
    this.stream = this.counter;
    this.finished = pipeline(this.counter, this.file);
    // Avoid an unhandled rejection if the caller aborts before awaiting.
    this.finished.catch(() => {});
  }

  /**
   * Waits for the stream to end (the caller must have ended it, e.g. via pipeline),
   * verifies the digest/size if given, fsyncs and renames into place.
   */
  async commit(expected?: { digest?: Digest; size?: number }): Promise<BlobInfo> {
    if (this.done) throw new Error('blob writer already finished');
    this.done = true;
    try {
      await this.finished;
      const digest = this.counter.digest();
      const size = this.counter.size;
      if (expected?.digest && expected.digest !== digest) {
        throw new DigestMismatchError(`content digest mismatch: expected ${expected.digest}, got ${digest}`);
      }
      if (expected?.size !== undefined && expected.size !== size) {
        throw new DigestMismatchError(`content size mismatch for ${digest}: expected ${expected.size} bytes, got ${size}`);
      }
      const fh = await fsp.open(this.tmpPath, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      const dest = this.store.blobPath(digest);
      // Same content under the same name: if it is already there, keep the old one.
      if (await exists(dest)) {
        await fsp.rm(this.tmpPath, { force: true });
      } else {
        await fsp.rename(this.tmpPath, dest);
        await fsyncDir(path.dirname(dest));
      }
      return { digest, size };
    } catch (e) {
      await fsp.rm(this.tmpPath, { force: true });
      throw e;
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.counter.destroy();
    this.file.destroy();
    await fsp.rm(this.tmpPath, { force: true });
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export class Store {
  private constructor(readonly root: string) {}

  /** Opens (creating if needed) the store at root, TSBUILD_ROOT or /var/lib/tsbuild. */
  static async open(root?: string): Promise<Store> {
    const r = resolveRoot(root);
    const s = new Store(r);
    try {
      for (const d of [path.join('blobs', 'sha256'), 'tmp', 'locks']) await fsp.mkdir(path.join(r, d), { recursive: true, mode: 0o700 });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
        throw new Error(`cannot use the tsbuild state directory ${r} (${code}): run tsbuild as root, or point --root / TSBUILD_ROOT at a writable directory`);
      }
      throw e;
    }
    return s;
  }

  get tmpDir(): string {
    return path.join(this.root, 'tmp');
  }

  /** A fresh temp path inside the store (same filesystem as the blobs); the pid lets GC spot orphans. */
  tmpPath(kind = 'ingest'): string {
    return path.join(this.tmpDir, `${kind}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  blobPath(d: Digest): string {
    return path.join(this.root, 'blobs', 'sha256', hexOf(parseDigest(d)));
  }

  async hasBlob(d: Digest): Promise<boolean> {
    return exists(this.blobPath(d));
  }

  async blobSize(d: Digest): Promise<number> {
    try {
      return (await fsp.stat(this.blobPath(d))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${d} not found in store ${this.root}`);
      throw e;
    }
  }

  /** Reads a (small) blob fully and checks it against its digest. */
  async readBlob(d: Digest): Promise<Buffer> {
    let data: Buffer;
    try {
      data = await fsp.readFile(this.blobPath(d));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${d} not found in store ${this.root}`);
      throw e;
    }
    if (sha256(data) !== d) throw new DigestMismatchError(`store corrupted: blob ${d} does not match its digest`);
    return data;
  }

  blobStream(d: Digest, opts?: { start?: number }): Readable {
    return createReadStream(this.blobPath(d), opts);
  }

  async blobWriter(): Promise<BlobWriter> {
    return new BlobWriter(this, this.tmpPath());
  }

  async putBlob(data: Buffer | string, expected?: { digest?: Digest; size?: number }): Promise<BlobInfo> {
    const w = await this.blobWriter();
    w.stream.end(data);
    return w.commit(expected);
  }

  /** Streams input into the store; verifies against expected before it becomes visible. */
  async ingest(input: Readable, expected?: { digest?: Digest; size?: number }): Promise<BlobInfo> {
    const w = await this.blobWriter();
    try {
      await pipeline(input, w.stream);
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w.commit(expected);
  }

  // ---- locks ---------------------------------------------------------------

  lockPath(name: string): string {
    return path.join(this.root, 'locks', `${name}.lock`);
  }

  /** Hold while writing blobs that will be referenced by a later index update. */
  withWriteSession<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(this.lockPath('gc'), 'shared', fn);
  }

  withLock<T>(name: string, mode: LockMode, fn: () => Promise<T>): Promise<T> {
    return withLock(this.lockPath(name), mode, fn);
  }

  // ---- index ---------------------------------------------------------------

  get indexPath(): string {
    return path.join(this.root, 'index.json');
  }

  async readIndex(): Promise<IndexFile> {
    let text: string;
    try {
      text = await fsp.readFile(this.indexPath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, images: {}, tags: {} };
      throw e;
    }
    let idx: IndexFile;
    try {
      idx = JSON.parse(text) as IndexFile;
    } catch (e) {
      throw new Error(`store index ${this.indexPath} is not valid JSON: ${(e as Error).message}`);
    }
    if (idx.version !== 1 || typeof idx.images !== 'object' || typeof idx.tags !== 'object') {
      throw new Error(`store index ${this.indexPath} has an unknown format (version ${String(idx.version)})`);
    }
    return idx;
  }

  /** Read-modify-write of the index under the exclusive index lock; the write is atomic. */
  async updateIndex<T>(fn: (idx: IndexFile) => T | Promise<T>): Promise<T> {
    return this.withLock('index', 'exclusive', async () => {
      const idx = await this.readIndex();
      const result = await fn(idx);
      await writeJsonAtomic(this.indexPath, idx);
      return result;
    });
  }

  // ---- garbage collection -------------------------------------------------

  /**
   * Removes blobs not reachable from any image record, and orphaned temp files
   * whose writer process is gone. `extraRoots` lists more digests to keep.
   */
  async gc(opts: { extraRoots?: Digest[]; dryRun?: boolean } = {}): Promise<{ removed: Digest[]; freedBytes: number; tmpRemoved: number }> {
    return this.withLock('gc', 'exclusive', async () => {
      const idx = await this.readIndex();
      const keep = new Set<string>(opts.extraRoots ?? []);
      for (const rec of Object.values(idx.images)) {
        for (const d of await this.referencedBy(rec)) keep.add(d);
      }
      const removed: Digest[] = [];
      let freedBytes = 0;
      const dir = path.join(this.root, 'blobs', 'sha256');
      for (const name of await fsp.readdir(dir)) {
        const d = `sha256:${name}`;
        if (!isDigest(d) || keep.has(d)) continue;
        const p = path.join(dir, name);
        const st = await fsp.stat(p);
        if (!opts.dryRun) await fsp.rm(p, { force: true });
        removed.push(d);
        freedBytes += st.size;
      }
      let tmpRemoved = 0;
      for (const name of await fsp.readdir(this.tmpDir)) {
        // ingest-<pid>-…: keep it while its writer (possibly this process) is alive.
        const m = /^[a-z]+-(\d+)-/.exec(name);
        if (m && pidAlive(Number(m[1]))) continue;
        if (!opts.dryRun) await fsp.rm(path.join(this.tmpDir, name), { recursive: true, force: true });
        tmpRemoved++;
      }
      return { removed, freedBytes, tmpRemoved };
    });
  }

  /** Every blob an image record needs: manifest (or index and its children), config, layers. */
  async referencedBy(rec: { digest: Digest }): Promise<Digest[]> {
    const out: Digest[] = [rec.digest];
    let raw: Buffer;
    try {
      raw = await fsp.readFile(this.blobPath(rec.digest));
    } catch {
      return out;
    }
    const j = JSON.parse(raw.toString('utf8')) as {
      config?: { digest: string };
      layers?: { digest: string }[];
      manifests?: { digest: string }[];
    };
    if (j.config && isDigest(j.config.digest)) out.push(j.config.digest);
    for (const l of j.layers ?? []) if (isDigest(l.digest)) out.push(l.digest);
    for (const m of j.manifests ?? []) if (isDigest(m.digest)) out.push(...(await this.referencedBy({ digest: m.digest })));
    return out;
  }
}
