#!/usr/bin/env node
// Entry point: global flags, then dispatch to a command. `tsbuild -t app .`
// and `tsbuild .` mean `tsbuild build ...`, as the tool's short form.
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { helpText, parseArgs, UsageError } from './args.js';
import { ExitError, type Command, type Context } from './command.js';
import { Store, resolveRoot } from '../image/store.js';
import { imageCommands } from './images.js';
import { archiveCommands } from './archive.js';
import { runCommands } from './run.js';
import { containerCommands } from './containers.js';
import { buildCommands } from './build.js';

const commands: Command[] = [...imageCommands, ...archiveCommands, ...runCommands, ...containerCommands, ...buildCommands];

function mainHelp(): string {
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
      io.stdout.write(mainHelp() + '\n');
      return 0;
    } else if (a === '-v' || a === '--version') {
      io.stdout.write('tsbuild version 0.1.0\n');
      return 0;
    } else break;
  }
  const rest = argv.slice(i);
  if (rest.length === 0) {
    io.stderr.write(mainHelp() + '\n');
    return 1;
  }
  let name = rest[0]!;
  let cmdArgs = rest.slice(1);
  let cmd = commands.find((c) => c.name === name);
  if (!cmd && (name.startsWith('-') || name === '.' || name.includes('/'))) {
    cmd = commands.find((c) => c.name === 'build');
    cmdArgs = rest;
    name = 'build';
  }
  if (!cmd) {
    io.stderr.write(`tsbuild: '${name}' is not a tsbuild command.\nSee 'tsbuild --help'\n`);
    return 1;
  }
  let storePromise: Promise<Store> | undefined;
  const ctx: Context = {
    root: root ? resolveRoot(root) : undefined,
    stdout: io.stdout,
    stderr: io.stderr,
    store: () => (storePromise ??= Store.open(root)),
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
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`Error: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
