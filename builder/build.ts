// The build orchestrator: Dockerfile + context -> image in the store.
//
//   parse (parser.ts) -> plan stages (stages.ts) -> each needed stage, once its
//   dependencies are done (independent stages concurrently) -> per instruction:
//   expand (expand.ts) -> cache key -> hit: replay the record (cache.ts) ->
//   miss: execute (RUN: runtime/step.ts + run.ts; COPY/ADD: copy.ts; the rest
//   only change the config) -> record -> final config + manifest -> tags.
//
// A stage's state is its layers (descriptor + diff_id), its image config and
// its *identity*: a digest of the diff_ids and the container config, i.e. of
// what later steps can observe. Cache keys use the identity, never names, so
// a base image is keyed by its content. A fully cached build reads one small
// record per step and stats the layer blobs: no snapshot is unpacked and no
// layer is read.
//
// Nothing is tagged or recorded as an image until every stage has succeeded;
// a failing step removes its temp dirs and step dir before the error is shown.
import type { ClientOptions } from '../registry/transport.js';
import fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { HashCounter, sha256, type Digest } from '../image/digest.js';
import { buildManifest, loadImage, resolveImage, tagKey, writeImage, type StoredImage } from '../image/images.js';
import { tarDirectory } from '../image/layer-writer.js';
import { MEDIA_TYPES } from '../image/mediatypes.js';
import type { ContainerConfig, History, ImageConfig } from '../image/schemas.js';
import { adoptSnapshot, chainIds, ensureSnapshots, isComplete } from '../image/snapshots.js';
import { NotFoundError, type Store } from '../image/store.js';
import { ParallelGzip } from './compress.js';
import { cacheKey, FileHashCache, readCache, writeCache, type CachedLayer, type CacheRecord } from './cache.js';
import type { BuildContext } from './context.js';
import { copyToLayer, CopyError, parseChmod, planCopy, sourcesDigest, type CopyItem, type LayerPlan } from './copy.js';
import { envListToVars, expandDisplay, expandHeredoc, expandWord, expandWords, type Vars } from './expand.js';
import { DockerIgnore, DockerignoreError } from './dockerignore.js';
import {
  DockerfileError,
  type CopyInstruction,
  type Dockerfile,
  type HealthcheckInstruction,
  type Instruction,
  type Location,
  type RunInstruction,
  type Stage,
} from './instructions.js';
import { MergedView } from './merged.js';
import { checkMount, parseDockerfile, parseOnbuildTriggers } from './parser.js';
import { Progress, type StepHandle } from './progress.js';
import type { NetworkMode } from '../runtime/spec.js';
import { mountKey, prepareMounts, runCommand, runCreatedBy, RunError, stepNetwork, type SecretSource } from './run.js';
import { DirFS, ViewFS, type SourceFS } from './sourcefs.js';
import { findStage, planStages, type StagePlan } from './stages.js';
import { needsLookup, resolveOwner, UserError } from './users.js';

/**
 * gzip level of the layers a build writes. Level 1 compresses about 2.4x
 * faster than the default 6 on this machine (71 vs 30 MB/s for a mix of
 * binaries) for ~9% larger blobs: a build writes every layer once, on its
 * critical path, and most are pushed or thrown away, so speed wins. Blocks
 * are compressed in parallel on libuv's threadpool (compress.ts: ~1.5-2x
 * more on 2 cores), overlapping with walking the tree.
 */
const LAYER_GZIP_LEVEL = 1;

/** How many RUN steps ahead of the current step a build starts inits for (StageRun.heatUp). */
const WARM_AHEAD = 2;
/** Bump when the meaning of cache keys or records changes. */
const CACHE_VERSION = 'tsbuild-cache-1';
const HISTORY_COMMENT = 'buildkit.dockerfile.v0';
const DEFAULT_SHELL = ['/bin/sh', '-c'];
const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Build args every Dockerfile may use without declaring them (passed to RUN, kept out of history). */
export const PROXY_ARGS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'];

/** Temp dirs of running steps (inside the store's tmp/), for removal on an interrupt. */
const liveTemps = new Set<string>();

function tempDir(store: Store, kind: string): string {
  const p = store.tmpPath(kind);
  liveTemps.add(p);
  return p;
}

async function removeTemp(p: string): Promise<void> {
  await fsp.rm(p, { recursive: true, force: true });
  liveTemps.delete(p);
}

/**
 * Removes the temp dirs of steps still running (call on SIGINT/SIGTERM before
 * exiting). Containers die with this process (PDEATHSIG); their step dirs are
 * removed by the next build or `prune`, once this pid is gone.
 */
export function removeTempsSync(): void {
  for (const p of liveTemps) fs.rmSync(p, { recursive: true, force: true });
  liveTemps.clear();
}

/** A build failure the user must fix: names file:line when there is one. */
export class BuildError extends Error {
  constructor(
    message: string,
    readonly loc?: Location,
  ) {
    super(loc ? `${loc.file}:${loc.startLine}: ${message}` : message);
  }
}

/** A base image that is neither local nor pullable. */
export class PullUnavailableError extends Error {}

/**
 * The one place a base image that is not in the local store comes from: the
 * registry client (loaded only when needed). The message keeps what the user
 * can do first, then why the pull failed.
 */
export async function pullBaseImage(store: Store, ref: string, registry: ClientOptions = {}): Promise<StoredImage> {
  const { pullImage } = await import('../registry/pull.js');
  try {
    return await pullImage(store, ref, registry);
  } catch (e) {
    throw new PullUnavailableError(`image ${ref} is not in the local store; import or pull it (tsbuild import / load / pull) and build again (pulling it failed: ${(e as Error).message})`);
  }
}

export interface BuildOptions {
  context: BuildContext;
  tags?: string[];
  /** --build-arg KEY=VALUE (a KEY without a value takes it from the environment; the CLI resolves that). */
  buildArgs?: Record<string, string>;
  target?: string;
  noCache?: boolean;
  pull?: boolean;
  /** Registry access for base images and --cache-from pulls (--tls-verify, --insecure-registry, --cert-dir, --authfile). */
  registry?: ClientOptions;
  /** --label: set on the final image. */
  labels?: Record<string, string>;
  secrets?: Map<string, SecretSource>;
  /** --network: the default for RUN steps. */
  network?: 'default' | 'none' | 'host';
  /** --platform; only the host's platform can be built. */
  platform?: string;
  progress?: Progress;
  /** Seconds since the epoch: reproducible timestamps (SOURCE_DATE_EPOCH). The build arg of that name also sets it. */
  sourceDateEpoch?: number;
  /** Manifest and config media types (default oci). */
  format?: 'oci' | 'docker';
  /** --cache-from: images (local, else pulled) whose recorded steps may be reused. */
  cacheFrom?: string[];
}

export interface BuildResult {
  image: StoredImage;
  tags: string[];
  steps: number;
  cached: number;
  elapsedMs: number;
  /** Sum of the image's (compressed) layer sizes. */
  size: number;
  warnings: string[];
}

interface LayerRef extends CachedLayer {}

interface State {
  layers: LayerRef[];
  image: ImageConfig;
  identity: string;
  snapshots?: Promise<string[]>;
  /** Cache key of the step behind each history entry (filesystem steps we built), else null. */
  keys: (string | null)[];
}

/**
 * Manifest annotation holding the cache keys of an image's filesystem steps
 * (RUN, COPY, ADD, WORKDIR): {"<history index>": "<key>"}. With it a later
 * `--cache-from IMAGE`, on any machine, reuses those layers when its own keys
 * match. An annotation, not a config field: the image ID stays BuildKit's.
 */
