// cgroups v1 and v2: one cgroup per container, limits written before the
// container's program starts, removed when the container is gone.
//
// Detection (never assumed): /sys/fs/cgroup is cgroup2 (statfs magic) -> v2,
// one tree. Otherwise v1: every `cgroup` mount in /proc/self/mounts is a
// hierarchy with its controllers in the mount options (cpu and cpuacct may be
// co-mounted). An empty unified mount beside v1 hierarchies (systemd's
// "hybrid" mode) holds no controllers and is ignored.
//
// Where: v1 -> <hierarchy>/<our own cgroup in it>/tsbuild/<id> (nested under
// the creating process's cgroup, so a tsbuild running in a limited cgroup
// cannot hand its containers more than it has); v2 -> /sys/fs/cgroup/tsbuild/<id>
// (the root cgroup is exempt from v2's "no internal processes" rule, so
// controllers can always be enabled for our subtree). The chosen paths are
// recorded in the container's spec and state, so any later `rm` finds them.
//
// Who moves the process in: init (stage 2) writes "0" (= "the writer") into
// each cgroup.procs as its very first step, before unshare(NEWNS) and long
// before execve. That is program order in the one process that execs, so no
// instruction of the user's program, and nothing it forks, runs outside the
// cgroup; no synchronisation with stage 0 is needed (had stage 0
// written init's pid after spawn(), init would have to wait for
// a "done" message before execve). All of init's threads move with it
// (cgroup.procs moves the whole thread group). Memory Node charged before the
// move stays charged to the old cgroup and is uncharged at execve.
import { existsSync, mkdirSync, promises as fsp, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const CGROUP2_SUPER_MAGIC = 0x63677270;
const CGROUP_ROOT = '/sys/fs/cgroup';

export interface Resources {
  /** Bytes; --memory. */
  memory?: number;
  /** Bytes, memory + swap; -1 unlimited; --memory-swap. */
  memorySwap?: number;
  /** --cpus (fractional). */
  cpus?: number;
  /** --cpu-shares (v1 weight 2..262144, default 1024). */
  cpuShares?: number;
  /** --cpuset-cpus, e.g. "0-1" or "0,2". */
  cpusetCpus?: string;
  /** --pids-limit; <= 0 unlimited. */
  pidsLimit?: number;
}

export type CgroupVersion = 1 | 2;

export interface CgroupPaths {
  version: CgroupVersion;
  /** v1: controller -> dir (co-mounted controllers share a dir); v2: { unified: dir }. */
  dirs: Record<string, string>;
}

/** The v1 controllers a container gets a cgroup in. */
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'cpuset', 'pids', 'devices'];

/**
 * Docker's default device allow-list (v1 devices controller): mknod of any
 * node, but read/write only of null, zero, full, random, urandom, tty,
 * console, ptmx, the pty slaves and tun. v2 does this with an eBPF program,
 * which we do not load: on a v2-only host the list is not enforced (the
 * container has no device nodes but the ones we create, and no CAP_MKNOD
 * misuse is possible beyond mknod itself).
 */
export const DEFAULT_DEVICE_RULES = ['c *:* m', 'b *:* m', 'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', 'c 136:* rwm', 'c 10:200 rwm'];

export function detectCgroupVersion(): CgroupVersion | undefined {
  try {
    if (statfsSync(CGROUP_ROOT).type === CGROUP2_SUPER_MAGIC) return 2;
  } catch {
    return undefined;
  }
  return v1Mounts().size ? 1 : undefined;
}

/** v1 controller -> mount point. */
function v1Mounts(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mp, type, opts] = line.split(' ');
    if (type !== 'cgroup' || !mp || !opts) continue;
    for (const o of opts.split(',')) if (V1_CONTROLLERS.includes(o) && !out.has(o)) out.set(o, mp.replace(/\\040/g, ' '));
  }
  return out;
}

/** Our own cgroup in each v1 hierarchy, from /proc/self/cgroup ("4:memory:/a/b"). */
function ownV1Paths(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of m[1]!.split(',')) out.set(c, m[2]!);
  }
  return out;
}

/** Computes (does not create) the cgroup dirs for a container. */
export function cgroupPathsFor(id: string): CgroupPaths | undefined {
  const version = detectCgroupVersion();
  if (version === 2) return { version, dirs: { unified: path.join(CGROUP_ROOT, 'tsbuild', id) } };
  if (version !== 1) return undefined;
  const own = ownV1Paths();
  const dirs: Record<string, string> = {};
  for (const [ctrl, mp] of v1Mounts()) dirs[ctrl] = path.join(mp, own.get(ctrl) ?? '/', 'tsbuild', id);
  return { version, dirs };
}

export class CgroupError extends Error {}

function write(dir: string, file: string, value: string | number): void {
  try {
    writeFileSync(path.join(dir, file), String(value));
  } catch (e) {
    throw new CgroupError(`cgroup: writing ${value} to ${path.join(dir, file)}: ${(e as Error).message}`);
  }
}

/** v1 cpuset children start with empty cpus/mems: copy the parent's down, level by level. */
function initCpuset(dir: string): void {
  const parent = path.dirname(dir);
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const cur = readFileSync(path.join(dir, f), 'utf8').trim();
    if (!cur) write(dir, f, readFileSync(path.join(parent, f), 'utf8').trim());
  }
}

/** Docker's conversion of --cpu-shares (2..262144) to a v2 cpu.weight (1..10000). */
export function sharesToWeight(shares: number): number {
  return Math.max(1, Math.min(10000, 1 + Math.floor(((shares - 2) * 9999) / 262142)));
}

