// zod schemas for the JSON documents of OCI image-spec v1.1 and Docker image
// manifest v2 schema 2: descriptors, manifests, indexes / manifest lists and
// image configs, plus parse helpers with readable errors.
//
// Every object schema is .passthrough(): fields we don't know survive a
// parse -> serialise round trip. That matters for image configs, which we
// rewrite when building on top of someone else's image; manifests are kept as
// exact bytes anyway, so their parse result is only ever read.
import { z } from 'zod';
import { isDigest, type Digest } from './digest.js';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1,
  DOCKER_MANIFEST_V1_SIGNED,
  OCI_INDEX,
  OCI_MANIFEST,
} from './mediatypes.js';

// ---------------------------------------------------------------- primitives

function digestProblem(s: string): string {
  const m = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):/.exec(s);
  if (m && m[1] !== 'sha256') return `unsupported digest algorithm "${m[1]}" in "${s}" (only sha256 is supported)`;
  return `"${s}" is not a valid sha256 digest (expected "sha256:" followed by 64 lowercase hex digits)`;
}

/** A `sha256:<64 hex>` string; other algorithms are refused. */
export const DigestSchema = z.string().refine((s): s is Digest => isDigest(s), (s) => ({ message: digestProblem(s) }));

const SizeSchema = z.number().int().nonnegative().safe();
const StringMap = z.record(z.string());
/** Docker's "set of strings" encoding: `{"80/tcp": {}}`. */
const EmptyObjectMap = z.record(z.object({}).passthrough());

// ---------------------------------------------------------------- descriptors

export const PlatformSchema = z
  .object({
    architecture: z.string(),
    os: z.string(),
    'os.version': z.string().optional(),
    'os.features': z.array(z.string()).optional(),
    variant: z.string().optional(),
    /** Reserved by OCI, used by old Docker manifest lists. */
    features: z.array(z.string()).optional(),
  })
  .passthrough();
export type Platform = z.infer<typeof PlatformSchema>;

export const DescriptorSchema = z
  .object({
    mediaType: z.string(),
    digest: DigestSchema,
    size: SizeSchema,
    urls: z.array(z.string()).optional(),
    annotations: StringMap.optional(),
    /** Base64 embedded content (OCI 1.1); must match digest when present. */
    data: z.string().optional(),
    platform: PlatformSchema.optional(),
    artifactType: z.string().optional(),
  })
  .passthrough();
export type Descriptor = z.infer<typeof DescriptorSchema>;

// ---------------------------------------------------------------- manifests

export const OciManifestSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.literal(OCI_MANIFEST).optional(),
    artifactType: z.string().optional(),
    config: DescriptorSchema,
    layers: z.array(DescriptorSchema),
    subject: DescriptorSchema.optional(),
    annotations: StringMap.optional(),
  })
  .passthrough();
export type OciManifest = z.infer<typeof OciManifestSchema>;

export const OciIndexSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.literal(OCI_INDEX).optional(),
    artifactType: z.string().optional(),
    manifests: z.array(DescriptorSchema),
    subject: DescriptorSchema.optional(),
    annotations: StringMap.optional(),
  })
  .passthrough();
export type OciIndex = z.infer<typeof OciIndexSchema>;

export const DockerManifestSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.literal(DOCKER_MANIFEST),
    config: DescriptorSchema,
    layers: z.array(DescriptorSchema),
  })
  .passthrough();
export type DockerManifest = z.infer<typeof DockerManifestSchema>;

export const DockerManifestListSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.literal(DOCKER_MANIFEST_LIST),
    manifests: z.array(DescriptorSchema),
  })
  .passthrough();
export type DockerManifestList = z.infer<typeof DockerManifestListSchema>;

/** A single-platform image manifest, OCI or Docker. */
export type ImageManifest = OciManifest | DockerManifest;
/** A multi-platform list, OCI index or Docker manifest list. */
export type ImageIndex = OciIndex | DockerManifestList;

// ---------------------------------------------------------------- image config

// Docker writes Go nil slices/maps as null (e.g. "Cmd": null), so the list and
// map fields of the container config are nullish.
export const HealthcheckSchema = z
  .object({
    Test: z.array(z.string()).nullish(),
    /** Durations are in nanoseconds. */
    Interval: z.number().int().optional(),
    Timeout: z.number().int().optional(),
    StartPeriod: z.number().int().optional(),
    StartInterval: z.number().int().optional(),
    Retries: z.number().int().optional(),
  })
  .passthrough();
