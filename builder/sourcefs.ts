// Where COPY/ADD read from: the build context (a host dir, filtered by
// .dockerignore), another stage or image (a MergedView of its snapshots), or
// a temp dir holding heredoc bodies and downloads. All three look the same to
// copy.ts: paths are resolved inside their own root, never the host's.
import fs from 'node:fs';
import path from 'node:path';
import { lstatMaybe, secureJoin } from '../image/safepath.js';
import { MergedView } from './merged.js';

export interface SourceFS {
  /** For messages: "build context", "stage build", "image alpine". */
  readonly description: string;
  /** Keep uid/gid of the source (other stages, archives); false: files become 0:0 (the build context). */
  readonly preserveOwner: boolean;
  /** Clean components of `p`, symlinks resolved inside this root (the final one only with followFinal). */
  resolve(p: string, followFinal: boolean): string[];
  /** lstat of a resolved path; undefined when missing or excluded. */
  lstat(comps: readonly string[]): fs.Stats | undefined;
  /** Entry names of a resolved dir, sorted, without excluded ones. */
  readdir(comps: readonly string[]): string[];
  /** Host path for reading a file's contents / a link's target. */
  hostPath(comps: readonly string[]): string;
}

/** What a .dockerignore (or --exclude) says about a context-relative path. */
export interface PathFilter {
  /** True when the path is excluded. */
  excludes(rel: string): boolean;
  /** True when some `!` rule could re-include something below an excluded dir. */
  readonly hasExceptions: boolean;
  /** For an excluded dir: could a `!` rule re-include something below it? (Default: assume yes when hasExceptions.) */
  mayReinclude?(dir: string): boolean;
}


/** A host directory as a source (the context, a temp dir). */
export class DirFS implements SourceFS {
  readonly root: string;
  constructor(
    root: string,
    readonly description: string,
    readonly filter?: PathFilter,
    readonly preserveOwner = false,
  ) {
    this.root = fs.realpathSync(root);
  }

  resolve(p: string, followFinal: boolean): string[] {
    const host = secureJoin(this.root, p, { followFinal });
    const rel = path.relative(this.root, host);
    return rel === '' ? [] : rel.split('/');
  }

  private excluded(comps: readonly string[], st: fs.Stats): boolean {
    if (!this.filter || comps.length === 0) return false;
    const rel = comps.join('/');
    if (!this.filter.excludes(rel)) return false;
    // An excluded dir stays when a `!` rule re-includes something inside it.
    if (st.isDirectory() && this.filter.hasExceptions && (this.filter.mayReinclude?.(rel) ?? true)) return !this.hasIncluded(comps);
    return true;
  }

  private hasIncluded(comps: readonly string[]): boolean {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(this.root, ...comps));
    } catch {
      return false;
    }
    for (const n of names) {
      const c = [...comps, n];
      const st = lstatMaybe(path.join(this.root, ...c));
      if (!st) continue;
      if (!this.filter!.excludes(c.join('/'))) return true;
      if (st.isDirectory() && this.hasIncluded(c)) return true;
    }
    return false;
  }

  lstat(comps: readonly string[]): fs.Stats | undefined {
    const st = lstatMaybe(this.hostPath(comps));
    // The filter matches parents too ("dir" excludes "dir/a"), so the path's own verdict is enough.
    if (!st || this.excluded(comps, st)) return undefined;
    return st;
  }

  readdir(comps: readonly string[]): string[] {
    const dir = this.hostPath(comps);
    const out: string[] = [];
    for (const n of fs.readdirSync(dir).sort()) {
      const c = [...comps, n];
      const st = lstatMaybe(path.join(dir, n));
      if (!st || this.excluded(c, st)) continue;
      out.push(n);
    }
    return out;
  }

  hostPath(comps: readonly string[]): string {
    return comps.length === 0 ? this.root : path.join(this.root, ...comps);
  }
}

/** Another stage's (or image's) root filesystem. */
export class ViewFS implements SourceFS {
  readonly preserveOwner = true;
  constructor(
    readonly view: MergedView,
    readonly description: string,
  ) {}
  resolve(p: string, followFinal: boolean): string[] {
    return this.view.resolve(p, followFinal);
  }
  lstat(comps: readonly string[]): fs.Stats | undefined {
    if (comps.length === 0) return this.view.layers.length ? this.view.lookup([])?.st ?? emptyRootStat() : emptyRootStat();
    return this.view.lookup(comps)?.st;
  }
  readdir(comps: readonly string[]): string[] {
    return this.view.readdir(comps);
  }
  hostPath(comps: readonly string[]): string {
    const p = this.view.hostPath(comps);
    if (!p) throw new Error(`${this.description}: /${comps.join('/')} disappeared`);
    return p;
  }
}

let emptyRoot: fs.Stats | undefined;
/** The root of an empty filesystem (FROM scratch): a 0755 root-owned dir. */
function emptyRootStat(): fs.Stats {
  if (!emptyRoot) {
    const st = fs.lstatSync('/');
    emptyRoot = Object.assign(Object.create(Object.getPrototypeOf(st) as object) as fs.Stats, st, { mode: 0o40755, uid: 0, gid: 0 });
  }
  return emptyRoot;
}
