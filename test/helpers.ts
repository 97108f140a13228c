// Shared test utilities. Every temp dir carries "tsbuild" in its path so a
// leftover is easy to find, and is removed by the returned cleanup.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import tarStream from 'tar-stream';
import { Store } from '../image/store.js';
import { importRootfs } from '../image/import.js';
import type { StoredImage } from '../image/images.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';

export function tempDir(tag = 'test'): string {
  return mkdtempSync(path.join(os.tmpdir(), `tsbuild-${tag}-`));
}

/** Creates temp dirs and removes them all at once (use in afterAll/afterEach). */
export class TempDirs {
  private dirs: string[] = [];
  make(tag = 'test'): string {
    const d = tempDir(tag);
    this.dirs.push(d);
    return d;
  }
  cleanup(): void {
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

export type TarEntrySpec = { header: tarStream.Headers; body?: string | Buffer };

/** A tar archive in memory, built with tar-stream: for small crafted (often hostile) test archives. */
export async function makeTar(entries: TarEntrySpec[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const isFile = e.header.type === undefined || e.header.type === 'file';
    const body = e.body === undefined ? (isFile ? Buffer.alloc(0) : undefined) : Buffer.from(e.body);
    await new Promise<void>((resolve, reject) => {
      const h = { mtime: new Date(1_500_000_000_000), ...e.header };
      if (body !== undefined) pack.entry(h, body, (err) => (err ? reject(err) : resolve()));
      else pack.entry(h, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (dist/cli/main.js) with --root root; never rejects. */
export function tsbuildCli(root: string, opts: { timeoutMs?: number } = {}) {
  const main = path.resolve(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
  return (args: string[], o: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> =>
    new Promise((resolve) => {
      const child = execFile(
        process.execPath,
        [main, '--', '--root', root, ...args],
        { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, env: o.env ?? process.env, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: child.exitCode ?? (err as { code?: number } | null)?.code ?? -1, stdout, stderr }),
      );
      child.stdin!.end(o.input ?? '');
    });
}

/** A store under a fresh tsbuild temp dir with the busybox fixture imported as busybox:latest (Cmd sh). */
export async function busyboxStore(dirs: TempDirs, tag = 'bb'): Promise<{ root: string; store: Store; image: StoredImage }> {
  const root = path.join(dirs.make(tag), 'root');
  const store = await Store.open(root);
  const tar = path.join(dirs.make(`${tag}-fixture`), 'busybox.tar');
  await makeBusyboxRootfs(tar);
  const image = await importRootfs(store, tar, { tags: ['busybox:latest'], sourceName: 'test', config: { Cmd: ['sh'] } });
  return { root, store, image };
}