export const CACHE_ANNOTATION = 'dev.tsbuild.cache.v1';

/** A step result taken from a --cache-from image: the layer and history entry (configs are recomputed). */
interface ImportedStep {
  layer: CachedLayer | null;
  history: History;
}

/** Reads an image's cache annotation into key -> step. */
export function importedSteps(img: StoredImage): Map<string, ImportedStep> {
  const out = new Map<string, ImportedStep>();
  const raw = (img.manifest.annotations as Record<string, string> | undefined)?.[CACHE_ANNOTATION];
  if (!raw) return out;
  let keys: Record<string, string>;
  try {
    keys = JSON.parse(raw) as Record<string, string>;
  } catch {
    return out;
  }
  const history = img.config.history ?? [];
  const layers = img.layers;
  let j = 0;
  history.forEach((h, i) => {
    const layer = h.empty_layer ? null : layers[j++];
    const k = keys[String(i)];
    if (typeof k !== 'string' || !/^[0-9a-f]{64}$/.test(k)) return;
    if (!h.empty_layer && !layer) return;
    out.set(k, {
      layer: layer ? { mediaType: layer.descriptor.mediaType, digest: layer.descriptor.digest as Digest, size: layer.descriptor.size, diffId: layer.diffId } : null,
      history: h,
    });
  });
  return out;
}

function keysFromImage(img: StoredImage): (string | null)[] {
  const history = img.config.history ?? [];
  const keys: (string | null)[] = history.map(() => null);
  const raw = (img.manifest.annotations as Record<string, string> | undefined)?.[CACHE_ANNOTATION];
  if (raw) {
    try {
      for (const [i, k] of Object.entries(JSON.parse(raw) as Record<string, string>)) if (Number(i) < keys.length) keys[Number(i)] = k;
    } catch {
      /* not ours: no keys */
    }
  }
  return keys;
}

interface Platform {
  os: string;
  arch: string;
  variant?: string;
}

function hostPlatform(): Platform {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
  return { os: 'linux', arch, ...(arch === 'arm64' ? { variant: 'v8' } : {}) };
}

function platformString(p: Platform): string {
  return `${p.os}/${p.arch}${p.variant ? `/${p.variant}` : ''}`;
}

function identityOf(layers: LayerRef[], image: ImageConfig): string {
  return createHash('sha256')
    .update(JSON.stringify([layers.map((l) => l.diffId), image.config ?? {}, image.os, image.architecture, image.variant ?? '']))
    .digest('hex');
}

function makeState(layers: LayerRef[], image: ImageConfig, keys?: (string | null)[]): State {
  return { layers, image, identity: identityOf(layers, image), keys: keys ?? (image.history ?? []).map(() => null) };
}

