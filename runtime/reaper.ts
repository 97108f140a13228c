// `run --init`: PID 1 stays a small reaper instead of becoming the user's
// program (as docker's --init runs tini). init.ts calls runReaper() where it
// would otherwise execve: the program is started with posix_spawn (signal
// dispositions reset to default and the mask cleared in the child, like a
// fresh execve), signals sent to PID 1 are forwarded to it, and every child
// the kernel re-parents to PID 1 is reaped (waitpid(-1) on a koffi worker
// thread, so Node's main thread stays free for signal handlers). When the
// program exits, PID 1 exits with its status (128+N for signal N, as tini).
//
// The cost: a Node process (~40 MB RSS) in the container where tini takes
// 1 MB; a C reaper would need a compiler on the user's machine.
import os from 'node:os';
import { libc } from '../image/native.js';

const _posix_spawn = libc.func('int posix_spawn(_Out_ int *pid, const char *path, void *file_actions, void *attrp, const char **argv, const char **envp)');
const _attr_init = libc.func('int posix_spawnattr_init(void *attr)');
const _attr_setflags = libc.func('int posix_spawnattr_setflags(void *attr, short flags)');
const _attr_setsigdefault = libc.func('int posix_spawnattr_setsigdefault(void *attr, const void *sigset)');
const _attr_setsigmask = libc.func('int posix_spawnattr_setsigmask(void *attr, const void *sigset)');
const _sigfillset = libc.func('int sigfillset(void *set)');
const _sigemptyset = libc.func('int sigemptyset(void *set)');
const _waitpid = libc.func('int waitpid(int pid, _Out_ int *status, int options)');
const _kill = libc.func('int kill(int pid, int sig)');

const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;

const FORWARD: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGCONT'];
const SIGNUM: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15, SIGCONT: 18, SIGWINCH: 28 };

function spawnProgram(file: string, argv: string[], envp: string[]): number {
  const attr = Buffer.alloc(512);
  const all = Buffer.alloc(128);
  const none = Buffer.alloc(128);
  _attr_init(attr);
  _sigfillset(all);
  _sigemptyset(none);
  _attr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  _attr_setsigdefault(attr, all);
  _attr_setsigmask(attr, none);
  const pid = [0];
  const r = _posix_spawn(pid, file, null, attr, [...argv, null], [...envp, null]);
  if (r !== 0) {
    // posix_spawn returns the errno instead of setting it; execError (exec.ts) maps its code to 126/127.
    const code = Object.entries(os.constants.errno).find(([, n]) => n === r)?.[0] ?? 'EIO';
    throw Object.assign(new Error(`posix_spawn ${file}: ${code}`), { code, errno: -r });
  }
  return pid[0]!;
}

/** Starts the program and never returns: exits with its status once it is gone. */
export function runReaper(file: string, argv: string[], envp: string[]): void {
  const child = spawnProgram(file, argv, envp);
  for (const sig of FORWARD) process.on(sig, () => _kill(child, SIGNUM[sig]!));
  const waitOne = () => {
    const status = [0];
    (_waitpid as unknown as { async: (...a: unknown[]) => void }).async(-1, status, 0, (err: Error | null, pid: number) => {
      if (err || pid < 0) process.exit(0); // ECHILD: nothing left
      if (pid === child) {
        const st = status[0]!;
        const sig = st & 0x7f;
        process.exit(sig === 0 ? (st >> 8) & 0xff : 128 + sig);
      }
      waitOne(); // a re-parented orphan: reaped, keep waiting
    });
  };
  waitOne();
}
