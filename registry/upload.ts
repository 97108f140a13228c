// Blob uploads (OCI distribution spec, "pushing blobs"): HEAD to skip what the
// registry has, cross-repository mount, then either one monolithic PUT or a
// series of PATCH chunks with Content-Range followed by a closing PUT.
// Bodies are streams opened per attempt; a failed attempt restarts the blob
// with a fresh upload session (the registry's state after a broken PATCH is
// unknown).
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { Digest } from '../image/digest.js';
import { repositoryScope } from './auth.js';
import { shortId, type ProgressFn } from './common.js';
import { RegistryError } from './errors.js';
import { backoffDelay, header, isRetryable, sleep, type ClientOptions, type RegistryClient } from './transport.js';

/** Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024;

export interface UploadOptions extends ClientOptions {
  chunkSize?: number;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
}

export interface BlobToPush {
  digest: Digest;
  size: number;
  kind: 'layer' | 'config';
  /** Opens the blob's bytes from the start (called once per attempt). */
  open(): Promise<Readable>;
  /** Repositories of the same registry to try mounting from (paths, not hosts). */
  mountFrom?: string[];
}

export type UploadOutcome = 'exists' | 'mounted' | 'pushed';

/** True when the registry has the blob in this repository (HEAD). */
export async function blobExists(client: RegistryClient, repo: string, digest: Digest, what: string, signal?: AbortSignal): Promise<boolean> {
  const res = await client.send({
    method: 'HEAD',
    path: `/v2/${repo}/blobs/${digest}`,
    scopes: [repositoryScope(repo, ['pull', 'push'])],
    expect: [200, 404],
    what,
    signal,
  });
  await res.body.dump().catch(() => {});
  return res.statusCode === 200;
}

/** Pushes one blob unless the registry has it; returns what happened (and the mount source). */
export async function pushBlob(client: RegistryClient, repo: string, blob: BlobToPush, what: string, opts: UploadOptions): Promise<{ outcome: UploadOutcome; from?: string }> {
  const id = shortId(blob.digest);
  const ev = (phase: 'preparing' | 'uploading' | 'pushed' | 'mounted' | 'exists' | 'retrying', extra: { current?: number; detail?: string } = {}) =>
    opts.onProgress?.({ type: 'blob', kind: blob.kind, id, digest: blob.digest, phase, total: blob.size, ...extra });
  const w = `${what}: blob ${blob.digest}`;
  if (await blobExists(client, repo, blob.digest, w, opts.signal)) {
    ev('exists');
    return { outcome: 'exists' };
  }
  const max = opts.retries ?? 4;
  for (let attempt = 0; ; attempt++) {
    try {
      let session: URL | undefined;
      for (const from of (blob.mountFrom ?? []).filter((f) => f !== repo).slice(0, 3)) {
        const r = await tryMount(client, repo, from, blob.digest, w, opts.signal);
        if (r === 'mounted') {
          ev('mounted', { detail: from });
          return { outcome: 'mounted', from };
        }
        session = r; // the registry opened an ordinary upload instead
        break;
      }
      session ??= await startUpload(client, repo, w, opts.signal);
      const chunk = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
      let sent = 0;
      let last = 0;
      const onBytes = (n: number) => {
        sent += n;
        const now = Date.now();
        if (now - last >= 100 || sent === blob.size) {
          last = now;
          ev('uploading', { current: sent });
        }
      };
      ev('uploading', { current: 0 });
      const src = await blob.open();
      try {
        if (blob.size <= chunk) await putMonolithic(client, repo, session, blob, src, onBytes, w, opts.signal);
        else await putChunked(client, repo, session, blob, src, chunk, onBytes, w, opts.signal);
      } finally {
        src.destroy();
      }
      ev('pushed', { current: blob.size });
      return { outcome: 'pushed' };
    } catch (e) {
      if (opts.signal?.aborted || attempt >= max || !isRetryable(e)) throw e;
      ev('retrying', { detail: (e as Error).message });
      const ra = e instanceof RegistryError ? e.retryAfterMs : undefined;
      await sleep(ra !== undefined ? Math.min(ra, opts.maxRetryAfterMs ?? 60_000) : backoffDelay(attempt, opts.retryBaseMs ?? 500), opts.signal);
    }
  }
}

