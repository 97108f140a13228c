// `build --output type=local,dest=DIR` (and `-o DIR`): the image's file
// system, every layer applied in order into DIR with whiteouts deleting what
// lower layers put there, as BuildKit's local exporter writes a build result
// to the client. The layers go through the same applier as pulls and
// snapshots (layer-applier.ts): nothing in a layer can write outside DIR or
// through a symlink it planted.
//
// `--output type=tar` (and `-o -`): the same files as one tar, written by the
// layer writer's directory walk (layer-writer.ts tarDirectory) from such an
// export in the store's tmp/; a file dest appears only once complete.
import { randomBytes } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from './digest.js';
import type { StoredImage } from './images.js';
import { applyLayer } from './layer-applier.js';
import { tarDirectory } from './layer-writer.js';
import { lstatMaybe } from './safepath.js';
import type { Store } from './store.js';

export async function exportRootfs(store: Store, image: StoredImage, dest: string): Promise<{ layers: number; entries: number }> {
  const st = lstatMaybe(dest);
  const existed = st !== undefined;
  if (st && !st.isDirectory()) throw new Error(`--output type=local: ${dest} exists and is not a directory`);
  await fsp.mkdir(dest, { recursive: true });
  let entries = 0;
  try {
    for (const layer of image.layers) {
      const res = await applyLayer(store.blobStream(layer.descriptor.digest as Digest), dest, { mode: 'merged' });
      if (res.diffId !== layer.diffId) throw new Error(`layer ${layer.descriptor.digest}: uncompressed content is ${res.diffId} but the image config says diff_id ${layer.diffId}`);
      entries += res.entries;
    }
  } catch (e) {
    // A directory we created holds nothing the user had: leave nothing half-written.
    if (!existed) await fsp.rm(dest, { recursive: true, force: true });
    throw e;
  }
  return { layers: image.layers.length, entries };
}

/** The image's files as one tar, to a file (written under a temp name, then renamed) or a stream left open. */
export async function exportRootfsTar(store: Store, image: StoredImage, out: string | Writable): Promise<void> {
  const tmp = store.tmpPath('export-tar');
  const file = typeof out === 'string' ? `${out}.tsbuild-${randomBytes(4).toString('hex')}` : undefined;
  try {
    await exportRootfs(store, image, tmp);
    const tar = tarDirectory(tmp, { mode: 'dir' });
    if (file !== undefined) {
      await pipeline(tar, fs.createWriteStream(file, { mode: 0o644 }));
      await fsp.rename(file, out as string);
    } else {
      await pipeline(tar, out as Writable, { end: false });
    }
  } finally {
    if (file !== undefined) await fsp.rm(file, { force: true });
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}
