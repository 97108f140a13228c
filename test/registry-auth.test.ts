// Authentication and TLS against the real registry: htpasswd (Basic), the
// token protocol (Bearer, with a test token service signing JWTs), credential
// helpers, and TLS with a self-signed CA (certs.d and --cert-dir).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { TempDirs } from './helpers.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { makeCerts, runCli, startRegistry, startTokenServer, writeHtpasswd, type RegistryServer, type TokenServer } from './registry-harness.js';

const dirs = new TempDirs();
let work: string;
let rootfsTar: string;

beforeAll(async () => {
  work = dirs.make('regauth');
  rootfsTar = path.join(work, 'busybox.tar');
  await makeBusyboxRootfs(rootfsTar);
});
afterAll(() => dirs.cleanup());

/** A store with the busybox image tagged `name`. */
async function storeWith(name: string): Promise<string> {
  const root = dirs.make('root');
  const r = await runCli(root, ['import', rootfsTar, name], { env: { SOURCE_DATE_EPOCH: '1704067200' } });
  expect(r.code, r.err).toBe(0);
  return root;
}

describe('htpasswd (Basic auth)', () => {
  let reg: RegistryServer;
  let H: string;
  let cfgDir: string;
  const env = () => ({ DOCKER_CONFIG: cfgDir });
  beforeAll(async () => {
    const d = dirs.make('basic');
    writeHtpasswd(path.join(d, 'htpasswd'), { alice: 'wonderland', bob: 'builder' });
    reg = await startRegistry(path.join(d, 'reg'), { htpasswd: path.join(d, 'htpasswd') });
    H = reg.host;
    cfgDir = path.join(d, 'docker-config');
  });
  afterAll(async () => reg?.stop());

  it('refuses anonymous access with a hint to log in', async () => {
    const root = await storeWith(`${H}/app:1`);
    const r = await runCli(root, ['push', `${H}/app:1`], { env: env() });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^Error: push 127\.0\.0\.1:\d+\/app:1: .*authentication required.*run 'tsbuild login 127\.0\.0\.1:\d+' first$/m);
  });

  it('login with a wrong password fails clearly (exit 1) and writes nothing', async () => {
    const r = await runCli(undefined, ['login', '-u', 'alice', '--password-stdin', H], { env: env(), input: 'wrong\n' });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^Error: login 127\.0\.0\.1:\d+: .*\(credentials of alice were not accepted\)$/m);
    expect(existsSync(path.join(cfgDir, 'config.json'))).toBe(false);
  });

  it('login writes config.json (mode 0600), then push and pull work; logout removes the entry', async () => {
    const r = await runCli(undefined, ['login', '-u', 'alice', '--password-stdin', H], { env: env(), input: 'wonderland\n' });
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim()).toBe('Login Succeeded');
    const file = path.join(cfgDir, 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as { auths: Record<string, { auth: string }> };
    expect(Buffer.from(cfg.auths[H]!.auth, 'base64').toString()).toBe('alice:wonderland');

    const root = await storeWith(`${H}/app:1`);
    const push = await runCli(root, ['push', `${H}/app:1`], { env: env() });
    expect(push.code, push.err).toBe(0);
    const digest = /digest: (sha256:\w+)/.exec(push.out)![1];
    const dst = dirs.make('root');
    const pull = await runCli(dst, ['pull', `${H}/app:1`], { env: env() });
    expect(pull.code, pull.err).toBe(0);
    expect(pull.out).toContain(`Digest: ${digest}`);

    const out = await runCli(undefined, ['logout', H], { env: env() });
    expect(out.out.trim()).toBe(`Removing login credentials for ${H}`);
    const after = JSON.parse(readFileSync(file, 'utf8')) as { auths: Record<string, unknown> };
    expect(after.auths[H]).toBeUndefined();
    const denied = await runCli(dirs.make('root'), ['pull', `${H}/app:1`], { env: env() });
    expect(denied.code).toBe(1);
    const again = await runCli(undefined, ['logout', H], { env: env() });
    expect(again.out).toContain(`Not logged in to ${H}`);
  });

  it('--authfile points at another credentials file; -p warns', async () => {
    const authfile = path.join(dirs.make('authfile'), 'auth.json');
    const r = await runCli(undefined, ['login', '--authfile', authfile, '-u', 'bob', '-p', 'builder', H], { env: env() });
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('WARNING! Using --password via the CLI is insecure');
    const root = await storeWith(`${H}/bob/app:1`);
    expect((await runCli(root, ['push', `${H}/bob/app:1`], { env: env() })).code).toBe(1);
    const ok = await runCli(root, ['push', '--authfile', authfile, `${H}/bob/app:1`], { env: env() });
    expect(ok.code, ok.err).toBe(0);
  });

  it('takes credentials from a docker-credential-* helper (credsStore) for login and pull', async () => {
    const d = dirs.make('helper');
    const store = path.join(d, 'secrets.json');
    const helper = path.join(d, 'docker-credential-tsbtest');
    // A minimal credential helper speaking Docker's protocol, keeping one JSON file.
    writeFileSync(
      helper,
      `#!/bin/sh
set -e
STORE='${store}'
case "$1" in
  store) cat > "$STORE" ;;
  get) read server || true; if [ -f "$STORE" ]; then cat "$STORE"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) rm -f "$STORE" ;;
esac
`,
    );
    chmodSync(helper, 0o755);
    const cfg = path.join(d, 'cfg');
    mkdirSync(cfg);
    writeFileSync(path.join(cfg, 'config.json'), JSON.stringify({ credsStore: 'tsbtest' }));
    const henv = { DOCKER_CONFIG: cfg, PATH: `${d}:${process.env.PATH}` };
    const login = await runCli(undefined, ['login', '-u', 'alice', '--password-stdin', H], { env: henv, input: 'wonderland' });
    expect(login.code, login.err).toBe(0);
    expect(login.err).not.toContain('unencrypted');
    expect(JSON.parse(readFileSync(store, 'utf8'))).toEqual({ ServerURL: H, Username: 'alice', Secret: 'wonderland' });
    // config.json keeps no password.
    expect(readFileSync(path.join(cfg, 'config.json'), 'utf8')).not.toContain('auth"');
    const pull = await runCli(dirs.make('root'), ['pull', `${H}/app:1`], { env: henv });
    expect(pull.code, pull.err).toBe(0);
    const logout = await runCli(undefined, ['logout', H], { env: henv });
    expect(logout.out.trim()).toBe(`Removing login credentials for ${H}`);
    expect(existsSync(store)).toBe(false);
  });
});

