// Where blobs were last seen in registries, so a push can mount a layer from
// another repository of the same registry instead of uploading it again
// (POST /v2/<to>/blobs/uploads/?mount=<digest>&from=<from>).
//
// <root>/registry/blob-sources.json: {"version":1,"blobs":{"sha256:…":["host/repo", …]}}
// A hint, not a truth: a wrong entry only costs one mount attempt that the
// registry answers with an ordinary upload session.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../image/atomic.js';
import type { Store } from '../image/store.js';

interface SourcesFile {
  version: 1;
  blobs: Record<string, string[]>;
}

/** At most this many repositories per blob and blobs in all (oldest dropped first). */
const PER_BLOB = 8;
const MAX_BLOBS = 20_000;

function file(store: Store): string {
  return path.join(store.root, 'registry', 'blob-sources.json');
}

async function read(store: Store): Promise<SourcesFile> {
  try {
    const j = JSON.parse(await fsp.readFile(file(store), 'utf8')) as SourcesFile;
    if (j?.version === 1 && j.blobs && typeof j.blobs === 'object') return j;
  } catch {
    // missing or damaged: start afresh (it is only a hint)
  }
  return { version: 1, blobs: {} };
}

/** Repositories ("host/path") where this blob was seen, most recent first. */
export async function blobSources(store: Store, digest: string): Promise<string[]> {
  const j = await read(store);
  return [...(j.blobs[digest] ?? [])].reverse();
}

/** Records that these blobs live in repository `repo` ("host/path"). */
export async function recordBlobSources(store: Store, repo: string, digests: string[]): Promise<void> {
  if (digests.length === 0) return;
  await store.withLock('blob-sources', 'exclusive', async () => {
    const j = await read(store);
    for (const d of digests) {
      const list = (j.blobs[d] ?? []).filter((r) => r !== repo);
      list.push(repo);
      delete j.blobs[d]; // re-insert: keeps the object in least-recently-used order
      j.blobs[d] = list.slice(-PER_BLOB);
    }
    const keys = Object.keys(j.blobs);
    for (const k of keys.slice(0, Math.max(0, keys.length - MAX_BLOBS))) delete j.blobs[k];
    await fsp.mkdir(path.dirname(file(store)), { recursive: true, mode: 0o700 });
    await writeJsonAtomic(file(store), j);
  });
}
