// `tsbuild build` (and its short form `tsbuild -t app .`): flags and output
// only; builder/build.ts does the work.
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { bool, list, str, UsageError } from './args.js';
import { type Command } from './command.js';
import { humanSize } from './format.js';
import { clientOptions, ProgressView, PUSH_WORDS, transportFlags } from './registry-options.js';
import { build, removeTempsSync, type BuildResult } from '../builder/build.js';
import { openContext } from '../builder/context.js';
import { Progress, type ProgressMode } from '../builder/progress.js';
import { parseSecretFlag, type SecretSource } from '../builder/run.js';
import type { ArchiveFormat } from '../image/archive.js';
import { shortTag, tagKey } from '../image/images.js';
import type { Store } from '../image/store.js';
import type { PushOptions, PushResult } from '../registry/push.js';

/** An archive to write, or where the image goes (the store always; a registry with push). */
type OutputSpec = { type: 'oci' | 'docker' | 'local' | 'tar'; dest: string } | { type: 'image'; push: boolean; name?: string };

const IMAGE_KEYS = ['type', 'name', 'push'];

/** BuildKit's boolean attribute values (Go's strconv.ParseBool). */
function parseBoolAttr(v: string, what: string): boolean {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) return false;
  throw new UsageError(`${what}: expected true or false, got ${JSON.stringify(v)}`);
}

function parseOutput(v: string): OutputSpec {
  const o: Record<string, string> = {};
  if (!v.includes('=')) {
    // BuildKit's shorthand: a bare path is the local exporter; "-" a tar of the files on stdout.
    if (v === '-') return { type: 'tar', dest: '-' };
    return localOutput(v);
  }
  for (const part of v.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new UsageError(`invalid --output ${JSON.stringify(v)}: expected key=value pairs`);
    o[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const type = o.type ?? 'image';
  if (type === 'image' || type === 'registry') {
    // type=registry is type=image,push=true (BuildKit's image exporter); the image always goes to the store too.
    for (const k of Object.keys(o)) {
      if (k === 'registry.insecure') throw new UsageError(`--output type=${type}: registry.insecure= is not supported: give --insecure-registry HOST (as tsbuild push takes it)`);
      if (!IMAGE_KEYS.includes(k)) throw new UsageError(`--output type=${type}: ${k}= is not supported (supported: ${IMAGE_KEYS.slice(1).join(', ')})`);
    }
    const push = type === 'registry' ? o.push === undefined || parseBoolAttr(o.push, `--output type=registry,push=`) : o.push !== undefined && parseBoolAttr(o.push, '--output type=image,push=');
    if (o.name !== undefined) checkTag(o.name, `--output type=${type},name=`);
    return { type: 'image', push, name: o.name };
  }
  if (type === 'local') {
    if (!o.dest || o.dest === '-') throw new UsageError('--output type=local needs dest=DIR (a directory)');
    return localOutput(o.dest);
  }
  if (type !== 'oci' && type !== 'docker' && type !== 'tar') throw new UsageError(`--output type=${type} is not supported: use type=local (the files), type=tar (the files as one tar), type=oci or type=docker (an archive), or type=registry (push)`);
  if (!o.dest) throw new UsageError(`--output type=${type} needs dest=FILE (or dest=- for stdout)`);
  if (o.dest !== '-') {
    // Checked before building: the archive is written after it.
    if (fs.statSync(o.dest, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--output type=${type}: ${o.dest} is a directory: give a file name (dest=FILE)`);
    const parent = path.dirname(path.resolve(o.dest));
    if (!fs.statSync(parent, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--output type=${type}: directory ${parent} does not exist: create it first`);
  }
  return { type, dest: o.dest };
}

/** Checked before the build: a dest that exists must be a directory. */
function localOutput(dest: string): OutputSpec {
  const st = fs.statSync(dest, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) throw new UsageError(`--output type=local: ${dest} exists and is not a directory`);
  return { type: 'local', dest };
}

function checkTag(t: string, flag: string): void {
  try {
    tagKey(t);
  } catch (e) {
    throw new UsageError(`invalid argument "${t}" for "${flag}" flag: ${(e as Error).message}`);
  }
}

function parseKeyValue(v: string, flag: string): [string, string | undefined] {
  const eq = v.indexOf('=');
  const k = eq < 0 ? v : v.slice(0, eq);
  if (k === '') throw new UsageError(`invalid ${flag} ${JSON.stringify(v)}: expected KEY=VALUE`);
  return [k, eq < 0 ? undefined : v.slice(eq + 1)];
}

/**
 * --push: every tag to its registry, after the build, one progress step per
 * tag with the per-layer lines `tsbuild push` prints and the digest last.
 * The image stays in the store whatever happens; a failure names the
 * reference and how to push again. The registry client loads only here.
 */
async function pushTags(store: Store, result: BuildResult, refs: string[], opts: PushOptions, progress: Progress, root: string | undefined): Promise<PushResult[]> {
  const { pushImage } = await import('../registry/push.js');
  const { closeAgents } = await import('../registry/transport.js');
  const pushed: PushResult[] = [];
  try {
    for (const [i, ref] of refs.entries()) {
      const step = progress.step(`pushing ${shortTag(ref)}`);
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          step.output(chunk);
          cb();
        },
      });
      const view = new ProgressView(progress.mode === 'quiet' ? 'quiet' : 'plain', sink, PUSH_WORDS);
      try {
        // By manifest digest: exactly what this build made, even if a tag moved meanwhile.
        const res = await pushImage(store, result.image.digest, ref, { ...opts, onProgress: view.onProgress });
        view.finish();
        step.output(Buffer.from(`${res.tag ?? res.digest}: digest: ${res.digest} size: ${res.size}\n`));
        step.done();
        pushed.push(res);
      } catch (e) {
        let msg = (e as Error).message;
        step.error(msg);
        if (!msg.includes(ref) && !msg.includes(shortTag(ref))) msg = `push ${shortTag(ref)}: ${msg}`;
        const names = result.tags.map((t) => shortTag(tagKey(t))).join(', ');
        const again = refs
          .slice(i)
          .map((r) => `tsbuild ${root ? `--root ${root} ` : ''}push ${shortTag(r)}`)
          .join(' && ');
        throw new Error(
          `${msg}\nThe image is built and kept in the store as ${names} (${result.image.id.slice(0, 19)})` +
            `${pushed.length ? `; pushed already: ${pushed.map((p) => p.reference).join(', ')}` : ''}. Once that is fixed, push it with: ${again}`,
        );
      }
    }
  } finally {
    await closeAgents();
  }
  return pushed;
}

