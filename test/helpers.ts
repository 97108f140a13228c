// Shared test utilities. Every temp dir carries "tsbuild" in its path so a
// leftover is easy to find, and is removed by the returned cleanup.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tarStream from 'tar-stream';

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
