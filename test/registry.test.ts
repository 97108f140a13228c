// push / pull / copy against the real registry (Debian's docker-registry,
// anonymous access), observed through a logging proxy in front of it, and
// interop with skopeo in both directions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { TempDirs } from './helpers.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { blobNames, randomTree, runCli, startFaultProxy, startRegistry, type FaultProxy, type RegistryServer } from './registry-harness.js';

const dirs = new TempDirs();
let reg: RegistryServer;
let reg2: RegistryServer;
let proxy: FaultProxy;
let P: string; // proxy host: the registry as tsbuild sees it
let work: string;
let src: string; // store root holding the images to push
let imageId: string;
let rootfsTar: string;

beforeAll(async () => {
  work = dirs.make('registry');
  reg = await startRegistry(path.join(work, 'reg'));
  reg2 = await startRegistry(path.join(work, 'reg2'));
  proxy = await startFaultProxy(reg.port);
  P = proxy.host;
  rootfsTar = path.join(work, 'busybox.tar');
  await makeBusyboxRootfs(rootfsTar);
  src = dirs.make('root');
  const imp = await runCli(src, ['import', '-c', 'CMD ["sh"]', rootfsTar, `${P}/app:1`], { env: { SOURCE_DATE_EPOCH: '1704067200' } });
  expect(imp.code, imp.err).toBe(0);
  imageId = imp.out.trim();
});

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  await reg2?.stop();
  dirs.cleanup();
});

function inspect(root: string, name: string): { Id: string; RepoDigests?: string[]; RootFS: { Layers: string[] } } {
  const r = execFileSync('node', [path.resolve('dist/cli/main.js'), '--root', root, 'inspect', name], { encoding: 'utf8' });
  return JSON.parse(r)[0];
}

function digestOf(root: string, name: string): string {
  const r = execFileSync('node', [path.resolve('dist/cli/main.js'), '--root', root, 'images', '--digests', '--format', '{{.Repository}}:{{.Tag}} {{.Digest}}'], { encoding: 'utf8' });
  const line = r.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`${name} not in images:\n${r}`);
  return line.split(' ')[1]!;
}

/** Every blob in a store hashes to its name. */
function storeConsistent(root: string): void {
  for (const n of blobNames(root)) {
    expect(createHash('sha256').update(readFileSync(path.join(root, 'blobs', 'sha256', n))).digest('hex')).toBe(n);
  }
}

