// COPY and ADD: sources -> the new layer, laid out as a directory.
//
// planCopy decides the layer in memory (a LayerPlan, layer-plan.ts: the build
// tars it straight from the sources and writes the dir only when it needs
// it); copyToLayer plans and writes the dir at once (WORKDIR, RUN bind mounts).
// The layer starts empty. Destinations are resolved in the merged view of
// the parent image with the layer on top (merged.ts), so symlinks in the
// image are followed as if its root were `/`: a link to `/` leads to the
// image's root, never the host's. A parent directory that already exists in
// the image is copied up into the layer with its mode, owner and mtime (as an
// overlay upper dir would hold it); missing parents are created 0755, owned by
// --chown's user or root. Files keep their mode and mtime; their owner is
// --chown's, else root for the build context, else the source's (other
// stages, archives). Hardlinked sources stay hardlinked.
//
// Docker's rules:
//  - a directory source copies its *contents* (wildcard matches too);
//  - a file goes to DEST/name when DEST ends in `/`, is an existing directory,
//    or several sources were given; otherwise to DEST itself;
//  - several sources need a directory destination;
//  - ADD extracts a local tar (plain, gzip, bzip2, xz: detected by content)
//    into DEST; URLs and heredocs arrive here as files in a temp dir.
import { spawn } from 'node:child_process';
import { createReadStream, promises as fsp } from 'node:fs';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { Readable } from 'node:stream';
import { applyLayer } from '../image/layer-applier.js';
import { lgetxattr, llistxattr } from '../image/native.js';
import { resolveScoped } from '../image/safepath.js';
import { LayerPlan, PlanDir, PlanError, PlanInode, planSource, type InodeType, type PlanEntry, type PlanMeta } from './layer-plan.js';
import { MergedView, components, type Found } from './merged.js';
import { DirFS, type PathFilter, type SourceFS } from './sourcefs.js';

export { LayerPlan, PlanError } from './layer-plan.js';

/** A build error in a COPY/ADD step; the executor adds file:line. */
export class CopyError extends Error {}

export interface CopyItem {
  fs: SourceFS;
  /** The source as written (expanded), relative to the source's root. */
  path: string;
}

export interface CopyRequest {
  items: CopyItem[];
  /** Absolute destination in the image (WORKDIR already applied). */
  dest: string;
  /** The destination as written ended in `/` (or was `.`): it is a directory. */
  destIsDir: boolean;
  chown?: { uid: number; gid: number };
  /** --chmod, applied to every copied file and directory. */
  chmod?: (mode: number, isDir: boolean) => number;
  /** --exclude patterns, matched against paths relative to each source. */
  exclude?: PathFilter;
  /** --parents: keep each source's path below DEST. */
  parents: boolean;
  /** ADD: extract local archives. */
  extractArchives: boolean;
  /** Seconds since the epoch for directories this step creates. */
  now: number;
  /** Temp dir for extracting archives (inside the store, removed by the caller). */
  tmpDir: string;
  /** WORKDIR: just create this (resolved) directory, with its missing parents. */
  mkdir?: string[];
}

interface Match {
  fs: SourceFS;
  /** Components as matched (links not followed): the basename and --parents come from here. */
  written: string[];
  /** Resolved components (links followed inside the source root). */
  comps: string[];
  st: fs.Stats;
}

// ---------------------------------------------------------------- wildcards

