// `build`: tsbuild build vs `docker build` (BuildKit inside Debian's dockerd,
// DOCKER_BUILDKIT=1) vs `buildah build`, side by side in one run, same busybox
// base (fixtures/busybox/make-rootfs.ts: `tsbuild import`, `docker import`,
// buildah pulls `tsbuild save`'s docker-archive), same Dockerfiles, same context:
//
//   small cold    FROM + 5 steps (WORKDIR, COPY, 2x RUN, CMD), --no-cache each run
//   small cached  the same build again, every step cached
//   large COPY    20,000 files / 400 MiB (hex text of an AES-CTR keystream, so
//                 gzip has real work: generated once under the bench dir), --no-cache
//   large RUN     RUN dd if=/dev/urandom of=/big bs=1M count=300, --no-cache
//   build+push    the large COPY built (--no-cache) and pushed to a local
//                 docker-registry on 127.0.0.1 whose storage is fresh for every
//                 measured run (started and removed outside the timing), so no
//                 blob is skipped as already present; each push is checked to
//                 have put >100 MB of blobs into the registry. tsbuild: `build
//                 --push` (two commands, build then push, on a tsbuild without
//                 it); docker: build then `docker push`; buildah: build then
//                 `buildah push --tls-verify=false`
//
// Runs: the small cases use --runs (2 untimed warm-ups); the large ones use
// min(--runs, 3) runs after 1 untimed warm-up, and `sync` before each run so
// one tool's writeback does not land in the next one's time.
//
// Same work for every tool: RUN steps have no network (--network none); buildah
// uses its own --root/--runroot under the bench dir with overlay storage,
// --isolation oci with runc (Debian's default crun refuses this machine's hybrid
// cgroups) and --layers (one cached layer per step, as BuildKit and tsbuild do).
// Docker and buildah keep layers uncompressed and gzip at push; tsbuild gzips
// while building. A tool that fails gets a row saying why. The cached case
// checks, untimed, that each tool really reported its four filesystem steps cached.
//
// Afterwards dockerd and the registry are stopped, buildah's containers and
// images removed and its mounts undone, the docker/ cgroups this run made
// removed, the bench dir deleted; the overlay mount count before/after and any
// new /tmp/tsbuild-* entries are printed.
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { attempt, benchDir, cleanup, have, must, printTable, repo, startDockerd, timeIt, tsbuildBin, type Timing } from './common.js';

const BUILDKIT = 'docker build (BuildKit)';
const LARGE_FILES = 20_000;
const LARGE_BYTES = 400 * 1024 * 1024;

interface Tool {
  name: string;
  /** The command that builds ctx as tag; noCache rebuilds every step. */
  buildCmd(ctx: string, tag: string, noCache: boolean): string[];
  push(ref: string): void;
  /** Build then push as one command, when the tool has one (tsbuild build --push). */
  buildPush?(ctx: string, ref: string): void;
  env?: NodeJS.ProcessEnv;
  /** How the tool's build output marks a cached step. */
  cachedMark: RegExp;
}

function build(t: Tool, ctx: string, tag: string, noCache: boolean): void {
  const [cmd, ...args] = t.buildCmd(ctx, tag, noCache);
  must(cmd!, args, t.env);
}

/** Builds once more, untimed, and checks that at least `want` steps were cached. */
function checkCached(t: Tool, ctx: string, tag: string, want: number): void {
  const [cmd, ...args] = t.buildCmd(ctx, tag, false);
  const r = spawnSync(cmd!, args, { encoding: 'utf8', env: t.env ?? process.env });
  const out = `${r.stdout}${r.stderr}`;
  const n = out.split('\n').filter((l) => t.cachedMark.test(l)).length;
  if (r.status !== 0 || n < want) throw new Error(`${t.name}: expected ${want} cached steps, saw ${n} (exit ${r.status}): ${out.slice(-300)}`);
}

