// A container's on-disk bundle, made by the host side before any namespace
// exists: upper/ and work/ for overlay, rootfs/ to mount on, the init layer,
// the /etc files to bind in, and spec.json for the stages. Shared by `run`
// and by build steps (step.ts).
//
// The init layer (as Docker's "-init" layer): a tiny lower layer, top-most,
// holding the mount points the runtime needs (/proc, /dev, /sys, /etc/hosts,
// /etc/hostname, /etc/resolv.conf, volume and build-mount targets) when the
// image lacks them. Without it, init would create them in the upper dir, and
// every RUN layer and every `commit` would carry empty /etc/hosts files and
// mount-point dirs the user never made. Parent dirs copied into it keep the
// image's mode, owner and mtime, so the merged view shows what the image has.
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../image/atomic.js';
import { mergedKind } from '../image/layer-writer.js';
import { lstatMaybe } from '../image/safepath.js';
import type { BindSpec, InitSpec, NetworkMode } from './spec.js';
import { CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUTS } from './syscalls.js';

export interface BundleOptions {
  id: string;
  /** Image snapshot fs dirs, bottom-first (as ensureSnapshots returns them). */
  snapshots: string[];
  hostname: string;
  network: NetworkMode;
  process: InitSpec['process'];
  /** Extra bind mounts (volumes, build mounts), after the /etc files. */
  binds?: BindSpec[];
  /** tmpfs mounts (container paths). */
  tmpfs?: string[];
  cgroupProcs?: string[];
  readonlyRootfs?: boolean;
  privileged?: boolean;
  /** Extra lines for /etc/hosts (name resolution on user networks). */
  extraHosts?: string[];
}

const LOCAL_HOSTS = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix', 'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters'];

async function etcFiles(dir: string, hostname: string, network: NetworkMode, extraHosts: string[]): Promise<{ hostname: string; hosts: string; resolvConf: string }> {
  const files = { hostname: path.join(dir, 'hostname'), hosts: path.join(dir, 'hosts'), resolvConf: path.join(dir, 'resolv.conf') };
  await fsp.writeFile(files.hostname, `${hostname}\n`, { mode: 0o644 });
  const hosts =
    network === 'host' ? await fsp.readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1\tlocalhost\n') : [...LOCAL_HOSTS, ...extraHosts, ''].join('\n');
  await fsp.writeFile(files.hosts, hosts, { mode: 0o644 });
  const resolv = await fsp.readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  await fsp.writeFile(files.resolvConf, resolv, { mode: 0o644 });
  return files;
}

/** lstat of rel in the top-most lower that has it (what the merged view shows, when mergedKind says it exists). */
function topLowerStat(lowersTopFirst: string[], rel: string): Stats | undefined {
  for (const l of lowersTopFirst) {
    const st = lstatMaybe(path.join(l, rel));
    if (st) return st;
  }
  return undefined;
}

/**
 * Adds mount point `target` (absolute, in the container) to the init layer
 * when the image does not have the right kind of thing there. A path whose
 * parent in the image is not a plain directory (a symlink, say) is left to
 * init, which resolves it inside the container's root.
 */
async function addMountPoint(initDir: string, lowersTopFirst: string[], target: string, kind: 'dir' | 'file'): Promise<void> {
  const comps = target.split('/').filter(Boolean);
  if (comps.length === 0 || comps.some((c) => c === '..' || c === '.')) return;
  for (let i = 0; i < comps.length - 1; i++) {
    const rel = comps.slice(0, i + 1).join('/');
    const k = mergedKind(lowersTopFirst, rel);
    if (k === 'other') return;
    const dst = path.join(initDir, rel);
    try {
      await fsp.mkdir(dst, { mode: 0o755 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw e;
    }
    const st = k === 'dir' ? topLowerStat(lowersTopFirst, rel) : undefined;
    if (st) {
      await fsp.chown(dst, st.uid, st.gid);
      await fsp.chmod(dst, st.mode & 0o7777);
      await fsp.utimes(dst, st.atime, st.mtime);
    }
  }
  const rel = comps.join('/');
  const k = mergedKind(lowersTopFirst, rel);
  if (kind === 'dir' && k === 'dir') return;
  if (kind === 'file' && k === 'other' && topLowerStat(lowersTopFirst, rel)?.isFile()) return;
  const dst = path.join(initDir, rel);
  if (kind === 'dir') await fsp.mkdir(dst, { recursive: true, mode: 0o755 }).catch(() => {});
  else await fsp.writeFile(dst, '', { mode: 0o644, flag: 'wx' }).catch(() => {});
}

/** Fixed mount points every container needs. */
const RUNTIME_MOUNT_POINTS: [string, 'dir' | 'file'][] = [
  ['/proc', 'dir'],
  ['/dev', 'dir'],
  ['/sys', 'dir'],
  ['/etc/hosts', 'file'],
  ['/etc/hostname', 'file'],
  ['/etc/resolv.conf', 'file'],
];

/** The namespaces a container's init is spawned in for a network mode. */
export function namespacesFor(network: NetworkMode): number {
  return CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | (network === 'host' ? 0 : CLONE_NEWNET);
}

/**
 * Creates upper/, work/, rootfs/, init/ and the /etc files in `dir` (which
 * must be under storeRoot, to keep overlay's option string short) and writes
 * dir/spec.json. Returns the spec.
 */
export async function writeBundle(storeRoot: string, dir: string, o: BundleOptions): Promise<InitSpec> {
  const rel = (p: string) => path.relative(storeRoot, p);
  for (const d of ['upper', 'work', 'rootfs', 'init']) await fsp.mkdir(path.join(dir, d), { mode: 0o755 });
  const lowersTopFirst = [...o.snapshots].reverse();
  const initDir = path.join(dir, 'init');
  const extra = o.binds ?? [];
  for (const [p, kind] of RUNTIME_MOUNT_POINTS) await addMountPoint(initDir, lowersTopFirst, p, kind);
  for (const b of extra) {
    let isDir = true;
    try {
      isDir = (await fsp.stat(b.source)).isDirectory();
    } catch {
      /* the stage reports a missing source */
    }
    await addMountPoint(initDir, lowersTopFirst, b.target, isDir ? 'dir' : 'file');
  }
  for (const t of o.tmpfs ?? []) await addMountPoint(initDir, lowersTopFirst, t, 'dir');

  const etc = await etcFiles(dir, o.hostname, o.network, o.extraHosts ?? []);
  const spec: InitSpec = {
    version: 1,
    id: o.id,
    storeRoot,
    lowerDirs: [rel(initDir), ...lowersTopFirst.map(rel)],
    upperDir: rel(path.join(dir, 'upper')),
    workDir: rel(path.join(dir, 'work')),
    rootfs: rel(path.join(dir, 'rootfs')),
    hostname: o.hostname,
    network: o.network,
    namespaces: namespacesFor(o.network),
    binds: [
      { source: etc.hostname, target: '/etc/hostname', readonly: false },
      { source: etc.hosts, target: '/etc/hosts', readonly: false },
      { source: etc.resolvConf, target: '/etc/resolv.conf', readonly: false },
      ...extra,
    ],
    ...(o.tmpfs?.length ? { tmpfs: o.tmpfs } : {}),
    ...(o.readonlyRootfs ? { readonlyRootfs: true } : {}),
    ...(o.privileged ? { privileged: true } : {}),
    process: o.process,
    cgroupProcs: o.cgroupProcs ?? [],
  };
  await writeJsonAtomic(path.join(dir, 'spec.json'), spec, 0o600);
  return spec;
}
