// Volumes, as Docker's local driver keeps them:
//
//   <root>/volumes/<name>/_data          what the container sees
//   <root>/volumes/<name>/volume.json    Name, CreatedAt, Labels, Anonymous
//
// `-v name:/path` creates the volume on first use; `-v /path` (or an image
// VOLUME nobody mounted over) gets an anonymous one with a random 64-hex name,
// removed by `rm -v` or `run --rm`. A volume is in use while any container's
// config lists it; `volume rm` refuses then.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../image/atomic.js';
import type { Store } from '../image/store.js';
import type { BindSpec } from './spec.js';

export interface VolumeRecord {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Scope: 'local';
  Anonymous?: boolean;
}

/** One entry of a container's Mounts, as `docker inspect` shows it. */
export interface MountRecord {
  Type: 'bind' | 'volume';
  /** Volume name (Type volume). */
  Name?: string;
  Source: string;
  Destination: string;
  RW: boolean;
  /** Created for this container alone (removed by rm -v / --rm). */
  Anonymous?: boolean;
}

export class VolumeError extends Error {}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function volumesDir(root: string): string {
  return path.join(root, 'volumes');
}

export async function readVolume(root: string, name: string): Promise<VolumeRecord | undefined> {
  try {
    return JSON.parse(await fsp.readFile(path.join(volumesDir(root), name, 'volume.json'), 'utf8')) as VolumeRecord;
  } catch {
    return undefined;
  }
}

export async function listVolumes(root: string): Promise<VolumeRecord[]> {
  let names: string[];
  try {
    names = await fsp.readdir(volumesDir(root));
  } catch {
    return [];
  }
  const out: VolumeRecord[] = [];
  for (const n of names.sort()) {
    const v = await readVolume(root, n);
    if (v) out.push(v);
  }
  return out;
}

/** Creates the volume if it does not exist (under the store's "volumes" lock); returns it. */
export async function createVolume(store: Store, name?: string, opts: { labels?: Record<string, string>; anonymous?: boolean } = {}): Promise<VolumeRecord> {
  const n = name ?? randomBytes(32).toString('hex');
  if (!NAME_RE.test(n)) throw new VolumeError(`create ${n}: "${n}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`);
  await fsp.mkdir(volumesDir(store.root), { recursive: true, mode: 0o700 });
  return store.withLock('volumes', 'exclusive', async () => {
    const existing = await readVolume(store.root, n);
    if (existing) return existing;
    const dir = path.join(volumesDir(store.root), n);
    await fsp.mkdir(path.join(dir, '_data'), { recursive: true, mode: 0o755 });
    const rec: VolumeRecord = {
      Name: n,
      Driver: 'local',
      Mountpoint: path.join(dir, '_data'),
      CreatedAt: new Date().toISOString(),
      Labels: opts.labels ?? {},
      Scope: 'local',
      ...(opts.anonymous ? { Anonymous: true } : {}),
    };
    await writeJsonAtomic(path.join(dir, 'volume.json'), rec);
    return rec;
  });
}

/** Removes a volume; `inUse` lists containers using it (the caller knows the containers). */
export async function removeVolume(store: Store, name: string, inUseBy: string[]): Promise<void> {
  if (!(await readVolume(store.root, name))) throw new VolumeError(`get ${name}: no such volume`);
  if (inUseBy.length) throw new VolumeError(`remove ${name}: volume is in use - [${inUseBy.join(', ')}]`);
  await store.withLock('volumes', 'exclusive', () => fsp.rm(path.join(volumesDir(store.root), name), { recursive: true, force: true }));
}

/**
 * Parses one `-v` value: `/host:/ctr[:ro|rw]`, `name:/ctr[:opts]` or `/ctr`
 * (anonymous). Throws VolumeError with Docker's wording for a bad spec.
 */
