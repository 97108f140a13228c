// Containers on disk:
//
//   <root>/containers/<id>/config.json    what was asked for (Docker-like; Id, Name, Image = image ID)
//   <root>/containers/<id>/state.json     status, pid + its start time, exit code (replaced atomically)
//   <root>/containers/<id>/spec.json      what the stages get (spec.ts)
//   <root>/containers/<id>/upper, work    overlay upper and work dirs: the container's changes
//   <root>/containers/<id>/rootfs         mount point of the overlay (mounted only inside the container's mount ns)
//   <root>/containers/<id>/hostname, hosts, resolv.conf   bind-mounted into the container's /etc
//
// A pid alone does not identify a process (pids are reused), so state.json
// keeps the start time (field 22 of /proc/<pid>/stat, in clock ticks since
// boot) next to it; `isRunning` checks both.
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeJsonAtomic } from '../image/atomic.js';
import type { Store } from '../image/store.js';
import type { Digest } from '../image/digest.js';
import { umount2, MNT_DETACH } from './syscalls.js';
import type { NetworkMode } from './spec.js';
import { removeCgroups, type CgroupPaths } from './cgroups.js';
import { releaseContainerNetworks } from './network/endpoints.js';
import { removeAnonymousVolumes, type MountRecord } from './volumes.js';

export type ContainerStatus = 'created' | 'running' | 'exited';

export interface ContainerConfig {
  Id: string;
  Name: string;
  /** Image ID (config digest). */
  Image: Digest;
  /** What the user typed (app:latest). */
  ImageName: string;
  Created: string;
  Path: string;
  Args: string[];
  Config: {
    Hostname: string;
    User: string;
    Env: string[];
    Cmd: string[] | null;
    Entrypoint: string[] | null;
    WorkingDir: string;
    /** The image's STOPSIGNAL (`stop` sends it, default SIGTERM). */
    StopSignal?: string;
    /** -t */
    Tty?: boolean;
    /** -i */
    OpenStdin?: boolean;
    /** --init */
    Init?: boolean;
    /** The image's EXPOSE plus --expose ("80/tcp": {}). */
    ExposedPorts?: Record<string, object>;
  };
  HostConfig: {
    AutoRemove: boolean;
    /** "host", "none", "bridge" (the default network) or a user-defined network's name (runtime/network). */
    NetworkMode: NetworkMode | string;
    /** -p, as Docker stores it: "80/tcp" -> [{HostIp, HostPort}] (HostPort "" = any free port). */
    PortBindings?: Record<string, { HostIp: string; HostPort: string }[]>;
    /** -P: every exposed port on a free host port. */
    PublishAllPorts?: boolean;
    CapAdd: string[];
    CapDrop: string[];
    /** Bytes (0 unlimited), as Docker's HostConfig. */
    Memory?: number;
    MemorySwap?: number;
    NanoCpus?: number;
    CpuShares?: number;
    CpusetCpus?: string;
    PidsLimit?: number;
    Privileged?: boolean;
    ReadonlyRootfs?: boolean;
    SecurityOpt?: string[];
    Tmpfs?: Record<string, string>;
    Ulimits?: { Name: string; Soft: number; Hard: number }[];
  };
  /** -v binds and volumes, image VOLUMEs (volumes.ts). */
  Mounts?: MountRecord[];
  /** --ip and --network-alias for the network of NetworkMode, in the shape of Docker's create request. */
  NetworkingConfig?: { EndpointsConfig: Record<string, { Aliases?: string[]; IPAMConfig?: { IPv4Address?: string } }> };
  /** -d: stdout/stderr in json-file lines (logs.ts). */
  LogPath?: string;
  /** The container's cgroup dirs (cgroups.ts), recorded so `rm` can remove them from any process. */
  Cgroup?: CgroupPaths;
}

export interface ContainerState {
  Status: ContainerStatus;
  Running: boolean;
  Pid: number;
  /** Start time of Pid in clock ticks since boot (/proc/<pid>/stat field 22). */
  PidStartTime: number;
  ExitCode: number;
  Error: string;
  StartedAt: string;
  FinishedAt: string;
  /** The kernel OOM-killed a process of the container's cgroup. */
  OOMKilled?: boolean;
  /** The process that waits for the exit and records it (the monitor for -d, `tsbuild run` itself otherwise). */
  MonitorPid?: number;
  MonitorStartTime?: number;
}

export function containersDir(root: string): string {
  return path.join(root, 'containers');
}

export function containerDir(root: string, id: string): string {
  return path.join(containersDir(root), id);
}

export function newContainerId(): string {
  return randomBytes(32).toString('hex');
}

const ADJECTIVES = ['brave', 'calm', 'eager', 'fond', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'quirky', 'sharp', 'tender', 'vivid', 'witty', 'zen'];
const NAMES = ['babbage', 'curie', 'darwin', 'euler', 'fermat', 'gauss', 'hopper', 'kepler', 'lovelace', 'noether', 'pascal', 'ritchie', 'shannon', 'turing', 'wozniak', 'yonath'];

