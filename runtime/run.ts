// Stage 0: `tsbuild run` on the host side. Everything that needs the store
// happens here, in the host's namespaces, before any namespace exists:
//
//   tsbuild run (stage 0, this file)
//     resolve image -> snapshots -> container dir, config.json, spec.json,
//     /etc files -> spawn the intermediate -> forward signals -> record state
//     -> exit code (--rm: remove the container)
//   └─ node intermediate.js (stage 1, host pid ns)     unshare(NEWPID|NEWUTS|NEWIPC|NEWNET)
//       └─ node init.js (stage 2, PID 1 in the new ns)  unshare(NEWNS), overlay, pivot_root,
//            /proc /dev /sys, hostname, user -> execve(user's program): now PID 1 *is* the program
//
// Exit code, as `docker run`: the program's own; 128+N if a signal N killed
// it; 126 cannot execute; 127 not found; 125 when tsbuild itself failed.
import { spawn } from 'node:child_process';
import { promises as fsp, constants as fsConstants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeJsonAtomic } from '../image/atomic.js';
import { resolveImage } from '../image/images.js';
import { ensureSnapshots } from '../image/snapshots.js';
import { NotFoundError, type Store } from '../image/store.js';
import { effectiveCapNames } from './capabilities.js';
import { processConfig, ConfigError } from './config.js';
import {
  containerDir,
  createContainer,
  newContainerId,
  procStartTime,
  randomName,
  readContainerConfig,
  readContainerState,
  removeContainer,
  writeContainerState,
  type ContainerConfig,
} from './container.js';
import { stageScript } from './stages.js';
import { cgroupPathsFor, createCgroups, oomKillCount, removeCgroups, type Resources } from './cgroups.js';
import { JsonLogWriter } from './logs.js';
import { STATUS_FD, readStatusMessages, type InitSpec, type NetworkMode, type StatusMessage } from './spec.js';
import { CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUTS } from './syscalls.js';

export interface RunOptions {
  image: string;
  /** CLI args after the image (replace CMD). */
  args: string[];
  name?: string;
  env?: string[];
  workdir?: string;
  hostname?: string;
  entrypoint?: string;
  user?: string;
  network?: NetworkMode;
  rm?: boolean;
  /** --cap-add / --cap-drop over Docker's default set. */
  capAdd?: string[];
  capDrop?: string[];
  /** -m, --memory-swap, --cpus, --cpu-shares, --cpuset-cpus, --pids-limit. */
  resources?: Resources;
}

/** A failure with the exit code `docker run` would give (125 tsbuild, 126 cannot execute, 127 not found). */
export class RunError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/** 128+N for a signal name, as shells and Docker report it. */
export function signalExitCode(signal: string): number {
  const n = (os.constants.signals as Record<string, number>)[signal];
  return 128 + (n ?? 0);
}

async function etcFiles(dir: string, hostname: string, network: NetworkMode): Promise<{ hostname: string; hosts: string; resolvConf: string }> {
  const files = { hostname: path.join(dir, 'hostname'), hosts: path.join(dir, 'hosts'), resolvConf: path.join(dir, 'resolv.conf') };
  await fsp.writeFile(files.hostname, `${hostname}\n`, { mode: 0o644 });
  let hosts: string;
  if (network === 'host') {
    hosts = await fsp.readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1\tlocalhost\n');
  } else {
    hosts = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix', 'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters', ''].join('\n');
  }
  await fsp.writeFile(files.hosts, hosts, { mode: 0o644 });
  // The host's resolv.conf, as Docker copies it (a later slice filters loopback
  // nameservers for bridge networks, where they do not work).
  const resolv = await fsp.readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  await fsp.writeFile(files.resolvConf, resolv, { mode: 0o644 });
  return files;
}

/**
 * Runs a container in the foreground (stdin/stdout/stderr inherited) and
 * returns its exit code. Throws
 * RunError (exitCode 125/126/127) when the program could not be started.
 */
