// `network create|ls|inspect|rm|connect|disconnect` and `port`: thin wrappers over runtime/network.
import { list, str, bool } from './args.js';
import { out, type Command } from './command.js';
import { formatRows, renderTemplate, table } from './format.js';
import { containerDir, findContainer, isRunning, readContainerConfig, readContainerState } from '../runtime/container.js';
import {
  attachContainer,
  containerEndpoints,
  createNetwork,
  disconnectContainer,
  listNetworks,
  networkInspect,
  NetworkNotFoundError,
  removeNetwork,
  type PortBinding,
} from '../runtime/network/index.js';
import { findInRecords } from '../runtime/network/state.js';
import path from 'node:path';

const create: Command = {
  name: 'create',
  usage: 'create [OPTIONS] NETWORK',
  description: 'Create a network (its bridge device comes up with its first container)',
  minArgs: 1,
  maxArgs: 1,
  flags: [
    { name: 'driver', short: 'd', type: 'string', description: 'Driver to manage the Network', arg: 'string', default: 'bridge' },
    { name: 'subnet', type: 'string', description: 'Subnet in CIDR format that represents a network segment', arg: 'string' },
    { name: 'gateway', type: 'string', description: 'IPv4 Gateway for the master subnet', arg: 'string' },
    { name: 'label', type: 'list', description: 'Set metadata on a network', arg: 'list' },
  ],
  async run(a, ctx) {
    const labels: Record<string, string> = {};
    for (const l of list(a, 'label')) {
      const eq = l.indexOf('=');
      labels[eq === -1 ? l : l.slice(0, eq)] = eq === -1 ? '' : l.slice(eq + 1);
    }
    const rec = await createNetwork((await ctx.store()).root, {
      name: a.positionals[0]!,
      driver: str(a, 'driver'),
      subnet: str(a, 'subnet'),
      gateway: str(a, 'gateway'),
      labels,
    });
    out(ctx, rec.Id);
    return 0;
  },
};

const ls: Command = {
  name: 'ls',
  usage: 'ls [OPTIONS]',
  description: 'List networks',
  maxArgs: 0,
  flags: [
    { name: 'quiet', short: 'q', type: 'bool', description: 'Only display network IDs' },
    { name: 'no-trunc', type: 'bool', description: 'Do not truncate the output' },
    { name: 'format', type: 'string', description: "Format output: 'table', 'json', or a template such as '{{.ID}} {{.Name}}'" },
  ],
  async run(a, ctx) {
    // Sorted by name, as docker network ls.
    const nets = (await listNetworks((await ctx.store()).root)).sort((x, y) => x.Name.localeCompare(y.Name));
    const noTrunc = bool(a, 'no-trunc');
    const rows = nets.map((n) => ({
      ID: noTrunc ? n.Id : n.Id.slice(0, 12),
      Name: n.Name,
      Driver: n.Driver,
      Scope: 'local',
      IPv6: 'false',
      Internal: 'false',
      CreatedAt: n.Created,
      Labels: Object.entries(n.Labels).map(([k, v]) => `${k}=${v}`).join(','),
    }));
    if (bool(a, 'quiet')) {
      for (const r of rows) out(ctx, r.ID);
      return 0;
    }
    const format = str(a, 'format');
    if (format && format !== 'table') {
      const text = formatRows(format, rows, { ID: 'NETWORK ID', Name: 'NAME', Driver: 'DRIVER', Scope: 'SCOPE' });
      if (text) out(ctx, text);
      return 0;
    }
    out(ctx, table(['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'], rows.map((r) => [r.ID, r.Name, r.Driver, r.Scope])));
    return 0;
  },
};

const inspect: Command = {
  name: 'inspect',
  usage: 'inspect [OPTIONS] NETWORK [NETWORK...]',
  description: 'Display detailed information on one or more networks',
  minArgs: 1,
  flags: [{ name: 'format', short: 'f', type: 'string', description: 'Format output using a template', arg: 'string' }],
  async run(a, ctx) {
    const root = (await ctx.store()).root;
    const nets = await listNetworks(root);
    const found: object[] = [];
    let failed = 0;
    for (const ref of a.positionals) {
      try {
        found.push(networkInspect(root, findInRecords(nets, ref)));
      } catch (e) {
        if (!(e instanceof NetworkNotFoundError)) throw e;
        ctx.stderr.write(`Error response from daemon: ${e.message}\n`);
        failed++;
      }
    }
    const format = str(a, 'format');
    if (format) for (const n of found) out(ctx, renderTemplate(format, n as Record<string, unknown>));
    else out(ctx, JSON.stringify(found, null, 4));
    return failed ? 1 : 0;
  },
};

