// The registry client's pure parts: WWW-Authenticate parsing, scopes, the
// token cache's expiry, error bodies, Retry-After, credentials files, TLS
// decisions, platform choice, chunking.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { TempDirs } from './helpers.js';
import { mergeScopes, parseWwwAuthenticate, pickChallenge, TokenCache } from '../registry/auth.js';
import { describeErrorBody } from '../registry/errors.js';
import { retryAfterMs, isRetryable, backoffDelay } from '../registry/transport.js';
import { authFilePath, getCredentials, storeCredentials, eraseCredentials } from '../registry/credentials.js';
import { hostTls, isInsecureHost, isLoopback } from '../registry/tls.js';
import { parsePlatform, selectPlatform } from '../registry/common.js';
import { ChunkReader } from '../registry/upload.js';
import { normalizeRegistryHost } from '../registry/login.js';
import { parseSize } from '../cli/registry.js';
import { RegistryError } from '../registry/errors.js';
import type { ImageIndex } from '../image/schemas.js';

const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

describe('WWW-Authenticate', () => {
  it('parses Bearer with quoted params, commas inside quotes, and several challenges', () => {
    const c = parseWwwAuthenticate('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"');
    expect(c).toEqual([{ scheme: 'bearer', params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' } }]);
    const two = parseWwwAuthenticate('Basic realm="x \\"quoted\\"", Bearer realm="https://t/token", service=svc');
    expect(two).toEqual([
      { scheme: 'basic', params: { realm: 'x "quoted"' } },
      { scheme: 'bearer', params: { realm: 'https://t/token', service: 'svc' } },
    ]);
    expect(pickChallenge(two)?.scheme).toBe('bearer');
    expect(parseWwwAuthenticate(['Basic realm="r"', 'Negotiate'])).toHaveLength(2);
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(pickChallenge(parseWwwAuthenticate('Bearer service="no realm"'))).toBeUndefined();
  });

  it('merges scopes per resource', () => {
    expect(mergeScopes(['repository:a:pull'], ['repository:a:push', 'repository:b:pull'], [undefined])).toEqual(['repository:a:pull,push', 'repository:b:pull']);
    expect(mergeScopes(['repository:a:pull repository:c:pull'])).toEqual(['repository:a:pull', 'repository:c:pull']);
  });

  it('caches a token per scope set until shortly before it expires', () => {
    let now = 1_000_000;
    const c = new TokenCache(() => now);
    c.set(['repository:a:pull'], 'T1', 60);
    c.set(['repository:a:pull,push'], 'T2', 300);
    expect(c.get(['repository:a:pull'])).toBe('T1');
    expect(c.get(['repository:b:pull'])).toBeUndefined();
    now += 53_000; // 60 s minus a 6 s margin
    expect(c.get(['repository:a:pull'])).toBe('T1');
    now += 1_000;
    expect(c.get(['repository:a:pull'])).toBeUndefined();
    expect(c.get(['repository:a:pull,push'])).toBe('T2');
    // issued_at far in the past is ignored (clock skew), close is honoured.
    c.set(['x'], 'T3', 60, new Date(now - 30_000).toISOString());
    now += 25_000;
    expect(c.get(['x'])).toBeUndefined();
  });
});

describe('errors and retries', () => {
  it('turns a registry error body into one line', () => {
    expect(describeErrorBody('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}')?.line).toBe('manifest unknown (MANIFEST_UNKNOWN)');
    expect(describeErrorBody('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"app","Action":"push"}]}]}')?.line).toBe(
      'authentication required: push app (UNAUTHORIZED)',
    );
    expect(describeErrorBody('{"errors":[{"code":"DENIED"},{"code":"BLOB_UNKNOWN","message":"blob unknown","detail":"sha256:x"}]}')?.line).toBe('denied (DENIED); blob unknown: sha256:x (BLOB_UNKNOWN)');
    expect(describeErrorBody('<html>')).toBeUndefined();
    expect(describeErrorBody('{"errors":[]}')).toBeUndefined();
  });

  it('reads Retry-After as seconds or a date, and knows what to retry', () => {
    expect(retryAfterMs('3')).toBe(3000);
    expect(retryAfterMs(new Date(Date.now() + 5000).toUTCString(), Date.now())).toBeGreaterThan(3000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(isRetryable(new RegistryError('x', 503))).toBe(true);
    expect(isRetryable(new RegistryError('x', 429))).toBe(true);
    expect(isRetryable(new RegistryError('x', 404))).toBe(false);
    expect(isRetryable(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('self signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }))).toBe(false);
    for (let i = 0; i < 20; i++) expect(backoffDelay(10, 500)).toBeLessThanOrEqual(30_000);
    expect(backoffDelay(0, 100)).toBeGreaterThanOrEqual(50);
  });
});

describe('credentials file', () => {
  it('finds auths by host whatever the key looks like, honours DOCKER_CONFIG and --authfile', async () => {
    const d = dirs.make('creds');
    const file = path.join(d, 'config.json');
    writeFileSync(
      file,
      JSON.stringify({
        auths: {
          'https://reg.example.com:5000/v1/': { auth: Buffer.from('u1:p:with:colons').toString('base64') },
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') },
          'other.example': { username: 'u2', password: 'p2' },
        },
        psFormat: 'keep me',
      }),
    );
    expect(await getCredentials('reg.example.com:5000', { authfile: file })).toEqual({ username: 'u1', password: 'p:with:colons' });
    expect(await getCredentials('docker.io', { authfile: file })).toEqual({ username: 'hub', password: 'pw' });
    expect(await getCredentials('other.example', { authfile: file })).toEqual({ username: 'u2', password: 'p2' });
    expect(await getCredentials('nothere', { authfile: file })).toBeUndefined();
    const old = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = d;
    try {
      expect(authFilePath()).toBe(file);
      expect(await getCredentials('other.example')).toEqual({ username: 'u2', password: 'p2' });
    } finally {
      if (old === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = old;
    }
    await storeCredentials('new.example:1', { username: 'n', password: 'q' }, { authfile: file });
    const j = JSON.parse(readFileSync(file, 'utf8'));
    expect(j.psFormat).toBe('keep me');
    expect(j.auths['new.example:1']).toEqual({ auth: Buffer.from('n:q').toString('base64') });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await eraseCredentials('reg.example.com:5000', { authfile: file })).toBe(true);
    expect(await eraseCredentials('reg.example.com:5000', { authfile: file })).toBe(false);
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')).auths).sort()).toEqual(['https://index.docker.io/v1/', 'new.example:1', 'other.example']);
  });

  it('names the file when it is not JSON, and a missing helper program', async () => {
    const d = dirs.make('creds');
    writeFileSync(path.join(d, 'bad.json'), '{nope');
    await expect(getCredentials('x', { authfile: path.join(d, 'bad.json') })).rejects.toThrow(`registry credentials file ${path.join(d, 'bad.json')} is not valid JSON`);
    writeFileSync(path.join(d, 'helper.json'), JSON.stringify({ credHelpers: { x: 'tsbuild-no-such-helper' } }));
    await expect(getCredentials('x', { authfile: path.join(d, 'helper.json') })).rejects.toThrow('credential helper docker-credential-tsbuild-no-such-helper not found in PATH');
  });

  it('normalises registry addresses for login', () => {
    expect(normalizeRegistryHost('https://127.0.0.1:5000/v2/')).toBe('127.0.0.1:5000');
    expect(normalizeRegistryHost('')).toBe('docker.io');
    expect(normalizeRegistryHost('index.docker.io')).toBe('docker.io');
    expect(() => normalizeRegistryHost('bad host')).toThrow('invalid registry address');
  });
});

describe('TLS decisions', () => {
  it('treats loopback and --insecure-registry hosts as insecure unless --tls-verify=true', () => {
    expect(isLoopback('127.0.0.5:5000')).toBe(true);
    expect(isLoopback('localhost')).toBe(true);
    expect(isLoopback('[::1]:5000')).toBe(true);
    expect(isLoopback('128.0.0.1')).toBe(false);
    expect(isInsecureHost('127.0.0.1:5000', {})).toBe(true);
    expect(isInsecureHost('127.0.0.1:5000', { tlsVerify: true })).toBe(false);
    expect(isInsecureHost('reg.example:443', { insecureRegistries: ['reg.example'] })).toBe(true);
    expect(isInsecureHost('reg.example:443', {})).toBe(false);
    expect(isInsecureHost('reg.example', { tlsVerify: false })).toBe(true);
  });

  it('reads CA and client certificates from certs.d/HOST (TSBUILD_CERTS_D) or --cert-dir', async () => {
    const base = dirs.make('certsd');
    mkdirSync(path.join(base, 'reg.example:5000'));
    writeFileSync(path.join(base, 'reg.example:5000', 'ca.crt'), '-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n');
    const old = process.env.TSBUILD_CERTS_D;
    process.env.TSBUILD_CERTS_D = base;
    try {
      const t = await hostTls('reg.example:5000', {});
      expect(t.verify).toBe(true);
      expect(t.allowHttp).toBe(false);
      expect(t.ca?.at(-1)).toContain('X');
      expect(t.certSource).toBe(path.join(base, 'reg.example:5000'));
      const none = await hostTls('other.example', {});
      expect(none.ca).toBeUndefined();
      // A CA configured for a loopback host is used for verification.
      mkdirSync(path.join(base, '127.0.0.1:5000'));
      writeFileSync(path.join(base, '127.0.0.1:5000', 'ca.crt'), 'Y');
      expect((await hostTls('127.0.0.1:5000', {})).verify).toBe(true);
      expect((await hostTls('127.0.0.1:5001', {})).verify).toBe(false);
    } finally {
      if (old === undefined) delete process.env.TSBUILD_CERTS_D;
      else process.env.TSBUILD_CERTS_D = old;
    }
    const cd = dirs.make('certdir');
    writeFileSync(path.join(cd, 'client.cert'), 'C');
    await expect(hostTls('x', { certDir: cd })).rejects.toThrow(`missing key ${path.join(cd, 'client.key')}`);
    await expect(hostTls('x', { certDir: path.join(cd, 'nope') })).rejects.toThrow('does not exist (--cert-dir)');
  });
});

describe('platforms and chunks', () => {
  const index = {
    schemaVersion: 2,
    manifests: [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'b'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'c'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'d'.repeat(64)}`, size: 1, platform: { os: 'unknown', architecture: 'unknown' } },
    ],
  } as unknown as ImageIndex;

  it('selects by os/arch/variant, arm64 defaulting to v8', () => {
    expect(selectPlatform(index, parsePlatform('linux/arm/v7'), 'w').digest).toContain('b');
    expect(selectPlatform(index, parsePlatform('linux/arm'), 'w').digest).toContain('a');
    expect(selectPlatform(index, parsePlatform('linux/arm64/v8'), 'w').digest).toContain('c');
    expect(() => selectPlatform(index, parsePlatform('linux/amd64'), 'pull x')).toThrow('pull x: no matching manifest for linux/amd64 in the manifest list entries (available: linux/arm/v6, linux/arm/v7, linux/arm64)');
    expect(() => parsePlatform('linux')).toThrow('invalid platform "linux"');
  });

  it('cuts a stream into exact chunks', async () => {
    const src = Readable.from([Buffer.from('abc'), Buffer.from('defghij'), Buffer.from('k')]);
    const r = new ChunkReader(src);
    const read = async (s: Readable) => Buffer.concat(await s.toArray()).toString();
    expect(await read(r.take(4))).toBe('abcd');
    expect(await read(r.take(4))).toBe('efgh');
    expect(await read(r.take(3))).toBe('ijk');
    await expect(read(r.take(1))).rejects.toThrow('source ended 1 bytes before the end of the chunk');
  });

  it('parses chunk sizes', () => {
    expect(parseSize('1MiB', '--chunk-size')).toBe(1048576);
    expect(parseSize('512k', '--chunk-size')).toBe(524288);
    expect(parseSize('100', '--chunk-size')).toBe(100);
    expect(() => parseSize('lots', '--chunk-size')).toThrow('invalid argument "lots"');
  });
});
