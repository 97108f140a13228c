// Cross-process locks with flock(2). A lock dies with its process, so a
// SIGKILLed tsbuild never leaves the store locked.
//
// The store uses two locks:
//  - "gc"    : every operation that writes blobs and later references them holds it
//              SHARED from the first blob write to the index update; the garbage
//              collector holds it EXCLUSIVE, so it never deletes a blob that a
//              running import/pull/build is about to tag.
//  - "index" : EXCLUSIVE around every read-modify-write of index.json.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { flock, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN } from './native.js';

export type LockMode = 'shared' | 'exclusive';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class FileLock {
  private constructor(private fd: number | undefined) {}

  static async acquire(file: string, mode: LockMode, timeoutMs = 10 * 60_000): Promise<FileLock> {
    mkdirSync(path.dirname(file), { recursive: true });
    const fd = openSync(file, 'a');
    const op = (mode === 'shared' ? LOCK_SH : LOCK_EX) | LOCK_NB;
    const deadline = Date.now() + timeoutMs;
    // Poll with a non-blocking flock: a blocking one would freeze Node's event loop.
    for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
      try {
        if (flock(fd, op)) return new FileLock(fd);
      } catch (e) {
        closeSync(fd);
        throw e;
      }
      if (Date.now() > deadline) {
        closeSync(fd);
        throw new Error(`timed out waiting for lock ${file} (another tsbuild process holds it)`);
      }
      await sleep(wait);
    }
  }

  /** One non-blocking attempt: the lock, or undefined when another holder has it in a conflicting mode. */
  static tryAcquire(file: string, mode: LockMode): FileLock | undefined {
    mkdirSync(path.dirname(file), { recursive: true });
    const fd = openSync(file, 'a');
    try {
      if (flock(fd, (mode === 'shared' ? LOCK_SH : LOCK_EX) | LOCK_NB)) return new FileLock(fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    closeSync(fd);
    return undefined;
  }

  release(): void {
    if (this.fd === undefined) return;
    try {
      flock(this.fd, LOCK_UN);
    } finally {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

export async function withLock<T>(file: string, mode: LockMode, fn: () => Promise<T>): Promise<T> {
  const lock = await FileLock.acquire(file, mode);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
