// Shared by the test/build*.test.ts suites: a store with the busybox base
// image, build contexts written from a file map, builds through the library
// and the CLI, and readers for what an image really holds (its layers applied
// with the real layer applier, and each layer's tar entries).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { TempDirs } from './helpers.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';
import { importRootfs } from '../image/import.js';
import { resolveImage, type StoredImage } from '../image/images.js';
import { applyLayer } from '../image/layer-applier.js';
import { Store } from '../image/store.js';
import type { Digest } from '../image/digest.js';
import { build, type BuildOptions, type BuildResult } from '../builder/build.js';
import { openContext } from '../builder/context.js';
import { Progress } from '../builder/progress.js';

export const CLI = path.resolve('dist/cli/main.js');

/** A context file: text, or a spec with mode / a symlink target / raw bytes. */
export type FileSpec = string | Buffer | { content?: string | Buffer; mode?: number; symlink?: string; dir?: boolean; mtime?: number };

export function writeFiles(dir: string, files: Record<string, FileSpec>): void {
  for (const [rel, spec] of Object.entries(files)) {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (typeof spec === 'string' || Buffer.isBuffer(spec)) {
      fs.writeFileSync(p, spec);
      continue;
    }
    if (spec.symlink !== undefined) {
      fs.rmSync(p, { force: true });
      fs.symlinkSync(spec.symlink, p);
      continue;
    }
    if (spec.dir) fs.mkdirSync(p, { recursive: true });
    else fs.writeFileSync(p, spec.content ?? '');
    if (spec.mode !== undefined) fs.chmodSync(p, spec.mode);
    if (spec.mtime !== undefined) fs.utimesSync(p, spec.mtime, spec.mtime);
  }
}

export interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname?: string;
  mtime: number;
  content?: string;
}

export class BuildEnv {
  readonly dirs = new TempDirs();
  root!: string;
  store!: Store;
  /** The busybox rootfs tar (shared by every store of this env). */
  busyboxTar!: string;

  async init(tag = 'build'): Promise<this> {
    const work = this.dirs.make(`${tag}-fixture`);
    this.busyboxTar = path.join(work, 'busybox.tar');
    await makeBusyboxRootfs(this.busyboxTar);
    ({ root: this.root, store: this.store } = await this.newStore(tag));
    return this;
  }

  /** A fresh store (root dir) with busybox:latest imported. */
  async newStore(tag = 'build'): Promise<{ root: string; store: Store }> {
    const root = path.join(this.dirs.make(`${tag}-root`), 'root');
    const store = await Store.open(root);
    await importRootfs(store, this.busyboxTar, { tags: ['busybox:latest'], sourceName: 'busybox.tar', config: { Cmd: ['sh'] }, sourceDateEpoch: 1704067200 });
    return { root, store };
  }

  /** A build context dir holding `files` (Dockerfile among them). */
  context(files: Record<string, FileSpec>): string {
    const dir = this.dirs.make('ctx');
    writeFiles(dir, files);
    return dir;
  }

  /** Builds through the library; progress lines are collected in `log`. */
  async build(dir: string, o: Partial<Omit<BuildOptions, 'context'>> & { file?: string; store?: Store } = {}): Promise<BuildResult & { log: string }> {
    const chunks: string[] = [];
    const sink = { write: (s: string) => chunks.push(String(s)), isTTY: false } as unknown as NodeJS.WritableStream;
    const store = o.store ?? this.store;
    const context = await openContext(store, { context: dir, file: o.file });
    try {
      const res = await build(store, { progress: new Progress(sink, 'plain'), ...o, context });
      return { ...res, log: chunks.join('') };
    } catch (e) {
      (e as Error & { log?: string }).log = chunks.join('');
      throw e;
    } finally {
      await context.cleanup();
    }
  }

  cli(args: string[], opts: { cwd?: string; input?: string | Buffer; env?: Record<string, string>; root?: string } = {}) {
    const r = spawnSync('node', [CLI, '--root', opts.root ?? this.root, ...args], {
      encoding: 'utf8',
      cwd: opts.cwd,
      input: opts.input ?? '',
      env: { ...process.env, ...(opts.env ?? {}) },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: r.status, out: r.stdout, err: r.stderr };
  }

  async image(ref: string, store = this.store): Promise<StoredImage> {
    return resolveImage(store, ref);
  }

  /** The image's root filesystem: every layer applied in order, by the real applier, into a fresh dir. */
  async rootfs(ref: string | StoredImage, store = this.store): Promise<string> {
    const img = typeof ref === 'string' ? await this.image(ref, store) : ref;
    const dir = this.dirs.make('rootfs');
    for (const l of img.layers) await applyLayer(store.blobStream(l.descriptor.digest as Digest), dir, { mode: 'merged' });
    return dir;
  }

  /** Tar entries of layer i (negative: from the top), with small file contents. */
  async layerEntries(img: StoredImage, i: number, store = this.store): Promise<TarEntry[]> {
    const l = img.layers.at(i)!;
    const out: TarEntry[] = [];
    const ex = tarExtract();
    ex.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const e: TarEntry = { name: h.name, type: h.type ?? 'file', mode: h.mode ?? 0, uid: h.uid ?? 0, gid: h.gid ?? 0, size: h.size ?? 0, mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000) };
        if (h.linkname) e.linkname = h.linkname;
        if (h.type === 'file' && (h.size ?? 0) < 4096) e.content = Buffer.concat(chunks).toString('utf8');
        out.push(e);
        next();
      });
      stream.resume();
    });
    await pipeline(store.blobStream(l.descriptor.digest as Digest), createGunzip(), ex);
    return out;
  }

  cleanup(): void {
    this.dirs.cleanup();
  }
}

/** lstat summary of a path: type, permission bits, owner. */
export function meta(p: string): { type: string; mode: string; uid: number; gid: number } {
  const st = fs.lstatSync(p);
  const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
  return { type, mode: (st.mode & 0o7777).toString(8).padStart(4, '0'), uid: st.uid, gid: st.gid };
}

/** Names left under root/tmp and root/steps (a build must not leave any). */
export function leftovers(root: string): string[] {
  const out: string[] = [];
  for (const d of ['tmp', 'steps']) {
    try {
      for (const n of fs.readdirSync(path.join(root, d))) out.push(`${d}/${n}`);
    } catch {
      /* none */
    }
  }
  try {
    for (const n of fs.readdirSync(path.join(root, 'snapshots'))) if (n.startsWith('tmp-')) out.push(`snapshots/${n}`);
  } catch {
    /* none */
  }
  return out;
}

/** Mounts under a path (from /proc/self/mountinfo). */
export function mountsUnder(p: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(p));
}
