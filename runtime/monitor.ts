// The monitor of a detached container (`run -d`): one small Node process per
// container, started by the CLI in a session of its own, that outlives it.
//
//   tsbuild run -d  ──spawn(detached)──> node monitor.js <root> <id>     fd 3: "started"/error to the CLI
//                                         └─ node init.js spec  (PID 1 of the container, as for `run`)
//
// It does for a detached container what `tsbuild run` does in the
// foreground (superviseContainer in run.ts): it is init's parent,
// so it gets the exit status (a pid that is not our child could only be
// polled, and its exit code would be lost); it records pid + start time,
// running, exit code and OOMKilled in state.json (atomic replace); it keeps
// the program's stdout/stderr in the json-file log (logs.ts); it removes the
// cgroup after the exit, and with --rm the whole container.
//
// Why a process per container and not a daemon: nothing to start first,
// nothing that takes every container down with it, and the container's
// lifetime is tied to it through init's PDEATHSIG (if the monitor
// is SIGKILLed the container goes too, never an orphan nobody records).
// Its own errors go to <container dir>/monitor.log.
import fs from 'node:fs';
import path from 'node:path';
import { containerDir, readContainerConfig, removeContainer } from './container.js';
import { superviseContainer } from './run.js';
import { STATUS_FD, sendStatus, type StatusMessage } from './spec.js';
import { setCloexec } from './syscalls.js';

function report(msg: StatusMessage): void {
  sendStatus(msg);
  try {
    fs.closeSync(STATUS_FD);
  } catch {
    /* closed */
  }
}

async function main(): Promise<void> {
  const [root, id] = process.argv.slice(2);
  if (!root || !id) throw new Error('monitor: usage: monitor.js <root> <id>');
  setCloexec(STATUS_FD);
  // Terminal signals are not for us (we have no terminal; belt and braces).
  process.on('SIGHUP', () => {});
  process.on('SIGINT', () => {});
  const config = await readContainerConfig(root, id);
  const dir = containerDir(root, id);
  let reported = false;
  await superviseContainer(root, id, dir, {
    logPath: config.LogPath ?? path.join(dir, `${id}-json.log`),
    onStarted(err) {
      reported = true;
      report(err ? { type: 'error', code: err.code, message: err.message } : { type: 'exec' });
    },
  });
  if (!reported) report({ type: 'error', code: 125, message: 'container exited before it started' });
  if (config.HostConfig.AutoRemove) await removeContainer(root, id, { force: true, self: true, volumes: true });
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${new Date().toISOString()} monitor: ${(e as Error).stack ?? e}\n`);
    report({ type: 'error', code: 125, message: (e as Error).message });
    process.exit(125);
  },
);