export async function runContainer(store: Store, opts: RunOptions): Promise<number> {
  const { id, dir } = await prepareContainer(store, opts);
  try {
    const r = await superviseContainer(store.root, id, dir, { foreground: true });
    if (r.message) throw new RunError(r.message, r.code);
    return r.code;
  } finally {
    if (opts.rm) await removeContainer(store.root, id, { force: true }).catch(() => {});
  }
}

/**
 * `run -d`: starts the container under a monitor process of its own
 * (monitor.ts), detached from the caller, and returns the container id once
 * the program has been exec'd. Throws RunError (125/126/127) as runContainer.
 */
export async function runDetached(store: Store, opts: RunOptions): Promise<string> {
  const { id, dir } = await prepareContainer(store, opts);
  try {
    await spawnMonitor(store.root, id, dir);
  } catch (e) {
    if (opts.rm) await removeContainer(store.root, id, { force: true }).catch(() => {});
    throw e;
  }
  return id;
}

async function spawnMonitor(root: string, id: string, dir: string): Promise<void> {
  await fsp.access(stageScript('monitor'), fsConstants.R_OK);
  const errFd = await fsp.open(path.join(dir, 'monitor.log'), 'a', 0o600);
  // detached: a session and process group of its own, so the terminal's ^C or
  // hangup, or the CLI's exit, never reach it.
  const child = spawn(process.execPath, [stageScript('monitor'), root, id], {
    detached: true,
    stdio: ['ignore', 'ignore', errFd.fd, 'pipe'],
  });
  await errFd.close();
  const report = child.stdio[STATUS_FD] as NodeJS.ReadableStream & { destroy(): void };
  const msg = await new Promise<StatusMessage | undefined>((resolve) => {
    let buf = '';
    report.setEncoding('utf8');
    report.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl !== -1) {
        try {
          resolve(JSON.parse(buf.slice(0, nl)) as StatusMessage);
        } catch {
          resolve(undefined);
        }
      }
    });
    report.on('end', () => resolve(undefined));
    report.on('error', () => resolve(undefined));
    child.on('error', () => resolve(undefined));
  });
  report.destroy();
  child.unref();
  if (!msg) throw new RunError(`container monitor failed to start (see ${path.join(dir, 'monitor.log')})`, 125);
  if (msg.type === 'error') throw new RunError(msg.message, msg.code);
}

