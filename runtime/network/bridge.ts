// The Linux bridge of a network, and the host state that goes with it.
//
// Lazy host state: a network's bridge device, its address, route_localnet and
// its iptables rules exist only while at least one endpoint is attached.
// `activate` runs when the first container joins, `deactivate` when the last
// one leaves (or when a stale bridge is found). With no daemon to restore
// things at boot, or to notice a crash, state that only exists while
// containers need it is state that cannot go stale for long, and `ip link` /
// the NAT table return to what they were once the containers are gone.
//
// A bridge carries an ifalias "tsbuild <network id> <root>", so tsbuild can
// tell its own devices from anyone else's (and another root's), and find the
// bridges of a root that no longer exists.
import fs from 'node:fs';
import { ip, ipBatch, isNoSuchDevice } from './exec.js';
import { candidateSubnets, contains, formatIPv4, formatSubnet, overlaps, parseIPv4, parseSubnet, type Subnet } from './ipv4.js';
import { baseChainLines, deleteTagged, networkRules, networkTag, readRuleset, restore } from './iptables.js';
import { nameservers } from './hosts.js';
import type { NetworkRecord } from './state.js';

export const DEFAULT_BRIDGE = 'tsbuild0';
const IFALIAS_PREFIX = 'tsbuild ';

export function ownerAlias(root: string, networkId: string): string {
  return `${IFALIAS_PREFIX}${networkId} ${root}`.slice(0, 255);
}

export function parseOwnerAlias(alias: string): { networkId: string; root: string } | undefined {
  const m = /^tsbuild ([0-9a-f]{64}) (.+)$/.exec(alias.trim());
  return m ? { networkId: m[1]!, root: m[2]! } : undefined;
}

export function linkExists(name: string): boolean {
  return fs.existsSync(`/sys/class/net/${name}`);
}

