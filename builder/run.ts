// RUN: the command line BuildKit would run (SHELL, exec form, heredocs), the
// history string it records, and RUN --mount: cache dirs kept under the root,
// bind mounts of the context or another stage, tmpfs, and secrets (files given
// with --secret on the command line; mounted, never copied into a layer).
import fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { BindSpec, NetworkMode } from '../runtime/spec.js';
import { FileLock } from '../image/lock.js';
import type { Store } from '../image/store.js';
import type { RunInstruction, RunMount } from './instructions.js';
import { parseHeredocWord } from './parser.js';
import { copyToLayer } from './copy.js';
import { MergedView } from './merged.js';
import type { SourceFS } from './sourcefs.js';

export class RunError extends Error {}

/** A secret given on the command line: `--secret id=x,src=FILE` or `--secret id=x,env=VAR`. */
export interface SecretSource {
  src?: string;
  env?: string;
}

/** Parses one --secret value (id=, src=/source=, env=, type=file|env). */
export function parseSecretFlag(v: string): [string, SecretSource] {
  const o: Record<string, string> = {};
  for (const part of v.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new RunError(`invalid --secret ${JSON.stringify(v)}: expected key=value pairs (id=NAME,src=FILE or id=NAME,env=VAR)`);
    o[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1);
  }
  const id = o.id;
  const src = o.src ?? o.source;
  let env = o.env;
  if (!id) throw new RunError(`invalid --secret ${JSON.stringify(v)}: id= is required`);
  if (o.type === 'env' && !env) env = src ?? id;
  if (!src && !env) {
    // Docker: with neither, the secret comes from the env var of the same name, else a file of that name.
    if (process.env[id] !== undefined) env = id;
    else return [id, { src: id }];
  }
  return [id, o.type === 'env' ? { env } : src ? { src } : { env }];
}

/** Where 'default' networking goes. The networking engineer's bridge mode plugs in HERE. */
export function stepNetwork(mode: 'default' | 'none' | 'host'): NetworkMode {
  if (mode === 'none') return 'none';
  if (mode === 'host') return 'host';
  // default: the default bridge network, with outbound NAT, so `apt-get update`
  // reaches the host's package mirror (BuildKit's default also gives RUN network access).
  return 'bridge';
}

export interface RunCommand {
  /** argv for runStep. */
  args: string[];
  /** Files to mount read-only (heredoc scripts with a shebang). */
  files: { target: string; content: string; mode: number }[];
}

/** The command BuildKit runs for a RUN, from its shell or exec form and heredocs. */
export function runCommand(ins: RunInstruction, shell: string[]): RunCommand {
  if (ins.command.form === 'exec') return { args: ins.command.argv, files: [] };
  const cmd = ins.command.command;
  if (ins.heredocs.length === 0) return { args: [...shell, cmd], files: [] };
  const only = parseHeredocWord(cmd.trim());
  if (only && ins.heredocs.length === 1) {
    const h = ins.heredocs[0]!;
    if (h.content.startsWith('#!')) {
      // A script with its own interpreter: mounted and executed as a file.
      const target = path.posix.join('/dev/pipes', h.name);
      return { args: [target], files: [{ target, content: h.content, mode: 0o755 }] };
    }
    return { args: [...shell, h.content], files: [] };
  }
  // Heredocs inside a longer command line: the shell reads them itself.
  let full = cmd;
  for (const h of ins.heredocs) full += '\n' + h.content + h.name;
  return { args: [...shell, full], files: [] };
}

/** History's created_by for a RUN: `RUN |2 A=1 B=2 /bin/sh -c make # buildkit`. */
export function runCreatedBy(args: string[], declaredArgs: [string, string][]): string {
  const pre = declaredArgs.length ? [`|${declaredArgs.length}`, ...declaredArgs.map(([k, v]) => `${k}=${v}`)] : [];
  return `RUN ${[...pre, ...args].join(' ')} # buildkit`;
}

export interface PreparedMounts {
  binds: BindSpec[];
  tmpfs: string[];
  /** Extra environment (secret env=). */
  env: string[];
  /** Held locks / temp dirs to release after the step. */
  release(): Promise<void>;
}