describe('token auth (Bearer)', () => {
  let reg: RegistryServer;
  let tokens: TokenServer;
  let H: string;
  let cfgDir: string;
  const env = () => ({ DOCKER_CONFIG: cfgDir });
  beforeAll(async () => {
    const d = dirs.make('token');
    tokens = await startTokenServer(path.join(d, 'keys'), { carol: 'c4r0l' }, { anonymousPull: true });
    reg = await startRegistry(path.join(d, 'reg'), { token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, rootcertbundle: tokens.rootcertbundle } });
    H = reg.host;
    cfgDir = path.join(d, 'docker-config');
  });
  afterAll(async () => {
    await reg?.stop();
    await tokens?.stop();
  });

  it('wrong password: clear error from the token service, exit 1', async () => {
    const r = await runCli(undefined, ['login', '-u', 'carol', '--password-stdin', H], { env: env(), input: 'nope' });
    expect(r.code).toBe(1);
    expect(r.err.trim()).toMatch(/^Error: login 127\.0\.0\.1:\d+: unauthorized: incorrect username or password for carol@127\.0\.0\.1:\d+ \(token service: invalid username or password \(UNAUTHORIZED\)\)$/);
  });

  it('anonymous push is refused by the registry after an anonymous (pull-only) token', async () => {
    const root = await storeWith(`${H}/app:1`);
    const r = await runCli(root, ['push', `${H}/app:1`], { env: env() });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/authentication required|denied/);
    expect(r.err).toContain(`tsbuild login ${H}`);
  });

  it('login, push (one token per scope set, reused), mount across repositories, anonymous pull', async () => {
    const login = await runCli(undefined, ['login', '-u', 'carol', '--password-stdin', H], { env: env(), input: 'c4r0l' });
    expect(login.code, login.err).toBe(0);
    const root = await storeWith(`${H}/app:1`);
    const n0 = tokens.requests.length;
    const push = await runCli(root, ['push', `${H}/app:1`], { env: env() });
    expect(push.code, push.err).toBe(0);
    const reqs = tokens.requests.slice(n0);
    expect(reqs.every((q) => q.user === 'carol' && q.status === 200)).toBe(true);
    expect(reqs.map((q) => q.scopes)).toEqual([['repository:app:pull,push']]);
    const digest = /digest: (sha256:\w+)/.exec(push.out)![1];

    expect((await runCli(root, ['tag', `${H}/app:1`, `${H}/other:1`])).code).toBe(0);
    const n1 = tokens.requests.length;
    const mount = await runCli(root, ['push', `${H}/other:1`], { env: env() });
    expect(mount.code, mount.err).toBe(0);
    expect(mount.out).toMatch(/Mounted from app/);
    expect(tokens.requests.slice(n1).map((q) => [...q.scopes].sort())).toContainEqual(['repository:app:pull', 'repository:other:pull,push']);

    const dst = dirs.make('root');
    const pull = await runCli(dst, ['pull', `${H}/other:1`], { env: { DOCKER_CONFIG: dirs.make('empty-config') } });
    expect(pull.code, pull.err).toBe(0);
    expect(pull.out).toContain(`Digest: ${digest}`);
    expect(tokens.requests.at(-1)).toMatchObject({ user: undefined, scopes: ['repository:other:pull'], status: 200 });
  });
});

