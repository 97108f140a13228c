// Endpoints: a container's attachment to a bridge network.
//
// attach (stage 0, once the container's init pid, hence its network
// namespace, is known, and before the user's program is exec'd):
//   under the host network lock (state.ts):
//   1. prune stale endpoints (their supervising process is gone: crash, SIGKILL)
//   2. reserve the published host ports (ports.ts)
//   3. per network: activate it if it has no endpoint yet (bridge.ts), allocate
//      an address, record the endpoint: the record is written BEFORE any host
//      state is made for it, so whatever a crash leaves behind is findable
//   4. veth pair: host end on the bridge (hairpin on), the other end created
//      directly in the container's namespace as eth0 (eth1, ...) with a MAC
//      derived from the address; inside: lo up, address, default route via
//      the gateway (first network only)
//   5. DNAT rules for the published ports (first network's address)
//   6. rewrite /etc/hosts of every container on the networks touched
//   Any failure undoes what was done (the same idempotent teardown).
//
// teardown (container exit, rm, disconnect, or a later tsbuild finding it
// stale): delete the host veth (the peer goes with it; if the namespace died
// first both are gone already), delete the rules tagged with the endpoint,
// drop the record, deactivate the network when it was the last endpoint,
// rewrite the peers' /etc/hosts. Every step tolerates "already gone".
import { randomBytes } from 'node:crypto';
import { procStartTime } from '../container.js';
import { activate, deactivate, defaultMtu, deleteBridge, isActive, tsbuildLinks } from './bridge.js';
import { ip, ipBatch, isNoSuchDevice } from './exec.js';
import { hostsContent, rewriteInPlace, type HostsEntry } from './hosts.js';
import { formatIPv4, isUsableHost, macFromIPv4, parseIPv4, parseSubnet, subnetSize } from './ipv4.js';
import { deleteTagged, endpointTag, networkTag, portRules, removeBaseChainsIfUnused, restore, type PortRule } from './iptables.js';
import { reservePorts, type PortBinding, type PortSpec, type Reservation } from './ports.js';
import { ensurePredefinedLocked } from './networks.js';
import { findInRecords, listNetworkRecords, networkFile, withNetworkLock, writeNetworkRecord, type Endpoint, type NetworkRecord, type Owner } from './state.js';
import { existsSync, readFileSync } from 'node:fs';

export interface NetworkAttachment {
  /** Network name or id ("bridge" = the default network). */
  network: string;
  /** --ip (user-defined networks only, as Docker). */
  ip?: string;
  /** --network-alias (user-defined networks only, as Docker). */
  aliases?: string[];
}

export interface AttachOptions {
  containerId: string;
  /** Container name: resolvable by peers on user-defined networks. */
  name: string;
  hostname: string;
  /** The container's hosts file on the host (bind-mounted as /etc/hosts), rewritten in place. */
  hostsPath?: string;
  /** The container's network namespace, e.g. /proc/<pid>/ns/net. */
  netnsPath: string;
  /** The first network gets the default route and the published ports. */
  networks: NetworkAttachment[];
  ports?: PortSpec[];
  /** The process whose death makes the endpoints stale (default: this process). */
  owner?: Owner;
}

export interface AttachedEndpoint {
  network: NetworkRecord;
  endpoint: Endpoint;
}

export interface AttachedContainer {
  endpoints: AttachedEndpoint[];
  ports: PortBinding[];
  /** Releases the host port reservations held by this process (idempotent). */
  closePorts(): void;
}

/**
 * Whether the owning process still runs: same pid and start time (pids are
 * reused), and not a zombie (killed but not yet reaped by its parent, which
 * for a monitor whose CLI exited is whoever inherited it).
 */
