// Pieces shared by pull, push and copy: progress events, bounded parallelism,
// platform choice, and fetching a manifest with its digest checked.
import { createHash } from 'node:crypto';
import { isDigest, type Digest } from '../image/digest.js';
import { MANIFEST_ACCEPT, isManifestType } from '../image/mediatypes.js';
import { formatReference, parseReference, type Reference } from '../image/reference.js';
import { parseManifestJson, SchemaError, type Descriptor, type ImageIndex, type ParsedManifest } from '../image/schemas.js';
import { repositoryScope } from './auth.js';
import { ContentError, RegistryError } from './errors.js';
import { header, readLimited, RegistryClient, type ClientOptions } from './transport.js';

/** What pull/push/copy report while they work; the CLI draws bars or lines from these. */
export type ProgressEvent =
  | {
      type: 'blob';
      /** Short id: the first 12 hex digits of the digest, as Docker shows layers. */
      id: string;
      digest: Digest;
      phase: BlobPhase;
      /** Bytes done and total, for downloading/uploading. */
      current?: number;
      total?: number;
      /** Repository a blob was mounted from; reason of a retry. */
      detail?: string;
      /** Config blobs are not shown by Docker; the CLI may hide them. */
      kind: 'layer' | 'config';
    }
  | { type: 'info'; message: string };

export type BlobPhase =
  | 'waiting'
  | 'downloading'
  | 'exists'
  | 'complete'
  | 'preparing'
  | 'uploading'
  | 'pushed'
  | 'mounted'
  | 'retrying';

export type ProgressFn = (e: ProgressEvent) => void;

export function shortId(d: string): string {
  return d.replace(/^sha256:/, '').slice(0, 12);
}

/** Manifests and indexes larger than this are refused (containerd uses the same bound). */
export const MANIFEST_LIMIT = 4 * 1024 * 1024;
/** Image configs larger than this are refused: they are read into memory. */
export const CONFIG_LIMIT = 64 * 1024 * 1024;

/** Runs fn over items with at most `limit` at once; the first failure aborts the others. */
export async function parallel<T>(items: T[], limit: number, fn: (item: T, signal: AbortSignal) => Promise<void>, outer?: AbortSignal): Promise<void> {
  const ac = new AbortController();
  const onOuter = () => ac.abort(outer?.reason);
  outer?.addEventListener('abort', onOuter, { once: true });
  let next = 0;
  let firstError: unknown;
  const worker = async () => {
    while (next < items.length && !ac.signal.aborted) {
      const item = items[next++]!;
      try {
        await fn(item, ac.signal);
      } catch (e) {
        if (firstError === undefined) firstError = e;
        ac.abort(e);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  } finally {
    outer?.removeEventListener('abort', onOuter);
  }
  if (firstError !== undefined) throw firstError;
  if (outer?.aborted) throw outer.reason;
}

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

const HOST_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function defaultPlatform(): PlatformSpec {
  return { os: 'linux', architecture: HOST_ARCH[process.arch] ?? process.arch };
}

/** "linux/amd64", "linux/arm64/v8", "linux/arm/v7". */
export function parsePlatform(s: string): PlatformSpec {
  const parts = s.trim().toLowerCase().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new Error(`invalid platform "${s}": expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: { os?: string; architecture?: string; variant?: string }): string {
  return [p.os ?? '?', p.architecture ?? '?', ...(p.variant ? [p.variant] : [])].join('/');
}

/** The index entry for a platform (an exact variant match preferred), or a clear error. */
export function selectPlatform(index: ImageIndex, want: PlatformSpec, where: string): Descriptor {
  const candidates = index.manifests.filter((m) => isManifestType(m.mediaType) && m.platform && m.platform.os === want.os && m.platform.architecture === want.architecture);
  const norm = (v: string | undefined, arch: string) => v ?? (arch === 'arm64' ? 'v8' : undefined);
  const exact = candidates.find((m) => norm(m.platform!.variant, want.architecture) === norm(want.variant, want.architecture));
  const hit = exact ?? (want.variant ? undefined : candidates[0]);
  if (hit) return hit;
  const available = index.manifests
    .filter((m) => m.platform && m.platform.os !== 'unknown')
    .map((m) => formatPlatform(m.platform!))
    .join(', ');
  throw new RegistryError(`${where}: no matching manifest for ${formatPlatform(want)} in the manifest list entries${available ? ` (available: ${available})` : ''}`);
}

export interface FetchedManifest {
  bytes: Buffer;
  digest: Digest;
  mediaType: string;
  parsed: ParsedManifest;
}

/**
 * GET a manifest by tag or digest. The bytes are hashed: a digest reference
 * must match, and so must the registry's Docker-Content-Digest header.
 */
export async function fetchManifest(client: RegistryClient, repo: string, tagOrDigest: string, what: string, expected?: { digest?: Digest; size?: number }): Promise<FetchedManifest> {
  const res = await client.send({
    method: 'GET',
    path: `/v2/${repo}/manifests/${tagOrDigest}`,
    headers: { accept: MANIFEST_ACCEPT.join(', ') },
    scopes: [repositoryScope(repo, ['pull'])],
    what,
  });
  const bytes = await readLimited(res.body, MANIFEST_LIMIT, `${what}: manifest`);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
  const want = expected?.digest ?? (isDigest(tagOrDigest) ? tagOrDigest : undefined);
  if (want && want !== digest) throw new ContentError(`${what}: manifest digest mismatch: expected ${want}, got ${digest}; refusing it`);
  if (expected?.size !== undefined && expected.size !== bytes.length) {
    throw new ContentError(`${what}: manifest ${digest} has ${bytes.length} bytes, but its descriptor says ${expected.size}`);
  }
  const dcd = header(res, 'docker-content-digest');
  if (dcd && isDigest(dcd) && dcd !== digest) {
    throw new ContentError(`${what}: manifest digest mismatch: the registry says ${dcd}, the content hashes to ${digest}`);
  }
  const contentType = header(res, 'content-type');
  let parsed: ParsedManifest;
  try {
    parsed = parseManifestJson(bytes, `${what}: manifest ${digest}`, contentType);
  } catch (e) {
    if (e instanceof SchemaError) throw new RegistryError(e.message);
    throw e;
  }
  return { bytes, digest, mediaType: parsed.mediaType, parsed };
}

/** Parses a reference and names the repository for messages and requests. */
export function target(ref: string): { ref: Reference; repo: string; display: string } {
  const r = parseReference(ref);
  return { ref: r, repo: r.path, display: formatReference(r) };
}

export function newClient(host: string, opts: ClientOptions, progress?: ProgressFn): RegistryClient {
  return new RegistryClient(host, {
    ...opts,
    onRetry: (info) => {
      opts.onRetry?.(info);
      progress?.({ type: 'info', message: `${info.what}: ${info.reason}; retrying in ${(info.delayMs / 1000).toFixed(1)}s (attempt ${info.attempt + 1})` });
    },
  });
}
