// Container lifecycle against the real kernel: `run -d` with its monitor, ps,
// logs, stop, kill, wait, inspect, rm; cgroup limits (v1 here, detected).
// Like runtime.test.ts, it compiles the project first (the stages are
// separate Node processes) and drives the real CLI, dist/cli/main.js.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TempDirs } from './helpers.js';
import { Store } from '../image/store.js';
import { importRootfs } from '../image/import.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { listContainerIds, procStartTime, readContainerConfig } from '../runtime/container.js';
import { inspectContainer } from '../runtime/lifecycle.js';
import { detectCgroupVersion, parseBytes, removeCgroups, sharesToWeight, type CgroupPaths } from '../runtime/cgroups.js';
import { JsonLogWriter, parseLogLines } from '../runtime/logs.js';

const repo = path.resolve(import.meta.dirname, '..');
const dirs = new TempDirs();
let root: string;
const cli = path.join(repo, 'dist', 'cli', 'main.js');
/** Every cgroup dir any container of this suite got (checked to be gone at the end). */
const cgroupDirs = new Set<string>();

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function tsbuild(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cli, '--root', root, ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: child.exitCode ?? (err as { code?: number } | null)?.code ?? -1, stdout, stderr });
    });
    child.stdin!.end();
  });
}

async function remember(id: string): Promise<void> {
  const c = await readContainerConfig(root, id).catch(() => undefined);
  if (!c) return; // -d --rm that already exited and removed itself
  for (const d of Object.values((c.Cgroup as CgroupPaths | undefined)?.dirs ?? {})) cgroupDirs.add(d);
}

/** `run -d ...`; returns the id it printed. */
async function runD(...args: string[]): Promise<string> {
  const r = await tsbuild('run', '-d', ...args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const id = r.stdout.trim();
  expect(id).toMatch(/^[0-9a-f]{64}$/);
  await remember(id);
  return id;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Monitor processes of containers under our root (their argv holds the root). */
function monitorsUnderRoot(): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('monitor.js')) && argv.includes(root)) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

beforeAll(async () => {
  // The stages run as separate Node processes from dist/: test/global-setup.ts builds it once.
  if (!existsSync(path.join(repo, 'dist', 'runtime', 'monitor.js'))) throw new Error('dist/runtime/monitor.js missing after tsc');
  root = path.join(dirs.make('lifecycle'), 'root');
  const store = await Store.open(root);
  const tar = path.join(dirs.make('lifecycle-fixture'), 'busybox.tar');
  await makeBusyboxRootfs(tar);
  await importRootfs(store, tar, { tags: ['busybox:latest'], sourceName: 'test', config: { Cmd: ['sh'] } });
});

afterAll(async () => {
  for (const id of await listContainerIds(root).catch(() => [])) await tsbuild('rm', '-f', id);
  dirs.cleanup();
});