export function ownerAlive(o: Owner): boolean {
  if (procStartTime(o.Pid) !== o.StartTime) return false;
  try {
    const stat = readFileSync(`/proc/${o.Pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function selfOwner(): Owner {
  return { Pid: process.pid, StartTime: procStartTime(process.pid) ?? 0 };
}

/** Checks attachments against the records without changing anything: early, clear errors for `run`. */
export async function validateAttachments(root: string, atts: NetworkAttachment[]): Promise<void> {
  const records = await withNetworkLock(() => ensurePredefinedLocked(root));
  const seen = new Set<string>();
  for (const a of atts) {
    const rec = findInRecords(records, a.network);
    checkAttachment(rec, a);
    if (seen.has(rec.Id)) throw new Error(`network ${rec.Name} given twice`);
    seen.add(rec.Id);
  }
}

function checkAttachment(rec: NetworkRecord, a: NetworkAttachment): void {
  if (rec.Driver !== 'bridge') throw new Error(`container cannot be attached to the ${rec.Name} network this way (host and none are network modes of their own)`);
  if (a.ip) {
    if (rec.Predefined) throw new Error('user specified IP address is supported on user defined networks only');
    const s = parseSubnet(rec.Subnet!);
    const n = parseIPv4(a.ip);
    if (!isUsableHost(s, n)) throw new Error(`invalid address ${a.ip}: it does not belong to any of this network's subnets (${rec.Subnet})`);
    if (a.ip === rec.Gateway) throw new Error(`invalid address ${a.ip}: it is the gateway of network ${rec.Name}`);
  }
  if (a.aliases?.length && rec.Predefined) throw new Error('network-scoped alias is supported only for containers in user defined networks');
}

/** Picks an address: the one asked for, or the next free one after the cursor (sequential, wrapping). */
export function allocateAddress(rec: NetworkRecord, wanted?: string): string {
  const s = parseSubnet(rec.Subnet!);
  const used = new Set(Object.values(rec.Endpoints).map((e) => parseIPv4(e.IPAddress)));
  used.add(parseIPv4(rec.Gateway!));
  if (wanted) {
    const n = parseIPv4(wanted);
    if (used.has(n)) throw new Error(`Address already in use: ${wanted} on network ${rec.Name}`);
    return wanted;
  }
  const size = subnetSize(s);
  let next = rec.NextIp !== undefined && isUsableHost(s, rec.NextIp) ? rec.NextIp : s.base + 1;
  for (let i = 0; i < size; i++) {
    const cand = (s.base + ((next - s.base + i) % size)) >>> 0;
    if (!isUsableHost(s, cand) || used.has(cand)) continue;
    rec.NextIp = (cand + 1) >>> 0;
    return formatIPv4(cand);
  }
  throw new Error(`no available IPv4 addresses on this network's address pools: ${rec.Name} (${rec.Id})`);
}

function newVethName(): string {
  return `veth${randomBytes(4).toString('hex').slice(0, 7)}`;
}

/** Connects a container's network namespace to networks (see the header). */
export async function attachContainer(root: string, opts: AttachOptions): Promise<AttachedContainer> {
  if (!opts.networks.length) throw new Error('attachContainer: no network given');
  const owner = opts.owner ?? selfOwner();
  return withNetworkLock(async () => {
    await ensurePredefinedLocked(root);
    await pruneStaleLocked(root);
    let records = await listNetworkRecords(root);
    const targets = opts.networks.map((a) => {
      const rec = findInRecords(records, a.network);
      checkAttachment(rec, a);
      if (rec.Endpoints[opts.containerId]) throw new Error(`endpoint with name ${opts.name} already exists in network ${rec.Name}`);
      return { rec, att: a };
    });
    if (new Set(targets.map((t) => t.rec.Id)).size !== targets.length) throw new Error('a network is given twice');
    // Interface names and the default route: the container may already have endpoints (network connect).
    const existing = records.flatMap((r) => (r.Endpoints[opts.containerId] ? [r.Endpoints[opts.containerId]!] : []));
    const usedIf = new Set(existing.map((e) => e.IfName));
    const isFirst = existing.length === 0;

    let reservation: Reservation | undefined;
    if (opts.ports?.length) reservation = await reservePorts(opts.ports);
    const done: AttachedEndpoint[] = [];
    try {
      const mtu = await defaultMtu();
      let ifIndex = 0;
      for (const [i, { rec, att }] of targets.entries()) {
        if (Object.keys(rec.Endpoints).length === 0 || !isActive(root, rec)) {
          await activate(
            root,
            rec,
            records.filter((r) => r.Id !== rec.Id),
          );
        }
        const address = allocateAddress(rec, att.ip);
        while (usedIf.has(`eth${ifIndex}`)) ifIndex++;
        const ifName = `eth${ifIndex}`;
        usedIf.add(ifName);
        let veth = newVethName();
        while (existsSync(`/sys/class/net/${veth}`)) veth = newVethName();
        const ep: Endpoint = {
          ContainerId: opts.containerId,
          Name: opts.name,
          Hostname: opts.hostname,
          EndpointID: randomBytes(32).toString('hex'),
          IPAddress: address,
          MacAddress: macFromIPv4(parseIPv4(address)),
          Veth: veth,
          IfName: ifName,
          Aliases: att.aliases ?? [],
          Ports: isFirst && i === 0 && reservation ? reservation.bindings : [],
          ...(opts.hostsPath ? { HostsPath: opts.hostsPath } : {}),
          Owner: owner,
        };
        rec.Endpoints[opts.containerId] = ep;
        await writeNetworkRecord(root, rec);
        records = records.map((r) => (r.Id === rec.Id ? rec : r));
        done.push({ network: rec, endpoint: ep });

        const prefix = rec.Subnet!.split('/')[1];
        await ipBatch([
          `link add name ${veth} mtu ${mtu} type veth peer name ${ifName} address ${ep.MacAddress} mtu ${mtu} netns ${opts.netnsPath}`,
          `link set dev ${veth} master ${rec.Bridge}`,
          // A container reaching its own published port: the frame goes back out the port it came in on.
          `link set dev ${veth} type bridge_slave hairpin on`,
          `link set dev ${veth} up`,
        ]);
        const inside = ['link set dev lo up', `addr add ${address}/${prefix} dev ${ifName}`, `link set dev ${ifName} up`];
        if (isFirst && i === 0) inside.push(`route add default via ${rec.Gateway} dev ${ifName}`);
        await ipBatch(inside, opts.netnsPath);
      }
      const primary = done[0]!;
      if (primary.endpoint.Ports.length) {
        const rules: PortRule[] = primary.endpoint.Ports.map((p) => ({ ...p, containerIp: primary.endpoint.IPAddress }));
        await restore(portRules(primary.network.Id, opts.containerId, rules));
      }
      await refreshHostsLocked(root, new Set(done.map((d) => d.network.Id)));
    } catch (e) {
      reservation?.close();
      for (const d of done.reverse()) await teardownEndpointLocked(root, d.network.Id, opts.containerId).catch(() => {});
      throw e;
    }
    return { endpoints: done, ports: reservation?.bindings ?? [], closePorts: () => reservation?.close() };
  });
}

/** Removes one endpoint and what belongs to it (idempotent; caller holds the lock and refreshes hosts). */
async function teardownEndpointLocked(root: string, networkId: string, containerId: string): Promise<NetworkRecord | undefined> {
  const rec = (await listNetworkRecords(root)).find((r) => r.Id === networkId);
  if (!rec) return undefined;
  const ep = rec.Endpoints[containerId];
  if (ep) {
    await ip('link', 'del', ep.Veth).catch((e) => {
      if (!isNoSuchDevice(e)) throw e;
    });
  }
  const tag = endpointTag(networkId, containerId);
  const last = Object.keys(rec.Endpoints).filter((c) => c !== containerId).length === 0;
  if (last && isActive(root, rec)) {
    // The network goes down with it: endpoint and network rules in one pass.
    await deactivate(root, rec, tag);
  } else if (!ep || ep.Ports.length) {
    // Only published ports have endpoint rules (recorded before they are added); unknown endpoint: look anyway.
    await deleteTagged((c) => c === tag);
  }
  if (ep) {
    delete rec.Endpoints[containerId];
    await writeNetworkRecord(root, rec);
  }
  return rec;
}

/**
 * Tears down every endpoint of a container (exit, stop, rm). Idempotent:
 * safe after a crash, twice, or for a container that never had a network.
 */
export async function releaseContainerNetworks(root: string, containerId: string): Promise<void> {
  if (!(await hasEndpoints(root, containerId))) return;
  await withNetworkLock(async () => {
    const affected = new Set<string>();
    for (const rec of await listNetworkRecords(root)) {
      if (!rec.Endpoints[containerId]) continue;
      await teardownEndpointLocked(root, rec.Id, containerId);
      affected.add(rec.Id);
    }
    await refreshHostsLocked(root, affected);
  });
}

async function hasEndpoints(root: string, containerId: string): Promise<boolean> {
  return (await listNetworkRecords(root)).some((r) => r.Endpoints[containerId]);
}

/** `network disconnect`: one endpoint. */
export async function disconnectContainer(root: string, networkRef: string, containerId: string): Promise<void> {
  await withNetworkLock(async () => {
    const rec = findInRecords(await listNetworkRecords(root), networkRef);
    if (!rec.Endpoints[containerId]) throw new Error(`container ${containerId.slice(0, 12)} is not connected to network ${rec.Name}`);
    const hosts = rec.Endpoints[containerId]!.HostsPath;
    await teardownEndpointLocked(root, rec.Id, containerId);
    await refreshHostsLocked(root, new Set([rec.Id]), hosts ? [{ containerId, hostsPath: hosts }] : []);
  });
}

/** The container's current endpoints (read-only, no lock: records are replaced atomically). */
export async function containerEndpoints(root: string, containerId: string): Promise<AttachedEndpoint[]> {
  const out: AttachedEndpoint[] = [];
  for (const rec of await listNetworkRecords(root)) {
    const ep = rec.Endpoints[containerId];
    if (ep) out.push({ network: rec, endpoint: ep });
  }
  return out.sort((a, b) => a.endpoint.IfName.localeCompare(b.endpoint.IfName, 'en', { numeric: true }));
}

/**
 * Removes what crashed or killed processes left behind (caller holds the lock):
 *  - endpoints whose owner (the supervising process) is gone;
 *  - active bridges of networks without endpoints;
 *  - bridges (and their rules) of this host whose network record is gone,
 *    whichever root they came from (a deleted --root, a crash in `network rm`).
 */
export async function pruneStaleLocked(root: string): Promise<void> {
  const affected = new Set<string>();
  for (const rec of await listNetworkRecords(root)) {
    for (const [cid, ep] of Object.entries(rec.Endpoints)) {
      if (ownerAlive(ep.Owner)) continue;
      await teardownEndpointLocked(root, rec.Id, cid);
      affected.add(rec.Id);
    }
  }
  for (const rec of await listNetworkRecords(root)) {
    if (Object.keys(rec.Endpoints).length === 0 && isActive(root, rec)) await deactivate(root, rec);
  }
  let orphans = 0;
  for (const l of tsbuildLinks()) {
    // An alias cut at the kernel's 255 bytes names no root reliably: leave it alone.
    if (l.alias.length >= 255 || existsSync(networkFile(l.root, l.networkId))) continue;
    await deleteBridge(l.name);
    const id12 = l.networkId.slice(0, 12);
    await deleteTagged((c) => c === networkTag(l.networkId) || c.startsWith(`tsb-ep:${id12}:`));
    orphans++;
  }
  if (orphans) await removeBaseChainsIfUnused();
  if (affected.size) await refreshHostsLocked(root, affected);
}

/** Whether pruneStaleLocked would find anything (no lock, no process spawned: cheap enough for every command). */
export async function hasStale(root: string): Promise<boolean> {
  const records = await listNetworkRecords(root);
  for (const rec of records) {
    const eps = Object.values(rec.Endpoints);
    if (eps.some((ep) => !ownerAlive(ep.Owner))) return true;
    if (eps.length === 0 && isActive(root, rec)) return true;
  }
  return tsbuildLinks().some((l) => l.alias.length < 255 && !existsSync(networkFile(l.root, l.networkId)));
}

/** pruneStaleLocked under the lock, when there is something to prune (any tsbuild command may call it). */
export async function pruneStale(root: string): Promise<void> {
  if (!(await hasStale(root))) return;
  await withNetworkLock(() => pruneStaleLocked(root));
}

/**
 * Rewrites /etc/hosts of every container on the given networks (and of
 * `extra` containers, e.g. one just disconnected): its own addresses with
 * hostname (and, on user-defined networks, name and aliases), then its peers
 * on every user-defined network it is on.
 */
async function refreshHostsLocked(root: string, networkIds: Set<string>, extra: { containerId: string; hostsPath: string }[] = []): Promise<void> {
  if (!networkIds.size && !extra.length) return;
  const records = await listNetworkRecords(root);
  const targets = new Map<string, string>();
  for (const rec of records) {
    if (!networkIds.has(rec.Id)) continue;
    for (const ep of Object.values(rec.Endpoints)) if (ep.HostsPath) targets.set(ep.ContainerId, ep.HostsPath);
  }
  for (const x of extra) targets.set(x.containerId, x.hostsPath);
  for (const [cid, hostsPath] of targets) {
    rewriteInPlace(hostsPath, hostsContent(hostsEntriesFor(records, cid)));
  }
}

/** The hosts entries of one container (pure; see refreshHostsLocked). */
export function hostsEntriesFor(records: NetworkRecord[], containerId: string): HostsEntry[] {
  const mine = records
    .filter((r) => r.Endpoints[containerId])
    .sort((a, b) => a.Endpoints[containerId]!.IfName.localeCompare(b.Endpoints[containerId]!.IfName, 'en', { numeric: true }));
  const out: HostsEntry[] = [];
  for (const [i, rec] of mine.entries()) {
    const ep = rec.Endpoints[containerId]!;
    const names = i === 0 ? [ep.Hostname] : [];
    if (!rec.Predefined) names.push(ep.Name, ...ep.Aliases);
    out.push({ ip: ep.IPAddress, names });
  }
  for (const rec of mine) {
    if (rec.Predefined) continue; // Docker: no name resolution on the default bridge
    for (const ep of Object.values(rec.Endpoints)) {
      if (ep.ContainerId === containerId) continue;
      out.push({ ip: ep.IPAddress, names: [ep.Name, ...ep.Aliases, ep.ContainerId.slice(0, 12)] });
    }
  }
  return out;
}
