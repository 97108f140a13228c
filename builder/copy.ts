// COPY and ADD: sources -> a fresh directory laid out as the new layer.
//
// The layer dir starts empty. Destinations are resolved in the merged view of
// the parent image with the layer dir on top (merged.ts), so symlinks in the
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
import { lgetxattr, llistxattr, lsetxattr, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../image/native.js';
import { MergedView, components } from './merged.js';
import { DirFS, type PathFilter, type SourceFS } from './sourcefs.js';
import { lstatMaybe } from '../image/safepath.js';

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

// ---------------------------------------------------------------- writing the layer dir

const SKIP_XATTR = (n: string) => n.startsWith('trusted.overlay.') || n === 'security.selinux';

function copyXattrs(from: string, to: string): void {
  let names: string[];
  try {
    names = llistxattr(from);
  } catch {
    return;
  }
  for (const n of names) {
    if (SKIP_XATTR(n)) continue;
    const v = lgetxattr(from, n);
    if (v === undefined) continue;
    try {
      lsetxattr(to, n, v);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') continue;
      throw err;
    }
  }
}


const display = (comps: readonly string[]) => `/${comps.join('/')}`;

class LayerDirWriter {
  /** The image with the layer dir on top: what the destination looks like so far. */
  readonly top: MergedView;
  /** dir host path -> mtime to set once everything below it is written. */
  private dirTimes = new Map<string, { atime: number; mtime: number }>();
  /** Source inode -> first destination host path (hardlinks). */
  private links = new Map<string, string>();

  constructor(
    readonly lower: MergedView,
    readonly layerDir: string,
    readonly req: CopyRequest,
  ) {
    this.top = new MergedView([layerDir, ...lower.layers]);
  }

  private owner(st: fs.Stats | undefined, src: SourceFS | undefined): { uid: number; gid: number } {
    if (this.req.chown) return this.req.chown;
    if (st && src?.preserveOwner) return { uid: st.uid, gid: st.gid };
    return { uid: 0, gid: 0 };
  }

  /**
   * mkdir -p of resolved `comps` in the layer dir. Existing image dirs are
   * copied up with their metadata; new ones are 0755 (the last one takes
   * `meta` from a source dir when given). Returns the host path.
   */
  ensureDir(comps: readonly string[], meta?: { st: fs.Stats; src: SourceFS }): string {
    let host = this.layerDir;
    for (let i = 0; i < comps.length; i++) {
      const prefix = comps.slice(0, i + 1);
      host = path.join(host, comps[i]!);
      const isLast = i === comps.length - 1;
      const own = lstatMaybe(host);
      if (own?.isDirectory()) continue;
      if (own) throw new CopyError(`cannot copy to ${display(comps)}: ${display(prefix)} is not a directory`);
      const lowerFound = this.lower.lookup(prefix);
      if (lowerFound?.st.isDirectory()) {
        const ls = lowerFound.st;
        fs.mkdirSync(host);
        fs.lchownSync(host, ls.uid, ls.gid);
        fs.chmodSync(host, ls.mode & 0o7777);
        copyXattrs(lowerFound.abs, host);
        this.dirTimes.set(host, { atime: ls.atimeMs / 1000, mtime: ls.mtimeMs / 1000 });
        continue;
      }
      if (lowerFound) throw new CopyError(`cannot copy to ${display(comps)}: ${display(prefix)} is not a directory in the image`);
      fs.mkdirSync(host);
      if (isLast && meta) {
        const o = this.owner(meta.st, meta.src);
        fs.lchownSync(host, o.uid, o.gid);
        const mode = meta.st.mode & 0o7777;
        fs.chmodSync(host, this.req.chmod ? this.req.chmod(mode, true) : mode);
        this.dirTimes.set(host, { atime: meta.st.mtimeMs / 1000, mtime: meta.st.mtimeMs / 1000 });
      } else {
        const o = this.owner(undefined, undefined);
        fs.lchownSync(host, o.uid, o.gid);
        fs.chmodSync(host, 0o755);
        this.dirTimes.set(host, { atime: this.req.now, mtime: this.req.now });
      }
    }
    return host;
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
        if (this.top.kind(childDest) === 'symlink') childDest = this.top.resolve(display(childDest), true);
        this.copyDirContents(src, childSrc, st, childDest, r);
      } else {
        this.copyNonDir(src, childSrc, st, childDest);
      }
    }
  }

  /** Writes one file, symlink or special file at resolved `dest` (the final component is not followed). */
  copyNonDir(src: SourceFS, srcComps: string[], st: fs.Stats, dest: string[]): void {
    if (dest.length === 0) throw new CopyError(`cannot copy ${display(srcComps)} over the root directory`);
    if (st.isSocket()) return;
    const parent = this.ensureDir(dest.slice(0, -1));
    const host = path.join(parent, dest[dest.length - 1]!);
    const existing = lstatMaybe(host);
    if (existing) fs.rmSync(host, { recursive: true, force: true });
    const from = src.hostPath(srcComps);
    const own = this.owner(st, src);
    if (st.nlink > 1 && !st.isDirectory()) {
      const key = `${src.description}\0${st.dev}:${st.ino}`;
      const first = this.links.get(key);
      if (first) {
        fs.linkSync(first, host);
        return;
      }
      this.links.set(key, host);
    }
    const mode = this.req.chmod ? this.req.chmod(st.mode & 0o7777, false) : st.mode & 0o7777;
    if (st.isSymbolicLink()) {
      fs.symlinkSync(fs.readlinkSync(from), host);
      fs.lchownSync(host, own.uid, own.gid);
      copyXattrs(from, host);
      fs.lutimesSync(host, st.atimeMs / 1000, st.mtimeMs / 1000);
      return;
    }
    if (st.isFile()) {
      fs.copyFileSync(from, host, fs.constants.COPYFILE_FICLONE);
    } else if (st.isFIFO()) {
      mknod(host, S_IFIFO | mode, 0, 0);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
      const minor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & ~0xffn));
      mknod(host, (st.isCharacterDevice() ? S_IFCHR : S_IFBLK) | mode, major, minor);
    } else {
      throw new CopyError(`${display(srcComps)}: unsupported file type`);
    }
    fs.lchownSync(host, own.uid, own.gid);
    // chown clears setuid/setgid: the mode goes on afterwards.
    fs.chmodSync(host, mode);
    copyXattrs(from, host);
    fs.utimesSync(host, st.atimeMs / 1000, st.mtimeMs / 1000);
  }

  /** Directory mtimes last, deepest first: writing into a dir changes its mtime. */
  finish(): void {
    const dirs = [...this.dirTimes.keys()].sort((a, b) => b.length - a.length);
    for (const d of dirs) {
      const t = this.dirTimes.get(d)!;
      fs.utimesSync(d, t.atime, t.mtime);
    }
  }
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
 * Copies the request's sources into `layerDir` (fresh and empty), as the
 * layer of a COPY/ADD on top of `lower` (the parent image; empty for --link).
 */
export async function copyToLayer(lower: MergedView, layerDir: string, req: CopyRequest): Promise<void> {
  const w = new LayerDirWriter(lower, layerDir, req);
  if (req.mkdir) w.ensureDir(req.mkdir);
  const matches = expandAll(req.items);
  const dest = w.top.resolve(req.dest, true);
  const destKind = w.top.kind(dest);
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
        await fsp.rm(tmp, { recursive: true, force: true });
        continue;
      }
    }
    if (name === undefined) throw new CopyError('cannot copy the root of a source as a file');
    const target = intoDir || req.parents ? [...dest, ...parentsPart, name] : dest;
    if (req.exclude?.excludes(m.written.join('/'))) continue;
    w.copyNonDir(m.fs, m.comps, m.st, target);
  }
  w.finish();
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

