// pull: registry -> store. Manifest (an index picks the platform), config and
// layers are hashed while they stream into the store's ingest files and only
// become visible once digest and size match (Store.blobWriter). Blobs already
// in the store are skipped; several download at once; a connection that drops
// mid-blob resumes with a Range request where the registry allows it.
import { once } from 'node:events';
import { sha256, type Digest } from '../image/digest.js';
import { isConfigType, isLayerType } from '../image/mediatypes.js';
import { formatReference, repositoryName, type Reference } from '../image/reference.js';
import { parseImageConfig, SchemaError, type Descriptor, type ImageManifest } from '../image/schemas.js';
import { loadImage, recordImage, tagKey, type StoredImage } from '../image/images.js';
import { DigestMismatchError, type Store } from '../image/store.js';
import { repositoryScope } from './auth.js';
import { recordBlobSources } from './blob-sources.js';
import {
  CONFIG_LIMIT,
  defaultPlatform,
  fetchManifest,
  newClient,
  parallel,
  parsePlatform,
  selectPlatform,
  shortId,
  target,
  type PlatformSpec,
  type ProgressFn,
} from './common.js';
import { ContentError, RegistryError } from './errors.js';
import { backoffDelay, header, isRetryable, readLimited, sleep, type ClientOptions, type RegistryClient } from './transport.js';

export interface PullOptions extends ClientOptions {
  /** "linux/amd64" (default: linux and the host's architecture). */
  platform?: string | PlatformSpec;
  /** Blobs downloaded at once (default 3, as Docker). */
  concurrency?: number;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
}

export interface PullResult {
  image: StoredImage;
  /** Full normalised reference pulled ("127.0.0.1:5000/app:1"). */
  reference: string;
  /** Digest of what the reference named: the index for a multi-platform image. */
  digest: Digest;
  /** Manifest digest of the stored (single-platform) image. */
  manifestDigest: Digest;
  /** True when the tag already pointed at this image and nothing was fetched. */
  upToDate: boolean;
  /** Layers fetched / already present. */
  downloaded: number;
  skipped: number;
}

/** Pulls an image and returns it as stored (the builder's FROM of a non-local image). */
export async function pullImage(store: Store, ref: string, opts: PullOptions = {}): Promise<StoredImage> {
  return (await pull(store, ref, opts)).image;
}

