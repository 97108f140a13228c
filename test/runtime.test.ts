// Runtime integration tests: real namespaces, overlay and pivot_root, as root.
// The container stages run as compiled JS (Node 20 cannot run .ts), so the
// suite compiles the project first. Most cases go through the real CLI
// process: dist/cli/main.js once it registers `run`, until then a small
// driver that dispatches to cli/run.ts's commands the way main does.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TempDirs } from './helpers.js';
import { Store } from '../image/store.js';
import { importRootfs } from '../image/import.js';
import { resolveImage } from '../image/images.js';
import { ensureSnapshots } from '../image/snapshots.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { commandLine, mergeEnv, processConfig, DEFAULT_PATH } from '../runtime/config.js';
import { runContainer, RunError } from '../runtime/run.js';
import { capMask, effectiveCapNames } from '../runtime/capabilities.js';
import { listContainerIds, procStartTime } from '../runtime/container.js';

const repo = path.resolve(import.meta.dirname, '..');
const dirs = new TempDirs();
let root: string;
let store: Store;
let snapshotDirs: string[];
let cli: string[];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function tsbuild(args: string[], opts: { input?: string } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [...cli, '--root', root, ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: child.exitCode ?? (err as { code?: number } | null)?.code ?? -1, stdout, stderr });
    });
    child.stdin!.end(opts.input ?? '');
  });
}

const run = (...args: string[]) => tsbuild(['run', '--rm', 'busybox', ...args]);

function mountsUnderRoot(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(root));
}

beforeAll(async () => {
  // The stages run as separate Node processes from dist/: test/global-setup.ts builds it once.
  if (!existsSync(path.join(repo, 'dist', 'runtime', 'init.js'))) throw new Error('dist/runtime/init.js missing after tsc');

  root = path.join(dirs.make('runtime'), 'root');
  store = await Store.open(root);
  const tar = path.join(dirs.make('runtime-fixture'), 'busybox.tar');
  await makeBusyboxRootfs(tar);
  const img = await importRootfs(store, tar, { tags: ['busybox:latest'], sourceName: 'test', config: { Cmd: ['sh'] } });
  snapshotDirs = await ensureSnapshots(store, img);

  const mainSrc = readFileSync(path.join(repo, 'cli', 'main.ts'), 'utf8');
  if (mainSrc.includes('runCommands')) {
    cli = [path.join(repo, 'dist', 'cli', 'main.js')];
  } else {
    const driver = path.join(dirs.make('runtime-cli'), 'cli.mjs');
    const dist = (p: string) => JSON.stringify(path.join(repo, 'dist', p));
    writeFileSync(
      driver,
      `import { parseArgs } from ${dist('cli/args.js')};
import { runCommands } from ${dist('cli/run.js')};
import { Store } from ${dist('image/store.js')};
const argv = process.argv.slice(2);
const root = argv[1];
const [name, ...rest] = argv.slice(2);
const cmd = runCommands.find((c) => c.name === name);
const ctx = { root, stdout: process.stdout, stderr: process.stderr, store: () => Store.open(root) };
try {
  process.exitCode = await cmd.run(parseArgs(rest, cmd.flags, { command: name, stopAtPositional: cmd.stopAtPositional }), ctx);
} catch (e) {
  process.stderr.write('Error: ' + e.message + '\\n');
  process.exitCode = e.exitCode ?? 1;
}
`,
    );
    cli = [driver];
  }
});

afterAll(() => {
  dirs.cleanup();
});

