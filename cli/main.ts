#!/usr/bin/env node
// Entry point: global flags, then dispatch to a command. `tsbuild -t app .`
// and `tsbuild .` mean `tsbuild build ...`, as the tool's short form.
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { helpText, parseArgs, UsageError } from './args.js';
import { ExitError, type Command, type Context } from './command.js';
import type { Store } from '../image/store.js';
import { trace, traceStart } from '../runtime/trace.js';
// Command groups load on demand: a command pays only for the modules it
// uses (zod, koffi, undici... cost 30-150 ms each to load; `tsbuild run`
// should not pay for the registry client).
const groups = {
  images: async () => (await import('./images.js')).imageCommands,
  archive: async () => (await import('./archive.js')).archiveCommands,
  run: async () => (await import('./run.js')).runCommands,
  containers: async () => (await import('./containers.js')).containerCommands,
  volumes: async () => (await import('./volumes.js')).volumeCommands,
  network: async () => (await import('./network.js')).networkCommands,
  registry: async () => (await import('./registry.js')).registryCommands,
  build: async () => (await import('./build.js')).buildCommands,
} satisfies Record<string, () => Promise<Command[]>>;

/** Which group holds each command. */
const commandGroups: Record<string, keyof typeof groups> = {
  import: 'images',
  commit: 'images',
  images: 'images',
  tag: 'images',
  rmi: 'images',
  inspect: 'images',
  history: 'images',
  prune: 'images',
  save: 'archive',
  load: 'archive',
  run: 'run',
  rm: 'run',
  exec: 'containers',
  ps: 'containers',
  logs: 'containers',
  stop: 'containers',
  kill: 'containers',
  wait: 'containers',
  volume: 'volumes',
  network: 'network',
  port: 'network',
  pull: 'registry',
  push: 'registry',
  login: 'registry',
  logout: 'registry',
  copy: 'registry',
  build: 'build',
};

async function findCommand(name: string): Promise<Command | undefined> {
  const g = Object.hasOwn(commandGroups, name) ? commandGroups[name] : undefined;
  return g ? (await groups[g]()).find((c) => c.name === name) : undefined;
}

async function mainHelp(): Promise<string> {
  const commands = (await Promise.all(Object.values(groups).map((g) => g()))).flat();
  const lines = ['Usage:  tsbuild [OPTIONS] COMMAND', '', 'A daemonless container image builder, registry client and runtime', '', 'Commands:'];
  for (const c of [...commands].sort((a, b) => a.name.localeCompare(b.name))) lines.push(`  ${c.name.padEnd(10)} ${c.description}`);
  lines.push('', 'Global Options:', '      --root dir   Root of tsbuild state (default /var/lib/tsbuild, or $TSBUILD_ROOT)', '', "Run 'tsbuild COMMAND --help' for more information on a command.");
  return lines.join('\n');
}

export async function main(argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream } = process): Promise<number> {
  // Global flags come before the command name.
  let root: string | undefined;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--root') root = argv[++i];
    else if (a.startsWith('--root=')) root = a.slice('--root='.length);
    else if (a === '-h' || a === '--help') {
      io.stdout.write((await mainHelp()) + '\n');
      return 0;
    } else if (a === '-v' || a === '--version') {
      io.stdout.write('tsbuild version 0.1.0\n');
      return 0;
    } else break;
  }
  const rest = argv.slice(i);
  if (rest.length === 0) {
    io.stderr.write((await mainHelp()) + '\n');
    return 1;
  }
  let name = rest[0]!;
  let cmdArgs = rest.slice(1);
  let cmd = await findCommand(name);
  trace('cli:command-loaded');
  if (!cmd && (name.startsWith('-') || name === '.' || name.includes('/'))) {
    cmd = await findCommand('build');
    cmdArgs = rest;
    name = 'build';
  }
  if (!cmd) {
    io.stderr.write(`tsbuild: '${name}' is not a tsbuild command.\nSee 'tsbuild --help'\n`);
    return 1;
  }
  // A group (`volume ls`): the next argument names the subcommand.
  if (cmd.subcommands) {
    const group = cmd;
    const subName = cmdArgs[0];
    const sub = group.subcommands!.find((c) => c.name === subName);
    if (!sub) {
      const lines = [`Usage:  tsbuild ${group.usage}`, '', group.description, '', 'Commands:'];
      for (const c of group.subcommands!) lines.push(`  ${c.name.padEnd(10)} ${c.description}`);
      lines.push('', `Run 'tsbuild ${group.name} COMMAND --help' for more information on a command.`);
      const help = subName === undefined || subName === '--help' || subName === '-h';
      if (!help) io.stderr.write(`tsbuild: '${subName}' is not a tsbuild ${group.name} command.\n`);
      (help ? io.stdout : io.stderr).write(lines.join('\n') + '\n');
      return help ? 0 : 1;
    }
    cmd = { ...sub, name: `${group.name} ${sub.name}`, usage: `${group.name} ${sub.usage}` };
    cmdArgs = cmdArgs.slice(1);
  }
  let storePromise: Promise<Store> | undefined;
  const ctx: Context = {
    root: root ? path.resolve(root) : undefined,
    stdout: io.stdout,
    stderr: io.stderr,
    store: () => (storePromise ??= import('../image/store.js').then((m) => m.Store.open(root))),
  };
  try {
    const parsed = parseArgs(cmdArgs, [...cmd.flags, { name: 'help', type: 'bool', description: 'Print usage', hidden: true }], {
      command: cmd.name,
      stopAtPositional: cmd.stopAtPositional,
    });
    if (parsed.flags.help === true) {
      io.stdout.write(helpText(cmd.usage, cmd.description, cmd.flags) + '\n');
      return 0;
    }
    const n = parsed.positionals.length;
    if ((cmd.minArgs !== undefined && n < cmd.minArgs) || (cmd.maxArgs !== undefined && n > cmd.maxArgs)) {
      const plural = (k: number) => `${k} argument${k === 1 ? '' : 's'}`;
      const min = cmd.minArgs ?? 0;
      const want =
        cmd.maxArgs === undefined
          ? `at least ${plural(min)}`
          : min === cmd.maxArgs
            ? `exactly ${plural(min)}`
            : min === 0
              ? `at most ${plural(cmd.maxArgs)}`
              : `at least ${min} and at most ${plural(cmd.maxArgs)}`;
      throw new UsageError(`"tsbuild ${cmd.name}" requires ${want}.`);
    }
    return await cmd.run(parsed, ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`${e.message}\nSee 'tsbuild ${cmd.name} --help'.\n\nUsage:  tsbuild ${cmd.usage}\n`);
      return 125;
    }
    const err = e as Error;
    io.stderr.write(`Error: ${err.message}\n`);
    if (process.env.TSBUILD_DEBUG) io.stderr.write(`${err.stack}\n`);
    return e instanceof ExitError ? e.exitCode : 1;
  }
}

// Run when executed directly (not when imported by tests).
function invokedDirectly(): boolean {
  if (!process.argv[1]) return false;
  try {
    return pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url;
  } catch {
    return false;
  }
}
if (invokedDirectly()) {
  // bin/tsbuild passes `--` first so Node 20 leaves our flags alone (see there).
  traceStart('cli');
  process.on('exit', () => trace('cli:exit'));
  const argv = process.argv.slice(2);
  main(argv[0] === '--' ? argv.slice(1) : argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`Error: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
