// Image commands: import, images, tag, rmi, inspect, history, prune.
import { promises as fsp } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { str, bool, list, UsageError, type ParsedArgs } from './args.js';
import { out, type Command, type Context } from './command.js';
import { formatRows, humanSize, renderTemplate, since, table } from './format.js';
import { applyChange } from '../builder/changes.js';
import { importRootfs } from '../image/import.js';
import { findImageDigest, loadImage, resolveImage, shortTag, splitTag, tagImage, tagKey, type StoredImage } from '../image/images.js';
import { pruneSnapshots } from '../image/snapshots.js';
import { pruneSteps } from '../runtime/step.js';
import { commitContainer } from '../runtime/commit.js';
import { NotFoundError, type Store } from '../image/store.js';
import type { ImageConfig } from '../image/schemas.js';
import { containersUsingImages, containerImageIds } from '../runtime/usage.js';
import { inspectContainer } from '../runtime/lifecycle.js';
import type { Digest } from '../image/digest.js';

function contentSize(img: StoredImage): number {
  return img.manifest.layers.reduce((n, l) => n + l.size, 0) + img.manifest.config.size;
}

const importCmd: Command = {
  name: 'import',
  usage: 'import [OPTIONS] file|dir|- [REPOSITORY[:TAG]]',
  description: 'Import the contents from a tarball or directory to create a filesystem image',
  flags: [
    { name: 'change', short: 'c', type: 'list', description: 'Apply Dockerfile instruction to the created image' },
    { name: 'message', short: 'm', type: 'string', description: 'Set commit message for imported image' },
    { name: 'platform', type: 'string', description: 'Set platform (linux/amd64)' },
  ],
  minArgs: 1,
  maxArgs: 2,
  async run(a, ctx) {
    const [src, name] = a.positionals as [string, string | undefined];
    let config: NonNullable<ImageConfig['config']> = {};
    for (const ch of list(a, 'change')) config = applyChange(config, ch);
    if (name) tagKey(name); // validate before doing any work
    const platform = str(a, 'platform') ?? 'linux/amd64';
    const [os, architecture] = platform.split('/');
    const sde = process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) : undefined;
    if (sde !== undefined && !Number.isInteger(sde)) throw new Error(`SOURCE_DATE_EPOCH="${process.env.SOURCE_DATE_EPOCH}" is not an integer`);
    const store = await ctx.store();
    const img = await importRootfs(store, src === '-' ? process.stdin : src, {
      tags: name ? [name] : [],
      config,
      message: str(a, 'message'),
      sourceName: src === "-" ? "-" : path.basename(src),
      sourceDateEpoch: sde,
      os,
      architecture,
    });
    out(ctx, img.id);
    return 0;
  },
};

