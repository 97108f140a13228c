// Registry commands: pull, push, login, logout, copy (registry/ does the work).
// Output follows the Docker CLI: per-layer lines (bars with bytes and rate on
// a terminal), then "TAG: digest: sha256:… size: N" for push and
// "Digest: …" / "Status: …" / the reference for pull.
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { bool, str, UsageError, type FlagSpec, type ParsedArgs } from './args.js';
import { ExitError, out, type Command, type Context } from './command.js';
import { clientOptions, ProgressView, PULL_WORDS, PUSH_WORDS, transportFlags, type Mode } from './registry-options.js';
import { familiarName, familiarRepository, formatReference, parseReference, repositoryName, withTag } from '../image/reference.js';
import { closeAgents } from '../registry/transport.js';
import { pull, listTags } from '../registry/pull.js';
import { pushImage } from '../registry/push.js';
import { copyImage } from '../registry/copy.js';
import { login, logout, normalizeRegistryHost } from '../registry/login.js';
import { authFilePath } from '../registry/credentials.js';
import { parsePlatform } from '../registry/common.js';

export { parseSize } from './registry-options.js';

const progressFlags: FlagSpec[] = [
  { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress verbose output' },
  { name: 'progress', type: 'string', description: 'Progress output: auto, plain or tty', default: 'auto', arg: 'string' },
  { name: 'chunk-size', type: 'string', description: 'Upload blobs larger than this in chunks of this size (e.g. 16MiB)', hidden: true },
  { name: 'concurrency', type: 'string', description: 'Blobs transferred at once', hidden: true },
];

function progressMode(a: ParsedArgs, ctx: Context): Mode {
  if (bool(a, 'quiet')) return 'quiet';
  const p = str(a, 'progress') ?? 'auto';
  if (p === 'plain' || p === 'tty') return p;
  if (p !== 'auto') throw new UsageError(`invalid argument "${p}" for "--progress" flag: use auto, plain or tty`);
  return (ctx.stdout as { isTTY?: boolean }).isTTY ? 'tty' : 'plain';
}

/** Aborts the operation on Ctrl-C so ingest files are removed before exiting. */
async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSig = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    return await fn(ac.signal);
  } catch (e) {
    // Ctrl-C: the ingest files are gone by now; exit as a shell would report SIGINT.
    if (ac.signal.aborted) throw new ExitError('interrupted', 130);
    throw e;
  } finally {
    process.removeListener('SIGINT', onSig);
    process.removeListener('SIGTERM', onSig);
    await closeAgents();
  }
}

const pullCmd: Command = {
  name: 'pull',
  usage: 'pull [OPTIONS] NAME[:TAG|@DIGEST]',
  description: 'Download an image from a registry',
  flags: [
    { name: 'platform', type: 'string', description: 'Set platform if server is multi-platform capable (default: linux and this machine\'s architecture)', arg: 'string' },
    { name: 'all-tags', short: 'a', type: 'bool', description: 'Download all tagged images in the repository' },
    ...progressFlags,
    ...transportFlags,
  ],
  minArgs: 1,
  maxArgs: 1,
  async run(a, ctx) {
    const name = a.positionals[0]!;
    const ref = parseReference(name);
    const opts = clientOptions(a);
    const platform = str(a, 'platform');
    if (platform) parsePlatform(platform);
    const mode = progressMode(a, ctx);
    const store = await ctx.store();
    return withInterrupt(async (signal) => {
      let names = [name];
      if (bool(a, 'all-tags')) {
        if (ref.digest || /:[\w][\w.-]*$/.test(name.slice(name.lastIndexOf('/')))) throw new UsageError('tag can\'t be used with --all-tags/-a');
        const tags = await listTags(name, opts);
        if (tags.length === 0) throw new Error(`${familiarRepository(ref)}: the repository has no tags`);
        names = tags.sort().map((t) => formatReference(withTag(ref, t)));
        if (mode !== 'quiet') out(ctx, `Pulling ${tags.length} tag${tags.length === 1 ? '' : 's'} of ${familiarRepository(ref)}`);
      }
      for (const n of names) {
        const r = parseReference(n);
        const view = new ProgressView(mode, ctx.stdout, PULL_WORDS);
        if (mode !== 'quiet') out(ctx, `${r.digest ?? r.tag}: Pulling from ${r.path}`);
        const res = await pull(store, n, { ...opts, platform, onProgress: view.onProgress, signal });
        view.finish();
        if (mode !== 'quiet') {
          out(ctx, `Digest: ${res.digest}`);
          out(ctx, res.upToDate ? `Status: Image is up to date for ${familiarName(r)}` : `Status: Downloaded newer image for ${familiarName(r)}`);
        }
        out(ctx, res.reference);
      }
      return 0;
    });
  },
};

