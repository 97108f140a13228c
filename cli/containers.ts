// `ps`, `logs`, `stop`, `kill`, `wait`: thin wrappers over runtime/lifecycle.ts and runtime/logs.ts.
import { bool, list, str, UsageError } from './args.js';
import { out, type Command } from './command.js';
import { formatRows, humanDuration, since, table } from './format.js';
import { findContainer, readContainerConfig } from '../runtime/container.js';
import { getContainer, killContainer, listContainers, signalNumber, stopContainer, waitContainer, type ContainerInfo } from '../runtime/lifecycle.js';
import { readLogs } from '../runtime/logs.js';
import { execInContainer } from '../runtime/exec-container.js';
import { RunError } from '../runtime/run.js';
import { ExitError } from './command.js';
import { readEnvFiles } from './run.js';
import { portsText, pruneStale } from '../runtime/network/index.js';

function statusText(c: ContainerInfo): string {
  if (c.status === 'running') return `Up ${humanDuration(Date.now() - Date.parse(c.state.StartedAt))}`;
  if (c.status === 'created') return 'Created';
  return `Exited (${c.state.ExitCode}) ${since(c.state.FinishedAt)}`;
}

function commandText(c: ContainerInfo, noTrunc: boolean): string {
  let cmd = [c.config.Path, ...c.config.Args].join(' ');
  if (!noTrunc && cmd.length > 20) cmd = cmd.slice(0, 19) + '…';
  return `"${cmd}"`;
}

const STATUSES = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'];

/**
 * `ps --filter key=value`, as Docker: values of one key are alternatives,
 * different keys must all match. Supported: id (prefix), name (a regular
 * expression matched anywhere, as Docker), status, exited (exit code),
 * ancestor (image name[:tag] or ID prefix), network. A status filter also
 * lists stopped containers without -a.
 */
