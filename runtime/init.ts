// Stage 1: init. Started by launch() (launch.ts) in new pid (and
// UTS, IPC, net) namespaces, so this Node process is PID 1 of the container.
// It builds the container's world and then execve's the user's program, which
// thereby *becomes* PID 1: no Node process stays behind inside the container.
//
//   node init.js <spec.json>        fd 3: status pipe to stage 0
//   node init.js --standby          the same, the spec path read from fd 3 first
//
// Order, and why:
//  1. PR_SET_PDEATHSIG first: if stage 0 dies, nobody would wait for
//     us or report our exit; better to die with it.
//  2. Rootfs (rootfs.ts has its own ordering notes): our own mount namespace,
//     overlay, pivot_root, then /proc, /dev, /sys and the bind mounts, all
//     resolved inside the new root.
//  3. Hostname and `lo`: we are already in the new UTS/net namespaces.
//  4. User, HOME, working directory and the program's path are looked up
//     *inside* the container (its /etc/passwd, its $PATH), so after pivot_root.
//     The working dir is created as root (Docker does), before dropping privileges.
//  4b. Network gate (network 'bridge' only): block until stage 0, which
//     connects our network namespace from the host, says "go" over a FIFO
//     opened before pivot_root (runtime/network/gate.ts). Late on purpose: the
//     rootfs work above overlaps with the host's network setup.
//  5. A session of its own (launch() spawns us detached; with -t the pty
//     slave becomes its controlling terminal): a ^C at the user's terminal
//     reaches only `tsbuild run`, which forwards it once (the container is
//     not in the terminal's foreground process group and so does not get it twice).
//  6. Drop privileges: the bounding set first (needs CAP_SETPCAP), then groups,
//     gid, uid (in that order, each needs the one before to still be root),
//     then the capability sets for uid 0 (capabilities.ts); re-arm
//     PDEATHSIG, which a credential change clears.
//  7. Hand over the fds: Node marks fds 0-2 close-on-exec at startup, so clear
//     that; the status fd keeps it, so a successful execve closes it and
//     stage 0 reads EOF = "exec succeeded".
//  8. Reset signal dispositions and mask (Node ignores SIGPIPE; SIG_IGN survives execve) and the umask.
//  9. execve. On failure, report 126/127 with Docker's message over the status fd.
//
// Only synchronous fs calls here: async ones run on libuv threadpool threads,
// which stay in the mount namespace and root we are leaving.
import fs from 'node:fs';
import { setControllingTerminal } from './pty.js';
import { runReaper } from './reaper.js';
import { capMask, dropBoundingSet, setCapabilities } from './capabilities.js';
import { enterRootfs, makeRootReadonly, mountSpecialFilesystems } from './rootfs.js';
import { execError, lookPath, resolveUser, StageError } from './exec.js';
import { STANDBY_ARG, STATUS_FD, sendStatus, type InitSpec } from './spec.js';
import { trace, traceStart } from './trace.js';
import { openGate, waitGate } from './network/gate.js';
import { CLONE_FS, CLONE_NEWNS, execve, interfaceUp, setns, unshare, prctl, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, resetSignals, RLIMITS, setCloexec, sethostname, setrlimit, setsid } from './syscalls.js';

const SIGKILL = 9;

const send = sendStatus;

