// Phase marks for accounting where a command's time goes (`npm run bench run`
// prints the breakdown). Off unless TSBUILD_TRACE is set; then each mark is
// one stderr line (for init that is the container's stderr, so a traced -d run
// has the init marks in its log):
//
//   tsbuild-trace <pid> <epoch ms, µs precision> <label>
//
// Epoch times (not per-process offsets) so the lines of stage 0 and init
// interleave on one clock. `process` marks the process's own start (before
// Node's bootstrap), taken from performance.timeOrigin.
import { writeSync } from 'node:fs';

const on = !!process.env.TSBUILD_TRACE;

export function trace(label: string): void {
  if (!on) return;
  writeSync(2, `tsbuild-trace ${process.pid} ${(performance.timeOrigin + performance.now()).toFixed(3)} ${label}\n`);
}

/** The process's start (Node's time origin), once per process. */
export function traceStart(label: string): void {
  if (!on) return;
  writeSync(2, `tsbuild-trace ${process.pid} ${performance.timeOrigin.toFixed(3)} ${label}:start\n`);
  trace(`${label}:main`);
}
