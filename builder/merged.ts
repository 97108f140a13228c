// A read-only view of an image's root filesystem as overlayfs would show it,
// computed from its layer snapshot dirs (image/snapshots.ts: plain dirs whose
// whiteouts are 0:0 char devices and whose opaque dirs carry the xattr
// trusted.overlay.opaque=y), without mounting anything.
//
// COPY/ADD resolve destinations in it (symlinks in the image are followed as
// if the image's root were `/`, never the host's), read /etc/passwd and
// /etc/group for --chown, and COPY --from reads another stage's files from it.
import fs from 'node:fs';
import path from 'node:path';
import { lgetxattr } from '../image/native.js';
import { lstatMaybe, resolveScoped } from '../image/safepath.js';

/** Where a path of the merged view lives: the host path in the top-most layer that has it, and its lstat. */
export interface Found {
  abs: string;
  st: fs.Stats;
}


function isWhiteout(st: fs.Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function isOpaque(p: string): boolean {
  try {
    return lgetxattr(p, 'trusted.overlay.opaque')?.toString() === 'y';
  } catch {
    return false;
  }
}

/** Splits a path into clean components; `..` is clamped at the root (chroot semantics). */
export function components(p: string): string[] {
  const out: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return out;
}

export class MergedView {
  /** @param layers snapshot dirs, TOP-MOST FIRST (an empty list is an empty root). */
  constructor(readonly layers: string[]) {}

  /** lstat of `comps` (a path without symlinks in its parents) in the merged view. */
  lookup(comps: readonly string[]): Found | undefined {
    for (const layer of this.layers) {
      let hidden = false; // an opaque parent in this layer hides the layers below
      let absent = false;
      for (let i = 0; i < comps.length - 1; i++) {
        const p = path.join(layer, ...comps.slice(0, i + 1));
        const st = lstatMaybe(p);
        if (!st) {
          absent = true;
          break;
        }
        if (isWhiteout(st) || !st.isDirectory()) return undefined;
        if (isOpaque(p)) hidden = true;
      }
      if (!absent) {
        const abs = comps.length === 0 ? layer : path.join(layer, ...comps);
        const st = lstatMaybe(abs);
        if (st) return isWhiteout(st) ? undefined : { abs, st };
      }
      if (hidden) return undefined;
    }
    if (comps.length === 0) {
      // The root always exists, even in an empty view.
      return undefined;
    }
    return undefined;
  }

  /**
   * Resolves `p` (absolute or relative to `/`) to the components of a path
   * without symlinks, following every link inside the view's root (absolute
   * targets restart at the root, `..` stops at it), as filepath-securejoin does.
   * The final component is followed only with followFinal.
   */
  resolve(p: string, followFinal = false): string[] {
    return resolveScoped(p, followFinal, (comps) => {
      const f = this.lookup(comps);
      return f?.st.isSymbolicLink() ? fs.readlinkSync(f.abs) : undefined;
    });
  }

  /** Kind of the entry at `comps` (no symlinks followed). */
  kind(comps: readonly string[]): 'dir' | 'file' | 'symlink' | 'other' | 'none' {
    if (comps.length === 0) return 'dir';
    const f = this.lookup(comps);
    if (!f) return 'none';
    if (f.st.isDirectory()) return 'dir';
    if (f.st.isSymbolicLink()) return 'symlink';
    if (f.st.isFile()) return 'file';
    return 'other';
  }

  /** Names in the directory at `comps` (merged across layers, whiteouts applied), sorted. */
  readdir(comps: readonly string[]): string[] {
    const seen = new Set<string>();
    const names: string[] = [];
    for (const layer of this.layers) {
      let hidden = false;
      let absent = false;
      for (let i = 0; i < comps.length; i++) {
        const p = path.join(layer, ...comps.slice(0, i + 1));
        const st = lstatMaybe(p);
        if (!st) {
          absent = true;
          break;
        }
        if (isWhiteout(st) || !st.isDirectory()) return names.sort();
        if (isOpaque(p)) hidden = true;
      }
      if (!absent) {
        const dir = comps.length === 0 ? layer : path.join(layer, ...comps);
        for (const n of fs.readdirSync(dir)) {
          if (seen.has(n)) continue;
          seen.add(n);
          const st = lstatMaybe(path.join(dir, n));
          if (st && !isWhiteout(st)) names.push(n);
        }
      }
      if (hidden) break;
    }
    return names.sort();
  }

  /** Contents of a regular file (following symlinks inside the view), or undefined when there is none. */
  readFile(p: string): Buffer | undefined {
    const comps = this.resolve(p, true);
    const f = this.lookup(comps);
    if (!f || !f.st.isFile()) return undefined;
    return fs.readFileSync(f.abs);
  }

  /** Host path of the entry at `comps` (for reading contents), or undefined. */
  hostPath(comps: readonly string[]): string | undefined {
    return this.lookup(comps)?.abs;
  }
}
