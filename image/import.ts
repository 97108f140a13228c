// `import`: a root filesystem (tarball or directory) becomes a single-layer image.
//
// A tarball is untrusted: it is first applied with the safe applier into a temp
// dir inside the store (which rejects path tricks), then re-written by the layer
// writer, so the stored layer is canonical (sorted, normalised) and the unpacked
// dir is kept as the layer's snapshot. A directory is the user's own tree and is
// tarred directly.
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from './layer-applier.js';
import { writeLayer } from './layer-writer.js';
import { MEDIA_TYPES } from './mediatypes.js';
import type { ImageConfig } from './schemas.js';
import { writeImage, type StoredImage } from './images.js';
import { adoptSnapshot } from './snapshots.js';
import type { Store } from './store.js';
import type { Digest } from './digest.js';

export interface ImportOptions {
  tags: string[];
  /** Container config (Cmd, Env, ...) for the new image. */
  config?: NonNullable<ImageConfig['config']>;
  message?: string;
  /** Source description for history ("-" for stdin, a path, ...). */
  sourceName: string;
  /** Seconds since epoch for `created` and the mtime clamp (SOURCE_DATE_EPOCH), for reproducible images. */
  sourceDateEpoch?: number;
  architecture?: string;
  os?: string;
}

export async function importRootfs(store: Store, source: string | Readable, opts: ImportOptions): Promise<StoredImage> {
  return store.withWriteSession(async () => {
    let fsDir: string | undefined;
    let tmpRoot: string | undefined;
    let srcDir: string;
    const isDir = typeof source === 'string' && (await fsp.stat(source)).isDirectory();
    try {
      if (isDir) {
        srcDir = source as string;
      } else {
        tmpRoot = store.tmpPath('import');
        fsDir = path.join(tmpRoot, 'fs');
        await fsp.mkdir(fsDir, { recursive: true, mode: 0o755 });
        const input = typeof source === 'string' ? createReadStream(source) : source;
        try {
          await applyLayer(input, fsDir, { mode: 'snapshot' });
        } catch (e) {
          throw new Error(`${opts.sourceName}: ${(e as Error).message}`);
        }
        srcDir = fsDir;
      }
      const w = await store.blobWriter();
      let layer;
      try {
        layer = await writeLayer(srcDir, { mode: isDir ? 'dir' : 'overlay-upper', lowerDirs: [], sourceDateEpoch: opts.sourceDateEpoch }, w.stream);
      } catch (e) {
        await w.abort();
        throw e;
      }
      await w.commit({ digest: layer.digest, size: layer.size });
      const created = new Date(opts.sourceDateEpoch !== undefined ? opts.sourceDateEpoch * 1000 : Date.now()).toISOString();
      const config: ImageConfig = {
        created,
        architecture: opts.architecture ?? 'amd64',
        os: opts.os ?? 'linux',
        config: opts.config ?? {},
        rootfs: { type: 'layers', diff_ids: [layer.diffId] },
        history: [{ created, created_by: 'tsbuild import', comment: opts.message ?? `Imported from ${opts.sourceName}` }],
      } as ImageConfig;
      const img = await writeImage(
        store,
        { config, layers: [{ mediaType: MEDIA_TYPES.OCI_LAYER_GZIP, digest: layer.digest, size: layer.size }] },
        opts.tags,
      );
      if (fsDir) {
        // The unpacked tree is exactly this layer in snapshot form: keep it.
        await adoptSnapshot(store, layer.diffId as Digest, fsDir);
        fsDir = undefined;
      }
      return img;
    } finally {
      if (tmpRoot) await fsp.rm(tmpRoot, { recursive: true, force: true });
    }
  });
}
