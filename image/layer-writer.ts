// Directory (or overlayfs upper dir) -> deterministic layer tar -> gzip, in one
// streaming pass that also yields diff_id, blob digest and sizes.
//
// The tar encoder is our own (POSIX ustar + PAX extended headers, the layout Go's
// archive/tar writes) rather than tar-stream's packer: tar-stream encodes PAX
// values as UTF-8 strings, which corrupts binary xattr values such as
// security.capability, and it silently replaces mode 0 with 0644. Owning the
// encoder also pins every header byte, which is what makes digests reproducible.
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { HashCounter, type Digest } from './digest.js';
import { lgetxattr, llistxattr } from './native.js';

export interface LayerWriterOptions {
  /**
   * 'dir': plain directory -> tar of everything. 'overlay-upper': an overlayfs
   * upper dir: char 0:0 devices become `.wh.<name>` entries; dirs with xattr
   * trusted.overlay.opaque=y become dir + `<dir>/.wh..wh..opq` ONLY if the merged
   * view of lowerDirs had a directory at that path. trusted.overlay.* xattrs are
   * never emitted.
   */
  mode: 'dir' | 'overlay-upper';
  /** Lower layer dirs (snapshot dirs with overlay-style whiteouts/opaque xattrs), TOP-MOST FIRST; overlay-upper mode only. */
  lowerDirs?: string[];
  /** If set (seconds since epoch), every mtime greater than this is clamped to it (SOURCE_DATE_EPOCH). */
  sourceDateEpoch?: number;
}

export interface LayerResult {
  diffId: Digest;
  digest: Digest;
  size: number;
  uncompressedSize: number;
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';
const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';
/** Host-specific labels that must not travel inside an image. */
const SKIPPED_XATTRS = new Set(['security.selinux']);

// ---------------------------------------------------------------------------
// Tar header encoding

type TypeFlag = '0' | '1' | '2' | '3' | '4' | '5' | '6' | 'x';

export interface TarHeader {
  /** Relative name; directories end in '/'. */
  name: string;
  type: TypeFlag;
  /** Permission bits incl. setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Integer seconds since the epoch. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** xattr name -> raw value, emitted as PAX SCHILY.xattr.<name>. */
  xattrs?: Map<string, Buffer>;
}

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const MAX_OCTAL_8 = 0o7777777; // 8-byte field: 7 digits + NUL
const MAX_OCTAL_12 = 0o77777777777; // 12-byte field: 11 digits + NUL

function isAscii(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /^[\x01-\x7f]*$/.test(s);
}

/** Splits name into ustar prefix (≤155) and name (≤100), or returns undefined. */
function splitUstar(name: string): { prefix: string; name: string } | undefined {
  if (!isAscii(name)) return undefined;
  if (name.length <= 100) return { prefix: '', name };
  // The split '/' must leave a non-empty name of at most 100 bytes.
  const start = Math.max(0, name.length - 101);
  for (let i = start; i < name.length - 1 && i <= 155; i++) {
    if (name[i] === '/' && i > 0 && name.length - i - 1 <= 100) return { prefix: name.slice(0, i), name: name.slice(i + 1) };
  }
  return undefined;
}

function writeOctal(buf: Buffer, off: number, len: number, value: number): void {
  const s = value.toString(8).padStart(len - 1, '0');
  buf.write(s, off, len - 1, 'ascii');
  buf[off + len - 1] = 0;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  // The length prefix counts itself.
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'ascii'), body]);
}

function rawHeader(h: {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: TypeFlag;
  linkname: string;
  devmajor: number;
  devminor: number;
}): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(h.name, 0, 100, 'utf8');
  writeOctal(b, 100, 8, h.mode);
  writeOctal(b, 108, 8, h.uid);
  writeOctal(b, 116, 8, h.gid);
  writeOctal(b, 124, 12, h.size);
  writeOctal(b, 136, 12, h.mtime);
  b.fill(0x20, 148, 156); // checksum placeholder: spaces
  b.write(h.type, 156, 1, 'ascii');
  b.write(h.linkname, 157, 100, 'utf8');
  b.write('ustar\0', 257, 6, 'ascii');
  b.write('00', 263, 2, 'ascii');
  // uname (265) and gname (297) stay empty for determinism.
  writeOctal(b, 329, 8, h.devmajor);
  writeOctal(b, 337, 8, h.devminor);
  b.write(h.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii');
  b[154] = 0;
  b[155] = 0x20;
  return b;
}

/** Zero bytes up to the next 512-byte boundary after `size` bytes of content. */
export function padding(size: number): Buffer {
  const r = size % BLOCK;
  return r === 0 ? Buffer.alloc(0) : ZERO_BLOCK.subarray(0, BLOCK - r);
}