export async function pull(store: Store, refString: string, opts: PullOptions = {}): Promise<PullResult> {
  const { ref, repo, display } = target(refString);
  const what = `pull ${display}`;
  const progress = opts.onProgress;
  const client = newClient(ref.domain, opts, progress);
  const platform = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : (opts.platform ?? defaultPlatform());

  let top = await fetchManifest(client, repo, ref.digest ?? ref.tag!, what);
  const requested = top.digest;
  if (top.parsed.kind === 'index') {
    const desc = selectPlatform(top.parsed.index, platform, what);
    top = await fetchManifest(client, repo, desc.digest, what, { digest: desc.digest as Digest, size: desc.size });
    if (top.parsed.kind !== 'manifest') throw new RegistryError(`${what}: ${desc.digest} is an index inside an index; not supported`);
  }
  if (top.parsed.kind !== 'manifest') throw new Error('unreachable');
  const manifest: ImageManifest = top.parsed.manifest;
  checkImageManifest(manifest, what);

  const configBytes = await fetchSmallBlob(client, repo, manifest.config, what);
  let diffIds: string[];
  try {
    diffIds = parseImageConfig(configBytes, `${what}: config ${manifest.config.digest}`).rootfs.diff_ids;
  } catch (e) {
    if (e instanceof SchemaError) throw new RegistryError(e.message);
    throw e;
  }
  if (diffIds.length !== manifest.layers.length) {
    throw new RegistryError(`${what}: manifest has ${manifest.layers.length} layers but its config has ${diffIds.length} diff_ids`);
  }

  const tags = ref.tag !== undefined && ref.digest === undefined ? [formatReference({ domain: ref.domain, path: ref.path, tag: ref.tag })] : [];
  const manifestDigest = top.digest;
  const idxBefore = await store.readIndex();
  const upToDate = Boolean(idxBefore.images[manifestDigest]) && tags.every((t) => idxBefore.tags[tagKey(t)] === manifestDigest);

  let downloaded = 0;
  let skipped = 0;
  await store.withWriteSession(async () => {
    // Distinct layers (an image may repeat one).
    const layers = [...new Map(manifest.layers.map((l) => [l.digest, l])).values()];
    for (const l of layers) {
      if (await store.hasBlob(l.digest as Digest)) {
        skipped++;
        progress?.({ type: 'blob', kind: 'layer', id: shortId(l.digest), digest: l.digest as Digest, phase: 'exists' });
      } else {
        progress?.({ type: 'blob', kind: 'layer', id: shortId(l.digest), digest: l.digest as Digest, phase: 'waiting', total: l.size });
      }
    }
    const missing: Descriptor[] = [];
    for (const l of layers) if (!(await store.hasBlob(l.digest as Digest))) missing.push(l);
    await parallel(
      missing,
      opts.concurrency ?? 3,
      async (l, signal) => {
        await downloadBlob(store, client, repo, l, what, opts, signal, progress);
        downloaded++;
      },
      opts.signal,
    );
    await store.putBlob(configBytes, { digest: manifest.config.digest as Digest, size: manifest.config.size });
    await store.putBlob(top.bytes, { digest: manifestDigest, size: top.bytes.length });
    await recordImage(store, { digest: manifestDigest, size: top.bytes.length, mediaType: top.mediaType, config: manifest.config.digest as Digest }, tags);
  });
  await recordBlobSources(store, repositoryName(ref), [...manifest.layers.map((l) => l.digest), manifest.config.digest]).catch(() => {});
  const image = await loadImage(store, manifestDigest);
  return { image, reference: display, digest: requested, manifestDigest, upToDate, downloaded, skipped };
}

function checkImageManifest(m: ImageManifest, what: string): void {
  if (!isConfigType(m.config.mediaType)) {
    throw new RegistryError(`${what}: not a container image (config media type "${m.config.mediaType}")`);
  }
  for (const [i, l] of m.layers.entries()) {
    if (!isLayerType(l.mediaType)) throw new RegistryError(`${what}: layer ${i} has unsupported media type "${l.mediaType}"`);
  }
}

/** GET a small blob (config) into memory, checked against its descriptor. */
export async function fetchSmallBlob(client: RegistryClient, repo: string, desc: Descriptor, what: string): Promise<Buffer> {
  if (desc.size > CONFIG_LIMIT) throw new RegistryError(`${what}: config ${desc.digest} is ${desc.size} bytes, larger than the ${CONFIG_LIMIT}-byte limit`);
  const res = await client.send({ method: 'GET', path: `/v2/${repo}/blobs/${desc.digest}`, scopes: [repositoryScope(repo, ['pull'])], what });
  const bytes = await readLimited(res.body, desc.size, `${what}: blob ${desc.digest}`);
  const got = sha256(bytes);
  if (got !== desc.digest || bytes.length !== desc.size) {
    throw new ContentError(`${what}: blob ${desc.digest} does not match its digest (got ${got}, ${bytes.length} bytes); refusing it`);
  }
  return bytes;
}

/**
 * Streams one blob into the store. Bytes go through the store's hashing
 * writer; on a broken connection the download resumes at the byte where it
 * stopped (Range), or starts over when the registry ignores Range.
 */
