// The image report printed after a build (and by `--report json`): total size,
// size per layer with the history step that made it, and the bytes a layer
// carries that the final image never shows — files a later layer overwrote or
// deleted (whiteouts `.wh.<name>`, opaque dirs `.wh..wh..opq`, a directory
// replaced by a file). Docker and BuildKit print none of this; `dive` computes
// something like it interactively.
//
// Every layer blob is streamed once, bottom to top, through the decompressor
// and a tar header reader: no layer is ever held in memory, only a tree of the
// paths seen so far (memory grows with the number of files, not their size).
//
// Definitions (all sizes in bytes):
//  - a layer's `size`: the content bytes of its regular files (what `docker
//    history` and dive call the layer size); `tarSize`: its uncompressed tar;
//    `compressedSize`: the blob as stored and pushed.
//  - `wasted`: content bytes in this layer that are not visible in the final
//    image. A file version is hidden when a later entry at the same path
//    replaces it (any type), when a whiteout or opaque marker in a later layer
//    covers it or one of its parent dirs, or when a parent dir is replaced by a
//    non-directory. Whiteouts apply only to lower layers (OCI image spec).
//    Hardlinked paths share their bytes: those are wasted only when every path
//    of the group is hidden. Re-stating a directory (metadata only) wastes nothing.
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tarStream from 'tar-stream';
import type { Digest } from './digest.js';
import { shortTag, type StoredImage } from './images.js';
import { layerCompression } from './mediatypes.js';
import type { Store } from './store.js';

export interface LayerReport {
  /** 1-based, bottom layer first. */
  index: number;
  digest: Digest;
  diffId: Digest;
  mediaType: string;
  /** The history step that made it; '' when the image has no history for it. */
  createdBy: string;
  comment?: string;
  created?: string;
  compressedSize: number;
  tarSize: number;
  /** Content bytes of the regular files in this layer. */
  size: number;
  files: number;
  /** Whiteout entries (`.wh.<name>`) and opaque markers in this layer. */
  deletions: number;
  /** Content bytes of this layer hidden in the final image. */
  wasted: number;
  wastedFiles: number;
  /** Content bytes of lower layers that this layer hid. */
  hides: number;
}

export interface WastedFile {
  /** Absolute path in the image. */
  path: string;
  size: number;
  /** Layer (1-based) whose bytes are wasted. */
  layer: number;
  /** Layer (1-based) that hid them. */
  hiddenBy: number;
  how: 'overwritten' | 'deleted' | 'opaque-dir' | 'parent-replaced';
}

export interface ImageReport {
  id: Digest;
  digest: Digest;
  tags: string[];
  layers: LayerReport[];
  total: {
    layers: number;
    compressedSize: number;
    tarSize: number;
    /** Sum of the layers' `size`. */
    size: number;
    /** Content bytes visible in the final image (size - wasted). */
    finalSize: number;
    wasted: number;
    wastedFiles: number;
    /** wasted / size, 0 for an empty image. */
    wastedRatio: number;
  };
  /** The largest wasted files, biggest first (at most `topWasted`, default 10). */
  topWasted: WastedFile[];
}

export interface ReportOptions {
  /** How many of the largest wasted files to list (default 10). */
  topWasted?: number;
}

// ---------------------------------------------------------------------------
// The path tree

interface Group {
  /** Content bytes shared by the hardlinked paths. */
  bytes: number;
  layer: number;
  visible: number;
}

interface Node {
  children: Map<string, Node>;
  /** Present when some layer wrote this exact path (not only implied as a parent). */
  v?: {
    layer: number;
    dir: boolean;
    size: number;
    group?: Group;
  };
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE = '.wh..wh..opq';

function newNode(): Node {
  return { children: new Map() };
}

/** Cleans a tar entry name into path components ('./a/b/' -> ['a','b']); [] for the root. */
function components(name: string): string[] {
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return out;
}

class Analyzer {
  private root = newNode();
  readonly layers: LayerReport[] = [];
  private top: WastedFile[] = [];

  constructor(private readonly topN: number) {}

  private lookup(parts: string[]): Node | undefined {
    let n: Node | undefined = this.root;
    for (const p of parts) {
      n = n.children.get(p);
      if (!n) return undefined;
    }
    return n;
  }

  /** Hides the version at `node` (if any) and, unless keepChildren, everything below it. */
  private hide(node: Node, path: string, by: number, how: WastedFile['how'], onlyBelow: number | undefined, keepChildren = false): void {
    if (!keepChildren) {
      for (const [name, child] of [...node.children]) {
        this.hide(child, `${path}/${name}`, by, how === 'overwritten' ? 'parent-replaced' : how, onlyBelow);
        if (!child.v && child.children.size === 0) node.children.delete(name);
      }
    }
    const v = node.v;
    if (!v || (onlyBelow !== undefined && v.layer >= onlyBelow)) return;
    node.v = undefined;
    if (v.dir) return;
    let bytes = v.size;
    let layer = v.layer;
    if (v.group) {
      v.group.visible--;
      if (v.group.visible > 0) return;
      bytes = v.group.bytes;
      layer = v.group.layer;
    }
    if (bytes === 0) return;
    const owner = this.layers[layer - 1]!;
    owner.wasted += bytes;
    owner.wastedFiles++;
    this.layers[by - 1]!.hides += bytes;
    this.remember({ path: path || '/', size: bytes, layer, hiddenBy: by, how });
  }

