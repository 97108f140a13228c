// `build --output type=local,dest=DIR` (and `-o DIR`): the image's file
// system, every layer applied in order into DIR with whiteouts deleting what
// lower layers put there, as BuildKit's local exporter writes a build result
// to the client. The layers go through the same applier as pulls and
// snapshots (layer-applier.ts): nothing in a layer can write outside DIR or
// through a symlink it planted.
import { promises as fsp } from 'node:fs';
import type { Digest } from './digest.js';
import type { StoredImage } from './images.js';
import { applyLayer } from './layer-applier.js';
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