describe('run -d, ps, logs', () => {
  it('prints the full id; ps shows the container Up; -q, --no-trunc, --format', async () => {
    const id = await runD('--name', 'web', 'busybox', 'sh', '-c', 'echo hello; echo oops >&2; sleep 1000');
    const ps = await tsbuild('ps');
    const lines = ps.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
    const row = lines.find((l) => l.startsWith(id.slice(0, 12)))!;
    expect(row).toMatch(/busybox\s+"sh -c echo hello; e…"\s+.*ago\s+Up (Less than a second|\d+ seconds?)\s+web$/);
    expect((await tsbuild('ps', '-q')).stdout.split('\n')).toContain(id.slice(0, 12));
    expect((await tsbuild('ps', '-q', '--no-trunc')).stdout.split('\n')).toContain(id);
    expect((await tsbuild('ps', '--format', '{{.ID}} {{.Names}} {{.Image}} {{.Command}}')).stdout).toContain(`${id.slice(0, 12)} web busybox "sh -c echo hello; e…"`);
    const json = (await tsbuild('ps', '--format', 'json')).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(json.find((j) => j.Names === 'web')).toMatchObject({ ID: id.slice(0, 12), State: 'running', Image: 'busybox' });

    // The monitor outlived the CLI that started it and records the container's pid.
    expect(monitorsUnderRoot().length).toBeGreaterThan(0);
    const info = (await inspectContainer(root, 'web')) as Record<string, any>;
    expect(info).toMatchObject({ Id: id, Name: '/web', Path: 'sh', State: { Status: 'running', Running: true, OOMKilled: false }, Config: { Image: 'busybox' } });
    expect(info.State.Pid).toBeGreaterThan(0);
    // PID 1 is the program (busybox sh execs its last command: sleep), not node.
    expect(['sh', 'sleep']).toContain(readFileSync(`/proc/${info.State.Pid}/cmdline`, 'utf8').split('\0')[0]);
    expect(await inspectContainer(root, 'no-such')).toBeUndefined();
    // Through the CLI: containers first, then images; --type narrows.
    const cliInspect = JSON.parse((await tsbuild('inspect', 'web', 'busybox')).stdout) as Record<string, any>[];
    expect(cliInspect.map((o) => o.Name ?? o.RepoTags[0])).toEqual(['/web', 'busybox:latest']);
    expect((await tsbuild('inspect', '--format', '{{.State.Status}}', 'web')).stdout.trim()).toBe('running');
    expect((await tsbuild('inspect', '--type', 'image', 'web')).stderr).toMatch(/No such image: web/);

    for (let i = 0; i < 50 && !(await tsbuild('logs', 'web')).stderr.includes('oops'); i++) await sleep(50);
    const logs = await tsbuild('logs', 'web');
    expect(logs).toMatchObject({ code: 0, stdout: 'hello\n', stderr: 'oops\n' });
    expect((await tsbuild('logs', '-t', 'web')).stdout).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z hello\n$/);
    const raw = parseLogLines(readFileSync(info.LogPath, 'utf8')).entries;
    expect(raw.map((e) => [e.stream, e.log])).toEqual(expect.arrayContaining([['stdout', 'hello\n'], ['stderr', 'oops\n']]));

    expect((await tsbuild('rm', 'web')).code).toBe(1); // running: refused without -f
    expect((await tsbuild('ps', '-q', '--no-trunc')).stdout).toContain(id);
  });

  it('stop of `sleep 1000` (PID 1 ignores SIGTERM) SIGKILLs after -t; ps shows Exited (137); wait prints 137', async () => {
    await runD('--name', 'sleeper', 'busybox', 'sleep', '1000');
    const t0 = Date.now();
    const r = await tsbuild('stop', '-t', '1', 'sleeper');
    expect(r).toMatchObject({ code: 0, stdout: 'sleeper\n' });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    const ps = await tsbuild('ps', '-a', '--format', '{{.Names}}|{{.Status}}');
    expect(ps.stdout).toMatch(/^sleeper\|Exited \(137\) (Less than a second|\d+ seconds?) ago$/m);
    expect((await tsbuild('ps', '--format', '{{.Names}}')).stdout).not.toMatch(/^sleeper$/m);
    expect((await tsbuild('wait', 'sleeper')).stdout).toBe('137\n');
    expect(await inspectContainer(root, 'sleeper')).toMatchObject({ State: { Status: 'exited', Running: false, Pid: 0, ExitCode: 137 } });
  });

  it('stop sends SIGTERM first: a program that handles it exits with its own code', async () => {
    await runD('--name', 'polite', 'busybox', 'sh', '-c', 'trap "exit 143" TERM; while :; do sleep 0.1; done');
    const t0 = Date.now();
    expect((await tsbuild('stop', 'polite')).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect((await tsbuild('wait', 'polite')).stdout).toBe('143\n');
  });

  it('wait returns the exit code; kill -s delivers the signal; logs -f follows until the exit; --tail', async () => {
    await runD('--name', 'three', 'busybox', 'sh', '-c', 'echo a; echo b; sleep 0.5; echo c; exit 3');
    const f = await tsbuild('logs', '-f', 'three');
    expect(f.stdout).toBe('a\nb\nc\n');
    expect((await tsbuild('wait', 'three')).stdout).toBe('3\n');
    expect((await tsbuild('logs', '--tail', '1', 'three')).stdout).toBe('c\n');

    await runD('--name', 'trapper', 'busybox', 'sh', '-c', 'trap "exit 7" USR1; while :; do sleep 0.1; done');
    await sleep(300);
    expect((await tsbuild('kill', '-s', 'USR1', 'trapper')).stdout).toBe('trapper\n');
    expect((await tsbuild('wait', 'trapper')).stdout).toBe('7\n');
    const k = await tsbuild('kill', 'trapper');
    expect(k.code).toBe(1);
    expect(k.stderr).toContain('is not running');
  });

  it('reports 127 for a missing command, as `docker run -d` does, and leaves the container Created', async () => {
    const r = await tsbuild('run', '-d', '--name', 'missing', 'busybox', 'no-such-command');
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('executable file not found');
    const ps = await tsbuild('ps', '-a', '--format', '{{.Names}} {{.Status}}');
    expect(ps.stdout.split('\n')).toContain('missing Created');
    const state = JSON.parse((await tsbuild('inspect', '--format', '{{json .State}}', 'missing')).stdout);
    expect(state).toMatchObject({ Status: 'created', Running: false, ExitCode: 127, FinishedAt: '0001-01-01T00:00:00Z' });
    expect(state.Error).toContain('executable file not found');
    expect((await tsbuild('rm', 'missing')).code).toBe(0);
  });

  it('a SIGKILLed monitor takes its container along; the next command records Exited (255), as Docker after a lost shim, and removes the cgroup', async () => {
    const id = await runD('--name', 'orphan', 'busybox', 'sleep', '120');
    const state = JSON.parse(readFileSync(path.join(root, 'containers', id, 'state.json'), 'utf8'));
    const cg = Object.values((await readContainerConfig(root, id)).Cgroup!.dirs);
    expect(cg.length).toBeGreaterThan(0);
    expect(cg.every((d) => existsSync(d))).toBe(true);
    process.kill(state.MonitorPid, 'SIGKILL');
    for (let i = 0; i < 100 && existsSync(`/proc/${state.Pid}`); i++) await sleep(50);
    const ps = await tsbuild('ps', '-a', '--format', '{{.Names}}: {{.Status}}');
    expect(ps.stdout).toMatch(/^orphan: Exited \(255\) (Less than a second|\d+ seconds?) ago$/m);
    const after = JSON.parse((await tsbuild('inspect', '--format', '{{json .State}}', 'orphan')).stdout);
    expect(after).toMatchObject({ Status: 'exited', Running: false, ExitCode: 255, Pid: 0 });
    expect(Date.now() - Date.parse(after.FinishedAt)).toBeLessThan(60_000);
    expect(cg.some((d) => existsSync(d))).toBe(false);
    expect((await tsbuild('wait', 'orphan')).stdout).toBe('255\n');
    expect((await tsbuild('rm', 'orphan')).code).toBe(0);
  });

  it('ps --filter (id, name, status, exited, ancestor, network), -n and -l, as Docker', async () => {
    const up = await runD('--name', 'flt-up', '--network', 'none', 'busybox', 'sleep', '60');
    const three = await tsbuild('run', '--name', 'flt-three', '--network', 'none', 'busybox', 'sh', '-c', 'exit 3');
    expect(three.code).toBe(3);
    const names = async (...args: string[]) => {
      const r = await tsbuild('ps', ...args, '--format', '{{.Names}}');
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.split('\n').filter((n) => n.startsWith('flt-'));
    };
    expect(await names('-f', 'name=flt-')).toEqual(['flt-up']); // running only, without -a
    expect(await names('-a', '-f', 'name=^flt-(up|three)$')).toEqual(['flt-three', 'flt-up']);
    expect(await names('-f', 'status=exited', '-f', 'name=flt-')).toEqual(['flt-three']); // a status filter lists stopped ones
    expect(await names('-f', 'exited=3')).toEqual(['flt-three']);
    expect(await names('-f', 'exited=4')).toEqual([]);
    expect(await names('-f', `id=${up.slice(0, 10)}`)).toEqual(['flt-up']);
    expect(await names('-a', '-f', 'ancestor=busybox:latest', '-f', 'name=flt-')).toEqual(['flt-three', 'flt-up']);
    expect(await names('-a', '-f', 'ancestor=nosuch', '-f', 'name=flt-')).toEqual([]);
    expect(await names('-a', '-f', 'network=none', '-f', 'name=flt-')).toEqual(['flt-three', 'flt-up']);
    expect(await names('-a', '-f', 'network=bridge', '-f', 'name=flt-')).toEqual([]);
    expect(await names('-l')).toEqual(['flt-three']);
    expect(await names('-n', '2', '-f', 'name=flt-')).toEqual(['flt-three', 'flt-up']);
    const bad = await tsbuild('ps', '-f', 'bogus=1');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("invalid filter 'bogus'");
    const badFormat = await tsbuild('ps', '-f', 'nokey');
    expect(badFormat.code).toBe(125);
    expect(badFormat.stderr).toContain('bad format of filter (expected name=value)');
    expect((await tsbuild('rm', '-f', 'flt-up', 'flt-three')).code).toBe(0);
  });

  it('a zombie counts as gone (rm and stop never wait for an exited, unreaped monitor)', async () => {
    // sh execs `sleep 30`, which never reaps the short sleep started before
    // (it ends after the exec, so sh cannot have reaped it): a zombie until the parent goes.
    const parent = spawn('sh', ['-c', 'sleep 0.3 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const zombie = await new Promise<number>((resolve) => parent.stdout!.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))));
      let stat = '';
      for (let i = 0; i < 100; i++) {
        stat = readFileSync(`/proc/${zombie}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) break;
        await sleep(20);
      }
      expect(stat.slice(stat.lastIndexOf(')') + 2)[0]).toBe('Z');
      expect(procStartTime(zombie)).toBeUndefined();
      expect(procStartTime(parent.pid!)).toBeGreaterThan(0);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('-d --rm removes the container (and its cgroup) when it exits', async () => {
    const id = await runD('--rm', 'busybox', 'sh', '-c', 'exit 0');
    for (let i = 0; i < 100 && existsSync(path.join(root, 'containers', id)); i++) await sleep(50);
    expect(existsSync(path.join(root, 'containers', id))).toBe(false);
  });
});

describe('cgroups', () => {
  it('detects the cgroup version; converts sizes and shares as Docker', () => {
    expect([1, 2]).toContain(detectCgroupVersion());
    expect(parseBytes('32m')).toBe(32 * 1024 * 1024);
    expect(parseBytes('1g')).toBe(1024 ** 3);
    expect(parseBytes('512')).toBe(512);
    expect(sharesToWeight(1024)).toBe(39);
    expect(sharesToWeight(2)).toBe(1);
  });

  it('removing the last container cgroup removes the shared parent too, not before', async () => {
    const v = detectCgroupVersion();
    // A private parent (not the shared tsbuild/ one) so parallel tests cannot interfere.
    const base = v === 2 ? '/sys/fs/cgroup' : readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[2] === 'cgroup' && f[3]!.split(',').includes('pids'))![1]!;
    const parent = path.join(base, `tsbuild-test-${process.pid}`);
    const paths = (id: string): CgroupPaths => ({ version: v!, dirs: { [v === 2 ? 'unified' : 'pids']: path.join(parent, id) } });
    await fsp.mkdir(path.join(parent, 'a'), { recursive: true });
    await fsp.mkdir(path.join(parent, 'b'));
    try {
      await removeCgroups(paths('a'));
      expect(existsSync(path.join(parent, 'a'))).toBe(false);
      expect(existsSync(path.join(parent, 'b'))).toBe(true);
      await removeCgroups(paths('b'));
      expect(existsSync(parent)).toBe(false);
    } finally {
      for (const d of [path.join(parent, 'a'), path.join(parent, 'b'), parent]) await fsp.rmdir(d).catch(() => {});
    }
  });

  it('-m 32m: a memory hog is OOM-killed: 137 and OOMKilled true', async () => {
    const r = await tsbuild('run', '--name', 'hog', '-m', '32m', 'busybox', 'sh', '-c', 'x=a; while true; do x=$x$x; done');
    expect(r.code).toBe(137);
    await remember(((await inspectContainer(root, 'hog')) as { Id: string }).Id);
    expect(await inspectContainer(root, 'hog')).toMatchObject({ State: { Status: 'exited', ExitCode: 137, OOMKilled: true }, HostConfig: { Memory: 32 * 1024 * 1024 } });
    // Without a limit, the same container would not be OOM-killed for a small allocation.
    const ok = await tsbuild('run', '--rm', '-m', '32m', 'busybox', 'sh', '-c', 'head -c 1000000 /dev/zero | wc -c');
    expect(ok).toMatchObject({ code: 0, stdout: '1000000\n' });
  });

  it('--pids-limit 10 makes a fork loop fail, without hanging', async () => {
    const t0 = Date.now();
    const r = await tsbuild('run', '--name', 'forker', '--pids-limit', '10', 'busybox', 'sh', '-c', 'i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); done; echo all forked');
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('all forked');
    expect(r.stderr).toMatch(/can't fork/);
    await remember(((await inspectContainer(root, 'forker')) as { Id: string }).Id);
  });

  it('writes --cpus, --cpu-shares, --cpuset-cpus, --memory-swap into the container cgroup, and the container is in it', async () => {
    const id = await runD('--name', 'limited', '--cpus', '0.5', '--cpu-shares', '512', '--cpuset-cpus', '0', '-m', '64m', '--memory-swap', '128m', 'busybox', 'sleep', '1000');
    const cg = (await readContainerConfig(root, id)).Cgroup!;
    const read = (dir: string | undefined, f: string) => readFileSync(path.join(dir!, f), 'utf8').trim();
    if (cg.version === 1) {
      expect(read(cg.dirs.cpu, 'cpu.cfs_quota_us')).toBe('50000');
      expect(read(cg.dirs.cpu, 'cpu.cfs_period_us')).toBe('100000');
      expect(read(cg.dirs.cpu, 'cpu.shares')).toBe('512');
      expect(read(cg.dirs.cpuset, 'cpuset.cpus')).toBe('0');
      expect(read(cg.dirs.memory, 'memory.limit_in_bytes')).toBe(String(64 * 1024 * 1024));
      if (existsSync(path.join(cg.dirs.memory!, 'memory.memsw.limit_in_bytes'))) expect(read(cg.dirs.memory, 'memory.memsw.limit_in_bytes')).toBe(String(128 * 1024 * 1024));
      const pid = ((await inspectContainer(root, id)) as { State: { Pid: number } }).State.Pid;
      for (const d of new Set(Object.values(cg.dirs))) expect(read(d, 'cgroup.procs').split('\n')).toContain(String(pid));
    } else {
      expect(read(cg.dirs.unified, 'cpu.max')).toBe('50000 100000');
      expect(read(cg.dirs.unified, 'memory.max')).toBe(String(64 * 1024 * 1024));
    }
    expect((await tsbuild('rm', '-f', 'limited')).stdout).toBe('limited\n');
    for (const d of Object.values(cg.dirs)) expect(existsSync(d)).toBe(false);
  });
});

describe('json-file log writer', () => {
  it('writes one entry per line, keeps streams apart, joins split UTF-8 and flushes a partial last line', async () => {
    const file = path.join(dirs.make('lifecycle-log'), 'x-json.log');
    const w = new JsonLogWriter(file);
    const euro = Buffer.from('€\n');
    w.write('stdout', Buffer.from('one\ntw'));
    w.write('stderr', Buffer.from('err\n'));
    w.write('stdout', Buffer.concat([Buffer.from('o '), euro.subarray(0, 1)]));
    w.write('stdout', euro.subarray(1));
    w.write('stdout', Buffer.from('tail'));
    await w.close();
    const { entries, rest } = parseLogLines(await fsp.readFile(file, 'utf8'));
    expect(rest).toBe('');
    expect(entries.map((e) => [e.stream, e.log])).toEqual([
      ['stdout', 'one\n'],
      ['stderr', 'err\n'],
      ['stdout', 'two €\n'],
      ['stdout', 'tail'],
    ]);
    for (const e of entries) expect(Date.parse(e.time)).not.toBeNaN();
  });
});

describe('cleanup', () => {
  it('after rm -f of everything: no container dir, no cgroup dir, no mount under the root, no monitor left', async () => {
    await runD('--name', 'last', 'busybox', 'sleep', '1000');
    const ids = await listContainerIds(root);
    expect(ids.length).toBeGreaterThan(0);
    const r = await tsbuild('rm', '-f', ...ids);
    expect(r.code).toBe(0);
    expect(await listContainerIds(root)).toEqual([]);
    expect(readdirSync(path.join(root, 'containers'))).toEqual([]);
    expect(cgroupDirs.size).toBeGreaterThan(0);
    for (const d of cgroupDirs) expect(existsSync(d), d).toBe(false);
    expect(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(root))).toEqual([]);
    expect(monitorsUnderRoot()).toEqual([]);
    expect((await tsbuild('ps', '-a', '-q')).stdout).toBe('');
  });
});