async function prepareContainer(store: Store, opts: RunOptions): Promise<{ id: string; dir: string }> {
  const network = opts.network ?? 'none';
  let image;
  try {
    image = await resolveImage(store, opts.image);
  } catch (e) {
    if (e instanceof NotFoundError) {
      throw new RunError(`Unable to find image '${opts.image}' locally (import, load or build it first; see \`tsbuild images\`)`, 125);
    }
    throw new RunError((e as Error).message, 125);
  }
  const id = newContainerId();
  const hostname = opts.hostname ?? (network === 'host' ? os.hostname() : id.slice(0, 12));
  let proc;
  try {
    proc = processConfig(image.config.config ?? {}, {
      args: opts.args,
      entrypoint: opts.entrypoint,
      env: opts.env ?? [],
      workdir: opts.workdir,
      user: opts.user,
      hostname,
      hostEnv: process.env,
    });
  } catch (e) {
    if (e instanceof ConfigError) throw new RunError(e.message, 125);
    throw e;
  }
  let capabilities: string[];
  try {
    capabilities = effectiveCapNames(opts.capAdd, opts.capDrop);
  } catch (e) {
    throw new RunError((e as Error).message, 125);
  }
  const snapshots = await ensureSnapshots(store, image);

  const name = opts.name ?? randomName();
  const r = opts.resources ?? {};
  const wantsLimits = Object.values(r).some((v) => v !== undefined);
  const cgroup = cgroupPathsFor(id);
  if (!cgroup && wantsLimits) throw new RunError('resource limits need cgroups, and none were found under /sys/fs/cgroup', 125);
  const config: ContainerConfig = {
    Id: id,
    Name: name,
    Image: image.id,
    ImageName: opts.image,
    Created: new Date().toISOString(),
    Path: proc.args[0]!,
    Args: proc.args.slice(1),
    Config: {
      Hostname: hostname,
      User: proc.user,
      Env: proc.env,
      Cmd: proc.cmd.length ? proc.cmd : null,
      Entrypoint: proc.entrypoint.length ? proc.entrypoint : null,
      WorkingDir: proc.cwd,
      ...(image.config.config?.StopSignal ? { StopSignal: image.config.config.StopSignal } : {}),
    },
    HostConfig: {
      AutoRemove: !!opts.rm,
      NetworkMode: network,
      CapAdd: opts.capAdd ?? [],
      CapDrop: opts.capDrop ?? [],
      Memory: r.memory ?? 0,
      MemorySwap: r.memorySwap ?? (r.memory ? r.memory * 2 : 0),
      NanoCpus: r.cpus ? Math.round(r.cpus * 1e9) : 0,
      CpuShares: r.cpuShares ?? 0,
      CpusetCpus: r.cpusetCpus ?? '',
      PidsLimit: r.pidsLimit ?? 0,
    },
    LogPath: path.join(containerDir(store.root, id), `${id}-json.log`),
    ...(cgroup ? { Cgroup: cgroup } : {}),
  };
  let dir: string;
  try {
    dir = await createContainer(store, config);
  } catch (e) {
    throw new RunError((e as Error).message, 125);
  }

  try {
    let cgroupProcs: string[] = [];
    if (cgroup) {
      try {
        cgroupProcs = createCgroups(cgroup, r);
      } catch (e) {
        // Without limits asked for, a container can run without its own cgroup (e.g. no write access to them).
        if (wantsLimits) throw new RunError((e as Error).message, 125);
        await removeCgroups(cgroup).catch(() => {});
      }
    }
    const rel = (p: string) => path.relative(store.root, p);
    for (const d of ['upper', 'work', 'rootfs']) await fsp.mkdir(path.join(dir, d), { mode: 0o755 });
    let lowers = snapshots.map(rel).reverse();
    if (lowers.length === 0) {
      // An image with no layers (FROM scratch + metadata): overlay needs one lower.
      await fsp.mkdir(path.join(dir, 'empty'), { mode: 0o755 });
      lowers = [rel(path.join(dir, 'empty'))];
    }
    const etc = await etcFiles(dir, hostname, network);
    const spec: InitSpec = {
      version: 1,
      id,
      storeRoot: store.root,
      lowerDirs: lowers,
      upperDir: rel(path.join(dir, 'upper')),
      workDir: rel(path.join(dir, 'work')),
      rootfs: rel(path.join(dir, 'rootfs')),
      hostname,
      network,
      namespaces: CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | (network === 'none' ? CLONE_NEWNET : 0),
      binds: [
        { source: etc.hostname, target: '/etc/hostname', readonly: false },
        { source: etc.hosts, target: '/etc/hosts', readonly: false },
        { source: etc.resolvConf, target: '/etc/resolv.conf', readonly: false },
      ],
      process: { args: proc.args, env: proc.env, cwd: proc.cwd, user: proc.user, capabilities },
      cgroupProcs,
    };
    await writeJsonAtomic(path.join(dir, 'spec.json'), spec, 0o600);
  } catch (e) {
    await removeContainer(store.root, id, { force: true }).catch(() => {});
    throw e instanceof RunError ? e : new RunError((e as Error).message, 125);
  }
  return { id, dir };
}

export type SuperviseMode =
  /** `tsbuild run`: stdio inherited, terminal signals forwarded to the container. */
  | { foreground: true }
  /** The monitor of `run -d`: stdout/stderr into a json-file log; onStarted once exec'd (or failed). */
  | { foreground?: false; logPath: string; onStarted(error?: { code: number; message: string }): void };

/**
 * Spawns the intermediate, records the container's state as it goes
 * (pid + start time, running, exit code, OOMKilled), removes its cgroup
 * after the exit; returns the exit code and, when the program could not be
 * started, the message.
 */
