// Starting a container's init, shared by `run` (superviseContainer), `exec`
// and build steps (step.ts): one code path, as the builder's RUN must behave
// exactly like `tsbuild run`.
//
//   stage 0 (this process)
//     save our uts/ipc/net/pid namespaces -> unshare(NEWPID|NEWUTS|NEWIPC|NEWNET)
//     (exec: setns into the container's) -> spawn init -> setns back to ours
//   └─ node init.js spec.json   PID 1 of the new pid namespace (init.ts)
//
// Why no intermediate process (runc's and youki's have one): unshare() and
// setns() change only the calling thread, and CLONE_NEWPID only the
// pid_for_children of the caller; libuv forks from the main thread, so the
// child gets exactly the namespaces the main thread is in at spawn time.
// Entering them just for the synchronous spawn() call and leaving them right
// after (no JavaScript runs in between) gives init its namespaces while this
// process, its threadpool and every later child stay in ours. One Node start
// fewer per container (~70-120 ms here). The mount namespace is init's own
// to create (rootfs.ts): pivot_root must not move us.
//
// Standby (build steps): an init can be spawned before its spec exists
// (spawnStandby) and handed the spec path later over its status socket, so
// its Node start overlaps with the builder's other work.
//
// Status: init's fd 3 (close-on-exec) carries an "error" line when it cannot
// start the program; EOF without one means the execve succeeded.
import { spawn, type ChildProcess } from 'node:child_process';
import fs, { promises as fsp, constants as fsConstants } from 'node:fs';
import os from 'node:os';
import { stageScript } from './stages.js';
import { trace } from './trace.js';
import { STANDBY_ARG, STATUS_FD, readStatusMessages, type InitSpec } from './spec.js';
import { CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUTS, setns, unshare } from './syscalls.js';

/** What fds 0-2 of the stages are: pipes to us, inherited, /dev/null, or an fd (a pty slave). */
export type StdioSlot = 'pipe' | 'ignore' | 'inherit' | number;

export interface LaunchHooks {
  /** Host pid of init (the container's PID 1, soon the user's program). */
  onPid?(pid: number): void;
  /** The user's program was exec'd. */
  onExec?(): void;
  /** The program could not be started (code 125/126/127). */
  onError?(err: { code: number; message: string }): void;
}

export interface LaunchResult {
  code: number;
  /** Set when the program could not be started, or the runtime failed. */
  message: string;
}

/** 128+N for a signal name, as shells and Docker report it. */
export function signalExitCode(signal: string): number {
  const n = (os.constants.signals as Record<string, number>)[signal];
  return 128 + (n ?? 0);
}

export interface Launched {
  /** init's (then the program's) stdout/stderr when stdio asked for pipes. */
  stdout: NodeJS.ReadableStream | null;
  stderr: NodeJS.ReadableStream | null;
  stdin: NodeJS.WritableStream | null;
  /** Current host pid of PID 1 (0 until known). */
  pid(): number;
  done: Promise<LaunchResult>;
  /** Lets this process exit while the program goes on (exec -d). */
  unref(): void;
}

/**
 * Namespaces for the child we are about to spawn, entered by *this* process's
 * main thread and left again right after the spawn (see the file comment).
 * Returns the function that restores ours.
 */
function enterChildNamespaces(spec: Pick<InitSpec, 'namespaces' | 'join'>): () => void {
  const kinds = spec.join ? (['ipc', 'uts', 'net', 'pid'] as const) : (['uts', 'ipc', 'net', 'pid'] as const).filter((k) => spec.namespaces & NS_FLAG[k]);
  const saved = kinds.map((k) => [k, fs.openSync(`/proc/self/ns/${k}`, 'r')] as const);
  const restore = () => {
    for (const [k, fd] of saved) {
      setns(fd, NS_FLAG[k]);
      fs.closeSync(fd);
    }
  };
  try {
    if (spec.join) {
      // Open all first: a container exiting halfway cannot leave us in half of them.
      const target = kinds.map((k) => [k, fs.openSync(`/proc/${spec.join!.pid}/ns/${k}`, 'r')] as const);
      try {
        for (const [k, fd] of target) setns(fd, NS_FLAG[k]);
      } finally {
        for (const [, fd] of target) fs.closeSync(fd);
      }
    } else unshare(spec.namespaces);
  } catch (e) {
    restore();
    throw e;
  }
  return restore;
}

const NS_FLAG = { uts: CLONE_NEWUTS, ipc: CLONE_NEWIPC, net: CLONE_NEWNET, pid: CLONE_NEWPID } as const;

/** A spawned init and how it ended (listeners attached at spawn, so no exit is missed). */
interface InitProcess {
  child: ChildProcess;
  /** Resolves when init is gone and its pipes are closed; rejects when it could not be spawned. */
  closed: Promise<void>;
  exit?: { code: number | null; signal: string | null };
}

