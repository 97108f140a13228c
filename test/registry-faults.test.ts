// Faults between tsbuild and the real registry, injected by a proxy in front
// of it: a connection dropped or stalled mid-blob (resumed with Range), a
// registry that ignores Range, 500 on the first try, 429 with Retry-After,
// a blob whose bytes do not match its digest (rejected, store unchanged),
// and a redirect to another host (no Authorization forwarded).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import http from 'node:http';
import type net from 'node:net';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { TempDirs } from './helpers.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { blobNames, CLI, randomTree, runCli, startFaultProxy, startRegistry, type FaultProxy, type RegistryServer } from './registry-harness.js';
import { Store } from '../image/store.js';
import { resolveImage } from '../image/images.js';
import { pull } from '../registry/pull.js';
import { pushImage } from '../registry/push.js';
import { closeAgents } from '../registry/transport.js';
import { ContentError, RegistryError } from '../registry/errors.js';
import type { ProgressEvent } from '../registry/common.js';

const dirs = new TempDirs();
let reg: RegistryServer;
let proxy: FaultProxy;
let P: string;
let src: string;
let layer: string; // digest of the big image's layer
let bigDigest: string;
const SIZE = 2 * 1024 * 1024;

beforeAll(async () => {
  const work = dirs.make('regfault');
  reg = await startRegistry(path.join(work, 'reg'));
  proxy = await startFaultProxy(reg.port);
  P = proxy.host;
  src = dirs.make('root');
  const tar = path.join(work, 'busybox.tar');
  await makeBusyboxRootfs(tar);
  expect((await runCli(src, ['import', tar, `${P}/small:1`])).code).toBe(0);
  expect((await runCli(src, ['import', randomTree(dirs.make('tree'), SIZE), `${P}/big:1`])).code).toBe(0);
  const store = await Store.open(src);
  for (const n of ['small:1', 'big:1']) await pushImage(store, `${P}/${n}`);
  const big = await resolveImage(store, `${P}/big:1`);
  layer = big.manifest.layers[0]!.digest;
  bigDigest = big.digest;
});

afterAll(async () => {
  await closeAgents();
  await proxy?.stop();
  await reg?.stop();
  dirs.cleanup();
});

beforeEach(() => {
  proxy.rules.length = 0;
});

const fast = { retryBaseMs: 50 };

function snapshot(root: string): { blobs: string[]; index: string; tmp: string[] } {
  let index = '';
  try {
    index = readFileSync(path.join(root, 'index.json'), 'utf8');
  } catch {
    // none yet
  }
  return { blobs: blobNames(root), index, tmp: readdirSync(path.join(root, 'tmp')) };
}

function consistent(root: string): void {
  for (const n of blobNames(root)) expect(createHash('sha256').update(readFileSync(path.join(root, 'blobs', 'sha256', n))).digest('hex')).toBe(n);
}

const blobGets = (d: string, t: number) => proxy.log.filter((e) => e.at >= t && e.method === 'GET' && e.url.endsWith(`/blobs/${d}`));

