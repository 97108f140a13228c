// The container's root filesystem, as built by the init stage (PID 1 of the
// new pid namespace, before it execve's the user's program).
//
// Order, and why:
//  1. unshare(CLONE_NEWNS) here, in init, not in stage 0: pivot_root
//     moves the root of *every* task in the mount namespace whose root is the
//     old root. Had stage 0's main thread shared this namespace, it
//     would have been pivoted into the container too. A namespace of init's own
//     also means every mount below dies with the container: when the last
//     process exits, the kernel tears the namespace down, so no mount can leak
//     onto the host even if tsbuild is SIGKILLed.
//  2. `/` rprivate before any mount: the host's / is usually shared (systemd),
//     and without this our overlay/proc/... mounts would propagate back to the
//     host, and pivot_root refuses a new root whose parent mount is shared.
//  3. overlay mounted with paths relative to the store root (we chdir there):
//     the whole option string must fit one 4 KB page.
//  4. host files to bind in (/etc/hosts, ...) are cloned with open_tree
//     (OPEN_TREE_CLONE) *before* pivot_root, while they are reachable, and
//     attached afterwards with move_mount. (A plain bind from an O_PATH fd
//     fails with EINVAL once the old root is detached: the source mount is no
//     longer in our namespace; a cloned tree is its own detached mount.)
//  5. pivot_root(".", ".") + umount2(".", MNT_DETACH) (pivot_root(2)): stacks
//     the old root on top of the new and detaches it, leaving nothing of the
//     host reachable (unlike chroot, which can be escaped).
//  6. Every other mount happens *after* pivot_root, so every target path is
//     resolved inside the container's root: an image with /etc/resolv.conf ->
//     /host/path, or a `..`-laden symlink, can at worst redirect a mount to
//     another place inside the container, never onto the host.
//  7. /proc is mounted by init itself because procfs shows the pid namespace of
//     the mounter (stage 0 is outside it).
import fs from 'node:fs';
import path from 'node:path';
import { mknod, S_IFCHR } from '../image/native.js';
import type { BindSpec, InitSpec } from './spec.js';
import {
  chdir,
  CLONE_NEWNS,
  mount,
  MNT_DETACH,
  MS_BIND,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REC,
  MS_REMOUNT,
  MS_STRICTATIME,
  moveMount,
  openTreeClone,
  pivotRoot,
  umount2,
  unshare,
} from './syscalls.js';

/** Overlay's mount data must fit one page. */
const PAGE = 4096;

export function overlayOptions(spec: Pick<InitSpec, 'lowerDirs' | 'upperDir' | 'workDir'>): string {
  for (const p of [...spec.lowerDirs, spec.upperDir, spec.workDir]) {
    if (/[,:\\]/.test(p)) throw new Error(`overlay path ${p} contains a character overlay cannot take (, : \\)`);
  }
  const opts = `lowerdir=${spec.lowerDirs.join(':')},upperdir=${spec.upperDir},workdir=${spec.workDir},index=off,metacopy=off,redirect_dir=off`;
  if (Buffer.byteLength(opts) >= PAGE) {
    throw new Error(`overlay options are ${Buffer.byteLength(opts)} bytes for ${spec.lowerDirs.length} layers; the kernel takes at most ${PAGE - 1}`);
  }
  return opts;
}

/** Steps 1-5: a private mount namespace whose root is the container's overlay. */
export interface ClonedBind {
  fd: number;
  isDir: boolean;
  bind: BindSpec;
}

export function enterRootfs(spec: InitSpec): ClonedBind[] {
  unshare(CLONE_NEWNS);
  mount(null, '/', null, MS_REC | MS_PRIVATE);
  chdir(spec.storeRoot);
  mount('overlay', spec.rootfs, 'overlay', 0, overlayOptions(spec));
  const binds = spec.binds.map((bind) => ({ fd: openTreeClone(bind.source), isDir: fs.statSync(bind.source).isDirectory(), bind }));
  // -t: our fd 0 is the host's pty slave; bound on /dev/console it gives the
  // terminal a name inside the container (ttyname() finds it there).
  if (spec.process.terminal) {
    const slave = fs.readlinkSync('/proc/self/fd/0');
    binds.push({ fd: openTreeClone(slave), isDir: false, bind: { source: slave, target: '/dev/console', readonly: false } });
  }
  chdir(spec.rootfs);
  pivotRoot('.', '.');
  umount2('.', MNT_DETACH);
  chdir('/');
  return binds;
}

