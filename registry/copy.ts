// copy: registry -> registry without touching the store, like `crane copy`.
// Every manifest of an index (or only one platform with `platform`) is copied
// with its blobs, then the index itself, byte for byte, so digests stay the
// same. Blobs stream from the source GET into the destination upload and are
// hashed on the way; within one registry they are mounted instead.
import { Transform, type TransformCallback } from 'node:stream';
import { createHash } from 'node:crypto';
import type { Digest } from '../image/digest.js';
import { isNondistributableLayer } from '../image/mediatypes.js';
import type { Descriptor } from '../image/schemas.js';
import { repositoryScope } from './auth.js';
import { fetchManifest, newClient, parallel, parsePlatform, selectPlatform, target, type FetchedManifest, type ProgressFn } from './common.js';
import { ContentError, RegistryError } from './errors.js';
import { putManifest } from './push.js';
import { pushBlob, type BlobToPush, type UploadOptions } from './upload.js';

export interface CopyOptions extends UploadOptions {
  /** Copy only this platform's manifest out of an index (the destination gets that manifest). */
  platform?: string;
  concurrency?: number;
  onProgress?: ProgressFn;
}

export interface CopyResult {
  source: string;
  destination: string;
  digest: Digest;
  size: number;
  mediaType: string;
  pushed: number;
  mounted: number;
  existed: number;
}

export async function copyImage(src: string, dst: string, opts: CopyOptions = {}): Promise<CopyResult> {
  const s = target(src);
  const d = target(dst);
  const what = `copy ${s.display} -> ${d.display}`;
  const srcClient = newClient(s.ref.domain, opts, opts.onProgress);
  const sameRegistry = s.ref.domain === d.ref.domain;
  const dstClient = sameRegistry ? srcClient : newClient(d.ref.domain, opts, opts.onProgress);
  const counts = { pushed: 0, mounted: 0, existed: 0 };

  let top = await fetchManifest(srcClient, s.repo, s.ref.digest ?? s.ref.tag!, what);
  if (opts.platform && top.parsed.kind === 'index') {
    const desc = selectPlatform(top.parsed.index, parsePlatform(opts.platform), what);
    top = await fetchManifest(srcClient, s.repo, desc.digest, what, { digest: desc.digest as Digest, size: desc.size });
  }
  if (d.ref.digest && d.ref.digest !== top.digest) {
    throw new RegistryError(`${what}: the destination digest ${d.ref.digest} does not match the source's ${top.digest}`);
  }
  const dstTag = d.ref.digest ? top.digest : d.ref.tag!;

  const copyBlobs = async (descs: Descriptor[], config: string) => {
    const blobs: BlobToPush[] = descs.map((desc) => ({
      digest: desc.digest as Digest,
      size: desc.size,
      kind: desc.digest === config ? 'config' : 'layer',
      mountFrom: sameRegistry ? [s.repo] : [],
      open: async () => {
        const res = await srcClient.send({ method: 'GET', path: `/v2/${s.repo}/blobs/${desc.digest}`, scopes: [repositoryScope(s.repo, ['pull'])], what: `${what}: blob ${desc.digest}`, signal: opts.signal });
        const check = new Verifier(desc.digest as Digest, desc.size, what);
        res.body.on('error', (e) => check.destroy(e));
        return res.body.pipe(check);
      },
    }));
    await parallel(
      blobs,
      opts.concurrency ?? 3,
      async (b, signal) => {
        const r = await pushBlob(dstClient, d.repo, b, what, { ...opts, signal });
        counts[r.outcome === 'pushed' ? 'pushed' : r.outcome === 'mounted' ? 'mounted' : 'existed']++;
      },
      opts.signal,
    );
  };

  const copyManifest = async (m: FetchedManifest, tagOrDigest: string, depth: number): Promise<void> => {
    if (depth > 4) throw new RegistryError(`${what}: indexes nested more than 4 deep`);
    if (m.parsed.kind === 'index') {
      for (const child of m.parsed.index.manifests) {
        const fetched = await fetchManifest(srcClient, s.repo, child.digest, what, { digest: child.digest as Digest, size: child.size });
        await copyManifest(fetched, child.digest, depth + 1);
      }
    } else {
      const man = m.parsed.manifest;
      const descs = [man.config, ...man.layers.filter((l) => !(isNondistributableLayer(l.mediaType) && l.urls?.length))];
      await copyBlobs([...new Map(descs.map((x) => [x.digest, x])).values()], man.config.digest);
    }
    await putManifest(dstClient, d.repo, tagOrDigest, m.bytes, m.mediaType, m.digest, what);
  };

  await copyManifest(top, dstTag, 0);
  return { source: s.display, destination: d.display, digest: top.digest, size: top.bytes.length, mediaType: top.mediaType, ...counts };
}

/** Passes bytes through, failing the stream when they do not hash to the digest or overrun the size. */
class Verifier extends Transform {
  private hash = createHash('sha256');
  private n = 0;
  constructor(
    private digest: Digest,
    private size: number,
    private what: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.n += chunk.length;
    if (this.n > this.size) return cb(new ContentError(`${this.what}: source blob ${this.digest} is larger than ${this.size} bytes`));
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.digest || this.n !== this.size) return cb(new ContentError(`${this.what}: source blob ${this.digest} does not match its digest (got ${got}, ${this.n} bytes)`));
    cb();
  }
}