export type Healthcheck = z.infer<typeof HealthcheckSchema>;

export const ContainerConfigSchema = z
  .object({
    User: z.string().optional(),
    ExposedPorts: EmptyObjectMap.nullish(),
    Env: z.array(z.string()).nullish(),
    Entrypoint: z.array(z.string()).nullish(),
    Cmd: z.array(z.string()).nullish(),
    Volumes: EmptyObjectMap.nullish(),
    WorkingDir: z.string().optional(),
    Labels: StringMap.nullish(),
    StopSignal: z.string().optional(),
    Healthcheck: HealthcheckSchema.nullish(),
    OnBuild: z.array(z.string()).nullish(),
    Shell: z.array(z.string()).nullish(),
    ArgsEscaped: z.boolean().optional(),
  })
  .passthrough();
export type ContainerConfig = z.infer<typeof ContainerConfigSchema>;

export const RootFSSchema = z
  .object({
    type: z.literal('layers'),
    diff_ids: z.array(DigestSchema),
  })
  .passthrough();
export type RootFS = z.infer<typeof RootFSSchema>;

export const HistorySchema = z
  .object({
    created: z.string().optional(),
    created_by: z.string().optional(),
    author: z.string().optional(),
    comment: z.string().optional(),
    empty_layer: z.boolean().optional(),
  })
  .passthrough();
export type History = z.infer<typeof HistorySchema>;

/** OCI image config and Docker container.image.v1 share this shape. */
export const ImageConfigSchema = z
  .object({
    created: z.string().optional(),
    author: z.string().optional(),
    architecture: z.string(),
    os: z.string(),
    'os.version': z.string().optional(),
    'os.features': z.array(z.string()).optional(),
    variant: z.string().optional(),
    config: ContainerConfigSchema.optional(),
    rootfs: RootFSSchema,
    history: z.array(HistorySchema).optional(),
  })
  .passthrough();
export type ImageConfig = z.infer<typeof ImageConfigSchema>;

// ---------------------------------------------------------------- errors

/** Thrown by the parse helpers; `message` is already human-readable. */
export class SchemaError extends Error {
  constructor(
    message: string,
    readonly where: string,
    readonly issues: readonly z.ZodIssue[] = [],
  ) {
    super(message);
    this.name = 'SchemaError';
  }
}

const IDENT_RE = /^[A-Za-z_$][\w$]*$/;

