// The build context: where COPY/ADD read from, and where the Dockerfile is.
//
//   tsbuild build DIR                 context DIR, Dockerfile DIR/Dockerfile
//   tsbuild build -f any/path DIR     the Dockerfile can live anywhere (also outside DIR)
//   tsbuild build -f - DIR            the Dockerfile comes from stdin
//   tsbuild build - < ctx.tar[.gz]    the context is a tar on stdin (Dockerfile inside it, or -f names it)
//   tsbuild build - < Dockerfile      no context at all, just a Dockerfile on stdin
//
// A tar context is unpacked with the layer applier (paths never leave the
// temp dir) into the store's tmp/ and removed afterwards. .dockerignore:
// `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's
// `.dockerignore`; excluded files do not exist for COPY/ADD.
import fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { applyLayer } from '../image/layer-applier.js';
import type { Store } from '../image/store.js';
import { DockerignoreError, loadDockerignore } from './dockerignore.js';
import { DirFS, type PathFilter } from './sourcefs.js';

export class ContextError extends Error {}

export interface BuildContext {
  /** The context's files (filtered by .dockerignore). */
  fs: DirFS;
  /** The Dockerfile's text and the name errors use for it ("Dockerfile", "docker/app.Dockerfile"). */
  dockerfile: { text: string; name: string };
  /** Which ignore file applied, if any (for the progress display). */
  ignoreFile?: string;
  /** A stable name for the context (its real path), for the file-digest cache; undefined for a context from stdin. */
  scope?: string;
  cleanup(): Promise<void>;
  /** The same, synchronously (for a signal handler about to exit). */
  cleanupSync(): void;
}

export interface ContextOptions {
  /** A directory, or '-' for stdin. */
  context: string;
  /** -f: path of the Dockerfile (relative to the cwd for a directory context, inside the tar for '-'), or '-' for stdin. */
  file?: string;
  stdin?: Readable;
  cwd?: string;
}

/** A Dockerfile on stdin is small; anything bigger than this is not one. */
const MAX_DOCKERFILE = 16 * 1024 * 1024;

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    chunks.push(c as Buffer);
    n += (c as Buffer).length;
    if (n > MAX_DOCKERFILE) throw new ContextError('the Dockerfile on stdin is larger than 16 MiB: is it really a Dockerfile?');
  }
  return Buffer.concat(chunks);
}

/**
 * Reads the first `n` bytes of a stream (or all of it, if shorter) and
 * returns them with a stream of the whole input: the head, then the rest.
 */
async function peek(s: Readable, n: number): Promise<{ head: Buffer; all: Readable }> {
  const it = s[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let len = 0;
  let done = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    chunks.push(r.value);
    len += r.value.length;
  }
  const head = Buffer.concat(chunks);
  async function* rest(): AsyncGenerator<Buffer> {
    yield head;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head, all: Readable.from(rest(), { objectMode: false }) };
}

function looksLikeTar(b: Buffer): boolean {
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return true; // gzip: a compressed tar
  if (b.length < 512) return false;
  const magic = b.subarray(257, 262).toString('latin1');
  if (magic === 'ustar') return true;
  const field = b.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  return sum === parseInt(field, 8);
}

function readDockerfileIn(dir: string, rel: string | undefined, shown: string): { text: string; name: string; host: string } {
  const candidates = rel !== undefined ? [rel] : ['Dockerfile', 'dockerfile'];
  for (const c of candidates) {
    const host = path.resolve(dir, c);
    try {
      return { text: fs.readFileSync(host, 'utf8'), name: c, host };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EISDIR') throw new ContextError(`the Dockerfile ${c} is a directory: give the file with -f`);
      if (code !== 'ENOENT') throw e;
    }
  }
  throw new ContextError(`failed to read dockerfile: open ${rel ?? 'Dockerfile'}: no such file or directory (in ${shown}; name it with -f PATH)`);
}

