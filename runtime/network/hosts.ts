// /etc/hosts and /etc/resolv.conf for containers.
//
// Name resolution on user-defined networks is done with /etc/hosts, not a DNS
// server (README.md says why): every container's hosts file lists its peers
// on the user-defined networks it shares with them, by container name,
// --network-alias and short id, and is rewritten *in place* whenever a peer
// joins or leaves. In place matters: the file is bind-mounted into the
// container, and a bind mount pins the inode, so an atomic rename would never
// be seen inside.
import fs from 'node:fs';
import { isIPv4 } from './ipv4.js';

export const HOSTS_BASE = [
  '127.0.0.1\tlocalhost',
  '::1\tlocalhost ip6-localhost ip6-loopback',
  'fe00::0\tip6-localnet',
  'ff00::0\tip6-mcastprefix',
  'ff02::1\tip6-allnodes',
  'ff02::2\tip6-allrouters',
];

export interface HostsEntry {
  ip: string;
  names: string[];
}

/** The base lines, then one line per entry (names deduplicated within a line; empty entries dropped). */
export function hostsContent(entries: HostsEntry[]): string {
  const lines = [...HOSTS_BASE];
  for (const e of entries) {
    const names = [...new Set(e.names.filter(Boolean))];
    if (names.length) lines.push(`${e.ip}\t${names.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Replaces a file's content without replacing the file (see the header). A
 * reader may for a moment see the new content with an old tail; the writer
 * writes everything with one pwrite and truncates right after. Missing file:
 * nothing to do (the container is being removed).
 */
export function rewriteInPlace(file: string, content: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    const buf = Buffer.from(content);
    fs.writeSync(fd, buf, 0, buf.length, 0);
    fs.ftruncateSync(fd, buf.length);
  } finally {
    fs.closeSync(fd);
  }
}

/** Nameservers Docker would use when none of the host's are usable from a container. */
export const FALLBACK_NAMESERVERS = ['8.8.8.8', '8.8.4.4'];

/**
 * The container's resolv.conf from the host's. With its own network
 * namespace (bridge networks) a loopback nameserver (127.0.0.53 of
 * systemd-resolved, ::1) would be the container's own loopback, so those go,
 * and IPv6 nameservers too (no IPv6 in tsbuild networks); if none is left,
 * Docker's fallback (8.8.8.8, 8.8.4.4). With the host's network namespace the
 * file is used as is.
 */
export function containerResolvConf(host: string, mode: 'host' | 'bridge' | 'none'): string {
  if (mode === 'host') return host;
  const out: string[] = [];
  let kept = 0;
  for (const line of host.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m) {
      const ns = m[1]!;
      if (!isIPv4(ns) || ns.startsWith('127.')) continue;
      kept++;
    }
    out.push(line);
  }
  while (out.length && out[out.length - 1] === '') out.pop();
  if (kept === 0 && mode === 'bridge') out.push(...FALLBACK_NAMESERVERS.map((n) => `nameserver ${n}`));
  return out.length ? out.join('\n') + '\n' : '';
}

/** The IPv4 nameservers of a resolv.conf text. */
export function nameservers(resolv: string): string[] {
  return [...resolv.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]!).filter(isIPv4);
}