describe('TLS with a self-signed CA', () => {
  let reg: RegistryServer;
  let H: string;
  let certsD: string;
  let caCert: string;
  beforeAll(async () => {
    const d = dirs.make('tls');
    const c = makeCerts(path.join(d, 'pki'));
    caCert = c.caCert;
    reg = await startRegistry(path.join(d, 'reg'), { tlsCert: { cert: c.serverCert, key: c.serverKey } });
    H = reg.host;
    certsD = path.join(d, 'certs.d');
    mkdirSync(path.join(certsD, H), { recursive: true });
    copyFileSync(c.caCert, path.join(certsD, H, 'ca.crt'));
  });
  afterAll(async () => reg?.stop());

  it('verifies the server with the CA from certs.d/HOST/ca.crt (TSBUILD_CERTS_D), push and pull', async () => {
    const root = await storeWith(`${H}/app:1`);
    const push = await runCli(root, ['push', '--tls-verify=true', `${H}/app:1`], { env: { TSBUILD_CERTS_D: certsD } });
    expect(push.code, push.err).toBe(0);
    const pull = await runCli(dirs.make('root'), ['pull', '--tls-verify=true', `${H}/app:1`], { env: { TSBUILD_CERTS_D: certsD } });
    expect(pull.code, pull.err).toBe(0);
  });

  it('without the CA, --tls-verify=true fails with what to do; --cert-dir supplies it', async () => {
    const empty = dirs.make('nocerts');
    const r = await runCli(dirs.make('root'), ['pull', '--tls-verify=true', `${H}/app:1`], { env: { TSBUILD_CERTS_D: empty } });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/TLS certificate of 127\.0\.0\.1:\d+ not trusted: .*self[- ]signed|unable to verify/i);
    expect(r.err).toContain(`${empty}/${H}/ca.crt`);
    const certDir = dirs.make('certdir');
    copyFileSync(caCert, path.join(certDir, 'ca.crt'));
    const ok = await runCli(dirs.make('root'), ['pull', '--tls-verify=true', '--cert-dir', certDir, `${H}/app:1`], { env: { TSBUILD_CERTS_D: empty } });
    expect(ok.code, ok.err).toBe(0);
  });

  it('a loopback registry is reachable without its CA by default (as Docker treats localhost), and with --tls-verify=false', async () => {
    const empty = dirs.make('nocerts');
    const r = await runCli(dirs.make('root'), ['pull', `${H}/app:1`], { env: { TSBUILD_CERTS_D: empty } });
    expect(r.code, r.err).toBe(0);
    const f = await runCli(dirs.make('root'), ['pull', '--tls-verify=false', `${H}/app:1`], { env: { TSBUILD_CERTS_D: empty } });
    expect(f.code, f.err).toBe(0);
  });
});
