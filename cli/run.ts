// `run` and `rm`: thin wrappers over runtime/.
import { bool, list, str, UsageError } from './args.js';
import { ExitError, out, type Command } from './command.js';
import { RunError, runContainer } from '../runtime/run.js';
import { findContainer, removeContainer } from '../runtime/container.js';
import type { NetworkMode } from '../runtime/spec.js';

const run: Command = {
  name: 'run',
  usage: 'run [OPTIONS] IMAGE [COMMAND] [ARG...]',
  description: 'Create and run a new container from an image',
  stopAtPositional: true,
  minArgs: 1,
  flags: [
    { name: 'rm', type: 'bool', description: 'Automatically remove the container when it exits' },
    { name: 'name', type: 'string', description: 'Assign a name to the container', arg: 'string' },
    { name: 'env', short: 'e', type: 'list', description: 'Set environment variables', arg: 'list' },
    { name: 'workdir', short: 'w', type: 'string', description: 'Working directory inside the container', arg: 'string' },
    { name: 'hostname', short: 'h', type: 'string', description: 'Container host name', arg: 'string' },
    { name: 'entrypoint', type: 'string', description: 'Overwrite the default ENTRYPOINT of the image', arg: 'string' },
    { name: 'user', short: 'u', type: 'string', description: 'Username or UID (format: <name|uid>[:<group|gid>])', arg: 'string' },
    { name: 'cap-add', type: 'list', description: 'Add Linux capabilities', arg: 'list' },
    { name: 'cap-drop', type: 'list', description: 'Drop Linux capabilities', arg: 'list' },
    { name: 'network', type: 'string', description: 'Connect a container to a network (none, host)', arg: 'network', default: 'none' },
  ],
  async run(args, ctx) {
    const network = str(args, 'network') ?? 'none';
    if (network !== 'none' && network !== 'host') throw new UsageError(`network "${network}" is not supported yet (use none or host)`);
    const [image, ...cmd] = args.positionals;
    try {
      return await runContainer(await ctx.store(), {
        image: image!,
        args: cmd,
        rm: bool(args, 'rm'),
        name: str(args, 'name'),
        env: list(args, 'env'),
        workdir: str(args, 'workdir'),
        hostname: str(args, 'hostname'),
        entrypoint: str(args, 'entrypoint'),
        user: str(args, 'user'),
        network: network as NetworkMode,
        capAdd: list(args, 'cap-add'),
        capDrop: list(args, 'cap-drop'),
      });
    } catch (e) {
      if (e instanceof RunError) throw new ExitError(e.message, e.exitCode);
      throw new ExitError((e as Error).message, 125);
    }
  },
};

const rm: Command = {
  name: 'rm',
  usage: 'rm [OPTIONS] CONTAINER [CONTAINER...]',
  description: 'Remove one or more containers',
  minArgs: 1,
  flags: [{ name: 'force', short: 'f', type: 'bool', description: 'Force the removal of a running container (uses SIGKILL)' }],
  async run(args, ctx) {
    const store = await ctx.store();
    let failed = 0;
    for (const ref of args.positionals) {
      try {
        await removeContainer(store.root, await findContainer(store.root, ref), { force: bool(args, 'force') });
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