describe('run: exit codes', () => {
  it('runs echo and exits 0', async () => {
    const r = await run('echo', 'hi');
    expect(r).toMatchObject({ code: 0, stdout: 'hi\n' });
  });

  it("passes the program's own exit code", async () => {
    expect((await run('sh', '-c', 'exit 3')).code).toBe(3);
  });

  it('gives 127 for a command that is not found, with a message', async () => {
    const r = await run('no-such-command');
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('exec: "no-such-command": executable file not found in $PATH');
    const r2 = await run('/no/such/file');
    expect(r2.code).toBe(127);
  });

  it('gives 126 for a file that is not executable', async () => {
    const r = await run('/etc/passwd');
    expect(r.code).toBe(126);
    expect(r.stderr).toContain('permission denied');
  });

  it('gives 125 when tsbuild itself fails', async () => {
    const r = await tsbuild(['run', '--rm', 'no-such-image']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/Unable to find image 'no-such-image'/);
    expect((await tsbuild(['run', '--rm', '-w', 'relative', 'busybox', 'true'])).code).toBe(125);
  });

  it('gives 128+N when signal N kills PID 1 (SIGKILL from outside: 137), and records it', async () => {
    const child = spawn(process.execPath, [...cli, '--root', root, 'run', '--name', 'sleeper', 'busybox', 'sleep', '30'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    let pid = 0;
    for (let i = 0; i < 200 && !pid; i++) {
      await new Promise((r) => setTimeout(r, 25));
      for (const id of await listContainerIds(root)) {
        try {
          const s = JSON.parse(await fsp.readFile(path.join(root, 'containers', id, 'state.json'), 'utf8'));
          if (s.Running) pid = s.Pid;
        } catch {
          /* not yet */
        }
      }
    }
    expect(pid).toBeGreaterThan(0);
    // The recorded start time identifies this very process.
    const ids = await listContainerIds(root);
    const state = JSON.parse(await fsp.readFile(path.join(root, 'containers', ids[0]!, 'state.json'), 'utf8'));
    expect(state.PidStartTime).toBe(procStartTime(pid));
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toBe('sleep\u000030\u0000');
    process.kill(pid, 'SIGKILL');
    expect(await exited).toBe(137);
    const after = JSON.parse(await fsp.readFile(path.join(root, 'containers', ids[0]!, 'state.json'), 'utf8'));
    expect(after).toMatchObject({ Status: 'exited', Running: false, ExitCode: 137 });
    expect((await tsbuild(['rm', 'sleeper'])).code).toBe(0);
  });

  it('kill -9 $$ from inside does not kill PID 1 (the kernel protects a namespace init; Docker behaves the same)', async () => {
    // sh is PID 1 here: SIGKILL from inside its own pid namespace is dropped.
    expect((await run('sh', '-c', 'kill -9 $$; echo survived')).stdout).toBe('survived\n');
    // A non-init process killed by a signal gives the shell's 128+N.
    expect((await run('sh', '-c', 'sh -c "kill -9 \\$\\$"; exit $?')).code).toBe(137);
  });

  it('forwards SIGTERM sent to `tsbuild run` to the container', async () => {
    const child = spawn(process.execPath, [...cli, '--root', root, 'run', '--rm', 'busybox', 'sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const ready = new Promise<void>((r) =>
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('ready')) r();
      }),
    );
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    await ready;
    child.kill('SIGTERM');
    expect(await exited).toBe(7);
    expect(stdout).toContain('got TERM');
  });
});

