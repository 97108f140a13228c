// Images as values read from (and written to) the store, in the spirit of
// go-containerregistry: an image is its manifest bytes, its config bytes and
// its layer descriptors; names are just index entries pointing at a manifest.
import { isDigest, sha256, type Digest } from './digest.js';
import { MEDIA_TYPES } from './mediatypes.js';
import { parseImageConfig, parseManifestJson, type Descriptor, type ImageConfig, type ImageManifest } from './schemas.js';
import { formatReference, parseReference, ReferenceError } from './reference.js';
import { NotFoundError, type ImageRecord, type IndexFile, type Store } from './store.js';

export interface LayerInfo {
  descriptor: Descriptor;
  /** Digest of the uncompressed tar, from the config's rootfs.diff_ids. */
  diffId: Digest;
}

export class StoredImage {
  constructor(
    readonly record: ImageRecord,
    readonly manifestBytes: Buffer,
    readonly manifest: ImageManifest,
    readonly configBytes: Buffer,
    readonly config: ImageConfig,
    readonly tags: string[],
  ) {}

  /** The image ID, as Docker shows it: the config digest. */
  get id(): Digest {
    return this.record.config;
  }

  get digest(): Digest {
    return this.record.digest;
  }

  get layers(): LayerInfo[] {
    const diffIds = this.config.rootfs.diff_ids;
    return this.manifest.layers.map((d, i) => ({ descriptor: d, diffId: diffIds[i] as Digest }));
  }
}

/** Canonical tag key in the index: docker.io/library/app:latest. Rejects digest references. */
export function tagKey(name: string): string {
  const r = parseReference(name);
  if (r.digest) throw new ReferenceError(`refusing to create a tag with a digest reference: "${name}"`);
  return formatReference({ domain: r.domain, path: r.path, tag: r.tag ?? 'latest' });
}

/** Loads and validates an image whose manifest is in the store. */
export async function loadImage(store: Store, digest: Digest, idx?: IndexFile): Promise<StoredImage> {
  const index = idx ?? (await store.readIndex());
  const rec = index.images[digest];
  if (!rec) throw new NotFoundError(`No such image: ${digest}`);
  const manifestBytes = await store.readBlob(rec.digest);
  const parsed = parseManifestJson(manifestBytes, `manifest ${rec.digest}`);
  if (parsed.kind !== 'manifest') throw new Error(`image ${rec.digest} is an index; only single-platform images are stored`);
  const configBytes = await store.readBlob(parsed.manifest.config.digest as Digest);
  const config = parseImageConfig(configBytes, `config ${parsed.manifest.config.digest}`);
  if (config.rootfs.diff_ids.length !== parsed.manifest.layers.length) {
    throw new Error(`image ${rec.digest}: manifest has ${parsed.manifest.layers.length} layers but config has ${config.rootfs.diff_ids.length} diff_ids`);
  }
  const tags = Object.entries(index.tags)
    .filter(([, d]) => d === rec.digest)
    .map(([t]) => t)
    .sort();
  return new StoredImage(rec, manifestBytes, parsed.manifest, configBytes, config, tags);
}

/**
 * Finds an image the way the Docker CLI does: a name (app, app:1, host/app@sha256:…),
 * a full image ID (sha256:… of the config) or manifest digest, or a unique ID prefix.
 */
export async function resolveImage(store: Store, nameOrId: string): Promise<StoredImage> {
  const idx = await store.readIndex();
  const digest = findImageDigest(idx, nameOrId);
  if (!digest) throw new NotFoundError(`No such image: ${nameOrId}`);
  return loadImage(store, digest, idx);
}

