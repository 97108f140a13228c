// Stage 0: `tsbuild run` on the host side. Everything that needs the store
// happens here, in the host's namespaces, before any namespace exists:
//
//   tsbuild run (stage 0, this file)
//     resolve image -> snapshots -> container dir, config.json, spec.json,
//     /etc files -> launch init in new NEWPID|NEWUTS|NEWIPC|NEWNET namespaces
//     (launch.ts) -> forward signals -> record state -> exit code (--rm: remove the container)
//   └─ node init.js (stage 1, PID 1 in the new ns)  unshare(NEWNS), overlay, pivot_root,
//        /proc /dev /sys, hostname, user -> execve(user's program): now PID 1 *is* the program
//
// Exit code, as `docker run`: the program's own; 128+N if a signal N killed
// it; 126 cannot execute; 127 not found; 125 when tsbuild itself failed.
import { spawn } from 'node:child_process';
import { closeSync, promises as fsp, constants as fsConstants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveImage } from '../image/images.js';
import { ensureSnapshots } from '../image/snapshots.js';
import { NotFoundError, type Store } from '../image/store.js';
import { effectiveCapNames, privilegedCapNames } from './capabilities.js';
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
import { STATUS_FD, type NetworkMode, type StatusMessage } from './spec.js';
import { writeBundle } from './bundle.js';
import { forwardSignals, launch, type StdioSlot } from './launch.js';
import { attachTerminal, openPty } from './pty.js';
import { RLIMITS } from './syscalls.js';
import { removeAnonymousVolumes, resolveMounts, VolumeError } from './volumes.js';
import { attachmentsFromConfig, gatePath, runNetworkConfig, startContainerNetwork } from './network/index.js';
import type { RunNetworkConfig } from './network/config.js';
import { writeJsonAtomic } from '../image/atomic.js';
import { trace } from './trace.js';
export { signalExitCode } from './launch.js';

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
  /** bridge (the default network), host, none, or a user-defined network's name; default none. */
  network?: string;
  /** --ip, --network-alias, -p, -P, --expose (runtime/network/config.ts). */
  ip?: string;
  networkAliases?: string[];
  publish?: string[];
  publishAll?: boolean;
  expose?: string[];
  rm?: boolean;
  /** --cap-add / --cap-drop over Docker's default set. */
  capAdd?: string[];
  capDrop?: string[];
  /** -m, --memory-swap, --cpus, --cpu-shares, --cpuset-cpus, --pids-limit. */
  resources?: Resources;
  /** -v host:ctr[:ro], name:ctr, /ctr */
  volumes?: string[];
  /** --tmpfs /path */
  tmpfs?: string[];
  readOnly?: boolean;
  privileged?: boolean;
  /** --security-opt (no-new-privileges[:true|false]) */
  securityOpt?: string[];
  /** --ulimit name=soft[:hard] */
  ulimits?: string[];
  /** -i: attach stdin (without it the program reads EOF, as with docker run). */
  interactive?: boolean;
  /** -t: a pseudo-terminal (pty.ts). */
  tty?: boolean;
  /** --init: a reaper as PID 1 (reaper.ts). */
  init?: boolean;
}

/** Parses --ulimit values (nofile=1024:2048, nproc=64, core=-1). */
export function parseUlimits(values: string[]): { name: string; soft: number; hard: number }[] {
  return values.map((v) => {
    const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(v);
    if (!m) throw new RunError(`invalid ulimit argument: ${v} (want name=soft[:hard], e.g. nofile=1024:2048)`, 125);
    if (RLIMITS[m[1]!] === undefined) throw new RunError(`invalid ulimit type: ${m[1]}`, 125);
    const soft = Number(m[2]);
    const hard = m[3] !== undefined ? Number(m[3]) : soft;
    if (hard >= 0 && (soft < 0 || soft > hard)) throw new RunError(`ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`, 125);
    return { name: m[1]!, soft, hard };
  });
}

