// Snapshots: each layer unpacked once, in "snapshot" mode (whiteouts kept as
// overlay whiteouts / opaque xattrs), keyed by its chain id, so any number of
// containers and builds can stack them as overlay lowerdirs.
//
//   snapshots/<first 16 hex of chain id>/fs          the unpacked layer
//   snapshots/<first 16 hex of chain id>/chainid     full chain id (collision check + GC)
//
// Short directory names keep overlay's lowerdir option (one 4 KB page) able to
// hold ~100 layers with absolute paths, more when mounted relative to snapshots/.
// A snapshot is unpacked in a temp dir under snapshots/ and renamed into place only
// after its diff_id was verified, so a half-unpacked layer never looks complete.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { hexOf, sha256, type Digest } from './digest.js';
import { applyLayer } from './layer-applier.js';
import { pidAlive } from './atomic.js';
import type { Store } from './store.js';
import { loadImage, type StoredImage } from './images.js';

/** chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)) (OCI image spec). */
export function chainIds(diffIds: Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev ? sha256(`${prev} ${d}`) : d);
  }
  return out;
}

export function snapshotsDir(store: Store): string {
  return path.join(store.root, 'snapshots');
}

export function snapshotDir(store: Store, chainId: Digest): string {
  return path.join(snapshotsDir(store), hexOf(chainId).slice(0, 16));
}

/** Is the snapshot of chainId unpacked and in place? */
export async function isComplete(store: Store, chainId: Digest): Promise<boolean> {
  try {
    const id = (await fsp.readFile(path.join(snapshotDir(store, chainId), 'chainid'), 'utf8')).trim();
    if (id !== chainId) throw new Error(`snapshot directory collision: ${snapshotDir(store, chainId)} holds ${id}, wanted ${chainId}`);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Makes sure every layer of the image is unpacked; returns the snapshot fs dirs
 * bottom-most first (reverse them for overlay's lowerdir, which lists top-most first).
 */
export async function ensureSnapshots(store: Store, image: StoredImage): Promise<string[]> {
  const layers = image.layers;
  const chain = chainIds(layers.map((l) => l.diffId));
  const dirs: string[] = [];
  await fsp.mkdir(snapshotsDir(store), { recursive: true, mode: 0o700 });
  for (let i = 0; i < layers.length; i++) {
    const chainId = chain[i]!;
    const dir = snapshotDir(store, chainId);
    dirs.push(path.join(dir, 'fs'));
    if (await isComplete(store, chainId)) continue;
    // One unpacker per chain id across processes; the others wait and then reuse it.
    await store.withLock(`snapshot-${hexOf(chainId).slice(0, 16)}`, 'exclusive', async () => {
      if (await isComplete(store, chainId)) return;
      const layer = layers[i]!;
      const tmp = path.join(snapshotsDir(store), `tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
      await fsp.mkdir(path.join(tmp, 'fs'), { recursive: true, mode: 0o755 });
      try {
        const res = await applyLayer(store.blobStream(layer.descriptor.digest as Digest), path.join(tmp, 'fs'), { mode: 'snapshot' });
        if (res.diffId !== layer.diffId) {
          throw new Error(`layer ${layer.descriptor.digest}: uncompressed content is ${res.diffId} but the image config says diff_id ${layer.diffId}`);
        }
        await fsp.writeFile(path.join(tmp, 'chainid'), `${chainId}\n`);
        await fsp.rm(dir, { recursive: true, force: true });
        await fsp.rename(tmp, dir);
      } catch (e) {
        await fsp.rm(tmp, { recursive: true, force: true });
        throw e;
      }
    });
  }
  return dirs;
}

/** Registers an already unpacked directory (e.g. from import) as the snapshot for chainId. */
export async function adoptSnapshot(store: Store, chainId: Digest, fsDir: string): Promise<void> {
  await fsp.mkdir(snapshotsDir(store), { recursive: true, mode: 0o700 });
  if (await isComplete(store, chainId)) {
    await fsp.rm(fsDir, { recursive: true, force: true });
    return;
  }
  const tmp = path.join(snapshotsDir(store), `tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fsp.mkdir(tmp, { mode: 0o700 });
  await fsp.rename(fsDir, path.join(tmp, 'fs'));
  await fsp.writeFile(path.join(tmp, 'chainid'), `${chainId}\n`);
  await store.withLock(`snapshot-${hexOf(chainId).slice(0, 16)}`, 'exclusive', async () => {
    if (await isComplete(store, chainId)) {
      await fsp.rm(tmp, { recursive: true, force: true });
      return;
    }
    await fsp.rm(snapshotDir(store, chainId), { recursive: true, force: true });
    await fsp.rename(tmp, snapshotDir(store, chainId));
  });
}

/** Chain ids still needed: every image in the index, plus any `keep` (e.g. running containers). */
export async function neededChainIds(store: Store, keep: Digest[] = []): Promise<Set<string>> {
  const idx = await store.readIndex();
  const needed = new Set<string>(keep);
  for (const rec of Object.values(idx.images)) {
    try {
      const img = await loadImage(store, rec.digest, idx);
      for (const c of chainIds(img.layers.map((l) => l.diffId))) needed.add(c);
    } catch {
      // An unreadable image keeps nothing alive; `images` will report it.
    }
  }
  return needed;
}

/** Removes snapshots no image (or `keep` chain id) needs, and stale temp dirs of dead processes. */
export async function pruneSnapshots(store: Store, keep: Digest[] = []): Promise<{ removed: number }> {
  const needed = await neededChainIds(store, keep);
  let removed = 0;
  let names: string[];
  try {
    names = await fsp.readdir(snapshotsDir(store));
  } catch {
    return { removed };
  }
  for (const name of names) {
    const dir = path.join(snapshotsDir(store), name);
    const tmp = /^tmp-(\d+)-/.exec(name);
    if (tmp) {
      if (!pidAlive(Number(tmp[1]))) {
        await fsp.rm(dir, { recursive: true, force: true });
        removed++;
      }
      continue;
    }
    let id = '';
    try {
      id = (await fsp.readFile(path.join(dir, 'chainid'), 'utf8')).trim();
    } catch {
      /* incomplete: remove below */
    }
    if (id && needed.has(id)) continue;
    await store.withLock(`snapshot-${name}`, 'exclusive', () => fsp.rm(dir, { recursive: true, force: true }));
    removed++;
  }
  return { removed };
}