  private remember(w: WastedFile): void {
    if (this.topN <= 0) return;
    if (this.top.length >= this.topN && w.size <= this.top[this.top.length - 1]!.size) return;
    this.top.push(w);
    this.top.sort((a, b) => b.size - a.size || a.path.localeCompare(b.path));
    if (this.top.length > this.topN) this.top.pop();
  }

  get topWasted(): WastedFile[] {
    return this.top;
  }

  /** One tar entry of layer `layer` (1-based). */
  entry(layer: number, h: tarStream.Header, lr: LayerReport): void {
    const parts = components(h.name);
    if (parts.length === 0) return; // the root dir itself
    const base = parts[parts.length - 1]!;
    const parentParts = parts.slice(0, -1);
    const abs = (p: string[]) => `/${p.join('/')}`;

    if (base === OPAQUE) {
      lr.deletions++;
      const dir = this.lookup(parentParts);
      if (dir) {
        for (const [name, child] of [...dir.children]) {
          this.hide(child, `${abs(parentParts)}/${name}`.replace(/^\/\//, '/'), layer, 'opaque-dir', layer);
          if (!child.v && child.children.size === 0) dir.children.delete(name);
        }
      }
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      lr.deletions++;
      const target = [...parentParts, base.slice(WHITEOUT_PREFIX.length)];
      const node = this.lookup(target);
      if (node) {
        this.hide(node, abs(target), layer, 'deleted', layer);
        const parent = this.lookup(parentParts);
        if (parent && !node.v && node.children.size === 0) parent.children.delete(target[target.length - 1]!);
      }
      return;
    }

    const isDir = h.type === 'directory';
    const isFile = h.type === 'file' || h.type === 'contiguous-file';
    const size = isFile ? (h.size ?? 0) : 0;
    if (isFile) {
      lr.size += size;
      lr.files++;
    }
    // Walk down, creating implied parents; a parent that is a file or symlink
    // in a lower layer is replaced by a directory here.
    let node = this.root;
    for (let i = 0; i < parts.length; i++) {
      let c = node.children.get(parts[i]!);
      if (!c) {
        c = newNode();
        node.children.set(parts[i]!, c);
      }
      node = c;
      if (i < parts.length - 1 && node.v && !node.v.dir) this.hide(node, abs(parts.slice(0, i + 1)), layer, 'overwritten', undefined, true);
    }
    if (node.v) {
      if (node.v.dir && isDir) {
        node.v = { layer, dir: true, size: 0 };
        return;
      }
      // Replaced: a directory by a non-directory takes its whole subtree along.
      this.hide(node, abs(parts), layer, 'overwritten', undefined, isDir);
    } else if (!isDir && node.children.size > 0) {
      // An implied directory (entries below it, no entry of its own) replaced by a non-directory.
      this.hide(node, abs(parts), layer, 'overwritten', undefined);
    }
    let group: Group | undefined;
    if (h.type === 'link' && h.linkname) {
      const target = this.lookup(components(h.linkname));
      if (target?.v && !target.v.dir && target.v.layer === layer) {
        target.v.group ??= { bytes: target.v.size, layer, visible: 1 };
        group = target.v.group;
        group.visible++;
      }
    }
    node.v = { layer, dir: isDir, size: group ? 0 : size, group };
  }
}

// ---------------------------------------------------------------------------

/** Streams one layer blob's tar headers into the analyzer; returns the uncompressed tar size. */
async function readLayer(store: Store, image: StoredImage, i: number, a: Analyzer, lr: LayerReport): Promise<void> {
  const d = image.layers[i]!.descriptor;
  const compression = layerCompression(d.mediaType);
  if (compression === 'zstd') throw new Error(`layer ${i + 1} (${d.digest}) is zstd-compressed, which Node 20 cannot read`);
  const extract = tarStream.extract();
  let tarSize = 0;
  const count = async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) {
      tarSize += c.length;
      yield c;
    }
  };
  const consume = (async () => {
    // Leaving this loop early (a throw) destroys extract, which ends the pipeline too.
    for await (const entry of extract) {
      a.entry(i + 1, entry.header, lr);
      entry.resume();
    }
  })();
  const source = store.blobStream(d.digest as Digest);
  const feed = compression === 'gzip' ? pipeline(source, zlib.createGunzip(), count, extract) : pipeline(source, count, extract);
  try {
    await Promise.all([feed, consume]);
  } catch (e) {
    throw new Error(`reading layer ${i + 1} (${d.digest}): ${(e as Error).message}`, { cause: e });
  }
  lr.tarSize = tarSize;
}

/** The size/waste report of a stored image; reads every layer blob once, streamed. */
export async function imageReport(store: Store, image: StoredImage, opts: ReportOptions = {}): Promise<ImageReport> {
  const a = new Analyzer(opts.topWasted ?? 10);
  const steps = (image.config.history ?? []).filter((h) => !h.empty_layer);
  image.layers.forEach((l, i) => {
    const h = steps[i];
    a.layers.push({
      index: i + 1,
      digest: l.descriptor.digest as Digest,
      diffId: l.diffId,
      mediaType: l.descriptor.mediaType,
      createdBy: h?.created_by ?? '',
      ...(h?.comment ? { comment: h.comment } : {}),
      ...(h?.created ? { created: h.created } : {}),
      compressedSize: l.descriptor.size,
      tarSize: 0,
      size: 0,
      files: 0,
      deletions: 0,
      wasted: 0,
      wastedFiles: 0,
      hides: 0,
    });
  });
  for (let i = 0; i < image.layers.length; i++) await readLayer(store, image, i, a, a.layers[i]!);
  const sum = (f: (l: LayerReport) => number) => a.layers.reduce((s, l) => s + f(l), 0);
  const size = sum((l) => l.size);
  const wasted = sum((l) => l.wasted);
  return {
    id: image.id,
    digest: image.digest,
    tags: image.tags,
    layers: a.layers,
    total: {
      layers: a.layers.length,
      compressedSize: sum((l) => l.compressedSize),
      tarSize: sum((l) => l.tarSize),
      size,
      finalSize: size - wasted,
      wasted,
      wastedFiles: sum((l) => l.wastedFiles),
      wastedRatio: size === 0 ? 0 : wasted / size,
    },
    topWasted: a.topWasted,
  };
}

// ---------------------------------------------------------------------------
// Rendering

/** Docker's decimal units, as cli/format.ts humanSize (image/ does not import cli/). */
function bytesText(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(3))}${units[i]}`;
}

export interface RenderOptions {
  /** Line width for the CREATED BY column (default: the tty's columns, else 100). */
  width?: number;
  /** Do not shorten CREATED BY or paths. */
  noTrunc?: boolean;
}

/** Docker history's form of a step: `/bin/sh -c #(nop) ` dropped, whitespace folded. */
function stepText(createdBy: string): string {
  return createdBy.replace(/^\/bin\/sh -c #\(nop\)\s+/, '').replace(/\s+/g, ' ').trim() || '<missing>';
}

function shorten(s: string, max: number): string {
  if (max <= 1 || s.length <= max) return s;
  return `${s.slice(0, max - 1)}…`;
}

/** 'json': the report as indented JSON; 'text': a table for the terminal. */
export function renderReport(report: ImageReport, format: 'text' | 'json', opts: RenderOptions = {}): string {
  if (format === 'json') return `${JSON.stringify(report, null, 2)}\n`;
  const width = opts.width ?? (process.stdout.isTTY && process.stdout.columns ? process.stdout.columns : 100);
  const t = report.total;
  const name = report.tags[0] ? shortTag(report.tags[0]) : report.digest;
  const pct = (t.wastedRatio * 100).toFixed(1);
  const lines: string[] = [];
  lines.push(`Image ${name}  id ${report.id.slice(7, 19)}  ${t.layers} layer${t.layers === 1 ? '' : 's'}`);
  lines.push(`Size ${bytesText(t.size)} in layers (${bytesText(t.compressedSize)} compressed), ${bytesText(t.finalSize)} visible`);
  lines.push(`Wasted ${bytesText(t.wasted)} (${pct}%) in ${t.wastedFiles} file${t.wastedFiles === 1 ? '' : 's'} overwritten or deleted later`);
  lines.push('');
  const head = ['#', 'SIZE', 'COMPRESSED', 'WASTED', 'FILES', 'CREATED BY'];
  const rows = report.layers.map((l) => [String(l.index), bytesText(l.size), bytesText(l.compressedSize), l.wasted ? bytesText(l.wasted) : '-', String(l.files), stepText(l.createdBy)]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fixed = w.slice(0, -1).reduce((s, x) => s + x + 2, 0);
  const line = (cells: string[], trunc: boolean) =>
    cells
      .map((c, i) => {
        if (i === cells.length - 1) return trunc && !opts.noTrunc ? shorten(c, Math.max(20, width - fixed)) : c;
        // Numbers right-aligned; the step left-aligned.
        return `${c.padStart(w[i]!)}  `;
      })
      .join('')
      .trimEnd();
  lines.push(line(head, false));
  for (const r of rows) lines.push(line(r, true));
  if (report.topWasted.length) {
    lines.push('');
    lines.push('Largest wasted files:');
    const wr = report.topWasted.map((f) => [bytesText(f.size), `layer ${f.layer}`, `${f.how} in layer ${f.hiddenBy}`, f.path]);
    const ww = [0, 1, 2].map((i) => Math.max(...wr.map((r) => r[i]!.length)));
    for (const r of wr) {
      const prefix = `  ${r[0]!.padStart(ww[0]!)}  ${r[1]!.padEnd(ww[1]!)}  ${r[2]!.padEnd(ww[2]!)}  `;
      lines.push(prefix + (opts.noTrunc ? r[3]! : shorten(r[3]!, Math.max(20, width - prefix.length))));
    }
  }
  return `${lines.join('\n')}\n`;
}