function main(): void {
  traceStart('init');
  let specPath = process.argv[2];
  const standby = specPath === STANDBY_ARG;
  // A standby (build steps) is never detached: it dies with the builder even while it waits.
  if (standby) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    specPath = readSpecPath();
    if (!specPath) process.exit(0); // not needed after all
    trace('init:spec');
  }
  if (!specPath) throw new StageError('init: no spec given', 125);
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8')) as InitSpec;
  setCloexec(STATUS_FD);

  if (!spec.detached) prctl(PR_SET_PDEATHSIG, SIGKILL);
  process.umask(0o022);

  // Join the container's cgroups first: still in the host's mount namespace
  // (the /sys/fs/cgroup paths are valid), and in program order before the
  // execve, so nothing of the user's program ever runs outside them. "0" means
  // the writing process, whatever pid namespace it is in. See cgroups.ts.
  for (const procs of spec.cgroupProcs ?? []) {
    try {
      fs.writeFileSync(procs, '0');
    } catch (e) {
      throw new StageError(`joining cgroup ${procs}: ${(e as Error).message}`, 125);
    }
  }

  trace('init:cgroups');
  // Network gate (network 'bridge'): opened now, while the host path is
  // reachable; read before execve, below. See runtime/network/gate.ts. Not
  // for exec (join): its namespace is connected already.
  const netGate = spec.netSync && !spec.join ? openGate(spec.netSync) : undefined;

  if (spec.join) {
    // exec: the container's mount namespace (and with it its root and cwd).
    // setns(CLONE_NEWNS) refuses a thread sharing fs state (root, cwd, umask)
    // with others, and Node has threads: unshare that state first.
    const mnt = fs.openSync(`/proc/${spec.join.pid}/ns/mnt`, 'r');
    unshare(CLONE_FS);
    setns(mnt, CLONE_NEWNS);
    fs.closeSync(mnt);
  } else {
    const binds = enterRootfs(spec);
    trace('init:pivoted');
    mountSpecialFilesystems(binds, { tmpfs: spec.tmpfs, privileged: spec.privileged });
    sethostname(spec.hostname);
    if (spec.network !== 'host') interfaceUp('lo');
  }

  trace('init:rootfs');
  const user = resolveUser(spec.process.user);
  const env = [...spec.process.env];
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);
  const cwd = spec.process.cwd || '/';
  if (spec.join) {
    try {
      process.chdir(cwd);
    } catch {
      throw new StageError(`Cwd must be an absolute path and exist in the container: ${cwd}`, 126);
    }
  } else {
    fs.mkdirSync(cwd, { recursive: true, mode: 0o755 });
    if (spec.readonlyRootfs) makeRootReadonly();
  }
  const file = lookPath(spec.process.args[0] ?? '', env);
  process.chdir(cwd);

  for (const l of spec.process.rlimits ?? []) {
    const n = RLIMITS[l.name];
    if (n === undefined) throw new StageError(`invalid ulimit type: ${l.name}`, 125);
    setrlimit(n, l.soft, l.hard);
  }

  // Wait until stage 0 has connected our network namespace (eth0, routes,
  // published ports, /etc/hosts): the program must not start without them.
  if (netGate !== undefined) {
    try {
      waitGate(netGate);
    } catch (e) {
      throw new StageError((e as Error).message, 125);
    }
  }

  // launch() spawned us detached, so we lead a session already; setsid() then fails with EPERM.
  try {
    setsid();
  } catch {
    /* already a session leader */
  }
  if (spec.process.terminal) setControllingTerminal(0);
  const caps = capMask(spec.process.capabilities);
  dropBoundingSet(caps);
  process.setgroups!(user.groups);
  process.setgid!(user.gid);
  process.setuid!(user.uid);
  if (user.uid === 0) setCapabilities(caps);
  if (!spec.detached) prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (spec.process.noNewPrivileges) prctl(PR_SET_NO_NEW_PRIVS, 1);

  for (const fd of [0, 1, 2]) {
    try {
      setCloexec(fd, false);
    } catch {
      /* fd not open: the program gets it closed, as it would from any parent */
    }
  }
  if (spec.process.init) {
    // --init: we stay PID 1 as a reaper (reaper.ts); the program is our child.
    try {
      runReaper(file, spec.process.args, env);
    } catch (e) {
      throw execError(spec.process.args[0] ?? file, e as NodeJS.ErrnoException);
    }
    fs.closeSync(STATUS_FD); // started: stage 0 reads EOF, as after an execve
    return;
  }
  resetSignals();
  trace('init:execve');

  try {
    execve(file, spec.process.args, env);
  } catch (e) {
    throw execError(spec.process.args[0] ?? file, e as NodeJS.ErrnoException);
  }
}

/** A standby's spec path: one line on the status socket; '' at EOF. Blocks (the socket is blocking on our side). */
function readSpecPath(): string {
  const buf = Buffer.alloc(4096);
  let got = '';
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(STATUS_FD, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EINTR' || code === 'EAGAIN') continue;
      throw e;
    }
    if (n === 0) return '';
    got += buf.toString('utf8', 0, n);
    const nl = got.indexOf('\n');
    if (nl !== -1) return got.slice(0, nl);
  }
}

try {
  main();
} catch (e) {
  const err = e as Error;
  const code = e instanceof StageError ? e.code : 125;
  send({ type: 'error', code, message: err.message });
  process.exit(code);
}
