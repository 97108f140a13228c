// Shared bench helpers: temp dirs named tsbuild-bench-*, repeated timing with
// medians, availability of the reference tools, a private dockerd.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const repo = path.resolve(import.meta.dirname, '..', '..');
export const tsbuildBin = path.join(repo, 'bin', 'tsbuild');

export function benchDir(tag: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `tsbuild-bench-${tag}-`));
}

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', env: opts.env ?? process.env, input: opts.input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 256 * 1024 * 1024 });
}

export interface Timing {
  name: string;
  median: number;
  min: number;
  runs: number;
  note?: string;
}

/**
 * Runs fn `warmup` times untimed, then `runs` times; medians in seconds. fn must throw on failure.
 * hooks.before/after run around every call of fn (warm-ups too), outside the timing.
 */
export function timeIt(name: string, fn: () => void, runs = 10, warmup = 2, hooks: { before?(): void; after?(): void } = {}): Timing {
  const t: number[] = [];
  for (let i = 0; i < warmup + runs; i++) {
    hooks.before?.();
    const s = process.hrtime.bigint();
    fn();
    if (i >= warmup) t.push(Number(process.hrtime.bigint() - s) / 1e9);
    hooks.after?.();
  }
  t.sort((a, b) => a - b);
  return { name, median: t[Math.floor(t.length / 2)]!, min: t[0]!, runs };
}

/** Runs a command and throws with its stderr when it fails. */
export function must(cmd: string, args: string[], env?: NodeJS.ProcessEnv): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr?.toString().trim()}`);
}

/** Measures with fn; a tool that fails here gets a row saying why instead of ending the bench. */
export function attempt(rows: Timing[], name: string, fn: () => Timing): void {
  try {
    rows.push(fn());
  } catch (e) {
    rows.push({ name, median: NaN, min: NaN, runs: 0, note: `failed here: ${(e as Error).message.split('\n')[0]!.slice(-160)}` });
  }
}

export function printTable(title: string, rows: Timing[], baseline?: string): void {
  console.log(`\n## ${title}`);
  const base = rows.find((r) => r.name === baseline)?.median;
  console.log(`| tool | median (s) | min (s) | runs |${base ? ` vs ${baseline} |` : ''}`);
  console.log(`|---|---|---|---|${base ? '---|' : ''}`);
  for (const r of rows) {
    const ratio = base ? ` ${(r.median / base).toFixed(2)}x |` : '';
    console.log(`| ${r.name}${r.note ? ` (${r.note})` : ''} | ${r.median.toFixed(3)} | ${r.min.toFixed(3)} | ${r.runs} |${ratio}`);
  }
}

/** A private dockerd (Debian's docker.io) on a socket under dir; stopped by the returned function. */
export async function startDockerd(dir: string): Promise<{ env: NodeJS.ProcessEnv; docker: string; stop(): void } | undefined> {
  if (!existsSync('/usr/sbin/dockerd') && !have('dockerd')) return undefined;
  const docker = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
  const sock = path.join(dir, 'docker.sock');
  const proc: ChildProcess = spawn(
    'dockerd',
    ['--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid'), '-H', `unix://${sock}`, '--iptables=false', '--ip-forward=false', '--bridge=none'],
    { stdio: 'ignore', detached: true },
  );
  const env = { ...process.env, DOCKER_HOST: `unix://${sock}`, DOCKER_BUILDKIT: '1' };
  for (let i = 0; i < 300; i++) {
    if (spawnSync(docker, ['info'], { env, stdio: 'ignore' }).status === 0) {
      return {
        env,
        docker,
        stop: () => {
          try {
            process.kill(proc.pid!, 'SIGTERM');
          } catch {
            /* gone */
          }
          for (let j = 0; j < 100 && spawnSync('kill', ['-0', String(proc.pid)]).status === 0; j++) spawnSync('sleep', ['0.1']);
          spawnSync('sh', ['-c', `grep ' ${dir}' /proc/self/mountinfo | cut -d' ' -f5 | sort -r | xargs -r -n1 umount -l`]);
        },
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    process.kill(proc.pid!, 'SIGKILL');
  } catch {
    /* gone */
  }
  return undefined;
}

export function cleanup(dir: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir + '/'))
    .sort()
    .reverse();
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
}
