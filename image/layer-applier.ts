// Layer tar (gzip or plain) -> directory, defensively. See SECURITY.md for the
// threat model. Every entry is resolved inside the target with secureJoin
// (symlinks scoped to the target, never to the host's /), the final component
// is never followed, and anything we cannot apply faithfully is a LayerError.
//
// The tar decoder is our own: tar-stream decodes PAX values as UTF-8 strings,
// which would corrupt binary xattrs (security.capability), and owning it lets us
// reject what we do not understand instead of guessing.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { Digest } from './digest.js';
import { lsetxattr, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from './native.js';
import { cleanComponents, lstatMaybe, mkdirAllInRoot, PathEscapeError, secureJoin } from './safepath.js';

export interface ApplyOptions {
  /**
   * 'merged': whiteouts delete from target (target may already hold lower layers).
   * 'snapshot': target is an empty dir that will become an overlay lowerdir:
   * `.wh.x` -> char device 0:0 named x; `.wh..wh..opq` -> xattr
   * trusted.overlay.opaque=y on the dir.
   */
  mode: 'merged' | 'snapshot';
}

export interface ApplyResult {
  diffId: Digest;
  entries: number;
}

/** Hostile or invalid layer input. The message names the offending entry and what is wrong. */
export class LayerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LayerError';
  }
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const BLOCK = 512;
/** Upper bound for PAX / GNU long-name payloads we are willing to hold in memory. */
const MAX_META_SIZE = 1 << 20;

// ---------------------------------------------------------------------------
// Byte source over an async iterable of chunks

class ByteSource {
  private buf: Buffer = Buffer.alloc(0);
  private eof = false;
  private readonly it: AsyncIterator<Buffer>;
  constructor(src: AsyncIterable<Buffer>) {
    this.it = src[Symbol.asyncIterator]();
  }

  /** Buffers at least n bytes; false if the input ends first. */
  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n && !this.eof) {
      const r = await this.it.next();
      if (r.done) this.eof = true;
      else if (r.value.length) this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : r.value;
    }
    return this.buf.length >= n;
  }

  /** Exactly n bytes, or null at a clean end of input (nothing left at all). */
  async readBlock(n: number, what: string): Promise<Buffer | null> {
    if (!(await this.fill(n))) {
      if (this.buf.length === 0) return null;
      throw new LayerError(`truncated archive: unexpected end of data in ${what}`);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  async readExact(n: number, what: string): Promise<Buffer> {
    const b = n === 0 ? Buffer.alloc(0) : await this.readBlock(n, what);
    if (b === null) throw new LayerError(`truncated archive: unexpected end of data in ${what}`);
    return b;
  }

  /** Yields exactly n bytes in chunks, without buffering them all. */
  async *stream(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill(1))) {
        throw new LayerError(`truncated archive: unexpected end of data in ${what}`);
      }
      const take = Math.min(left, this.buf.length);
      const c = this.buf.subarray(0, take);
      this.buf = this.buf.subarray(take);
      left -= take;
      yield c;
    }
  }

  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.stream(n, what)) void _;
  }

  /** Stops reading early (on error): lets the upstream generators clean up. */
  async close(): Promise<void> {
    await this.it.return?.();
  }

  /** Consumes the rest of the input (so it is fully hashed). */
  async drain(): Promise<void> {
    this.buf = Buffer.alloc(0);
    while (!this.eof) {
      const r = await this.it.next();
      if (r.done) this.eof = true;
    }
  }
}

// ---------------------------------------------------------------------------
// Tar decoding

type EntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

interface TarEntry {
  name: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
}

function cstring(b: Buffer, off: number, len: number): string {
  const f = b.subarray(off, off + len);
  const z = f.indexOf(0);
  return (z === -1 ? f : f.subarray(0, z)).toString('utf8');
}

