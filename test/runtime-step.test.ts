// The builder's RUN API (runtime/step.ts): same stages as `run`, the upper
// dir handed back for diffing, mount points kept out of it by the init layer.
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TempDirs } from './helpers.js';
import { Store } from '../image/store.js';
import { importRootfs } from '../image/import.js';
import { ensureSnapshots } from '../image/snapshots.js';
import { writeLayer } from '../image/layer-writer.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { coolSteps, pruneSteps, runStep, standbyCount, stepsDir, warmStep } from '../runtime/step.js';

const dirs = new TempDirs();
let root: string;
let store: Store;
let snapshots: string[];

function collect(): { out: () => string; sink: (b: Buffer) => void } {
  const chunks: Buffer[] = [];
  return { out: () => Buffer.concat(chunks).toString(), sink: (b) => chunks.push(b) };
}

function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const n of readdirSync(path.join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${n}` : n;
    out.push(r);
    if (execFileSync('stat', ['-c', '%F', path.join(dir, r)], { encoding: 'utf8' }).trim() === 'directory') out.push(...walk(dir, r));
  }
  return out;
}

beforeAll(async () => {
  root = path.join(dirs.make('step'), 'root');
  store = await Store.open(root);
  const tar = path.join(dirs.make('step-fixture'), 'busybox.tar');
  await makeBusyboxRootfs(tar);
  const img = await importRootfs(store, tar, { tags: ['busybox:latest'], sourceName: 'test', config: { Cmd: ['sh'] } });
  snapshots = await ensureSnapshots(store, img);
});
afterAll(() => dirs.cleanup());

describe('runStep', () => {
  it('returns the exit code and an upper dir holding only what the command changed', async () => {
    const o = collect();
    const r = await runStep(store, {
      snapshots,
      args: ['/bin/sh', '-c', 'echo hello > /made.txt; rm /bin/ls; cat /etc/hostname >/dev/null; echo $$; exit 3'],
      env: ['FOO=bar'],
      stdout: o.sink,
    });
    try {
      expect(r.code).toBe(3);
      expect(o.out().trim()).toBe('1');
      const entries = walk(r.upperDir);
      // The file, the whiteout for ls and its parent dir: no etc/hosts, proc, dev, sys stubs.
      expect(entries).toEqual(['bin', 'bin/ls', 'made.txt']);
      expect(readFileSync(path.join(r.upperDir, 'made.txt'), 'utf8')).toBe('hello\n');
      // The diff is a layer with exactly those entries.
      const sink = await fsp.open(path.join(dirs.make('step-layer'), 'l.tar'), 'w');
      const res = await writeLayer(r.upperDir, { mode: 'overlay-upper', lowerDirs: [...snapshots].reverse() }, sink.createWriteStream());
      expect(res.diffId).toMatch(/^sha256:[0-9a-f]{64}$/);
    } finally {
      await r.cleanup();
    }
    expect(existsSync(path.dirname(r.upperDir))).toBe(false);
  });

  it('reports 127 for a missing program and 126 for a non-executable one', async () => {
    const a = await runStep(store, { snapshots, args: ['/nonexistent'], env: [], stderr: () => {} });
    await a.cleanup();
    expect(a.code).toBe(127);
    expect(a.message).toMatch(/nonexistent/);
    const b = await runStep(store, { snapshots, args: ['/etc/passwd'], env: [], stderr: () => {} });
    await b.cleanup();
    expect(b.code).toBe(126);
  });

  it('runs as the given user in the given working dir, with env and PATH defaulted', async () => {
    const o = collect();
    const r = await runStep(store, { snapshots, args: ['/bin/sh', '-c', 'id -u; pwd; echo $FOO; echo $PATH'], env: ['FOO=x y'], user: '1000:1000', cwd: '/work/dir', stdout: o.sink });
    const workdir = existsSync(path.join(r.upperDir, 'work', 'dir'));
    await r.cleanup();
    expect(r.code).toBe(0);
    expect(o.out().split('\n').slice(0, 3)).toEqual(['1000', '/work/dir', 'x y']);
    expect(o.out()).toContain('/usr/bin');
    expect(workdir).toBe(true);
  });

  it('bind mounts and tmpfs mounts leave no mount point behind in the diff', async () => {
    const src = dirs.make('step-bind');
    writeFileSync(path.join(src, 'in.txt'), 'from host\n');
    const o = collect();
    const r = await runStep(store, {
      snapshots,
      args: ['/bin/sh', '-c', 'cat /src/in.txt; echo scratch > /tmpfs/x; touch /src/written 2>/dev/null && echo rw || echo ro'],
      env: [],
      binds: [{ source: src, target: '/src', readonly: true }],
      tmpfs: ['/tmpfs'],
      stdout: o.sink,
    });
    const entries = walk(r.upperDir);
    await r.cleanup();
    expect(r.code).toBe(0);
    expect(o.out()).toBe('from host\nro\n');
    expect(entries).toEqual([]);
  });

  it('--network none gives only lo', async () => {
    const o = collect();
    const r = await runStep(store, { snapshots, args: ['/bin/sh', '-c', 'ls /sys/class/net'], env: [], stdout: o.sink });
    await r.cleanup();
    expect(o.out().trim()).toBe('lo');
  });

  it("network 'bridge' gives the step eth0 on the default bridge, removed afterwards", async () => {
    const links = () => execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).split('\n').filter((l) => / veth/.test(l)).length;
    const before = links();
    const o = collect();
    const r = await runStep(store, { snapshots, args: ['/bin/sh', '-c', 'ls /sys/class/net; ip -4 route | grep default >/dev/null && echo has-route'], env: [], network: 'bridge', stdout: o.sink });
    await r.cleanup();
    expect(r.code).toBe(0);
    expect(o.out()).toBe('eth0\nlo\nhas-route\n');
    expect(links()).toBe(before);
  });

  it('a step takes a warmed init (standby) of its network mode; coolSteps ends the rest', async () => {
    // Our children that are standby inits still waiting for a spec.
    const standbys = () =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
            return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('--standby');
          } catch {
            return false;
          }
        }).length;
    warmStep('none');
    warmStep('host');
    warmStep('none');
    expect(standbyCount()).toBe(3);
    const o = collect();
    // host networking: the standby without a net namespace of its own is taken.
    const r = await runStep(store, { snapshots, args: ['/bin/sh', '-c', 'echo $$; ls /sys/class/net | grep -c .'], env: [], network: 'host', hostname: 'stepbox', stdout: o.sink, stderr: o.sink });
    await r.cleanup();
    expect(r.code).toBe(0);
    const [pid, nics] = o.out().trim().split('\n');
    expect(pid).toBe('1');
    expect(Number(nics)).toBeGreaterThan(1); // the host's interfaces, not just lo
    expect(standbyCount()).toBe(2);
    // A failing program through a standby reports its code as a fresh init would.
    const f = await runStep(store, { snapshots, args: ['/nonexistent'], env: [], stdout: () => {}, stderr: () => {} });
    await f.cleanup();
    expect(f.code).toBe(127);
    expect(standbyCount()).toBe(1);
    expect(standbys()).toBe(1);
    await coolSteps();
    expect(standbyCount()).toBe(0);
    expect(standbys()).toBe(0);
  });

  it('prunes step dirs whose owner is gone, keeps live ones', async () => {
    const dead = path.join(stepsDir(root), 'deadbeefdeadbeef');
    await fsp.mkdir(path.join(dead, 'upper'), { recursive: true });
    writeFileSync(path.join(dead, 'owner.json'), JSON.stringify({ pid: 999_999_999, startTime: 1 }));
    const live = path.join(stepsDir(root), 'livelivelivelive');
    await fsp.mkdir(live, { recursive: true });
    const start = Number(readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]);
    writeFileSync(path.join(live, 'owner.json'), JSON.stringify({ pid: process.pid, startTime: start }));
    expect(await pruneSteps(root)).toBe(1);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    await fsp.rm(live, { recursive: true });
  });
});