describe('pull through faults', () => {
  it('resumes a blob with Range after the connection drops mid-body', async () => {
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'drop', afterBytes: 700_000 } });
    const store = await Store.open(dirs.make('root'));
    const events: ProgressEvent[] = [];
    const t = Date.now();
    const res = await pull(store, `${P}/big:1`, { ...fast, onProgress: (e) => events.push(e) });
    expect(res.manifestDigest).toBe(bigDigest);
    const gets = blobGets(layer, t);
    expect(gets).toHaveLength(2);
    expect(gets[0]!.fault).toBe('drop');
    expect(gets[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(gets[1]!.range!)![0])).toBeGreaterThan(0);
    expect(gets[1]!.status).toBe(206);
    expect(events.some((e) => e.type === 'blob' && e.phase === 'retrying')).toBe(true);
    consistent(store.root);
    expect(readdirSync(store.tmpDir)).toEqual([]);
  });

  it('starts the blob over when the registry ignores Range', async () => {
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'drop', afterBytes: 500_000 } });
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'no-range' } });
    const store = await Store.open(dirs.make('root'));
    const t = Date.now();
    await pull(store, `${P}/big:1`, fast);
    const gets = blobGets(layer, t);
    expect(gets.map((g) => g.status)).toEqual([200, 200]);
    consistent(store.root);
  });

  it('times out a stalled download and resumes it', async () => {
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'stall', afterBytes: 300_000 } });
    const store = await Store.open(dirs.make('root'));
    const t = Date.now();
    await pull(store, `${P}/big:1`, { ...fast, bodyTimeoutMs: 1000 });
    const gets = blobGets(layer, t);
    expect(gets).toHaveLength(2);
    expect(gets[1]!.range).toBe('bytes=300000-');
    consistent(store.root);
  });

  it('retries a 500 on the first try (manifest and blob)', async () => {
    proxy.rules.push({ method: 'GET', path: /\/manifests\/1$/, action: { kind: 'status', status: 500 } });
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'status', status: 500 } });
    const dst = dirs.make('root');
    const t = Date.now();
    const r = await runCli(dst, ['pull', `${P}/big:1`]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/HTTP 500; retrying in/);
    const manGets = proxy.log.filter((e) => e.at >= t && e.method === 'GET' && /\/manifests\/1$/.test(e.url));
    expect(manGets.map((e) => e.status)).toEqual([500, 200]);
    expect(blobGets(layer, t).map((e) => e.status)).toEqual([500, 200]);
  });

  it('waits as long as Retry-After says on 429', async () => {
    proxy.rules.push({ method: 'GET', path: /\/manifests\/1$/, action: { kind: 'status', status: 429, headers: { 'retry-after': '2' }, body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }) } });
    const store = await Store.open(dirs.make('root'));
    const t = Date.now();
    await pull(store, `${P}/small:1`, fast);
    const manGets = proxy.log.filter((e) => e.at >= t && e.method === 'GET' && /small\/manifests\/1$/.test(e.url));
    expect(manGets.map((e) => e.status)).toEqual([429, 200]);
    expect(manGets[1]!.at - manGets[0]!.at).toBeGreaterThanOrEqual(1900);
  });

  it('gives up after the retries with the registry\'s message, exit 1', async () => {
    proxy.rules.push({ method: 'GET', path: /\/manifests\/1$/, action: { kind: 'status', status: 503, body: JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'maintenance' }] }) }, times: 100 });
    const store = await Store.open(dirs.make('root'));
    await expect(pull(store, `${P}/small:1`, { ...fast, retries: 2 })).rejects.toThrow(`pull ${P}/small:1: maintenance (UNAVAILABLE)`);
    const e = await pull(store, `${P}/small:1`, { ...fast, retries: 0 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RegistryError);
    expect((e as RegistryError).status).toBe(503);
  });

  it('rejects a blob whose bytes do not match its digest and leaves the store unchanged', async () => {
    const root = dirs.make('root');
    const store = await Store.open(root);
    await pull(store, `${P}/small:1`, fast); // something already in the store
    const before = snapshot(root);
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'corrupt' }, times: 100 });
    const e = await pull(store, `${P}/big:1`, fast).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ContentError);
    expect((e as Error).message).toMatch(new RegExp(`pull ${P}/big:1: blob ${layer} does not match its digest .*nothing was stored`));
    expect(snapshot(root)).toEqual(before);
    // The CLI says the same and exits 1.
    const r = await runCli(root, ['pull', `${P}/big:1`]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/does not match its digest/);
    expect(snapshot(root)).toEqual(before);
  });
});

describe('interrupt', () => {
  it('Ctrl-C during a stalled download exits 130 and leaves no ingest file behind', async () => {
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'stall', afterBytes: 400_000 } });
    const root = dirs.make('root');
    const child = spawn('node', [CLI, '--root', root, 'pull', '--progress=plain', `${P}/big:1`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // Wait until the blob is being downloaded (and stalled), with bytes in tmp/.
    for (let i = 0; i < 200 && !(out.includes('Downloading') && readdirSync(path.join(root, 'tmp')).length > 0); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('Downloading');
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code).toBe(130);
    expect(err.trim()).toBe('Error: interrupted');
    expect(readdirSync(path.join(root, 'tmp'))).toEqual([]);
    expect(blobNames(root)).toEqual([]);
  });
});