/** `layers[0].digest`, `config.Labels["org.opencontainers.image.title"]`. */
export function formatIssuePath(path: readonly (string | number)[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (IDENT_RE.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(key)}]`;
  }
  return out;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Error map giving terse lowercase messages; custom (refine) messages pass through. */
const errorMap: z.ZodErrorMap = (issue, ctx) => {
  switch (issue.code) {
    case z.ZodIssueCode.invalid_type:
      if (issue.received === 'undefined') return { message: `required ${issue.expected} is missing` };
      return { message: `expected ${issue.expected}, got ${issue.received}` };
    case z.ZodIssueCode.invalid_literal:
      return {
        message: `expected ${JSON.stringify(issue.expected)}, got ${
          issue.received === undefined ? 'nothing' : JSON.stringify(issue.received)
        }`,
      };
    case z.ZodIssueCode.too_small:
      if (issue.type === 'number') return { message: `must be ${issue.inclusive ? '>=' : '>'} ${issue.minimum}` };
      break;
    case z.ZodIssueCode.too_big:
      if (issue.type === 'number') return { message: `must be ${issue.inclusive ? '<=' : '<'} ${issue.maximum}` };
      break;
  }
  return { message: ctx.defaultError };
};

/** Turns zod issues into `path: message; path: message`. */
export function formatZodError(err: z.ZodError | readonly z.ZodIssue[]): string {
  const issues = Array.isArray(err) ? (err as readonly z.ZodIssue[]) : (err as z.ZodError).issues;
  if (issues.length === 0) return 'invalid value';
  return issues
    .map((i) => {
      const p = formatIssuePath(i.path);
      return p ? `${p}: ${i.message}` : i.message;
    })
    .join('; ');
}

// ---------------------------------------------------------------- parse helpers

function decodeJsonObject(bytes: Buffer | string, where: string, what: string): Record<string, unknown> {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new SchemaError(`${where}: invalid ${what}: not valid JSON (${(e as Error).message})`, where);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SchemaError(`${where}: invalid ${what}: expected a JSON object, got ${describeValue(value)}`, where);
  }
  return value as Record<string, unknown>;
}

function validate<S extends z.ZodTypeAny>(schema: S, value: unknown, where: string, what: string): z.output<S> {
  const r = schema.safeParse(value, { errorMap });
  if (!r.success) {
    throw new SchemaError(`${where}: invalid ${what}: ${formatZodError(r.error)}`, where, r.error.issues);
  }
  return r.data;
}

export type ManifestMediaType = typeof OCI_MANIFEST | typeof DOCKER_MANIFEST;
export type IndexMediaType = typeof OCI_INDEX | typeof DOCKER_MANIFEST_LIST;

export type ParsedManifest =
  | { kind: 'manifest'; mediaType: ManifestMediaType; manifest: ImageManifest }
  | { kind: 'index'; mediaType: IndexMediaType; index: ImageIndex };

/**
 * Parses manifest or index JSON. The kind is decided by the `mediaType` field;
 * when that is absent (allowed by OCI), by `manifests` (index) versus `layers`
 * (manifest), and failing that by `contentType` (e.g. a registry's
 * Content-Type header). Docker schema1 manifests are refused.
 * Errors read `<where>: invalid image manifest: layers[0].digest: ...`.
 */
export function parseManifestJson(bytes: Buffer | string, where: string, contentType?: string): ParsedManifest {
  const obj = decodeJsonObject(bytes, where, 'image manifest');
  const mt = obj['mediaType'];
  let kind: ManifestMediaType | IndexMediaType;
  if (mt !== undefined) {
    if (typeof mt !== 'string') {
      throw new SchemaError(`${where}: invalid image manifest: mediaType: expected string, got ${describeValue(mt)}`, where);
    }
    if (mt === OCI_MANIFEST || mt === DOCKER_MANIFEST || mt === OCI_INDEX || mt === DOCKER_MANIFEST_LIST) kind = mt;
    else if (mt === DOCKER_MANIFEST_V1 || mt === DOCKER_MANIFEST_V1_SIGNED) throw schema1(where);
    else throw new SchemaError(`${where}: unsupported manifest media type "${mt}"`, where);
  } else {
    if (obj['schemaVersion'] === 1) throw schema1(where);
    const hasManifests = 'manifests' in obj;
    const hasLayers = 'layers' in obj;
    const ct = contentType?.split(';')[0]?.trim().toLowerCase();
    if (hasManifests && !hasLayers) kind = OCI_INDEX;
    else if (hasLayers && !hasManifests) kind = OCI_MANIFEST;
    else if (ct === OCI_MANIFEST || ct === OCI_INDEX) kind = ct;
    else {
      const why = hasLayers ? 'has both "manifests" and "layers"' : 'has neither "manifests" nor "layers"';
      throw new SchemaError(`${where}: invalid image manifest: no mediaType and ${why}, cannot tell a manifest from an index`, where);
    }
  }
  switch (kind) {
    case OCI_MANIFEST:
      return { kind: 'manifest', mediaType: kind, manifest: validate(OciManifestSchema, obj, where, 'image manifest') };
    case DOCKER_MANIFEST:
      return { kind: 'manifest', mediaType: kind, manifest: validate(DockerManifestSchema, obj, where, 'image manifest') };
    case OCI_INDEX:
      return { kind: 'index', mediaType: kind, index: validate(OciIndexSchema, obj, where, 'image index') };
    case DOCKER_MANIFEST_LIST:
      return { kind: 'index', mediaType: kind, index: validate(DockerManifestListSchema, obj, where, 'manifest list') };
  }
}

function schema1(where: string): SchemaError {
  return new SchemaError(
    `${where}: unsupported manifest: Docker schema1 manifests are deprecated and not supported (re-push the image with a current client)`,
    where,
  );
}

/** Parses an OCI or Docker image config blob. Unknown fields are kept. */
export function parseImageConfig(bytes: Buffer | string, where: string): ImageConfig {
  const obj = decodeJsonObject(bytes, where, 'image config');
  return validate(ImageConfigSchema, obj, where, 'image config');
}

/** Validates an already-decoded descriptor (e.g. from an OCI layout's index.json). */
export function parseDescriptor(value: unknown, where: string): Descriptor {
  return validate(DescriptorSchema, value, where, 'descriptor');
}