describe('run: the container', () => {
  it("makes the user's program PID 1 (not node)", async () => {
    const r = await run('cat', '/proc/1/cmdline');
    expect(r.stdout).toBe('cat\u0000/proc/1/cmdline\u0000');
    const ps = await run('sh', '-c', 'ls /proc | grep -E "^[0-9]+$" | sort -n | head -1');
    expect(ps.stdout.trim()).toBe('1');
  });

  it("has the container's hostname", async () => {
    expect((await tsbuild(['run', '--rm', '--hostname', 'box1', 'busybox', 'sh', '-c', 'hostname; cat /etc/hostname'])).stdout).toBe('box1\nbox1\n');
    const r = await run('hostname');
    expect(r.stdout.trim()).toMatch(/^[0-9a-f]{12}$/);
    expect(r.stdout.trim()).not.toBe(execFileSync('hostname', { encoding: 'utf8' }).trim());
  });

  it('has /dev with the standard nodes, devpts and shm', async () => {
    const r = await run('sh', '-c', 'ls /dev; for d in null zero full random urandom tty; do test -c /dev/$d || echo "not a char dev: $d"; done; head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; readlink /dev/ptmx; grep -E " /dev/(pts|shm) " /proc/mounts');
    for (const n of ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'pts', 'shm', 'ptmx', 'fd', 'stdin', 'stdout', 'stderr']) expect(r.stdout.split('\n')).toContain(n);
    expect(r.stdout).not.toContain('not a char dev');
    expect(r.stdout).toContain('4\nnull-ok\npts/ptmx\n');
    expect(r.stdout).toMatch(/devpts \/dev\/pts devpts .*ptmxmode=666/);
    expect(r.stdout).toMatch(/ \/dev\/shm tmpfs /);
  });

  it('mounts /sys read-only and /proc nosuid,nodev,noexec', async () => {
    const r = await run('sh', '-c', 'touch /sys/x 2>&1; grep -E " /(sys|proc) " /proc/mounts');
    expect(r.stdout).toContain('Read-only file system');
    expect(r.stdout).toMatch(/^sysfs \/sys sysfs ro,/m);
    expect(r.stdout).toMatch(/^proc \/proc proc rw,nosuid,nodev,noexec/m);
  });

  it('only has lo (up) with the default network, and the host interfaces with --network host', async () => {
    const none = await run('cat', '/proc/net/dev');
    const ifaces = (s: string) => s.split('\n').slice(2).filter(Boolean).map((l) => l.split(':')[0]!.trim());
    expect(ifaces(none.stdout)).toEqual(['lo']);
    expect((await run('ping', '-c', '1', '-W', '1', '127.0.0.1')).code).toBe(0);
    const host = await tsbuild(['run', '--rm', '--network', 'host', 'busybox', 'cat', '/proc/net/dev']);
    expect(ifaces(host.stdout).sort()).toEqual(ifaces(readFileSync('/proc/net/dev', 'utf8')).sort());
  });

  it('writes /etc/hosts and /etc/resolv.conf', async () => {
    const r = await run('cat', '/etc/hosts', '/etc/resolv.conf');
    expect(r.stdout).toMatch(/^127\.0\.0\.1\tlocalhost$/m);
  });

  it('applies -e, -w, --entrypoint, --user and the image Env/Cmd rules', async () => {
    const env = await tsbuild(['run', '--rm', '-e', 'FOO=bar', '-e', 'EMPTY=', 'busybox', 'env']);
    const lines = env.stdout.split('\n');
    expect(lines).toContain('FOO=bar');
    expect(lines).toContain('EMPTY=');
    expect(lines).toContain(DEFAULT_PATH);
    expect(lines).toContain('HOME=/root');
    expect(lines.some((l) => /^HOSTNAME=[0-9a-f]{12}$/.test(l))).toBe(true);
    expect((await tsbuild(['run', '--rm', '-w', '/made/here', 'busybox', 'pwd'])).stdout).toBe('/made/here\n');
    expect((await tsbuild(['run', '--rm', '--entrypoint', 'echo', 'busybox', 'a', 'b'])).stdout).toBe('a b\n');
    // --entrypoint without args drops the image's CMD (["sh"]): echo prints an empty line.
    expect((await tsbuild(['run', '--rm', '--entrypoint', 'echo', 'busybox'])).stdout).toBe('\n');
    // The image's CMD is sh, reading stdin (inherited).
    expect((await tsbuild(['run', '--rm', '-i', 'busybox'], { input: 'echo from-stdin\n' })).stdout).toBe('from-stdin\n');
    expect((await tsbuild(['run', '--rm', 'busybox'], { input: 'echo from-stdin\n' })).stdout).toBe(''); // no -i: not attached
    expect((await tsbuild(['run', '--rm', '-u', 'nobody', 'busybox', 'id'])).stdout).toBe('uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n');
    expect((await tsbuild(['run', '--rm', '-u', '1234:5678', 'busybox', 'sh', '-c', 'id -u; id -g'])).stdout).toBe('1234\n5678\n');
  });

  it("gives root Docker's default capabilities; --cap-add/--cap-drop change them; a non-root user gets none", async () => {
    const caps = (out: string, k: string) => new Map([...out.matchAll(/^Cap(\w+):\s+([0-9a-f]+)$/gm)].map((m) => [m[1]!, m[2]!])).get(k);
    const root = await run('sh', '-c', 'grep ^Cap /proc/self/status; hostname x 2>&1; mount -t tmpfs none /tmp 2>&1; echo mount=$?');
    for (const k of ['Prm', 'Eff', 'Bnd']) expect(caps(root.stdout, k)).toBe('00000000a80425fb');
    expect(caps(root.stdout, 'Inh')).toBe('0000000000000000');
    expect(root.stdout).toContain('Operation not permitted');
    expect(root.stdout).not.toContain('mount=0');
    const user = await tsbuild(['run', '--rm', '-u', 'nobody', 'busybox', 'grep', '^Cap', '/proc/self/status']);
    expect(caps(user.stdout, 'Eff')).toBe('0000000000000000');
    expect(caps(user.stdout, 'Bnd')).toBe('00000000a80425fb');
    expect((await tsbuild(['run', '--rm', '--cap-add', 'SYS_ADMIN', 'busybox', 'sh', '-c', 'hostname renamed && hostname'])).stdout).toBe('renamed\n');
    expect((await tsbuild(['run', '--rm', '--cap-drop', 'all', 'busybox', 'chown', '1', '/tmp'])).code).not.toBe(0);
  });

  it('does not let SIGPIPE stay ignored (Node ignores it) in the program', async () => {
    expect((await run('grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status')).stdout).toMatch(/^SigBlk:\s+0+\nSigIgn:\s+0+\n$/);
    const r = await run('sh', '-c', 'yes | head -1');
    expect(r).toMatchObject({ code: 0, stdout: 'y\n', stderr: '' });
  });
});

