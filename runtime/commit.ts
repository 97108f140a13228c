// `commit CONTAINER [REPOSITORY[:TAG]]`: the container's upper dir becomes one
// new layer on top of its image's layers, with `-c` changes applied to the
// config and a history entry. The init layer (bundle.ts) keeps mount points
// (/etc/hosts, /proc, ...) out of the upper dir, so the layer holds only what
// the container's processes changed. The new layer's snapshot is unpacked
// lazily, like a pulled one, when something runs from the new image.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { applyChange } from '../builder/changes.js';
import { writeLayer } from '../image/layer-writer.js';
import { resolveImage, writeImage, type StoredImage } from '../image/images.js';
import { MEDIA_TYPES } from '../image/mediatypes.js';
import type { ImageConfig } from '../image/schemas.js';
import type { Store } from '../image/store.js';
import { containerDir, findContainer, readContainerConfig } from './container.js';
import type { InitSpec } from './spec.js';

export interface CommitOptions {
  /** Tag for the new image (none: dangling, as docker commit without a name). */
  tag?: string;
  changes?: string[];
  message?: string;
  author?: string;
}

export async function commitContainer(store: Store, ref: string, o: CommitOptions = {}): Promise<StoredImage> {
  const id = await findContainer(store.root, ref);
  const config = await readContainerConfig(store.root, id);
  const dir = containerDir(store.root, id);
  const spec = JSON.parse(await fsp.readFile(path.join(dir, 'spec.json'), 'utf8')) as InitSpec;
  const base = await resolveImage(store, config.Image).catch(() => {
    throw new Error(`the image of container ${id.slice(0, 12)} (${config.Image}) is no longer in the store`);
  });
  // spec.lowerDirs: the init layer first, then the image's snapshots, top-most first.
  const lowerDirs = spec.lowerDirs.slice(1).map((l) => path.resolve(store.root, l));
  let cfg: NonNullable<ImageConfig['config']> = { ...(base.config.config ?? {}) };
  for (const ch of o.changes ?? []) cfg = applyChange(cfg, ch);
  return store.withWriteSession(async () => {
    const w = await store.blobWriter();
    let layer;
    try {
      layer = await writeLayer(path.join(dir, 'upper'), { mode: 'overlay-upper', lowerDirs }, w.stream);
    } catch (e) {
      await w.abort();
      throw e;
    }
    await w.commit({ digest: layer.digest, size: layer.size });
    const created = new Date().toISOString();
    const newConfig = {
      ...base.config,
      created,
      ...(o.author ? { author: o.author } : {}),
      config: cfg,
      rootfs: { type: 'layers', diff_ids: [...base.config.rootfs.diff_ids, layer.diffId] },
      history: [
        ...(base.config.history ?? []),
        { created, created_by: [config.Path, ...config.Args].join(' '), ...(o.author ? { author: o.author } : {}), ...(o.message ? { comment: o.message } : {}) },
      ],
    } as ImageConfig;
    return writeImage(
      store,
      {
        config: newConfig,
        layers: [...base.manifest.layers, { mediaType: MEDIA_TYPES.OCI_LAYER_GZIP, digest: layer.digest, size: layer.size }],
        format: base.manifest.mediaType === MEDIA_TYPES.DOCKER_MANIFEST ? 'docker' : 'oci',
      },
      o.tag ? [o.tag] : [],
    );
  });
}
