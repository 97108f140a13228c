// `tsbuild build --push` and `--output type=registry|image,push=true` against
// the real registry (Debian's docker-registry): every -t tag is pushed after
// the build and kept in the store; a push without a tag fails before anything
// is built; a push that fails leaves the image (and --iidfile) behind with
// what to do; -q prints only the ID; the registry flags of `tsbuild push`
// (--authfile, --tls-verify, --cert-dir) apply.
import { copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildEnv, leftovers } from './build-helpers.js';
import { freePort, makeCerts, startRegistry, writeHtpasswd, type RegistryServer } from './registry-harness.js';

const env = new BuildEnv();
let reg: RegistryServer;
let R: string; // 127.0.0.1:PORT of the registry

// A RUN step makes a layer of our own on top of busybox's.
const DF = 'FROM busybox\nRUN echo pushed-by-build > /hello\nCMD ["cat", "/hello"]\n';

beforeAll(async () => {
  await env.init('push');
  reg = await startRegistry(path.join(env.dirs.make('push-reg'), 'reg'));
  R = reg.host;
});

afterAll(async () => {
  await reg?.stop();
  env.cleanup();
});

/** The manifest digest the registry serves for repo:tag (HEAD, as a pull would resolve it), or the status. */
async function remoteDigest(host: string, repo: string, tag: string): Promise<string | number> {
  const accept = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers: { accept } });
  return res.status === 200 ? res.headers.get('docker-content-digest')! : res.status;
}

