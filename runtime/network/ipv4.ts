// IPv4 addresses and CIDR subnets as plain numbers: parsing, formatting,
// containment and overlap. Pure functions (unit-tested in test/network-unit.test.ts).
// IPv6 is not supported by tsbuild's networks (see README.md).

export interface Subnet {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted quad; throws on anything else (no leading zeros ambiguity: 010 is rejected). */
export function parseIPv4(s: string): number {
  const m = IPV4_RE.exec(s.trim());
  if (!m) throw new Error(`invalid IPv4 address: "${s}"`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part.startsWith('0')) throw new Error(`invalid IPv4 address: "${s}" (leading zero)`);
    const v = Number(part);
    if (v > 255) throw new Error(`invalid IPv4 address: "${s}"`);
    n = n * 256 + v;
  }
  return n >>> 0;
}

export function isIPv4(s: string): boolean {
  try {
    parseIPv4(s);
    return true;
  } catch {
    return false;
  }
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "10.1.2.0/24" -> Subnet. Host bits must be zero, as Docker requires ("invalid subnet ... host bits set" otherwise). */
export function parseSubnet(s: string, opts: { allowHostBits?: boolean } = {}): Subnet {
  const slash = s.indexOf('/');
  if (slash === -1) throw new Error(`invalid subnet "${s}": expected CIDR notation such as 172.20.0.0/16`);
  const addr = parseIPv4(s.slice(0, slash));
  const p = s.slice(slash + 1);
  if (!/^\d{1,2}$/.test(p) || Number(p) > 32) throw new Error(`invalid subnet "${s}": bad prefix length`);
  const prefix = Number(p);
  const base = (addr & maskOf(prefix)) >>> 0;
  if (base !== addr && !opts.allowHostBits) throw new Error(`invalid subnet "${s}": host bits are set (did you mean ${formatSubnet({ base, prefix })}?)`);
  return { base, prefix };
}

export function formatSubnet(s: Subnet): string {
  return `${formatIPv4(s.base)}/${s.prefix}`;
}

export function subnetSize(s: Subnet): number {
  return 2 ** (32 - s.prefix);
}

export function contains(s: Subnet, ip: number): boolean {
  return ((ip & maskOf(s.prefix)) >>> 0) === s.base;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const m = maskOf(p);
  return ((a.base & m) >>> 0) === ((b.base & m) >>> 0);
}

/** The broadcast address of the subnet. */
export function lastAddress(s: Subnet): number {
  return (s.base + subnetSize(s) - 1) >>> 0;
}

/** Usable host addresses: everything but the network and broadcast addresses (for prefixes up to /30). */
export function isUsableHost(s: Subnet, ip: number): boolean {
  if (!contains(s, ip)) return false;
  if (s.prefix >= 31) return true;
  return ip !== s.base && ip !== lastAddress(s);
}

/**
 * Candidate subnets for networks created without --subnet, in order: Docker's
 * default local pools (172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s).
 */
export function* candidateSubnets(): Generator<Subnet> {
  for (let b = 17; b <= 31; b++) yield { base: parseIPv4(`172.${b}.0.0`), prefix: 16 };
  for (let c = 0; c < 256; c += 16) yield { base: parseIPv4(`192.168.${c}.0`), prefix: 20 };
}

/** A MAC address derived from the IPv4 address, as Docker did (02:42 + the four bytes): a reused IP keeps its MAC, so stale ARP entries stay right. */
export function macFromIPv4(ip: number): string {
  const b = [0x02, 0x42, ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}