export const buildCommand: Command = {
  name: 'build',
  usage: 'build [OPTIONS] PATH | -',
  description: 'Build an image from a Dockerfile',
  flags: [
    { name: 'tag', short: 't', type: 'list', description: 'Name and optionally a tag (format: "name:tag")' },
    { name: 'file', short: 'f', type: 'string', description: 'Name of the Dockerfile (default: "PATH/Dockerfile")' },
    { name: 'build-arg', type: 'list', description: 'Set build-time variables' },
    { name: 'target', type: 'string', description: 'Set the target build stage to build' },
    { name: 'no-cache', type: 'bool', description: 'Do not use cache when building the image' },
    { name: 'cache-from', type: 'list', description: 'Images to consider as cache sources (built by tsbuild: local, else pulled)' },
    { name: 'pull', type: 'bool', description: 'Always attempt to pull all referenced images' },
    { name: 'label', type: 'list', description: 'Set metadata for an image' },
    { name: 'secret', type: 'list', description: 'Secret to expose to the build (format: "id=mysecret[,src=/local/secret]")' },
    { name: 'network', type: 'string', description: 'Set the networking mode for the RUN instructions during build (default, none, host)', default: 'default' },
    { name: 'platform', type: 'string', description: 'Set target platform for build (only the host platform)' },
    { name: 'progress', type: 'string', description: 'Set type of progress output (auto, plain, tty, quiet)', default: 'auto' },
    { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress the build output and print image ID on success' },
    { name: 'iidfile', type: 'string', description: 'Write the image ID to a file' },
    { name: 'output', short: 'o', type: 'list', description: 'Output destination (format: "type=local,dest=DIR" or just DIR, "type=tar,dest=FILE" or "-" for a tar of the files on stdout, "type=oci|docker,dest=FILE", "type=registry[,name=NAME]", "type=image[,push=true]")' },
    { name: 'report', type: 'string', description: 'After the build, print the image report (text, or json on stdout)', arg: 'format' },
    { name: 'push', type: 'bool', description: 'Shorthand for "--output=type=registry": push every -t tag to its registry after the build' },
    ...transportFlags.map((f) => ({ ...f, description: `${f.description} (base image pulls and --push)` })),
    { name: 'ssh', type: 'list', description: 'SSH agent socket or keys to expose (not supported)', hidden: true },
    { name: 'rm', type: 'bool', description: 'Remove intermediate containers (always)', hidden: true },
    { name: 'force-rm', type: 'bool', description: 'Always remove intermediate containers', hidden: true },
    { name: 'load', type: 'bool', description: 'Load the image into the store (always)', hidden: true },
  ],
  minArgs: 1,
  maxArgs: 1,
  async run(a, ctx) {
    const tags = list(a, 'tag');
    for (const t of tags) checkTag(t, '-t, --tag');
    if (list(a, 'ssh').length) throw new UsageError('--ssh is not supported: pass what the build needs with --secret');
    const buildArgs: Record<string, string> = {};
    for (const v of list(a, 'build-arg')) {
      const [k, val] = parseKeyValue(v, '--build-arg');
      // `--build-arg KEY` takes the value from the environment (and is skipped when unset), as Docker does.
      const value = val ?? process.env[k];
      if (value !== undefined) buildArgs[k] = value;
    }
    const labels: Record<string, string> = {};
    for (const v of list(a, 'label')) {
      const [k, val] = parseKeyValue(v, '--label');
      labels[k] = val ?? '';
    }
    const secrets = new Map<string, SecretSource>();
    for (const v of list(a, 'secret')) {
      try {
        const [id, s] = parseSecretFlag(v);
        secrets.set(id, s);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    const network = str(a, 'network') ?? 'default';
    if (!['default', 'none', 'host'].includes(network)) throw new UsageError(`invalid --network ${JSON.stringify(network)}: use default, none or host`);
    const quiet = bool(a, 'quiet');
    const progressFlag = str(a, 'progress') ?? 'auto';
    if (!['auto', 'plain', 'tty', 'quiet'].includes(progressFlag)) throw new UsageError(`invalid --progress ${JSON.stringify(progressFlag)}: use auto, plain, tty or quiet`);
    const outputs = list(a, 'output').map(parseOutput);
    const archives = outputs.filter((o) => o.type !== 'image');
    const imageOutputs = outputs.filter((o) => o.type === 'image');
    // --output type=image,name=X names the image as -t X does.
    for (const o of imageOutputs) if (o.name !== undefined && !tags.some((t) => tagKey(t) === tagKey(o.name!))) tags.push(o.name);
    // --push is --output type=registry: every tag goes to its registry after the build.
    const push = bool(a, 'push') || imageOutputs.some((o) => o.push);
    const pushRefs = push ? [...new Set(tags.map(tagKey))] : [];
    // Checked before anything is built, as BuildKit's image exporter does.
    if (push && pushRefs.length === 0) throw new Error('tag is needed when pushing to registry: name the image with -t REGISTRY/REPOSITORY:TAG');
    const registryOptions = clientOptions(a);
    const report = str(a, 'report');
    if (report !== undefined && report !== 'text' && report !== 'json') throw new UsageError(`invalid --report ${JSON.stringify(report)}: use text or json`);
    if (report !== undefined && (quiet || archives.some((o) => o.dest === '-'))) throw new UsageError('--report writes to stdout: it cannot be combined with -q or --output dest=-');
    if (archives.filter((o) => o.dest === '-').length > 1) throw new UsageError('only one --output can write to stdout');
    const toStdout = archives.find((o) => o.dest === '-');
    if (toStdout && (ctx.stdout as { isTTY?: boolean }).isTTY) {
      throw new UsageError(`--output type=${toStdout.type},dest=-: refusing to write an archive to the terminal: redirect stdout (> out.tar) or give dest=FILE`);
    }
    const sdeEnv = process.env.SOURCE_DATE_EPOCH;
    let sourceDateEpoch: number | undefined;
    if (sdeEnv !== undefined && sdeEnv !== '') {
      sourceDateEpoch = Number(sdeEnv);
      if (!Number.isInteger(sourceDateEpoch) || sourceDateEpoch < 0) throw new UsageError(`SOURCE_DATE_EPOCH=${JSON.stringify(sdeEnv)} is not a whole number of seconds`);
    }
    const progress = new Progress(ctx.stderr, quiet ? 'quiet' : (progressFlag as ProgressMode));
    const store = await ctx.store();
    const context = await openContext(store, { context: a.positionals[0]!, file: str(a, 'file'), stdin: process.stdin });
    // Ctrl-C: remove this build's temp dirs, then exit as a signal would.
    const onSignal = (sig: NodeJS.Signals) => {
      progress.end();
      removeTempsSync();
      context.cleanupSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    let result: BuildResult;
    let pushed: PushResult[] = [];
    const iidfile = str(a, 'iidfile');
    try {
      result = await build(store, {
        context,
        tags,
        buildArgs,
        target: str(a, 'target'),
        noCache: bool(a, 'no-cache'),
        cacheFrom: list(a, 'cache-from'),
        pull: bool(a, 'pull'),
        registry: registryOptions,
        labels,
        secrets,
        network: network as 'default' | 'none' | 'host',
        platform: str(a, 'platform'),
        progress,
        sourceDateEpoch,
      });
      // The image is built and tagged: the ID file is written even when a push fails, so a job can push it again.
      if (iidfile) await fsp.writeFile(iidfile, result.image.id);
      if (push) pushed = await pushTags(store, result, pushRefs, registryOptions, progress, ctx.root);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      progress.end();
      await context.cleanup();
    }
    const id = result.image.id;
    const { saveImages } = archives.some((o) => o.type === 'oci' || o.type === 'docker') ? await import('../image/archive.js') : { saveImages: undefined };
    for (const o of archives) {
      if (o.type === 'local') {
        const { exportRootfs } = await import('../image/export-rootfs.js');
        await exportRootfs(store, result.image, o.dest);
        continue;
      }
      if (o.type === 'tar') {
        const { exportRootfsTar } = await import('../image/export-rootfs.js');
        await exportRootfsTar(store, result.image, o.dest === '-' ? (ctx.stdout as unknown as Writable) : o.dest);
        continue;
      }
      const refs = result.tags.length ? result.tags : [id];
      const format: ArchiveFormat = o.type === 'oci' ? 'oci-archive' : 'docker-archive';
      if (!saveImages) break;
      if (o.dest === '-') await saveImages(store, refs, ctx.stdout as unknown as Writable, format);
      else await saveImages(store, refs, o.dest, format);
    }
    if (report !== undefined) {
      const { imageReport, renderReport } = await import('../image/report.js');
      ctx.stdout.write(renderReport(await imageReport(store, result.image), report as 'text' | 'json'));
    }
    if (quiet) {
      ctx.stdout.write(`${id}\n`);
    } else {
      const names = result.tags.map((t) => shortTag(tagKey(t)));
      const secs = (result.elapsedMs / 1000).toFixed(2);
      progress.line(
        `Built ${names.length ? `${names.join(', ')} ` : ''}${id.slice(0, 19)} in ${secs}s: ${result.steps} steps, ${result.cached} cached, ${humanSize(result.size)}` +
          (pushed.length ? `; pushed ${pushed.length} tag${pushed.length === 1 ? '' : 's'}, manifest ${pushed[0]!.digest}` : ''),
      );
    }
    return 0;
  },
};

export const buildCommands: Command[] = [buildCommand];
