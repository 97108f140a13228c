// `run` and `rm`: thin wrappers over runtime/.
import { promises as fsp } from 'node:fs';
import { bool, list, str, UsageError } from './args.js';
import { ExitError, out, type Command } from './command.js';
import { RunError, runContainer, runDetached, type RunOptions } from '../runtime/run.js';
import { parseBytes, type Resources } from '../runtime/cgroups.js';
import { findContainer, removeContainer } from '../runtime/container.js';

const run: Command = {
  name: 'run',
  usage: 'run [OPTIONS] IMAGE [COMMAND] [ARG...]',
  description: 'Create and run a new container from an image',
  stopAtPositional: true,
  minArgs: 1,
  flags: [
    { name: 'rm', type: 'bool', description: 'Automatically remove the container when it exits' },
    { name: 'detach', short: 'd', type: 'bool', description: 'Run container in background and print container ID' },
    { name: 'interactive', short: 'i', type: 'bool', description: 'Keep STDIN open even if not attached' },
    { name: 'tty', short: 't', type: 'bool', description: 'Allocate a pseudo-TTY' },
    { name: 'init', type: 'bool', description: 'Run an init inside the container that forwards signals and reaps processes' },
    { name: 'memory', short: 'm', type: 'string', description: 'Memory limit', arg: 'bytes' },
    { name: 'memory-swap', type: 'string', description: "Swap limit equal to memory plus swap: '-1' to enable unlimited swap", arg: 'bytes' },
    { name: 'cpus', type: 'string', description: 'Number of CPUs', arg: 'decimal' },
    { name: 'cpu-shares', short: 'c', type: 'string', description: 'CPU shares (relative weight)', arg: 'int' },
    { name: 'cpuset-cpus', type: 'string', description: 'CPUs in which to allow execution (0-3, 0,1)', arg: 'string' },
    { name: 'pids-limit', type: 'string', description: 'Tune container pids limit (set -1 for unlimited)', arg: 'int' },
    { name: 'name', type: 'string', description: 'Assign a name to the container', arg: 'string' },
    { name: 'env', short: 'e', type: 'list', description: 'Set environment variables', arg: 'list' },
    { name: 'workdir', short: 'w', type: 'string', description: 'Working directory inside the container', arg: 'string' },
    { name: 'hostname', short: 'h', type: 'string', description: 'Container host name', arg: 'string' },
    { name: 'entrypoint', type: 'string', description: 'Overwrite the default ENTRYPOINT of the image', arg: 'string' },
    { name: 'user', short: 'u', type: 'string', description: 'Username or UID (format: <name|uid>[:<group|gid>])', arg: 'string' },
    { name: 'cap-add', type: 'list', description: 'Add Linux capabilities', arg: 'list' },
    { name: 'cap-drop', type: 'list', description: 'Drop Linux capabilities', arg: 'list' },
    { name: 'volume', short: 'v', type: 'list', description: 'Bind mount a volume (host-dir:ctr-dir[:ro], name:ctr-dir, ctr-dir)', arg: 'list' },
    { name: 'env-file', type: 'list', description: 'Read in a file of environment variables', arg: 'list' },
    { name: 'read-only', type: 'bool', description: "Mount the container's root filesystem as read only" },
    { name: 'tmpfs', type: 'list', description: 'Mount a tmpfs directory', arg: 'list' },
    { name: 'privileged', type: 'bool', description: 'Give extended privileges to this container' },
    { name: 'security-opt', type: 'list', description: 'Security Options (no-new-privileges)', arg: 'list' },
    { name: 'ulimit', type: 'list', description: 'Ulimit options (name=soft[:hard])', arg: 'ulimit' },
    { name: 'network', type: 'string', description: 'Connect a container to a network (bridge, host, none, or a network name)', arg: 'network', default: 'bridge' },
    { name: 'ip', type: 'string', description: 'IPv4 address (e.g., 172.30.100.104)', arg: 'string' },
    { name: 'network-alias', type: 'list', description: 'Add network-scoped alias for the container', arg: 'list' },
    { name: 'publish', short: 'p', type: 'list', description: "Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto])", arg: 'list' },
    { name: 'publish-all', short: 'P', type: 'bool', description: 'Publish all exposed ports to random ports' },
    { name: 'expose', type: 'list', description: 'Expose a port or a range of ports', arg: 'list' },
  ],
  async run(args, ctx) {
    const network = str(args, 'network') ?? 'bridge';
    if (network.startsWith('container:')) throw new UsageError(`--network ${network}: sharing another container's network namespace is not supported (use a user-defined network)`);
    const [image, ...cmd] = args.positionals;
    if (bool(args, 'tty') && bool(args, 'interactive') && !bool(args, 'detach') && !process.stdin.isTTY) {
      throw new ExitError('the input device is not a TTY', 1);
    }
    const resources = parseResources(args);
    try {
      const opts: RunOptions = {
        image: image!,
        args: cmd,
        rm: bool(args, 'rm'),
        name: str(args, 'name'),
        env: [...(await readEnvFiles(list(args, 'env-file'))), ...list(args, 'env')],
        volumes: list(args, 'volume'),
        tmpfs: list(args, 'tmpfs').map((t) => t.split(':')[0]!),
        readOnly: bool(args, 'read-only'),
        privileged: bool(args, 'privileged'),
        securityOpt: list(args, 'security-opt'),
        ulimits: list(args, 'ulimit'),
        interactive: bool(args, 'interactive') && !bool(args, 'detach'),
        tty: bool(args, 'tty'),
        init: bool(args, 'init'),
        workdir: str(args, 'workdir'),
        hostname: str(args, 'hostname'),
        entrypoint: str(args, 'entrypoint'),
        user: str(args, 'user'),
        network: network === 'default' ? 'bridge' : network,
        ip: str(args, 'ip'),
        networkAliases: list(args, 'network-alias'),
        publish: list(args, 'publish'),
        publishAll: bool(args, 'publish-all'),
        expose: list(args, 'expose'),
        capAdd: list(args, 'cap-add'),
        capDrop: list(args, 'cap-drop'),
        resources,
      };
      if (bool(args, 'detach')) {
        out(ctx, await runDetached(await ctx.store(), opts));
        return 0;
      }
      return await runContainer(await ctx.store(), opts);
    } catch (e) {
      if (e instanceof RunError) throw new ExitError(e.message, e.exitCode);
      throw new ExitError((e as Error).message, 125);
    }
  },
};