const commitCmd: Command = {
  name: 'commit',
  usage: 'commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]',
  description: "Create a new image from a container's changes",
  flags: [
    { name: 'change', short: 'c', type: 'list', description: 'Apply Dockerfile instruction to the created image' },
    { name: 'message', short: 'm', type: 'string', description: 'Commit message' },
    { name: 'author', short: 'a', type: 'string', description: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")' },
  ],
  minArgs: 1,
  maxArgs: 2,
  async run(a, ctx) {
    const [ref, name] = a.positionals as [string, string | undefined];
    if (name) tagKey(name);
    const img = await commitContainer(await ctx.store(), ref, { tag: name, changes: list(a, 'change'), message: str(a, 'message'), author: str(a, 'author') });
    out(ctx, img.id);
    return 0;
  },
};

interface ImageRow {
  Repository: string;
  Tag: string;
  ID: string;
  Digest: string;
  CreatedAt: string;
  CreatedSince: string;
  Size: string;
  Containers: string;
}

async function imageRows(store: Store, filterRef?: string): Promise<{ rows: ImageRow[]; full: Map<ImageRow, Digest> }> {
  const idx = await store.readIndex();
  const rows: ImageRow[] = [];
  const full = new Map<ImageRow, Digest>();
  const recs = Object.values(idx.images).sort((a, b) => b.added.localeCompare(a.added));
  for (const rec of recs) {
    let img: StoredImage;
    try {
      img = await loadImage(store, rec.digest, idx);
    } catch (e) {
      throw new Error(`image ${rec.digest} in ${store.root} is damaged: ${(e as Error).message}`);
    }
    const created = img.config.created;
    const base = {
      ID: img.id.slice(7, 19),
      Digest: img.digest,
      CreatedAt: created ?? '',
      CreatedSince: since(created),
      Size: humanSize(contentSize(img)),
      Containers: 'N/A',
    };
    const tags = img.tags;
    if (!tags.length) {
      if (filterRef) continue; // `images REPO` lists only that repository's tags, as Docker does
      const r = { Repository: '<none>', Tag: '<none>', ...base };
      rows.push(r);
      full.set(r, img.id);
    }
    for (const t of tags) {
      const { repository, tag } = splitTag(t);
      if (filterRef && !matchesFilter(filterRef, t)) continue;
      const r = { Repository: repository, Tag: tag, ...base };
      rows.push(r);
      full.set(r, img.id);
    }
  }
  return { rows, full };
}

function matchesFilter(filter: string, key: string): boolean {
  const { repository, tag } = splitTag(key);
  const [frepo, ftag] = filter.includes(':') && filter.lastIndexOf(':') > filter.lastIndexOf('/') ? [filter.slice(0, filter.lastIndexOf(':')), filter.slice(filter.lastIndexOf(':') + 1)] : [filter, undefined];
  const repoOk = repository === frepo || splitTag(tagKey(`${frepo}:x`)).repository === repository;
  return repoOk && (ftag === undefined || ftag === tag);
}

const imagesCmd: Command = {
  name: 'images',
  usage: 'images [OPTIONS] [REPOSITORY[:TAG]]',
  description: 'List images',
  flags: [
    { name: 'quiet', short: 'q', type: 'bool', description: 'Only show image IDs' },
    { name: 'format', type: 'string', description: "Format output: 'table', 'json', or a template such as '{{.Repository}}:{{.Tag}}'" },
    { name: 'no-trunc', type: 'bool', description: "Don't truncate output" },
    { name: 'digests', type: 'bool', description: 'Show digests' },
    { name: 'all', short: 'a', type: 'bool', description: 'Show all images' },
  ],
  maxArgs: 1,
  async run(a, ctx) {
    const store = await ctx.store();
    const { rows, full } = await imageRows(store, a.positionals[0]);
    if (bool(a, 'no-trunc')) for (const r of rows) r.ID = full.get(r)!;
    if (bool(a, 'quiet')) {
      const seen = new Set<string>();
      for (const r of rows) if (!seen.has(r.ID)) (seen.add(r.ID), out(ctx, r.ID));
      return 0;
    }
    const format = str(a, 'format');
    if (format && format !== 'table') {
      const text = formatRows(format, rows as unknown as Record<string, unknown>[], { Repository: 'REPOSITORY', Tag: 'TAG', ID: 'IMAGE ID', CreatedSince: 'CREATED', Size: 'SIZE', Digest: 'DIGEST' });
      if (text) out(ctx, text);
      return 0;
    }
    const digests = bool(a, 'digests');
    const headers = ['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
    out(ctx, table(headers, rows.map((r) => [r.Repository, r.Tag, ...(digests ? [r.Digest] : []), r.ID, r.CreatedSince, r.Size])));
    return 0;
  },
};

const tagCmd: Command = {
  name: 'tag',
  usage: 'tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
  description: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
  flags: [],
  minArgs: 2,
  maxArgs: 2,
  async run(a, ctx) {
    await tagImage(await ctx.store(), a.positionals[0]!, a.positionals[1]!);
    return 0;
  },
};

const rmiCmd: Command = {
  name: 'rmi',
  usage: 'rmi [OPTIONS] IMAGE [IMAGE...]',
  description: 'Remove one or more images',
  flags: [
    { name: 'force', short: 'f', type: 'bool', description: 'Force removal of the image' },
    { name: 'no-prune', type: 'bool', description: 'Do not delete untagged parents' },
  ],
  minArgs: 1,
  async run(a, ctx) {
    const store = await ctx.store();
    const force = bool(a, 'force');
    let failed = false;
    for (const name of a.positionals) {
      try {
        await removeImage(store, name, force, ctx);
      } catch (e) {
        failed = true;
        ctx.stderr.write(`Error: ${(e as Error).message}\n`);
      }
    }
    return failed ? 1 : 0;
  },
};

async function removeImage(store: Store, name: string, force: boolean, ctx: Context): Promise<void> {
  const idx0 = await store.readIndex();
  const digest = findImageDigest(idx0, name);
  if (!digest) throw new NotFoundError(`No such image: ${name}`);
  const img = await loadImage(store, digest, idx0);
  // By name (a tag): untag; the image goes only when its last tag does.
  let byTag: string | undefined;
  try {
    const k = tagKey(name);
    if (idx0.tags[k] === digest) byTag = k;
  } catch {
    /* an ID */
  }
  const users = await containersUsingImages(store.root, [img.id]);
  const lastTag = !byTag || img.tags.length <= 1;
  if (lastTag && users.length && !force) {
    throw new Error(`conflict: unable to remove image ${name} (must be forced) - image is being used by container ${users[0]!.id.slice(0, 12)}`);
  }
  if (!byTag && img.tags.length > 1 && !force) {
    throw new Error(`conflict: unable to delete ${img.id.slice(7, 19)} (must be forced) - image is referenced in multiple repositories`);
  }
  const untagged: string[] = [];
  let deleted = false;
  await store.updateIndex((idx) => {
    const toUntag = byTag && !lastTag ? [byTag] : Object.keys(idx.tags).filter((t) => idx.tags[t] === digest);
    for (const t of toUntag) {
      delete idx.tags[t];
      untagged.push(t);
    }
    if (!Object.values(idx.tags).includes(digest) && !users.length) {
      // Forced removal of an image a container uses only untags it (as Docker does);
      // the record stays, dangling, until the container is gone and `prune` runs.
      delete idx.images[digest];
      deleted = true;
    }
  });
  for (const t of untagged) out(ctx, `Untagged: ${shortTag(t)}`);
  if (deleted) {
    await store.gc();
    await pruneSnapshots(store, []);
    out(ctx, `Deleted: ${img.id}`);
  }
}

function inspectImage(img: StoredImage): Record<string, unknown> {
  const c = img.config;
  const cc = c.config ?? {};
  return {
    Id: img.id,
    RepoTags: img.tags.map(shortTag),
    RepoDigests: [...new Set(img.tags.map((t) => `${splitTag(t).repository}@${img.digest}`))],
    Parent: '',
    Comment: c.history?.[c.history.length - 1]?.comment ?? '',
    Created: c.created ?? '',
    DockerVersion: '',
    Author: c.author ?? '',
    Config: {
      Hostname: '',
      Domainname: '',
      User: cc.User ?? '',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      ExposedPorts: cc.ExposedPorts,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: cc.Env ?? null,
      Cmd: cc.Cmd ?? null,
      Healthcheck: cc.Healthcheck,
      ArgsEscaped: cc.ArgsEscaped,
      Image: '',
      Volumes: cc.Volumes ?? null,
      WorkingDir: cc.WorkingDir ?? '',
      Entrypoint: cc.Entrypoint ?? null,
      OnBuild: cc.OnBuild ?? null,
      Labels: cc.Labels ?? null,
      StopSignal: cc.StopSignal,
      Shell: cc.Shell,
    },
    Architecture: c.architecture,
    Variant: c.variant,
    Os: c.os,
    Size: img.manifest.layers.reduce((n, l) => n + l.size, 0),
    RootFS: { Type: 'layers', Layers: c.rootfs.diff_ids },
    Descriptor: { mediaType: img.record.mediaType, digest: img.digest, size: img.record.size },
    Metadata: { LastTagTime: img.record.added },
  };
}

const inspectCmd: Command = {
  name: 'inspect',
  usage: 'inspect [OPTIONS] NAME|ID [NAME|ID...]',
  description: 'Return low-level information on containers and images',
  flags: [
    { name: 'format', short: 'f', type: 'string', description: 'Format output using a template' },
    { name: 'type', type: 'string', description: 'Only inspect objects of the given type (container or image)' },
  ],
  minArgs: 1,
  async run(a, ctx) {
    const store = await ctx.store();
    const results: Record<string, unknown>[] = [];
    let failed = false;
    const type = str(a, 'type');
    if (type && type !== 'image' && type !== 'container') throw new UsageError(`"${type}" is not a valid value for --type (image or container)`);
    for (const name of a.positionals) {
      // As Docker without --type: a container of that name or ID first, then an image.
      if (type !== 'image') {
        const c = await inspectContainer(store.root, name);
        if (c) {
          results.push(c as Record<string, unknown>);
          continue;
        }
      }
      try {
        if (type === 'container') throw new NotFoundError(name);
        results.push(inspectImage(await resolveImage(store, name)));
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
        failed = true;
        ctx.stderr.write(`Error: No such ${type ?? 'object'}: ${name}\n`);
      }
    }
    const format = str(a, 'format');
    if (format) for (const r of results) out(ctx, renderTemplate(format, r));
    else out(ctx, JSON.stringify(results, null, 4));
    return failed ? 1 : 0;
  },
};

const historyCmd: Command = {
  name: 'history',
  usage: 'history [OPTIONS] IMAGE',
  description: 'Show the history of an image',
  flags: [
    { name: 'no-trunc', type: 'bool', description: "Don't truncate output" },
    { name: 'quiet', short: 'q', type: 'bool', description: 'Only show image IDs' },
    { name: 'human', short: 'H', type: 'bool', description: 'Print sizes and dates in human readable format', default: true },
    { name: 'format', type: 'string', description: 'Format output using a template' },
  ],
  minArgs: 1,
  maxArgs: 1,
  async run(a, ctx) {
    const img = await resolveImage(await ctx.store(), a.positionals[0]!);
    const noTrunc = bool(a, 'no-trunc');
    const history = img.config.history ?? [];
    const layerSizes = img.manifest.layers.map((l) => l.size);
    let li = 0;
    const rows = history.map((h) => {
      const size = h.empty_layer ? 0 : (layerSizes[li++] ?? 0);
      return { created: h.created, createdBy: h.created_by ?? '', size, comment: h.comment ?? '' };
    }).reverse();
    const data = rows.map((r, i) => ({
      ID: i === 0 ? (noTrunc ? img.id : img.id.slice(7, 19)) : '<missing>',
      CreatedSince: a.flags.human === false ? (r.created ?? '') : since(r.created),
      CreatedAt: r.created ?? '',
      CreatedBy: noTrunc || r.createdBy.length <= 45 ? r.createdBy : `${r.createdBy.slice(0, 44)}…`,
      Size: a.flags.human === false ? String(r.size) : humanSize(r.size),
      Comment: r.comment,
    }));
    if (bool(a, 'quiet')) {
      for (const d of data) out(ctx, d.ID);
      return 0;
    }
    const format = str(a, 'format');
    if (format) {
      out(ctx, formatRows(format, data, { ID: 'IMAGE', CreatedSince: 'CREATED', CreatedBy: 'CREATED BY', Size: 'SIZE', Comment: 'COMMENT' }));
      return 0;
    }
    out(ctx, table(['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], data.map((d) => [d.ID, d.CreatedSince, d.CreatedBy, d.Size, d.Comment])));
    return 0;
  },
};

async function confirm(ctx: Context, question: string): Promise<boolean> {
  ctx.stdout.write(`${question} [y/N] `);
  if (!process.stdin.readable) return false;
  const rl = createInterface({ input: process.stdin });
  const answer = await new Promise<string>((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(''));
  });
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}

const pruneCmd: Command = {
  name: 'prune',
  usage: 'prune [OPTIONS]',
  description: 'Remove dangling images, unused snapshots, unreferenced blobs and leftover temp files',
  flags: [
    { name: 'all', short: 'a', type: 'bool', description: 'Remove all images not used by a container, not just dangling ones' },
    { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
  ],
  maxArgs: 0,
  async run(a: ParsedArgs, ctx) {
    const all = bool(a, 'all');
    if (!bool(a, 'force')) {
      const ok = await confirm(
        ctx,
        `WARNING! This will remove:\n  - all ${all ? 'images without at least one container associated to them' : 'dangling images'}\n  - unused layer snapshots and build data\nAre you sure you want to continue?`,
      );
      if (!ok) return 0;
    }
    const store = await ctx.store();
    const inUse = new Set(await containerImageIds(store.root));
    const deleted: string[] = [];
    await store.updateIndex((idx) => {
      const tagged = new Set(Object.values(idx.tags));
      for (const rec of Object.values(idx.images)) {
        if (inUse.has(rec.config)) continue;
        if (all || !tagged.has(rec.digest)) {
          for (const [t, d] of Object.entries(idx.tags)) if (d === rec.digest) delete idx.tags[t];
          delete idx.images[rec.digest];
          deleted.push(rec.config);
        }
      }
    });
    if (deleted.length) {
      out(ctx, 'Deleted Images:');
      for (const d of deleted) out(ctx, `deleted: ${d}`);
      out(ctx);
    }
    const gc = await store.gc();
    const snaps = await pruneSnapshots(store, []);
    await pruneSteps(store.root);
    // -a: the build cache (step records and RUN --mount=type=cache dirs) too, as `docker system prune -a`.
    if (all) {
      const { clearCache } = await import('../builder/cache.js');
      await clearCache(store.root);
      await fsp.rm(path.join(store.root, 'cachemounts'), { recursive: true, force: true });
    }
    out(ctx, `Total reclaimed space: ${humanSize(gc.freedBytes)}${snaps.removed ? ` (and ${snaps.removed} layer snapshot${snaps.removed === 1 ? '' : 's'})` : ''}`);
    return 0;
  },
};

export const imageCommands: Command[] = [importCmd, commitCmd, imagesCmd, tagCmd, rmiCmd, inspectCmd, historyCmd, pruneCmd];