export interface MountEnv {
  store: Store;
  /** The RUN's working dir, for relative targets. */
  cwd: string;
  secrets: Map<string, SecretSource>;
  /** The source of a bind/cache `from=` (or the build context when from is unset). */
  sourceFor(from: string | undefined): Promise<SourceFS>;
  /** The identity (cache key) of a `from=` stage or image. */
  identityOf(from: string): Promise<string | undefined>;
  /** Dir for temp copies (inside the store's tmp/). */
  tmpDir: string;
}

function boolOpt(v: string | undefined): boolean {
  return v !== undefined && /^(1|t|true)$/i.test(v);
}

function absTarget(cwd: string, t: string): string {
  return path.posix.resolve(cwd || '/', t);
}

export function cacheMountsDir(root: string): string {
  return path.join(root, 'cachemounts');
}

/** Options of a mount that are part of the step's cache key (never a secret's value). */
export function mountKey(m: RunMount, cwd: string): unknown {
  const o = { ...m.options };
  if (o.target !== undefined) o.target = absTarget(cwd, o.target);
  return { type: m.type, options: Object.keys(o).sort().map((k) => [k, o[k]]) };
}

type CacheSharing = 'shared' | 'private' | 'locked';

/**
 * The instance of cache `hex` a step mounts, and the lock it holds on it
 * until the step ends. Instances are dirs <hex>, <hex>-1, <hex>-2... each
 * with a flock; as BuildKit shares them:
 *   shared  joins an instance other shared users have (shared flock), else
 *           the first one nobody holds exclusively;
 *   private the first instance nobody uses (exclusive flock), else a new one;
 *   locked  waits for instance 0 (exclusive flock).
 * Locks die with their process, so a killed build frees its instances.
 */
async function cacheInstance(store: Store, hex: string, sharing: CacheSharing): Promise<{ dir: string; lock: FileLock }> {
  const name = (i: number) => (i ? `${hex}-${i}` : hex);
  const at = (i: number) => ({ dir: path.join(cacheMountsDir(store.root), name(i)), lockFile: store.lockPath(`cachemount-${name(i)}`) });
  if (sharing === 'locked') {
    const { dir, lockFile } = at(0);
    return { dir, lock: await FileLock.acquire(lockFile, 'exclusive') };
  }
  for (let i = 0; i < MAX_CACHE_INSTANCES; i++) {
    const { dir, lockFile } = at(i);
    const lock = FileLock.tryAcquire(lockFile, sharing === 'shared' ? 'shared' : 'exclusive');
    if (lock) return { dir, lock };
  }
  throw new RunError(`--mount=type=cache: all ${MAX_CACHE_INSTANCES} instances of this cache are in use`);
}

const MAX_CACHE_INSTANCES = 256;

