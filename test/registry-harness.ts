// Test harness for the registry client: the real registry (Debian's
// docker-registry, Docker Distribution 2.8) started on 127.0.0.1 with a
// config written here, a small token service that signs JWTs with a test key
// (for the registry's `auth: token` mode), openssl-made certificates, and a
// fault-injecting HTTP proxy for failures the real registry will not produce
// on demand. Everything lives in a tsbuild-named temp dir; stop() kills what
// start() started.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, sign } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RegistryServer {
  host: string;
  port: number;
  dir: string;
  tls: boolean;
  proc: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

export interface RegistrySetup {
  /** htpasswd file path (bcrypt entries). */
  htpasswd?: string;
  token?: { realm: string; service: string; issuer: string; rootcertbundle: string };
  tlsCert?: { cert: string; key: string };
}

/** Starts docker-registry on a free 127.0.0.1 port with storage under dir. */
export async function startRegistry(dir: string, setup: RegistrySetup = {}): Promise<RegistryServer> {
  mkdirSync(dir, { recursive: true });
  let lastErr: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const lines = [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
    ];
    if (setup.tlsCert) lines.push('  tls:', `    certificate: ${setup.tlsCert.cert}`, `    key: ${setup.tlsCert.key}`);
    if (setup.htpasswd) lines.push('auth:', '  htpasswd:', '    realm: tsbuild-test', `    path: ${setup.htpasswd}`);
    if (setup.token) {
      const t = setup.token;
      lines.push('auth:', '  token:', `    realm: ${t.realm}`, `    service: ${t.service}`, `    issuer: ${t.issuer}`, `    rootcertbundle: ${t.rootcertbundle}`);
    }
    const config = path.join(dir, `config-${port}.yml`);
    writeFileSync(config, lines.join('\n') + '\n');
    let log = '';
    const proc = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const server: RegistryServer = {
      host: `127.0.0.1:${port}`,
      port,
      dir,
      tls: Boolean(setup.tlsCert),
      proc,
      log: () => log,
      async stop() {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      },
    };
    try {
      await waitReady(server, exited);
      return server;
    } catch (e) {
      lastErr = e as Error;
      await server.stop();
    }
  }
  throw lastErr ?? new Error('registry did not start');
}

