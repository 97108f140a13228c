// Shared test utilities. Every temp dir carries "tsbuild" in its path so a
// leftover is easy to find, and is removed by the returned cleanup.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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