function spawnInit(ns: Pick<InitSpec, 'namespaces' | 'join'>, args: string[], stdio: StdioSlot[]): InitProcess {
  const restore = enterChildNamespaces(ns);
  let child: ChildProcess;
  try {
    // detached: a session of its own from the first instruction, so a ^C at
    // the terminal reaches only us (we forward it), never half-built init.
    child = spawn(process.execPath, [stageScript('init'), ...args], { stdio: [...stdio.slice(0, 3), 'pipe'], detached: true });
  } finally {
    restore();
  }
  trace('launch:spawned');
  const p: InitProcess = { child, closed: Promise.resolve() };
  p.closed = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      trace('launch:exit');
      p.exit = { code, signal };
    });
    child.on('close', () => resolve());
  });
  return p;
}

/**
 * An init started ahead of time (a build's next RUN step): Node's start and
 * module loading, ~75 ms here, overlap with the build's other work. It waits
 * in its namespaces (pid, uts, ipc and, unless host networking, net) for a
 * spec path on its status fd (init.ts, STANDBY_ARG), then goes on as a
 * normal init. launch() takes it when the spec asks for the same namespaces
 * and stdio; discardStandby() ends one that was not needed.
 */
export interface Standby {
  readonly namespaces: number;
  readonly stdio: string;
  readonly proc: InitProcess;
}

export async function spawnStandby(namespaces: number, stdio: StdioSlot[]): Promise<Standby> {
  await fsp.access(stageScript('init'), fsConstants.R_OK);
  const proc = spawnInit({ namespaces }, [STANDBY_ARG], stdio);
  proc.closed.catch(() => {}); // a failed spawn shows when launch() or discard awaits it
  return { namespaces, stdio: stdioKey(stdio), proc };
}

export async function discardStandby(s: Standby): Promise<void> {
  if (!s.proc.exit) s.proc.child.kill('SIGKILL');
  await s.proc.closed.catch(() => {});
}

function stdioKey(stdio: StdioSlot[]): string {
  return stdio.slice(0, 3).join(',');
}

/** Whether launch() can hand this spec to the standby. */
export function standbyFits(s: Standby, spec: Pick<InitSpec, 'namespaces' | 'join'>, stdio: StdioSlot[]): boolean {
  return !spec.join && s.namespaces === spec.namespaces && s.stdio === stdioKey(stdio) && !s.proc.exit && s.proc.child.pid !== undefined;
}

/**
 * Starts `init.js spec.json` in the container's namespaces with stdio as
 * given for fds 0-2 (fd 3 is always the status pipe) and resolves with the
 * exit code once it is gone. A `standby` (spawnStandby) is ours from here:
 * when it fits, it gets the spec instead of a new init being spawned; when
 * it does not, or we fail before handing it over, it is discarded (a waiting
 * init would otherwise keep the caller's process alive).
 */
export async function launch(specPath: string, stdio: StdioSlot[], hooks: LaunchHooks = {}, standby?: Standby): Promise<Launched> {
  let proc: InitProcess;
  try {
    await fsp.access(stageScript('init'), fsConstants.R_OK);
    const spec = JSON.parse(await fsp.readFile(specPath, 'utf8')) as InitSpec;
    if (standby && standbyFits(standby, spec, stdio)) {
      proc = standby.proc;
      standby = undefined;
      (proc.child.stdio[STATUS_FD] as NodeJS.WritableStream).write(`${specPath}\n`);
      trace('launch:standby');
    } else proc = spawnInit(spec, [specPath], stdio);
  } finally {
    if (standby) void discardStandby(standby);
  }
  const child = proc.child;
  const pid = child.pid ?? 0;
  let error: { code: number; message: string } | undefined;
  if (pid) hooks.onPid?.(pid);
  const status = child.stdio[STATUS_FD] as NodeJS.ReadableStream;
  readStatusMessages(status, (msg) => {
    if (msg.type === 'error') {
      error = { code: msg.code, message: msg.message };
      hooks.onError?.(error);
    }
  });
  // init's fd 3 is close-on-exec: EOF without an error = the program was exec'd.
  status.on('end', () => {
    trace('launch:status-eof');
    if (!error) hooks.onExec?.();
  });
  const done = proc.closed.then((): LaunchResult => {
    const exit = proc.exit;
    if (error) return { code: error.code, message: error.message };
    if (exit) return { code: exit.signal ? signalExitCode(exit.signal) : (exit.code ?? 125), message: '' };
    return { code: 125, message: 'container runtime failed (init vanished)' };
  });
  const unref = () => {
    (status as NodeJS.ReadableStream & { destroy(): void }).destroy();
    child.unref();
  };
  return { stdout: child.stdout, stderr: child.stderr, stdin: child.stdin, pid: () => pid, done, unref };
}

const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/**
 * Forwards the terminal's signals sent to this process (foreground `run`,
 * `exec`) to the container's process once its pid is known; signals that
 * arrive before are held and sent then. stop() removes the handlers.
 */
export function forwardSignals(): { setPid(pid: number): void; stop(): void } {
  let pid = 0;
  let pending: NodeJS.Signals[] = [];
  const send = (sig: NodeJS.Signals) => {
    if (!pid) return void pending.push(sig);
    try {
      process.kill(pid, sig);
    } catch {
      /* already exited */
    }
  };
  const handlers = FORWARDED_SIGNALS.map((sig) => {
    const h = () => send(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  return {
    setPid(p) {
      pid = p;
      for (const sig of pending.splice(0)) send(sig);
    },
    stop() {
      for (const [sig, h] of handlers) process.off(sig, h);
      pending = [];
    },
  };
}