export async function superviseContainer(root: string, id: string, dir: string, mode: SuperviseMode): Promise<{ code: number; message: string }> {
  await fsp.access(stageScript('intermediate'), fsConstants.R_OK);
  const config = await readContainerConfig(root, id);
  // Who will record the exit, known before anything starts: `wait` and `ps`
  // use it to tell "starting" from "its recorder died".
  const me = { MonitorPid: process.pid, MonitorStartTime: procStartTime(process.pid) ?? 0 };
  const initial = await readContainerState(root, id);
  if (initial) await writeContainerState(root, id, { ...initial, ...me });
  const child = spawn(process.execPath, [stageScript('intermediate'), path.join(dir, 'spec.json')], {
    stdio: mode.foreground ? ['inherit', 'inherit', 'inherit', 'pipe'] : ['ignore', 'pipe', 'pipe', 'pipe'],
  });
  const log = mode.foreground ? undefined : new JsonLogWriter(mode.logPath);
  if (log) {
    child.stdout!.on('data', (b: Buffer) => log.write('stdout', b));
    child.stderr!.on('data', (b: Buffer) => log.write('stderr', b));
  }
  let startedReported = false;
  const reportStarted = (err?: { code: number; message: string }) => {
    if (mode.foreground || startedReported) return;
    startedReported = true;
    mode.onStarted(err);
  };
  let pid = 0;
  let pending: NodeJS.Signals[] = [];
  const forward = (sig: NodeJS.Signals) => {
    if (!pid) {
      pending.push(sig);
      return;
    }
    try {
      process.kill(pid, sig);
    } catch {
      /* already exited */
    }
  };
  const handlers = (mode.foreground ? FORWARDED_SIGNALS : []).map((sig) => {
    const h = () => forward(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });

  let error: { code: number; message: string } | undefined;
  let exit: { code: number | null; signal: string | null } | undefined;
  let stateWrite: Promise<void> = Promise.resolve();
  const updateState = (fn: (s: NonNullable<Awaited<ReturnType<typeof readContainerState>>>) => void) => {
    stateWrite = stateWrite.then(async () => {
      const s = await readContainerState(root, id);
      if (!s) return;
      fn(s);
      await writeContainerState(root, id, s).catch(() => {
        /* removed under us (rm -f) */
      });
    });
  };

  const done = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  const status = child.stdio[STATUS_FD] as NodeJS.ReadableStream;
  readStatusMessages(status, (msg) => {
    if (msg.type === 'pid') {
      pid = msg.pid;
      const startTime = procStartTime(pid) ?? 0;
      updateState((s) => {
        s.Pid = msg.pid;
        s.PidStartTime = startTime;
        s.MonitorPid = process.pid;
        s.MonitorStartTime = procStartTime(process.pid) ?? 0;
      });
      for (const sig of pending.splice(0)) forward(sig);
    } else if (msg.type === 'exec') {
      updateState((s) => {
        s.Status = 'running';
        s.Running = true;
        s.StartedAt = new Date().toISOString();
      });
      void stateWrite.then(() => reportStarted());
    } else if (msg.type === 'error') {
      error = { code: msg.code, message: msg.message };
      reportStarted(error);
    } else if (msg.type === 'exit') {
      exit = { code: msg.code, signal: msg.signal };
    }
  });

  let intermediateCode: number | null;
  try {
    intermediateCode = await done;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    pending = [];
  }

  await log?.close();
  let code: number;
  let message = '';
  if (error) {
    code = error.code;
    message = error.message;
  } else if (exit) {
    code = exit.signal ? signalExitCode(exit.signal) : (exit.code ?? 125);
  } else {
    code = 125;
    message = `container runtime failed (intermediate exited with ${intermediateCode})`;
  }
  reportStarted(message ? { code, message } : undefined);
  // Read the OOM count before the cgroup goes; the SIGKILL itself gave 137.
  const oomKilled = oomKillCount(config.Cgroup) > 0;
  await removeCgroups(config.Cgroup).catch(() => {});
  updateState((s) => {
    s.OOMKilled = oomKilled;
    s.Status = 'exited';
    s.Running = false;
    s.Pid = 0;
    s.PidStartTime = 0;
    s.ExitCode = code;
    s.Error = message;
    s.FinishedAt = new Date().toISOString();
  });
  await stateWrite;
  return { code, message };
}