function parseNumeric(b: Buffer, off: number, len: number, field: string): number {
  const f = b.subarray(off, off + len);
  if (f[0]! & 0x80) {
    // base-256 (GNU): big-endian two's complement, first byte's top bit is the marker
    if (f[0] === 0xff) throw new LayerError(`invalid tar header: negative ${field}`);
    let v = f[0]! & 0x7f;
    for (let i = 1; i < f.length; i++) {
      v = v * 256 + f[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new LayerError(`invalid tar header: ${field} too large`);
    }
    return v;
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new LayerError(`invalid tar header: ${field} is not an octal number (${JSON.stringify(s)})`);
  return parseInt(s, 8);
}

function checksumOk(b: Buffer): boolean {
  let stored: number;
  try {
    stored = parseNumeric(b, 148, 8, 'checksum');
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  return stored === unsigned || stored === signed;
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Parses PAX records; values stay raw bytes (xattr values are binary). */
function parsePax(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < body.length) {
    if (body[off] === 0) break; // NUL padding
    const sp = body.indexOf(0x20, off);
    if (sp === -1) throw new LayerError('invalid PAX header: record without length');
    const lenStr = body.subarray(off, sp).toString('latin1');
    if (!/^[0-9]+$/.test(lenStr)) throw new LayerError(`invalid PAX header: bad record length ${JSON.stringify(lenStr)}`);
    const len = parseInt(lenStr, 10);
    const end = off + len;
    if (len <= sp - off + 1 || end > body.length || body[end - 1] !== 0x0a) {
      throw new LayerError('invalid PAX header: malformed record');
    }
    const rec = body.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new LayerError('invalid PAX header: record without key');
    const key = rec.subarray(0, eq).toString('utf8');
    out.set(key, rec.subarray(eq + 1));
    off = end;
  }
  return out;
}

function paxInt(v: Buffer, key: string): number {
  const s = v.toString('latin1');
  if (!/^-?[0-9]+(\.[0-9]*)?$/.test(s)) throw new LayerError(`invalid PAX header: ${key}=${JSON.stringify(s)}`);
  const n = Math.floor(Number(s));
  if (!Number.isSafeInteger(n)) throw new LayerError(`invalid PAX header: ${key} out of range`);
  return n;
}

class TarReader {
  constructor(private readonly src: ByteSource) {}

  /** Next real entry (metadata headers folded in), or null at the end-of-archive marker. */
  async next(): Promise<TarEntry | null> {
    let pax: Map<string, Buffer> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const hdr = await this.src.readBlock(BLOCK, 'a tar header');
      if (hdr === null) throw new LayerError('truncated archive: missing end-of-archive marker');
      if (isZeroBlock(hdr)) {
        if (pax || longName !== undefined || longLink !== undefined) {
          throw new LayerError('invalid archive: extended header not followed by an entry');
        }
        return null;
      }
      if (!checksumOk(hdr)) throw new LayerError('invalid tar header: checksum mismatch (corrupt or not a tar archive)');
      const flag = String.fromCharCode(hdr[156]!);
      let size = parseNumeric(hdr, 124, 12, 'size');
      const magic = hdr.subarray(257, 263).toString('latin1');
      let name = cstring(hdr, 0, 100);
      if (magic === 'ustar\0') {
        const prefix = cstring(hdr, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }

      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (size > MAX_META_SIZE) throw new LayerError(`invalid archive: extended header of ${size} bytes is too large`);
        const body = await this.src.readExact(size, 'an extended header');
        await this.src.skip(pad(size), 'an extended header');
        if (flag === 'x') pax = new Map([...(pax ?? []), ...parsePax(body)]);
        else if (flag === 'g') parsePax(body); // validated, then ignored — as Docker and Go's archive/tar do
        else if (flag === 'L') longName = cstring(body, 0, body.length);
        else longLink = cstring(body, 0, body.length);
        continue;
      }

      const merged = pax ?? new Map<string, Buffer>();
      let linkname = cstring(hdr, 157, 100);
      if (longName !== undefined) name = longName;
      if (longLink !== undefined) linkname = longLink;
      let uid = parseNumeric(hdr, 108, 8, 'uid');
      let gid = parseNumeric(hdr, 116, 8, 'gid');
      let mtime = parseNumeric(hdr, 136, 12, 'mtime');
      const xattrs = new Map<string, Buffer>();
      for (const [k, v] of merged) {
        if (k === 'path') name = v.toString('utf8');
        else if (k === 'linkpath') linkname = v.toString('utf8');
        else if (k === 'size') size = paxInt(v, k);
        else if (k === 'uid') uid = paxInt(v, k);
        else if (k === 'gid') gid = paxInt(v, k);
        else if (k === 'mtime') mtime = paxInt(v, k);
        else if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
        else if (k.startsWith('GNU.sparse.')) throw new LayerError(`entry ${JSON.stringify(name)}: GNU sparse files are not supported`);
      }
      if (size < 0) throw new LayerError(`entry ${JSON.stringify(name)}: negative size`);
      if (uid < 0 || gid < 0 || uid > 0xfffffffe || gid > 0xfffffffe) {
        throw new LayerError(`entry ${JSON.stringify(name)}: invalid owner ${uid}:${gid}`);
      }

      let type: EntryType;
      switch (flag) {
        case '0':
        case '\0':
        case '7':
          type = name.endsWith('/') ? 'dir' : 'file';
          break;
        case '1':
          type = 'link';
          break;
        case '2':
          type = 'symlink';
          break;
        case '3':
          type = 'char';
          break;
        case '4':
          type = 'block';
          break;
        case '5':
          type = 'dir';
          break;
        case '6':
          type = 'fifo';
          break;
        default:
          throw new LayerError(`entry ${JSON.stringify(name)}: unsupported tar entry type ${JSON.stringify(flag)}`);
      }
      return {
        name,
        type,
        mode: parseNumeric(hdr, 100, 8, 'mode') & 0o7777,
        uid,
        gid,
        size,
        mtime,
        linkname,
        devmajor: parseNumeric(hdr, 329, 8, 'devmajor'),
        devminor: parseNumeric(hdr, 337, 8, 'devminor'),
        xattrs,
      };
    }
  }

  /** The entry's data, streamed; then its padding is skipped. */
  async *body(e: TarEntry): AsyncGenerator<Buffer> {
    yield* this.src.stream(e.size, `the data of ${JSON.stringify(e.name)}`);
    await this.src.skip(pad(e.size), `the data of ${JSON.stringify(e.name)}`);
  }

  async skipBody(e: TarEntry): Promise<void> {
    await this.src.skip(e.size + pad(e.size), `the data of ${JSON.stringify(e.name)}`);
  }
}

function pad(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

// ---------------------------------------------------------------------------
// Input decoding: gzip by magic bytes, else plain tar; hashed after decompression

async function* readAll(it: AsyncIterator<Buffer>, head: Buffer): AsyncGenerator<Buffer> {
  try {
    if (head.length) yield head;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
  } finally {
    await it.return?.();
  }
}

async function* decode(source: AsyncIterable<Buffer>, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  while (head.length < BLOCK) {
    const r = await it.next();
    if (r.done) break;
    head = Buffer.concat([head, Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value)]);
  }
  let inner: AsyncIterable<Buffer>;
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = zlib.createGunzip();
    const feeding = pipeline(Readable.from(readAll(it, head)), gunzip);
    feeding.catch(() => {}); // surfaced through the gunzip stream's own error below
    inner = gunzip;
  } else if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) {
    throw new LayerError('layer is zstd-compressed, which is not supported (gzip or plain tar only)');
  } else if (head.length >= BLOCK && (isZeroBlock(head.subarray(0, BLOCK)) || checksumOk(head.subarray(0, BLOCK)))) {
    inner = readAll(it, head);
  } else {
    await it.return?.();
    throw new LayerError(
      head.length === 0
        ? 'layer is empty (not a gzip or tar stream)'
        : head.length < BLOCK
          ? `truncated archive: only ${head.length} bytes, not a gzip or tar stream`
          : 'layer is neither gzip-compressed nor a tar archive',
    );
  }
  try {
    for await (const chunk of inner) {
      const c = chunk as Buffer;
      hash.update(c);
      yield c;
    }
  } catch (err) {
    if (err instanceof LayerError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && e.code.startsWith('Z_')) {
      throw new LayerError(`corrupt gzip stream: ${e.message}`, { cause: err });
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Applying

interface DirFixup {
  mode: number;
  mtime: number;
}

class Applier {
  entries = 0;
  /** Host paths this layer created or wrote (for opaque whiteouts in merged mode). */
  private readonly touched = new Set<string>();
  /** Directory metadata applied once all entries are written. */
  private readonly dirs = new Map<string, DirFixup>();
  /**
   * Cleaned parent path -> resolved host dir that exists. Valid until something
   * is removed from the tree (a removal is the only way an existing, resolved
   * directory path can start resolving elsewhere: new names cannot shadow
   * existing ones). Cleared on every removal.
   */
  private readonly parentCache = new Map<string, string>();

  /** Resolves a cleaned relative dir inside the root and makes sure it exists. */
  private parentDir(rel: string): string {
    let host = this.parentCache.get(rel);
    if (host === undefined) {
      host = secureJoin(this.root, rel, { followFinal: true });
      this.ensureDir(host);
      this.parentCache.set(rel, host);
    }
    return host;
  }

  /** Removes a path (recursively for dirs) without following it. */
  private remove(p: string, st: fs.Stats): void {
    this.parentCache.clear();
    if (st.isDirectory()) {
      fs.rmSync(p, { recursive: true, force: true });
      for (const d of this.dirs.keys()) if (d === p || d.startsWith(`${p}/`)) this.dirs.delete(d);
    } else {
      fs.unlinkSync(p);
    }
  }

  constructor(
    private readonly root: string,
    private readonly opts: ApplyOptions,
  ) {}

  private fail(e: TarEntry, what: string, cause?: unknown): never {
    throw new LayerError(`entry ${JSON.stringify(e.name)}: ${what}`, cause === undefined ? undefined : { cause });
  }

  async apply(reader: TarReader): Promise<void> {
    for (;;) {
      const e = await reader.next();
      if (e === null) break;
      this.entries++;
      try {
        await this.applyEntry(reader, e);
      } catch (err) {
        if (err instanceof LayerError) throw err;
        if (err instanceof PathEscapeError) this.fail(e, err.message, err);
        this.fail(e, (err as Error).message, err);
      }
    }
    this.fixupDirs();
  }

  private async applyEntry(reader: TarReader, e: TarEntry): Promise<void> {
    if (e.name.includes('\0') || e.linkname.includes('\0')) this.fail(e, 'name contains a NUL byte');
    const comps = cleanComponents(e.name); // throws PathEscapeError for `..` above the root
    const base = comps.at(-1);

    // Whiteouts.
    if (base !== undefined && base.startsWith(WHITEOUT_PREFIX)) {
      await reader.skipBody(e);
      const parentRel = comps.slice(0, -1).join('/');
      if (base === OPAQUE_WHITEOUT) return this.opaque(parentRel);
      if (base.startsWith(WHITEOUT_META_PREFIX)) return; // aufs metadata (.wh..wh.plnk etc.): ignored, like Docker
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..' || victim.includes('/')) {
        this.fail(e, `invalid whiteout target ${JSON.stringify(victim)}`);
      }
      return this.whiteout(parentRel, victim);
    }

    if (comps.length === 0) {
      // The root itself: only a directory may describe it.
      if (e.type !== 'dir') this.fail(e, `the root of the layer must be a directory, not a ${e.type}`);
      await reader.skipBody(e);
      this.setOwnerAndXattrs(e, this.root);
      this.dirs.set(this.root, { mode: e.mode, mtime: e.mtime });
      return;
    }

    const parent = this.parentDir(comps.slice(0, -1).join('/'));
    const target = path.join(parent, base!);
    const existing = lstatMaybe(target);

    if (e.type === 'dir') {
      await reader.skipBody(e);
      if (existing && !existing.isDirectory()) this.remove(target, existing);
      if (!existing || !existing.isDirectory()) {
        fs.mkdirSync(target, 0o700);
      }
      this.touched.add(target);
      this.setOwnerAndXattrs(e, target);
      this.dirs.set(target, { mode: e.mode, mtime: e.mtime });
      return;
    }

    // Hardlinks: the target must already exist inside the root.
    let linkSource: string | undefined;
    if (e.type === 'link') {
      if (e.linkname === '') this.fail(e, 'hardlink without a target');
      let lcomps: string[];
      try {
        lcomps = cleanComponents(e.linkname);
      } catch (err) {
        this.fail(e, `hardlink target ${JSON.stringify(e.linkname)} is outside the layer root`, err);
      }
      if (lcomps.length === 0) this.fail(e, 'hardlink to the root directory');
      const lparent = secureJoin(this.root, lcomps.slice(0, -1).join('/'), { followFinal: true });
      linkSource = path.join(lparent, lcomps.at(-1)!);
      const lst = lstatMaybe(linkSource);
      if (!lst) this.fail(e, `hardlink target ${JSON.stringify(e.linkname)} does not exist in the layer root`);
      if (lst.isDirectory()) this.fail(e, `hardlink target ${JSON.stringify(e.linkname)} is a directory`);
      if (linkSource === target) this.fail(e, 'hardlink to itself');
    }

    // Replace whatever is there, never following it.
    if (existing) this.remove(target, existing);
    this.touched.add(target);

    switch (e.type) {
      case 'file': {
        // Synchronous calls: most files are small and already buffered, and a
        // threadpool round trip per syscall would dominate. The event loop still
        // turns between chunks, which arrive asynchronously.
        const fd = fs.openSync(
          target,
          fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of reader.body(e)) {
            let off = 0;
            while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
          }
          fs.fchownSync(fd, e.uid, e.gid);
          fs.fchmodSync(fd, e.mode);
        } finally {
          fs.closeSync(fd);
        }
        this.setXattrs(e, target);
        fs.lutimesSync(target, e.mtime, e.mtime);
        return;
      }
      case 'link':
        await reader.skipBody(e);
        fs.linkSync(linkSource!, target);
        return;
      case 'symlink':
        await reader.skipBody(e);
        if (e.linkname === '') this.fail(e, 'symlink with an empty target');
        fs.symlinkSync(e.linkname, target);
        fs.lchownSync(target, e.uid, e.gid);
        this.setXattrs(e, target);
        fs.lutimesSync(target, e.mtime, e.mtime);
        return;
      case 'char':
      case 'block':
      case 'fifo': {
        await reader.skipBody(e);
        const kind = e.type === 'char' ? S_IFCHR : e.type === 'block' ? S_IFBLK : S_IFIFO;
        mknod(target, kind | 0o600, e.type === 'fifo' ? 0 : e.devmajor, e.type === 'fifo' ? 0 : e.devminor);
        fs.lchownSync(target, e.uid, e.gid);
        fs.chmodSync(target, e.mode); // a device node or fifo we just made: chmod does not open it
        this.setXattrs(e, target);
        fs.lutimesSync(target, e.mtime, e.mtime);
        return;
      }
    }
  }

  /** mkdir -p of a resolved parent; new dirs are 0755 root-owned, like Docker's implicit parents. */
  private ensureDir(hostPath: string): void {
    for (const d of mkdirAllInRoot(this.root, hostPath, 0o755)) this.touched.add(d);
  }

  private whiteout(parentRel: string, victim: string): void {
    const parent = secureJoin(this.root, parentRel, { followFinal: true });
    const target = path.join(parent, victim);
    if (this.opts.mode === 'snapshot') {
      this.ensureDir(parent);
      const st = lstatMaybe(target);
      if (st) this.remove(target, st);
      mknod(target, S_IFCHR | 0o000, 0, 0);
      this.touched.add(target);
      return;
    }
    const st = lstatMaybe(target);
    if (st) this.remove(target, st);
  }

  private opaque(dirRel: string): void {
    const dir = secureJoin(this.root, dirRel, { followFinal: true });
    if (this.opts.mode === 'snapshot') {
      this.ensureDir(dir);
      lsetxattr(dir, 'trusted.overlay.opaque', Buffer.from('y'));
      return;
    }
    const st = lstatMaybe(dir);
    if (!st || !st.isDirectory()) return;
    this.removeUntouched(dir);
  }

  /** Merged mode, opaque dir: delete what lower layers put under dir, keep what this layer wrote. */
  private removeUntouched(dir: string): void {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      const st = lstatMaybe(p);
      if (!st) continue;
      if (!this.touched.has(p)) this.remove(p, st);
      else if (st.isDirectory()) this.removeUntouched(p);
    }
  }

  private setOwnerAndXattrs(e: TarEntry, target: string): void {
    fs.lchownSync(target, e.uid, e.gid);
    this.setXattrs(e, target);
  }

  private setXattrs(e: TarEntry, target: string): void {
    for (const [name, value] of e.xattrs) {
      // Overlay's private attributes would let a layer forge whiteouts/redirects in a snapshot.
      if (name.startsWith('trusted.overlay.')) continue;
      try {
        lsetxattr(target, name, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // user.* xattrs cannot live on symlinks or device nodes; filesystems may lack xattr support.
        if ((code === 'EPERM' && name.startsWith('user.')) || code === 'ENOTSUP' || code === 'EOPNOTSUPP') continue;
        throw err;
      }
    }
  }

  private fixupDirs(): void {
    for (const [dir, f] of this.dirs) {
      const st = lstatMaybe(dir);
      if (!st?.isDirectory()) continue;
      fs.chmodSync(dir, f.mode);
      fs.utimesSync(dir, f.mtime, f.mtime);
    }
  }
}


/**
 * Reads a layer (gzip detected by magic bytes, else plain tar; anything else ->
 * LayerError) and applies it to target. diffId = sha256 of the uncompressed tar.
 * Throws LayerError on hostile or invalid input; on error the target is left
 * partially written and should be discarded by the caller.
 */
export async function applyLayer(input: NodeJS.ReadableStream, target: string, opts: ApplyOptions): Promise<ApplyResult> {
  const root = fs.realpathSync(target);
  if (!fs.statSync(root).isDirectory()) throw new LayerError(`target ${target} is not a directory`);
  const hash = createHash('sha256');
  const applier = new Applier(root, opts);
  try {
    await pipeline(input as Readable, async (source: AsyncIterable<Buffer>) => {
      const bytes = new ByteSource(decode(source, hash));
      try {
        await applier.apply(new TarReader(bytes));
        await bytes.drain();
      } catch (err) {
        await bytes.close().catch(() => {});
        throw err;
      }
    });
  } catch (err) {
    if (err instanceof LayerError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && e.code.startsWith('Z_')) throw new LayerError(`corrupt gzip stream: ${e.message}`, { cause: err });
    throw new LayerError(`applying layer: ${e.message}`, { cause: err });
  }
  return { diffId: `sha256:${hash.digest('hex')}`, entries: applier.entries };
}