export function findImageDigest(idx: IndexFile, nameOrId: string): Digest | undefined {
  const s = nameOrId.trim();
  if (isDigest(s)) {
    if (idx.images[s]) return s;
    const byId = Object.values(idx.images).find((r) => r.config === s);
    return byId?.digest;
  }
  let refError: Error | undefined;
  try {
    const r = parseReference(s);
    if (r.digest) {
      return idx.images[r.digest] ? r.digest : undefined;
    }
    const hit = idx.tags[formatReference({ domain: r.domain, path: r.path, tag: r.tag ?? 'latest' })];
    if (hit && idx.images[hit]) return hit;
  } catch (e) {
    refError = e as Error;
  }
  const hex = s.startsWith('sha256:') ? s.slice(7) : s;
  if (/^[a-f0-9]{1,64}$/.test(hex)) {
    const matches = Object.values(idx.images).filter((r) => r.config.slice(7).startsWith(hex));
    const ids = new Set(matches.map((m) => m.config));
    if (ids.size > 1) throw new Error(`image ID prefix "${s}" is ambiguous: it matches ${ids.size} images`);
    if (matches.length >= 1) return newest(matches).digest;
  }
  if (refError) throw refError;
  return undefined;
}

function newest(recs: ImageRecord[]): ImageRecord {
  return [...recs].sort((a, b) => b.added.localeCompare(a.added))[0]!;
}

export interface NewImage {
  config: ImageConfig;
  layers: Descriptor[];
  /** 'oci' (default) or 'docker' schema2 media types. */
  format?: 'oci' | 'docker';
  annotations?: Record<string, string>;
}

/** Serialises config and manifest deterministically (stable key order from the objects given). */
export function buildManifest(img: NewImage): { configBytes: Buffer; manifestBytes: Buffer; manifestMediaType: string } {
  const docker = img.format === 'docker';
  const configBytes = Buffer.from(JSON.stringify(img.config));
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: docker ? MEDIA_TYPES.DOCKER_MANIFEST : MEDIA_TYPES.OCI_MANIFEST,
    config: {
      mediaType: docker ? MEDIA_TYPES.DOCKER_CONFIG : MEDIA_TYPES.OCI_CONFIG,
      digest: sha256(configBytes),
      size: configBytes.length,
    },
    layers: img.layers.map((l) => ({
      mediaType: docker ? MEDIA_TYPES.DOCKER_LAYER_GZIP : l.mediaType,
      digest: l.digest,
      size: l.size,
      ...(l.annotations ? { annotations: l.annotations } : {}),
    })),
  };
  if (img.annotations) manifest.annotations = img.annotations;
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  return { configBytes, manifestBytes, manifestMediaType: manifest.mediaType as string };
}

/**
 * Writes config and manifest blobs (layer blobs must already be in the store),
 * records the image and points the given tags at it. Call inside
 * store.withWriteSession() together with the layer writes so GC cannot interleave.
 */
export async function writeImage(store: Store, img: NewImage, tags: string[] = []): Promise<StoredImage> {
  for (const l of img.layers) {
    if (!(await store.hasBlob(l.digest as Digest))) throw new Error(`layer blob ${l.digest} is not in the store`);
  }
  const { configBytes, manifestBytes, manifestMediaType } = buildManifest(img);
  const cfg = await store.putBlob(configBytes);
  const man = await store.putBlob(manifestBytes);
  await recordImage(store, { digest: man.digest, size: man.size, mediaType: manifestMediaType, config: cfg.digest }, tags);
  return loadImage(store, man.digest);
}

/** Adds an image record for a manifest already in the store and moves tags to it. */
export async function recordImage(store: Store, rec: Omit<ImageRecord, 'added'>, tags: string[]): Promise<void> {
  const keys = tags.map(tagKey);
  await store.updateIndex((idx) => {
    idx.images[rec.digest] ??= { ...rec, added: new Date().toISOString() };
    for (const k of keys) idx.tags[k] = rec.digest;
  });
}

export async function tagImage(store: Store, source: string, target: string): Promise<void> {
  const img = await resolveImage(store, source);
  const key = tagKey(target);
  await store.updateIndex((idx) => {
    if (!idx.images[img.digest]) throw new NotFoundError(`No such image: ${source}`);
    idx.tags[key] = img.digest;
  });
}

/** Display form of a tag key: docker.io/library/app:latest -> app:latest. */
export function shortTag(key: string): string {
  return key.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
}

export function splitTag(key: string): { repository: string; tag: string } {
  const short = shortTag(key);
  const i = short.lastIndexOf(':');
  if (i > short.lastIndexOf('/')) return { repository: short.slice(0, i), tag: short.slice(i + 1) };
  return { repository: short, tag: '<none>' };
}
