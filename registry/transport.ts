// HTTP to one registry host (undici): scheme choice and /v2/ ping, auth
// (Basic, Bearer tokens per scope), retries with backoff on 408/429/5xx and
// broken connections (honouring Retry-After), redirects that never carry
// Authorization to another host, timeouts, and registry error bodies turned
// into one line.
import { Agent, request, type Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import { mergeScopes, parseWwwAuthenticate, pickChallenge, TokenCache, type Challenge } from './auth.js';
import { getCredentials, type AuthFileOptions, type Credentials } from './credentials.js';
import { AuthError, describeErrorBody, RegistryError } from './errors.js';
import { hostTls, isCertificateError, type HostTls, type TlsOptions } from './tls.js';

export interface ClientOptions extends AuthFileOptions, TlsOptions {
  /** Use these instead of looking in the credentials file (login). */
  credentials?: Credentials;
  /** Extra attempts after the first for retryable failures (default 4). */
  retries?: number;
  /** First backoff delay in ms, doubled each attempt with jitter (default 500). */
  retryBaseMs?: number;
  /** Longest wait honoured from a Retry-After header, in ms (default 60 s). */
  maxRetryAfterMs?: number;
  /** Time to wait for response headers, and the longest silence inside a body, in ms (default 60 s / 120 s). */
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  /** Told before each retry (for progress output). */
  onRetry?: (info: RetryInfo) => void;
}

export interface RetryInfo {
  host: string;
  what: string;
  attempt: number;
  delayMs: number;
  reason: string;
}

export type Body = Buffer | string | Readable | null;

export interface RegistryRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path under the registry ("/v2/app/manifests/latest") or an absolute URL (upload Locations). */
  path: string;
  headers?: Record<string, string>;
  /** A value, or a function making a fresh body for each attempt (streams cannot be replayed). */
  body?: Body | (() => Body);
  /** Token scopes this request needs. */
  scopes?: string[];
  /** Statuses that are success for this request (default 200-299). */
  expect?: number[];
  /** Retry on transient failures (default true; uploads of streams say false and retry whole). */
  retry?: boolean;
  /** Names the operation in error messages: "pull 127.0.0.1:5000/app:1". */
  what: string;
  signal?: AbortSignal;
}

export type RegistryResponse = Dispatcher.ResponseData & { url: URL };

const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
const NETWORK_RETRY_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'ECONNABORTED',
]);

export function header(res: { headers: Dispatcher.ResponseData['headers'] }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** True for failures worth another attempt: dropped connections, timeouts, 408/429/5xx. */
export function isRetryable(e: unknown): boolean {
  if (e instanceof RegistryError) return e.status !== undefined && RETRY_STATUSES.has(e.status);
  const err = e as { code?: string; cause?: { code?: string } };
  if (isCertificateError(e)) return false;
  return NETWORK_RETRY_CODES.has(err?.code ?? '') || NETWORK_RETRY_CODES.has(err?.cause?.code ?? '') || /other side closed|socket hang up|terminated/i.test((e as Error)?.message ?? '');
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });

/** Exponential backoff with jitter: base * 2^attempt * [0.5, 1.5), at most 30 s. */
export function backoffDelay(attempt: number, baseMs: number): number {
  return Math.min(30_000, Math.round(baseMs * 2 ** attempt * (0.5 + Math.random())));
}

/** Retry-After as delta-seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** A message for a network failure: the code and the host, with a hint for TLS problems. */
export function networkMessage(e: unknown, host: string, what: string): string {
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.code && !err.code.startsWith('UND_ERR') ? err.code : err.cause?.code ?? err.code;
  const msg = err.cause?.message ?? err.message ?? String(e);
  if (isCertificateError(err) || isCertificateError(err.cause)) {
    return `${what}: TLS certificate of ${host} not trusted: ${msg}. Put its CA certificate in ${process.env.TSBUILD_CERTS_D || '/etc/docker/certs.d'}/${host}/ca.crt (or use --cert-dir), or use --tls-verify=false for a registry you trust`;
  }
  return `${what}: cannot reach registry ${host}: ${msg}${code && !msg.includes(code) ? ` (${code})` : ''}`;
}

// One undici Agent per TLS configuration, shared by all clients of the process (connection reuse).
const agents = new Map<string, Agent>();