export function containerFilter(specs: string[]): { match(c: ContainerInfo): boolean; showsStopped: boolean } {
  const byKey = new Map<string, string[]>();
  for (const f of specs) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid argument "${f}" for "-f, --filter" flag: bad format of filter (expected name=value)`);
    const key = f.slice(0, eq).toLowerCase();
    const value = f.slice(eq + 1);
    if (!['id', 'name', 'status', 'exited', 'ancestor', 'network'].includes(key)) {
      throw new Error(`invalid filter '${key}' (supported here: id, name, status, exited, ancestor, network)`);
    }
    if (key === 'status' && !STATUSES.includes(value)) throw new Error(`invalid filter 'status=${value}' (one of ${STATUSES.join(', ')})`);
    if (key === 'exited' && !/^-?\d+$/.test(value)) throw new Error(`invalid filter 'exited=${value}': give an exit code`);
    byKey.set(key, [...(byKey.get(key) ?? []), value]);
  }
  const nameRes = new Map<string, RegExp>();
  for (const v of byKey.get('name') ?? []) {
    try {
      nameRes.set(v, new RegExp(v.replace(/^\//, '')));
    } catch {
      throw new Error(`invalid filter 'name=${v}': not a regular expression`);
    }
  }
  const ancestorMatches = (c: ContainerInfo, v: string): boolean => {
    const img = c.config.ImageName;
    const withTag = (r: string) => (/:[^/]+$/.test(r) || r.includes('@') ? r : `${r}:latest`);
    if (withTag(img) === withTag(v) || img === v) return true;
    const hex = v.replace(/^sha256:/, '');
    return /^[0-9a-f]{4,64}$/.test(hex) && c.config.Image.replace(/^sha256:/, '').startsWith(hex);
  };
  const tests: Record<string, (c: ContainerInfo, v: string) => boolean> = {
    id: (c, v) => c.id.startsWith(v),
    name: (c, v) => nameRes.get(v)!.test(c.config.Name),
    status: (c, v) => c.status === v,
    exited: (c, v) => c.status === 'exited' && c.state.ExitCode === Number(v),
    ancestor: ancestorMatches,
    network: (c, v) => c.config.HostConfig.NetworkMode === v || Object.hasOwn(c.config.NetworkingConfig?.EndpointsConfig ?? {}, v),
  };
  return {
    showsStopped: byKey.has('status') || byKey.has('exited'),
    match: (c) => [...byKey].every(([k, vs]) => vs.some((v) => tests[k]!(c, v))),
  };
}

const ps: Command = {
  name: 'ps',
  usage: 'ps [OPTIONS]',
  description: 'List containers',
  maxArgs: 0,
  flags: [
    { name: 'all', short: 'a', type: 'bool', description: 'Show all containers (default shows just running)' },
    { name: 'quiet', short: 'q', type: 'bool', description: 'Only display container IDs' },
    { name: 'no-trunc', type: 'bool', description: "Don't truncate output" },
    { name: 'format', type: 'string', description: "Format output: 'table', 'json', or a template such as '{{.ID}} {{.Names}}'" },
    { name: 'filter', short: 'f', type: 'list', description: 'Filter output based on conditions provided (id, name, status, exited, ancestor, network)' },
    { name: 'last', short: 'n', type: 'string', description: 'Show n last created containers (includes all states)', arg: 'int' },
    { name: 'latest', short: 'l', type: 'bool', description: 'Show the latest created container (includes all states)' },
  ],
  async run(a, ctx) {
    const filter = containerFilter(list(a, 'filter'));
    const lastFlag = str(a, 'last');
    if (lastFlag !== undefined && !/^-?\d+$/.test(lastFlag)) throw new UsageError(`invalid argument "${lastFlag}" for "-n, --last" flag: strconv.ParseInt: parsing "${lastFlag}": invalid syntax`);
    const last = bool(a, 'latest') ? 1 : lastFlag !== undefined ? Number(lastFlag) : -1;
    const store = await ctx.store();
    const noTrunc = bool(a, 'no-trunc');
    // Network leftovers of crashed or killed runs go first, so PORTS is current (runtime/network).
    await pruneStale(store.root).catch(() => {});
    const showAll = bool(a, 'all') || filter.showsStopped || last !== -1;
    // Newest first; -n N keeps the first N that pass the filters (0: no limit), as Docker's daemon.
    let all = (await listContainers(store.root)).filter((c) => (showAll || c.status === 'running') && filter.match(c));
    if (last > 0) all = all.slice(0, last);
    const ports = new Map(await Promise.all(all.map(async (c) => [c.id, c.status === 'running' ? await portsText(store.root, c.id) : ''] as const)));
    const rows = all.map((c) => ({
      ID: noTrunc ? c.id : c.id.slice(0, 12),
      Image: c.config.ImageName,
      Command: commandText(c, noTrunc),
      CreatedAt: c.config.Created,
      RunningFor: since(c.config.Created),
      Ports: ports.get(c.id) ?? '',
      State: c.status,
      Status: statusText(c),
      Names: c.config.Name,
    }));
    if (bool(a, 'quiet')) {
      for (const r of rows) out(ctx, r.ID);
      return 0;
    }
    const format = str(a, 'format');
    if (format && format !== 'table') {
      const text = formatRows(format, rows, { ID: 'CONTAINER ID', Image: 'IMAGE', Command: 'COMMAND', RunningFor: 'CREATED', Status: 'STATUS', Ports: 'PORTS', Names: 'NAMES', State: 'STATE', CreatedAt: 'CREATED AT' });
      if (text) out(ctx, text);
      return 0;
    }
    out(ctx, table(['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'], rows.map((r) => [r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names])));
    return 0;
  },
};

const logs: Command = {
  name: 'logs',
  usage: 'logs [OPTIONS] CONTAINER',
  description: 'Fetch the logs of a container',
  minArgs: 1,
  maxArgs: 1,
  flags: [
    { name: 'follow', short: 'f', type: 'bool', description: 'Follow log output' },
    { name: 'tail', short: 'n', type: 'string', description: 'Number of lines to show from the end of the logs', arg: 'string', default: 'all' },
    { name: 'timestamps', short: 't', type: 'bool', description: 'Show timestamps' },
  ],
  async run(a, ctx) {
    const store = await ctx.store();
    const id = await findContainer(store.root, a.positionals[0]!);
    const config = await readContainerConfig(store.root, id);
    const tailArg = str(a, 'tail') ?? 'all';
    let tail: number | undefined;
    if (tailArg !== 'all') {
      tail = Number(tailArg);
      if (!Number.isInteger(tail)) throw new UsageError(`invalid value for --tail: ${tailArg}`);
      if (tail < 0) tail = undefined;
    }
    const ts = bool(a, 'timestamps');
    if (!config.LogPath) return 0;
    await readLogs(config.LogPath, {
      tail,
      follow: bool(a, 'follow'),
      stillRunning: async () => (await getContainer(store.root, id))?.status === 'running',
      onEntry: (e) => (e.stream === 'stderr' ? ctx.stderr : ctx.stdout).write(ts ? `${e.time} ${e.log}` : e.log),
    });
    return 0;
  },
};

/** Runs fn for each CONTAINER argument, printing the name given on success, Docker's way. */
async function each(ctx: Parameters<Command['run']>[1], refs: string[], fn: (ref: string) => Promise<string | void>): Promise<number> {
  let failed = 0;
  for (const ref of refs) {
    try {
      const line = await fn(ref);
      out(ctx, line ?? ref);
    } catch (e) {
      ctx.stderr.write(`Error response from daemon: ${(e as Error).message}\n`);
      failed++;
    }
  }
  return failed ? 1 : 0;
}

const stop: Command = {
  name: 'stop',
  usage: 'stop [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Stop one or more running containers',
  minArgs: 1,
  flags: [
    { name: 'time', short: 't', type: 'string', description: 'Seconds to wait before killing the container', arg: 'int' },
    { name: 'signal', short: 's', type: 'string', description: 'Signal to send to the container', arg: 'string' },
  ],
  async run(a, ctx) {
    const store = await ctx.store();
    const t = str(a, 'time');
    const secs = t === undefined ? 10 : Number(t);
    if (!Number.isFinite(secs)) throw new UsageError(`invalid argument "${t}" for "-t, --time" flag`);
    const sig = str(a, 'signal');
    if (sig) signalNumber(sig);
    return each(ctx, a.positionals, (ref) => stopContainer(store.root, ref, secs, sig));
  },
};

const kill: Command = {
  name: 'kill',
  usage: 'kill [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Kill one or more running containers',
  minArgs: 1,
  flags: [{ name: 'signal', short: 's', type: 'string', description: 'Signal to send to the container', arg: 'string', default: 'KILL' }],
  async run(a, ctx) {
    const store = await ctx.store();
    const sig = str(a, 'signal') ?? 'KILL';
    signalNumber(sig);
    return each(ctx, a.positionals, (ref) => killContainer(store.root, ref, sig));
  },
};

const wait: Command = {
  name: 'wait',
  usage: 'wait CONTAINER [CONTAINER...]',
  description: 'Block until one or more containers stop, then print their exit codes',
  minArgs: 1,
  flags: [],
  async run(a, ctx) {
    const store = await ctx.store();
    return each(ctx, a.positionals, async (ref) => String((await waitContainer(store.root, ref)).ExitCode));
  },
};

const exec: Command = {
  name: 'exec',
  usage: 'exec [OPTIONS] CONTAINER COMMAND [ARG...]',
  description: 'Execute a command in a running container',
  stopAtPositional: true,
  minArgs: 2,
  flags: [
    { name: 'interactive', short: 'i', type: 'bool', description: 'Keep STDIN open even if not attached' },
    { name: 'tty', short: 't', type: 'bool', description: 'Allocate a pseudo-TTY' },
    { name: 'detach', short: 'd', type: 'bool', description: 'Detached mode: run command in the background' },
    { name: 'env', short: 'e', type: 'list', description: 'Set environment variables', arg: 'list' },
    { name: 'env-file', type: 'list', description: 'Read in a file of environment variables', arg: 'list' },
    { name: 'user', short: 'u', type: 'string', description: 'Username or UID (format: <name|uid>[:<group|gid>])', arg: 'string' },
    { name: 'workdir', short: 'w', type: 'string', description: 'Working directory inside the container', arg: 'string' },
  ],
  async run(a, ctx) {
    const store = await ctx.store();
    const [ref, ...cmd] = a.positionals;
    try {
      return await execInContainer(store.root, ref!, {
        args: cmd,
        env: [...(await readEnvFiles(list(a, 'env-file'))), ...list(a, 'env')],
        user: str(a, 'user'),
        workdir: str(a, 'workdir'),
        interactive: bool(a, 'interactive'),
        tty: bool(a, 'tty'),
        detach: bool(a, 'detach'),
      });
    } catch (e) {
      if (e instanceof RunError) throw new ExitError(e.message, e.exitCode);
      throw e;
    }
  },
};

export const containerCommands: Command[] = [exec, ps, logs, stop, kill, wait];
