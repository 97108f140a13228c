// The container side of the network gate (used by init.ts; no heavy imports:
// init loads this on every container start).
//
// Stage 0 creates a FIFO in the container dir and holds it open read-write
// *before* it spawns the stages (sync.ts). init opens it read-only first thing
// (while the host's paths are still reachable; a writer exists, so the open
// does not block) and, just before it execs the user's program, reads one
// byte: "g" = the network is ready; anything else, or EOF (stage 0 died),
// aborts the start. So the program never runs before its eth0, address,
// routes, published ports and /etc/hosts are in place.
import fs from 'node:fs';

export const GATE_GO = 'g';
export const GATE_ABORT = 'x';

/** Opens the gate FIFO (init, before pivot_root). */
export function openGate(path: string): number {
  return fs.openSync(path, 'r');
}

/** Blocks until stage 0 says go; throws when it says abort or is gone. */
export function waitGate(fd: number): void {
  const buf = Buffer.alloc(1);
  let n = 0;
  for (;;) {
    try {
      n = fs.readSync(fd, buf, 0, 1, null);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EINTR' || (e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw e;
    }
  }
  fs.closeSync(fd);
  if (n !== 1 || buf.toString() !== GATE_GO) throw new Error(n === 1 ? 'network setup failed (tsbuild reports why)' : 'network setup aborted: tsbuild went away');
}