async function waitReady(s: RegistryServer, exited: Promise<void>): Promise<void> {
  let dead = false;
  void exited.then(() => (dead = true));
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (dead) throw new Error(`docker-registry exited during start:\n${s.log()}`);
    const status = await probe(s.tls, s.port).catch(() => 0);
    if (status === 200 || status === 401) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${s.host} within 15 s:\n${s.log()}`);
}

function probe(tls: boolean, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const mod = tls ? https : http;
    const req = mod.get({ host: '127.0.0.1', port, path: '/v2/', rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** bcrypt htpasswd file (Debian's apache2-utils `htpasswd -B`). */
export function writeHtpasswd(file: string, users: Record<string, string>): void {
  const lines = Object.entries(users).map(([u, p]) => execFileSync('htpasswd', ['-nbB', '-C', '4', u, p], { encoding: 'utf8' }).trim());
  writeFileSync(file, lines.join('\n') + '\n');
}

export interface Certs {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
}

/** A test CA and a server certificate for 127.0.0.1/localhost signed by it (openssl). */
export function makeCerts(dir: string): Certs {
  mkdirSync(dir, { recursive: true });
  const p = (f: string) => path.join(dir, f);
  const q = { stdio: 'pipe' as const };
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=tsbuild test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], q);
  execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1'], q);
  writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  execFileSync('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.crt'), '-days', '2', '-extfile', p('ext.cnf')], q);
  return { caCert: p('ca.crt'), caKey: p('ca.key'), serverCert: p('server.crt'), serverKey: p('server.key') };
}

export interface TokenServer {
  url: string;
  realm: string;
  service: string;
  issuer: string;
  rootcertbundle: string;
  /** Every token request: user (or undefined), scopes asked, status answered. */
  requests: { user?: string; scopes: string[]; status: number }[];
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/**
 * A token service for the registry's `auth: token` mode: checks Basic
 * credentials, grants what is asked (anonymous users: pull only, when
 * allowed) and signs an RS256 JWT whose x5c header carries the signing
 * certificate, which the registry trusts through rootcertbundle.
 */
export async function startTokenServer(dir: string, users: Record<string, string>, opts: { anonymousPull?: boolean; expiresIn?: number } = {}): Promise<TokenServer> {
  mkdirSync(dir, { recursive: true });
  const key = path.join(dir, 'token.key');
  const cert = path.join(dir, 'token.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=tsbuild token signer'], { stdio: 'pipe' });
  const keyPem = readFileSync(key, 'utf8');
  const certDerB64 = readFileSync(cert, 'utf8').replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const service = 'tsbuild-test-registry';
  const issuer = 'tsbuild-test-issuer';
  const requests: TokenServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const scopes = u.searchParams.getAll('scope');
    let user: string | undefined;
    const auth = req.headers.authorization;
    const deny = (status: number, msg: string) => {
      requests.push({ user, scopes, status });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: msg }] }));
    };
    if (u.pathname !== '/token') return deny(404, 'not found');
    if (auth?.startsWith('Basic ')) {
      const raw = Buffer.from(auth.slice(6), 'base64').toString();
      const i = raw.indexOf(':');
      user = raw.slice(0, i);
      if (users[user] === undefined || users[user] !== raw.slice(i + 1)) return deny(401, 'invalid username or password');
    } else if (!opts.anonymousPull) {
      return deny(401, 'authentication required');
    }
    if (u.searchParams.get('service') !== service) return deny(400, 'unknown service');
    const access = scopes.flatMap((s) => {
      const parts = s.split(':');
      if (parts.length < 3) return [];
      const actions = parts.pop()!.split(',');
      const type = parts.shift()!;
      const name = parts.join(':');
      return [{ type, name, actions: user ? actions : actions.filter((a) => a === 'pull') }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDerB64] };
    const claims = { iss: issuer, sub: user ?? '', aud: service, exp: now + (opts.expiresIn ?? 300), nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(signingInput), keyPem);
    const token = `${signingInput}.${b64url(sig)}`;
    requests.push({ user, scopes, status: 200 });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: opts.expiresIn ?? 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    realm: `${url}/token`,
    service,
    issuer,
    rootcertbundle: cert,
    requests,
    stop: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

export type FaultAction =
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** Forward, but cut the connection after this many body bytes. */
  | { kind: 'drop'; afterBytes: number }
  /** Forward, but stop sending (connection left open) after this many body bytes. */
  | { kind: 'stall'; afterBytes: number }
  /** Forward, flipping one byte of the body. */
  | { kind: 'corrupt' }
  /** Forward, but strip Range from the request (a registry without Range support). */
  | { kind: 'no-range' };

export interface FaultRule {
  method?: string;
  /** Matched against the request path (with query). */
  path: RegExp;
  action: FaultAction;
  /** How many matching requests it applies to (default 1). */
  times?: number;
}

export interface ProxyLogEntry {
  method: string;
  url: string;
  range?: string;
  contentRange?: string;
  authorization?: string;
  status: number;
  fault?: string;
  at: number;
}

export interface FaultProxy {
  host: string;
  rules: FaultRule[];
  log: ProxyLogEntry[];
  stop(): Promise<void>;
}

/** An HTTP proxy in front of a (plain http) registry that injects the given faults. */
export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const rules: FaultRule[] = [];
  const log: ProxyLogEntry[] = [];
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    const i = rules.findIndex((r) => (r.times ?? 1) > 0 && (!r.method || r.method === method) && r.path.test(url));
    const rule = i >= 0 ? rules[i] : undefined;
    if (rule) rule.times = (rule.times ?? 1) - 1;
    const entry: ProxyLogEntry = {
      method,
      url,
      range: req.headers.range,
      contentRange: req.headers['content-range'] as string | undefined,
      authorization: req.headers.authorization,
      status: 0,
      fault: rule?.action.kind,
      at: Date.now(),
    };
    log.push(entry);
    const action = rule?.action;
    if (action?.kind === 'status') {
      req.resume();
      req.on('end', () => {
        entry.status = action.status;
        res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers });
        res.end(action.body ?? JSON.stringify({ errors: [{ code: 'UNKNOWN', message: `injected ${action.status}` }] }));
      });
      return;
    }
    const headers = { ...req.headers };
    if (action?.kind === 'no-range') delete headers.range;
    const up = http.request({ host: '127.0.0.1', port: targetPort, method, path: url, headers }, (ur) => {
      entry.status = ur.statusCode ?? 0;
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      if (action?.kind === 'drop' || action?.kind === 'stall') {
        // Pass afterBytes through, then stop: drop cuts the connection, stall leaves it open and silent.
        let sent = 0;
        ur.on('data', (c: Buffer) => {
          if (sent >= action.afterBytes) return;
          const part = c.subarray(0, action.afterBytes - sent);
          sent += part.length;
          res.write(part);
          if (sent < action.afterBytes) return;
          ur.destroy();
          // Let the bytes reach the client, then cut the connection.
          if (action.kind === 'drop') setTimeout(() => res.socket?.destroy(), 20);
        });
        return;
      }
      if (action?.kind === 'corrupt') {
        let flipped = false;
        ur.on('data', (c: Buffer) => {
          if (!flipped && c.length > 0) {
            c = Buffer.from(c);
            c[Math.floor(c.length / 2)]! ^= 0xff;
            flipped = true;
          }
          res.write(c);
        });
        ur.on('end', () => res.end());
        return;
      }
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    rules,
    log,
    stop: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

export function sha256Hex(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

export const CLI = path.resolve('dist/cli/main.js');

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

/**
 * Runs the tsbuild CLI asynchronously (the token service and the proxy live
 * in this process, so a synchronous spawn would deadlock them).
 */
export function runCli(root: string | undefined, args: string[], opts: { env?: Record<string, string | undefined>; input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const argv = [CLI, ...(root ? ['--root', root] : []), ...args];
    const env = { ...process.env, ...opts.env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn('node', argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out, err });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Store blobs of a root: name -> bytes' sha256 checked by the caller. */
export function blobNames(root: string): string[] {
  try {
    return execFileSync('ls', [path.join(root, 'blobs', 'sha256')], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
  } catch {
    return [];
  }
}

/** A directory holding one file of `size` random bytes (an incompressible layer). */
export function randomTree(dir: string, size: number): string {
  mkdirSync(path.join(dir, 'data'), { recursive: true });
  const chunk = 1024 * 1024;
  const parts: Buffer[] = [];
  for (let n = 0; n < size; n += chunk) parts.push(randomBytes(Math.min(chunk, size - n)));
  writeFileSync(path.join(dir, 'data', 'random.bin'), Buffer.concat(parts));
  return dir;
}