function noNewPrivileges(opts: string[]): boolean {
  let on = false;
  for (const o of opts) {
    const m = /^no-new-privileges(?:[:=](true|false))?$/.exec(o);
    if (!m) throw new RunError(`invalid --security-opt: ${o} (supported: no-new-privileges[:true|false])`, 125);
    on = m[1] !== 'false';
  }
  return on;
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

/**
 * Runs a container in the foreground (stdin/stdout/stderr inherited) and
 * returns its exit code. Throws
 * RunError (exitCode 125/126/127) when the program could not be started.
 */
export async function runContainer(store: Store, opts: RunOptions): Promise<number> {
  const { id, dir } = await prepareContainer(store, opts);
  try {
    const r = await superviseContainer(store.root, id, dir, { foreground: true, interactive: !!opts.interactive });
    if (r.message) throw new RunError(r.message, r.code);
    return r.code;
  } finally {
    if (opts.rm) await removeContainer(store.root, id, { force: true, volumes: true }).catch(() => {});
    trace('run:removed');
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
    if (opts.rm) await removeContainer(store.root, id, { force: true, volumes: true }).catch(() => {});
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
  const networkName = opts.network ?? 'none';
  let image;
  try {
    image = await resolveImage(store, opts.image);
  } catch (e) {
    if (e instanceof NotFoundError) {
      throw new RunError(`Unable to find image '${opts.image}' locally (pull, import, load or build it first; see \`tsbuild images\`)`, 125);
    }
    throw new RunError((e as Error).message, 125);
  }
  trace('run:image');
  // Networks: checked now (unknown network, bad --ip or -p: 125 before anything exists).
  let net: RunNetworkConfig;
  try {
    net = await runNetworkConfig(
      store.root,
      { network: networkName, ip: opts.ip, aliases: opts.networkAliases, publish: opts.publish, publishAll: opts.publishAll, expose: opts.expose },
      (image.config.config?.ExposedPorts ?? {}) as Record<string, object>,
    );
  } catch (e) {
    throw new RunError((e as Error).message, 125);
  }
  const network: NetworkMode = net.mode;
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
    capabilities = opts.privileged ? privilegedCapNames() : effectiveCapNames(opts.capAdd, opts.capDrop);
  } catch (e) {
    throw new RunError((e as Error).message, 125);
  }
  const rlimits = parseUlimits(opts.ulimits ?? []);
  const nnp = noNewPrivileges(opts.securityOpt ?? []);
  for (const t of opts.tmpfs ?? []) if (!t.startsWith('/')) throw new RunError(`invalid --tmpfs ${t}: the path must be absolute`, 125);
  const snapshots = await ensureSnapshots(store, image);
  trace('run:snapshots');
  let mounts;
  try {
    mounts = await resolveMounts(store, opts.volumes ?? [], Object.keys(image.config.config?.Volumes ?? {}));
  } catch (e) {
    if (e instanceof VolumeError) throw new RunError(e.message, 125);
    throw e;
  }

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
      Tty: !!opts.tty,
      Init: !!opts.init,
      OpenStdin: !!opts.interactive,
      ...(image.config.config?.StopSignal ? { StopSignal: image.config.config.StopSignal } : {}),
      ...(Object.keys(net.exposedPorts).length ? { ExposedPorts: net.exposedPorts } : {}),
    },
    HostConfig: {
      AutoRemove: !!opts.rm,
      NetworkMode: networkName,
      PortBindings: net.portBindings,
      PublishAllPorts: net.publishAll,
      CapAdd: opts.capAdd ?? [],
      CapDrop: opts.capDrop ?? [],
      Memory: r.memory ?? 0,
      MemorySwap: r.memorySwap ?? (r.memory ? r.memory * 2 : 0),
      NanoCpus: r.cpus ? Math.round(r.cpus * 1e9) : 0,
      CpuShares: r.cpuShares ?? 0,
      CpusetCpus: r.cpusetCpus ?? '',
      PidsLimit: r.pidsLimit ?? 0,
      Privileged: !!opts.privileged,
      ReadonlyRootfs: !!opts.readOnly,
      SecurityOpt: opts.securityOpt ?? [],
      Tmpfs: Object.fromEntries((opts.tmpfs ?? []).map((t) => [t, ''])),
      Ulimits: rlimits.map((l) => ({ Name: l.name, Soft: l.soft, Hard: l.hard })),
    },
    Mounts: mounts.mounts,
    ...(net.networkingConfig ? { NetworkingConfig: net.networkingConfig } : {}),
    LogPath: path.join(containerDir(store.root, id), `${id}-json.log`),
    ...(cgroup ? { Cgroup: cgroup } : {}),
  };
  let dir: string;
  try {
    dir = await createContainer(store, config);
  } catch (e) {
    await removeAnonymousVolumes(store.root, mounts.mounts);
    throw new RunError((e as Error).message, 125);
  }

  trace('run:container-dir');
  try {
    let cgroupProcs: string[] = [];
    if (cgroup) {
      try {
        cgroupProcs = createCgroups(cgroup, r, { allDevices: opts.privileged });
      } catch (e) {
        // Without limits asked for, a container can run without its own cgroup (e.g. no write access to them).
        if (wantsLimits) throw new RunError((e as Error).message, 125);
        await removeCgroups(cgroup).catch(() => {});
      }
    }
    trace('run:cgroups');
    const spec = await writeBundle(store.root, dir, {
      id,
      snapshots,
      hostname,
      network,
      process: { args: proc.args, env: proc.env, cwd: proc.cwd, user: proc.user, capabilities, rlimits, noNewPrivileges: nnp, terminal: !!opts.tty, init: !!opts.init },
      binds: mounts.binds,
      tmpfs: opts.tmpfs,
      readonlyRootfs: opts.readOnly,
      privileged: opts.privileged,
      cgroupProcs,
    });
    // Bridge networks: init waits at the gate until superviseContainer has connected it.
    if (network === 'bridge') await writeJsonAtomic(path.join(dir, 'spec.json'), { ...spec, netSync: gatePath(dir) }, 0o600);
  } catch (e) {
    await removeContainer(store.root, id, { force: true, volumes: true }).catch(() => {});
    throw e instanceof RunError ? e : new RunError((e as Error).message, 125);
  }
  trace('run:bundle');
  return { id, dir };
}