function emptyImage(p: Platform): ImageConfig {
  return {
    architecture: p.arch,
    os: p.os,
    ...(p.variant ? { variant: p.variant } : {}),
    config: { Env: [DEFAULT_PATH_ENV], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  } as ImageConfig;
}

function stateFromImage(img: StoredImage): State {
  const image = structuredClone(img.config);
  image.config = { ...(image.config ?? {}) };
  image.history = [...(image.history ?? [])];
  const layers = img.layers.map((l) => ({ mediaType: l.descriptor.mediaType, digest: l.descriptor.digest as Digest, size: l.descriptor.size, diffId: l.diffId }));
  return makeState(layers, image, keysFromImage(img));
}

/** Go's %q of a []string, as BuildKit writes CMD/ENTRYPOINT into history: ["a" "b"]. */
function goQuoteList(a: string[]): string {
  return `[${a.map((s) => JSON.stringify(s)).join(' ')}]`;
}

/** Go's time.Duration String(): 1m30s, 500ms, 0s. */
export function goDuration(ns: number | undefined): string {
  if (!ns) return '0s';
  if (ns < 1e3) return `${ns}ns`;
  if (ns < 1e6) return `${trimFloat(ns / 1e3)}µs`;
  if (ns < 1e9) return `${trimFloat(ns / 1e6)}ms`;
  let s = ns / 1e9;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const sec = `${trimFloat(Math.round(s * 1e9) / 1e9)}s`;
  if (h) return `${h}h${m}m${sec}`;
  if (m) return `${m}m${sec}`;
  return sec;
}

function trimFloat(x: number): string {
  return String(Number(x.toFixed(9)));
}

function setEnv(env: string[], key: string, value: string): string[] {
  const out = [...env];
  const i = out.findIndex((e) => e === key || e.startsWith(`${key}=`));
  if (i >= 0) out[i] = `${key}=${value}`;
  else out.push(`${key}=${value}`);
  return out;
}

/** Docker's EXPOSE port specs: 80, 80/tcp, 53/udp, 8000-8002 (ranges expand). */
function parsePorts(spec: string, loc: Location): string[] {
  // ip:hostPort:containerPort forms are accepted for EXPOSE, but only the container port counts.
  const parts = spec.split(':');
  const m = /^(\d+)(?:-(\d+))?(?:\/([a-zA-Z]+))?$/.exec(parts[parts.length - 1]!);
  if (!m) throw new BuildError(`EXPOSE: invalid port ${JSON.stringify(spec)} (use PORT, PORT/tcp, PORT/udp or START-END)`, loc);
  const start = Number(m[1]);
  const end = m[2] !== undefined ? Number(m[2]) : start;
  const proto = (m[3] ?? 'tcp').toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new BuildError(`EXPOSE: invalid protocol ${JSON.stringify(m[3])} in ${spec} (use tcp, udp or sctp)`, loc);
  if (end > 65535 || end < start) throw new BuildError(`EXPOSE: invalid port range ${JSON.stringify(spec)}`, loc);
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

const SIGNALS = [
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL', 'PROF', 'PWR',
  'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ',
];

function checkSignal(sig: string, loc: Location): void {
  const s = sig.toUpperCase().replace(/^SIG/, '');
  if (/^\d+$/.test(sig) && Number(sig) > 0 && Number(sig) <= 64) return;
  if (SIGNALS.includes(s) || /^RTM(IN|AX)([+-]\d+)?$/.test(s)) return;
  throw new BuildError(`STOPSIGNAL: invalid signal ${JSON.stringify(sig)} (use a name such as SIGTERM or a number)`, loc);
}

function sumSizes(layers: LayerRef[]): number {
  return layers.reduce((a, l) => a + l.size, 0);
}

/** Snapshot dirs (bottom-first) of a state's layers, unpacking only what is missing. */
async function snapshotsOf(store: Store, st: State): Promise<string[]> {
  // ensureSnapshots only reads `layers` of the image it is given.
  st.snapshots ??= ensureSnapshots(store, {
    layers: st.layers.map((l) => ({ descriptor: { mediaType: l.mediaType, digest: l.digest, size: l.size }, diffId: l.diffId })),
  } as unknown as StoredImage);
  return st.snapshots;
}

interface Counters {
  steps: number;
  cached: number;
}

/** Everything a step needs from the build as a whole. */
class Build {
  readonly df: Dockerfile;
  readonly plan: StagePlan;
  readonly esc: string;
  readonly platform: Platform;
  readonly globalVars: Map<string, string>;
  readonly autoArgs: Map<string, string>;
  readonly buildArgs: Map<string, string>;
  readonly usedArgs = new Set<string>();
  readonly counters: Counters = { steps: 0, cached: 0 };
  readonly progress: Progress;
  readonly hasher: FileHashCache;
  readonly epoch: number | undefined;
  private stageRuns = new Map<number, Promise<State>>();
  private started: Promise<unknown>[] = [];
  aborted = false;
  readonly warnings: string[] = [];
  /** Steps offered by --cache-from images, by cache key. */
  readonly imported = new Map<string, ImportedStep>();
  /** runtime/step.js, loaded on first use: a fully cached build never starts a container. */
  private stepModule?: Promise<typeof import('../runtime/step.js')>;
  private warming: Promise<void>[] = [];

  steps(): Promise<typeof import('../runtime/step.js')> {
    return (this.stepModule ??= import('../runtime/step.js'));
  }

  /** Starts an init for a RUN step that is coming (runtime/step.ts warmStep). */
  warmStep(network: NetworkMode): void {
    this.warming.push(this.steps().then((m) => m.warmStep(network)).catch(() => {}));
  }

  /** Ends the inits started for steps that did not need them. */
  async coolSteps(): Promise<void> {
    await Promise.all(this.warming.splice(0));
    if (this.stepModule) await (await this.stepModule).coolSteps().catch(() => {});
  }

  constructor(
    readonly store: Store,
    readonly opts: BuildOptions,
  ) {
    const ctx = opts.context;
    this.progress = opts.progress ?? new Progress(process.stderr, 'quiet');
    this.df = parseDockerfile(ctx.dockerfile.text, ctx.dockerfile.name);
    this.esc = this.df.escapeChar ?? '\\';
    for (const w of this.df.warnings) this.warn(`${w.loc.file}:${w.loc.startLine}: ${w.message}`);
    this.platform = hostPlatform();
    if (opts.platform && opts.platform !== platformString(this.platform) && opts.platform !== `${this.platform.os}/${this.platform.arch}`) {
      throw new BuildError(`cannot build for platform ${opts.platform}: tsbuild builds for the host's platform ${platformString(this.platform)} only (drop --platform)`);
    }
    this.buildArgs = new Map(Object.entries(opts.buildArgs ?? {}));
    const p = platformString(this.platform);
    this.autoArgs = new Map([
      ['TARGETPLATFORM', p],
      ['TARGETOS', this.platform.os],
      ['TARGETARCH', this.platform.arch],
      ['TARGETVARIANT', this.platform.variant ?? ''],
      ['BUILDPLATFORM', p],
      ['BUILDOS', this.platform.os],
      ['BUILDARCH', this.platform.arch],
      ['BUILDVARIANT', this.platform.variant ?? ''],
    ]);
    // Global scope: the automatic platform args, then ARGs before the first FROM.
    this.globalVars = new Map(this.autoArgs);
    for (const a of this.df.metaArgs) {
      for (const kv of a.args) {
        let v: string | undefined = kv.value !== undefined ? expandWord(kv.value, this.globalVars, this.esc, { loc: a.loc }) : undefined;
        if (this.buildArgs.has(kv.key)) {
          v = this.buildArgs.get(kv.key)!;
          this.usedArgs.add(kv.key);
        }
        if (v !== undefined) this.globalVars.set(kv.key, v);
        else this.globalVars.delete(kv.key);
      }
    }
    const sde = opts.sourceDateEpoch ?? (this.buildArgs.has('SOURCE_DATE_EPOCH') ? Number(this.buildArgs.get('SOURCE_DATE_EPOCH')) : undefined);
    if (sde !== undefined && (!Number.isFinite(sde) || sde < 0)) throw new BuildError(`SOURCE_DATE_EPOCH must be a number of seconds since 1970 (got ${JSON.stringify(String(sde))})`);
    if (this.buildArgs.has('SOURCE_DATE_EPOCH')) this.usedArgs.add('SOURCE_DATE_EPOCH');
    this.epoch = sde === undefined ? undefined : Math.floor(sde);
    this.plan = planStages(this.df, opts.target, (w, loc) => this.expandGlobal(w, loc));
    this.hasher = new FileHashCache(store.root, ctx.scope);
  }

  warn(message: string): void {
    this.warnings.push(message);
    this.progress.note(`WARNING: ${message}`);
  }

  expandGlobal(word: string, loc: Location): string {
    return expandWord(word, this.globalVars, this.esc, { loc });
  }

  now(): string {
    return new Date(this.epoch !== undefined ? this.epoch * 1000 : Date.now()).toISOString();
  }

  /** The final state of a stage, building it (once) if needed. */
  stageState(stage: Stage): Promise<State> {
    let p = this.stageRuns.get(stage.index);
    if (!p) {
      p = (async () => {
        // Dependencies first, concurrently; this stage starts when all are done.
        await Promise.all((this.plan.deps.get(stage.index) ?? []).map((d) => this.stageState(d)));
        return new StageRun(this, stage).run();
      })();
      this.stageRuns.set(stage.index, p);
      this.started.push(p.catch(() => {}));
    }
    return p;
  }

  async run(): Promise<State> {
    // Every needed stage starts now; each waits for its own dependencies.
    const all = this.plan.needed.map((s) => this.stageState(s));
    try {
      await Promise.all(all);
    } catch (e) {
      this.aborted = true;
      // Let running steps finish their cleanup before reporting.
      await Promise.allSettled(this.started);
      throw e;
    }
    return this.stageState(this.plan.target);
  }

  /** An image for COPY --from / RUN --mount from= that is not a stage. */
  private imageSources = new Map<string, Promise<State>>();
  imageState(ref: string, loc: Location): Promise<State> {
    let p = this.imageSources.get(ref);
    if (!p) {
      p = this.resolveBase(ref, loc, false).then(stateFromImage);
      this.imageSources.set(ref, p);
    }
    return p;
  }

  async resolveBase(ref: string, loc: Location, isFrom: boolean): Promise<StoredImage> {
    if (this.opts.pull) {
      try {
        return await pullBaseImage(this.store, ref, this.opts.registry);
      } catch (e) {
        throw new BuildError(`--pull: ${(e as Error).message}`, loc);
      }
    }
    try {
      return await resolveImage(this.store, ref);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw new BuildError(`${isFrom ? 'FROM' : '--from'} ${ref}: ${(e as Error).message}`, loc);
    }
    try {
      return await pullBaseImage(this.store, ref, this.opts.registry);
    } catch (e) {
      const stages = this.df.stages.filter((s) => s.from.stageName).map((s) => s.from.stageName);
      const hint = !isFrom ? ` It is not a stage of this Dockerfile either${stages.length ? ` (stages: ${stages.join(', ')})` : ''}.` : '';
      throw new BuildError(`${(e as Error).message}${hint}`, loc);
    }
  }
}

type StepOutcome = Omit<CacheRecord, 'v'>;

class StageRun {
  private state!: State;
  /** ARGs declared in this stage, with their values (undefined: declared without a value). */
  private args = new Map<string, string | undefined>();
  /** Every ARG declaration in order (repeats kept), for RUN's `|N K=V` history prefix. */
  private argOrder: string[] = [];
  private cmdSet = false;
  private stepNo = 0;
  /** This stage's RUN instructions, for starting their inits ahead (warm). */
  private runs: RunInstruction[] = [];
  /** RUN instructions dispatched so far. */
  private runsPassed = 0;
  /** Index in runs of the next RUN to start an init for. */
  private warmNext = 0;
  /** Set at the first step that runs (or at the start with --no-cache): from then on, later steps will run too. */
  private hot = false;
  private total: number;
  private readonly name: string;

  constructor(
    private readonly b: Build,
    private readonly stage: Stage,
  ) {
    this.name = b.plan.displayName(stage);
    this.total = countSteps(stage.instructions) + 1;
  }

  /** The step's name in the progress view: BuildKit's (the instruction as written, variables expanded). */
  private display(ins: Instruction): string {
    const [, kw = '', rest = ''] = /^\s*(\S+)(.*)$/s.exec(ins.original) ?? [];
    return `${kw.toUpperCase()}${expandDisplay(rest, this.vars(), this.b.esc)}`;
  }

  private get cfg(): ContainerConfig {
    return (this.state.image.config ??= {});
  }

  /** Variables for expansion: ENV wins over ARG. */
  private vars(): Vars {
    const env = envListToVars(this.cfg.Env ?? []);
    return (name: string) => {
      if (env.has(name)) return env.get(name);
      if (this.args.has(name)) return this.args.get(name);
      return undefined;
    };
  }

  private expand(word: string, loc: Location): string {
    return expandWord(word, this.vars(), this.b.esc, { loc });
  }

  private label(text: string): string {
    this.stepNo++;
    return `[${this.name ? `${this.name} ` : ''}${this.stepNo}/${this.total}] ${text}`;
  }

  async run(): Promise<State> {
    const from = this.stage.from;
    const ref = this.b.expandGlobal(from.image, from.loc);
    if (ref === '') throw new BuildError(`base name (${from.image}) should not be blank: set the build arg it uses`, from.loc);
    if (from.platform !== undefined) {
      const p = this.b.expandGlobal(from.platform, from.loc);
      const host = platformString(this.b.platform);
      if (p !== host && p !== `${this.b.platform.os}/${this.b.platform.arch}`) {
        this.b.warn(`${from.loc.file}:${from.loc.startLine}: FROM --platform=${p}: only the host's platform ${host} can run; using the image as it is`);
      }
    }
    const handle = this.b.progress.step(this.label(`FROM ${ref}`));
    let onbuild: string[] = [];
    try {
      const base = findStage(this.b.df, ref, this.stage.index);
      if (ref.toLowerCase() === 'scratch') {
        this.state = makeState([], emptyImage(this.b.platform));
      } else if (base) {
        const s = await this.b.stageState(base);
        this.state = makeState([...s.layers], structuredClone(s.image), [...s.keys]);
      } else {
        const img = await this.b.resolveBase(ref, from.loc, true);
        this.state = stateFromImage(img);
      }
      onbuild = this.cfg.OnBuild ?? [];
      if (onbuild.length) {
        delete this.cfg.OnBuild;
        this.state = makeState(this.state.layers, this.state.image, this.state.keys);
      }
      handle.done();
    } catch (e) {
      handle.error((e as Error).message);
      throw e;
    }
    this.b.counters.steps++;
    let instructions = this.stage.instructions;
    if (onbuild.length) {
      const triggers = parseOnbuildTriggers(onbuild, ref);
      instructions = [...triggers, ...instructions];
      this.total += countSteps(triggers);
    }
    this.runs = instructions.filter((i): i is RunInstruction => i.kind === 'RUN');
    if (this.b.opts.noCache) this.heatUp(false);
    for (const ins of instructions) {
      if (this.b.aborted) throw new BuildError('build aborted: another stage failed');
      await this.dispatch(ins);
    }
    return this.state;
  }

  /**
   * A step is about to run: the RUN steps after it will most likely run too,
   * so their inits are started now (up to WARM_AHEAD ahead), and their Node
   * start overlaps with this step's work instead of adding to it.
   */
  private heatUp(currentIsRun: boolean): void {
    if (!this.hot) {
      this.hot = true;
      this.warmNext = Math.max(this.warmNext, this.runsPassed - (currentIsRun ? 1 : 0));
    }
    this.warm();
  }

  private warm(): void {
    if (!this.hot) return;
    while (this.warmNext < this.runs.length && this.warmNext - this.runsPassed < WARM_AHEAD) {
      const ins = this.runs[this.warmNext++]!;
      if (ins.security !== 'insecure') this.b.warmStep(stepNetwork(ins.network ?? this.b.opts.network ?? 'default'));
    }
  }

  // ------------------------------------------------------------ steps

  /**
   * Runs one step through the cache. `display` shows it in the progress view
   * (filesystem steps, as BuildKit does). `fixedConfig`: the container config
   * after the step is known without running it (RUN, COPY, ADD, WORKDIR), so
   * the record's is not used (COPY --link keys leave the parent out) and a
   * --cache-from image can supply the step; those steps' keys are recorded
   * in the image.
   */
  private async step(
    ins: Instruction,
    key: unknown[],
    display: string | undefined,
    exec: (h: StepHandle | undefined) => Promise<StepOutcome>,
    fixedConfig?: ContainerConfig,
    contentKey?: () => Promise<unknown[]>,
  ): Promise<void> {
    const k = cacheKey([CACHE_VERSION, this.b.epoch ?? null, ...key]);
    // contentKey: a second key from the content the step reads (COPY --from), looked up when
    // the first misses, as BuildKit's content checksums: a source stage that ran again but
    // holds the same files still hits. Both keys get the record.
    let k2: string | undefined;
    const slowKey = async () => (k2 ??= cacheKey([CACHE_VERSION, this.b.epoch ?? null, ...(await contentKey!())]));
    const handle = display !== undefined ? this.b.progress.step(this.label(display)) : undefined;
    if (display === undefined && STEP_KINDS.has(ins.kind)) this.stepNo++;
    this.b.counters.steps++;
    const recordKey = fixedConfig ? k : null;
    if (!this.b.opts.noCache) {
      let rec = await readCache(this.b.store, k);
      if (!rec && fixedConfig) {
        const imp = this.b.imported.get(k);
        if (imp && (!imp.layer || (await this.b.store.hasBlob(imp.layer.digest)))) rec = { v: 1, layer: imp.layer, history: imp.history, config: fixedConfig };
      }
      if (!rec && contentKey) {
        // A source that cannot be read is the step's own error to report, when it runs.
        const k2now = await slowKey().catch(() => undefined);
        rec = k2now === undefined ? undefined : await readCache(this.b.store, k2now);
        if (rec) await writeCache(this.b.store, k, rec);
      }
      if (rec) {
        this.apply(rec, fixedConfig, recordKey);
        this.b.counters.cached++;
        handle?.cached();
        return;
      }
    }
    this.heatUp(ins.kind === 'RUN');
    let out: StepOutcome;
    try {
      out = await exec(handle);
    } catch (e) {
      const err = toBuildError(e, ins);
      handle?.error(err.message);
      throw err;
    }
    const rec: CacheRecord = { v: 1, layer: out.layer, history: out.history, config: out.config, ...(out.author !== undefined ? { author: out.author } : {}) };
    await writeCache(this.b.store, k, rec);
    if (contentKey) {
      const k2now = await slowKey().catch(() => undefined);
      if (k2now !== undefined) await writeCache(this.b.store, k2now, rec);
    }
    this.apply(rec, fixedConfig, recordKey);
    handle?.done();
  }

  private apply(rec: CacheRecord, fixedConfig: ContainerConfig | undefined, key: string | null): void {
    const image = this.state.image;
    const layers = rec.layer ? [...this.state.layers, rec.layer] : this.state.layers;
    const next: ImageConfig = { ...image, history: rec.history ? [...(image.history ?? []), rec.history] : [...(image.history ?? [])] };
    next.config = structuredClone(fixedConfig ?? rec.config);
    if (rec.author !== undefined) next.author = rec.author;
    const keys = rec.history ? [...this.state.keys, key] : this.state.keys;
    const snapshots = rec.layer ? undefined : this.state.snapshots;
    this.state = makeState(layers, next, keys);
    if (snapshots) this.state.snapshots = snapshots;
  }

  private history(createdBy: string, withLayer: boolean): History {
    return { created: this.b.now(), created_by: createdBy, comment: HISTORY_COMMENT, ...(withLayer ? {} : { empty_layer: true }) };
  }

  /** A metadata-only step: new container config, a history entry without a layer. */
  private meta(ins: Instruction, expanded: unknown, createdBy: string | null, change: (c: ContainerConfig) => void, author?: string): Promise<void> {
    return this.step(ins, [this.state.identity, ins.kind, expanded], undefined, async () => {
      const c = structuredClone(this.cfg);
      change(c);
      return { layer: null, history: createdBy === null ? null : this.history(createdBy, false), config: c, ...(author !== undefined ? { author } : {}) };
    });
  }

  private shell(): string[] {
    return this.cfg.Shell && this.cfg.Shell.length ? this.cfg.Shell : DEFAULT_SHELL;
  }

  private async dispatch(ins: Exclude<Instruction, { kind: 'FROM' }>): Promise<void> {
    switch (ins.kind) {
      case 'ARG': {
        // History shows each ARG with the value in effect: the build arg, else
        // the expanded default, else the global (pre-FROM) value.
        const parts: string[] = [];
        for (const kv of ins.args) {
          let v: string | undefined;
          if (this.b.buildArgs.has(kv.key)) {
            v = this.b.buildArgs.get(kv.key)!;
            this.b.usedArgs.add(kv.key);
          } else if (kv.value !== undefined) {
            v = this.expand(kv.value, ins.loc);
          } else {
            v = this.b.globalVars.get(kv.key) ?? this.b.autoArgs.get(kv.key);
          }
          parts.push(v !== undefined ? `${kv.key}=${v}` : kv.key);
          this.args.set(kv.key, v);
          this.argOrder.push(kv.key);
        }
        const createdBy = `ARG ${parts.join(' ')}`;
        return this.meta(ins, parts, createdBy, () => {});
      }
      case 'ENV': {
        const vars = this.vars();
        const pairs = ins.pairs.map((p) => ({ key: expandWord(p.key, vars, this.b.esc, { loc: ins.loc }), value: expandWord(p.value, vars, this.b.esc, { loc: ins.loc }) }));
        return this.meta(ins, pairs, `ENV ${pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, (c) => {
          let env = c.Env ?? [];
          for (const p of pairs) env = setEnv(env, p.key, p.value);
          c.Env = env;
        });
      }
      case 'LABEL': {
        const vars = this.vars();
        const pairs = ins.pairs.map((p) => ({ key: expandWord(p.key, vars, this.b.esc, { loc: ins.loc }), value: expandWord(p.value, vars, this.b.esc, { loc: ins.loc }) }));
        return this.meta(ins, pairs, `LABEL ${pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, (c) => {
          c.Labels = { ...(c.Labels ?? {}) };
          for (const p of pairs) c.Labels[p.key] = p.value;
        });
      }
      case 'MAINTAINER':
        return this.meta(ins, ins.maintainer, `MAINTAINER ${ins.maintainer}`, () => {}, ins.maintainer);
      case 'USER': {
        const user = this.expand(ins.user, ins.loc);
        if (user === '') throw new BuildError('USER requires a user name or uid', ins.loc);
        return this.meta(ins, user, `USER ${user}`, (c) => {
          c.User = user;
        });
      }
      case 'EXPOSE': {
        const words = ins.ports.flatMap((p) => expandWords(p, this.vars(), this.b.esc, { loc: ins.loc }));
        const ports = words.flatMap((w) => parsePorts(w, ins.loc));
        const sorted = [...new Set(ports)].sort();
        return this.meta(ins, sorted, `EXPOSE map[${sorted.map((p) => `${p}:{}`).join(' ')}]`, (c) => {
          c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
          for (const p of sorted) c.ExposedPorts[p] = {};
        });
      }
      case 'VOLUME': {
        const vols = ins.volumes.map((v) => this.expand(v, ins.loc));
        if (vols.some((v) => v === '')) throw new BuildError('VOLUME specified can not be an empty string', ins.loc);
        return this.meta(ins, vols, `VOLUME [${vols.join(' ')}]`, (c) => {
          c.Volumes = { ...(c.Volumes ?? {}) };
          for (const v of vols) c.Volumes[v] = {};
        });
      }
      case 'STOPSIGNAL': {
        const sig = this.expand(ins.signal, ins.loc);
        checkSignal(sig, ins.loc);
        return this.meta(ins, sig, `STOPSIGNAL ${sig}`, (c) => {
          c.StopSignal = sig;
        });
      }
      case 'CMD':
      case 'ENTRYPOINT': {
        const args = ins.command.form === 'exec' ? ins.command.argv : [...this.shell(), ins.command.command];
        const kind = ins.kind;
        const resetCmd = kind === 'ENTRYPOINT' && !this.cmdSet;
        if (kind === 'CMD') this.cmdSet = true;
        return this.meta(ins, [args, resetCmd], `${kind} ${goQuoteList(args)}`, (c) => {
          if (kind === 'CMD') {
            c.Cmd = args;
            // As BuildKit: kept for the Docker image spec's backward compatibility.
            c.ArgsEscaped = true;
          } else {
            c.Entrypoint = args;
            if (resetCmd) delete c.Cmd;
          }
        });
      }
      case 'SHELL':
        return this.meta(ins, ins.shell, `SHELL [${ins.shell.join(' ')}]`, (c) => {
          c.Shell = ins.shell;
        });
      case 'HEALTHCHECK':
        return this.healthcheck(ins);
      case 'ONBUILD':
        // BuildKit adds the trigger to the config without a history entry.
        return this.meta(ins, ins.expression, null, (c) => {
          c.OnBuild = [...(c.OnBuild ?? []), ins.expression];
        });
      case 'WORKDIR':
        return this.workdir(ins);
      case 'RUN':
        return this.runStep(ins);
      case 'COPY':
      case 'ADD':
        return this.copy(ins);
    }
  }

  private healthcheck(ins: HealthcheckInstruction): Promise<void> {
    const hc: NonNullable<ContainerConfig['Healthcheck']> = { Test: ins.test };
    if (ins.interval) hc.Interval = ins.interval;
    if (ins.timeout) hc.Timeout = ins.timeout;
    if (ins.startPeriod) hc.StartPeriod = ins.startPeriod;
    if (ins.startInterval) hc.StartInterval = ins.startInterval;
    if (ins.retries) hc.Retries = ins.retries;
    const r = ins.retries ?? 0;
    const createdBy = `HEALTHCHECK &{${goQuoteList(ins.test)} "${goDuration(ins.interval)}" "${goDuration(ins.timeout)}" "${goDuration(ins.startPeriod)}" "${goDuration(ins.startInterval)}" '\\x${r.toString(16).padStart(2, '0')}'}`;
    return this.meta(ins, hc, createdBy, (c) => {
      c.Healthcheck = hc;
    });
  }

  // ------------------------------------------------------------ filesystem steps

  private async view(): Promise<MergedView> {
    const snaps = await snapshotsOf(this.b.store, this.state);
    return new MergedView([...snaps].reverse());
  }

  /**
   * Writes `dir` as the next layer (or none when empty), adopts it as its
   * snapshot. With a COPY's `plan`, the tar comes from the plan and `dir`
   * (empty) is written only when the store has no snapshot of that content.
   */
  private async commitLayer(dir: string, mode: 'dir' | 'overlay-upper', lowerTopFirst: string[], plan?: LayerPlan): Promise<CachedLayer | null> {
    if (plan ? plan.empty : (await fsp.readdir(dir)).length === 0) return null;
    const store = this.b.store;
    if (plan && !plan.exact) {
      await plan.materialize(dir);
      plan = undefined;
    }
    for (;;) {
      const w = await store.blobWriter();
      const tarHash = new HashCounter();
      let chainId: Digest;
      let adopt = true;
      try {
        // One pass: tar -> diff_id -> gzip -> blob digest -> store. See LAYER_GZIP_LEVEL for the level.
        const opts = { mode, lowerDirs: lowerTopFirst, sourceDateEpoch: this.b.epoch };
        const tar = plan ? plan.tar(opts) : tarDirectory(dir, opts);
        // The gzip stage is the last to hold the tar's chunks: it hands them back for reuse.
        await pipeline(tar, tarHash, new ParallelGzip(LAYER_GZIP_LEVEL, undefined, (c) => tar.recycle(c)), w.stream);
        chainId = chainIds([...this.state.layers.map((l) => l.diffId), tarHash.digest()]).pop()!;
        if (plan && (await isComplete(store, chainId))) adopt = false;
        else if (plan && !(await plan.materialize(dir))) {
          // The written dir is not what was planned: its own tar is the layer.
          await w.abort();
          plan = undefined;
          continue;
        }
      } catch (e) {
        await w.abort();
        throw e;
      }
      const blob = await w.commit();
      if (adopt) await adoptSnapshot(store, chainId, dir);
      return { mediaType: MEDIA_TYPES.OCI_LAYER_GZIP, digest: blob.digest, size: blob.size, diffId: tarHash.digest() };
    }
  }

  private async workdir(ins: Extract<Instruction, { kind: 'WORKDIR' }>): Promise<void> {
    const p = this.expand(ins.path, ins.loc);
    if (p === '') throw new BuildError('WORKDIR requires a path', ins.loc);
    const wd = path.posix.resolve(this.cfg.WorkingDir || '/', p);
    const user = this.cfg.User ?? '';
    const key = [this.state.identity, 'WORKDIR', wd, user];
    const after = structuredClone(this.cfg);
    after.WorkingDir = wd;
    return this.step(ins, key, wd === '/' ? undefined : this.display(ins), async () => {
      const c = structuredClone(after);
      let layer: CachedLayer | null = null;
      if (wd !== '/') {
        const view = await this.view();
        const comps = view.resolve(wd, true);
        const kind = view.kind(comps);
        if (kind !== 'dir') {
          if (kind !== 'none') throw new BuildError(`WORKDIR ${wd}: ${wd} exists in the image and is not a directory`, ins.loc);
          const owner = user ? resolveOwnerAt(user, view, ins.loc) : undefined;
          const dir = tempDir(this.b.store, 'workdir');
          await fsp.mkdir(dir, { mode: 0o755 });
          try {
            await copyToLayer(view, dir, { items: [], dest: '/', destIsDir: true, parents: false, extractArchives: false, now: Date.now() / 1000, tmpDir: dir, mkdir: comps, ...(owner ? { chown: owner } : {}) });
            layer = await this.commitLayer(dir, 'dir', view.layers);
          } finally {
            await removeTemp(dir);
          }
        }
      }
      return { layer, history: this.history(`WORKDIR ${wd}`, layer !== null), config: c };
    }, after);
  }

  private runEnv(): { env: string[]; declared: [string, string][] } {
    const env = [...(this.cfg.Env ?? [])];
    const envVars = envListToVars(env);
    for (const [k, v] of this.args) {
      if (v === undefined || envVars.has(k)) continue;
      env.push(`${k}=${v}`);
    }
    // History: every declared ARG with the value the command sees ("" when unset), as BuildKit writes it.
    const seen = envListToVars(env);
    const declared: [string, string][] = this.argOrder.map((k) => [k, seen.get(k) ?? '']);
    for (const k of PROXY_ARGS) {
      if (this.args.has(k) || !this.b.buildArgs.has(k)) continue;
      this.b.usedArgs.add(k);
      if (!envVars.has(k)) env.push(`${k}=${this.b.buildArgs.get(k)!}`);
    }
    return { env, declared };
  }

  private async sourceFor(from: string | undefined, loc: Location): Promise<{ fs: SourceFS; identity?: string }> {
    if (from === undefined || from === '') return { fs: this.b.opts.context.fs };
    const ref = this.expand(from, loc);
    const st = findStage(this.b.df, ref);
    if (st) {
      if (st === this.stage) throw new BuildError(`--from=${ref} names the current stage`, loc);
      const s = await this.b.stageState(st);
      return { fs: new ViewFS(new MergedView([...(await snapshotsOf(this.b.store, s))].reverse()), `stage ${st.from.stageName ?? st.index}`), identity: s.identity };
    }
    const s = await this.b.imageState(ref, loc);
    return { fs: new ViewFS(new MergedView([...(await snapshotsOf(this.b.store, s))].reverse()), `image ${ref}`), identity: s.identity };
  }

  /** Identity of a --from source without unpacking it (for cache keys). */
  private async fromIdentity(from: string | undefined, loc: Location): Promise<string | undefined> {
    if (from === undefined || from === '') return undefined;
    const ref = this.expand(from, loc);
    const st = findStage(this.b.df, ref);
    if (st) return (await this.b.stageState(st)).identity;
    return (await this.b.imageState(ref, loc)).identity;
  }

  private async runStep(ins: RunInstruction): Promise<void> {
    this.runsPassed++;
    if (ins.security === 'insecure') throw new BuildError('RUN --security=insecure is not allowed: tsbuild runs every step sandboxed (remove the flag)', ins.loc);
    const cmd = runCommand(ins, this.shell());
    const { env, declared } = this.runEnv();
    const cwd = this.cfg.WorkingDir || '/';
    const user = this.cfg.User ?? '';
    const network = ins.network ?? this.b.opts.network ?? 'default';
    const mounts = ins.mounts.map((m) => {
      const options: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.options)) options[k] = this.expand(v, ins.loc);
      const mm = { type: m.type, options };
      try {
        checkMount(mm);
      } catch (e) {
        throw new BuildError(`RUN --mount: ${(e as Error).message}`, ins.loc);
      }
      return mm;
    });
    // Bind mounts' contents are part of the key (context files by digest, stages by identity).
    const mountKeys: unknown[] = [];
    for (const m of mounts) {
      mountKeys.push(mountKey(m, cwd));
      if (m.type === 'cache' && m.options.from !== undefined) {
        // A cache seeded from a stage or image: a new base is a new cache.
        mountKeys.push(await this.fromIdentity(m.options.from, ins.loc));
      } else if (m.type === 'bind') {
        const id = await this.fromIdentity(m.options.from, ins.loc);
        if (id !== undefined) mountKeys.push(id);
        else {
          const ctx = this.b.opts.context.fs;
          mountKeys.push(await sourcesDigest([{ fs: ctx, path: m.options.source ?? '/' }], undefined, this.b.hasher, () => undefined).catch((e: Error) => {
            throw new BuildError(`RUN --mount=type=bind: ${e.message}`, ins.loc);
          }));
        }
      }
    }
    const createdBy = runCreatedBy(cmd.args, declared);
    const key = [this.state.identity, 'RUN', cmd.args, cmd.files, env, user, cwd, network, mountKeys];
    return this.step(ins, key, this.display(ins), async (handle) => {
      const store = this.b.store;
      const lower = await snapshotsOf(store, this.state);
      const tmp = tempDir(store, 'run');
      await fsp.mkdir(tmp, { recursive: true, mode: 0o700 });
      let prepared: Awaited<ReturnType<typeof prepareMounts>> | undefined;
      try {
        prepared = await prepareMounts(mounts, {
          store,
          cwd,
          secrets: this.b.opts.secrets ?? new Map(),
          tmpDir: tmp,
          sourceFor: async (from) => (await this.sourceFor(from, ins.loc)).fs,
          identityOf: (from) => this.fromIdentity(from, ins.loc),
        });
        const binds = [...prepared.binds];
        for (const [i, f] of cmd.files.entries()) {
          const host = path.join(tmp, `script-${i}`);
          await fsp.writeFile(host, f.content, { mode: f.mode });
          await fsp.chmod(host, f.mode);
          binds.push({ source: host, target: f.target, readonly: true });
        }
        const sink = (b: Buffer) => handle?.output(b);
        const { runStep } = await this.b.steps();
        this.warm(); // the next RUN's init starts while this one runs
        const r = await runStep(store, {
          snapshots: lower,
          args: cmd.args,
          env: [...env, ...prepared.env],
          user,
          cwd,
          network: stepNetwork(network),
          hostname: 'buildkitsandbox',
          binds,
          tmpfs: prepared.tmpfs,
          stdout: sink,
          stderr: sink,
        });
        try {
          if (r.code !== 0) {
            const why = r.message ? `: ${r.message}` : '';
            throw new BuildError(`process ${JSON.stringify(cmd.args.join(' '))} did not complete successfully: exit code: ${r.code}${why}`, ins.loc);
          }
          const layer = await this.commitLayer(r.upperDir, 'overlay-upper', [...lower].reverse());
          return { layer, history: this.history(createdBy, layer !== null), config: structuredClone(this.cfg) };
        } finally {
          await r.cleanup();
        }
      } finally {
        await prepared?.release();
        await removeTemp(tmp);
      }
    }, structuredClone(this.cfg));
  }

  private async copy(ins: CopyInstruction): Promise<void> {
    const isAdd = ins.kind === 'ADD';
    const vars = this.vars();
    const x = (w: string) => expandWord(w, vars, this.b.esc, { loc: ins.loc });
    const sources = ins.sources.map(x);
    const destRaw = x(ins.dest);
    const chown = ins.chown !== undefined ? x(ins.chown) : undefined;
    const chmod = ins.chmod !== undefined ? x(ins.chmod) : undefined;
    const exclude = ins.exclude.map(x);
    if (ins.from !== undefined && isAdd) throw new BuildError('ADD does not take --from: use COPY --from', ins.loc);
    let chmodFn: ((m: number, d: boolean) => number) | undefined;
    try {
      chmodFn = chmod !== undefined ? parseChmod(chmod) : undefined;
    } catch (e) {
      throw new BuildError((e as Error).message, ins.loc);
    }
    const cwd = this.cfg.WorkingDir || '/';
    const destIsDir = /\/$/.test(destRaw) || destRaw === '.' || destRaw === '' || /\/\.$/.test(destRaw);
    const dest = path.posix.resolve(cwd, destRaw === '' ? '.' : destRaw);
    const heredocs = ins.heredocs.map((h) => ({ name: h.name, content: h.expand ? expandHeredoc(h.content, vars, { loc: ins.loc }) : h.content }));
    const urls = isAdd ? sources.filter((s) => /^https?:\/\//i.test(s)) : [];
    const local = sources.filter((s) => !urls.includes(s));
    if (isAdd && sources.some((s) => /^git@|\.git(#.*)?$/.test(s) && /^(https?:\/\/|git@)/.test(s))) {
      throw new BuildError('ADD of a git repository is not supported: clone it into the build context and COPY it', ins.loc);
    }
    if (ins.checksum !== undefined && urls.length === 0) throw new BuildError('ADD --checksum needs an http(s) URL source', ins.loc);
    const tmp = tempDir(this.b.store, 'copy');
    await fsp.mkdir(tmp, { recursive: true, mode: 0o700 });
    try {
      // Heredocs and downloads become files in a temp dir, then follow the same rules as context files.
      const extra: CopyItem[] = [];
      const extraDigest: string[] = [];
      if (heredocs.length || urls.length) {
        const inline = path.join(tmp, 'inline');
        await fsp.mkdir(inline, { mode: 0o755 });
        for (const h of heredocs) {
          const name = h.name;
          if (name.includes('/')) throw new BuildError(`heredoc name ${name} cannot contain /`, ins.loc);
          await fsp.writeFile(path.join(inline, name), h.content);
          await fsp.chmod(path.join(inline, name), 0o644);
          extra.push({ fs: undefined as unknown as SourceFS, path: name });
          extraDigest.push(createHash('sha256').update(h.content).digest('hex'));
        }
        for (const [i, u] of urls.entries()) {
          const got = await download(u, path.join(tmp, `dl-${i}`), ins.checksum, ins.loc);
          const name = destIsDir ? got.name : `url-${i}`;
          await fsp.rename(got.file, path.join(inline, name));
          await fsp.chmod(path.join(inline, name), 0o600);
          if (got.mtime) await fsp.utimes(path.join(inline, name), got.mtime, got.mtime);
          extra.push({ fs: undefined as unknown as SourceFS, path: name });
          extraDigest.push(`${u} ${got.digest}`);
        }
        const inlineFs = new DirFS(inline, 'build context');
        for (const e of extra) e.fs = inlineFs;
      }
      const fromId = local.length ? await this.fromIdentity(ins.from, ins.loc) : undefined;
      const ctxFs = this.b.opts.context.fs;
      let excludeFilter: DockerIgnore | undefined;
      try {
        excludeFilter = exclude.length ? new DockerIgnore(exclude, '--exclude') : undefined;
      } catch (e) {
        if (e instanceof DockerignoreError) throw new BuildError(e.message, ins.loc);
        throw e;
      }
      let digest: string;
      try {
        digest = fromId !== undefined ? `from ${fromId}` : await sourcesDigest(local.map((p) => ({ fs: ctxFs, path: p })), excludeFilter, this.b.hasher, () => undefined);
      } catch (e) {
        throw new BuildError(`${ins.kind} failed: ${(e as Error).message}`, ins.loc);
      }
      const parent = ins.link ? 'link' : this.state.identity;
      const keyWith = (d: string) => [parent, ins.kind, sources, destRaw, dest, chown ?? '', chmod ?? '', exclude, ins.parents, ins.unpack ?? null, d, extraDigest];
      const key = keyWith(digest);
      const createdBy = [ins.kind, ...(ins.parents ? ['--parents'] : []), ...(chown !== undefined ? [`--chown=${chown}`] : []), ...(chmod !== undefined ? [`--chmod=${chmod}`] : []), ...sources, ...ins.heredocs.map((h) => `<<${h.name}`), `${destRaw} # buildkit`].join(' ');
      await this.step(
        ins,
        key,
        this.display(ins),
        async () => {
          const src = fromId !== undefined ? (await this.sourceFor(ins.from, ins.loc)).fs : ctxFs;
          const items: CopyItem[] = [...local.map((p) => ({ fs: src, path: p })), ...extra];
          const view = ins.link ? new MergedView([]) : await this.view();
          let owner: { uid: number; gid: number } | undefined;
          if (chown !== undefined) {
            const lookupView = ins.link && needsLookup(chown) ? await this.view() : view;
            owner = resolveOwnerAt(chown, lookupView, ins.loc);
          }
          const layerDir = path.join(tmp, 'layer');
          await fsp.mkdir(layerDir, { mode: 0o755 });
          let plan: LayerPlan;
          try {
            plan = await planCopy(view, {
              items,
              dest,
              destIsDir,
              ...(owner ? { chown: owner } : {}),
              ...(chmodFn ? { chmod: chmodFn } : {}),
              ...(excludeFilter ? { exclude: excludeFilter } : {}),
              parents: ins.parents,
              extractArchives: isAdd && ins.unpack !== false,
              now: Date.now() / 1000,
              tmpDir: path.join(tmp, 'extract'),
            });
          } catch (e) {
            if (e instanceof CopyError) throw new BuildError(`${ins.kind} failed: ${e.message}`, ins.loc);
            throw e;
          }
          const layer = await this.commitLayer(layerDir, 'dir', view.layers, plan);
          return { layer, history: this.history(createdBy, layer !== null), config: structuredClone(this.cfg) };
        },
        structuredClone(this.cfg),
        // From a stage or image: also keyed by the content of what is copied.
        fromId === undefined
          ? undefined
          : async () => {
              const src = (await this.sourceFor(ins.from, ins.loc)).fs;
              return keyWith(`content ${await sourcesDigest(local.map((p) => ({ fs: src, path: p })), excludeFilter, this.b.hasher, () => undefined)}`);
            },
      );
    } finally {
      await removeTemp(tmp);
    }
  }
}

function resolveOwnerAt(spec: string, view: MergedView, loc: Location): { uid: number; gid: number } {
  try {
    return resolveOwner(spec, view);
  } catch (e) {
    if (e instanceof UserError) throw new BuildError(e.message, loc);
    throw e;
  }
}

/**
 * The instructions BuildKit numbers in its progress view ([stage 2/5]): the
 * ones that change the filesystem; FROM is 1, metadata steps get no number.
 */
const STEP_KINDS = new Set<Instruction['kind']>(['RUN', 'COPY', 'ADD', 'WORKDIR']);

function countSteps(instructions: readonly Instruction[]): number {
  return instructions.filter((i) => STEP_KINDS.has(i.kind)).length;
}

function toBuildError(e: unknown, ins: Instruction): Error {
  if (e instanceof BuildError || e instanceof DockerfileError) return e;
  const err = e as Error;
  if (e instanceof RunError || e instanceof CopyError || e instanceof UserError) return new BuildError(err.message, ins.loc);
  return new BuildError(`${ins.kind} failed: ${err.message}`, ins.loc);
}

/** ADD https://...: downloads to `file`; returns the name Docker would give it. */
async function download(url: string, file: string, checksum: string | undefined, loc: Location): Promise<{ file: string; name: string; digest: string; mtime?: Date }> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(10 * 60_000) });
  } catch (e) {
    throw new BuildError(`ADD ${url}: cannot download: ${(e as Error).message}`, loc);
  }
  if (!res.ok || !res.body) throw new BuildError(`ADD ${url}: the server answered ${res.status} ${res.statusText}`, loc);
  const h = createHash('sha256');
  const out = fs.createWriteStream(file, { mode: 0o600 });
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      h.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
  } finally {
    await new Promise<void>((r) => out.end(() => r()));
  }
  const digest = `sha256:${h.digest('hex')}`;
  if (checksum !== undefined && checksum !== digest) {
    throw new BuildError(`ADD ${url}: checksum mismatch: expected ${checksum}, got ${digest}`, loc);
  }
  const u = new URL(url);
  const base = decodeURIComponent(u.pathname.split('/').filter(Boolean).pop() ?? '');
  if (base === '' || base.includes('/')) throw new BuildError(`ADD ${url}: cannot tell a file name from the URL: give a destination file name (without a trailing /)`, loc);
  const lm = res.headers.get('last-modified');
  const mtime = lm ? new Date(lm) : undefined;
  return { file, name: base, digest, ...(mtime && !Number.isNaN(mtime.getTime()) ? { mtime } : {}) };
}

