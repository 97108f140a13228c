import fs from 'node:fs';
// What the host side (stage 0) hands to the container stages, and what they
// report back. The spec travels as a JSON file in the container's state dir
// whose path is the only argument of the init stage (our
// own Node processes); it never appears in the user's program's argv or env.
//
// Status protocol: newline-delimited JSON on init's fd 3, read by stage 0
// (launch.ts). init's fd 3 is
// close-on-exec, so a successful execve of the user's program shows up as EOF
// without an "error" message before it.

export const STATUS_FD = 3;

/**
 * `init.js --standby`: started ahead of need (launch.ts spawnStandby), init
 * loads its modules, then reads one line from STATUS_FD (a socketpair, so it
 * carries data both ways): the path of its spec.json. EOF = not needed, exit 0.
 */
export const STANDBY_ARG = '--standby';

/**
 * host: the host's network namespace. none: a new one with only `lo`.
 * bridge: a new one that stage 0 connects to bridge networks (runtime/network)
 * while init waits at the gate (netSync) before exec'ing the program.
 */
export type NetworkMode = 'none' | 'host' | 'bridge';

export interface BindSpec {
  /** Host path (opened before pivot_root). */
  source: string;
  /** Path inside the container. */
  target: string;
  readonly: boolean;
}

export interface InitSpec {
  version: 1;
  id: string;
  /** Absolute store root; the stage chdirs here so overlay paths stay short. */
  storeRoot: string;
  /** Relative to storeRoot. Top-most first, as overlay's lowerdir wants them. */
  lowerDirs: string[];
  upperDir: string;
  workDir: string;
  /** Mount point of the container's root (relative to storeRoot). */
  rootfs: string;
  hostname: string;
  network: NetworkMode;
  /** network 'bridge': the gate FIFO (runtime/network/gate.ts) init opens at once and reads "go" from before execve. */
  netSync?: string;
  /** CLONE_NEW* flags launch() unshares for init (everything but the mount namespace, see launch.ts). */
  namespaces: number;
  binds: BindSpec[];
  /** Container paths to mount a fresh tmpfs on (RUN --mount=type=tmpfs, --tmpfs). */
  tmpfs?: string[];
  /** --privileged: no masked or read-only /proc paths, /sys read-write (capabilities come in process.capabilities). */
  privileged?: boolean;
  /** --read-only: the root is remounted read-only once everything is mounted. */
  readonlyRootfs?: boolean;
  /**
   * `exec`: join the running container whose PID 1 has this host pid instead
   * of creating namespaces and a rootfs (launch() setns()es into its
   * pid/uts/ipc/net namespaces, init into its mount namespace and cgroup).
   */
  join?: { pid: number };
  /** exec -d: the program outlives `tsbuild exec` (init sets no PDEATHSIG). */
  detached?: boolean;
  /** cgroup.procs files init writes "0" (itself) into before anything else (cgroups.ts). */
  cgroupProcs?: string[];
  process: {
    args: string[];
    env: string[];
    cwd: string;
    /** Docker's --user syntax: "", "name", "uid", "name:group", "uid:gid". */
    user: string;
    /** Capability names (CAP_*) the program keeps: bounding set, and effective/permitted for uid 0. */
    capabilities: string[];
    /** --ulimit: RLIMIT name (nofile, nproc, ...) with soft and hard limits (-1 unlimited). */
    rlimits?: { name: string; soft: number; hard: number }[];
    /** --init: PID 1 is a reaper that starts the program as its child (reaper.ts). */
    init?: boolean;
    /** -t: fd 0 is a pty slave to make the controlling terminal (pty.ts). */
    terminal?: boolean;
    /** --security-opt no-new-privileges: setuid binaries and file caps grant nothing. */
    noNewPrivileges?: boolean;
  };
}

export type StatusMessage =
  | { type: 'pid'; pid: number }
  | { type: 'exec' }
  | { type: 'error'; code: number; message: string }
  | { type: 'exit'; code: number | null; signal: string | null };

/** Writes one status message as a JSON line to STATUS_FD; a reader that is gone is not an error. */
export function sendStatus(msg: StatusMessage): void {
  try {
    fs.writeSync(STATUS_FD, JSON.stringify(msg) + '\n');
  } catch {
    /* the reading stage is gone: nothing to tell */
  }
}

/** Calls onMessage for each JSON status line read from a stage's STATUS_FD pipe; other lines are ignored. */
export function readStatusMessages(stream: NodeJS.ReadableStream, onMessage: (msg: StatusMessage) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let msg: StatusMessage;
      try {
        msg = JSON.parse(line) as StatusMessage;
      } catch {
        continue;
      }
      onMessage(msg);
    }
  });
}