function agentFor(tls: HostTls, verify: boolean, opts: ClientOptions): Agent {
  const key = JSON.stringify([verify, tls.certSource ?? '', tls.ca?.length ?? 0, opts.headersTimeoutMs, opts.bodyTimeoutMs]);
  let a = agents.get(key);
  if (!a) {
    a = new Agent({
      connect: { rejectUnauthorized: verify, ca: tls.ca, cert: tls.cert, key: tls.key, timeout: 30_000 },
      headersTimeout: opts.headersTimeoutMs ?? 60_000,
      bodyTimeout: opts.bodyTimeoutMs ?? 120_000,
      keepAliveTimeout: 10_000,
    });
    agents.set(key, a);
  }
  return a;
}

/** Closes pooled connections (the CLI calls it before exiting). */
export async function closeAgents(): Promise<void> {
  const list = [...agents.values()];
  agents.clear();
  await Promise.all(list.map((a) => a.close().catch(() => {})));
}

/** Reads a response body as a string, at most `limit` bytes (the rest is discarded). */
export async function readText(body: Readable, limit = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      const b = c as Buffer;
      if (n < limit) chunks.push(b.subarray(0, limit - n));
      n += b.length;
    }
  } catch {
    // the error status is what matters
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads a body fully into memory, refusing more than `limit` bytes. */
export async function readLimited(body: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    const b = c as Buffer;
    n += b.length;
    if (n > limit) {
      body.destroy();
      throw new RegistryError(`${what}: response larger than ${limit} bytes, refusing it`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** A client for one registry host. Cheap to create; connections are pooled per process. */
export class RegistryClient {
  /** https://host or http://host, decided by ping(). */
  private base?: URL;
  private pinging?: Promise<void>;
  private challenge?: Challenge;
  private creds?: Credentials | null;
  private tokens = new TokenCache();
  private tls?: HostTls;
  private dispatcher?: Agent;

  constructor(
    /** Registry host as in references: "127.0.0.1:5000", "docker.io". */
    readonly host: string,
    readonly opts: ClientOptions = {},
  ) {}

  /** The host to connect to: Docker Hub's API lives at registry-1.docker.io. */
  get apiHost(): string {
    return this.host === 'docker.io' ? 'registry-1.docker.io' : this.host;
  }

  get baseUrl(): URL {
    if (!this.base) throw new Error('registry client used before ping()');
    return this.base;
  }

  private async credentials(): Promise<Credentials | undefined> {
    if (this.creds === undefined) this.creds = this.opts.credentials ?? (await getCredentials(this.host, this.opts)) ?? null;
    return this.creds ?? undefined;
  }

  /** Decides https or http and learns the auth challenge, once per client. */
  ping(): Promise<void> {
    this.pinging ??= this.doPing().catch((e) => {
      this.pinging = undefined;
      throw e;
    });
    return this.pinging;
  }

  private async doPing(): Promise<void> {
    this.tls = await hostTls(this.host, this.opts);
    const what = `ping ${this.host}`;
    const https = new URL(`https://${this.apiHost}/v2/`);
    let res: Dispatcher.ResponseData | undefined;
    this.dispatcher = agentFor(this.tls, this.tls.verify, this.opts);
    try {
      // When plain http is allowed, a failed https attempt goes straight to http instead of retrying.
      res = await this.withRetries(what, !this.tls.allowHttp, undefined, () => this.raw('GET', https, {}, undefined));
      this.base = new URL(`https://${this.apiHost}`);
    } catch (e) {
      if (!this.tls.allowHttp || (this.tls.verify && isCertificateError(e)) || e instanceof RegistryError) {
        throw e instanceof RegistryError ? e : new RegistryError(networkMessage(e, this.host, what));
      }
      // Plain http, as Docker does for localhost and --insecure-registry hosts.
      const http = new URL(`http://${this.apiHost}/v2/`);
      try {
        res = await this.withRetries(what, true, undefined, () => this.raw('GET', http, {}, undefined));
      } catch (e2) {
        throw e2 instanceof RegistryError ? e2 : new RegistryError(networkMessage(e2, this.host, what));
      }
      this.base = new URL(`http://${this.apiHost}`);
    }
    await res.body.dump().catch(() => {});
    if (res.statusCode === 401) {
      this.challenge = pickChallenge(parseWwwAuthenticate(res.headers['www-authenticate']));
      if (!this.challenge) throw new RegistryError(`${this.host}: registry asks for authentication with a scheme tsbuild does not support (${String(res.headers['www-authenticate'])})`, 401);
    } else if (res.statusCode === 404) {
      throw new RegistryError(`${this.host} is not a Docker/OCI registry: GET /v2/ answered 404`, 404);
    } else if (res.statusCode >= 400) {
      throw new RegistryError(`${what}: registry answered ${res.statusCode}`, res.statusCode);
    }
  }

  /** Checks that the credentials are accepted (login). */
  async verifyLogin(): Promise<void> {
    await this.ping();
    const creds = await this.credentials();
    if (!this.challenge) return; // an open registry accepts anything
    if (this.challenge.scheme === 'bearer') {
      await this.fetchToken([], creds, `login ${this.host}`);
      return;
    }
    const res = await this.send({ method: 'GET', path: '/v2/', what: `login ${this.host}`, expect: [200] });
    await res.body.dump();
  }

  /** Sends a request with auth, retries and redirects; error statuses throw RegistryError/AuthError. */
  async send(req: RegistryRequest): Promise<RegistryResponse> {
    await this.ping();
    const url = new URL(req.path, this.baseUrl);
    const replayable = typeof req.body === 'function' || req.body === undefined || req.body === null || Buffer.isBuffer(req.body) || typeof req.body === 'string';
    let scopes = req.scopes ?? [];
    let reauthed = false;
    const retry = req.retry !== false && replayable;
    for (;;) {
      const res = await this.withRetries(req.what, retry, req.signal, async () => {
        const auth = await this.authorization(scopes, req.what);
        return this.followRedirects(req, url, auth);
      });
      if (res.statusCode === 401 && !reauthed && replayable) {
        const ch = pickChallenge(parseWwwAuthenticate(res.headers['www-authenticate']));
        await res.body.dump().catch(() => {});
        if (ch) {
          this.challenge = ch;
          if (ch.scheme === 'bearer') {
            scopes = mergeScopes(scopes, [ch.params.scope]);
            this.tokens.delete(scopes);
          }
          reauthed = true;
          continue;
        }
        throw await this.statusError(res, req);
      }
      const ok = req.expect ? req.expect.includes(res.statusCode) : res.statusCode >= 200 && res.statusCode < 300;
      if (!ok) throw await this.statusError(res, req);
      return res;
    }
  }

  private async withRetries<T extends Dispatcher.ResponseData>(what: string, retry: boolean, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const max = retry ? (this.opts.retries ?? 4) : 0;
    for (let attempt = 0; ; attempt++) {
      let res: T;
      try {
        res = await fn();
      } catch (e) {
        if (e instanceof RegistryError || attempt >= max || !isRetryable(e)) throw e;
        const delayMs = backoffDelay(attempt, this.opts.retryBaseMs ?? 500);
        this.opts.onRetry?.({ host: this.host, what, attempt: attempt + 1, delayMs, reason: (e as Error).message });
        await sleep(delayMs, signal);
        continue;
      }
      if (RETRY_STATUSES.has(res.statusCode) && attempt < max) {
        const ra = retryAfterMs(header(res, 'retry-after'));
        await res.body.dump().catch(() => {});
        const delayMs = ra !== undefined ? Math.min(ra, this.opts.maxRetryAfterMs ?? 60_000) : backoffDelay(attempt, this.opts.retryBaseMs ?? 500);
        this.opts.onRetry?.({ host: this.host, what, attempt: attempt + 1, delayMs, reason: `HTTP ${res.statusCode}` });
        await sleep(delayMs, signal);
        continue;
      }
      return res;
    }
  }

  private async followRedirects(req: RegistryRequest, start: URL, auth: string | undefined): Promise<RegistryResponse> {
    let url = start;
    let method = req.method;
    let body = req.body;
    for (let hops = 0; ; hops++) {
      // Authorization goes to the registry's own origin only, never to a redirect target elsewhere.
      const sameOrigin = url.origin === this.baseUrl.origin;
      const headers: Record<string, string> = { 'user-agent': 'tsbuild/0.1', ...req.headers };
      if (auth && sameOrigin) headers.authorization = auth;
      const b = typeof body === 'function' ? body() : body;
      const res = await this.raw(method, url, headers, b ?? undefined, req.signal);
      const loc = header(res, 'location');
      if (![301, 302, 303, 307, 308].includes(res.statusCode) || !loc) {
        return Object.assign(res, { url });
      }
      // Upload endpoints answer 202 with a Location, never 3xx; a 3xx here is a real redirect.
      await res.body.dump().catch(() => {});
      if (hops >= 10) throw new RegistryError(`${req.what}: too many redirects (last: ${loc})`);
      url = new URL(loc, url);
      if (res.statusCode === 303 || ((res.statusCode === 301 || res.statusCode === 302) && method !== 'GET' && method !== 'HEAD')) {
        method = 'GET';
        body = undefined;
      }
    }
  }

  private raw(method: string, url: URL, headers: Record<string, string>, body: Body | undefined, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    return request(url, {
      method: method as Dispatcher.HttpMethod,
      headers,
      body: body ?? undefined,
      dispatcher: this.dispatcher,
      signal,
    });
  }

  private async authorization(scopes: string[], what: string): Promise<string | undefined> {
    if (!this.challenge) return undefined;
    const creds = await this.credentials();
    if (this.challenge.scheme === 'basic') {
      return creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : undefined;
    }
    const cached = this.tokens.get(scopes);
    if (cached) return `Bearer ${cached}`;
    const token = await this.fetchToken(scopes, creds, what);
    return `Bearer ${token}`;
  }

  /** GET realm?service=…&scope=… with Basic credentials (Docker's token protocol). */
  private async fetchToken(scopes: string[], creds: Credentials | undefined, what: string): Promise<string> {
    const ch = this.challenge!;
    let realm: URL;
    try {
      realm = new URL(ch.params.realm!);
    } catch {
      throw new RegistryError(`${this.host}: token realm ${JSON.stringify(ch.params.realm)} is not a URL`);
    }
    if (ch.params.service) realm.searchParams.set('service', ch.params.service);
    for (const s of scopes) realm.searchParams.append('scope', s);
    if (creds) realm.searchParams.set('account', creds.username);
    const headers: Record<string, string> = { 'user-agent': 'tsbuild/0.1' };
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.withRetries(`${what} (token)`, true, undefined, () => this.raw('GET', realm, headers, undefined));
    } catch (e) {
      throw new RegistryError(networkMessage(e, realm.host, `${what}: token service`));
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      const text = await readText(res.body);
      const detail = describeErrorBody(text)?.line ?? (text.trim().split('\n')[0]?.slice(0, 200) || `HTTP ${res.statusCode}`);
      throw new AuthError(
        creds
          ? `${what}: unauthorized: incorrect username or password for ${creds.username}@${this.host} (token service: ${detail})`
          : `${what}: unauthorized: the token service of ${this.host} refused anonymous access (${detail}); run 'tsbuild login ${this.host}' first`,
        res.statusCode,
      );
    }
    if (res.statusCode !== 200) {
      const text = await readText(res.body);
      throw new RegistryError(`${what}: token service ${realm.origin} answered ${res.statusCode}: ${describeErrorBody(text)?.line ?? text.slice(0, 200)}`, res.statusCode);
    }
    let j: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      j = JSON.parse(await readText(res.body, 1024 * 1024)) as typeof j;
    } catch {
      throw new RegistryError(`${what}: token service ${realm.origin} sent a response that is not JSON`);
    }
    const token = typeof j.token === 'string' && j.token ? j.token : typeof j.access_token === 'string' ? j.access_token : '';
    if (!token) throw new RegistryError(`${what}: token service ${realm.origin} sent no token`);
    this.tokens.set(scopes, token, typeof j.expires_in === 'number' ? j.expires_in : 60, typeof j.issued_at === 'string' ? j.issued_at : undefined);
    return token;
  }

  private async statusError(res: Dispatcher.ResponseData, req: RegistryRequest): Promise<RegistryError> {
    const text = req.method === 'HEAD' ? '' : await readText(res.body);
    if (req.method === 'HEAD') await res.body.dump().catch(() => {});
    const parsed = describeErrorBody(text);
    const status = res.statusCode;
    const line = parsed?.line ?? (text.trim() && !text.trimStart().startsWith('<') ? text.trim().split('\n')[0]!.slice(0, 200) : httpReason(status));
    if (status === 401 || status === 403) {
      const creds = await this.credentials();
      const hint = creds
        ? status === 403
          ? ` (user ${creds.username} may not do this)`
          : ` (credentials of ${creds.username} were not accepted)`
        : `; run 'tsbuild login ${this.host}' first`;
      return new AuthError(`${req.what}: ${line}${hint}`, status, parsed?.errors);
    }
    return new RegistryError(`${req.what}: ${line}${parsed ? '' : ` (HTTP ${status})`}`, status, parsed?.errors, retryAfterMs(header(res, 'retry-after')));
  }

  /** Cached token count (for tests). */
  get tokenCount(): number {
    return this.tokens.size;
  }
}

function httpReason(status: number): string {
  const m: Record<number, string> = {
    400: 'bad request',
    401: 'unauthorized: authentication required',
    403: 'denied: requested access to the resource is denied',
    404: 'not found',
    405: 'method not allowed (the registry may be read-only)',
    408: 'request timeout',
    413: 'payload too large',
    416: 'requested range not satisfiable',
    429: 'too many requests',
    500: 'internal server error',
    502: 'bad gateway',
    503: 'service unavailable',
    504: 'gateway timeout',
  };
  return m[status] ?? `HTTP ${status}`;
}
