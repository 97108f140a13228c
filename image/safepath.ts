// Scoped path resolution inside a root directory, with the semantics of
// github.com/cyphar/filepath-securejoin: every symlink met while walking a path
// is resolved as if `root` were `/` (an absolute target restarts at root, `..`
// never climbs above root), so a path can never resolve to a place outside the
// root, whatever links the tree holds — including links planted a moment ago by
// an earlier entry of the same archive.
//
// This is path-based, not fd-based (no openat2(RESOLVE_IN_ROOT)): it assumes
// nobody else is changing the tree under `root` while we resolve and write in it.
// The layer applier owns its target dir, so that holds there. See SECURITY.md.
import fs from 'node:fs';
import path from 'node:path';

/** Thrown when an untrusted path cannot be used inside the root. */
export class PathEscapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathEscapeError';
  }
}

/** Linux's limit on symlinks followed during one resolution (MAXSYMLINKS is 40; securejoin uses 255). */
const MAX_SYMLINKS = 255;

/**
 * Lexically cleans an untrusted relative path: leading `/` are stripped, empty
 * and `.` components dropped, `..` pops the previous component. A `..` that
 * would climb above the root is an error (not clamped), as is a NUL byte.
 * Returns the components; [] means the root itself.
 */
export function cleanComponents(unsafe: string): string[] {
  if (unsafe.includes('\0')) throw new PathEscapeError(`path ${JSON.stringify(unsafe)} contains a NUL byte`);
  const out: string[] = [];
  for (const c of unsafe.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) throw new PathEscapeError(`path ${JSON.stringify(unsafe)} climbs above the root`);
      out.pop();
      continue;
    }
    out.push(c);
  }
  return out;
}

/** cleanComponents joined with '/'; '' is the root. */
export function cleanRelative(unsafe: string): string {
  return cleanComponents(unsafe).join('/');
}

export interface SecureJoinOptions {
  /** Resolve a symlink in the final component too (default false: the final component is returned as is). */
  followFinal?: boolean;
}

/**
 * Resolves `unsafe` (relative or absolute; absolute is taken relative to root)
 * inside `root` and returns a host path that is guaranteed to be `root` or below
 * it. Every existing component except (by default) the last is a real directory
 * or a missing name — symlinks have been replaced by what they point to, scoped
 * to the root. Components that do not exist are kept lexically.
 *
 * `root` must be an absolute path without symlinks (use fs.realpathSync once).
 * Unlike cleanComponents, `..` here is clamped at the root (chroot semantics),
 * both in `unsafe` and in link targets.
 */
export function secureJoin(root: string, unsafe: string, opts: SecureJoinOptions = {}): string {
  const resolved = resolveScoped(unsafe, !!opts.followFinal, (comps) => {
    const candidate = path.join(root, ...comps);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(candidate);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
    return st?.isSymbolicLink() ? fs.readlinkSync(candidate) : undefined;
  });
  return resolved.length === 0 ? root : path.join(root, ...resolved);
}

/**
 * The symlink walk of secureJoin over any tree: `p` to components without
 * symlinks, every link followed inside the root (absolute targets restart at
 * the root, `..` is clamped at it); the final component only with
 * followFinal. `linkTarget(components)` gives the target of the symlink at
 * those components, or undefined when there is none (or nothing). Used for
 * the host file system (secureJoin), an image's merged layers
 * (builder/merged.ts) and a COPY's planned layer on top of them (builder/copy.ts).
 */
export function resolveScoped(p: string, followFinal: boolean, linkTarget: (components: string[]) => string | undefined): string[] {
  if (p.includes('\0')) throw new PathEscapeError(`path ${JSON.stringify(p)} contains a NUL byte`);
  const resolved: string[] = [];
  // Pending components, consumed from the front; link targets are spliced in.
  let pending = p.split('/');
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const isFinal = !pending.some((x) => x !== '' && x !== '.');
    if (isFinal && !followFinal) {
      resolved.push(c);
      break;
    }
    const target = linkTarget([...resolved, c]);
    if (target !== undefined) {
      if (++links > MAX_SYMLINKS) throw new PathEscapeError(`path ${JSON.stringify(p)}: too many levels of symbolic links`);
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...target.split('/'), ...pending];
      continue;
    }
    resolved.push(c);
  }
  return resolved;
}

/**
 * mkdir -p for a path returned by secureJoin (every existing component is a
 * real directory). New directories get `mode` exactly (umask is undone with
 * chmod). Returns the directories it created, outermost first. Throws ENOTDIR
 * if an existing component is not a directory.
 */
export function mkdirAllInRoot(root: string, hostPath: string, mode = 0o755): string[] {
  const rel = path.relative(root, hostPath);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new PathEscapeError(`${hostPath} is not inside ${root}`);
  const created: string[] = [];
  let cur = root;
  for (const c of rel === '' ? [] : rel.split('/')) {
    cur = path.join(cur, c);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (st === undefined) {
      fs.mkdirSync(cur, mode);
      fs.chmodSync(cur, mode);
      created.push(cur);
    } else if (!st.isDirectory()) {
      const err = new Error(`${cur}: not a directory`) as NodeJS.ErrnoException;
      err.code = 'ENOTDIR';
      throw err;
    }
  }
  return created;
}

/** True when `p` is `root` or lies below it (lexically). */
export function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('../') && rel !== '..' && !path.isAbsolute(rel));
}

/** lstat, or undefined when the path (or a parent) does not exist. */
export function lstatMaybe(p: string): fs.Stats | undefined {
  try {
    // throwIfNoEntry: a missing path is the common case (COPY checks every destination); an
    // ENOENT error object costs more than the lstat itself. ENOTDIR still throws.
    return fs.lstatSync(p, { throwIfNoEntry: false });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}