describe('run: rootfs and cleanup', () => {
  it('keeps writes in the upper dir, never in the snapshots; without --rm the container stays until rm', async () => {
    const r = await tsbuild(['run', '--name', 'writer', 'busybox', 'sh', '-c', 'echo new > /created.txt; echo changed >> /etc/passwd; rm /etc/group; echo 10.0.0.9 db >> /etc/hosts; exit 4']);
    expect(r.code).toBe(4);
    const snap = snapshotDirs[0]!;
    expect(existsSync(path.join(snap, 'created.txt'))).toBe(false);
    expect(readFileSync(path.join(snap, 'etc/passwd'), 'utf8')).not.toContain('changed');
    expect(existsSync(path.join(snap, 'etc/group'))).toBe(true);

    const ids = await listContainerIds(root);
    expect(ids).toHaveLength(1);
    const dir = path.join(root, 'containers', ids[0]!);
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const img = await resolveImage(store, 'busybox');
    expect(config).toMatchObject({ Id: ids[0], Name: 'writer', Image: img.id, Path: 'sh' });
    expect(JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8'))).toMatchObject({ Status: 'exited', ExitCode: 4, Running: false });
    expect(readFileSync(path.join(dir, 'upper', 'created.txt'), 'utf8')).toBe('new\n');
    // A deleted lower file is an overlay whiteout (0:0 char device) in the upper dir.
    expect((await fsp.lstat(path.join(dir, 'upper', 'etc', 'group'))).isCharacterDevice()).toBe(true);
    // /etc/hosts is bind-mounted from the container dir: writes land there, not in the upper dir
    // The image has no /etc/hosts: its empty mount point sits in the init layer, so the upper dir
    // (what `commit` and build steps turn into a layer) holds only the user's changes.
    expect(readFileSync(path.join(dir, 'hosts'), 'utf8')).toContain('10.0.0.9 db');
    expect(existsSync(path.join(dir, 'upper', 'etc', 'hosts'))).toBe(false);
    expect(readFileSync(path.join(dir, 'init', 'etc', 'hosts'), 'utf8')).toBe('');
    expect((await fsp.readdir(path.join(dir, 'upper'))).sort()).toEqual(['created.txt', 'etc']);
    expect(mountsUnderRoot()).toEqual([]);

    expect((await tsbuild(['run', '--name', 'writer', 'busybox', 'true'])).stderr).toContain('is already in use');
    expect((await tsbuild(['rm', 'writer'])).code).toBe(0);
    expect(existsSync(dir)).toBe(false);
  });

  it('leaves no mount and no container dir behind with --rm', async () => {
    expect((await run('sh', '-c', 'echo x > /y; mount | wc -l')).code).toBe(0);
    expect((await run('no-such-command')).code).toBe(127);
    expect(mountsUnderRoot()).toEqual([]);
    expect(await listContainerIds(root)).toEqual([]);
  });

  it('can be called as a library function too', async () => {
    const code = await runContainer(store, { image: 'busybox', args: ['true'], rm: true });
    expect(code).toBe(0);
    await expect(runContainer(store, { image: 'busybox', args: ['nope'], rm: true })).rejects.toBeInstanceOf(RunError);
    expect(await listContainerIds(root)).toEqual([]);
  });
});

describe('process config (Docker rules)', () => {
  it('computes capabilities like --cap-add/--cap-drop', () => {
    expect(capMask(effectiveCapNames())).toBe(0xa80425fbn);
    expect(effectiveCapNames(['net_admin'], ['CAP_CHOWN', 'mknod'])).toContain('CAP_NET_ADMIN');
    expect(effectiveCapNames([], ['CAP_CHOWN'])).not.toContain('CAP_CHOWN');
    expect(effectiveCapNames(['CHOWN'], ['ALL'])).toEqual(['CAP_CHOWN']);
    expect(() => effectiveCapNames(['NOPE'])).toThrow('unknown capability');
  });

  it('combines ENTRYPOINT and CMD', () => {
    expect(commandLine({ Entrypoint: ['ep'], Cmd: ['c1'] }, { args: [] })).toEqual({ entrypoint: ['ep'], cmd: ['c1'] });
    expect(commandLine({ Entrypoint: ['ep'], Cmd: ['c1'] }, { args: ['x'] })).toEqual({ entrypoint: ['ep'], cmd: ['x'] });
    expect(commandLine({ Entrypoint: ['ep'], Cmd: ['c1'] }, { args: [], entrypoint: 'new' })).toEqual({ entrypoint: ['new'], cmd: [] });
    expect(commandLine({ Entrypoint: ['ep'], Cmd: ['c1'] }, { args: ['y'], entrypoint: 'new' })).toEqual({ entrypoint: ['new'], cmd: ['y'] });
    expect(commandLine({ Entrypoint: ['ep'], Cmd: ['c1'] }, { args: [], entrypoint: '' })).toEqual({ entrypoint: [], cmd: [] });
    expect(commandLine({ Cmd: ['/bin/sh', '-c', 'echo hi'] }, { args: [] })).toEqual({ entrypoint: [], cmd: ['/bin/sh', '-c', 'echo hi'] });
    expect(() => processConfig({}, { args: [], env: [], hostname: 'h' })).toThrow('No command specified');
  });

  it('merges Env: image, then -e; PATH defaulted; -e NAME takes the host value', () => {
    expect(mergeEnv(['PATH=/x', 'A=1'], ['A=2', 'B', 'C'], 'h', { B: 'host' })).toEqual(['HOSTNAME=h', 'PATH=/x', 'A=2', 'B=host']);
    expect(mergeEnv([], [], 'h')).toEqual([DEFAULT_PATH, 'HOSTNAME=h']);
  });
});
