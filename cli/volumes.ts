// `volume create | ls | inspect | rm | prune`: thin wrappers over runtime/volumes.ts.
import { bool, list, str } from './args.js';
import { out, type Command } from './command.js';
import { formatRows, table } from './format.js';
import { listContainerIds, readContainerConfig } from '../runtime/container.js';
import { createVolume, listVolumes, readVolume, removeVolume, type VolumeRecord } from '../runtime/volumes.js';

/** Volume name -> ids (12 hex) of containers whose config mounts it. */
async function volumeUsers(root: string): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  for (const id of await listContainerIds(root)) {
    const c = await readContainerConfig(root, id).catch(() => undefined);
    for (const m of c?.Mounts ?? []) {
      if (m.Type === 'volume' && m.Name) users.set(m.Name, [...(users.get(m.Name) ?? []), id.slice(0, 12)]);
    }
  }
  return users;
}

const create: Command = {
  name: 'create',
  usage: 'create [OPTIONS] [VOLUME]',
  description: 'Create a volume',
  maxArgs: 1,
  flags: [{ name: 'label', type: 'list', description: 'Set metadata for a volume', arg: 'list' }],
  async run(a, ctx) {
    const labels = Object.fromEntries(list(a, 'label').map((l) => [l.split('=')[0]!, l.split('=').slice(1).join('=')]));
    const v = await createVolume(await ctx.store(), a.positionals[0], { labels });
    out(ctx, v.Name);
    return 0;
  },
};

const ls: Command = {
  name: 'ls',
  usage: 'ls [OPTIONS]',
  description: 'List volumes',
  maxArgs: 0,
  flags: [
    { name: 'quiet', short: 'q', type: 'bool', description: 'Only display volume names' },
    { name: 'format', type: 'string', description: "Format output: 'table', 'json', or a template" },
  ],
  async run(a, ctx) {
    const store = await ctx.store();
    const vols = await listVolumes(store.root);
    if (bool(a, 'quiet')) {
      for (const v of vols) out(ctx, v.Name);
      return 0;
    }
    const rows = vols.map((v) => ({ Driver: v.Driver, Name: v.Name, Mountpoint: v.Mountpoint, Scope: v.Scope, CreatedAt: v.CreatedAt }));
    const fmt = str(a, 'format');
    if (fmt && fmt !== 'table') {
      const text = formatRows(fmt, rows, { Driver: 'DRIVER', Name: 'VOLUME NAME', Mountpoint: 'MOUNTPOINT', Scope: 'SCOPE', CreatedAt: 'CREATED' });
      if (text) out(ctx, text);
      return 0;
    }
    out(ctx, table(['DRIVER', 'VOLUME NAME'], rows.map((r) => [r.Driver, r.Name])));
    return 0;
  },
};

const inspect: Command = {
  name: 'inspect',
  usage: 'inspect VOLUME [VOLUME...]',
  description: 'Display detailed information on one or more volumes',
  minArgs: 1,
  flags: [],
  async run(a, ctx) {
    const store = await ctx.store();
    const found: VolumeRecord[] = [];
    let failed = 0;
    for (const n of a.positionals) {
      const v = await readVolume(store.root, n);
      if (v) found.push(v);
      else {
        ctx.stderr.write(`Error response from daemon: get ${n}: no such volume\n`);
        failed++;
      }
    }
    out(ctx, JSON.stringify(found, null, 4));
    return failed ? 1 : 0;
  },
};

const rm: Command = {
  name: 'rm',
  usage: 'rm [OPTIONS] VOLUME [VOLUME...]',
  description: 'Remove one or more volumes',
  minArgs: 1,
  flags: [{ name: 'force', short: 'f', type: 'bool', description: 'Do not error when the volume does not exist' }],
  async run(a, ctx) {
    const store = await ctx.store();
    const users = await volumeUsers(store.root);
    let failed = 0;
    for (const n of a.positionals) {
      try {
        if (bool(a, 'force') && !(await readVolume(store.root, n))) continue;
        await removeVolume(store, n, users.get(n) ?? []);
        out(ctx, n);
      } catch (e) {
        ctx.stderr.write(`Error response from daemon: ${(e as Error).message}\n`);
        failed++;
      }
    }
    return failed ? 1 : 0;
  },
};

const prune: Command = {
  name: 'prune',
  usage: 'prune [OPTIONS]',
  description: 'Remove unused anonymous volumes (all unused volumes with -a)',
  maxArgs: 0,
  flags: [
    { name: 'all', short: 'a', type: 'bool', description: 'Remove all unused volumes, not just anonymous ones' },
    { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
  ],
  async run(a, ctx) {
    const store = await ctx.store();
    const users = await volumeUsers(store.root);
    const removed: string[] = [];
    for (const v of await listVolumes(store.root)) {
      if (users.has(v.Name) || (!v.Anonymous && !bool(a, 'all'))) continue;
      await removeVolume(store, v.Name, []);
      removed.push(v.Name);
    }
    if (removed.length) out(ctx, ['Deleted Volumes:', ...removed, ''].join('\n'));
    out(ctx, `Total reclaimed space: ${removed.length} volume${removed.length === 1 ? '' : 's'}`);
    return 0;
  },
};

export const volumeCommands: Command[] = [
  { name: 'volume', usage: 'volume COMMAND', description: 'Manage volumes', flags: [], subcommands: [create, ls, inspect, rm, prune], run: async () => 1 },
];
