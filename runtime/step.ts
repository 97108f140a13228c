// The one API the builder calls for a RUN step: the same bundle (bundle.ts)
// and the same stages (launch.ts) as `tsbuild run`, without the containers/
// bookkeeping a user-visible container has. The caller gets the exit code and
// the overlay upper dir to turn into a layer, then calls cleanup().
//
// Step dirs live under <root>/steps/<id>/ (short, for overlay's 4 KB option
// limit) with an owner.json (pid + start time). A build killed with SIGKILL
// leaves its dir behind; its container died with it (PDEATHSIG) and its
// mounts with the container's mount namespace, so the next runStep (or
// `tsbuild prune`) removes dirs whose owner is gone.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../image/atomic.js';
import type { Store } from '../image/store.js';
import { namespacesFor, writeBundle } from './bundle.js';
import { effectiveCapNames } from './capabilities.js';
import { DEFAULT_PATH } from './config.js';
import { procStartTime } from './container.js';
import { discardStandby, launch, spawnStandby, standbyFits, type Standby } from './launch.js';
import { gatePath, startContainerNetwork, type ContainerNetwork } from './network/sync.js';
import type { BindSpec, NetworkMode } from './spec.js';

export interface StepOptions {
  /** The parent image's snapshot fs dirs, bottom-first (ensureSnapshots). */
  snapshots: string[];
  /** The program and its arguments (the builder applies SHELL for the shell form). */
  args: string[];
  /** Full environment; PATH is defaulted when missing, as for `run`. */
  env: string[];
  /** Docker's user syntax; "" = root. */
  user?: string;
  /** Working dir in the container; created if missing. Default "/". */
  cwd?: string;
  /** Default 'none'; 'bridge' = the default bridge network with outbound access. */
  network?: NetworkMode;
  hostname?: string;
  /** Extra bind mounts (RUN --mount=type=bind|cache|secret). Their mount points never end up in the upper dir. */
  binds?: BindSpec[];
  /** tmpfs mount points (RUN --mount=type=tmpfs). */
  tmpfs?: string[];
  /** Output sinks; default: inherited from this process. */
  stdout?: (chunk: Buffer) => void;
  stderr?: (chunk: Buffer) => void;
}

export interface StepResult {
  /** The program's exit code, Docker's way (126/127 cannot run, 128+N signal). */
  code: number;
  /** Why the program could not be started, or ''. */
  message: string;
  /** The overlay upper dir: the step's changes, for writeLayer(..., { mode: 'overlay-upper' }). */
  upperDir: string;
  /** Removes the step dir. Call after the layer is written. */
  cleanup(): Promise<void>;
}

// Standbys (launch.ts): inits spawned ahead of the RUN steps that will need
// them. Steps stream their output to the builder, so all use these stdio slots.
const STEP_STDIO = ['ignore', 'pipe', 'pipe'] as const;
const standbys: Promise<Standby | undefined>[] = [];

/**
 * Starts an init for a coming step with this network mode (the builder calls
 * this for the next RUN steps that will run). Best effort: a standby that
 * cannot be started is simply not there, and runStep spawns as usual.
 */
export function warmStep(network: NetworkMode = 'none'): void {
  standbys.push(spawnStandby(namespacesFor(network), [...STEP_STDIO]).catch(() => undefined));
}

/** Ends the standbys no step took. Call when the build is over. */
export async function coolSteps(): Promise<void> {
  const all = await Promise.all(standbys.splice(0));
  await Promise.all(all.map((s) => s && discardStandby(s)));
}

/** How many standbys are waiting (tests). */
export function standbyCount(): number {
  return standbys.length;
}

/** A standby that fits these namespaces, taken out of the pool. */
async function takeStandby(namespaces: number): Promise<Standby | undefined> {
  // Over a copy, by identity: other steps (concurrent stages) take from the pool while we await.
  for (const p of [...standbys]) {
    const s = await p;
    const i = standbys.indexOf(p);
    if (i < 0) continue; // taken meanwhile
    if (!s) {
      standbys.splice(i, 1); // could not be started
    } else if (standbyFits(s, { namespaces }, [...STEP_STDIO])) {
      standbys.splice(i, 1);
      return s;
    }
  }
  return undefined;
}

export function stepsDir(root: string): string {
  return path.join(root, 'steps');
}

/** Removes step dirs whose owning process is gone (a build killed mid-step). */
export async function pruneSteps(root: string): Promise<number> {
  let names: string[];
  try {
    names = await fsp.readdir(stepsDir(root));
  } catch {
    return 0;
  }
  let removed = 0;
  for (const n of names) {
    const dir = path.join(stepsDir(root), n);
    let owner: { pid: number; startTime: number } | undefined;
    try {
      owner = JSON.parse(await fsp.readFile(path.join(dir, 'owner.json'), 'utf8')) as { pid: number; startTime: number };
    } catch {
      // No owner file: either being created right now or a crash before it
      // was written; only the latter is old.
      const st = await fsp.stat(dir).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs < 60_000) continue;
    }
    if (owner && procStartTime(owner.pid) === owner.startTime) continue;
    await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 });
    removed++;
  }
  return removed;
}

/** Runs one build step in a fresh container over the given layers. */
export async function runStep(store: Store, o: StepOptions): Promise<StepResult> {
  await pruneSteps(store.root);
  const id = randomBytes(8).toString('hex');
  const dir = path.join(stepsDir(store.root), id);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const cleanup = () => fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 });
  try {
    await writeJsonAtomic(path.join(dir, 'owner.json'), { pid: process.pid, startTime: procStartTime(process.pid) ?? 0 });
    const env = o.env.some((e) => e.startsWith('PATH=')) ? o.env : [DEFAULT_PATH, ...o.env];
    const network = o.network ?? 'none';
    const spec = await writeBundle(store.root, dir, {
      id,
      snapshots: o.snapshots,
      hostname: o.hostname ?? id.slice(0, 12),
      network,
      process: { args: o.args, env, cwd: o.cwd || '/', user: o.user ?? '', capabilities: effectiveCapNames() },
      binds: o.binds,
      tmpfs: o.tmpfs,
    });
    // bridge: the step gets the default bridge network (outbound NAT, as
    // BuildKit's default gives RUN network access); init waits at the gate
    // until stage 0 has connected its namespace (runtime/network/sync.ts).
    let net: ContainerNetwork | undefined;
    if (network === 'bridge') {
      await writeJsonAtomic(path.join(dir, 'spec.json'), { ...spec, netSync: gatePath(dir) }, 0o600);
      net = await startContainerNetwork(store.root, { containerId: id, name: `step-${id}`, hostname: spec.hostname, dir, networks: [{ network: 'bridge' }] });
    }
    try {
      const stdio = ['ignore', o.stdout ? 'pipe' : 'inherit', o.stderr ? 'pipe' : 'inherit'] as const;
      const standby = o.stdout && o.stderr ? await takeStandby(spec.namespaces) : undefined;
      const launched = await launch(path.join(dir, 'spec.json'), [...stdio], { onPid: (pid) => net?.onPid(pid) }, standby);
      if (o.stdout) launched.stdout!.on('data', o.stdout);
      if (o.stderr) launched.stderr!.on('data', o.stderr);
      let r = await launched.done;
      // A 126/127 from init is the real cause; the network failed only because init was gone.
      if (net?.error && !(r.message && r.code !== 125)) r = { code: 125, message: net.error };
      return { code: r.code, message: r.message, upperDir: path.join(dir, 'upper'), cleanup };
    } finally {
      await net?.finish();
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
}