/** A new cache dir, complete or not at all: made under a temp name (seeded from `seed`), then renamed into place. */
async function createCacheDir(store: Store, dir: string, id: string, o: { mode: number; uid: number; gid: number; seed?: { fs: SourceFS; path: string } }): Promise<void> {
  const tmp = `${dir}.new-${randomBytes(6).toString('hex')}`;
  await fsp.mkdir(tmp, { recursive: true, mode: 0o755 });
  try {
    if (o.seed) {
      const comps = o.seed.fs.resolve(o.seed.path, true);
      const st = o.seed.fs.lstat(comps);
      if (!st) throw new RunError(`--mount=type=cache: source ${o.seed.path} not found in the ${o.seed.fs.description}`);
      if (!st.isDirectory()) throw new RunError(`--mount=type=cache: source ${o.seed.path} in the ${o.seed.fs.description} is not a directory`);
      await copyToLayer(new MergedView([]), tmp, { items: [{ fs: o.seed.fs, path: o.seed.path }], dest: '/', destIsDir: true, parents: false, extractArchives: false, now: Date.now() / 1000, tmpDir: tmp });
    }
    await fsp.chmod(tmp, o.mode);
    await fsp.chown(tmp, o.uid, o.gid);
    await fsp.writeFile(`${dir}.id`, id);
    try {
      await fsp.rename(tmp, dir);
    } catch (e) {
      // Another build made it first (two shared users at once): theirs is as good.
      if (!['EEXIST', 'ENOTEMPTY'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    }
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

export async function prepareMounts(mounts: RunMount[], env: MountEnv): Promise<PreparedMounts> {
  const binds: BindSpec[] = [];
  const tmpfs: string[] = [];
  const extraEnv: string[] = [];
  const releases: (() => Promise<void>)[] = [];
  const release = async () => {
    for (const r of releases.reverse()) await r().catch(() => {});
  };
  let n = 0;
  try {
    for (const m of mounts) {
      const o = m.options;
      switch (m.type) {
        case 'tmpfs':
          tmpfs.push(absTarget(env.cwd, o.target!));
          break;
        case 'cache': {
          const target = absTarget(env.cwd, o.target!);
          const id = o.id || target;
          // from=: the cache starts as a copy of that stage's or image's source= dir; a
          // different base is a different cache (BuildKit keys it by id and base).
          const base = o.from !== undefined ? await env.sourceFor(o.from) : undefined;
          const baseId = o.from !== undefined ? await env.identityOf(o.from) : undefined;
          const hex = createHash('sha256').update(baseId === undefined ? id : `${id}\0${baseId}`).digest('hex').slice(0, 16);
          const { dir, lock } = await cacheInstance(env.store, hex, (o.sharing ?? 'shared').toLowerCase() as CacheSharing);
          releases.push(async () => lock.release());
          if (!fs.existsSync(dir)) {
            await createCacheDir(env.store, dir, id, {
              mode: o.mode ? parseInt(o.mode, 8) : 0o755,
              uid: o.uid ? Number(o.uid) : 0,
              gid: o.gid ? Number(o.gid) : 0,
              ...(base ? { seed: { fs: base, path: o.source ?? '/' } } : {}),
            });
          }
          binds.push({ source: dir, target, readonly: boolOpt(o.readonly) });
          break;
        }
        case 'bind': {
          const target = absTarget(env.cwd, o.target!);
          const src = await env.sourceFor(o.from);
          const rw = boolOpt(o.rw) && !boolOpt(o.readonly);
          const sourcePath = o.source ?? '/';
          const comps = src.resolve(sourcePath, true);
          const st = src.lstat(comps);
          if (!st) throw new RunError(`--mount=type=bind: ${sourcePath} not found in the ${src.description}`);
          // A private copy: the step sees exactly what the source holds (no ignored files), and rw writes are thrown away.
          const tmp = path.join(env.tmpDir, `bind-${n++}`);
          await fsp.mkdir(tmp, { recursive: true, mode: 0o755 });
          releases.push(() => fsp.rm(tmp, { recursive: true, force: true }));
          const isDir = st.isDirectory();
          await copyToLayer(new MergedView([]), tmp, {
            items: [{ fs: src, path: sourcePath }],
            dest: isDir ? '/' : '/file',
            destIsDir: isDir,
            parents: false,
            extractArchives: false,
            now: Date.now() / 1000,
            tmpDir: tmp,
          });
          binds.push({ source: isDir ? tmp : path.join(tmp, 'file'), target, readonly: !rw });
          break;
        }
        case 'secret': {
          const id = o.id || (o.target ? path.posix.basename(o.target) : o.env) || '';
          const s = env.secrets.get(id);
          const required = boolOpt(o.required);
          let value: Buffer | undefined;
          if (s?.src !== undefined) {
            try {
              value = await fsp.readFile(s.src);
            } catch (e) {
              throw new RunError(`secret ${id}: cannot read ${s.src}: ${(e as Error).message}`);
            }
          } else if (s?.env !== undefined) {
            const v = process.env[s.env];
            if (v !== undefined) value = Buffer.from(v);
          }
          if (value === undefined) {
            if (required) throw new RunError(`secret ${id} is required but was not given: pass --secret id=${id},src=FILE`);
            break;
          }
          if (o.env !== undefined) extraEnv.push(`${o.env}=${value.toString('utf8')}`);
          if (o.env === undefined || o.target !== undefined) {
            const target = absTarget(env.cwd, o.target ?? `/run/secrets/${id}`);
            const file = path.join(env.tmpDir, `secret-${n++}`);
            await fsp.writeFile(file, value, { mode: 0o600 });
            releases.push(() => fsp.rm(file, { force: true }));
            await fsp.chmod(file, o.mode ? parseInt(o.mode, 8) : 0o400);
            await fsp.chown(file, o.uid ? Number(o.uid) : 0, o.gid ? Number(o.gid) : 0);
            binds.push({ source: file, target, readonly: true });
          }
          break;
        }
        case 'ssh':
          throw new RunError('RUN --mount=type=ssh is not supported by tsbuild (no SSH agent forwarding): fetch what you need with a secret mount instead');
      }
    }
  } catch (e) {
    await release();
    throw e;
  }
  return { binds, tmpfs, env: extraEnv, release };
}
