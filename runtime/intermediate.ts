// Stage 1: the intermediate. Started by `tsbuild run` (stage 0), it creates
// the container's namespaces and starts init (stage 2) inside them, then stays
// outside as init's parent: it reaps the container's PID 1 and reports how it
// ended.
//
//   node intermediate.js <spec.json>     fd 3: status pipe to stage 0
//
// Why a process of its own, rather than unsharing in `tsbuild run` itself:
//  - unshare() changes the calling thread for good. CLONE_NEWPID only takes
//    effect for children, and only once: after the pid namespace's PID 1 exits,
//    every later fork into it fails. A builder running 50 RUN steps, or the CLI
//    spawning anything after, must not carry that.
//  - Node is multithreaded and only the calling (main) thread moves to the new
//    namespaces; the libuv threadpool does not. A process that does nothing
//    but unshare and spawn never trips over that split.
//
// Order, and why:
//  1. Ignore terminal signals (SIGINT, ...): stage 0 forwards them to the
//     container; if we died of a ^C, init's PDEATHSIG would SIGKILL the
//     container instead of letting it handle the signal.
//  2. PR_SET_PDEATHSIG: if `tsbuild run` is killed, we go too (and with us the container).
//  3. unshare(CLONE_NEWPID|NEWUTS|NEWIPC|NEWNET) on the main thread. NEWPID has
//     to happen in the parent: it applies to children only, and the first child
//     becomes PID 1. The mount namespace is left to init (see rootfs.ts).
//  4. spawn init (libuv forks from the main thread, so the child inherits the
//     main thread's namespaces). Report its host pid to stage 0 at once, so
//     signals can be forwarded even while init is still setting up.
//  5. Relay init's status messages; EOF without an error means its execve
//     succeeded. Then wait for it and report exit code or signal.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { stageScript } from './stages.js';
import { STATUS_FD, sendStatus, readStatusMessages, type InitSpec } from './spec.js';
import { prctl, PR_SET_PDEATHSIG, setCloexec, setns, unshare } from './syscalls.js';

const SIGKILL = 9;

const send = sendStatus;

/**
 * `exec`: the container's namespaces instead of new ones. Opened first, all of
 * them, so a container exiting halfway cannot leave us in half of them. The
 * pid namespace, like unshare's, applies to the children we spawn; the mount
 * namespace is init's to join (it needs a thread that shares no fs state).
 */
function joinNamespaces(pid: number): void {
  const fds = ['ipc', 'uts', 'net', 'pid'].map((ns) => fs.openSync(`/proc/${pid}/ns/${ns}`, 'r'));
  for (const fd of fds) {
    setns(fd);
    fs.closeSync(fd);
  }
}

function main(): void {
  const specPath = process.argv[2];
  if (!specPath) throw new Error('intermediate: no spec given');
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8')) as InitSpec;
  setCloexec(STATUS_FD);

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => {});
  if (!spec.detached) prctl(PR_SET_PDEATHSIG, SIGKILL);

  if (spec.join) joinNamespaces(spec.join.pid);
  else unshare(spec.namespaces);

  const child = spawn(process.execPath, [stageScript('init'), specPath], {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
  });
  let failed = false;
  child.on('error', (e) => {
    failed = true;
    send({ type: 'error', code: 125, message: `starting init: ${e.message}` });
    process.exit(125);
  });
  if (child.pid !== undefined) send({ type: 'pid', pid: child.pid });

  const status = child.stdio[STATUS_FD] as NodeJS.ReadableStream;
  readStatusMessages(status, (msg) => {
    if (msg.type === 'error') failed = true;
    send(msg);
  });
  status.on('end', () => {
    if (!failed) send({ type: 'exec' });
  });
  // 'close' comes after both the exit and the end of the status pipe.
  child.on('close', (code, signal) => {
    send({ type: 'exit', code, signal });
    process.exit(0);
  });
}

try {
  main();
} catch (e) {
  send({ type: 'error', code: 125, message: (e as Error).message });
  process.exit(125);
}