export async function downloadBlob(
  store: Store,
  client: RegistryClient,
  repo: string,
  desc: Descriptor,
  what: string,
  opts: ClientOptions,
  signal: AbortSignal | undefined,
  progress?: ProgressFn,
): Promise<void> {
  const digest = desc.digest as Digest;
  const id = shortId(digest);
  let w = await store.blobWriter();
  let received = 0;
  let lastReport = 0;
  const report = (force = false) => {
    const now = Date.now();
    if (!force && now - lastReport < 100) return;
    lastReport = now;
    progress?.({ type: 'blob', kind: 'layer', id, digest, phase: 'downloading', current: received, total: desc.size });
  };
  const max = opts.retries ?? 4;
  let failures = 0;
  const restart = async () => {
    await w.abort();
    w = await store.blobWriter();
    received = 0;
  };
  try {
    for (;;) {
      const headers: Record<string, string> = {};
      if (received > 0) headers.range = `bytes=${received}-`;
      let failure: unknown;
      try {
        const res = await client.send({ method: 'GET', path: `/v2/${repo}/blobs/${digest}`, headers, scopes: [repositoryScope(repo, ['pull'])], what: `${what}: blob ${digest}`, expect: [200, 206], signal });
        if (received > 0 && res.statusCode === 200) {
          await restart(); // the registry ignored Range: start over from byte 0
        } else if (res.statusCode === 206) {
          const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(res, 'content-range') ?? '');
          if (!cr || Number(cr[1]) !== received) {
            await res.body.dump().catch(() => {});
            await restart();
            throw new RegistryError(`${what}: blob ${digest}: registry answered a Range request with an unexpected Content-Range "${header(res, 'content-range') ?? ''}"`, 502);
          }
        }
        report(true);
        for await (const chunk of res.body) {
          const b = chunk as Buffer;
          if (received + b.length > desc.size) {
            res.body.destroy();
            throw new ContentError(`${what}: blob ${digest} is larger than the ${desc.size} bytes its descriptor says; refusing it`);
          }
          if (!w.stream.write(b)) await once(w.stream, 'drain');
          received += b.length;
          report();
        }
        if (received === desc.size) break;
        failure = new RegistryError(`${what}: blob ${digest}: connection ended after ${received} of ${desc.size} bytes`, 502);
      } catch (e) {
        if (e instanceof ContentError || signal?.aborted) throw e;
        failure = e;
      }
      if (!isRetryable(failure)) throw failure;
      if (failures++ >= max) throw failure;
      const delayMs = failure instanceof RegistryError && failure.retryAfterMs !== undefined ? failure.retryAfterMs : backoffDelay(failures - 1, opts.retryBaseMs ?? 500);
      progress?.({ type: 'blob', kind: 'layer', id, digest, phase: 'retrying', current: received, total: desc.size, detail: (failure as Error).message });
      await sleep(delayMs, signal);
    }
    w.stream.end();
    try {
      await w.commit({ digest, size: desc.size });
    } catch (e) {
      if (e instanceof DigestMismatchError) throw new ContentError(`${what}: blob ${digest} does not match its digest (${e.message}); nothing was stored`);
      throw e;
    }
    report(true);
    progress?.({ type: 'blob', kind: 'layer', id, digest, phase: 'complete', current: desc.size, total: desc.size });
  } catch (e) {
    await w.abort();
    throw e;
  }
}

/** Tags of a repository (GET /v2/<name>/tags/list, following Link pagination). */
export async function listTags(refString: string, opts: ClientOptions = {}): Promise<string[]> {
  const { ref, repo, display } = target(refString);
  const client = newClient(ref.domain, opts);
  return listTagsWith(client, ref, repo, `list tags of ${display}`);
}

async function listTagsWith(client: RegistryClient, _ref: Reference, repo: string, what: string): Promise<string[]> {
  const out: string[] = [];
  let path: string | undefined = `/v2/${repo}/tags/list?n=1000`;
  for (let pages = 0; path && pages < 1000; pages++) {
    const res = await client.send({ method: 'GET', path, scopes: [repositoryScope(repo, ['pull'])], what });
    const j = JSON.parse((await readLimited(res.body, 16 * 1024 * 1024, what)).toString('utf8')) as { tags?: unknown };
    if (Array.isArray(j.tags)) for (const t of j.tags) if (typeof t === 'string') out.push(t);
    const link = header(res, 'link');
    const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
    path = m ? m[1] : undefined;
  }
  return out;
}
