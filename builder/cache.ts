// The build cache: one small JSON record per step, keyed by everything the
// step's result depends on (builder/build.ts computes the key: the parent's
// identity — its diff_ids and container config, base images by content, never
// by name — the instruction after expansion, the build args it sees, and for
// COPY/ADD a digest of the sources' content and metadata).
//
//   <root>/buildcache/<2 hex>/<64 hex>.json    a step's result
//   <root>/buildcache/files-<16 hex>.json      content digests of a context's files by inode/size/mtime/ctime
//
// A record holds the step's layer (descriptor + diff_id, or none), its history
// entry and the container config after it, so a hit replays the step without
// touching any file. Records are written atomically; a record whose layer blob
// was garbage-collected is a miss.
import fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeJsonAtomic } from '../image/atomic.js';
import type { Digest } from '../image/digest.js';
import type { ContainerConfig, History } from '../image/schemas.js';
import type { Store } from '../image/store.js';
import type { ContentHasher } from './copy.js';

export interface CachedLayer {
  mediaType: string;
  digest: Digest;
  size: number;
  diffId: Digest;
}

export interface CacheRecord {
  v: 1;
  layer: CachedLayer | null;
  /** null: the step adds no history entry (ONBUILD). */
  history: History | null;
  config: ContainerConfig;
  /** MAINTAINER: the image's author. */
  author?: string;
}

export function cacheDir(root: string): string {
  return path.join(root, 'buildcache');
}

function recordPath(root: string, key: string): string {
  return path.join(cacheDir(root), key.slice(0, 2), `${key}.json`);
}

export function cacheKey(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

export async function readCache(store: Store, key: string): Promise<CacheRecord | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(recordPath(store.root, key), 'utf8');
  } catch {
    return undefined;
  }
  let rec: CacheRecord;
  try {
    rec = JSON.parse(text) as CacheRecord;
  } catch {
    return undefined; // a torn record cannot exist (atomic writes), but be safe: a miss
  }
  if (rec.v !== 1 || typeof rec.config !== 'object' || (typeof rec.history !== 'object' && rec.history !== null)) return undefined;
  if (rec.layer && !(await store.hasBlob(rec.layer.digest))) return undefined;
  return rec;
}

export async function writeCache(store: Store, key: string, rec: CacheRecord): Promise<void> {
  const p = recordPath(store.root, key);
  await fsp.mkdir(path.dirname(p), { recursive: true, mode: 0o700 });
  await writeJsonAtomic(p, rec);
}

/** Removes every cache record (prune); returns how many. */
export async function clearCache(root: string): Promise<number> {
  let n = 0;
  const dir = cacheDir(root);
  let subs: string[];
  try {
    subs = await fsp.readdir(dir);
  } catch {
    return 0;
  }
  for (const s of subs) {
    const p = path.join(dir, s);
    const st = await fsp.lstat(p);
    if (st.isDirectory()) n += (await fsp.readdir(p)).length;
    else n++;
    await fsp.rm(p, { recursive: true, force: true });
  }
  return n;
}

const SMALL_FILE = 1 << 20;

type FileEntry = [size: number, mtimeMs: number, ctimeMs: number, ino: number, sha256: string];

/**
 * Content digests of files, remembered by path + inode + size + mtime + ctime,
 * so a rebuild does not re-read unchanged files. `touch` changes mtime and
 * ctime: the file is read again, and the same content gives the same digest.
 */
export class FileHashCache implements ContentHasher {
  private entries: Record<string, FileEntry> = {};
  private dirty = false;
  private loaded = false;
  /** Where the digests persist; undefined: this build only (a context unpacked from stdin). */
  readonly file: string | undefined;

  constructor(root: string, scope: string | undefined) {
    this.file = scope === undefined ? undefined : path.join(cacheDir(root), `files-${createHash('sha256').update(scope).digest('hex').slice(0, 16)}.json`);
  }

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    if (!this.file) return;
    try {
      const j = JSON.parse(fs.readFileSync(this.file, 'utf8')) as { v: number; entries: Record<string, FileEntry> };
      if (j.v === 1 && j.entries && typeof j.entries === 'object') this.entries = j.entries;
    } catch {
      /* none yet */
    }
  }

  async hash(p: string, st: fs.Stats): Promise<string> {
    this.load();
    const e = this.entries[p];
    if (e && e[0] === st.size && e[1] === st.mtimeMs && e[2] === st.ctimeMs && e[3] === st.ino) return e[4];
    const h = createHash('sha256');
    // Small files in one read: a stream per file costs more than the hashing.
    if (st.size <= SMALL_FILE) h.update(fs.readFileSync(p));
    else for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
    const sum = h.digest('hex');
    this.entries[p] = [st.size, st.mtimeMs, st.ctimeMs, st.ino, sum];
    this.dirty = true;
    return sum;
  }

  async save(): Promise<void> {
    if (!this.dirty || !this.file) return;
    await fsp.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await writeJsonAtomic(this.file, { v: 1, entries: this.entries });
    this.dirty = false;
  }
}
