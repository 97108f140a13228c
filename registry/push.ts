// push: store -> registry. Layers (several at once) and then the config go up
// streamed from the store's blob files — skipped when the registry has them,
// mounted from another repository of the same registry when we know one —
// and the manifest last, with its exact bytes and Content-Type = mediaType.
import { createReadStream } from 'node:fs';
import type { Digest } from '../image/digest.js';
import { resolveImage } from '../image/images.js';
import { isNondistributableLayer } from '../image/mediatypes.js';
import { formatReference, parseReference, repositoryName } from '../image/reference.js';
import type { Store } from '../image/store.js';
import { repositoryScope } from './auth.js';
import { blobSources, recordBlobSources } from './blob-sources.js';
import { newClient, parallel, type ProgressFn } from './common.js';
import { ContentError, RegistryError } from './errors.js';
import { header, type RegistryClient } from './transport.js';
import { pushBlob, type BlobToPush, type UploadOptions } from './upload.js';

export interface PushOptions extends UploadOptions {
  /** Blobs uploaded at once (default 3). */
  concurrency?: number;
  onProgress?: ProgressFn;
}

export interface PushResult {
  /** Full normalised destination ("127.0.0.1:5000/app:1"). */
  reference: string;
  /** The tag pushed, or undefined when pushed by digest. */
  tag?: string;
  digest: Digest;
  size: number;
  /** Counts of layer outcomes. */
  pushed: number;
  mounted: number;
  existed: number;
}

/**
 * Pushes the local image `localRef` (a name or ID in the store) to `remoteRef`
 * (default: the same name). Used by `push` and by `build --push`.
 */
export async function pushImage(store: Store, localRef: string, remoteRef?: string, opts: PushOptions = {}): Promise<PushResult> {
  const image = await resolveImage(store, localRef);
  const dst = parseReference(remoteRef ?? localRef);
  if (dst.digest && dst.digest !== image.digest) {
    throw new RegistryError(`push ${formatReference(dst)}: the digest in the reference does not match the image's manifest digest ${image.digest}`);
  }
  const display = formatReference(dst);
  const what = `push ${display}`;
  const client = newClient(dst.domain, opts, opts.onProgress);
  const repo = dst.path;
  const host = dst.domain;
  const mountCandidates = async (d: string): Promise<string[]> =>
    (await blobSources(store, d)).filter((r) => r.startsWith(`${host}/`)).map((r) => r.slice(host.length + 1)).filter((p) => p !== repo);

  const blobOf = async (d: Digest, size: number, kind: 'layer' | 'config'): Promise<BlobToPush> => {
    const actual = await store.blobSize(d);
    if (actual !== size) throw new ContentError(`${what}: store blob ${d} has ${actual} bytes, but the manifest says ${size}`);
    return { digest: d, size, kind, open: async () => createReadStream(store.blobPath(d), { highWaterMark: 1024 * 1024 }), mountFrom: await mountCandidates(d) };
  };

  const layers = [...new Map(image.manifest.layers.filter((l) => !isNondistributableLayer(l.mediaType) || !l.urls?.length).map((l) => [l.digest, l])).values()];
  const counts = { pushed: 0, mounted: 0, existed: 0 };
  for (const l of layers) opts.onProgress?.({ type: 'blob', kind: 'layer', id: l.digest.slice(7, 19), digest: l.digest as Digest, phase: 'preparing', total: l.size });
  await store.withWriteSession(async () => {
    const blobs = await Promise.all(layers.map((l) => blobOf(l.digest as Digest, l.size, 'layer')));
    await parallel(
      blobs,
      opts.concurrency ?? 3,
      async (b, signal) => {
        const r = await pushBlob(client, repo, b, what, { ...opts, signal });
        if (r.outcome === 'pushed') counts.pushed++;
        else if (r.outcome === 'mounted') counts.mounted++;
        else counts.existed++;
      },
      opts.signal,
    );
    const cfg = image.manifest.config;
    await pushBlob(client, repo, await blobOf(cfg.digest as Digest, cfg.size, 'config'), what, opts);
  });
  const tagOrDigest = dst.digest ? image.digest : (dst.tag ?? 'latest');
  await putManifest(client, repo, tagOrDigest, image.manifestBytes, image.record.mediaType, image.digest, what);
  await recordBlobSources(store, repositoryName(dst), [...layers.map((l) => l.digest), image.manifest.config.digest]).catch(() => {});
  return { reference: display, tag: dst.digest ? undefined : tagOrDigest, digest: image.digest, size: image.manifestBytes.length, ...counts };
}

/** PUT a manifest with its exact bytes; checks the digest the registry reports. */
export async function putManifest(client: RegistryClient, repo: string, tagOrDigest: string, bytes: Buffer, mediaType: string, digest: Digest, what: string): Promise<void> {
  const res = await client.send({
    method: 'PUT',
    path: `/v2/${repo}/manifests/${tagOrDigest}`,
    headers: { 'content-type': mediaType },
    body: bytes,
    scopes: [repositoryScope(repo, ['pull', 'push'])],
    expect: [201],
    what,
  });
  await res.body.dump().catch(() => {});
  const got = header(res, 'docker-content-digest');
  if (got && got !== digest) throw new ContentError(`${what}: registry stored the manifest as ${got}, expected ${digest}`);
}
