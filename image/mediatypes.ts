// Media types of OCI image-spec and Docker image manifest v2 schema 2 objects,
// with small classifiers used by the store, the registry client and `save`/`load`.

// --- OCI image-spec v1 ---
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
/** Deprecated by image-spec 1.1 but still seen in the wild. */
export const OCI_LAYER_NONDIST = 'application/vnd.oci.image.layer.nondistributable.v1.tar';
export const OCI_LAYER_NONDIST_GZIP = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
export const OCI_LAYER_NONDIST_ZSTD = 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd';
/** The empty descriptor's media type (content is `{}`). */
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
/** Digest and size of the two-byte `{}` blob used with OCI_EMPTY. */
export const OCI_EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a' as const;
export const OCI_EMPTY_SIZE = 2;

// --- Docker image manifest v2, schema 2 ---
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
/** Some tools (and old docker save output) use an uncompressed variant. */
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
export const DOCKER_LAYER_FOREIGN = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
/** Docker schema1 types: recognised only so we can refuse them with a clear message. */
export const DOCKER_MANIFEST_V1 = 'application/vnd.docker.distribution.manifest.v1+json';
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

/** All of the above as one object, for `MEDIA_TYPES.OCI_MANIFEST`-style use. */
export const MEDIA_TYPES = {
  OCI_MANIFEST,
  OCI_INDEX,
  OCI_CONFIG,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD,
  OCI_LAYER_NONDIST,
  OCI_LAYER_NONDIST_GZIP,
  OCI_LAYER_NONDIST_ZSTD,
  OCI_EMPTY,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_CONFIG,
  DOCKER_LAYER_GZIP,
  DOCKER_LAYER,
  DOCKER_LAYER_FOREIGN,
  DOCKER_MANIFEST_V1,
  DOCKER_MANIFEST_V1_SIGNED,
} as const;

export const MANIFEST_TYPES: readonly string[] = [OCI_MANIFEST, DOCKER_MANIFEST];
export const INDEX_TYPES: readonly string[] = [OCI_INDEX, DOCKER_MANIFEST_LIST];
export const CONFIG_TYPES: readonly string[] = [OCI_CONFIG, DOCKER_CONFIG];
export const LAYER_TYPES: readonly string[] = [
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD,
  OCI_LAYER_NONDIST,
  OCI_LAYER_NONDIST_GZIP,
  OCI_LAYER_NONDIST_ZSTD,
  DOCKER_LAYER_GZIP,
  DOCKER_LAYER,
  DOCKER_LAYER_FOREIGN,
];

/** Value for an Accept header when fetching a manifest by tag or digest. */
export const MANIFEST_ACCEPT: readonly string[] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/** Strips parameters (`; charset=utf-8`) and surrounding whitespace, lowercases. */
export function baseMediaType(mediaType: string): string {
  const semi = mediaType.indexOf(';');
  return (semi >= 0 ? mediaType.slice(0, semi) : mediaType).trim().toLowerCase();
}

/** A single-image manifest (OCI or Docker schema2). */
export function isManifestType(mediaType: string): boolean {
  return MANIFEST_TYPES.includes(baseMediaType(mediaType));
}

/** A multi-platform index (OCI index or Docker manifest list). */
export function isIndexType(mediaType: string): boolean {
  return INDEX_TYPES.includes(baseMediaType(mediaType));
}

export function isConfigType(mediaType: string): boolean {
  return CONFIG_TYPES.includes(baseMediaType(mediaType));
}

export function isLayerType(mediaType: string): boolean {
  return LAYER_TYPES.includes(baseMediaType(mediaType));
}

/** Non-distributable (foreign) layers: registries may refuse them and pushers usually skip them. */
export function isNondistributableLayer(mediaType: string): boolean {
  const t = baseMediaType(mediaType);
  return t === DOCKER_LAYER_FOREIGN || t.startsWith('application/vnd.oci.image.layer.nondistributable.');
}

export type Compression = 'gzip' | 'zstd' | 'none';

/**
 * Compression of a layer blob judged by its media type. Throws for a media
 * type that is not a known layer type, so callers never guess.
 */
export function layerCompression(mediaType: string): Compression {
  const t = baseMediaType(mediaType);
  if (!LAYER_TYPES.includes(t)) throw new Error(`unsupported layer media type "${mediaType}"`);
  if (t.endsWith('+gzip') || t.endsWith('.tar.gzip')) return 'gzip';
  if (t.endsWith('+zstd')) return 'zstd';
  return 'none';
}