const rm: Command = {
  name: 'rm',
  usage: 'rm NETWORK [NETWORK...]',
  description: 'Remove one or more networks',
  minArgs: 1,
  flags: [],
  async run(a, ctx) {
    const root = (await ctx.store()).root;
    let failed = 0;
    for (const ref of a.positionals) {
      try {
        await removeNetwork(root, ref);
        out(ctx, ref);
      } catch (e) {
        ctx.stderr.write(`Error response from daemon: ${(e as Error).message}\n`);
        failed++;
      }
    }
    return failed ? 1 : 0;
  },
};

const connect: Command = {
  name: 'connect',
  usage: 'connect [OPTIONS] NETWORK CONTAINER',
  description: 'Connect a running container to a network',
  minArgs: 2,
  maxArgs: 2,
  flags: [
    { name: 'ip', type: 'string', description: 'IPv4 address (e.g., "172.30.100.104")', arg: 'string' },
    { name: 'alias', type: 'list', description: 'Add network-scoped alias for the container', arg: 'strings' },
  ],
  async run(a, ctx) {
    const root = (await ctx.store()).root;
    const [network, ref] = a.positionals as [string, string];
    const id = await findContainer(root, ref);
    const config = await readContainerConfig(root, id);
    const state = await readContainerState(root, id);
    const mode = config.HostConfig.NetworkMode;
    if (mode === 'host' || mode === 'none') throw new Error(`container sharing network namespace with another container or host cannot be connected to any other network (network mode ${mode})`);
    // No `start` in tsbuild yet: a stopped container would never use the connection.
    if (!state || !isRunning(state)) throw new Error(`container ${ref} is not running (tsbuild connects running containers only)`);
    await attachContainer(root, {
      containerId: id,
      name: config.Name,
      hostname: config.Config.Hostname,
      hostsPath: path.join(containerDir(root, id), 'hosts'),
      netnsPath: `/proc/${state.Pid}/ns/net`,
      networks: [{ network, ip: str(a, 'ip'), aliases: list(a, 'alias') }],
      owner: { Pid: state.MonitorPid ?? state.Pid, StartTime: state.MonitorStartTime ?? state.PidStartTime },
    });
    return 0;
  },
};

const disconnect: Command = {
  name: 'disconnect',
  usage: 'disconnect [OPTIONS] NETWORK CONTAINER',
  description: 'Disconnect a container from a network',
  minArgs: 2,
  maxArgs: 2,
  flags: [{ name: 'force', short: 'f', type: 'bool', description: 'Force the container to disconnect from a network' }],
  async run(a, ctx) {
    const root = (await ctx.store()).root;
    const [network, ref] = a.positionals as [string, string];
    let id: string;
    try {
      id = await findContainer(root, ref);
    } catch (e) {
      if (!bool(a, 'force')) throw e;
      // -f: the container may be gone; a full id still names its endpoint.
      id = ref;
    }
    await disconnectContainer(root, network, id);
    return 0;
  },
};

const network: Command = {
  name: 'network',
  usage: 'network COMMAND',
  description: 'Manage networks',
  flags: [],
  subcommands: [connect, create, disconnect, inspect, ls, rm],
  run: async () => 1,
};

/** `docker port` lines for bindings, optionally only PRIVATE_PORT[/PROTO]. */
export function portLines(bindings: PortBinding[], filter?: string): string[] {
  if (!filter) return bindings.map((b) => `${b.containerPort}/${b.proto} -> ${b.hostIp}:${b.hostPort}`);
  const [p, proto = 'tcp'] = filter.split('/');
  return bindings.filter((b) => String(b.containerPort) === p && b.proto === proto).map((b) => `${b.hostIp}:${b.hostPort}`);
}

const port: Command = {
  name: 'port',
  usage: 'port CONTAINER [PRIVATE_PORT[/PROTO]]',
  description: 'List port mappings or a specific mapping for the container',
  minArgs: 1,
  maxArgs: 2,
  flags: [],
  async run(a, ctx) {
    const root = (await ctx.store()).root;
    const [ref, filter] = a.positionals as [string, string | undefined];
    const id = await findContainer(root, ref);
    const bindings = (await containerEndpoints(root, id)).flatMap((e) => e.endpoint.Ports);
    const lines = portLines(bindings, filter);
    if (filter && !lines.length) throw new Error(`No public port '${filter.includes('/') ? filter : `${filter}/tcp`}' published for ${ref}`);
    for (const l of lines) out(ctx, l);
    return 0;
  },
};

export const networkCommands: Command[] = [network, port];
