// The layer of a COPY/ADD step, planned in memory before any file is written.
//
// copy.ts decides what the layer holds (Docker's rules, destinations resolved
// in the image) and records it here: directories with their metadata, and
// inodes (regular files whose contents stay in their source until needed,
// symlinks, fifos, devices) under one or more names. From the plan:
//
//   tar()          the layer's tar stream, byte for byte what tarDirectory()
//                  ('dir' mode) gives for the written dir, reading each source
//                  file once, straight into the compressor's blocks;
//   materialize()  the layer dir itself (the step's snapshot), file contents
//                  copied in the kernel (copy_file_range) several at a time on
//                  libuv's threadpool; every entry is checked against the plan
//                  afterwards.
//
// Why: a COPY of many files used to write the layer dir (one file at a time,
// ~10 syscalls each, on the main thread) and then read it all again for the
// tar. Now the tar comes first, and the dir is written only when the store
// has no snapshot with that content yet — a rebuild of the same files (e.g.
// `--no-cache`) creates and deletes no file at all. Creating files is the
// costly part on ext4: with many recently deleted inodes each create scans
// the inode bitmap (0.1-0.5 ms per file on the bench machine).
//
// What the plan cannot predict makes it inexact (`exact` false) and the
// caller falls back to writing the dir and tarring it: POSIX ACLs (a system.*
// xattr changes the mode and is inherited), times before 1970 (Node's utimes
// turns them into "now"). What it predicts wrongly — an xattr the kernel
// refuses, a mode the kernel changes — materialize() detects and reports
// (false), and the caller tars the written dir instead.
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { byteCompare, encodeHeader, END_OF_ARCHIVE, padding, TarStream, type TarPiece } from '../image/layer-writer.js';
import { llistxattr, lsetxattr, makedev, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../image/native.js';

/** Error in a COPY/ADD step the user can act on; the executor adds file:line. */
export class PlanError extends Error {}

/** Metadata of a planned entry. Times are the values given to utimes (seconds, fractional). */
export interface PlanMeta {
  mode: number;
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
  /** Extended attributes the entry gets, in the order they are set. */
  xattrs?: Map<string, Buffer>;
}

export class PlanDir {
  readonly children = new Map<string, PlanEntry>();
  constructor(readonly meta: PlanMeta) {}
}

export type InodeType = 'file' | 'symlink' | 'fifo' | 'char' | 'block';

/** What a regular file's contents are planned from: its host path and what lstat said then (to notice a change). */
export interface PlanSource {
  path: string;
  size: number;
  mode: number;
  ino: number;
  dev: number;
  mtimeMs: number;
  ctimeMs: number;
}

export function planSource(p: string, st: fs.Stats): PlanSource {
  return { path: p, size: st.size, mode: st.mode, ino: st.ino, dev: st.dev, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

/** A non-directory; `names` > 1 when hardlinked. */
export class PlanInode {
  names = 0;
  constructor(
    readonly type: InodeType,
    readonly meta: PlanMeta,
    /** file: where its contents come from */
    readonly src?: PlanSource,
    /** symlink target */
    readonly target?: string,
    /** char/block: device numbers as mknod gets them */
    readonly dev?: { major: number; minor: number },
  ) {}

  get size(): number {
    return this.type === 'file' ? this.src!.size : 0;
  }
}

export type PlanEntry = PlanDir | PlanInode;

const euid = process.geteuid?.() ?? 0;
const egid = process.getegid?.() ?? 0;

/** Seconds as the layer's tar header shows them: libuv's utimes keeps floor(t) for t >= 0. */
function headerTime(t: number, sourceDateEpoch: number | undefined): number {
  let m = Math.floor(t);
  if (sourceDateEpoch !== undefined && m > sourceDateEpoch) m = Math.floor(sourceDateEpoch);
  return m;
}

function sortedXattrs(x: Map<string, Buffer> | undefined): Map<string, Buffer> | undefined {
  if (!x || x.size === 0) return undefined;
  return new Map([...x.keys()].sort(byteCompare).map((k) => [k, x.get(k)!]));
}

/** False when the source changed since it was planned: its contents would not match the header. */
function sameFile(a: fs.Stats, b: PlanSource): boolean {
  return a.ino === b.ino && a.dev === b.dev && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

function changedError(p: string): PlanError {
  return new PlanError(`${p} changed while it was being copied: run the build again`);
}

export class LayerPlan {
  /** The layer dir itself (not part of the tar). */
  readonly root = new PlanDir({ mode: 0o755, uid: 0, gid: 0, atime: 0, mtime: 0 });
  /** False when the plan cannot predict the layer exactly (see the file comment): write the dir, then tar it. */
  exact = true;

  get empty(): boolean {
    return this.root.children.size === 0;
  }

  /** Notes metadata the plan cannot predict. */
  checkMeta(meta: PlanMeta): void {
    if (!(meta.mtime >= 0) || !(meta.atime >= 0)) this.exact = false;
    for (const k of meta.xattrs?.keys() ?? []) if (k.startsWith('system.')) this.exact = false;
  }

  /** The layer's tar, as tarDirectory(materialized dir, { mode: 'dir', sourceDateEpoch }) gives it. */
  tar(opts: { sourceDateEpoch?: number } = {}): TarStream {
    return new TarStream(this.pieces(opts.sourceDateEpoch));
  }

  private *pieces(sde: number | undefined): Generator<TarPiece, void, undefined> {
    const links = new Map<PlanInode, string>();
    const walk = function* (dir: PlanDir, rel: string): Generator<TarPiece, void, undefined> {
      for (const name of [...dir.children.keys()].sort(byteCompare)) {
        const e = dir.children.get(name)!;
        const r = rel === '' ? name : `${rel}/${name}`;
        const m = e.meta;
        const base = { mode: m.mode & 0o7777, uid: m.uid, gid: m.gid, mtime: headerTime(m.mtime, sde), size: 0 };
        if (e instanceof PlanDir) {
          yield encodeHeader({ ...base, name: `${r}/`, type: '5', xattrs: sortedXattrs(m.xattrs) });
          yield* walk(e, r);
          continue;
        }
        if (e.names > 1) {
          const first = links.get(e);
          if (first !== undefined) {
            yield encodeHeader({ ...base, name: r, type: '1', linkname: first });
            continue;
          }
          links.set(e, r);
        }
        const xattrs = sortedXattrs(m.xattrs);
        switch (e.type) {
          case 'symlink':
            yield encodeHeader({ ...base, name: r, type: '2', linkname: e.target!, xattrs });
            break;
          case 'char':
          case 'block': {
            const { major, minor } = headerDev(e.dev!);
            yield encodeHeader({ ...base, name: r, type: e.type === 'char' ? '3' : '4', devmajor: major, devminor: minor, xattrs });
            break;
          }
          case 'fifo':
            yield encodeHeader({ ...base, name: r, type: '6', xattrs });
            break;
          case 'file': {
            const src = e.src!;
            const size = src.size;
            yield encodeHeader({ ...base, name: r, type: '0', size, xattrs });
            if (size > 0) {
              yield {
                path: src.path,
                size,
                verify: (fd) => {
                  if (!sameFile(fs.fstatSync(fd), src)) throw changedError(src.path);
                },
              };
            }
            yield padding(size);
            break;
          }
        }
      }
    };
    yield* walk(this.root, '');
    yield END_OF_ARCHIVE;
  }

  /**
   * Writes the planned layer into `dir` (empty). Resolves true when every
   * entry came out as planned (so tar() describes the dir), false when the
   * caller must tar the dir itself. Throws when a source changed since it
   * was planned.
   */
  async materialize(dir: string, concurrency = 16): Promise<boolean> {
    let exact = this.exact;
    // A default ACL on the layer dir itself would give every entry ACL xattrs and masked modes.
    if (llistxattr(dir).some((n) => n.startsWith('system.'))) exact = false;
    const dirs: [string, PlanDir][] = [];
    const files: [string, PlanInode][] = [];
    const others: [string, PlanInode][] = [];
    const links: [string, string][] = [];
    const firstName = new Map<PlanInode, string>();
    const walk = (d: PlanDir, host: string) => {
      for (const [name, e] of d.children) {
        const p = path.join(host, name);
        if (e instanceof PlanDir) {
          fs.mkdirSync(p);
          fs.lchownSync(p, e.meta.uid, e.meta.gid);
          fs.chmodSync(p, e.meta.mode);
          if (!setXattrs(p, e.meta)) exact = false;
          dirs.push([p, e]);
          walk(e, p);
          continue;
        }
        const first = firstName.get(e);
        if (first !== undefined) {
          links.push([first, p]);
          continue;
        }
        firstName.set(e, p);
        (e.type === 'file' ? files : others).push([p, e]);
      }
    };
    walk(this.root, dir);

    for (const [p, e] of others) if (!this.writeOther(p, e)) exact = false;
    // Files of different dirs side by side: creating files in one dir serializes on its lock.
    const byDir = new Map<string, [string, PlanInode][]>();
    for (const f of files) {
      const d = path.dirname(f[0]);
      let l = byDir.get(d);
      if (!l) byDir.set(d, (l = []));
      l.push(f);
    }
    files.length = 0;
    const lists = [...byDir.values()];
    const longest = lists.reduce((n, l) => Math.max(n, l.length), 0);
    for (let i = 0; i < longest; i++) for (const l of lists) if (i < l.length) files.push(l[i]!);
    let next = 0;
    let failed = false;
    const worker = async () => {
      try {
        while (next < files.length && !failed) {
          const [p, e] = files[next++]!;
          if (!(await writeFile(p, e))) exact = false;
        }
      } catch (err) {
        failed = true; // the others stop after the file they are writing
        throw err;
      }
    };
    // Every worker has stopped before an error goes up (the caller then removes the dir).
    const settled = await Promise.allSettled(Array.from({ length: Math.min(concurrency, files.length) }, worker));
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    for (const [first, p] of links) fs.linkSync(first, p);
    // Directory times last, deepest first: writing into a dir changes its mtime.
    for (let i = dirs.length - 1; i >= 0; i--) {
      const [p, d] = dirs[i]!;
      fs.utimesSync(p, d.meta.atime, d.meta.mtime);
    }
    if (!exact) return false;
    for (const [p, d] of dirs) if (!matches(fs.lstatSync(p, { bigint: true }), d.meta, 'dir', 0)) return false;
    for (const [p, e] of others) {
      const st = fs.lstatSync(p, { bigint: true });
      if (!matches(st, e.meta, e.type, 0) || Number(st.nlink) !== e.names) return false;
      if (e.dev && st.rdev !== devOf(e.dev)) return false;
    }
    // Files were checked as they were written; hardlinks only now have their final count.
    for (const [p, e] of files) if (e.names > 1 && Number(fs.lstatSync(p, { bigint: true }).nlink) !== e.names) return false;
    return true;
  }

  private writeOther(p: string, e: PlanInode): boolean {
    const m = e.meta;
    if (e.type === 'symlink') {
      fs.symlinkSync(e.target!, p);
      fs.lchownSync(p, m.uid, m.gid);
      const ok = setXattrs(p, m);
      fs.lutimesSync(p, m.atime, m.mtime);
      return ok;
    }
    if (e.type === 'fifo') mknod(p, S_IFIFO | m.mode, 0, 0);
    else mknod(p, (e.type === 'char' ? S_IFCHR : S_IFBLK) | m.mode, e.dev!.major, e.dev!.minor);
    fs.lchownSync(p, m.uid, m.gid);
    fs.chmodSync(p, m.mode);
    const ok = setXattrs(p, m);
    fs.utimesSync(p, m.atime, m.mtime);
    return ok;
  }
}

/** One regular file: contents copied in the kernel, then owner, mode, xattrs, times; false when it did not come out as planned. */
async function writeFile(p: string, e: PlanInode): Promise<boolean> {
  const m = e.meta;
  const src = e.src!;
  // EXCL: the layer dir is fresh; never write through anything already there.
  await fsp.copyFile(src.path, p, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
  // copyFile gave the file the source's mode; a new file belongs to us (or the dir's group if it is setgid).
  const srcMode = src.mode & 0o7777;
  if (m.uid !== euid || m.gid !== egid) await fsp.lchown(p, m.uid, m.gid);
  // chown clears setuid/setgid: the mode goes on afterwards.
  if (m.mode !== srcMode || ((m.uid !== euid || m.gid !== egid) && m.mode & 0o6000)) await fsp.chmod(p, m.mode);
  const ok = m.xattrs ? setXattrs(p, m) : true;
  await fsp.utimes(p, m.atime, m.mtime);
  const [st, now] = await Promise.all([fsp.lstat(p, { bigint: true }), fsp.lstat(src.path)]);
  if (!sameFile(now, src)) throw changedError(src.path);
  if (matches(st, m, 'file', e.size) && Number(st.nlink) === 1) return ok;
  // Not what we predicted (a setgid parent dir gave its group, say): do it all explicitly, then check again.
  await fsp.lchown(p, m.uid, m.gid);
  await fsp.chmod(p, m.mode);
  await fsp.utimes(p, m.atime, m.mtime);
  return ok && matches(await fsp.lstat(p, { bigint: true }), m, 'file', e.size);
}

/** Sets the planned xattrs; false when one was refused (the tar would not show it). */
function setXattrs(p: string, m: PlanMeta): boolean {
  let ok = true;
  for (const [k, v] of m.xattrs ?? []) {
    try {
      lsetxattr(p, k, v);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') ok = false;
      else throw err;
    }
  }
  if (ok && m.xattrs?.size) {
    // Exactly these, no more (an inherited ACL, a label the kernel adds).
    const names = llistxattr(p).filter((n) => !n.startsWith('trusted.overlay.') && n !== 'security.selinux');
    if (names.length !== m.xattrs.size || names.some((n) => !m.xattrs!.has(n))) ok = false;
  }
  return ok;
}

function devOf(dev: { major: number; minor: number }): bigint {
  // mknod(2) takes a 32-bit dev; what stat shows afterwards.
  return makedev(dev.major, dev.minor) & 0xffffffffn;
}

/** Device numbers in the tar header of a node made with mknod(major, minor) (layer-writer's decoding of its rdev). */
function headerDev(dev: { major: number; minor: number }): { major: number; minor: number } {
  const d = devOf(dev);
  return { major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)), minor: Number((d & 0xffn) | ((d >> 12n) & ~0xffn)) };
}

/** Does the written entry give the tar header the plan gives? (Times: whole seconds, as the header has them.) */
function matches(st: fs.BigIntStats, m: PlanMeta, type: InodeType | 'dir', size: number): boolean {
  const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : 'other';
  const ns = st.mtimeNs;
  const sec = ns / 1_000_000_000n - (ns < 0n && ns % 1_000_000_000n !== 0n ? 1n : 0n);
  return (
    kind === type &&
    Number(st.mode & 0o7777n) === (m.mode & 0o7777) &&
    Number(st.uid) === m.uid &&
    Number(st.gid) === m.gid &&
    Number(sec) === Math.floor(m.mtime) &&
    (type !== 'file' || Number(st.size) === size)
  );
}