export async function benchBuild(runs: number, o: { smallOnly?: boolean } = {}): Promise<Timing[]> {
  const bigRuns = Math.min(runs, 3);
  const overlaysBefore = overlayMounts();
  const tmpBefore = new Set(tmpEntries());
  const cgroupsBefore = new Set(dockerCgroups());
  const dir = benchDir('build');
  const tables: { title: string; rows: Timing[] }[] = [];
  const stops: (() => void)[] = [];
  try {
    const tar = path.join(dir, 'busybox.tar');
    await makeBusyboxRootfs(tar);
    const small = makeSmallContext(path.join(dir, 'ctx-small'));
    const large = o.smallOnly ? '' : makeLargeContext(path.join(dir, 'ctx-large'));
    const bigRun = path.join(dir, 'ctx-run');
    mkdirSync(bigRun);
    writeFileSync(path.join(bigRun, 'Dockerfile'), 'FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1M count=300 2>/dev/null && ls -l /big\n');
    const port = await freePort();
    const reg = `127.0.0.1:${port}`;

    const tools: Tool[] = [];
    const unavailable: Timing[] = [];
    const versions: string[] = [`tsbuild ${sh('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']).trim()}`];

    // tsbuild
    const root = path.join(dir, 'tsbuild-root');
    const ts = (...a: string[]) => must(tsbuildBin, ['--root', root, ...a]);
    ts('import', tar, 'busybox');
    // build --push when this tsbuild has it, else build then push.
    const help = sh(tsbuildBin, ['build', '--help']);
    const hasPush = /^\s+--push\s/m.test(help) && !/--push.*not available/.test(help);
    versions[0] += hasPush ? ' (build --push)' : ' (build, then push)';
    tools.push({
      name: 'tsbuild build',
      buildCmd: (ctx, tag, noCache) => [tsbuildBin, '--root', root, 'build', '--network', 'none', '--progress', 'plain', ...(noCache ? ['--no-cache'] : []), '-t', tag, ctx],
      push: (ref) => ts('push', '--progress', 'plain', ref),
      buildPush: hasPush ? (ctx, ref) => ts('build', '--network', 'none', '--progress', 'plain', '--no-cache', '--push', '-t', ref, ctx) : undefined,
      cachedMark: /^#\d+ CACHED$/,
    });

    // docker build (BuildKit)
    const d = await startDockerd(path.join(dir, 'docker'));
    if (d) {
      stops.push(() => d.stop());
      const dk = (...a: string[]) => must(d.docker, a, d.env);
      try {
        dk('import', tar, 'busybox');
        versions.push(`dockerd ${sh(d.docker, ['version', '--format', '{{.Server.Version}}'], d.env).trim()} (BuildKit, overlay2)`);
        tools.push({
          name: BUILDKIT,
          buildCmd: (ctx, tag, noCache) => [d.docker, 'build', '--network', 'none', '--progress', 'plain', ...(noCache ? ['--no-cache'] : []), '-t', tag, ctx],
          env: d.env,
          push: (ref) => dk('push', ref),
          cachedMark: /^#\d+ CACHED$/,
        });
      } catch (e) {
        unavailable.push(failedRow(BUILDKIT, e));
      }
    } else unavailable.push({ name: BUILDKIT, median: NaN, min: NaN, runs: 0, note: 'dockerd not available: apt-get install docker.io' });

    // buildah build
    const bName = 'buildah build';
    if (have('buildah') && have('runc')) {
      const store = ['--root', path.join(dir, 'buildah'), '--runroot', path.join(dir, 'buildah-run'), '--storage-driver', 'overlay'];
      const bh = (...a: string[]) => must('buildah', [...store, ...a]);
      stops.push(() => {
        spawnSync('buildah', [...store, 'rm', '--all'], { stdio: 'ignore' });
        spawnSync('buildah', [...store, 'rmi', '--all', '--force'], { stdio: 'ignore' });
      });
      try {
        ts('save', '-o', path.join(dir, 'busybox-save.tar'), 'busybox');
        bh('pull', '-q', `docker-archive:${path.join(dir, 'busybox-save.tar')}`);
        bh('tag', sh('buildah', [...store, 'images', '-q']).split('\n')[0]!, 'busybox');
        versions.push(`${sh('buildah', ['--version']).trim()} (overlay, --isolation oci, ${sh('runc', ['--version']).split('\n')[0]}, --layers)`);
        tools.push({
          name: bName,
          buildCmd: (ctx, tag, noCache) => [
            'buildah', ...store, 'build', '--layers', '--isolation', 'oci', '--runtime', 'runc', '--network', 'none', '--pull=never', ...(noCache ? ['--no-cache'] : []), '-t', tag, ctx,
          ],
          push: (ref) => bh('push', '--tls-verify=false', ref),
          cachedMark: /^--> Using cache /,
        });
      } catch (e) {
        unavailable.push(failedRow(bName, e));
      }
    } else unavailable.push({ name: bName, median: NaN, min: NaN, runs: 0, note: 'not available: apt-get install buildah runc' });

    console.log(`\n# build: ${versions.join('; ')}; small cases ${runs} runs, large ${bigRuns}; RUN steps --network none`);
    console.log('# docker and buildah keep layers uncompressed until push; tsbuild gzips them while building');
    // The floor under any Node CLI: starting Node with an empty script.
    const nodeFloor = timeIt('node -e 0 (the floor of any Node command)', () => must(process.execPath, ['-e', '0']), runs);
    const measure = (title: string, fn: (t: Tool) => Timing, floor = false) => {
      const rows: Timing[] = [];
      for (const t of tools) attempt(rows, t.name, () => fn(t));
      rows.push(...unavailable);
      if (floor) rows.push(nodeFloor);
      tables.push({ title, rows });
      printTable(title, rows, BUILDKIT);
    };
    const syncFirst = { before: () => must('sync', []) };

    measure(`small build (busybox, 6 steps), cold: --no-cache`, (t) => timeIt(t.name, () => build(t, small, 'bench-small', true), runs), true);
    measure(
      `small build, cached rebuild (every step cached)`,
      (t) => {
        const r = timeIt(t.name, () => build(t, small, 'bench-small', false), runs);
        checkCached(t, small, 'bench-small', 4); // WORKDIR, COPY, RUN, RUN
        return r;
      },
      true,
    );
    if (!o.smallOnly) measure(`large COPY (${LARGE_FILES} files, ${LARGE_BYTES >> 20} MiB), cold`, (t) => timeIt(t.name, () => build(t, large, 'bench-copy', true), bigRuns, 1, syncFirst));
    if (!o.smallOnly) measure(`RUN writing 300 MiB (dd from /dev/urandom), cold`, (t) => timeIt(t.name, () => build(t, bigRun, 'bench-run', true), bigRuns, 1, syncFirst));
    if (!o.smallOnly) measure(`build + push the large COPY to a fresh local docker-registry`, (t) => {
      let r: Registry | undefined;
      try {
        return timeIt(
          t.name,
          () => {
            if (t.buildPush) t.buildPush(large, `${reg}/x`);
            else {
              build(t, large, `${reg}/x`, true);
              t.push(`${reg}/x`);
            }
          },
          bigRuns,
          1,
          {
            before: () => {
              r = startRegistry(path.join(dir, 'registry'), port);
              must('sync', []);
            },
            after: () => {
              const pushed = r!.blobBytes();
              r!.stop();
              r = undefined;
              if (pushed < 100e6) throw new Error(`${t.name}: only ${pushed} bytes of blobs reached the registry`);
            },
          },
        );
      } finally {
        r?.stop(); // a failed build or push leaves the registry running
      }
    });
  } finally {
    for (const s of stops.reverse()) s();
    cleanup(dir);
    // dockerd leaves its (empty) docker/ and docker/buildkit cgroups behind; remove the ones this run made.
    for (const c of dockerCgroups().reverse()) if (!cgroupsBefore.has(c)) spawnSync('rmdir', [c], { stdio: 'ignore' });
  }

  // The issue's goals, as ratios of tsbuild's median to BuildKit's.
  const ratio = (i: number) => {
    const rows = tables[i]?.rows ?? [];
    const a = rows.find((r) => r.name === 'tsbuild build')?.median;
    const b = rows.find((r) => r.name === BUILDKIT)?.median;
    return a && b ? a / b : NaN;
  };
  console.log('\n## goals (tsbuild median / BuildKit median)');
  for (const [label, i, goal] of [
    ['small cold build', 0, 0.8],
    ['cached rebuild', 1, 1.0],
    ['large COPY build', 2, 1.0],
    ['build + push', 4, 0.6],
  ] as const) {
    const r = ratio(i);
    console.log(`- ${label}: ${Number.isNaN(r) ? 'not measured' : `${r.toFixed(2)}x, goal <= ${goal.toFixed(1)}x: ${r <= goal ? 'met' : 'NOT met'}`}`);
  }

  const overlaysAfter = overlayMounts();
  const left = tmpEntries().filter((e) => !tmpBefore.has(e));
  console.log(`\ncleanup: overlay mounts ${overlaysBefore} before, ${overlaysAfter} after; new ${os.tmpdir()}/tsbuild-* entries: ${left.length ? left.join(' ') : 'none'}`);
  if (overlaysAfter !== overlaysBefore || left.length) console.error('bench build: something was left behind (other users of this machine may also be the cause)');
  return tables.flatMap((t) => t.rows);
}

