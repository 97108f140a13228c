// Starting the stages, shared by `run` (superviseContainer) and build steps
// (step.ts): spawn the intermediate with a spec, relay what it reports, and
// turn the end into Docker's exit code. One code path for both, as the
// builder's RUN must behave exactly like `tsbuild run`.
import { spawn } from 'node:child_process';
import { promises as fsp, constants as fsConstants } from 'node:fs';
import os from 'node:os';
import { stageScript } from './stages.js';
import { STATUS_FD, readStatusMessages } from './spec.js';

/** What fds 0-2 of the stages are: pipes to us, inherited, /dev/null, or an fd (a pty slave). */
export type StdioSlot = 'pipe' | 'ignore' | 'inherit' | number;

export interface LaunchHooks {
  /** Host pid of the container's PID 1 (init, soon the user's program). */
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
  /** The intermediate's stdout/stderr when stdio asked for pipes. */
  stdout: NodeJS.ReadableStream | null;
  stderr: NodeJS.ReadableStream | null;
  stdin: NodeJS.WritableStream | null;
  /** Current host pid of PID 1 (0 until known). */
  pid(): number;
  done: Promise<LaunchResult>;
  /** Lets this process exit while the stages go on (exec -d). */
  unref(): void;
}

/**
 * Spawns `intermediate.js spec.json` with stdio as given for fds 0-2 (fd 3 is
 * always the status pipe) and resolves with the exit code once it is gone.
 */
export async function launch(
  specPath: string,
  stdio: StdioSlot[],
  hooks: LaunchHooks = {},
  opts: { detached?: boolean } = {},
): Promise<Launched> {
  await fsp.access(stageScript('intermediate'), fsConstants.R_OK);
  const child = spawn(process.execPath, [stageScript('intermediate'), specPath], {
    stdio: [...stdio.slice(0, 3), 'pipe'],
    detached: !!opts.detached,
  });
  let pid = 0;
  let error: { code: number; message: string } | undefined;
  let exit: { code: number | null; signal: string | null } | undefined;
  const closed = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  readStatusMessages(child.stdio[STATUS_FD] as NodeJS.ReadableStream, (msg) => {
    if (msg.type === 'pid') {
      pid = msg.pid;
      hooks.onPid?.(msg.pid);
    } else if (msg.type === 'exec') hooks.onExec?.();
    else if (msg.type === 'error') {
      error = { code: msg.code, message: msg.message };
      hooks.onError?.(error);
    } else if (msg.type === 'exit') exit = { code: msg.code, signal: msg.signal };
  });
  const done = closed.then((intermediateCode): LaunchResult => {
    if (error) return { code: error.code, message: error.message };
    if (exit) return { code: exit.signal ? signalExitCode(exit.signal) : (exit.code ?? 125), message: '' };
    return { code: 125, message: `container runtime failed (intermediate exited with ${intermediateCode})` };
  });
  const unref = () => {
    (child.stdio[STATUS_FD] as NodeJS.ReadableStream & { destroy(): void }).destroy();
    child.unref();
  };
  return { stdout: child.stdout, stderr: child.stderr, stdin: child.stdin, pid: () => pid, done, unref };
}