/** Encodes the header block(s) for one entry: an optional PAX 'x' header, then the ustar header. */
export function encodeHeader(h: TarHeader): Buffer {
  const pax = new Map<string, Buffer>();
  let name = h.name;
  let prefix = '';
  const split = splitUstar(h.name);
  if (split) {
    name = split.name;
    prefix = split.prefix;
  } else {
    pax.set('path', Buffer.from(h.name, 'utf8'));
    name = asciiPlaceholder(h.name, 100);
  }
  let linkname = h.linkname ?? '';
  if (linkname !== '' && (!isAscii(linkname) || linkname.length > 100)) {
    pax.set('linkpath', Buffer.from(linkname, 'utf8'));
    linkname = asciiPlaceholder(linkname, 100);
  }
  let { uid, gid, size, mtime } = h;
  if (uid > MAX_OCTAL_8 || uid < 0) {
    pax.set('uid', Buffer.from(String(uid)));
    uid = 0;
  }
  if (gid > MAX_OCTAL_8 || gid < 0) {
    pax.set('gid', Buffer.from(String(gid)));
    gid = 0;
  }
  if (size > MAX_OCTAL_12) {
    pax.set('size', Buffer.from(String(size)));
    size = 0;
  }
  if (mtime > MAX_OCTAL_12 || mtime < 0) {
    pax.set('mtime', Buffer.from(String(mtime)));
    mtime = 0;
  }
  for (const [k, v] of h.xattrs ?? []) pax.set(`SCHILY.xattr.${k}`, v);

  const ustar = rawHeader({
    name,
    prefix,
    mode: h.mode & 0o7777,
    uid,
    gid,
    size,
    mtime,
    type: h.type,
    linkname,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  });
  if (pax.size === 0) return ustar;

  const keys = [...pax.keys()].sort(byteCompare);
  const body = Buffer.concat(keys.map((k) => paxRecord(k, pax.get(k)!)));
  const trimmed = h.name.replace(/\/$/, '');
  const base = trimmed.slice(trimmed.lastIndexOf('/') + 1);
  const paxHeader = rawHeader({
    name: asciiPlaceholder(`PaxHeaders.0/${base}`, 100),
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: 0,
    type: 'x',
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, body, padding(body.length), ustar]);
}

/** ASCII-only, at most max bytes: the ustar field when the real value lives in a PAX record. */
function asciiPlaceholder(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, max);
}

/**
 * Orders names by their UTF-8 bytes, as Go's archive/tar writers and `sort`
 * of byte strings do. UTF-16 code units sort the same way except where a
 * surrogate meets a unit at or above U+E000; those rare names take the slow path.
 */
export function byteCompare(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 || y >= 0xd800) return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
    return x - y;
  }
  if (a.length === b.length) return 0;
  // One is a prefix of the other: the shorter sorts first (a lone high surrogate at its end takes the slow path).
  const last = n > 0 ? a.charCodeAt(n - 1) : 0;
  if (last >= 0xd800 && last < 0xdc00) return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  return a.length - b.length;
}

// ---------------------------------------------------------------------------
// Tree walking

interface Ctx {
  root: string;
  opts: LayerWriterOptions;
  /** dev:ino -> first path (tar name) of a multiply-linked file. */
  links: Map<string, string>;
}

function statKey(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}

function mtimeOf(st: fs.BigIntStats, opts: LayerWriterOptions): number {
  const ns = st.mtimeNs;
  let sec = ns / 1_000_000_000n;
  if (ns < 0n && ns % 1_000_000_000n !== 0n) sec -= 1n; // floor
  let m = Number(sec);
  if (opts.sourceDateEpoch !== undefined && m > opts.sourceDateEpoch) m = Math.floor(opts.sourceDateEpoch);
  return m;
}