export function hasWildcard(p: string): boolean {
  return /[*?[]/.test(p);
}

/** Go's filepath.Match for one path component (`*`, `?`, `[...]`, `[^...]`, `\` escapes). */
export function globToRegExp(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end === -1) throw new CopyError(`syntax error in pattern ${JSON.stringify(pattern)}`);
      let body = pattern.slice(i + 1, end);
      let neg = false;
      if (body.startsWith('^') || body.startsWith('!')) {
        neg = true;
        body = body.slice(1);
      }
      re += `[${neg ? '^' : ''}${body.replace(/[\]\\]/g, '\\$&')}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(re + '$', 's');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Expands one source (wildcards in any component) in its filesystem. `..` is clamped at the root. */
export function expandSource(src: SourceFS, p: string): Match[] {
  const pattern = components(p);
  let current: string[][] = [[]];
  for (let i = 0; i < pattern.length; i++) {
    const comp = pattern[i]!;
    if (!hasWildcard(comp)) {
      current = current.map((c) => [...c, comp.replace(/\\(.)/g, '$1')]);
      continue;
    }
    const re = globToRegExp(comp);
    const next: string[][] = [];
    for (const c of current) {
      let dir: string[];
      try {
        dir = src.resolve(c.join('/'), true);
      } catch {
        continue;
      }
      const st = src.lstat(dir);
      if (!st?.isDirectory()) continue;
      for (const n of src.readdir(dir)) if (re.test(n)) next.push([...c, n]);
    }
    current = next;
  }
  const out: Match[] = [];
  for (const written of current) {
    const comps = src.resolve(written.join('/'), true);
    const st = src.lstat(comps);
    if (st) out.push({ fs: src, written, comps, st });
  }
  return out;
}

/** All matches of the request's sources; a source matching nothing is an error, as in BuildKit. */
function expandAll(items: CopyItem[]): Match[] {
  const out: Match[] = [];
  for (const item of items) {
    const ms = expandSource(item.fs, item.path);
    if (ms.length === 0) {
      if (hasWildcard(item.path)) throw new CopyError(`no source files were specified: ${JSON.stringify(item.path)} matches nothing in the ${item.fs.description}`);
      throw new CopyError(`${JSON.stringify(item.path)} not found in the ${item.fs.description}: check the path (and .dockerignore)`);
    }
    out.push(...ms);
  }
  return out;
}

// ---------------------------------------------------------------- cache key

/** Hashes file contents; a cache keyed by inode, size, mtime and ctime spares unchanged files. */
export interface ContentHasher {
  hash(hostPath: string, st: fs.Stats): Promise<string>;
}

export const plainHasher: ContentHasher = {
  async hash(p) {
    const h = createHash('sha256');
    for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
    return h.digest('hex');
  },
};

/**
 * A digest of everything the sources would copy: names, types, permission
 * bits, sizes, link targets, contents (and owners where they are kept) —
 * never mtimes, so touching a file leaves the cache valid. Sources with an
 * identity (other stages, images) are named by it instead of being walked.
 */
export async function sourcesDigest(items: CopyItem[], exclude: PathFilter | undefined, hasher: ContentHasher, identityOf: (fs: SourceFS) => string | undefined): Promise<string> {
  const h = createHash('sha256');
  for (const item of items) {
    h.update(`item ${JSON.stringify(item.path)}\n`);
    const id = identityOf(item.fs);
    if (id !== undefined) {
      h.update(`identity ${id}\n`);
      continue;
    }
    const matches = expandAll([item]);
    for (const m of matches) {
      h.update(`match ${JSON.stringify(m.written.join('/'))}\n`);
      await hashEntry(h, m.fs, m.comps, m.st, '', exclude, hasher);
    }
  }
  return h.digest('hex');
}

async function hashEntry(h: ReturnType<typeof createHash>, src: SourceFS, comps: string[], st: fs.Stats, rel: string, exclude: PathFilter | undefined, hasher: ContentHasher): Promise<void> {
  const owner = src.preserveOwner ? ` ${st.uid}:${st.gid}` : '';
  const perm = (st.mode & 0o7777).toString(8);
  if (st.isDirectory()) {
    h.update(`d ${JSON.stringify(rel)} ${perm}${owner}\n`);
    for (const n of src.readdir(comps)) {
      const r = rel ? `${rel}/${n}` : n;
      if (exclude?.excludes(r)) continue;
      const c = [...comps, n];
      const cst = src.lstat(c);
      if (cst) await hashEntry(h, src, c, cst, r, exclude, hasher);
    }
  } else if (st.isSymbolicLink()) {
    h.update(`l ${JSON.stringify(rel)} ${perm}${owner} ${JSON.stringify(fs.readlinkSync(src.hostPath(comps)))}\n`);
  } else if (st.isFile()) {
    const sum = await hasher.hash(src.hostPath(comps), st);
    h.update(`f ${JSON.stringify(rel)} ${perm}${owner} ${st.size} ${sum} ${st.nlink > 1 ? `${st.dev}:${st.ino}` : ''}\n`);
  } else {
    h.update(`o ${JSON.stringify(rel)} ${perm}${owner} ${st.mode >> 12} ${st.rdev}\n`);
  }
}

// ---------------------------------------------------------------- planning the layer

const SKIP_XATTR = (n: string) => n.startsWith('trusted.overlay.') || n === 'security.selinux';

/**
 * The xattrs copying `from` gives an entry of type `type`: all but overlay's
 * and SELinux's; user.* only on files and dirs (the kernel refuses them elsewhere).
 */
function xattrsOf(from: string, type: InodeType | 'dir'): Map<string, Buffer> | undefined {
  let names: string[];
  try {
    names = llistxattr(from);
  } catch {
    return undefined;
  }
  let out: Map<string, Buffer> | undefined;
  for (const n of names) {
    if (SKIP_XATTR(n)) continue;
    if (n.startsWith('user.') && type !== 'file' && type !== 'dir') continue;
    const v = lgetxattr(from, n);
    if (v === undefined) continue;
    (out ??= new Map()).set(n, v);
  }
  return out;
}

const display = (comps: readonly string[]) => `/${comps.join('/')}`;


/**
 * Builds the LayerPlan of a COPY/ADD: what the layer dir would hold, decided
 * as if it were written entry by entry (later sources replace earlier ones,
 * parents are copied up from the image, hardlinked sources stay linked).
 */
class LayerPlanner {
  readonly plan = new LayerPlan();
  /** Source inode -> the planned inode (hardlinks). */
  private links = new Map<string, PlanInode>();

  constructor(
    readonly lower: MergedView,
    readonly req: CopyRequest,
  ) {}

  private owner(st: fs.Stats | undefined, src: SourceFS | undefined): { uid: number; gid: number } {
    if (this.req.chown) return this.req.chown;
    if (st && src?.preserveOwner) return { uid: st.uid, gid: st.gid };
    return { uid: 0, gid: 0 };
  }

  private meta(m: PlanMeta): PlanMeta {
    this.plan.checkMeta(m);
    return m;
  }

  // ---- the image with the planned layer on top (what a destination resolves in)

  /** The entry at `comps` (no links followed): the layer's if it has one, else the image's. */
  private lookup(comps: readonly string[]): { layer: PlanEntry } | { image: Found } | undefined {
    let d = this.plan.root;
    for (let i = 0; i < comps.length; i++) {
      const e = d.children.get(comps[i]!);
      if (e === undefined) break;
      // A 0:0 char device is a whiteout to MergedView: it hides the path (and the image's entry).
      if (e instanceof PlanInode && e.type === 'char' && e.dev!.major === 0 && e.dev!.minor === 0) return undefined;
      if (i === comps.length - 1) return { layer: e };
      if (!(e instanceof PlanDir)) return undefined; // a non-dir in the layer hides the image below it
      d = e;
    }
    if (comps.length === 0) return { layer: this.plan.root };
    const f = this.lower.lookup(comps);
    return f ? { image: f } : undefined;
  }

  kind(comps: readonly string[]): 'dir' | 'file' | 'symlink' | 'other' | 'none' {
    if (comps.length === 0) return 'dir';
    const f = this.lookup(comps);
    if (!f) return 'none';
    if ('layer' in f) {
      const e = f.layer;
      if (e instanceof PlanDir) return 'dir';
      return e.type === 'symlink' ? 'symlink' : e.type === 'file' ? 'file' : 'other';
    }
    const st = f.image.st;
    return st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
  }

  /**
   * Resolves `p` to components without symlinks, following every link inside
   * the image's root (absolute targets restart at the root, `..` stops at it),
   * as MergedView.resolve does, with the planned layer on top.
   */
  resolve(p: string, followFinal = false): string[] {
    return resolveScoped(p, followFinal, (comps) => {
      const f = this.lookup(comps);
      if (!f) return undefined;
      if ('layer' in f) return f.layer instanceof PlanInode && f.layer.type === 'symlink' ? f.layer.target : undefined;
      return f.image.st.isSymbolicLink() ? fs.readlinkSync(f.image.abs) : undefined;
    });
  }

  // ---- Docker's rules

  /**
   * mkdir -p of resolved `comps` in the layer. Existing image dirs are
   * copied up with their metadata; new ones are 0755 (the last one takes
   * `meta` from a source dir when given).
   */
  ensureDir(comps: readonly string[], meta?: { st: fs.Stats; src: SourceFS }): PlanDir {
    let dir = this.plan.root;
    for (let i = 0; i < comps.length; i++) {
      const prefix = comps.slice(0, i + 1);
      const name = comps[i]!;
      const isLast = i === comps.length - 1;
      const own = dir.children.get(name);
      if (own instanceof PlanDir) {
        dir = own;
        continue;
      }
      if (own) throw new CopyError(`cannot copy to ${display(comps)}: ${display(prefix)} is not a directory`);
      const lowerFound = this.lower.lookup(prefix);
      let next: PlanDir;
      if (lowerFound?.st.isDirectory()) {
        const ls = lowerFound.st;
        next = new PlanDir(this.meta({ mode: ls.mode & 0o7777, uid: ls.uid, gid: ls.gid, atime: ls.atimeMs / 1000, mtime: ls.mtimeMs / 1000, xattrs: xattrsOf(lowerFound.abs, 'dir') }));
      } else if (lowerFound) {
        throw new CopyError(`cannot copy to ${display(comps)}: ${display(prefix)} is not a directory in the image`);
      } else if (isLast && meta) {
        const o = this.owner(meta.st, meta.src);
        const mode = meta.st.mode & 0o7777;
        const t = meta.st.mtimeMs / 1000;
        next = new PlanDir(this.meta({ mode: this.req.chmod ? this.req.chmod(mode, true) : mode, uid: o.uid, gid: o.gid, atime: t, mtime: t }));
      } else {
        const o = this.owner(undefined, undefined);
        next = new PlanDir(this.meta({ mode: 0o755, uid: o.uid, gid: o.gid, atime: this.req.now, mtime: this.req.now }));
      }
      dir.children.set(name, next);
      dir = next;
    }
    return dir;
  }

  /** Copies the contents of a source dir into the resolved destination dir `dest`. */
  copyDirContents(src: SourceFS, srcComps: string[], srcSt: fs.Stats | undefined, dest: string[], rel: string): void {
    this.ensureDir(dest, srcSt ? { st: srcSt, src } : undefined);
    for (const name of src.readdir(srcComps)) {
      const r = rel ? `${rel}/${name}` : name;
      if (this.req.exclude?.excludes(r)) continue;
      const childSrc = [...srcComps, name];
      const st = src.lstat(childSrc);
      if (!st) continue;
      let childDest = [...dest, name];
      if (st.isDirectory()) {
        // A link in the image where the source has a directory is followed, inside the image's root.
        if (this.kind(childDest) === 'symlink') childDest = this.resolve(display(childDest), true);
        this.copyDirContents(src, childSrc, st, childDest, r);
      } else {
        this.copyNonDir(src, childSrc, st, childDest);
      }
    }
  }

  /** One file, symlink or special file at resolved `dest` (the final component is not followed). */
  copyNonDir(src: SourceFS, srcComps: string[], st: fs.Stats, dest: string[]): void {
    if (dest.length === 0) throw new CopyError(`cannot copy ${display(srcComps)} over the root directory`);
    if (st.isSocket()) return;
    const parent = this.ensureDir(dest.slice(0, -1));
    const name = dest[dest.length - 1]!;
    const existing = parent.children.get(name);
    if (existing) {
      unlink(existing);
      parent.children.delete(name);
    }
    const from = src.hostPath(srcComps);
    const own = this.owner(st, src);
    let key: string | undefined;
    if (st.nlink > 1) {
      key = `${src.description}\0${st.dev}:${st.ino}`;
      const first = this.links.get(key);
      if (first && first.names > 0) {
        parent.children.set(name, first);
        first.names++;
        return;
      }
    }
    const mode = this.req.chmod ? this.req.chmod(st.mode & 0o7777, false) : st.mode & 0o7777;
    const times = { atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 };
    let inode: PlanInode;
    if (st.isSymbolicLink()) {
      // A symlink's own mode is always 0777; --chmod does not apply.
      inode = new PlanInode('symlink', this.meta({ mode: 0o777, ...own, ...times, xattrs: xattrsOf(from, 'symlink') }), undefined, fs.readlinkSync(from));
    } else if (st.isFile()) {
      inode = new PlanInode('file', this.meta({ mode, ...own, ...times, xattrs: xattrsOf(from, 'file') }), planSource(from, st));
    } else if (st.isFIFO()) {
      inode = new PlanInode('fifo', this.meta({ mode, ...own, ...times, xattrs: xattrsOf(from, 'fifo') }));
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const type = st.isCharacterDevice() ? 'char' : 'block';
      const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
      const minor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & ~0xffn));
      inode = new PlanInode(type, this.meta({ mode, ...own, ...times, xattrs: xattrsOf(from, type) }), undefined, undefined, { major, minor });
    } else {
      throw new CopyError(`${display(srcComps)}: unsupported file type`);
    }
    inode.names = 1;
    parent.children.set(name, inode);
    if (key !== undefined) this.links.set(key, inode);
  }
}

/** Drops a planned entry that a later source replaces (with everything below it). */
function unlink(e: PlanEntry): void {
  if (e instanceof PlanInode) {
    e.names--;
    return;
  }
  for (const c of e.children.values()) unlink(c);
}

// ---------------------------------------------------------------- archives (ADD)

type ArchiveKind = 'tar' | 'gzip' | 'bzip2' | 'xz';

function validTarHeader(b: Buffer): boolean {
  if (b.length < 512) return false;
  if (b.subarray(0, 512).every((x) => x === 0)) return false;
  const field = b.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  return sum === parseInt(field, 8);
}

function decompressor(kind: ArchiveKind, file: string): { stream: Readable; stop: () => void } {
  if (kind === 'tar') {
    const s = createReadStream(file);
    return { stream: s, stop: () => s.destroy() };
  }
  if (kind === 'gzip') {
    const s = createReadStream(file).pipe(zlib.createGunzip());
    return { stream: s, stop: () => s.destroy() };
  }
  const child = spawn(kind === 'bzip2' ? 'bzip2' : 'xz', ['-dc'], { stdio: [fs.openSync(file, 'r'), 'pipe', 'ignore'] });
  child.on('error', () => {});
  return { stream: child.stdout!, stop: () => child.kill() };
}

async function readPrefix(s: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let len = 0;
  try {
    for await (const c of s) {
      chunks.push(c as Buffer);
      len += (c as Buffer).length;
      if (len >= n) break;
    }
  } catch {
    /* not decompressible: not an archive */
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** Is the local file a tar archive (plain or compressed)? Docker decides by content, not by name. */
export async function archiveKind(file: string): Promise<ArchiveKind | undefined> {
  const fh = await fsp.open(file, 'r');
  const head = Buffer.alloc(6);
  try {
    await fh.read(head, 0, 6, 0);
  } finally {
    await fh.close();
  }
  let kind: ArchiveKind = 'tar';
  if (head[0] === 0x1f && head[1] === 0x8b) kind = 'gzip';
  else if (head.subarray(0, 3).toString('latin1') === 'BZh') kind = 'bzip2';
  else if (head.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) kind = 'xz';
  const d = decompressor(kind, file);
  const prefix = await readPrefix(d.stream, 512);
  d.stop();
  return validTarHeader(prefix) ? kind : undefined;
}

async function extractArchive(kind: ArchiveKind, file: string, into: string): Promise<void> {
  const d = decompressor(kind === 'gzip' ? 'tar' : kind, file); // applyLayer gunzips by itself
  try {
    await applyLayer(d.stream, into, { mode: 'merged' });
  } catch (e) {
    d.stop();
    throw new CopyError(`extracting ${path.basename(file)}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------- the step

/**
 * Plans the layer of a COPY/ADD on top of `lower` (the parent image; empty for
 * --link): what copyToLayer would write, without writing it. Archives are
 * extracted under req.tmpDir, which must outlive the plan (its tar and
 * materialize read from there); the caller removes it.
 */
export async function planCopy(lower: MergedView, req: CopyRequest): Promise<LayerPlan> {
  const w = new LayerPlanner(lower, req);
  if (req.mkdir) w.ensureDir(req.mkdir);
  const matches = expandAll(req.items);
  const dest = w.resolve(req.dest, true);
  const destKind = w.kind(dest);
  if (req.items.length > 1 && !req.destIsDir && destKind !== 'dir') {
    throw new CopyError(`When using COPY with more than one source file, the destination must be a directory and end with a /`);
  }
  const intoDir = req.destIsDir || destKind === 'dir' || matches.length > 1;
  let n = 0;
  for (const m of matches) {
    const name = m.written[m.written.length - 1];
    const parentsPart = req.parents ? m.written.slice(0, -1) : [];
    if (m.st.isDirectory()) {
      const target = req.parents ? [...dest, ...m.written] : dest;
      w.copyDirContents(m.fs, m.comps, m.written.length ? m.st : undefined, target, '');
      continue;
    }
    if (req.extractArchives && m.st.isFile()) {
      const kind = await archiveKind(m.fs.hostPath(m.comps));
      if (kind) {
        const tmp = path.join(req.tmpDir, `extract-${n++}`);
        await fsp.mkdir(tmp, { recursive: true, mode: 0o755 });
        await extractArchive(kind, m.fs.hostPath(m.comps), tmp);
        w.copyDirContents(new DirFS(tmp, `archive ${name}`, undefined, true), [], undefined, dest, '');
        continue;
      }
    }
    if (name === undefined) throw new CopyError('cannot copy the root of a source as a file');
    const target = intoDir || req.parents ? [...dest, ...parentsPart, name] : dest;
    if (req.exclude?.excludes(m.written.join('/'))) continue;
    w.copyNonDir(m.fs, m.comps, m.st, target);
  }
  return w.plan;
}

/**
 * Copies the request's sources into `layerDir` (fresh and empty), as the
 * layer of a COPY/ADD on top of `lower` (the parent image; empty for --link).
 */
export async function copyToLayer(lower: MergedView, layerDir: string, req: CopyRequest): Promise<void> {
  const plan = await planCopy(lower, req);
  try {
    await plan.materialize(layerDir);
  } catch (e) {
    if (e instanceof PlanError) throw new CopyError(e.message);
    throw e;
  }
}

/** Parses --chmod: octal (0755) or symbolic (u+x,g-w,o=r). */
export function parseChmod(spec: string): (mode: number, isDir: boolean) => number {
  if (/^[0-7]{1,4}$/.test(spec)) {
    const m = parseInt(spec, 8);
    return () => m;
  }
  const clauses = spec.split(',');
  const ops: { who: number; op: string; perm: string }[] = [];
  for (const c of clauses) {
    const m = /^([ugoa]*)([+=-])([rwxXst]*)$/.exec(c);
    if (!m) throw new CopyError(`invalid --chmod ${JSON.stringify(spec)}: use octal (0755) or symbolic (u+x,g-w)`);
    let who = 0;
    for (const ch of m[1] || 'a') who |= ch === 'u' ? 0o4700 : ch === 'g' ? 0o2070 : ch === 'o' ? 0o1007 : 0o7777;
    ops.push({ who, op: m[2]!, perm: m[3]! });
  }
  return (mode, isDir) => {
    let cur = mode & 0o7777;
    for (const o of ops) {
      let bits = 0;
      for (const p of o.perm) {
        if (p === 'r') bits |= 0o444;
        else if (p === 'w') bits |= 0o222;
        else if (p === 'x') bits |= 0o111;
        else if (p === 'X' && (isDir || (mode & 0o111) !== 0)) bits |= 0o111;
        else if (p === 's') bits |= 0o6000;
        else if (p === 't') bits |= 0o1000;
      }
      bits &= o.who;
      if (o.op === '+') cur |= bits;
      else if (o.op === '-') cur &= ~bits;
      else cur = (cur & ~(o.who & 0o777)) | bits;
    }
    return cur;
  };
}

