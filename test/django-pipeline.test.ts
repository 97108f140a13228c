// Issue 7's pipeline as a test (minutes, not seconds; it runs in CI): the
// Debian base from this machine's mirror (debootstrap, cached under
// /var/cache/tsbuild-fixtures) -> build the Django fixture (its RUN apt-get
// reaches the mirror through the build's bridge network) -> run -> HTTP 200
// from / and /healthz -> manage.py test in the image -> push to a real
// docker-registry -> pull into a fresh root -> run -> HTTP 200 -> a rebuild
// after a one-file change reuses the apt layer -> nothing left behind.
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TempDirs, tsbuildCli } from './helpers.js';
import { freePort, startRegistry, type RegistryServer } from './registry-harness.js';

const repo = path.resolve(import.meta.dirname, '..');
const dirs = new TempDirs();
let root: string;
let root2: string;
let ctx: string;
let ts: ReturnType<typeof tsbuildCli>;
let ts2: ReturnType<typeof tsbuildCli>;
let registry: RegistryServer;
const secret = 'test-secret-key-not-for-production';

async function get(url: string, tries = 1): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
      const body = await r.text();
      if (r.status === 200 || i === tries - 1) return { status: r.status, body };
    } catch (e) {
      last = e;
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  throw last;
}

const veths = () => execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).split('\n').filter((l) => /veth|tsb/.test(l)).length;
let vethsBefore = 0;

beforeAll(async () => {
  vethsBefore = veths();
  const work = dirs.make('django');
  root = path.join(work, 'root');
  root2 = path.join(work, 'root2');
  ts = tsbuildCli(root, { timeoutMs: 900_000 });
  ts2 = tsbuildCli(root2, { timeoutMs: 300_000 });
  ctx = path.join(work, 'ctx');
  cpSync(path.join(repo, 'fixtures', 'django'), ctx, { recursive: true });
  execFileSync(process.execPath, [path.join(repo, 'dist', 'fixtures', 'debian', 'make-base.js'), '--root', root], { stdio: 'inherit', timeout: 900_000 });
  registry = await startRegistry(path.join(work, 'registry'));
}, 1_200_000);

afterAll(async () => {
  await ts(['rm', '-f', 'django-web']);
  await ts2(['rm', '-f', 'django-web2']);
  await registry?.stop();
  dirs.cleanup();
});

describe('the Django pipeline', { timeout: 900_000 }, () => {
  it('builds the fixture with a multi-stage Dockerfile; the image runs as non-root with HEALTHCHECK, EXPOSE and CMD', async () => {
    const b = await ts(['build', '-t', 'django-demo', '--progress', 'plain', ctx]);
    expect(b.code, b.stderr).toBe(0);
    const cfg = JSON.parse((await ts(['inspect', 'django-demo'])).stdout)[0].Config;
    expect(cfg.User).toBe('app');
    expect(Object.keys(cfg.ExposedPorts)).toEqual(['8000/tcp']);
    expect(cfg.Healthcheck.Test[0]).toBe('CMD');
    expect(cfg.Cmd).toEqual(['gunicorn', '--bind', '0.0.0.0:8000', 'mysite.wsgi:application']);
    expect(cfg.Env).toContain('PYTHONDONTWRITEBYTECODE=1');
    expect((await ts(['run', '--rm', 'django-demo', 'id', '-u'])).stdout.trim()).toBe('10001');
  });

  it('manage.py test passes inside the image', async () => {
    const r = await ts(['run', '--rm', '-e', `DJANGO_SECRET_KEY=${secret}`, 'django-demo', 'python3', 'manage.py', 'test']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Ran \d+ tests?[\s\S]*OK/);
  });

  it('runs with -p and answers / and /healthz with 200', async () => {
    const port = await freePort();
    expect((await ts(['run', '-d', '-p', `${port}:8000`, '--name', 'django-web', '-e', `DJANGO_SECRET_KEY=${secret}`, 'django-demo'])).code).toBe(0);
    expect((await get(`http://127.0.0.1:${port}/healthz`, 120)).status).toBe(200);
    const index = await get(`http://127.0.0.1:${port}/`);
    expect(index.status).toBe(200);
    expect(index.body).toMatch(/<html/i);
    expect((await ts(['rm', '-f', 'django-web'])).code).toBe(0);
  });

  it('pushes to a real registry, pulls into a fresh root with the same ID, and the pulled image serves /', async () => {
    const ref = `${registry.host}/django-demo:1`;
    expect((await ts(['tag', 'django-demo', ref])).code).toBe(0);
    const push = await ts(['push', ref]);
    expect(push.code, push.stderr).toBe(0);
    expect(push.stdout).toMatch(/1: digest: sha256:[0-9a-f]{64} size: \d+/);
    const pull = await ts2(['pull', ref]);
    expect(pull.code, pull.stderr).toBe(0);
    expect((await ts2(['images', '-q', '--no-trunc', ref])).stdout).toBe((await ts(['images', '-q', '--no-trunc', 'django-demo'])).stdout);
    const port = await freePort();
    expect((await ts2(['run', '-d', '-p', `${port}:8000`, '--name', 'django-web2', '-e', `DJANGO_SECRET_KEY=${secret}`, ref])).code).toBe(0);
    expect((await get(`http://127.0.0.1:${port}/healthz`, 120)).status).toBe(200);
    expect((await get(`http://127.0.0.1:${port}/`)).status).toBe(200);
    expect((await ts2(['rm', '-f', 'django-web2'])).code).toBe(0);
  });

  it('a change to one Python file rebuilds only the steps after COPY of the source; the apt layer is reused', async () => {
    const views = path.join(ctx, 'notes', 'views.py');
    writeFileSync(views, readFileSync(views, 'utf8') + '\n# changed by the pipeline test\n');
    const b = await ts(['build', '-t', 'django-demo:2', '--progress', 'plain', ctx]);
    expect(b.code, b.stderr).toBe(0);
    const out = b.stdout + b.stderr;
    const step = (re: RegExp) => out.split('\n').filter((l) => re.test(l));
    // BuildKit's plain format: "#N [stage k/n] INSTRUCTION" then "#N CACHED" for a hit.
    const cachedIds = new Set(step(/^#\d+ CACHED/).map((l) => l.split(' ')[0]));
    const idOf = (re: RegExp) => step(re).map((l) => l.split(' ')[0])[0];
    const apt = idOf(/^#\d+ \[.*\] RUN apt-get update/);
    const copySrc = idOf(/^#\d+ \[.*\] COPY \. \./);
    const collect = idOf(/^#\d+ \[.*\] RUN .*collectstatic/);
    expect(apt && cachedIds.has(apt)).toBe(true);
    expect(copySrc && !cachedIds.has(copySrc)).toBe(true);
    expect(collect && !cachedIds.has(collect)).toBe(true);
    const a = JSON.parse((await ts(['inspect', 'django-demo'])).stdout)[0].RootFS.Layers as string[];
    const c = JSON.parse((await ts(['inspect', 'django-demo:2'])).stdout)[0].RootFS.Layers as string[];
    expect(c.slice(0, 2)).toEqual(a.slice(0, 2)); // base + apt layer reused
    expect(c).not.toEqual(a);
  });

  it('leaves nothing behind: no containers, no veths', async () => {
    expect((await ts(['ps', '-a', '-q'])).stdout).toBe('');
    expect((await ts2(['ps', '-a', '-q'])).stdout).toBe('');
    expect(veths()).toBe(vethsBefore);
    expect(readdirSync(path.join(root, 'containers'))).toEqual([]);
  });
});