export type SuperviseMode =
  /** `tsbuild run`: stdio inherited, terminal signals forwarded to the container. */
  | { foreground: true; interactive: boolean }
  /** The monitor of `run -d`: stdout/stderr into a json-file log; onStarted once exec'd (or failed). */
  | { foreground?: false; logPath: string; onStarted(error?: { code: number; message: string }): void };


/**
 * Runs the container's stages (launch.ts), recording its state as it goes
 * (pid + start time, running, exit code, OOMKilled), removes its cgroup after
 * the exit; returns the exit code and, when the program could not be started,
 * the message.
 */
export async function superviseContainer(root: string, id: string, dir: string, mode: SuperviseMode): Promise<{ code: number; message: string }> {
  const config = await readContainerConfig(root, id);
  // Who will record the exit, known before anything starts: `wait` and `ps`
  // use it to tell "starting" from "its recorder died".
  const me = { MonitorPid: process.pid, MonitorStartTime: procStartTime(process.pid) ?? 0 };
  const initial = await readContainerState(root, id);
  if (initial) await writeContainerState(root, id, { ...initial, ...me });

  let startedReported = false;
  const reportStarted = (err?: { code: number; message: string }) => {
    if (mode.foreground || startedReported) return;
    startedReported = true;
    mode.onStarted(err);
  };
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

  const signals = mode.foreground ? forwardSignals() : undefined;

  // A bridge network is connected from here once init's pid is known, while
  // init waits at its gate (runtime/network/sync.ts); torn down after the exit.
  const net =
    config.HostConfig.NetworkMode === 'host' || config.HostConfig.NetworkMode === 'none'
      ? undefined
      : await startContainerNetwork(root, { containerId: id, name: config.Name, hostname: config.Config.Hostname, dir, ...attachmentsFromConfig(config) });

  trace('run:state-initial');
  let result: { code: number; message: string };
  try {
    // -t: the program's stdio is a pty slave; we relay the master (pty.ts).
    const pty = config.Config.Tty ? openPty() : undefined;
    const stdio: StdioSlot[] = pty
      ? [pty.slave, pty.slave, pty.slave]
      : mode.foreground
        ? [mode.interactive ? 'inherit' : 'ignore', 'inherit', 'inherit']
        : ['ignore', 'pipe', 'pipe'];
    const launched = await launch(path.join(dir, 'spec.json'), stdio, {
      onPid(pid) {
        const startTime = procStartTime(pid) ?? 0;
        updateState((s) => {
          s.Pid = pid;
          s.PidStartTime = startTime;
          Object.assign(s, me);
        });
        signals?.setPid(pid);
        net?.onPid(pid);
      },
      onExec() {
        updateState((s) => {
          s.Status = 'running';
          s.Running = true;
          s.StartedAt = new Date().toISOString();
        });
        void stateWrite.then(() => reportStarted());
      },
      // init's "network setup failed" stands for stage 0's reason, which net has.
      // A 126/127 from init (program not found...) is the real cause: the network
      // setup then failed only because init was already gone.
      onError: (err) => reportStarted(net?.error && err.code === 125 ? { code: 125, message: net.error } : err),
    });
    const log = mode.foreground ? undefined : new JsonLogWriter(mode.logPath);
    let terminal: ReturnType<typeof attachTerminal> | undefined;
    if (pty) {
      closeSync(pty.slave);
      terminal = attachTerminal(pty, {
        stdin: mode.foreground && mode.interactive ? process.stdin : undefined,
        stdout: log ? { write: (b: Buffer) => log.write('stdout', b) } as unknown as NodeJS.WritableStream : process.stdout,
      });
    } else if (log) {
      launched.stdout!.on('data', (b: Buffer) => log.write('stdout', b));
      launched.stderr!.on('data', (b: Buffer) => log.write('stderr', b));
    }
    result = await launched.done;
    trace('run:exited');
    await terminal?.drain();
    await log?.close();
  } finally {
    signals?.stop();
    await net?.finish().catch(() => {
      /* left for rm / the next command's prune (runtime/network) */
    });
  }
  if (net?.error && !(result.message && result.code !== 125)) result = { code: 125, message: net.error };

  const { code, message } = result;
  reportStarted(message ? { code, message } : undefined);
  // Read the OOM count before the cgroup goes; the SIGKILL itself gave 137.
  const oomKilled = oomKillCount(config.Cgroup) > 0;
  await removeCgroups(config.Cgroup).catch(() => {});
  trace('run:cgroups-removed');
  updateState((s) => {
    s.OOMKilled = oomKilled;
    // A program that never started leaves the container "created" with the
    // reason and 125/126/127, no FinishedAt (docker ps -a: "Created").
    s.Status = message ? 'created' : 'exited';
    s.Running = false;
    s.Pid = 0;
    s.PidStartTime = 0;
    s.ExitCode = code;
    s.Error = message;
    if (!message) s.FinishedAt = new Date().toISOString();
  });
  await stateWrite;
  trace('run:state-final');
  return { code, message };
}
