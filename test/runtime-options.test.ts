// `run` options beyond the basics: -v binds and named/anonymous volumes and
// `volume` commands, --read-only, --tmpfs, --ulimit, --security-opt
// no-new-privileges, --privileged, --env-file, rm -v.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, TempDirs, tsbuildCli } from './helpers.js';
import { parseVolumeSpec } from '../runtime/volumes.js';

const dirs = new TempDirs();
let root: string;
let tsbuild: ReturnType<typeof tsbuildCli>;
const run = (...args: string[]) => tsbuild(['run', '--rm', ...args]);

beforeAll(async () => {
  ({ root } = await busyboxStore(dirs, 'opts'));
  tsbuild = tsbuildCli(root);
});
afterAll(() => dirs.cleanup());

describe('volumes', () => {
  it('parses -v forms as Docker does and rejects bad ones', () => {
    expect(parseVolumeSpec('/a:/b:ro')).toEqual({ kind: 'bind', source: '/a', target: '/b', readonly: true });
    expect(parseVolumeSpec('data:/data')).toEqual({ kind: 'volume', source: 'data', target: '/data', readonly: false });
    expect(parseVolumeSpec('/anon')).toEqual({ kind: 'anonymous', source: '', target: '/anon', readonly: false });
    expect(() => parseVolumeSpec('a:b')).toThrow(/must be absolute/);
    expect(() => parseVolumeSpec('/a:/')).toThrow(/destination can't be '\/'/);
    expect(() => parseVolumeSpec('/a:/b:xx')).toThrow(/invalid mode/);
    expect(() => parseVolumeSpec('bad name!:/x')).toThrow(/invalid characters/);
  });

  it('a read-only bind cannot be written; a rw bind writes through to the host', async () => {
    const host = dirs.make('opts-bind');
    writeFileSync(path.join(host, 'f'), 'from host\n');
    const ro = await run('-v', `${host}:/h:ro`, 'busybox', 'sh', '-c', 'cat /h/f; echo x > /h/g');
    expect(ro.stdout).toBe('from host\n');
    expect(ro.stderr).toMatch(/Read-only file system/);
    expect(ro.code).not.toBe(0);
    expect(existsSync(path.join(host, 'g'))).toBe(false);
    const rw = await run('-v', `${host}:/h`, 'busybox', 'sh', '-c', 'echo y > /h/g');
    expect(rw.code).toBe(0);
    expect(readFileSync(path.join(host, 'g'), 'utf8')).toBe('y\n');
  });

  it('a named volume survives rm and is seen by the next container; volume rm refuses while in use', async () => {
    expect((await run('-v', 'data:/data', 'busybox', 'sh', '-c', 'echo kept > /data/p')).code).toBe(0);
    const again = await run('-v', 'data:/data', 'busybox', 'cat', '/data/p');
    expect(again.stdout).toBe('kept\n');
    expect((await tsbuild(['volume', 'ls', '-q'])).stdout).toBe('data\n');
    expect((await tsbuild(['run', '--name', 'holder', '-v', 'data:/data', 'busybox', 'true'])).code).toBe(0);
    const busy = await tsbuild(['volume', 'rm', 'data']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/volume is in use/);
    expect((await tsbuild(['rm', 'holder'])).code).toBe(0);
    expect((await tsbuild(['volume', 'rm', 'data'])).code).toBe(0);
    expect((await tsbuild(['volume', 'ls', '-q'])).stdout).toBe('');
    const missing = await tsbuild(['volume', 'rm', 'data']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no such volume/);
  });

  it('anonymous volumes go with rm -v and with --rm, but not with a plain rm', async () => {
    const vols = () => (existsSync(path.join(root, 'volumes')) ? readdirSync(path.join(root, 'volumes')) : []);
    const before = vols().length;
    expect((await tsbuild(['run', '--name', 'anon1', '-v', '/scratch', 'busybox', 'true'])).code).toBe(0);
    expect(vols().length).toBe(before + 1);
    expect((await tsbuild(['rm', '-v', 'anon1'])).code).toBe(0);
    expect(vols().length).toBe(before);
    expect((await run('-v', '/scratch', 'busybox', 'true')).code).toBe(0);
    expect(vols().length).toBe(before);
    expect((await tsbuild(['run', '--name', 'anon2', '-v', '/scratch', 'busybox', 'true'])).code).toBe(0);
    expect((await tsbuild(['rm', 'anon2'])).code).toBe(0);
    expect(vols().length).toBe(before + 1);
    expect((await tsbuild(['volume', 'prune', '-f'])).code).toBe(0);
    expect(vols().length).toBe(before);
  });
});

describe('hardening and limits', () => {
  it('--read-only: the root cannot be written, a --tmpfs can', async () => {
    const r = await run('--read-only', 'busybox', 'sh', '-c', 'touch /x 2>/dev/null && echo wrote || echo refused');
    expect(r.stdout).toBe('refused\n');
    const t = await run('--read-only', '--tmpfs', '/scratch', 'busybox', 'sh', '-c', 'echo ok > /scratch/y && cat /scratch/y; grep " /scratch " /proc/mounts | cut -d" " -f3');
    expect(t.stdout).toBe('ok\ntmpfs\n');
  });

  it('--ulimit sets soft and hard limits; bad values are refused with 125', async () => {
    const r = await run('--ulimit', 'nofile=100:200', 'busybox', 'sh', '-c', 'ulimit -n; ulimit -Hn');
    expect(r.stdout).toBe('100\n200\n');
    const bad = await run('--ulimit', 'nofile=300:200', 'busybox', 'true');
    expect(bad.code).toBe(125);
    expect(bad.stderr).toMatch(/soft limit/);
    expect((await run('--ulimit', 'bogus=1', 'busybox', 'true')).code).toBe(125);
  });

  it('--security-opt no-new-privileges sets NoNewPrivs', async () => {
    expect((await run('busybox', 'grep', 'NoNewPrivs', '/proc/self/status')).stdout).toMatch(/NoNewPrivs:\s+0/);
    expect((await run('--security-opt', 'no-new-privileges', 'busybox', 'grep', 'NoNewPrivs', '/proc/self/status')).stdout).toMatch(/NoNewPrivs:\s+1/);
    expect((await run('--security-opt', 'seccomp=x', 'busybox', 'true')).code).toBe(125);
  });

  it('--privileged: all our capabilities, mount works, /proc/keys unmasked, /sys writable', async () => {
    const host = readFileSync('/proc/self/status', 'utf8').match(/^CapBnd:\s*(\w+)$/m)![1];
    const r = await run('--privileged', 'busybox', 'sh', '-c', 'grep CapEff /proc/self/status; mkdir /m; mount -t tmpfs x /m && echo mounted; grep " /sys " /proc/mounts | cut -d" " -f4 | cut -d, -f1');
    expect(r.stdout).toBe(`CapEff:\t${host}\nmounted\nrw\n`);
    const plain = await run('busybox', 'sh', '-c', 'mkdir /m; mount -t tmpfs x /m 2>/dev/null && echo mounted || echo denied; grep " /sys " /proc/mounts | cut -d" " -f4 | cut -d, -f1');
    expect(plain.stdout).toBe('denied\nro\n');
  });

  it('device cgroup: a device node the container makes cannot be opened, unless --privileged', async () => {
    const probe = 'mknod /k c 1 11 && head -c 1 /k >/dev/null 2>&1 && echo opened || echo denied';
    expect((await run('busybox', 'sh', '-c', probe)).stdout).toBe('denied\n');
    expect((await run('--privileged', 'busybox', 'sh', '-c', probe)).stdout).toBe('opened\n');
    expect((await run('busybox', 'sh', '-c', 'echo x > /dev/null && head -c 1 /dev/urandom | wc -c')).stdout.trim()).toBe('1');
  });

  it('--env-file: VAR=value lines, comments skipped, -e wins', async () => {
    const f = path.join(dirs.make('opts-env'), 'env');
    writeFileSync(f, '# comment\nA=1\n\nB=two words\nFROM_HOST\n');
    const r = await tsbuild(['run', '--rm', '--env-file', f, '-e', 'B=over', 'busybox', 'sh', '-c', 'echo "$A|$B|$FROM_HOST"'], { env: { ...process.env, FROM_HOST: 'h' } });
    expect(r.stdout).toBe('1|over|h\n');
    const missing = await run('--env-file', '/nonexistent-tsbuild-env', 'busybox', 'true');
    expect(missing.code).toBe(125);
    expect(missing.stderr).toMatch(/nonexistent-tsbuild-env/);
  });
});

describe('--init', () => {
  it('PID 1 is a reaper: the program is its child, orphans are reaped, the exit code and signals pass through', async () => {
    const r = await run('--init', 'busybox', 'sh', '-c', 'echo $$; for i in 1 2 3; do (sleep 0.1 &); done; sleep 0.5; ps -o stat= | grep -c Z; exit 5');
    expect(r.code).toBe(5);
    const [pid, zombies] = r.stdout.split('\n');
    expect(Number(pid)).toBeGreaterThan(1);
    expect(zombies).toBe('0');
    expect((await run('--init', 'busybox', 'no-such-program')).code).toBe(127);
    expect((await tsbuild(['run', '-d', '--init', '--name', 'ini', 'busybox', 'sh', '-c', 'trap "exit 7" TERM; while true; do sleep 0.1; done'])).code).toBe(0);
    await new Promise((res) => setTimeout(res, 500));
    expect((await tsbuild(['stop', '-t', '5', 'ini'])).code).toBe(0);
    expect((await tsbuild(['inspect', '--format', '{{.State.ExitCode}}', 'ini'])).stdout.trim()).toBe('7');
    expect((await tsbuild(['rm', 'ini'])).code).toBe(0);
  });
});

it('leaves no container behind', async () => {
  mkdirSync(path.join(root, 'containers'), { recursive: true });
  expect(readdirSync(path.join(root, 'containers'))).toEqual([]);
});