function failedRow(name: string, e: unknown): Timing {
  return { name, median: NaN, min: NaN, runs: 0, note: `failed here: ${(e as Error).message.split('\n')[0]!.slice(-160)}` };
}

function sh(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

function makeSmallContext(ctx: string): string {
  mkdirSync(path.join(ctx, 'app'), { recursive: true });
  writeFileSync(path.join(ctx, 'app', 'a.txt'), 'hello\n');
  writeFileSync(path.join(ctx, 'app', 'b.conf'), 'key=value\n');
  writeFileSync(
    path.join(ctx, 'Dockerfile'),
    [
      'FROM busybox',
      'WORKDIR /app',
      'COPY app/ /app/',
      'RUN echo built > /app/built && mkdir -p /data && echo x > /data/x',
      "RUN sed 's/hello/bye/' /app/a.txt > /app/bye.txt",
      'CMD ["cat", "/app/bye.txt"]',
      '',
    ].join('\n'),
  );
  return ctx;
}

/**
 * 20,000 files in 100 dirs, 400 MiB in all, sizes 1-40 KiB: the hex text of an
 * AES-128-CTR keystream with a fixed key, so every run of the bench gets the
 * same bytes and gzip -1 shrinks them to a bit over half.
 */
function makeLargeContext(ctx: string): string {
  const key = Buffer.alloc(16, 7);
  const sizes = new Float64Array(LARGE_FILES);
  let seed = 0x2545f491;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  let sum = 0;
  for (let i = 0; i < LARGE_FILES; i++) sum += sizes[i] = 0.05 + 1.9 * rand();
  const ks = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  let written = 0;
  for (let i = 0; i < LARGE_FILES; i++) {
    const d = path.join(ctx, 'data', `d${String(i % 100).padStart(3, '0')}`);
    if (i < 100) mkdirSync(d, { recursive: true });
    const n = i === LARGE_FILES - 1 ? LARGE_BYTES - written : Math.floor((sizes[i]! / sum) * LARGE_BYTES);
    const hex = Buffer.from(ks.update(Buffer.alloc(Math.ceil(n / 2))).toString('hex').slice(0, n), 'latin1');
    writeFileSync(path.join(d, `f${String(i).padStart(5, '0')}.txt`), hex);
    written += n;
  }
  writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY data/ /data/\n');
  return ctx;
}

interface Registry {
  blobBytes(): number;
  stop(): void;
}

/** Debian's docker-registry on 127.0.0.1:port with fresh storage under dir (removed by stop). */
function startRegistry(dir: string, port: number): Registry {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const config = path.join(dir, 'config.yml');
  writeFileSync(
    config,
    ['version: 0.1', 'log:', '  level: warn', '  accesslog:', '    disabled: true', 'storage:', '  filesystem:', `    rootdirectory: ${path.join(dir, 'data')}`, 'http:', `  addr: 127.0.0.1:${port}`, ''].join('\n'),
  );
  const log = openSync(path.join(dir, 'log'), 'w');
  const proc = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', log, log] });
  closeSync(log);
  const pid = proc.pid!;
  const stop = () => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    if (!waitGone(pid, 5000)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      waitGone(pid, 5000);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready when /v2/ answers.
  for (let i = 0; i < 150; i++) {
    if (spawnSync('curl', ['-sf', '-o', '/dev/null', `http://127.0.0.1:${port}/v2/`]).status === 0) {
      return { stop, blobBytes: () => duBytes(path.join(dir, 'data', 'docker', 'registry', 'v2', 'blobs')) };
    }
    if (!alive(pid)) break;
    spawnSync('sleep', ['0.1']);
  }
  const msg = existsSync(path.join(dir, 'log')) ? readFileSync(path.join(dir, 'log'), 'utf8').trim() : '';
  stop();
  throw new Error(`docker-registry did not answer on 127.0.0.1:${port}: ${msg}`);
}

/** Whether pid runs (a zombie the event loop has not reaped yet counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function waitGone(pid: number, ms: number): boolean {
  for (let t = 0; t < ms && alive(pid); t += 50) spawnSync('sleep', ['0.05']);
  return !alive(pid);
}

function duBytes(p: string): number {
  if (!existsSync(p)) return 0;
  let n = 0;
  for (const e of readdirSync(p, { recursive: true, withFileTypes: true })) if (e.isFile()) n += statSync(path.join(e.parentPath, e.name)).size;
  return n;
}

function freePort(): Promise<number> {
  return import('node:net').then(
    (net) =>
      new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
          const port = (s.address() as { port: number }).port;
          s.close(() => resolve(port));
        });
      }),
  );
}

function overlayMounts(): number {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[2] === 'overlay').length;
}

function tmpEntries(): string[] {
  return readdirSync(os.tmpdir()).filter((e) => e.startsWith('tsbuild-'));
}

/** /sys/fs/cgroup/<controller>/docker and .../docker/buildkit where they exist, parents first. */
function dockerCgroups(): string[] {
  const out: string[] = [];
  const base = '/sys/fs/cgroup';
  if (!existsSync(base)) return out;
  for (const c of readdirSync(base)) {
    for (const sub of ['docker', 'docker/buildkit']) {
      const p = path.join(base, c, sub);
      if (existsSync(p)) out.push(p);
    }
  }
  return out.sort();
}