async function tryMount(client: RegistryClient, repo: string, from: string, digest: Digest, what: string, signal?: AbortSignal): Promise<'mounted' | URL> {
  const q = new URLSearchParams({ mount: digest, from });
  const res = await client.send({
    method: 'POST',
    path: `/v2/${repo}/blobs/uploads/?${q.toString()}`,
    headers: { 'content-length': '0' },
    scopes: [repositoryScope(repo, ['pull', 'push']), repositoryScope(from, ['pull'])],
    expect: [201, 202],
    what,
    signal,
  });
  await res.body.dump().catch(() => {});
  if (res.statusCode === 201) return 'mounted';
  return location(res, what);
}

async function startUpload(client: RegistryClient, repo: string, what: string, signal?: AbortSignal): Promise<URL> {
  const res = await client.send({
    method: 'POST',
    path: `/v2/${repo}/blobs/uploads/`,
    headers: { 'content-length': '0' },
    scopes: [repositoryScope(repo, ['pull', 'push'])],
    expect: [202],
    what,
    signal,
  });
  await res.body.dump().catch(() => {});
  return location(res, what);
}

function location(res: { headers: Record<string, string | string[] | undefined>; url: URL }, what: string): URL {
  const loc = header(res, 'location');
  if (!loc) throw new RegistryError(`${what}: registry started an upload without a Location header`);
  return new URL(loc, res.url);
}

/** Counts bytes as the HTTP client reads them. */
class Counter extends Transform {
  constructor(private onBytes: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.onBytes(chunk.length);
    cb(null, chunk);
  }
}

async function putMonolithic(client: RegistryClient, repo: string, session: URL, blob: BlobToPush, src: Readable, onBytes: (n: number) => void, what: string, signal?: AbortSignal): Promise<void> {
  const url = new URL(session);
  url.searchParams.set('digest', blob.digest);
  const body = src.pipe(new Counter(onBytes));
  src.on('error', (e) => body.destroy(e));
  const res = await client.send({
    method: 'PUT',
    path: url.href,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    body,
    scopes: [repositoryScope(repo, ['pull', 'push'])],
    expect: [201],
    retry: false,
    what,
    signal,
  });
  await res.body.dump().catch(() => {});
}

async function putChunked(client: RegistryClient, repo: string, session: URL, blob: BlobToPush, src: Readable, chunkSize: number, onBytes: (n: number) => void, what: string, signal?: AbortSignal): Promise<void> {
  const reader = new ChunkReader(src);
  let url = session;
  for (let offset = 0; offset < blob.size; ) {
    const len = Math.min(chunkSize, blob.size - offset);
    const body = reader.take(len).pipe(new Counter(onBytes));
    const res = await client.send({
      method: 'PATCH',
      path: url.href,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(len),
        'content-range': `${offset}-${offset + len - 1}`,
      },
      body,
      scopes: [repositoryScope(repo, ['pull', 'push'])],
      expect: [202],
      retry: false,
      what,
      signal,
    });
    await res.body.dump().catch(() => {});
    const range = header(res, 'range');
    const m = range ? /^(?:bytes=)?0-(\d+)$/.exec(range) : null;
    if (m && Number(m[1]) !== offset + len - 1) {
      throw new RegistryError(`${what}: registry acknowledged bytes 0-${m[1]} after a chunk ending at ${offset + len - 1}`, 502);
    }
    url = location(res, what);
    offset += len;
  }
  const done = new URL(url);
  done.searchParams.set('digest', blob.digest);
  const res = await client.send({
    method: 'PUT',
    path: done.href,
    headers: { 'content-length': '0' },
    scopes: [repositoryScope(repo, ['pull', 'push'])],
    expect: [201],
    retry: false,
    what,
    signal,
  });
  await res.body.dump().catch(() => {});
}

/** Cuts one stream into consecutive readables of given lengths. */
export class ChunkReader {
  private it: AsyncIterator<Buffer>;
  private pending: Buffer | null = null;

  constructor(src: Readable) {
    this.it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  take(n: number): Readable {
    const self = this;
    async function* gen(): AsyncGenerator<Buffer> {
      let left = n;
      while (left > 0) {
        let b = self.pending;
        self.pending = null;
        if (!b) {
          const r = await self.it.next();
          if (r.done) throw new Error(`source ended ${left} bytes before the end of the chunk`);
          b = r.value;
        }
        if (b.length > left) {
          self.pending = b.subarray(left);
          b = b.subarray(0, left);
        }
        left -= b.length;
        yield b;
      }
    }
    return Readable.from(gen(), { objectMode: false });
  }
}
