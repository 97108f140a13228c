// "run --rm busybox true": tsbuild vs docker run --rm, podman run --rm, and
// raw runc run / crun run on a prepared bundle, same busybox rootfs, all with
// no network (the same work for each), medians over the runs, one run.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { attempt, benchDir, cleanup, have, must, printTable, startDockerd, timeIt, tsbuildBin, type Timing } from './common.js';

export async function benchRuntime(runs: number): Promise<Timing[]> {
  const dir = benchDir('run');
  const rows: Timing[] = [];
  let phases: [string, number][] = [];
  try {
    const tar = path.join(dir, 'busybox.tar');
    await makeBusyboxRootfs(tar);
    rows.push(timeIt('node -e 0 (Node start alone)', () => must('node', ['-e', '0']), runs));
    rows.push(timeIt('tsbuild --version (CLI start)', () => must(tsbuildBin, ['--version']), runs));

    const root = path.join(dir, 'tsbuild-root');
    must(tsbuildBin, ['--root', root, 'import', tar, 'busybox']);
    rows.push(timeIt('tsbuild run --rm', () => must(tsbuildBin, ['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true']), runs));
    phases = accountRun(root, runs);

    const d = await startDockerd(path.join(dir, 'docker'));
    if (d) {
      try {
        attempt(rows, 'docker run --rm', () => {
          must(d.docker, ['import', tar, 'busybox'], d.env);
          return timeIt('docker run --rm', () => must(d.docker, ['run', '--rm', '--network', 'none', 'busybox', 'true'], d.env), runs);
        });
      } finally {
        d.stop();
      }
    } else rows.push({ name: 'docker run --rm', median: NaN, min: NaN, runs: 0, note: 'dockerd not available: apt-get install docker.io' });

    if (have('podman')) {
      const p = ['--root', path.join(dir, 'podman'), '--runroot', path.join(dir, 'podman-run'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'];
      attempt(rows, 'podman run --rm', () => {
        must('podman', [...p, 'import', tar, 'busybox']);
        // --ulimit host: podman raises RLIMIT_NOFILE by default, which needs CAP_SYS_RESOURCE.
        return timeIt('podman run --rm', () => must('podman', [...p, 'run', '--rm', '--ulimit', 'host', '--network', 'none', 'busybox', 'true']), runs);
      });
    }

    // A prepared OCI bundle for the raw runtimes: rootfs unpacked once.
    const bundle = path.join(dir, 'bundle');
    mkdirSync(path.join(bundle, 'rootfs'), { recursive: true });
    must('tar', ['-xf', tar, '-C', path.join(bundle, 'rootfs')]);
    for (const rt of ['runc', 'crun']) {
      if (!have(rt)) continue;
      const specFile = path.join(bundle, 'config.json');
      rmSync(specFile, { force: true });
      execFileSync(rt, ['spec'], { cwd: bundle, stdio: 'ignore' });
      const spec = JSON.parse(readFileSync(specFile, 'utf8'));
      spec.process.terminal = false;
      spec.process.args = ['true'];
      writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
      let n = 0;
      attempt(rows, `${rt} run (prepared bundle)`, () => timeIt(`${rt} run (prepared bundle)`, () => must(rt, ['run', '--bundle', bundle, `tsbuild-bench-${process.pid}-${n++}`]), runs));
    }
  } finally {
    cleanup(dir);
  }
  printTable('run --rm busybox true', rows, 'docker run --rm');
  printPhases(phases);
  return rows;
}

// Where tsbuild run's time goes: the TSBUILD_TRACE marks (runtime/trace.ts) of
// stage 0 and init on one clock, medians per phase over the runs. The first
// row is whatever happens outside Node (the sh wrapper, exec, process exit).
const PHASES: [string, string, string][] = [
  ['bin/tsbuild wrapper, exec, process exit (wall - CLI lifetime)', '', ''],
  ['Node start, CLI process (boot + cli/main)', 'cli:start', 'cli:main'],
  ['load the run command (koffi, zod, runtime modules)', 'cli:main', 'cli:command-loaded'],
  ['open store, resolve image, check network flags', 'cli:command-loaded', 'run:image'],
  ['layer snapshots (already unpacked: a check)', 'run:image', 'run:snapshots'],
  ['container dir, config.json, state.json', 'run:snapshots', 'run:container-dir'],
  ['create cgroups (6 v1 controllers)', 'run:container-dir', 'run:cgroups'],
  ['bundle: init layer, /etc files, spec.json', 'run:cgroups', 'run:bundle'],
  ['record monitor in state.json', 'run:bundle', 'run:state-initial'],
  ['unshare, spawn init, setns back', 'run:state-initial', 'launch:spawned'],
  ['Node start, init process (boot + koffi)', 'launch:spawned', 'init:main'],
  ['init joins cgroups (v1 migration: an RCU grace period)', 'init:main', 'init:cgroups'],
  ['overlay mount, pivot_root', 'init:cgroups', 'init:pivoted'],
  ['/proc, /dev, /sys, masked paths', 'init:pivoted', 'init:rootfs'],
  ['user, cwd, PATH lookup, caps, execve', 'init:rootfs', 'init:execve'],
  ['the program runs and exits; exit seen', 'init:execve', 'launch:exit'],
  ['OOM count, remove cgroups, final state', 'launch:exit', 'run:state-final'],
  ['--rm: remove the container', 'run:state-final', 'run:removed'],
  ['CLI exit', 'run:removed', 'cli:exit'],
];

function accountRun(root: string, runs: number): [string, number][] {
  const samples: number[][] = PHASES.map(() => []);
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(tsbuildBin, ['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true'], { env: { ...process.env, TSBUILD_TRACE: '1' }, encoding: 'utf8' });
    const wall = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`traced run failed: ${r.stderr}`);
    const marks = new Map<string, number>();
    for (const line of r.stderr.split('\n')) {
      const m = /^tsbuild-trace \d+ ([\d.]+) (\S+)$/.exec(line);
      if (m && !marks.has(m[2]!)) marks.set(m[2]!, Number(m[1]));
    }
    PHASES.forEach(([, from, to], k) => {
      if (!from) samples[k]!.push(wall - (marks.get('cli:exit')! - marks.get('cli:start')!));
      else if (marks.has(from) && marks.has(to)) samples[k]!.push(marks.get(to)! - marks.get(from)!);
    });
  }
  return PHASES.map(([name], k) => {
    const v = samples[k]!.sort((a, b) => a - b);
    return [name, v.length ? v[Math.floor(v.length / 2)]! : NaN];
  });
}

function printPhases(phases: [string, number][]): void {
  if (!phases.length) return;
  console.log('\n## where `tsbuild run --rm busybox true` spends its time (TSBUILD_TRACE, medians in ms; they need not add up to the median total)');
  console.log('| phase | ms |');
  console.log('|---|---|');
  for (const [name, ms] of phases) console.log(`| ${name} | ${ms.toFixed(1)} |`);
  console.log(`| sum of medians | ${phases.reduce((a, [, ms]) => a + (Number.isNaN(ms) ? 0 : ms), 0).toFixed(1)} |`);
}