export const CPU_PERIOD = 100_000;

/** Creates the container's cgroups and writes the limits. Returns the cgroup.procs files init joins. */
export function createCgroups(paths: CgroupPaths, r: Resources, opts: { allDevices?: boolean } = {}): string[] {
  if (paths.version === 2) {
    const dir = paths.dirs.unified!;
    const parent = path.dirname(dir);
    // The container's dir first: once it exists, the shared tsbuild/ parent cannot be
    // removed by another container's cleanup (removeCgroups) while we set it up.
    mkdirs(dir);
    // Enable the controllers we use for our subtree (root -> tsbuild -> <id>).
    const want = ['memory', 'pids', 'cpu', 'cpuset'];
    for (const d of [CGROUP_ROOT, parent]) {
      const avail = readFileSync(path.join(d, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
      const add = want.filter((c) => avail.includes(c)).map((c) => `+${c}`);
      if (add.length) write(d, 'cgroup.subtree_control', add.join(' '));
    }
    if (r.memory) {
      write(dir, 'memory.max', r.memory);
      // v2 limits swap alone; Docker's --memory-swap is memory + swap (default 2 x memory).
      const swap = r.memorySwap ?? r.memory * 2;
      if (existsSync(path.join(dir, 'memory.swap.max'))) write(dir, 'memory.swap.max', swap < 0 ? 'max' : Math.max(0, swap - r.memory));
    }
    if (r.cpus) write(dir, 'cpu.max', `${Math.round(r.cpus * CPU_PERIOD)} ${CPU_PERIOD}`);
    if (r.cpuShares) write(dir, 'cpu.weight', sharesToWeight(r.cpuShares));
    if (r.cpusetCpus) write(dir, 'cpuset.cpus', r.cpusetCpus);
    if (r.pidsLimit !== undefined) write(dir, 'pids.max', r.pidsLimit > 0 ? r.pidsLimit : 'max');
    return [path.join(dir, 'cgroup.procs')];
  }
  const unique = [...new Set(Object.values(paths.dirs))];
  for (const dir of unique) mkdirs(dir);
  const d = paths.dirs;
  if (d.cpuset) {
    initCpuset(path.dirname(d.cpuset));
    initCpuset(d.cpuset);
    if (r.cpusetCpus) write(d.cpuset, 'cpuset.cpus', r.cpusetCpus);
  }
  if (d.memory && r.memory) {
    write(d.memory, 'memory.limit_in_bytes', r.memory);
    // Docker: with -m and no --memory-swap, memory+swap = 2 x memory.
    const swap = r.memorySwap ?? r.memory * 2;
    if (existsSync(path.join(d.memory, 'memory.memsw.limit_in_bytes'))) write(d.memory, 'memory.memsw.limit_in_bytes', swap < 0 ? -1 : swap);
  }
  if (d.cpu && r.cpus) {
    write(d.cpu, 'cpu.cfs_period_us', CPU_PERIOD);
    write(d.cpu, 'cpu.cfs_quota_us', Math.round(r.cpus * CPU_PERIOD));
  }
  if (d.cpu && r.cpuShares) write(d.cpu, 'cpu.shares', r.cpuShares);
  if (d.pids && r.pidsLimit !== undefined) write(d.pids, 'pids.max', r.pidsLimit > 0 ? r.pidsLimit : 'max');
  if (d.devices && !opts.allDevices) {
    write(d.devices, 'devices.deny', 'a');
    for (const rule of DEFAULT_DEVICE_RULES) write(d.devices, 'devices.allow', rule);
  }
  return unique.map((dir) => path.join(dir, 'cgroup.procs'));
}

function mkdirs(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new CgroupError(`cgroup: creating ${dir}: ${(e as Error).message}`);
  }
}

/** How many times the kernel OOM-killed a process of this cgroup (v1 memory.oom_control, v2 memory.events). */
export function oomKillCount(paths: CgroupPaths | undefined): number {
  if (!paths) return 0;
  const file = paths.version === 2 ? path.join(paths.dirs.unified!, 'memory.events') : paths.dirs.memory ? path.join(paths.dirs.memory, 'memory.oom_control') : undefined;
  if (!file) return 0;
  try {
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Removes the container's cgroup dirs. A cgroup can only be removed once it
 * has no process left; after PID 1 exits the kernel kills the rest of the pid
 * namespace, and their exit may take a moment: retry on EBUSY.
 */
export async function removeCgroups(paths: CgroupPaths | undefined): Promise<void> {
  if (!paths) return;
  for (const dir of new Set(Object.values(paths.dirs))) {
    for (let i = 0; ; i++) {
      try {
        await fsp.rmdir(dir);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code === 'EBUSY' && i < 100) {
          // Anything still inside (a process that escaped PID 1's death?): kill it.
          try {
            for (const pid of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        throw e;
      }
    }
    // The shared tsbuild/ parent goes with the last container in it; while another
    // container's cgroup is inside, rmdir fails (EBUSY/ENOTEMPTY) and it stays.
    try {
      await fsp.rmdir(path.dirname(dir));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EBUSY' && code !== 'ENOTEMPTY' && code !== 'ENOENT') throw e;
    }
  }
}

/** Parses Docker's memory sizes: 32m, 1g, 512k, 100b, plain bytes. */
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$/i.exec(s.trim());
  if (!m) throw new Error(`invalid size: '${s}'`);
  const mult = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'b' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}