export function linkAlias(name: string): string | undefined {
  try {
    return fs.readFileSync(`/sys/class/net/${name}/ifalias`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Every link on the host whose ifalias says tsbuild made it. */
export function tsbuildLinks(): { name: string; networkId: string; root: string; alias: string }[] {
  const out: { name: string; networkId: string; root: string; alias: string }[] = [];
  for (const name of fs.readdirSync('/sys/class/net')) {
    const a = linkAlias(name);
    const o = a ? parseOwnerAlias(a) : undefined;
    if (o) out.push({ name, ...o, alias: a! });
  }
  return out;
}

export interface HostRoute {
  dst: Subnet;
  dev: string;
}

/** The host's IPv4 routes (main table), without the default route. */
export async function hostRoutes(): Promise<HostRoute[]> {
  const { stdout } = await ip('-j', '-4', 'route', 'show');
  const routes = JSON.parse(stdout || '[]') as { dst: string; dev?: string }[];
  const out: HostRoute[] = [];
  for (const r of routes) {
    if (r.dst === 'default') continue;
    try {
      out.push({ dst: parseSubnet(r.dst.includes('/') ? r.dst : `${r.dst}/32`, { allowHostBits: true }), dev: r.dev ?? '' });
    } catch {
      /* not an IPv4 prefix we understand (e.g. a multicast/blackhole form): ignore */
    }
  }
  return out;
}

/** Subnets the host uses: routes (except those of `exceptDev`) and the resolvers' addresses (reached through the default route, they must not be shadowed). */
export async function usedByHost(exceptDev?: string): Promise<{ subnet: Subnet; what: string }[]> {
  const used = (await hostRoutes()).filter((r) => r.dev !== exceptDev).map((r) => ({ subnet: r.dst, what: `route ${formatSubnet(r.dst)} dev ${r.dev}` }));
  let resolv = '';
  try {
    resolv = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    /* none */
  }
  for (const ns of nameservers(resolv)) used.push({ subnet: { base: parseIPv4(ns), prefix: 32 }, what: `nameserver ${ns}` });
  return used;
}

/** The first candidate subnet that overlaps nothing in `taken`. */
export function pickSubnet(taken: Subnet[]): Subnet | undefined {
  for (const c of candidateSubnets()) if (!taken.some((t) => overlaps(t, c))) return c;
  return undefined;
}

/** MTU for veths: that of the device of the default route, at most 1500 (a bigger one would make outbound packets too big). */
export async function defaultMtu(): Promise<number> {
  try {
    const { stdout } = await ip('-j', '-4', 'route', 'show', 'default');
    const dev = (JSON.parse(stdout || '[]') as { dev?: string }[])[0]?.dev;
    if (dev) {
      const mtu = Number(fs.readFileSync(`/sys/class/net/${dev}/mtu`, 'utf8'));
      if (mtu >= 576) return Math.min(mtu, 1500);
    }
  } catch {
    /* no default route */
  }
  return 1500;
}

function writeSysctl(path: string, value: string): void {
  try {
    if (fs.readFileSync(path, 'utf8').trim() === value) return;
  } catch {
    /* try the write, which reports */
  }
  fs.writeFileSync(path, value);
}

/**
 * Makes the network's bridge and rules exist (idempotent). Subnet and bridge
 * name chosen by tsbuild (AutoSubnet/AutoBridge) move to free ones if the
 * host took theirs meanwhile (another root's network, a VPN route, a Docker
 * bridge); fixed ones that collide are an error. Mutates rec (the caller
 * persists it). `siblings` are the other records of the same root.
 */
export async function activate(root: string, rec: NetworkRecord, siblings: NetworkRecord[]): Promise<void> {
  const alias = ownerAlias(root, rec.Id);
  let dev = rec.Bridge!;
  if (linkExists(dev) && linkAlias(dev) === alias) {
    // Active already (or half-activated by a process that died): make sure of the rest.
    await finishActivation(rec, dev);
    return;
  }
  if (linkExists(dev)) {
    if (!rec.AutoBridge) throw new Error(`network ${rec.Name}: its bridge device ${dev} exists and is not this network's (${linkAlias(dev) || 'no tsbuild alias'}): remove that device or this network`);
    const others = new Set(siblings.map((s) => s.Bridge));
    for (let i = 0; ; i++) {
      const cand = rec.Predefined ? `tsbuild${i}` : `tsb-${rec.Id.slice(0, 8)}${i ? `-${i}` : ''}`;
      if (!linkExists(cand) && !others.has(cand)) {
        dev = cand;
        break;
      }
    }
    rec.Bridge = dev;
  }
  const used = await usedByHost();
  const subnet = parseSubnet(rec.Subnet!);
  const clash = used.find((u) => overlaps(u.subnet, subnet));
  if (clash) {
    if (!rec.AutoSubnet) throw new Error(`network ${rec.Name}: subnet ${rec.Subnet} overlaps the host's ${clash.what}: remove the network and create it with another --subnet`);
    const taken = [...used.map((u) => u.subnet), ...siblings.filter((s) => s.Subnet).map((s) => parseSubnet(s.Subnet!))];
    const s = pickSubnet(taken);
    if (!s) throw new Error(`network ${rec.Name}: no free subnet left in the default pools; create networks with --subnet`);
    rec.Subnet = formatSubnet(s);
    rec.Gateway = formatIPv4(s.base + 1);
    rec.NextIp = undefined;
  }
  const gw = rec.Gateway!;
  if (!contains(parseSubnet(rec.Subnet!), parseIPv4(gw))) throw new Error(`network ${rec.Name}: gateway ${gw} is outside ${rec.Subnet}`);
  const prefix = rec.Subnet!.split('/')[1];
  await ipBatch([
    `link add name ${dev} type bridge`,
    `link set dev ${dev} alias "${alias}"`,
    `addr add ${gw}/${prefix} dev ${dev}`,
    `link set dev ${dev} up`,
  ]).catch(async (e) => {
    await ip('link', 'del', dev).catch(() => {});
    throw e;
  });
  await finishActivation(rec, dev);
}

async function finishActivation(rec: NetworkRecord, dev: string): Promise<void> {
  // Published ports reached on 127.0.0.1: DNAT makes the packet leave through
  // the bridge with a loopback source, which the kernel drops as martian
  // unless route_localnet is on for the outgoing device (the source is then
  // masqueraded, and TSBUILD-INPUT drops what containers send to 127/8).
  writeSysctl(`/proc/sys/net/ipv4/conf/${dev}/route_localnet`, '1');
  // Outbound traffic and published ports are routed: forwarding must be on (as Docker; never switched back off, see README).
  writeSysctl('/proc/sys/net/ipv4/ip_forward', '1');
  // Chains, jumps and this network's rules in one iptables-restore.
  const rs = await readRuleset();
  const tag = networkTag(rec.Id);
  const want = networkRules(rec.Id, dev, rec.Subnet!);
  const have = rs.rules.filter((r) => r.line.includes(`"${tag}"`));
  if (have.length === want.filter.length + want.nat.length) {
    await restore(baseChainLines(rs));
    return;
  }
  if (have.length) await deleteTagged((c) => c === tag, { rs });
  const base = baseChainLines(rs);
  await restore({ filter: [...base.filter, ...want.filter], nat: [...base.nat, ...want.nat] });
}

/**
 * Removes the network's rules and its bridge (only a bridge carrying this
 * network's alias), and the chains when it was the last network on the host;
 * idempotent. extraTag: an endpoint's rules to delete in the same pass.
 */
export async function deactivate(root: string, rec: NetworkRecord, extraTag?: string): Promise<void> {
  const tag = networkTag(rec.Id);
  await deleteTagged((c) => c === tag || c === extraTag, { dropBaseIfUnused: true });
  const dev = rec.Bridge;
  if (dev && linkExists(dev) && linkAlias(dev) === ownerAlias(root, rec.Id)) await deleteBridge(dev);
}

/** Deletes a bridge and the veths still enslaved to it (ours: only tsbuild attaches ports to its bridges). */
export async function deleteBridge(dev: string): Promise<void> {
  let ports: string[] = [];
  try {
    ports = fs.readdirSync(`/sys/class/net/${dev}/brif`);
  } catch {
    /* gone */
  }
  for (const name of [...ports, dev]) {
    await ip('link', 'del', name).catch((e) => {
      if (!isNoSuchDevice(e)) throw e;
    });
  }
}

/** Whether the network's bridge is up right now (by this network's alias). */
export function isActive(root: string, rec: NetworkRecord): boolean {
  return !!rec.Bridge && linkExists(rec.Bridge) && linkAlias(rec.Bridge) === ownerAlias(root, rec.Id);
}
