// koffi bindings to the Linux calls the runtime needs and Node lacks:
// namespaces (unshare, setns), mounts (mount, umount2, pivot_root), the root
// and cwd of the calling thread (chdir, chroot), the UTS name, execve, prctl,
// setsid, signal dispositions and a little socket ioctl to bring up `lo`.
//
// Every call is synchronous and runs on the calling thread. That matters:
// unshare(CLONE_NEWNS), chdir and friends change the *calling thread's* view in
// a multithreaded Node process, so stage code must use only synchronous fs
// calls (the libuv threadpool runs async fs calls on threads that still see the
// old mount namespace).
//
// Errors are thrown as NodeJS.ErrnoException-shaped errors (code, errno,
// syscall, path) built by image/native.ts.
import { createRequire } from 'node:module';
import { errnoError, libc } from '../image/native.js';

const require = createRequire(import.meta.url);
const koffi = require('koffi') as typeof import('koffi');

// ---- constants (linux/sched.h, linux/mount.h, linux/prctl.h) -------------------

export const CLONE_FS = 0x00000200;
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWCGROUP = 0x02000000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWUSER = 0x10000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;

export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_REMOUNT = 0x20;
export const MS_NOATIME = 0x400;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_STRICTATIME = 0x1000000;

export const MNT_FORCE = 1;
export const MNT_DETACH = 2;

export const PR_SET_PDEATHSIG = 1;
export const PR_CAPBSET_READ = 23;
export const PR_CAPBSET_DROP = 24;
export const PR_SET_NO_NEW_PRIVS = 38;

export const F_SETFD = 2;
export const FD_CLOEXEC = 1;

/** open(2) flag: a path-only fd (not in Node's fs.constants). */
export const O_PATH = 0o10000000;

const SYS_pivot_root = 155; // x86_64
const SYS_open_tree = 428;
const SYS_move_mount = 429;
const AT_FDCWD = -100;
const OPEN_TREE_CLONE = 1;
const OPEN_TREE_CLOEXEC = 0o2000000;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;

// ---- raw functions -------------------------------------------------------------

const _unshare = libc.func('int unshare(int flags)');
const _setns = libc.func('int setns(int fd, int nstype)');
const _mount = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
const _umount2 = libc.func('int umount2(const char *target, int flags)');
const _syscall = libc.func('long syscall(long number, ...)');
const _chdir = libc.func('int chdir(const char *path)');
const _fchdir = libc.func('int fchdir(int fd)');
const _chroot = libc.func('int chroot(const char *path)');
const _sethostname = libc.func('int sethostname(const char *name, size_t len)');
const _execve = libc.func('int execve(const char *path, const char **argv, const char **envp)');
const _prctl = libc.func('int prctl(int option, ...)');
const _fcntl = libc.func('int fcntl(int fd, int cmd, ...)');
const _setsid = libc.func('int setsid()');
const _signal = libc.func('void *signal(int sig, void *handler)');
const _sigprocmask = libc.func('int sigprocmask(int how, const void *set, void *oldset)');
const _socket = libc.func('int socket(int domain, int type, int protocol)');
const _ioctl = libc.func('int ioctl(int fd, unsigned long request, ...)');
const _close = libc.func('int close(int fd)');
const _getpid = libc.func('int getpid()');
const _capset = libc.func('int capset(void *header, void *data)');
const _prlimit = libc.func('int prlimit(int pid, int resource, const void *newlimit, void *oldlimit)');

// ---- wrappers ------------------------------------------------------------------

export function unshare(flags: number): void {
  if (_unshare(flags) !== 0) throw errnoError('unshare');
}

export function setns(fd: number, nstype = 0): void {
  if (_setns(fd, nstype) !== 0) throw errnoError('setns');
}

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  if (_mount(source, target, fstype, flags, data) !== 0) {
    const e = errnoError('mount', target);
    e.message = `mount ${fstype ?? (flags & MS_BIND ? 'bind' : '')} ${source ?? ''} on ${target}${data ? ` (${data.length > 200 ? data.slice(0, 200) + '…' : data})` : ''}: ${e.code}`;
    throw e;
  }
}

export function umount2(target: string, flags = 0): void {
  if (_umount2(target, flags) !== 0) throw errnoError('umount2', target);
}

/** pivot_root(2) has no glibc wrapper; called through syscall(2). */
export function pivotRoot(newRoot: string, putOld: string): void {
  if (Number(_syscall(SYS_pivot_root, 'const char *', newRoot, 'const char *', putOld)) !== 0) throw errnoError('pivot_root', newRoot);
}

/**
 * open_tree(OPEN_TREE_CLONE): a detached copy of the mount at path, as an fd.
 * Unlike a path or an O_PATH fd, it stays mountable after the mount it came
 * from has left our namespace (bind-mounting from a detached mount is EINVAL).
 */
