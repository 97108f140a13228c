// Thin koffi bindings to the libc calls Node's fs module lacks: extended
// attributes, mknod and flock. Everything here is synchronous and returns or
// throws a NodeJS.ErrnoException-shaped error so callers can switch on `code`.
import { createRequire } from 'node:module';
import os from 'node:os';

const require = createRequire(import.meta.url);
// koffi is CommonJS; loading it through require keeps its native handle single.
const koffi = require('koffi') as typeof import('koffi');

export const libc = koffi.load('libc.so.6');

const _lsetxattr = libc.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)');
const _lgetxattr = libc.func('long lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)');
const _llistxattr = libc.func('long llistxattr(const char *path, _Out_ void *list, size_t size)');
const _lremovexattr = libc.func('int lremovexattr(const char *path, const char *name)');
const _mknod = libc.func('int mknod(const char *path, uint32_t mode, uint64_t dev)');
const _flock = libc.func('int flock(int fd, int op)');

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

const errnoNames: Record<number, string> = Object.fromEntries(
  Object.entries(os.constants.errno).map(([k, v]) => [v as number, k]),
);

export function errnoError(syscall: string, path?: string): NodeJS.ErrnoException {
  const errno = koffi.errno();
  const code = errnoNames[errno] ?? `E${errno}`;
  const err = new Error(`${syscall}${path ? ` ${path}` : ''}: ${code}`) as NodeJS.ErrnoException;
  err.errno = errno;
  err.code = code;
  err.syscall = syscall;
  if (path) err.path = path;
  return err;
}

export function lsetxattr(path: string, name: string, value: Buffer): void {
  if (_lsetxattr(path, name, value, value.length, 0) !== 0) throw errnoError('lsetxattr', path);
}

export function lremovexattr(path: string, name: string): void {
  if (_lremovexattr(path, name) !== 0) throw errnoError('lremovexattr', path);
}

/** Returns the value, or undefined when the attribute does not exist. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  for (let size = 256; ; size *= 4) {
    const buf = Buffer.alloc(size);
    const n = Number(_lgetxattr(path, name, buf, size));
    if (n >= 0) return buf.subarray(0, n);
    const err = errnoError('lgetxattr', path);
    if (err.code === 'ENODATA') return undefined;
    if (err.code !== 'ERANGE' || size > 1 << 20) throw err;
  }
}

/** Names of all extended attributes of path (not following a final symlink). */
export function llistxattr(path: string): string[] {
  for (let size = 1024; ; size *= 4) {
    const buf = Buffer.alloc(size);
    const n = Number(_llistxattr(path, buf, size));
    if (n >= 0) return buf.subarray(0, n).toString('utf8').split('\0').filter(Boolean);
    const err = errnoError('llistxattr', path);
    if (err.code === 'ENOTSUP' || err.code === 'EOPNOTSUPP') return [];
    if (err.code !== 'ERANGE' || size > 1 << 20) throw err;
  }
}

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

/** glibc's makedev encoding for a 64-bit dev_t. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

export function devMajor(dev: number): number {
  const d = BigInt(dev);
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
}

export function devMinor(dev: number): number {
  const d = BigInt(dev);
  return Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
}

export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  if (_mknod(path, mode, makedev(major, minor)) !== 0) throw errnoError('mknod', path);
}

/** flock(2) on an open fd. With LOCK_NB, returns false instead of blocking when the lock is held. */
export function flock(fd: number, op: number): boolean {
  if (_flock(fd, op) === 0) return true;
  const err = errnoError('flock');
  if (err.code === 'EWOULDBLOCK' || err.code === 'EAGAIN') return false;
  throw err;
}