describe('push through faults', () => {
  it('restarts an upload that failed with 500, and retries the manifest PUT', async () => {
    expect((await runCli(src, ['tag', `${P}/big:1`, `${P}/fresh/big:1`])).code).toBe(0);
    // Forget where blobs were seen, so the layer is uploaded rather than mounted.
    rmSync(path.join(src, 'registry', 'blob-sources.json'), { force: true });
    proxy.rules.push({ method: 'PUT', path: /\/fresh\/big\/blobs\/uploads\//, action: { kind: 'status', status: 500 } });
    proxy.rules.push({ method: 'PUT', path: /\/fresh\/big\/manifests\/1$/, action: { kind: 'status', status: 502 } });
    const t = Date.now();
    const store = await Store.open(src);
    const res = await pushImage(store, `${P}/fresh/big:1`, undefined, { ...fast });
    expect(res.digest).toBe(bigDigest);
    const log = proxy.log.filter((e) => e.at >= t && e.url.includes('/fresh/big/'));
    const puts = log.filter((e) => e.method === 'PUT' && e.url.includes('/blobs/uploads/'));
    expect(puts.map((p) => p.status)).toEqual([500, 201, 201]); // layer (failed, redone), config
    expect(log.filter((e) => e.method === 'POST').length).toBe(3); // a fresh upload session for the retry
    expect(log.filter((e) => e.method === 'PUT' && e.url.endsWith('/manifests/1')).map((e) => e.status)).toEqual([502, 201]);
  });

  it('retries a 429 with Retry-After on a blob upload', async () => {
    expect((await runCli(src, ['tag', `${P}/small:1`, `${P}/fresh2/small:1`])).code).toBe(0);
    proxy.rules.push({ method: 'POST', path: /\/fresh2\/small\/blobs\/uploads\//, action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } } });
    const t = Date.now();
    const r = await runCli(src, ['push', `${P}/fresh2/small:1`]);
    expect(r.code, r.err).toBe(0);
    const posts = proxy.log.filter((e) => e.at >= t && e.method === 'POST' && e.url.includes('/fresh2/small/'));
    expect(posts[0]!.status).toBe(429);
    expect(posts[1]!.at - posts[0]!.at).toBeGreaterThanOrEqual(900);
  });
});

describe('redirects', () => {
  it('follows a blob redirect to another host without sending it the Authorization header', async () => {
    // A "CDN" on another port that serves blobs by fetching them from the registry.
    const seen: { auth?: string; url: string }[] = [];
    const cdn = http.createServer((req, res) => {
      seen.push({ auth: req.headers.authorization, url: req.url ?? '' });
      http.get({ host: '127.0.0.1', port: reg.port, path: req.url }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
    });
    await new Promise<void>((r) => cdn.listen(0, '127.0.0.1', () => r()));
    const cdnPort = (cdn.address() as net.AddressInfo).port;
    try {
      // The registry asks for Basic auth (injected on the ping), so tsbuild sends credentials to it…
      proxy.rules.push({ method: 'GET', path: /^\/v2\/$/, action: { kind: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="tsbuild-test"' } } });
      // …and redirects the layer download elsewhere.
      proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${layer}$`), action: { kind: 'status', status: 307, headers: { location: `http://127.0.0.1:${cdnPort}/v2/big/blobs/${layer}` } } });
      const t = Date.now();
      const store = await Store.open(dirs.make('root'));
      const res = await pull(store, `${P}/big:1`, { ...fast, credentials: { username: 'u', password: 'p' } });
      expect(res.manifestDigest).toBe(bigDigest);
      expect(seen).toEqual([{ auth: undefined, url: `/v2/big/blobs/${layer}` }]);
      const redirected = proxy.log.filter((e) => e.at >= t && e.fault === 'status' && e.status === 307);
      expect(redirected).toHaveLength(1);
      // The registry itself did get the credentials.
      expect(redirected[0]!.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
      consistent(store.root);
    } finally {
      cdn.closeAllConnections();
      await new Promise<void>((r) => cdn.close(() => r()));
    }
  });
});