const pushCmd: Command = {
  name: 'push',
  usage: 'push [OPTIONS] NAME[:TAG] [DESTINATION]',
  description: 'Upload an image to a registry',
  flags: [{ name: 'all-tags', short: 'a', type: 'bool', description: 'Push all tags of an image to the repository' }, ...progressFlags, ...transportFlags],
  minArgs: 1,
  maxArgs: 2,
  async run(a, ctx) {
    // `push LOCAL DESTINATION` is an extension (podman's form); `push NAME` is Docker's.
    const [local, remote] = a.positionals as [string, string | undefined];
    const dst = parseReference(remote ?? local);
    const opts = clientOptions(a);
    const mode = progressMode(a, ctx);
    const store = await ctx.store();
    let pairs: [string, string | undefined][] = [[local, remote]];
    if (bool(a, 'all-tags')) {
      if (remote !== undefined || /:[\w][\w.-]*$/.test(local.slice(local.lastIndexOf('/')))) throw new UsageError('tag can\'t be used with --all-tags/-a');
      const repo = repositoryName(dst);
      const tags = Object.keys((await store.readIndex()).tags).filter((k) => k.slice(0, k.lastIndexOf(':')) === repo).sort();
      if (tags.length === 0) throw new Error(`An image does not exist locally with the repository: ${familiarRepository(dst)}`);
      pairs = tags.map((t) => [t, undefined]);
    }
    return withInterrupt(async (signal) => {
      if (mode !== 'quiet') out(ctx, `The push refers to repository [${familiarRepository(dst)}]`);
      for (const [l, r] of pairs) {
        const view = new ProgressView(mode, ctx.stdout, PUSH_WORDS);
        const res = await pushImage(store, l, r, { ...opts, onProgress: view.onProgress, signal });
        view.finish();
        if (mode === 'quiet') out(ctx, res.reference);
        else out(ctx, `${res.tag ?? res.digest}: digest: ${res.digest} size: ${res.size}`);
      }
      return 0;
    });
  },
};

const copyCmd: Command = {
  name: 'copy',
  usage: 'copy [OPTIONS] SOURCE DESTINATION',
  description: 'Copy an image from one registry repository to another without unpacking it',
  flags: [
    { name: 'platform', type: 'string', description: 'Copy only this platform of a multi-platform image', arg: 'string' },
    ...progressFlags,
    ...transportFlags,
  ],
  minArgs: 2,
  maxArgs: 2,
  async run(a, ctx) {
    const [src, dst] = a.positionals as [string, string];
    parseReference(src);
    parseReference(dst);
    const opts = clientOptions(a);
    const platform = str(a, 'platform');
    if (platform) parsePlatform(platform);
    const mode = progressMode(a, ctx);
    return withInterrupt(async (signal) => {
      const view = new ProgressView(mode, ctx.stdout, PUSH_WORDS);
      const res = await copyImage(src, dst, { ...opts, platform, onProgress: view.onProgress, signal });
      view.finish();
      if (mode === 'quiet') out(ctx, res.destination);
      else out(ctx, `${res.destination}: digest: ${res.digest} size: ${res.size}`);
      return 0;
    });
  },
};

async function readLine(prompt: string, ctx: Context, muted = false): Promise<string> {
  const sink = new Writable({
    write(chunk, _e, cb) {
      if (!muted) ctx.stderr.write(chunk as Buffer);
      cb();
    },
  });
  ctx.stderr.write(prompt);
  const rl = createInterface({ input: process.stdin, output: sink, terminal: Boolean(process.stdin.isTTY) });
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.once('line', resolve);
      rl.once('close', () => reject(new Error('no input on stdin')));
    });
  } finally {
    rl.close();
    if (muted) ctx.stderr.write('\n');
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

const loginCmd: Command = {
  name: 'login',
  usage: 'login [OPTIONS] [SERVER]',
  description: 'Log in to a registry',
  flags: [
    { name: 'username', short: 'u', type: 'string', description: 'Username' },
    { name: 'password', short: 'p', type: 'string', description: 'Password' },
    { name: 'password-stdin', type: 'bool', description: 'Take the password from stdin' },
    ...transportFlags,
  ],
  maxArgs: 1,
  async run(a, ctx) {
    const host = normalizeRegistryHost(a.positionals[0]);
    const opts = clientOptions(a);
    let username = str(a, 'username');
    let password = str(a, 'password');
    if (password !== undefined && bool(a, 'password-stdin')) throw new UsageError('--password and --password-stdin are mutually exclusive');
    if (bool(a, 'password-stdin')) {
      if (username === undefined) throw new UsageError('Must provide --username with --password-stdin');
      password = await readStdin();
    } else if (password !== undefined) {
      ctx.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
    }
    if (username === undefined) {
      if (!process.stdin.isTTY) throw new UsageError('Cannot perform an interactive login from a non TTY device: give --username and --password-stdin');
      username = (await readLine('Username: ', ctx)).trim();
    }
    if (password === undefined) {
      if (!process.stdin.isTTY) throw new UsageError('Cannot perform an interactive login from a non TTY device: give --password-stdin');
      password = await readLine('Password: ', ctx, true);
    }
    if (!username) throw new Error('Non-null Username Required');
    if (!password) throw new Error('Non-null Password Required');
    try {
      const res = await login(host, { username, password }, opts);
      if (!res.helper) ctx.stderr.write(`WARNING! Your password will be stored unencrypted in ${res.file}.\n`);
      out(ctx, 'Login Succeeded');
    } finally {
      await closeAgents();
    }
    return 0;
  },
};

const logoutCmd: Command = {
  name: 'logout',
  usage: 'logout [SERVER]',
  description: 'Log out from a registry',
  flags: [{ name: 'authfile', type: 'string', description: 'Path of the credentials file', arg: 'path' }],
  maxArgs: 1,
  async run(a, ctx) {
    const res = await logout(a.positionals[0] ?? '', { authfile: str(a, 'authfile') });
    if (res.removed) out(ctx, `Removing login credentials for ${res.host}`);
    else out(ctx, `Not logged in to ${res.host} (nothing in ${authFilePath({ authfile: str(a, 'authfile') })})`);
    return 0;
  },
};

export const registryCommands: Command[] = [pullCmd, pushCmd, loginCmd, logoutCmd, copyCmd];