export function parseVolumeSpec(spec: string): { kind: 'bind' | 'volume' | 'anonymous'; source: string; target: string; readonly: boolean } {
  const parts = spec.split(':');
  let readonly = false;
  const isMode = (m: string) => m.split(',').every((x) => ['ro', 'rw', 'z', 'Z', 'rprivate', 'private'].includes(x));
  if (parts.length === 3 || (parts.length === 2 && parts[0]!.startsWith('/') && isMode(parts[1]!))) {
    const mode = parts.pop()!;
    for (const m of mode.split(',')) {
      if (m === 'ro') readonly = true;
      else if (m === 'rw' || m === 'z' || m === 'Z' || m === 'rprivate' || m === 'private') continue;
      else throw new VolumeError(`invalid mode: ${mode}`);
    }
  }
  if (parts.length > 2 || parts.some((p) => p === '')) throw new VolumeError(`invalid spec: ${spec}: too many colons or empty part`);
  if (parts.length === 1) {
    const target = parts[0]!;
    if (!target.startsWith('/')) throw new VolumeError(`invalid spec: ${spec}: the container path must be absolute`);
    return { kind: 'anonymous', source: '', target: path.posix.normalize(target), readonly };
  }
  const [source, target] = parts as [string, string];
  if (!target.startsWith('/')) throw new VolumeError(`invalid mount config for type "${source.startsWith('/') ? 'bind' : 'volume'}": invalid mount path: '${target}' mount path must be absolute`);
  if (path.posix.normalize(target) === '/') throw new VolumeError(`invalid specification: destination can't be '/' in '${spec}'`);
  if (source.startsWith('/')) return { kind: 'bind', source: path.resolve(source), target: path.posix.normalize(target), readonly };
  if (!NAME_RE.test(source)) throw new VolumeError(`create ${source}: "${source}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`);
  return { kind: 'volume', source, target: path.posix.normalize(target), readonly };
}

/**
 * Resolves `-v` flags and the image's VOLUMEs into mount records and bind
 * specs, creating named and anonymous volumes (and missing bind sources, as
 * Docker's -v does). Later -v flags for the same target win over earlier ones
 * and over image VOLUMEs.
 */
export async function resolveMounts(store: Store, specs: string[], imageVolumes: string[]): Promise<{ mounts: MountRecord[]; binds: BindSpec[] }> {
  const byTarget = new Map<string, MountRecord>();
  for (const s of specs) {
    const v = parseVolumeSpec(s);
    if (v.kind === 'bind') {
      await fsp.mkdir(v.source, { recursive: true }).catch(() => {});
      byTarget.set(v.target, { Type: 'bind', Source: v.source, Destination: v.target, RW: !v.readonly });
    } else {
      const rec = await createVolume(store, v.kind === 'volume' ? v.source : undefined, { anonymous: v.kind === 'anonymous' });
      byTarget.set(v.target, { Type: 'volume', Name: rec.Name, Source: rec.Mountpoint, Destination: v.target, RW: !v.readonly, ...(rec.Anonymous ? { Anonymous: true } : {}) });
    }
  }
  for (const t of imageVolumes) {
    const target = path.posix.normalize(t);
    if (byTarget.has(target)) continue;
    const rec = await createVolume(store, undefined, { anonymous: true });
    byTarget.set(target, { Type: 'volume', Name: rec.Name, Source: rec.Mountpoint, Destination: target, RW: true, Anonymous: true });
  }
  // Parents before children, so /data is mounted before /data/sub.
  const mounts = [...byTarget.values()].sort((a, b) => a.Destination.split('/').length - b.Destination.split('/').length);
  return { mounts, binds: mounts.map((m) => ({ source: m.Source, target: m.Destination, readonly: !m.RW })) };
}

/** Removes the anonymous volumes of a container's mounts (rm -v, run --rm). */
export async function removeAnonymousVolumes(root: string, mounts: MountRecord[] | undefined): Promise<void> {
  for (const m of mounts ?? []) {
    if (m.Type === 'volume' && m.Anonymous && m.Name) await fsp.rm(path.join(volumesDir(root), m.Name), { recursive: true, force: true });
  }
}