export function randomName(): string {
  const pick = (a: string[]) => a[randomBytes(1)[0]! % a.length]!;
  return `${pick(ADJECTIVES)}_${pick(NAMES)}_${randomBytes(2).toString('hex')}`;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export async function readContainerConfig(root: string, id: string): Promise<ContainerConfig> {
  return JSON.parse(await fsp.readFile(path.join(containerDir(root, id), 'config.json'), 'utf8')) as ContainerConfig;
}

export async function readContainerState(root: string, id: string): Promise<ContainerState | undefined> {
  try {
    return JSON.parse(await fsp.readFile(path.join(containerDir(root, id), 'state.json'), 'utf8')) as ContainerState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export async function writeContainerState(root: string, id: string, state: ContainerState): Promise<void> {
  await writeJsonAtomic(path.join(containerDir(root, id), 'state.json'), state);
}

export async function listContainerIds(root: string): Promise<string[]> {
  try {
    return (await fsp.readdir(containersDir(root))).filter((n) => /^[0-9a-f]{64}$/.test(n));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/**
 * Creates the container's directory and config.json. The name is checked and
 * claimed under the store's "containers" lock, so two concurrent runs cannot
 * both get the same --name.
 */
export async function createContainer(store: Store, config: ContainerConfig): Promise<string> {
  if (!NAME_RE.test(config.Name)) throw new Error(`Invalid container name (${config.Name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  await fsp.mkdir(containersDir(store.root), { recursive: true, mode: 0o700 });
  return store.withLock('containers', 'exclusive', async () => {
    for (const id of await listContainerIds(store.root)) {
      try {
        const c = await readContainerConfig(store.root, id);
        if (c.Name === config.Name) {
          throw new Error(`Conflict. The container name "/${config.Name}" is already in use by container "${id}". You have to remove (or rename) that container to be able to reuse that name.`);
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
    }
    const dir = containerDir(store.root, config.Id);
    await fsp.mkdir(dir, { mode: 0o710 });
    await writeJsonAtomic(path.join(dir, 'config.json'), config);
    await writeContainerState(store.root, config.Id, {
      Status: 'created',
      Running: false,
      Pid: 0,
      PidStartTime: 0,
      ExitCode: 0,
      Error: '',
      StartedAt: '0001-01-01T00:00:00Z',
      FinishedAt: '0001-01-01T00:00:00Z',
    });
    return dir;
  });
}

/** Field 22 of /proc/<pid>/stat (starttime), or undefined if the process is gone or a zombie. */
export function procStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may hold spaces and parens: fields 3.. follow the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // A zombie has exited; only its parent's wait() is missing. A monitor whose
  // parent (`run -d`, gone) left it to a slow-reaping PID 1 stayed a zombie
  // for a second or more, and `rm` waited for it.
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  return Number(rest[22 - 3]);
}

export function isRunning(state: ContainerState | undefined): boolean {
  if (!state || !state.Running || state.Pid <= 0) return false;
  return procStartTime(state.Pid) === state.PidStartTime;
}

/** Whether the process that records the container's exit is still there (pid + start time). */
export function monitorAlive(state: ContainerState | undefined): boolean {
  if (!state || !state.MonitorPid) return false;
  return procStartTime(state.MonitorPid) === state.MonitorStartTime;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Finds a container by full id, unique id prefix or name. */
export async function findContainer(root: string, ref: string): Promise<string> {
  const ids = await listContainerIds(root);
  if (ids.includes(ref)) return ref;
  for (const id of ids) {
    try {
      if ((await readContainerConfig(root, id)).Name === ref.replace(/^\//, '')) return id;
    } catch {
      /* being created or removed */
    }
  }
  const byPrefix = /^[0-9a-f]+$/.test(ref) ? ids.filter((id) => id.startsWith(ref)) : [];
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) throw new Error(`multiple containers found with provided prefix: ${ref}`);
  throw new Error(`No such container: ${ref}`);
}

/** Mount points at or below dir in our mount namespace, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const info = readFileSync('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of info.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const p = unescape(mp);
    if (p === dir || p.startsWith(dir + '/')) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Removes a container's directory: its config, state and upper dir. The
 * overlay lives in the container's own mount namespace and vanishes with its
 * last process; anything still mounted below the dir in ours (it should not
 * be) is detached first, so rm -rf never walks into a mounted tree.
 */
export async function removeContainer(root: string, id: string, opts: { force?: boolean; self?: boolean; volumes?: boolean } = {}): Promise<void> {
  const state = await readContainerState(root, id);
  if (isRunning(state)) {
    if (!opts.force) throw new Error(`cannot remove container ${id.slice(0, 12)}: container is running: stop the container before removing or force remove`);
    try {
      process.kill(state!.Pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    for (let i = 0; i < 250 && procStartTime(state!.Pid) === state!.PidStartTime; i++) await sleep(20);
  }
  // Let the monitor finish recording the exit (and removing the cgroup) before the dir goes.
  if (!opts.self && state?.MonitorPid !== process.pid) {
    for (let i = 0; i < 250 && monitorAlive(state); i++) await sleep(20);
  }
  const config = await readContainerConfig(root, id).catch(() => undefined);
  await removeCgroups(config?.Cgroup);
  // Network endpoints (veth, address, DNAT rules, peers' /etc/hosts): normally
  // gone with the container's exit; this catches a supervisor that was killed.
  await releaseContainerNetworks(root, id);
  const dir = containerDir(root, id);
  for (const m of mountsUnder(dir)) {
    try {
      umount2(m, MNT_DETACH);
    } catch {
      /* raced with its namespace going away */
    }
  }
  await fsp.rm(dir, { recursive: true, force: true, maxRetries: 5 });
  if (opts.volumes) await removeAnonymousVolumes(root, config?.Mounts);
}
