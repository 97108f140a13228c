// Capabilities: the container's root gets Docker's default set, not all of
// them. Applied by init just before execve, in this order:
//  1. drop everything else from the bounding set (needs CAP_SETPCAP, which we
//     still have) so no execve of a file with capabilities can regain it;
//  2. setgroups/setgid/setuid (need CAP_SETGID/CAP_SETUID, still permitted):
//     switching to a non-zero uid clears the permitted and effective sets
//     (no SECBIT_KEEP_CAPS), which is what Docker gives a non-root user;
//  3. for uid 0, capset(effective = permitted = the default set, inheritable =
//     none: Docker's behaviour since CVE-2022-24769).
import { readFileSync } from 'node:fs';
import { capset, prctl, PR_CAPBSET_DROP, PR_CAPBSET_READ } from './syscalls.js';

/** capability(7) numbers. */
export const CAPS: Record<string, number> = {
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_DAC_READ_SEARCH: 2,
  CAP_FOWNER: 3,
  CAP_FSETID: 4,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_SETPCAP: 8,
  CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14,
  CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_BOOT: 22,
  CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24,
  CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26,
  CAP_MKNOD: 27,
  CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29,
  CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31,
  CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33,
  CAP_SYSLOG: 34,
  CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36,
  CAP_AUDIT_READ: 37,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
  CAP_CHECKPOINT_RESTORE: 40,
};

/** Docker's default capability set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export function capMask(names: string[]): bigint {
  let m = 0n;
  for (const n of names) {
    const bit = CAPS[n];
    if (bit === undefined) throw new Error(`unknown capability ${n}`);
    m |= 1n << BigInt(bit);
  }
  return m;
}

/** Step 1: everything not in keep leaves the bounding set. */
export function dropBoundingSet(keep: bigint): void {
  for (let cap = 0; cap < 64; cap++) {
    if (keep & (1n << BigInt(cap))) continue;
    let present: boolean;
    try {
      present = prctl(PR_CAPBSET_READ, cap) === 1;
    } catch {
      break; // EINVAL: past the kernel's last capability
    }
    if (present) prctl(PR_CAPBSET_DROP, cap);
  }
}

/** Step 3 (uid 0 only): effective = permitted = set, inheritable = none. */
export function setCapabilities(set: bigint): void {
  capset(set, set, 0n);
}

/** Docker's --cap-add/--cap-drop on top of the default set ("ALL", with or without the CAP_ prefix). */
export function effectiveCapNames(add: string[] = [], drop: string[] = []): string[] {
  const norm = (c: string) => {
    const u = c.toUpperCase();
    if (u === 'ALL') return u;
    const n = u.startsWith('CAP_') ? u : `CAP_${u}`;
    if (CAPS[n] === undefined) throw new Error(`unknown capability: "${c}"`);
    return n;
  };
  const adds = add.map(norm);
  const drops = drop.map(norm);
  let set = new Set(DEFAULT_CAPS);
  if (drops.includes('ALL')) set = new Set();
  for (const d of drops) set.delete(d);
  if (adds.includes('ALL')) set = new Set(Object.keys(CAPS));
  for (const a of adds) if (a !== 'ALL') set.add(a);
  return [...set].sort((a, b) => CAPS[a]! - CAPS[b]!);
}

/**
 * --privileged: every capability this process has in its bounding set (as
 * Docker gives the daemon's), not every capability the kernel knows: a
 * sandbox that withheld one from us cannot hand it to a container.
 */
export function privilegedCapNames(): string[] {
  const line = readFileSync('/proc/self/status', 'utf8').match(/^CapBnd:\s*([0-9a-f]+)$/m);
  const bnd = line ? BigInt(`0x${line[1]}`) : capMask(Object.keys(CAPS));
  return Object.keys(CAPS)
    .filter((n) => bnd & (1n << BigInt(CAPS[n]!)))
    .sort((a, b) => CAPS[a]! - CAPS[b]!);
}
