// Containers after start: status (as `ps` shows it), stop, kill, wait,
// inspect. Every one of them reads state.json and checks the recorded pid
// against its recorded start time, so a pid the kernel reused for another
// process is never signalled or mistaken for the container.
import { networkSettings } from './network/settings.js';
import os from 'node:os';
import {
  findContainer,
  isRunning,
  listContainerIds,
  monitorAlive,
  procStartTime,
  readContainerConfig,
  readContainerState,
  writeContainerState,
  containerDir,
  type ContainerConfig,
  type ContainerState,
} from './container.js';
import path from 'node:path';
import { removeCgroups } from './cgroups.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ContainerInfo {
  id: string;
  config: ContainerConfig;
  state: ContainerState;
  /** What the state means now: a "running" container whose process and monitor are both gone has exited. */
  status: 'created' | 'running' | 'exited';
}

function effectiveStatus(state: ContainerState): ContainerInfo['status'] {
  if (state.Status === 'running') return isRunning(state) || monitorAlive(state) ? 'running' : 'exited';
  return state.Status;
}

export async function getContainer(root: string, id: string): Promise<ContainerInfo | undefined> {
  try {
    const config = await readContainerConfig(root, id);
    let state = await readContainerState(root, id);
    if (!state) return undefined;
    const status = effectiveStatus(state);
    if (status === 'exited' && state.Status === 'running') state = await recordLostExit(root, id, config, state);
    return { id, config, state, status };
  } catch {
    return undefined; // being created or removed
  }
}

/**
 * A "running" container whose process and monitor are both gone (the monitor
 * was SIGKILLed, which PDEATHSIG passes on to the container, or the machine
 * rebooted): nobody recorded its exit. The first command that notices records
 * it as Docker does for a container whose exit status was lost: exit code
 * 255, finished now, and removes its cgroup, which the monitor would have.
 */
async function recordLostExit(root: string, id: string, config: ContainerConfig, state: ContainerState): Promise<ContainerState> {
  const lost: ContainerState = {
    ...state,
    Status: 'exited',
    Running: false,
    Pid: 0,
    PidStartTime: 0,
    ExitCode: 255,
    Error: 'the container monitor went away: exit status lost',
    FinishedAt: new Date().toISOString(),
  };
  await removeCgroups(config.Cgroup).catch(() => {});
  await writeContainerState(root, id, lost).catch(() => {
    /* removed meanwhile */
  });
  return lost;
}

/** All containers, newest first. */
export async function listContainers(root: string): Promise<ContainerInfo[]> {
  const out: ContainerInfo[] = [];
  for (const id of await listContainerIds(root)) {
    const c = await getContainer(root, id);
    if (c) out.push(c);
  }
  return out.sort((a, b) => Date.parse(b.config.Created) - Date.parse(a.config.Created));
}

export function signalNumber(sig: string): number {
  const s = sig.toUpperCase();
  if (/^\d+$/.test(s)) return Number(s);
  const n = (os.constants.signals as Record<string, number>)[s.startsWith('SIG') ? s : `SIG${s}`];
  if (n === undefined) throw new Error(`Invalid signal: ${sig}`);
  return n;
}

/** Waits until the container has exited and its exit is recorded; returns the state. */
export async function waitContainer(root: string, ref: string, timeoutMs = Infinity): Promise<ContainerState> {
  const id = await findContainer(root, ref);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await readContainerState(root, id);
    if (!state) throw new Error(`No such container: ${ref}`);
    if (state.Status === 'exited') return state;
    const alive = isRunning(state) || monitorAlive(state);
    if (!alive && state.Status === 'running') return (await getContainer(root, id))?.state ?? state;
    if (!alive && state.Status === 'created') return state;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${ref}`);
    await sleep(50);
  }
}

/** Sends a signal to the container's PID 1 (from the host: SIGKILL always works, others only if handled). */
export async function killContainer(root: string, ref: string, signal: string | number = 'SIGKILL'): Promise<void> {
  const id = await findContainer(root, ref);
  const state = await readContainerState(root, id);
  const n = typeof signal === 'number' ? signal : signalNumber(signal);
  if (!isRunning(state)) throw new Error(`Cannot kill container: ${ref}: Container ${id} is not running`);
  process.kill(state!.Pid, n);
}

/**
 * `stop`: the image's STOPSIGNAL (default SIGTERM), then SIGKILL after
 * timeout seconds; returns once the exit is recorded. A program running as
 * PID 1 without a handler ignores SIGTERM, so `sleep` needs the SIGKILL (137),
 * as with Docker.
 */
export async function stopContainer(root: string, ref: string, timeoutSec = 10, signal?: string): Promise<void> {
  const id = await findContainer(root, ref);
  const config = await readContainerConfig(root, id);
  const state = await readContainerState(root, id);
  if (!state || !isRunning(state)) return;
  const gone = () => procStartTime(state.Pid) !== state.PidStartTime;
  const send = (sig: number) => {
    try {
      if (!gone()) process.kill(state.Pid, sig);
    } catch {
      /* exited meanwhile */
    }
  };
  send(signalNumber(signal ?? config.Config.StopSignal ?? 'SIGTERM'));
  const deadline = Date.now() + Math.max(0, timeoutSec) * 1000;
  while (!gone() && Date.now() < deadline) await sleep(50);
  if (!gone()) {
    send(signalNumber('SIGKILL'));
    for (let i = 0; i < 200 && !gone(); i++) await sleep(50);
  }
  await waitContainer(root, id, 10_000).catch(() => {});
}

/** `inspect` for a container, in Docker's shape; undefined if there is no such container. */
export async function inspectContainer(root: string, nameOrId: string): Promise<object | undefined> {
  let id: string;
  try {
    id = await findContainer(root, nameOrId);
  } catch {
    return undefined;
  }
  const c = await getContainer(root, id);
  if (!c) return undefined;
  const { config, state } = c;
  const dir = containerDir(root, id);
  const running = c.status === 'running';
  return {
    Id: id,
    Created: config.Created,
    Path: config.Path,
    Args: config.Args,
    State: {
      Status: c.status,
      Running: running,
      Paused: false,
      Restarting: false,
      OOMKilled: !!state.OOMKilled,
      Dead: false,
      Pid: running ? state.Pid : 0,
      ExitCode: state.ExitCode,
      Error: state.Error,
      StartedAt: state.StartedAt,
      FinishedAt: state.FinishedAt,
    },
    Image: config.Image,
    ResolvConfPath: path.join(dir, 'resolv.conf'),
    HostnamePath: path.join(dir, 'hostname'),
    HostsPath: path.join(dir, 'hosts'),
    LogPath: config.LogPath ?? '',
    Name: `/${config.Name}`,
    Driver: 'overlay',
    HostConfig: config.HostConfig,
    NetworkSettings: await networkSettings(root, config),
    GraphDriver: { Name: 'overlay', Data: { UpperDir: path.join(dir, 'upper'), WorkDir: path.join(dir, 'work'), MergedDir: path.join(dir, 'rootfs') } },
    Config: {
      Hostname: config.Config.Hostname,
      User: config.Config.User,
      Env: config.Config.Env,
      Cmd: config.Config.Cmd,
      Image: config.ImageName,
      WorkingDir: config.Config.WorkingDir,
      Entrypoint: config.Config.Entrypoint,
      ...(config.Config.StopSignal ? { StopSignal: config.Config.StopSignal } : {}),
    },
  };
}
