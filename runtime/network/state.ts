// Network records on disk, and the lock that guards them and the host's
// network state.
//
//   <root>/networks/<id>.json    one per network: definition (name, subnet,
//                                gateway, bridge device) and its endpoints
//                                (container -> address, MAC, veth, aliases,
//                                published ports, owning process). The
//                                endpoints are the address allocations.
//
// Every change is a read-modify-write under ONE host-wide flock
// (/run/tsbuild/network.lock), not a per-root one: bridge names, subnets,
// host ports and iptables chains are shared by every tsbuild root on the
// machine (tests run several at once), so their checks and changes must be
// serialized across roots too. Records are replaced atomically
// (writeJsonAtomic), so readers without the lock see old or new, never torn.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeJsonAtomic } from '../../image/atomic.js';
import { withLock } from '../../image/lock.js';
import type { PortBinding } from './ports.js';

export const HOST_LOCK = '/run/tsbuild/network.lock';

export interface Owner {
  /** The process that supervises the container (tsbuild run, or its monitor); the endpoint is stale once it is gone. */
  Pid: number;
  StartTime: number;
}

export interface Endpoint {
  ContainerId: string;
  /** Container name (resolvable by peers on user-defined networks). */
  Name: string;
  Hostname: string;
  EndpointID: string;
  IPAddress: string;
  MacAddress: string;
  /** Host-side veth name. */
  Veth: string;
  /** Interface name inside the container (eth0, eth1, ...). */
  IfName: string;
  Aliases: string[];
  /** Published ports whose DNAT rules point to this endpoint. */
  Ports: PortBinding[];
  /** containers/<id>/hosts on the host, rewritten in place when peers come and go. */
  HostsPath?: string;
  Owner: Owner;
}

export interface NetworkRecord {
  Id: string;
  Name: string;
  Created: string;
  Driver: 'bridge' | 'host' | 'null';
  /** bridge, host, none: created by tsbuild, cannot be removed. */
  Predefined?: boolean;
  /** Bridge driver only. */
  Subnet?: string;
  Gateway?: string;
  /** Linux bridge device; exists only while endpoints are attached (README: "lazy host state"). */
  Bridge?: string;
  /** Subnet/gateway/bridge chosen by tsbuild, so they may move to free ones while nothing is attached. */
  AutoSubnet?: boolean;
  AutoBridge?: boolean;
  Labels: Record<string, string>;
  /** Allocation cursor: the next address tried (Docker-like sequential allocation, so a freed address is not reused at once). */
  NextIp?: number;
  Endpoints: Record<string, Endpoint>;
}

export function networksDir(root: string): string {
  return path.join(root, 'networks');
}

export function networkFile(root: string, id: string): string {
  return path.join(networksDir(root), `${id}.json`);
}

export function newNetworkId(): string {
  return randomBytes(32).toString('hex');
}

export async function listNetworkRecords(root: string): Promise<NetworkRecord[]> {
  let names: string[];
  try {
    names = await fsp.readdir(networksDir(root));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: NetworkRecord[] = [];
  for (const n of names) {
    if (!/^[0-9a-f]{64}\.json$/.test(n)) continue;
    try {
      out.push(JSON.parse(await fsp.readFile(path.join(networksDir(root), n), 'utf8')) as NetworkRecord);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed meanwhile
      throw new Error(`reading network record ${path.join(networksDir(root), n)}: ${(e as Error).message} (remove the file if the network is not needed)`);
    }
  }
  return out.sort((a, b) => a.Created.localeCompare(b.Created) || a.Name.localeCompare(b.Name));
}

export async function writeNetworkRecord(root: string, rec: NetworkRecord): Promise<void> {
  await fsp.mkdir(networksDir(root), { recursive: true, mode: 0o700 });
  await writeJsonAtomic(networkFile(root, rec.Id), rec, 0o600);
}

export async function deleteNetworkRecord(root: string, id: string): Promise<void> {
  await fsp.rm(networkFile(root, id), { force: true });
}

/** Runs fn holding the host-wide network lock (see the header). */
export function withNetworkLock<T>(fn: () => Promise<T>): Promise<T> {
  return withLock(HOST_LOCK, 'exclusive', fn);
}

/** Finds a network by full id, name or unique id prefix (Docker's order). */
export function findInRecords(records: NetworkRecord[], ref: string): NetworkRecord {
  const byId = records.find((r) => r.Id === ref);
  if (byId) return byId;
  const byName = records.find((r) => r.Name === ref);
  if (byName) return byName;
  const byPrefix = /^[0-9a-f]+$/.test(ref) ? records.filter((r) => r.Id.startsWith(ref)) : [];
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) throw new NetworkNotFoundError(`network ${ref} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
  throw new NetworkNotFoundError(`network ${ref} not found`);
}

export class NetworkNotFoundError extends Error {}