/**
 * --env-file, as Docker reads it: one VAR=value or VAR (taken from the host
 * environment) per line; lines starting with # and blank lines skipped; the
 * value is taken literally (no quotes removed, no expansion).
 */
export async function readEnvFiles(files: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await fsp.readFile(f, 'utf8');
    } catch (e) {
      throw new ExitError(`open ${f}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`, 125);
    }
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/^\s+/, '').replace(/\r$/, '');
      if (line === '' || line.startsWith('#')) return;
      const eq = line.indexOf('=');
      const name = eq === -1 ? line.trimEnd() : line.slice(0, eq);
      if (name === '' || /\s/.test(name)) throw new ExitError(`${f}:${i + 1}: variable '${name}' contains whitespaces`, 125);
      if (eq !== -1) out.push(line);
      else if (process.env[name] !== undefined) out.push(`${name}=${process.env[name]}`);
    });
  }
  return out;
}

function parseResources(args: Parameters<Command['run']>[0]): Resources {
  const r: Resources = {};
  const num = (flag: string, v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new UsageError(`invalid argument "${v}" for "--${flag}" flag`);
    return n;
  };
  const bytes = (flag: string, v: string): number => {
    if (v === '-1') return -1;
    try {
      return parseBytes(v);
    } catch {
      throw new UsageError(`invalid argument "${v}" for "--${flag}" flag: invalid size: '${v}'`);
    }
  };
  const m = str(args, 'memory');
  if (m !== undefined) {
    r.memory = bytes('memory', m);
    if (r.memory < 6 * 1024 * 1024) throw new UsageError('Minimum memory limit allowed is 6MB');
  }
  const sw = str(args, 'memory-swap');
  if (sw !== undefined) {
    if (r.memory === undefined) throw new UsageError('You should always set the Memory limit when using Memoryswap limit, see usage.');
    r.memorySwap = bytes('memory-swap', sw);
    if (r.memorySwap >= 0 && r.memorySwap < r.memory) throw new UsageError('Minimum memoryswap limit should be larger than memory limit, see usage.');
  }
  const cpus = str(args, 'cpus');
  if (cpus !== undefined) r.cpus = num('cpus', cpus);
  const shares = str(args, 'cpu-shares');
  if (shares !== undefined) r.cpuShares = num('cpu-shares', shares);
  const cpuset = str(args, 'cpuset-cpus');
  if (cpuset !== undefined) r.cpusetCpus = cpuset;
  const pids = str(args, 'pids-limit');
  if (pids !== undefined) r.pidsLimit = num('pids-limit', pids);
  return r;
}

const rm: Command = {
  name: 'rm',
  usage: 'rm [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Remove one or more containers',
  minArgs: 1,
  flags: [
    { name: 'force', short: 'f', type: 'bool', description: 'Force the removal of a running container (uses SIGKILL)' },
    { name: 'volumes', short: 'v', type: 'bool', description: 'Remove anonymous volumes associated with the container' },
  ],
  async run(args, ctx) {
    const store = await ctx.store();
    let failed = 0;
    for (const ref of args.positionals) {
      try {
        await removeContainer(store.root, await findContainer(store.root, ref), { force: bool(args, 'force'), volumes: bool(args, 'volumes') });
        out(ctx, ref);
      } catch (e) {
        ctx.stderr.write(`Error response from daemon: ${(e as Error).message}\n`);
        failed++;
      }
    }
    return failed ? 1 : 0;
  },
};

export const runCommands: Command[] = [run, rm];
