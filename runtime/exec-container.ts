// `tsbuild exec`: a new process in a running container. The same stages as
// `run` (launch.ts) with spec.join set: launch() setns()es into the
// container's pid/uts/ipc/net namespaces instead of unsharing, init joins its
// cgroup and mount namespace instead of building a rootfs, and the rest (user
// from the container's /etc/passwd, PATH lookup, capabilities, execve) is
// init's usual tail. The exec spec is a file next to the container's spec.
import { randomBytes } from 'node:crypto';
import { closeSync, promises as fsp } from 'node:fs';
import { attachTerminal, openPty } from './pty.js';
import path from 'node:path';
import { writeJsonAtomic } from '../image/atomic.js';
import { mergeEnv } from './config.js';
import { containerDir, findContainer, isRunning, readContainerConfig, readContainerState } from './container.js';
import { forwardSignals, launch } from './launch.js';
import { RunError } from './run.js';
import type { InitSpec } from './spec.js';

export interface ExecOptions {
  args: string[];
  env?: string[];
  user?: string;
  workdir?: string;
  interactive?: boolean;
  /** -t: a pseudo-terminal (pty.ts). */
  tty?: boolean;
  detach?: boolean;
  privileged?: boolean;
}

/** Runs the command in the container; resolves with its exit code (foreground) or 0 once started (detach). */
export async function execInContainer(root: string, ref: string, o: ExecOptions): Promise<number> {
  const id = await findContainer(root, ref).catch((e: Error) => {
    throw new RunError(e.message, 1);
  });
  const state = await readContainerState(root, id);
  if (!isRunning(state)) throw new RunError(`container ${id.slice(0, 12)} is not running`, 1);
  if (o.args.length === 0) throw new RunError('exec needs a command to run', 125);
  const config = await readContainerConfig(root, id);
  const dir = containerDir(root, id);
  const base = JSON.parse(await fsp.readFile(path.join(dir, 'spec.json'), 'utf8')) as InitSpec;
  const spec: InitSpec = {
    ...base,
    join: { pid: state!.Pid },
    ...(o.detach ? { detached: true } : {}),
    process: {
      ...base.process,
      args: o.args,
      // The container's env (image + run -e), then exec -e on top, as Docker does.
      env: mergeEnv(base.process.env, o.env ?? [], config.Config.Hostname, process.env),
      user: o.user ?? base.process.user,
      cwd: o.workdir ?? base.process.cwd,
      terminal: !!o.tty,
    },
  };
  const specPath = path.join(dir, `exec-${randomBytes(6).toString('hex')}.json`);
  await writeJsonAtomic(specPath, spec, 0o600);
  const signals = o.detach ? undefined : forwardSignals();
  try {
    let started: (err?: { code: number; message: string }) => void = () => {};
    const startedP = new Promise<{ code: number; message: string } | undefined>((r) => (started = r));
    const pty = o.tty && !o.detach ? openPty() : undefined;
    const launched = await launch(
      specPath,
      pty ? [pty.slave, pty.slave, pty.slave] : o.detach ? ['ignore', 'ignore', 'ignore'] : [o.interactive ? 'inherit' : 'ignore', 'inherit', 'inherit'],
      { onPid: (p) => signals?.setPid(p), onExec: () => started(), onError: (err) => started(err) },
    );
    if (o.detach) {
      const err = await Promise.race([startedP, launched.done.then((r) => (r.message ? r : undefined))]);
      if (err) throw new RunError(err.message, err.code);
      // The program (in a session of its own, no PDEATHSIG: spec.detached) goes on; we may go.
      launched.unref();
      return 0;
    }
    let terminal: ReturnType<typeof attachTerminal> | undefined;
    if (pty) {
      closeSync(pty.slave);
      terminal = attachTerminal(pty, { stdin: o.interactive ? process.stdin : undefined, stdout: process.stdout });
    }
    const r = await launched.done;
    await terminal?.drain();
    if (r.message) throw new RunError(r.message, r.code);
    return r.code;
  } finally {
    signals?.stop();
    if (!o.detach) await fsp.rm(specPath, { force: true });
  }
}