/** A directory to mount on; created if missing. A symlink or file there is refused (runc does the same for /proc). */
function mountDir(p: string): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (!st) fs.mkdirSync(p, { recursive: true, mode: 0o755 });
  else if (!st.isDirectory()) throw new Error(`cannot mount on ${p}: not a directory in the image`);
}

/** A file to bind-mount on; created (empty) if missing. */
function mountFile(p: string): void {
  try {
    fs.statSync(p);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
  // A dangling symlink (/etc/resolv.conf -> ../run/...) is replaced by a file;
  // we are inside the container's root, so this writes to its upper dir only.
  try {
    fs.unlinkSync(p);
  } catch {
    /* not there */
  }
  fs.writeFileSync(p, '', { mode: 0o644 });
}

const DEVICES: [string, number, number][] = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
  ['tty', 5, 0],
];

const DEV_LINKS: [string, string][] = [
  ['fd', '/proc/self/fd'],
  ['stdin', '/proc/self/fd/0'],
  ['stdout', '/proc/self/fd/1'],
  ['stderr', '/proc/self/fd/2'],
  ['ptmx', 'pts/ptmx'],
  ['core', '/proc/kcore'],
];

/** Paths Docker masks by default: a read of them tells the container about the host, or a write hurts it. */
const MASKED_FILES = ['/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Steps 6-7: the kernel filesystems, /dev, the bind mounts and masked paths, all inside the new root. */
export function mountSpecialFilesystems(binds: ClonedBind[], opts: { tmpfs?: string[]; privileged?: boolean } = {}): void {
  mountDir('/proc');
  mount('proc', '/proc', 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC);

  mountDir('/dev');
  mount('tmpfs', '/dev', 'tmpfs', MS_NOSUID | MS_STRICTATIME, 'mode=755,size=65536k');
  for (const [name, major, minor] of DEVICES) {
    mknod(`/dev/${name}`, S_IFCHR | 0o666, major, minor);
    fs.chmodSync(`/dev/${name}`, 0o666); // umask-proof
  }
  for (const [name, target] of DEV_LINKS) fs.symlinkSync(target, `/dev/${name}`);
  fs.mkdirSync('/dev/pts', { mode: 0o755 });
  mount('devpts', '/dev/pts', 'devpts', MS_NOSUID | MS_NOEXEC, 'newinstance,ptmxmode=0666,mode=0620,gid=5');
  fs.mkdirSync('/dev/shm', { mode: 0o1777 });
  mount('shm', '/dev/shm', 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=1777,size=65536k');
  fs.mkdirSync('/dev/mqueue', { mode: 0o755 });
  mount('mqueue', '/dev/mqueue', 'mqueue', MS_NOSUID | MS_NODEV | MS_NOEXEC);

  mountDir('/sys');
  mount('sysfs', '/sys', 'sysfs', (opts.privileged ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC);

  for (const { fd, isDir, bind } of binds) {
    if (isDir) mountDir(bind.target);
    else mountFile(bind.target);
    moveMount(fd, bind.target);
    if (bind.readonly) mount(null, bind.target, null, MS_BIND | MS_REMOUNT | MS_RDONLY);
    fs.closeSync(fd);
  }

  for (const t of opts.tmpfs ?? []) {
    mountDir(t);
    mount('tmpfs', t, 'tmpfs', MS_NOSUID | MS_NODEV, 'mode=755');
  }

  if (opts.privileged) return;
  for (const p of MASKED_FILES) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) mount('tmpfs', p, 'tmpfs', MS_RDONLY, 'size=0');
    else mount('/dev/null', p, null, MS_BIND);
  }
  for (const p of READONLY_PATHS) {
    try {
      fs.lstatSync(p);
    } catch {
      continue;
    }
    mount(p, p, null, MS_BIND | MS_REC);
    mount(null, p, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
  }
}

/**
 * --read-only: called last (after the working dir is made), so every mount
 * point could still be created; bind-mounted files and volumes keep their own flags.
 */
export function makeRootReadonly(): void {
  mount(null, '/', null, MS_BIND | MS_REMOUNT | MS_RDONLY);
}