async function filterFor(contextDir: string, dockerfileHost: string | undefined): Promise<{ filter?: PathFilter; file?: string }> {
  try {
    const { rules, file } = await loadDockerignore(contextDir, dockerfileHost);
    return rules.empty ? { ...(file ? { file } : {}) } : { filter: rules, ...(file ? { file } : {}) };
  } catch (e) {
    if (e instanceof DockerignoreError) throw new ContextError(e.message);
    throw e;
  }
}

export async function openContext(store: Store, o: ContextOptions): Promise<BuildContext> {
  const cwd = o.cwd ?? process.cwd();
  if (o.context === '-') {
    if (!o.stdin) throw new ContextError('context "-" needs a tar archive (or a Dockerfile) on stdin');
    if (o.file === '-') throw new ContextError('cannot read both the context and the Dockerfile from stdin: give -f a file inside the context tar');
    // Streamed: a context tar is unpacked as it arrives, never held in memory.
    const { head, all } = await peek(o.stdin, 512);
    const tmp = store.tmpPath('context');
    await fsp.mkdir(tmp, { recursive: true, mode: 0o755 });
    const cleanup = () => fsp.rm(tmp, { recursive: true, force: true });
    const cleanupSync = () => fs.rmSync(tmp, { recursive: true, force: true });
    try {
      if (!looksLikeTar(head)) {
        // `tsbuild build - < Dockerfile`: a Dockerfile and an empty context.
        return { fs: new DirFS(tmp, 'build context'), dockerfile: { text: (await readAll(all)).toString('utf8'), name: 'Dockerfile' }, cleanup, cleanupSync };
      }
      try {
        await applyLayer(all, tmp, { mode: 'merged' });
      } catch (e) {
        throw new ContextError(`the context tar on stdin cannot be unpacked: ${(e as Error).message}`);
      }
      const df = readDockerfileIn(tmp, o.file, 'the context tar');
      const ig = await filterFor(tmp, df.host);
      return { fs: new DirFS(tmp, 'build context', ig.filter), dockerfile: { text: df.text, name: df.name }, ...(ig.file ? { ignoreFile: path.relative(tmp, ig.file) } : {}), cleanup, cleanupSync };
    } catch (e) {
      await cleanup();
      throw e;
    }
  }
  if (/^(https?|git):\/\//.test(o.context) || o.context.startsWith('git@')) {
    throw new ContextError(`remote build contexts (${o.context}) are not supported: clone or download it and build the directory`);
  }
  const dir = path.resolve(cwd, o.context);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new ContextError(`unable to prepare context: path ${JSON.stringify(o.context)} not found`);
  }
  if (!st.isDirectory()) throw new ContextError(`unable to prepare context: ${JSON.stringify(o.context)} is not a directory (give the build context directory, and the Dockerfile with -f)`);
  let dockerfile: { text: string; name: string };
  let dfHost: string | undefined;
  if (o.file === '-') {
    if (!o.stdin) throw new ContextError('-f - needs the Dockerfile on stdin');
    dockerfile = { text: (await readAll(o.stdin)).toString('utf8'), name: 'Dockerfile' };
  } else if (o.file !== undefined) {
    const host = path.resolve(cwd, o.file);
    try {
      dockerfile = { text: fs.readFileSync(host, 'utf8'), name: o.file };
      dfHost = host;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw new ContextError(`the Dockerfile ${o.file} is a directory: give the file with -f`);
      throw new ContextError(`failed to read dockerfile: open ${o.file}: no such file or directory`);
    }
  } else {
    const df = readDockerfileIn(dir, undefined, `the context ${o.context}`);
    dockerfile = { text: df.text, name: path.relative(cwd, df.host) || df.name };
    dfHost = df.host;
  }
  const ig = await filterFor(dir, dfHost);
  const real = fs.realpathSync(dir);
  return {
    fs: new DirFS(real, 'build context', ig.filter),
    dockerfile,
    ignoreFile: ig.file,
    scope: real,
    cleanup: async () => {},
    cleanupSync: () => {},
  };
}