export function openTreeClone(p: string): number {
  const fd = Number(_syscall(SYS_open_tree, 'int', AT_FDCWD, 'const char *', p, 'unsigned int', OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (fd < 0) throw errnoError('open_tree', p);
  return fd;
}

/** move_mount(2) of a tree from openTreeClone onto target. */
export function moveMount(fd: number, target: string): void {
  if (Number(_syscall(SYS_move_mount, 'int', fd, 'const char *', '', 'int', AT_FDCWD, 'const char *', target, 'unsigned int', MOVE_MOUNT_F_EMPTY_PATH)) !== 0) {
    throw errnoError('move_mount', target);
  }
}

export function chdir(p: string): void {
  if (_chdir(p) !== 0) throw errnoError('chdir', p);
}

export function fchdir(fd: number): void {
  if (_fchdir(fd) !== 0) throw errnoError('fchdir');
}

export function chroot(p: string): void {
  if (_chroot(p) !== 0) throw errnoError('chroot', p);
}

export function sethostname(name: string): void {
  const len = Buffer.byteLength(name);
  if (_sethostname(name, len) !== 0) throw errnoError('sethostname', name);
}

/**
 * Replaces the process image. Returns only on failure, by throwing (ENOENT,
 * EACCES, ENOEXEC, ...). argv and envp are NULL-terminated for the kernel here.
 */
export function execve(file: string, argv: string[], envp: string[]): never {
  _execve(file, [...argv, null], [...envp, null]);
  throw errnoError('execve', file);
}

/** prctl(2); returns its (non-negative) result. */
export function prctl(option: number, arg2 = 0): number {
  const r = _prctl(option, 'unsigned long', arg2, 'unsigned long', 0, 'unsigned long', 0, 'unsigned long', 0);
  if (r < 0) throw errnoError('prctl');
  return r;
}

/** capset(2) for the calling thread with 64-bit masks (_LINUX_CAPABILITY_VERSION_3). */
export function capset(effective: bigint, permitted: bigint, inheritable: bigint): void {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0x20080522, 0);
  const data = Buffer.alloc(24);
  const lo = (m: bigint) => Number(m & 0xffffffffn);
  const hi = (m: bigint) => Number((m >> 32n) & 0xffffffffn);
  data.writeUInt32LE(lo(effective), 0);
  data.writeUInt32LE(lo(permitted), 4);
  data.writeUInt32LE(lo(inheritable), 8);
  data.writeUInt32LE(hi(effective), 12);
  data.writeUInt32LE(hi(permitted), 16);
  data.writeUInt32LE(hi(inheritable), 20);
  if (_capset(header, data) !== 0) throw errnoError('capset');
}

/**
 * Sets or clears close-on-exec on fd. Node 20 marks *every* fd it inherited,
 * 0-2 included, close-on-exec at startup, so a Node stage that execve's the
 * user's program must clear it on the stdio fds it hands over; the status fd
 * keeps it, so a successful execve closes it (the "exec succeeded" signal).
 */
export function setCloexec(fd: number, on = true): void {
  if (_fcntl(fd, F_SETFD, 'int', on ? FD_CLOEXEC : 0) === -1) throw errnoError('fcntl');
}

export function setsid(): number {
  const r = _setsid();
  if (r === -1) throw errnoError('setsid');
  return r;
}

export function getpid(): number {
  return _getpid();
}

/**
 * Puts every signal back to SIG_DFL and clears the signal mask. Handlers are
 * reset by execve anyway, but SIG_IGN dispositions and the mask are inherited:
 * Node ignores SIGPIPE, which a user's program must not inherit (`yes | head`).
 */
export function resetSignals(): void {
  for (let sig = 1; sig < 65; sig++) {
    if (sig === 9 || sig === 19 || sig === 32 || sig === 33) continue;
    _signal(sig, null); // SIG_DFL; errors (invalid signal numbers) are irrelevant
  }
  const empty = Buffer.alloc(128);
  if (_sigprocmask(2 /* SIG_SETMASK */, empty, null) !== 0) throw errnoError('sigprocmask');
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const IFF_UP = 0x1;

/** Sets IFF_UP on a network interface of the calling thread's network namespace. */
export function interfaceUp(name: string): void {
  const fd = _socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) throw errnoError('socket');
  try {
    // struct ifreq: char ifr_name[16]; union { short ifr_flags; ... } (40 bytes in all)
    const ifr = Buffer.alloc(40);
    ifr.write(name, 0, 15, 'utf8');
    if (_ioctl(fd, SIOCGIFFLAGS, 'void *', ifr) !== 0) throw errnoError('ioctl(SIOCGIFFLAGS)', name);
    ifr.writeInt16LE(ifr.readInt16LE(16) | IFF_UP, 16);
    if (_ioctl(fd, SIOCSIFFLAGS, 'void *', ifr) !== 0) throw errnoError('ioctl(SIOCSIFFLAGS)', name);
  } finally {
    _close(fd);
  }
}

/** RLIMIT_* numbers (x86_64), by Docker's --ulimit names. */
export const RLIMITS: Record<string, number> = {
  cpu: 0,
  fsize: 1,
  data: 2,
  stack: 3,
  core: 4,
  rss: 5,
  nproc: 6,
  nofile: 7,
  memlock: 8,
  as: 9,
  locks: 10,
  sigpending: 11,
  msgqueue: 12,
  nice: 13,
  rtprio: 14,
  rttime: 15,
};

/** setrlimit(2) for the calling process; -1 means unlimited (RLIM_INFINITY). */
export function setrlimit(resource: number, soft: number, hard: number): void {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(soft < 0 ? 0xffffffffffffffffn : BigInt(soft), 0);
  b.writeBigUInt64LE(hard < 0 ? 0xffffffffffffffffn : BigInt(hard), 8);
  if (_prlimit(0, resource, b, null) !== 0) throw errnoError('setrlimit');
}

export { koffi };