const since = (t: number) => proxy.log.filter((e) => e.at >= t);
const uploads = (entries: typeof proxy.log) => entries.filter((e) => /\/blobs\/uploads\//.test(e.url) && (e.method === 'PUT' || e.method === 'PATCH' || (e.method === 'POST' && !e.url.includes('mount='))));

describe('push and pull', () => {
  let manifestDigest: string;

  it('pushes with Docker-style output and pulls into a fresh root with identical digests', async () => {
    const push = await runCli(src, ['push', `${P}/app:1`]);
    expect(push.code, push.err).toBe(0);
    const lines = push.out.trim().split('\n');
    expect(lines[0]).toBe(`The push refers to repository [${P}/app]`);
    expect(push.out).toMatch(/^[0-9a-f]{12}: Pushed$/m);
    const last = lines.at(-1)!;
    const m = /^1: digest: (sha256:[0-9a-f]{64}) size: (\d+)$/.exec(last);
    expect(m, last).not.toBeNull();
    manifestDigest = m![1]!;
    expect(digestOf(src, `${P}/app:1`)).toBe(manifestDigest);

    const dst = dirs.make('root');
    const pull = await runCli(dst, ['pull', `${P}/app:1`]);
    expect(pull.code, pull.err).toBe(0);
    expect(pull.out).toContain(`Digest: ${manifestDigest}`);
    expect(pull.out).toContain(`Status: Downloaded newer image for ${P}/app:1`);
    expect(pull.out.trim().split('\n').at(-1)).toBe(`${P}/app:1`);
    expect(pull.out).toMatch(/^[0-9a-f]{12}: Pull complete$/m);
    expect(digestOf(dst, `${P}/app:1`)).toBe(manifestDigest);
    expect(inspect(dst, `${P}/app:1`).Id).toBe(imageId);
    expect(inspect(dst, `${P}/app:1`).RootFS.Layers).toEqual(inspect(src, `${P}/app:1`).RootFS.Layers);
    // The same blobs, byte for byte, and nothing left in tmp/.
    expect(blobNames(dst)).toEqual(blobNames(src));
    storeConsistent(dst);
    expect(readdirSync(path.join(dst, 'tmp'))).toEqual([]);

    // Pulling again fetches no blob and says so.
    const t = Date.now();
    const again = await runCli(dst, ['pull', `${P}/app:1`]);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toContain(`Status: Image is up to date for ${P}/app:1`);
    expect(again.out).toMatch(/: Already exists$/m);
    expect(since(t).filter((e) => e.method === 'GET' && /\/blobs\/sha256:/.test(e.url) && e.url.includes(imageId.slice(7)) === false)).toEqual([]);
  });

  it('a second push uploads nothing: every blob answers HEAD 200', async () => {
    const t = Date.now();
    const push = await runCli(src, ['push', `${P}/app:1`]);
    expect(push.code, push.err).toBe(0);
    expect(push.out).toMatch(/^[0-9a-f]{12}: Layer already exists$/m);
    const log = since(t);
    expect(uploads(log)).toEqual([]);
    expect(log.filter((e) => e.method === 'HEAD' && e.status === 200).length).toBe(2); // layer + config
    expect(log.filter((e) => e.method === 'PUT' && /\/manifests\/1$/.test(e.url))).toHaveLength(1);
  });

  it('a push to a second repository mounts the blobs instead of uploading them', async () => {
    const tag = await runCli(src, ['tag', `${P}/app:1`, `${P}/team/other:2`]);
    expect(tag.code).toBe(0);
    const t = Date.now();
    const push = await runCli(src, ['push', `${P}/team/other:2`]);
    expect(push.code, push.err).toBe(0);
    expect(push.out).toMatch(/^[0-9a-f]{12}: Mounted from app$/m);
    const log = since(t);
    const mounts = log.filter((e) => e.method === 'POST' && e.url.includes('mount=') && e.url.includes('from=app'));
    expect(mounts.length).toBe(2);
    expect(mounts.every((e) => e.status === 201)).toBe(true);
    expect(uploads(log)).toEqual([]);
    expect(push.out).toContain(`2: digest: ${manifestDigest} size:`);
    // The record of where blobs live names both repositories now.
    const sources = JSON.parse(readFileSync(path.join(src, 'registry', 'blob-sources.json'), 'utf8')) as { blobs: Record<string, string[]> };
    expect(Object.values(sources.blobs)[0]).toEqual(expect.arrayContaining([`${P}/app`, `${P}/team/other`]));
  });

  it('pulls by digest (no tag recorded) and refuses a digest the content does not have', async () => {
    const dst = dirs.make('root');
    const ok = await runCli(dst, ['pull', `${P}/app@${manifestDigest}`]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toContain(`Digest: ${manifestDigest}`);
    expect(inspect(dst, imageId).Id).toBe(imageId);
    const wrong = `sha256:${'0'.repeat(64)}`;
    const bad = await runCli(dst, ['pull', `${P}/app@${wrong}`]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^Error: pull .*app@sha256:0{64}: manifest unknown/m);
  });

  it('pull of a missing tag or unreachable registry exits 1 with one clear line', async () => {
    const dst = dirs.make('root');
    const missing = await runCli(dst, ['pull', `${P}/app:nope`]);
    expect(missing.code).toBe(1);
    expect(missing.err.trim()).toBe(`Error: pull ${P}/app:nope: manifest unknown (MANIFEST_UNKNOWN)`);
    const norepo = await runCli(dst, ['pull', `${P}/nothing/here:1`]);
    expect(norepo.code).toBe(1);
    expect(norepo.err).toMatch(/(name|manifest) unknown/);
    const dead = await runCli(dst, ['pull', '127.0.0.1:1/app:1']);
    expect(dead.code).toBe(1);
    expect(dead.err).toMatch(/cannot reach registry 127\.0\.0\.1:1: .*ECONNREFUSED/);
    expect(blobNames(dst)).toEqual([]);
  });

  it('pull -a fetches every tag of the repository', async () => {
    expect((await runCli(src, ['tag', `${P}/app:1`, `${P}/app:second`])).code).toBe(0);
    expect((await runCli(src, ['push', '-q', `${P}/app:second`])).out.trim()).toBe(`${P}/app:second`);
    const dst = dirs.make('root');
    const all = await runCli(dst, ['pull', '-a', `${P}/app`]);
    expect(all.code, all.err).toBe(0);
    expect(all.out).toContain('Pulling 2 tags of');
    const tags = execFileSync('node', [path.resolve('dist/cli/main.js'), '--root', dst, 'images', '--format', '{{.Tag}}'], { encoding: 'utf8' }).trim().split('\n').sort();
    expect(tags).toEqual(['1', 'second']);
    const withTag = await runCli(dst, ['pull', '-a', `${P}/app:1`]);
    expect(withTag.code).toBe(125);
  });

  it('push -a pushes every local tag of the repository', async () => {
    for (const t of ['a', 'b']) expect((await runCli(src, ['tag', `${P}/app:1`, `${P}/alltags:${t}`])).code).toBe(0);
    const r = await runCli(src, ['push', '-a', `${P}/alltags`]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^a: digest: sha256:[0-9a-f]{64} size: \d+$/m);
    expect(r.out).toMatch(/^b: digest: sha256:[0-9a-f]{64} size: \d+$/m);
    for (const t of ['a', 'b']) expect((await fetch(`http://${reg.host}/v2/alltags/manifests/${t}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).status).toBe(200);
    expect((await runCli(src, ['push', '-a', `${P}/alltags:a`])).code).toBe(125);
    const none = await runCli(src, ['push', '-a', `${P}/nothing`]);
    expect(none.code).toBe(1);
    expect(none.err).toContain(`An image does not exist locally with the repository: ${P}/nothing`);
  });

  it('uploads a large blob in PATCH chunks with Content-Range and pulls it back intact', async () => {
    const tree = randomTree(dirs.make('tree'), 3 * 1024 * 1024 + 123);
    const imp = await runCli(src, ['import', tree, `${P}/big:1`]);
    expect(imp.code, imp.err).toBe(0);
    const t = Date.now();
    const push = await runCli(src, ['push', '--chunk-size', '1MiB', `${P}/big:1`]);
    expect(push.code, push.err).toBe(0);
    const patches = since(t).filter((e) => e.method === 'PATCH');
    expect(patches.length).toBe(4);
    expect(patches.map((p) => p.contentRange)).toEqual(['0-1048575', '1048576-2097151', '2097152-3145727', expect.stringMatching(/^3145728-\d+$/)]);
    expect(patches.every((p) => p.status === 202)).toBe(true);
    const dst = dirs.make('root');
    const pull = await runCli(dst, ['pull', `${P}/big:1`]);
    expect(pull.code, pull.err).toBe(0);
    expect(digestOf(dst, `${P}/big:1`)).toBe(digestOf(src, `${P}/big:1`));
    storeConsistent(dst);
  });

  it('shows bars with bytes and rate with --progress=tty, and nothing but the reference with -q', async () => {
    const dst = dirs.make('root');
    const tty = await runCli(dst, ['pull', '--progress=tty', `${P}/big:1`]);
    expect(tty.code, tty.err).toBe(0);
    expect(tty.out).toContain('\x1b[2K');
    expect(tty.out).toMatch(/Downloading \[[=> ]{50}\] +[\d.]+[kM]?B\/3\.\d+MB/);
    expect(tty.out).toMatch(/Pull complete/);
    const q = await runCli(dirs.make('root'), ['pull', '-q', `${P}/big:1`]);
    expect(q.code).toBe(0);
    expect(q.out).toBe(`${P}/big:1\n`);
  });
});

describe('multi-platform index', () => {
  it('picks the platform from an index (--platform) and names the available ones when none matches', async () => {
    const dst0 = dirs.make('root');
    expect((await runCli(dst0, ['pull', `${P}/app:1`])).code).toBe(0);
    const man = readFileSync(path.join(dst0, 'blobs', 'sha256', digestOf(dst0, `${P}/app:1`).slice(7)));
    const md = `sha256:${createHash('sha256').update(man).digest('hex')}`;
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: md, size: man.length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: md, size: man.length, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    });
    const put = await fetch(`http://${reg.host}/v2/app/manifests/multi`, { method: 'PUT', headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' }, body: index });
    expect(put.status).toBe(201);
    const indexDigest = `sha256:${createHash('sha256').update(index).digest('hex')}`;

    const dst = dirs.make('root');
    const arm = await runCli(dst, ['pull', '--platform', 'linux/arm64', `${P}/app:multi`]);
    expect(arm.code, arm.err).toBe(0);
    expect(arm.out).toContain(`Digest: ${indexDigest}`);
    expect(digestOf(dst, `${P}/app:multi`)).toBe(md);

    const none = await runCli(dst, ['pull', '--platform', 'linux/s390x', `${P}/app:multi`]);
    expect(none.code).toBe(1);
    expect(none.err).toContain('no matching manifest for linux/s390x in the manifest list entries (available: linux/arm64/v8, linux/amd64)');

    // copy keeps the index byte for byte (same digest) and copies what it references.
    const cp = await runCli(undefined, ['copy', `${P}/app:multi`, `${reg2.host}/copied/multi:x`]);
    expect(cp.code, cp.err).toBe(0);
    expect(cp.out).toContain(`${reg2.host}/copied/multi:x: digest: ${indexDigest}`);
    const head = await fetch(`http://${reg2.host}/v2/copied/multi/manifests/x`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    expect(head.headers.get('docker-content-digest')).toBe(indexDigest);
  });
});

describe('copy', () => {
  it('copies between registries (streamed) and within one registry (mounted), keeping the digest', async () => {
    const manifestDigest = digestOf(src, `${P}/app:1`);
    const across = await runCli(undefined, ['copy', `${P}/app:1`, `${reg2.host}/mirror/app:1`]);
    expect(across.code, across.err).toBe(0);
    expect(across.out).toMatch(/^[0-9a-f]{12}: Pushed$/m);
    expect(across.out.trim().split('\n').at(-1)).toBe(`${reg2.host}/mirror/app:1: digest: ${manifestDigest} size: ${readFileSync(path.join(src, 'blobs', 'sha256', manifestDigest.slice(7))).length}`);
    const dst = dirs.make('root');
    expect((await runCli(dst, ['pull', `${reg2.host}/mirror/app:1`])).code).toBe(0);
    expect(digestOf(dst, `${reg2.host}/mirror/app:1`)).toBe(manifestDigest);

    const t = Date.now();
    const within = await runCli(undefined, ['copy', `${P}/app:1`, `${P}/copies/app:c`]);
    expect(within.code, within.err).toBe(0);
    expect(within.out).toMatch(/^[0-9a-f]{12}: Mounted from app$/m);
    expect(uploads(since(t))).toEqual([]);
  });
});

describe('interop with skopeo', () => {
  it('tsbuild push -> skopeo inspect and skopeo copy to an OCI dir give the same digest', async () => {
    const manifestDigest = digestOf(src, `${P}/app:1`);
    const insp = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/app:1`], { encoding: 'utf8' })) as { Digest: string; Layers: string[] };
    expect(insp.Digest).toBe(manifestDigest);
    const out = path.join(dirs.make('oci'), 'layout');
    execFileSync('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/app:1`, `oci:${out}:v1`], { stdio: 'pipe' });
    const index = JSON.parse(readFileSync(path.join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    expect(index.manifests[0]!.digest).toBe(manifestDigest);
  });

  it('skopeo copy of a tsbuild-saved oci-archive (as OCI and as Docker v2s2) -> tsbuild pull is intact', async () => {
    const archive = path.join(dirs.make('arch'), 'app.tar');
    const save = await runCli(src, ['save', '--format', 'oci-archive', '-o', archive, `${P}/app:1`]);
    expect(save.code, save.err).toBe(0);
    execFileSync('skopeo', ['copy', '--dest-tls-verify=false', `oci-archive:${archive}`, `docker://${reg.host}/fromskopeo:oci`], { stdio: 'pipe' });
    execFileSync('skopeo', ['copy', '--dest-tls-verify=false', '--format', 'v2s2', `oci-archive:${archive}`, `docker://${reg.host}/fromskopeo:v2s2`], { stdio: 'pipe' });
    const dst = dirs.make('root');
    for (const tag of ['oci', 'v2s2']) {
      const skopeoDigest = (JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/fromskopeo:${tag}`], { encoding: 'utf8' })) as { Digest: string }).Digest;
      const pull = await runCli(dst, ['pull', `${P}/fromskopeo:${tag}`]);
      expect(pull.code, pull.err).toBe(0);
      expect(pull.out).toContain(`Digest: ${skopeoDigest}`);
      const i = inspect(dst, `${P}/fromskopeo:${tag}`);
      expect(i.Id).toBe(imageId);
    }
    // The Docker-typed manifest is stored as it came and pushes back with the same digest.
    const mt = JSON.parse(readFileSync(path.join(dst, 'index.json'), 'utf8')) as { images: Record<string, { mediaType: string }> };
    expect(Object.values(mt.images).map((r) => r.mediaType).sort()).toEqual(['application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.manifest.v1+json']);
    expect((await runCli(dst, ['tag', `${P}/fromskopeo:v2s2`, `${reg2.host}/back:v2s2`])).code).toBe(0);
    const back = await runCli(dst, ['push', `${reg2.host}/back:v2s2`]);
    expect(back.code, back.err).toBe(0);
    const skopeoV2 = (JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/fromskopeo:v2s2`], { encoding: 'utf8' })) as { Digest: string }).Digest;
    expect(back.out).toContain(`v2s2: digest: ${skopeoV2} `);
    storeConsistent(dst);
  });
});