/** Builds the Dockerfile of `opts.context`; records and tags the image. */
export async function build(store: Store, opts: BuildOptions): Promise<BuildResult> {
  const started = Date.now();
  return store.withWriteSession(async () => {
    const b = new Build(store, opts);
    const progress = b.progress;
    for (const ref of opts.cacheFrom ?? []) {
      // As Docker: a cache source that cannot be had is a warning, not an error.
      let img: StoredImage | undefined;
      try {
        img = await resolveImage(store, ref);
      } catch (e) {
        if (!(e instanceof NotFoundError)) b.warn(`--cache-from ${ref}: ${(e as Error).message}`);
      }
      if (!img) {
        try {
          img = await pullBaseImage(store, ref, opts.registry);
        } catch (e) {
          b.warn(`--cache-from ${ref}: ${(e as Error).message}; building without it`);
          continue;
        }
      }
      const steps = importedSteps(img);
      if (steps.size === 0) b.warn(`--cache-from ${ref}: the image has no tsbuild cache keys (it was not built by tsbuild); nothing to reuse`);
      for (const [k, v] of steps) b.imported.set(k, v);
    }
    let final: State;
    try {
      final = await b.run();
    } finally {
      await b.coolSteps();
    }
    await b.hasher.save().catch(() => {});
    const unused = [...b.buildArgs.keys()].filter((k) => !b.usedArgs.has(k) && !PROXY_ARGS.includes(k));
    if (unused.length) b.warn(`One or more build-args [${unused.join(' ')}] were not consumed`);
    // The final config: labels from --label, created from the last step (stable across cached rebuilds).
    const image = structuredClone(final.image);
    if (opts.labels && Object.keys(opts.labels).length) {
      image.config = { ...(image.config ?? {}), Labels: { ...(image.config?.Labels ?? {}), ...opts.labels } };
    }
    const history = image.history ?? [];
    const created = b.epoch !== undefined ? new Date(b.epoch * 1000).toISOString() : (history[history.length - 1]?.created ?? image.created ?? new Date().toISOString());
    const config: ImageConfig = { ...image, created, rootfs: { type: 'layers', diff_ids: final.layers.map((l) => l.diffId) }, history };
    const handle = progress.step('exporting to image');
    const tags = opts.tags ?? [];
    let img: StoredImage;
    try {
      const recorded: Record<string, string> = {};
      final.keys.forEach((k, i) => {
        if (k) recorded[String(i)] = k;
      });
      const newImage = {
        config,
        layers: final.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
        format: opts.format ?? 'oci',
        ...(Object.keys(recorded).length && (opts.format ?? 'oci') === 'oci' ? { annotations: { [CACHE_ANNOTATION]: JSON.stringify(recorded) } } : {}),
      } as const;
      // A fully cached rebuild gives the same bytes: when the store already has
      // the image under every requested tag, nothing is written at all.
      const manifestDigest = sha256(buildManifest(newImage).manifestBytes);
      const idx = await store.readIndex();
      const known = idx.images[manifestDigest];
      if (known && tags.every((t) => idx.tags[tagKey(t)] === manifestDigest) && (await store.hasBlob(manifestDigest)) && (await store.hasBlob(known.config))) {
        img = await loadImage(store, manifestDigest, idx);
      } else {
        img = await writeImage(store, newImage, tags);
      }
      handle.done();
    } catch (e) {
      handle.error((e as Error).message);
      throw e;
    }
    return { image: img, tags, steps: b.counters.steps, cached: b.counters.cached, elapsedMs: Date.now() - started, size: sumSizes(final.layers), warnings: b.warnings };
  });
}
