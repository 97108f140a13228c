// "run --rm busybox true": tsbuild vs docker run --rm, podman run --rm, and
// raw runc run / crun run on a prepared bundle, same busybox rootfs, all with
// no network (the same work for each), medians over the runs, one run.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { attempt, benchDir, cleanup, have, must, printTable, startDockerd, timeIt, tsbuildBin, type Timing } from './common.js';

export async function benchRuntime(runs: number): Promise<Timing[]> {
  const dir = benchDir('run');
  const rows: Timing[] = [];
  try {
    const tar = path.join(dir, 'busybox.tar');
    await makeBusyboxRootfs(tar);
    rows.push(timeIt('node -e 0 (Node start alone)', () => must('node', ['-e', '0']), runs));
    rows.push(timeIt('tsbuild --version (CLI start)', () => must(tsbuildBin, ['--version']), runs));

    const root = path.join(dir, 'tsbuild-root');
    must(tsbuildBin, ['--root', root, 'import', tar, 'busybox']);
    rows.push(timeIt('tsbuild run --rm', () => must(tsbuildBin, ['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true']), runs));

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
  return rows;
}
