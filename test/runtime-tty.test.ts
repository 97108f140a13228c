// -t: a real pty (under util-linux `script`, which gives the CLI a terminal),
// its window size, and -i without a terminal.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, TempDirs, tsbuildCli } from './helpers.js';

const dirs = new TempDirs();
let root: string;
let tsbuild: ReturnType<typeof tsbuildCli>;
const bin = path.resolve(import.meta.dirname, '..', 'bin', 'tsbuild');

/** Runs a shell command line under `script`, i.e. with a terminal of 40 rows x 100 columns. */
function inTerminal(cmd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('script', ['-qec', `stty cols 100 rows 40; ${cmd}`, '/dev/null'], { encoding: 'utf8', timeout: 60_000 }, (err, stdout) =>
      err ? reject(err) : resolve(stdout.replace(/\r/g, '')),
    );
  });
}

beforeAll(async () => {
  ({ root } = await busyboxStore(dirs, 'tty'));
  tsbuild = tsbuildCli(root);
});
afterAll(() => dirs.cleanup());

describe('-t', () => {
  it('run -t: stdio is a terminal named /dev/console with the caller terminal size', async () => {
    const out = await inTerminal(`${bin} --root ${root} run --rm -t busybox sh -c 'tty; stty size; test -t 0 && test -t 2 && echo all-tty'`);
    expect(out).toBe('/dev/console\n40 100\nall-tty\n');
  });

  it('exec -t into a running container gets a terminal too', async () => {
    expect((await tsbuild(['run', '-d', '--name', 'tty-box', 'busybox', 'sleep', '30'])).code).toBe(0);
    const out = await inTerminal(`${bin} --root ${root} exec -t tty-box sh -c 'test -t 1 && echo yes; stty size'`);
    expect(out).toBe('yes\n40 100\n');
    expect((await tsbuild(['rm', '-f', 'tty-box'])).code).toBe(0);
  });

  it('run -t works in a pipe (no terminal on our side) and run -d -t logs the pty output', async () => {
    expect((await tsbuild(['run', '--rm', '-t', 'busybox', 'sh', '-c', 'test -t 1 && echo is-tty'])).stdout.replace(/\r/g, '')).toBe('is-tty\n');
    const id = (await tsbuild(['run', '-d', '-t', 'busybox', 'sh', '-c', 'test -t 1 && echo tty-in-log'])).stdout.trim();
    expect((await tsbuild(['wait', id])).stdout.trim()).toBe('0');
    expect((await tsbuild(['logs', id])).stdout.replace(/\r/g, '')).toBe('tty-in-log\n');
    expect((await tsbuild(['rm', id])).code).toBe(0);
  });

  it('-it with stdin not a terminal is refused like docker', async () => {
    const r = await tsbuild(['run', '--rm', '-it', 'busybox', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the input device is not a TTY/);
  });
});
