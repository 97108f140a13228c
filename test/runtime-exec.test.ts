// `exec` (joins a running container's namespaces and cgroup) and `commit`
// (upper dir -> one new layer), through the real CLI.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, TempDirs, tsbuildCli } from './helpers.js';
import { resolveImage } from '../image/images.js';
import type { Store } from '../image/store.js';

const dirs = new TempDirs();
let store: Store;
let tsbuild: ReturnType<typeof tsbuildCli>;

beforeAll(async () => {
  let root: string;
  ({ root, store } = await busyboxStore(dirs, 'exec'));
  tsbuild = tsbuildCli(root);
});
afterAll(async () => {
  await tsbuild(['rm', '-f', 'box']);
  dirs.cleanup();
});

describe('exec', () => {
  beforeAll(async () => {
    const r = await tsbuild(['run', '-d', '--name', 'box', '-e', 'FROM_RUN=1', 'busybox', 'sh', '-c', 'mkdir -p /work; sleep 60']);
    expect(r.code).toBe(0);
  });

  it('runs in the same pid namespace, hostname and cgroup as PID 1', async () => {
    const r = await tsbuild(['exec', 'box', 'sh', '-c', 'ps -o pid= | sort -n | head -1 | tr -d " "; cat /proc/1/cmdline | tr "\\0" " "; echo; hostname; echo $FROM_RUN']);
    expect(r.code).toBe(0);
    const [count, pid1, hostname, env] = r.stdout.split('\n');
    expect(count).toBe('1');
    expect(pid1).toBe('sleep 60 '); // sh exec'd its last command
    expect(hostname).toBe(((await tsbuild(['inspect', '--format', '{{.Config.Hostname}}', 'box'])).stdout.trim()));
    expect(env).toBe('1');
    const pid = JSON.parse((await tsbuild(['inspect', 'box'])).stdout)[0].State.Pid as number;
    const cg = (await tsbuild(['exec', 'box', 'cat', '/proc/self/cgroup'])).stdout;
    // Every hierarchy line the container's PID 1 has, the exec'd process has too.
    expect(cg.split('\n').sort()).toEqual(readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').sort());
  });

  it('-u, -w, -e and -i', async () => {
    expect((await tsbuild(['exec', '-u', '1000:1000', '-w', '/work', '-e', 'X=y', 'box', 'sh', '-c', 'id -u; pwd; echo $X'])).stdout).toBe('1000\n/work\ny\n');
    expect((await tsbuild(['exec', '-i', 'box', 'cat'], { input: 'piped\n' })).stdout).toBe('piped\n');
    expect((await tsbuild(['exec', 'box', 'cat'], { input: 'not attached\n' })).stdout).toBe('');
  });

  it('exit codes: the program own, 127 not found, 126 bad workdir', async () => {
    expect((await tsbuild(['exec', 'box', 'sh', '-c', 'exit 4'])).code).toBe(4);
    const nf = await tsbuild(['exec', 'box', 'no-such-program']);
    expect(nf.code).toBe(127);
    expect(nf.stderr).toMatch(/executable file not found/);
    expect((await tsbuild(['exec', '-w', '/nope', 'box', 'true'])).code).toBe(126);
  });

  it('-d leaves the command running after exec returns', async () => {
    expect((await tsbuild(['exec', '-d', 'box', 'sh', '-c', 'sleep 1; echo done > /bg'])).code).toBe(0);
    let out = '';
    for (let i = 0; i < 50 && out !== 'done\n'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      out = (await tsbuild(['exec', 'box', 'cat', '/bg'])).stdout;
    }
    expect(out).toBe('done\n');
  });

  it('refuses a container that is not running, with exit 1', async () => {
    expect((await tsbuild(['run', '--name', 'stopped', 'busybox', 'true'])).code).toBe(0);
    const r = await tsbuild(['exec', 'stopped', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is not running/);
    expect((await tsbuild(['rm', 'stopped'])).code).toBe(0);
    expect((await tsbuild(['exec', 'nosuch', 'true'])).stderr).toMatch(/No such container: nosuch/);
  });
});

describe('commit', () => {
  it('turns the container changes into one layer; run of the new image shows them; -c and -m apply', async () => {
    expect((await tsbuild(['run', '--name', 'changer', 'busybox', 'sh', '-c', 'echo committed > /hello; rm /bin/ls; mkdir /data'])).code).toBe(0);
    const c = await tsbuild(['commit', '-c', 'CMD ["cat","/hello"]', '-m', 'my message', 'changer', 'committed:v1']);
    expect(c.code).toBe(0);
    expect(c.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await tsbuild(['run', '--rm', 'committed:v1'])).stdout).toBe('committed\n');
    expect((await tsbuild(['run', '--rm', 'committed:v1', 'sh', '-c', 'test -e /bin/ls || echo gone; test -d /data && echo dir'])).stdout).toBe('gone\ndir\n');
    const img = await resolveImage(store, 'committed:v1');
    const base = await resolveImage(store, 'busybox');
    expect(img.config.rootfs.diff_ids.slice(0, -1)).toEqual(base.config.rootfs.diff_ids);
    expect(img.config.rootfs.diff_ids).toHaveLength(base.config.rootfs.diff_ids.length + 1);
    expect(img.config.config?.Cmd).toEqual(['cat', '/hello']);
    expect(img.config.history?.at(-1)?.comment).toBe('my message');
    // The layer is small: the file, a whiteout, a dir; no /etc/hosts or /proc stubs.
    const layer = img.manifest.layers.at(-1)!;
    expect(layer.size).toBeLessThan(400);
    expect((await tsbuild(['rm', 'changer'])).code).toBe(0);
  });
});