function isWhiteoutDevice(st: fs.BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

function readXattrs(p: string, ctx: Ctx): Map<string, Buffer> | undefined {
  let names: string[];
  try {
    names = llistxattr(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return undefined;
    throw err;
  }
  const out = new Map<string, Buffer>();
  for (const n of names.sort(byteCompare)) {
    if (n.startsWith(OVERLAY_XATTR_PREFIX)) {
      if (ctx.opts.mode === 'overlay-upper' && (n === 'trusted.overlay.redirect' || n === 'trusted.overlay.metacopy')) {
        throw new Error(
          `${p}: has ${n}; the upper dir must come from an overlay mounted with redirect_dir=off,metacopy=off`,
        );
      }
      continue;
    }
    if (SKIPPED_XATTRS.has(n)) continue;
    const v = lgetxattr(p, n);
    if (v !== undefined) out.set(n, v);
  }
  return out.size ? out : undefined;
}

function isOpaque(p: string): boolean {
  return lgetxattr(p, 'trusted.overlay.opaque')?.toString() === 'y';
}

function lstatMaybe(p: string): fs.BigIntStats | undefined {
  try {
    return fs.lstatSync(p, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * What the merged view of `lowers` (top-most first; overlay-style snapshot dirs)
 * shows at `rel`: 'dir', 'other' or 'none'.
 */
export function mergedKind(lowers: string[], rel: string): 'dir' | 'other' | 'none' {
  const comps = rel.split('/').filter(Boolean);
  for (const lower of lowers) {
    let stop = false; // an opaque dir in this layer hides everything below it
    let missing = false;
    for (let i = 0; i < comps.length - 1; i++) {
      const p = path.join(lower, ...comps.slice(0, i + 1));
      const st = lstatMaybe(p);
      if (!st) {
        missing = true;
        break;
      }
      if (isWhiteoutDevice(st) || !st.isDirectory()) return 'none';
      if (isOpaque(p)) stop = true;
    }
    if (!missing) {
      const st = lstatMaybe(path.join(lower, ...comps));
      if (st) {
        if (isWhiteoutDevice(st)) return 'none';
        return st.isDirectory() ? 'dir' : 'other';
      }
    }
    if (stop) return 'none';
  }
  return 'none';
}

function* walkDir(ctx: Ctx, rel: string): Generator<TarPiece, void, undefined> {
  const abs = rel === '' ? ctx.root : path.join(ctx.root, rel);
  const names = fs.readdirSync(abs).sort(byteCompare);
  const overlay = ctx.opts.mode === 'overlay-upper';
  const rest: [string, fs.BigIntStats][] = [];
  // Whiteouts first (as the overlay-upper order has always been); the rest in name order.
  for (const n of names) {
    const st = fs.lstatSync(path.join(abs, n), { bigint: true });
    if (overlay && isWhiteoutDevice(st)) {
      yield encodeHeader({
        name: joinRel(rel, WHITEOUT_PREFIX + n),
        type: '0',
        mode: 0o600,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: mtimeOf(st, ctx.opts),
      });
    } else {
      rest.push([n, st]);
    }
  }
  for (const [n, st] of rest) yield* walkEntry(ctx, joinRel(rel, n), st);
}

function joinRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function* walkEntry(ctx: Ctx, rel: string, st: fs.BigIntStats): Generator<TarPiece, void, undefined> {
  const abs = path.join(ctx.root, rel);
  const base = {
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: mtimeOf(st, ctx.opts),
    size: 0,
  };
  if (st.isDirectory()) {
    yield encodeHeader({ ...base, name: `${rel}/`, type: '5', xattrs: readXattrs(abs, ctx) });
    if (ctx.opts.mode === 'overlay-upper' && isOpaque(abs) && mergedKind(ctx.opts.lowerDirs ?? [], rel) === 'dir') {
      yield encodeHeader({ ...base, name: `${rel}/${OPAQUE_WHITEOUT}`, type: '0', mode: 0o600 });
    }
    yield* walkDir(ctx, rel);
    return;
  }
  if (st.isSocket()) return; // sockets cannot be stored in a tar (Docker skips them too)

  if (st.nlink > 1n) {
    const key = statKey(st);
    const first = ctx.links.get(key);
    if (first !== undefined) {
      yield encodeHeader({ ...base, name: rel, type: '1', linkname: first });
      return;
    }
    ctx.links.set(key, rel);
  }
  const xattrs = readXattrs(abs, ctx);
  if (st.isSymbolicLink()) {
    yield encodeHeader({ ...base, name: rel, type: '2', linkname: fs.readlinkSync(abs), xattrs });
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    const rdev = st.rdev;
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    yield encodeHeader({
      ...base,
      name: rel,
      type: st.isCharacterDevice() ? '3' : '4',
      devmajor: major,
      devminor: minor,
      xattrs,
    });
  } else if (st.isFIFO()) {
    yield encodeHeader({ ...base, name: rel, type: '6', xattrs });
  } else if (st.isFile()) {
    const size = Number(st.size);
    yield encodeHeader({ ...base, name: rel, type: '0', size, xattrs });
    if (size > 0) yield { path: abs, size };
    yield padding(size);
  } else {
    throw new Error(`${abs}: unsupported file type`);
  }
}

// ---------------------------------------------------------------------------
// The tar stream

/** The contents of one file in a tar stream: exactly `size` bytes of `path`. */
export interface FileBody {
  path: string;
  size: number;
  /**
   * Called with the open file once `size` bytes were read; throws when the
   * file is no longer what the header said (copy.ts: it changed since it was planned).
   */
  verify?: (fd: number) => void;
}

/** What a tar stream is made of: header and padding bytes, and file contents read from disk. */
export type TarPiece = Buffer | FileBody;

/**
 * Size of the chunks a TarStream pushes: the block size of builder/compress.ts,
 * which deflates such chunks as they are, without copying them.
 */
export const TAR_CHUNK = 1 << 20;

/** The two zero blocks that end an archive. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/**
 * A byte stream made of TarPieces, pushed in TAR_CHUNK chunks. File contents
 * are read with synchronous reads straight into the chunk (one copy, from the
 * page cache; one open/read/close per small file), a chunk at a time, so the
 * event loop (the compressors' completions) runs between chunks. A file that
 * shrank while we read it is an error; one that grew is cut at `size`.
 */
export class TarStream extends Readable {
  /** Chunks handed back by the last consumer (recycle), reused instead of allocating (and collecting) new ones. */
  private spare: Buffer[] = [];
  private chunk: Buffer = Buffer.allocUnsafe(TAR_CHUNK);
  private fill = 0;
  private body: { fd: number; left: number; piece: FileBody } | undefined;

  constructor(private readonly pieces: Iterator<TarPiece, void, undefined>) {
    super({ highWaterMark: 2 * TAR_CHUNK });
  }

  override _read(): void {
    try {
      this.produce();
    } catch (e) {
      this.destroy(e as Error);
    }
  }

  /**
   * Hands a pushed chunk back for reuse. Only for the stage that is the last
   * to hold the stream's chunks (ParallelGzip's `release`, once a block is
   * deflated): ~800 MB of short-lived 1 MiB buffers for a 400 MB layer kept
   * V8 running a full GC every ~100 ms.
   */
  recycle(chunk: Buffer): void {
    if (chunk.length === TAR_CHUNK && chunk.byteOffset === 0 && this.spare.length < 16) this.spare.push(chunk);
  }

  private pushChunk(): void {
    this.push(this.chunk);
    this.chunk = this.spare.pop() ?? Buffer.allocUnsafe(TAR_CHUNK);
    this.fill = 0;
  }

  /** Fills and pushes one chunk, or ends the stream. */
  private produce(): void {
    for (;;) {
      const b = this.body;
      if (b) {
        while (b.left > 0 && this.fill < TAR_CHUNK) {
          const n = fs.readSync(b.fd, this.chunk, this.fill, Math.min(b.left, TAR_CHUNK - this.fill), null);
          if (n === 0) throw new Error(`${b.piece.path}: file shrank while it was being archived (${b.left} bytes missing)`);
          this.fill += n;
          b.left -= n;
        }
        if (b.left === 0) {
          this.body = undefined;
          try {
            b.piece.verify?.(b.fd);
          } finally {
            fs.closeSync(b.fd);
          }
        }
        if (this.fill === TAR_CHUNK) return this.pushChunk();
        continue;
      }
      const next = this.pieces.next();
      if (next.done) {
        if (this.fill > 0) this.push(this.chunk.subarray(0, this.fill));
        this.push(null);
        return;
      }
      const p = next.value;
      if (Buffer.isBuffer(p)) {
        let pushed = false;
        for (let off = 0; off < p.length; ) {
          const n = p.copy(this.chunk, this.fill, off);
          this.fill += n;
          off += n;
          if (this.fill === TAR_CHUNK) {
            this.pushChunk();
            pushed = true;
          }
        }
        if (pushed) return;
      } else if (p.size > 0) {
        // O_NOFOLLOW: the piece names a regular file; a link swapped in since is an error, never followed.
        const fd = fs.openSync(p.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        this.body = { fd, left: p.size, piece: p };
      }
    }
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (this.body) {
      try {
        fs.closeSync(this.body.fd);
      } catch {
        /* already closed */
      }
      this.body = undefined;
    }
    try {
      this.pieces.return?.();
    } catch {
      /* the generator's own cleanup failed: the stream error wins */
    }
    cb(err);
  }
}

/** Uncompressed tar stream of dir. Streams file contents; never buffers whole files. */
export function tarDirectory(dir: string, opts: LayerWriterOptions): TarStream {
  const ctx: Ctx = { root: path.resolve(dir), opts, links: new Map() };
  function* gen(): Generator<TarPiece, void, undefined> {
    yield* walkDir(ctx, '');
    yield END_OF_ARCHIVE;
  }
  return new TarStream(gen());
}

/**
 * One streaming pass: tar -> sha256 (diffId) -> gzip -> sha256 (digest) + byte
 * count -> sink. Resolves once the sink has finished.
 */
export async function writeLayer(dir: string, opts: LayerWriterOptions, sink: NodeJS.WritableStream): Promise<LayerResult> {
  const tarHash = new HashCounter();
  const gzHash = new HashCounter();
  await pipeline(tarDirectory(dir, opts), tarHash, zlib.createGzip(), gzHash, sink);
  return {
    diffId: tarHash.digest(),
    digest: gzHash.digest(),
    size: gzHash.size,
    uncompressedSize: tarHash.size,
  };
}
