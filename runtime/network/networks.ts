// Network management: the predefined networks (bridge, host, none), and
// user-defined bridge networks (create, rm, ls, inspect). Records are in
// state.ts; a network's host state (bridge device, rules) exists only while
// containers are attached (bridge.ts).
import { randomBytes } from 'node:crypto';
import { formatIPv4, formatSubnet, isUsableHost, overlaps, parseIPv4, parseSubnet, type Subnet } from './ipv4.js';
import { DEFAULT_BRIDGE, deactivate, isActive, linkExists, pickSubnet, usedByHost } from './bridge.js';
import {
  deleteNetworkRecord,
  findInRecords,
  listNetworkRecords,
  newNetworkId,
  withNetworkLock,
  writeNetworkRecord,
  type NetworkRecord,
} from './state.js';
import { pruneStaleLocked } from './endpoints.js';

export const PREDEFINED = ['bridge', 'host', 'none'] as const;
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Creates the predefined networks' records where missing (caller holds the lock); returns all records. */
export async function ensurePredefinedLocked(root: string): Promise<NetworkRecord[]> {
  const records = await listNetworkRecords(root);
  const now = new Date().toISOString();
  for (const name of PREDEFINED) {
    if (records.some((r) => r.Name === name)) continue;
    const rec: NetworkRecord = {
      Id: newNetworkId(),
      Name: name,
      Created: now,
      Driver: name === 'bridge' ? 'bridge' : name === 'host' ? 'host' : 'null',
      Predefined: true,
      Labels: {},
      Endpoints: {},
    };
    if (name === 'bridge') {
      const taken = [...(await usedByHost()).map((u) => u.subnet), ...subnetsOf(records)];
      const s = pickSubnet(taken);
      if (!s) throw new Error('no free subnet for the default bridge network in the default pools');
      rec.Subnet = formatSubnet(s);
      rec.Gateway = formatIPv4(s.base + 1);
      rec.Bridge = DEFAULT_BRIDGE;
      rec.AutoSubnet = true;
      rec.AutoBridge = true;
    }
    await writeNetworkRecord(root, rec);
    records.push(rec);
  }
  return records;
}

function subnetsOf(records: NetworkRecord[]): Subnet[] {
  return records.filter((r) => r.Subnet).map((r) => parseSubnet(r.Subnet!));
}

export interface CreateNetworkOptions {
  name: string;
  driver?: string;
  subnet?: string;
  gateway?: string;
  labels?: Record<string, string>;
}

/** `network create`: a user-defined bridge network; returns its record. Host state comes with its first container. */
export async function createNetwork(root: string, opts: CreateNetworkOptions): Promise<NetworkRecord> {
  const driver = opts.driver ?? 'bridge';
  if (driver !== 'bridge') throw new Error(`plugin "${driver}" not found (tsbuild supports the bridge driver only)`);
  if (!NAME_RE.test(opts.name)) throw new Error(`invalid network name "${opts.name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  if (opts.gateway && !opts.subnet) throw new Error('--gateway needs --subnet (the gateway must lie in a subnet you choose)');
  return withNetworkLock(async () => {
    const records = await ensurePredefinedLocked(root);
    if (records.some((r) => r.Name === opts.name)) throw new Error(`network with name ${opts.name} already exists`);
    let subnet: Subnet;
    let auto = false;
    if (opts.subnet) {
      subnet = parseSubnet(opts.subnet);
      if (subnet.prefix > 30) throw new Error(`invalid subnet ${opts.subnet}: too small (at most /30)`);
      const other = records.find((r) => r.Subnet && overlaps(parseSubnet(r.Subnet), subnet));
      if (other) throw new Error(`invalid pool request: Pool overlaps with other one on this address space (network ${other.Name}, ${other.Subnet})`);
      const host = (await usedByHost()).find((u) => overlaps(u.subnet, subnet));
      if (host) throw new Error(`subnet ${opts.subnet} overlaps the host's ${host.what}: choose another --subnet`);
    } else {
      const s = pickSubnet([...(await usedByHost()).map((u) => u.subnet), ...subnetsOf(records)]);
      if (!s) throw new Error('could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network: use --subnet');
      subnet = s;
      auto = true;
    }
    let gateway = subnet.base + 1;
    if (opts.gateway) {
      gateway = parseIPv4(opts.gateway);
      if (!isUsableHost(subnet, gateway)) throw new Error(`invalid gateway ${opts.gateway}: not a usable address of ${formatSubnet(subnet)}`);
    }
    const id = newNetworkId();
    let bridge = `tsb-${id.slice(0, 8)}`;
    while (linkExists(bridge) || records.some((r) => r.Bridge === bridge)) bridge = `tsb-${randomBytes(4).toString('hex')}`;
    const rec: NetworkRecord = {
      Id: id,
      Name: opts.name,
      Created: new Date().toISOString(),
      Driver: 'bridge',
      Subnet: formatSubnet(subnet),
      Gateway: formatIPv4(gateway),
      Bridge: bridge,
      AutoSubnet: auto,
      AutoBridge: true,
      Labels: opts.labels ?? {},
      Endpoints: {},
    };
    await writeNetworkRecord(root, rec);
    return rec;
  });
}

/** `network rm`: refuses predefined networks and networks with attached containers. */
export async function removeNetwork(root: string, ref: string): Promise<NetworkRecord> {
  return withNetworkLock(async () => {
    await ensurePredefinedLocked(root);
    await pruneStaleLocked(root);
    const rec = findInRecords(await listNetworkRecords(root), ref);
    if (rec.Predefined) throw new Error(`${rec.Name} is a pre-defined network and cannot be removed`);
    const n = Object.keys(rec.Endpoints).length;
    if (n) throw new Error(`error while removing network: network ${rec.Name} id ${rec.Id} has active endpoints (${n} container${n > 1 ? 's' : ''}: ${Object.values(rec.Endpoints).map((e) => e.Name).join(', ')})`);
    if (isActive(root, rec)) await deactivate(root, rec);
    await deleteNetworkRecord(root, rec.Id);
    return rec;
  });
}

/** All networks (predefined first created), stale endpoints pruned. */
export async function listNetworks(root: string): Promise<NetworkRecord[]> {
  return withNetworkLock(async () => {
    await ensurePredefinedLocked(root);
    await pruneStaleLocked(root);
    return listNetworkRecords(root);
  });
}

export async function findNetwork(root: string, ref: string): Promise<NetworkRecord> {
  return findInRecords(await listNetworks(root), ref);
}

/** `network inspect` in Docker's shape. */
export function networkInspect(root: string, rec: NetworkRecord): object {
  return {
    Name: rec.Name,
    Id: rec.Id,
    Created: rec.Created,
    Scope: 'local',
    Driver: rec.Driver,
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: {}, Config: rec.Subnet ? [{ Subnet: rec.Subnet, Gateway: rec.Gateway }] : [] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigOnly: false,
    Containers: Object.fromEntries(
      Object.values(rec.Endpoints).map((e) => [
        e.ContainerId,
        { Name: e.Name, EndpointID: e.EndpointID, MacAddress: e.MacAddress, IPv4Address: `${e.IPAddress}/${rec.Subnet!.split('/')[1]}`, IPv6Address: '' },
      ]),
    ),
    Options: rec.Bridge ? { 'com.docker.network.bridge.name': rec.Bridge } : {},
    Labels: rec.Labels,
    // tsbuild's own: whether the bridge device and rules exist right now (only while containers are attached).
    Active: rec.Driver === 'bridge' ? isActive(root, rec) : undefined,
  };
}