/** `images` of a root as "repo:tag id" lines. */
function images(root = env.root): string {
  return env.cli(['images', '--no-trunc', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}'], { root }).out;
}

function freshRoot(tag: string): string {
  return path.join(env.dirs.make(tag), 'root');
}

describe('build --push', () => {
  it('pushes every -t tag after the build; a pull into a fresh root gives the same image', async () => {
    const dir = env.context({ Dockerfile: DF });
    const iid = path.join(env.dirs.make('iid'), 'id');
    const r = env.cli(['build', '--progress=plain', '--push', '--iidfile', iid, '-t', `${R}/app:1`, '-t', `${R}/app:2`, dir]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('');
    const id = readFileSync(iid, 'utf8');
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    const local = await env.image(`${R}/app:1`);
    expect(local.id).toBe(id);

    // A step per tag: the layer lines `tsbuild push` prints, the digest last, DONE.
    const step1 = new RegExp(`^#(\\d+) pushing ${R}/app:1$`, 'm').exec(r.err);
    const step2 = new RegExp(`^#(\\d+) pushing ${R}/app:2$`, 'm').exec(r.err);
    expect(step1, r.err).not.toBeNull();
    expect(step2, r.err).not.toBeNull();
    const [n1, n2] = [step1![1], step2![1]];
    expect(Number(n2)).toBe(Number(n1) + 1);
    expect(r.err).toMatch(new RegExp(`^#${n1} [\\d.]+ [0-9a-f]{12}: Pushed$`, 'm'));
    expect(r.err).toContain(`#${n1} DONE`);
    // The second tag finds every blob already there.
    expect(r.err).toMatch(new RegExp(`^#${n2} [\\d.]+ [0-9a-f]{12}: Layer already exists$`, 'm'));
    expect(r.err).not.toMatch(new RegExp(`^#${n2} [\\d.]+ [0-9a-f]{12}: Pushed$`, 'm'));
    expect(r.err).toMatch(new RegExp(`^#${n1} [\\d.]+ 1: digest: ${local.digest} size: \\d+$`, 'm'));
    expect(r.err).toMatch(new RegExp(`^#${n2} [\\d.]+ 2: digest: ${local.digest} size: \\d+$`, 'm'));
    expect(r.err).toMatch(new RegExp(`Built ${R}/app:1, ${R}/app:2 sha256:[0-9a-f]{12} in [\\d.]+s: .*; pushed 2 tags, manifest ${local.digest}`));

    // The registry serves the built manifest under both tags.
    expect(await remoteDigest(R, 'app', '1')).toBe(local.digest);
    expect(await remoteDigest(R, 'app', '2')).toBe(local.digest);

    // Pulled into a fresh root: same manifest digest, same image ID, and it runs.
    const root = freshRoot('pulled');
    const pull = env.cli(['pull', `${R}/app:2`], { root });
    expect(pull.code, pull.err).toBe(0);
    expect(pull.out).toContain(`Digest: ${local.digest}`);
    expect(images(root)).toContain(`${R}/app:2 ${id}`);
    const run = env.cli(['run', '--rm', '--network', 'none', `${R}/app:2`], { root });
    expect(run.code, run.err).toBe(0);
    expect(run.out).toBe('pushed-by-build\n');

    // The image stays in the store under both tags; nothing left behind.
    const imgs = images();
    expect(imgs).toContain(`${R}/app:1 ${id}`);
    expect(imgs).toContain(`${R}/app:2 ${id}`);
    expect(leftovers(env.root)).toEqual([]);
  });

  it('--output type=registry and type=image,push=true are --push; type=image alone only stores; type=oci combines', async () => {
    const dir = env.context({ Dockerfile: DF });
    const out = env.dirs.make('out');
    const a = env.cli(['build', '-q', '--output', 'type=registry', '-o', `type=oci,dest=${out}/img.tar`, '-t', `${R}/reg:1`, dir]);
    expect(a.code, a.err).toBe(0);
    const id = a.out.trim();
    const local = await env.image(`${R}/reg:1`);
    expect(local.id).toBe(id);
    expect(await remoteDigest(R, 'reg', '1')).toBe(local.digest);
    expect(statSync(`${out}/img.tar`).size).toBeGreaterThan(1024);
    const load = env.cli(['load', '-i', `${out}/img.tar`], { root: freshRoot('loaded') });
    expect(load.code, load.err).toBe(0);

    const b = env.cli(['build', '-q', '-o', 'type=image,push=true', '-t', `${R}/img:1`, dir]);
    expect(b.code, b.err).toBe(0);
    expect(await remoteDigest(R, 'img', '1')).toBe(local.digest);

    // name= names (and pushes) the image as -t does.
    const c = env.cli(['build', '-q', '-o', `type=registry,name=${R}/named:7`, dir]);
    expect(c.code, c.err).toBe(0);
    expect(await remoteDigest(R, 'named', '7')).toBe(local.digest);
    expect(images()).toContain(`${R}/named:7 ${id}`);

    // type=image without push: the store only (the default).
    const d = env.cli(['build', '-q', '-o', 'type=image', '-t', `${R}/local-only:1`, dir]);
    expect(d.code, d.err).toBe(0);
    expect(images()).toContain(`${R}/local-only:1 ${id}`);
    expect(await remoteDigest(R, 'local-only', '1')).toBe(404);
  });

  it('without a tag: "tag is needed when pushing to registry", exit 1, nothing built', () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN echo never-built > /x\n' });
    const iid = path.join(env.dirs.make('iid'), 'id');
    const before = images();
    for (const args of [['--push'], ['--output', 'type=registry'], ['-o', 'type=image,push=true']]) {
      const r = env.cli(['build', '--progress=plain', '--iidfile', iid, ...args, dir]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err).toMatch(/^Error: tag is needed when pushing to registry: name the image with -t /);
      expect(r.err).not.toMatch(/^#1 /m); // no step ran
      expect(existsSync(iid)).toBe(false);
    }
    expect(images()).toBe(before);
    expect(leftovers(env.root)).toEqual([]);
  });

  it('bad --output image attributes are usage errors (125)', () => {
    const dir = env.context({ Dockerfile: DF });
    const cases: [string, RegExp][] = [
      ['type=registry,dest=x', /--output type=registry: dest= is not supported \(supported: name, push\)/],
      ['type=registry,registry.insecure=true', /registry\.insecure= is not supported: give --insecure-registry HOST/],
      ['type=image,push=maybe', /--output type=image,push=: expected true or false, got "maybe"/],
      ['type=registry,name=UPPER/case', /invalid argument "UPPER\/case" for "--output type=registry,name=" flag/],
      ['type=zip,dest=x', /--output type=zip is not supported: use type=local \(the files\), type=tar \(the files as one tar\), type=oci or type=docker \(an archive\), or type=registry \(push\)/],
      ['type=tar', /--output type=tar needs dest=FILE \(or dest=- for stdout\)/],
    ];
    for (const [o, msg] of cases) {
      const r = env.cli(['build', '-o', o, '-t', `${R}/bad:1`, dir]);
      expect(r.code, o).toBe(125);
      expect(r.err).toMatch(msg);
    }
  });

  it('a registry that is not there: exit 1 naming the reference and what to do; the image and --iidfile stay', async () => {
    const port = await freePort(); // nothing listens there
    const ref = `127.0.0.1:${port}/app:1`;
    const dir = env.context({ Dockerfile: DF });
    const iid = path.join(env.dirs.make('iid'), 'id');
    const r = env.cli(['build', '--progress=plain', '--push', '--iidfile', iid, '-t', ref, dir]);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(new RegExp(`^#\\d+ pushing ${ref}$`, 'm'));
    expect(r.err).toMatch(new RegExp(`^#\\d+ ERROR: .*cannot reach registry 127\\.0\\.0\\.1:${port}`, 'm'));
    expect(r.err).toMatch(new RegExp(`^Error: push ${ref}: .*cannot reach registry 127\\.0\\.0\\.1:${port}.*ECONNREFUSED`, 'm'));
    expect(r.err).toContain(`The image is built and kept in the store as ${ref} (sha256:`);
    expect(r.err).toContain(`Once that is fixed, push it with: tsbuild --root ${env.root} push ${ref}`);
    expect(r.err).not.toContain('Built ');
    const id = readFileSync(iid, 'utf8');
    expect(images()).toContain(`${ref} ${id}`);
    expect(leftovers(env.root)).toEqual([]);
  });

  it('-q prints only the image ID and nothing on stderr', async () => {
    const dir = env.context({ Dockerfile: DF });
    const r = env.cli(['build', '-q', '--push', '-t', `${R}/quiet:1`, dir]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(r.err).toBe('');
    expect(await remoteDigest(R, 'quiet', '1')).toBe((await env.image(`${R}/quiet:1`)).digest);
  });
});

describe('build --push uses the registry options of tsbuild push', () => {
  it('credentials: denied without them (exit 1, login hint, image kept), pushed with --authfile', async () => {
    const d = env.dirs.make('push-auth');
    writeHtpasswd(path.join(d, 'htpasswd'), { ci: 's3cret' });
    const auth = await startRegistry(path.join(d, 'reg'), { htpasswd: path.join(d, 'htpasswd') });
    try {
      const H = auth.host;
      const dir = env.context({ Dockerfile: DF });
      const cfg = env.dirs.make('docker-config'); // no credentials there
      const denied = env.cli(['build', '--progress=plain', '--push', '-t', `${H}/team/app:1`, dir], { env: { DOCKER_CONFIG: cfg } });
      expect(denied.code).toBe(1);
      expect(denied.err).toMatch(new RegExp(`^Error: push ${H}/team/app:1: .*unauthorized.*tsbuild login ${H}`, 'm'));
      expect(images()).toContain(`${H}/team/app:1 `);

      const authfile = path.join(env.dirs.make('authfile'), 'auth.json');
      const login = env.cli(['login', '--authfile', authfile, '-u', 'ci', '--password-stdin', H], { input: 's3cret\n' });
      expect(login.code, login.err).toBe(0);
      const ok = env.cli(['build', '-q', '--push', '--authfile', authfile, '-t', `${H}/team/app:1`, dir], { env: { DOCKER_CONFIG: cfg } });
      expect(ok.code, ok.err).toBe(0);
      const local = await env.image(`${H}/team/app:1`);
      const root = freshRoot('pulled-auth');
      const pull = env.cli(['pull', '--authfile', authfile, `${H}/team/app:1`], { root });
      expect(pull.code, pull.err).toBe(0);
      expect(pull.out).toContain(`Digest: ${local.digest}`);

      // The same options reach the base image pull of a build (FROM in the private registry).
      const child = env.context({ Dockerfile: `FROM ${H}/team/app:1\nRUN echo child > /child\n` });
      const root2 = freshRoot('from-auth');
      const noCreds = env.cli(['build', '-q', '-t', 'child', child], { root: root2, env: { DOCKER_CONFIG: cfg } });
      expect(noCreds.code).toBe(1);
      expect(noCreds.err).toMatch(/unauthorized|authentication required/i);
      const withCreds = env.cli(['build', '-q', '--authfile', authfile, '-t', 'child', child], { root: root2, env: { DOCKER_CONFIG: cfg } });
      expect(withCreds.code, withCreds.err).toBe(0);
    } finally {
      await auth.stop();
    }
  });

  it('TLS: --tls-verify=true needs the CA; --cert-dir supplies it', async () => {
    const d = env.dirs.make('push-tls');
    const c = makeCerts(path.join(d, 'pki'));
    const tls = await startRegistry(path.join(d, 'reg'), { tlsCert: { cert: c.serverCert, key: c.serverKey } });
    try {
      const H = tls.host;
      const dir = env.context({ Dockerfile: DF });
      const empty = env.dirs.make('nocerts');
      const noCa = env.cli(['build', '-q', '--push', '--tls-verify=true', '-t', `${H}/app:1`, dir], { env: { TSBUILD_CERTS_D: empty } });
      expect(noCa.code).toBe(1);
      expect(noCa.err).toMatch(new RegExp(`push ${H}/app:1: .*TLS certificate of ${H} not trusted`));
      const certDir = env.dirs.make('certdir');
      copyFileSync(c.caCert, path.join(certDir, 'ca.crt'));
      const ok = env.cli(['build', '-q', '--push', '--tls-verify=true', '--cert-dir', certDir, '-t', `${H}/app:1`, dir], { env: { TSBUILD_CERTS_D: empty } });
      expect(ok.code, ok.err).toBe(0);
      const pull = env.cli(['pull', '--tls-verify=true', '--cert-dir', certDir, `${H}/app:1`], { root: freshRoot('pulled-tls'), env: { TSBUILD_CERTS_D: empty } });
      expect(pull.code, pull.err).toBe(0);
      expect(pull.out).toContain(`Digest: ${(await env.image(`${H}/app:1`)).digest}`);
    } finally {
      await tls.stop();
    }
  });
});
