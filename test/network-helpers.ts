// Host network state for the network tests: what `ip link` and the
// iptables filter/nat tables hold, and the difference that matters.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface HostSnapshot {
  links: Map<string, string>; // name -> ifalias
  rules: Set<string>; // "table: line" of iptables-save, counters dropped
}

export function hostSnapshot(): HostSnapshot {
  const links = new Map<string, string>();
  for (const l of execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n')) {
    const m = /^\d+: ([^:@]+)/.exec(l);
    if (!m) continue;
    let alias = '';
    try {
      alias = readFileSync(`/sys/class/net/${m[1]}/ifalias`, 'utf8').trim();
    } catch {
      /* gone meanwhile */
    }
    links.set(m[1]!, alias);
  }
  const rules = new Set<string>();
  for (const t of ['filter', 'nat']) {
    for (const line of execFileSync('iptables-save', ['-t', t], { encoding: 'utf8' }).split('\n')) {
      if (line.startsWith('-A') || (line.startsWith(':') && !/^:[A-Z]+ (ACCEPT|DROP)/.test(line))) rules.add(`${t}: ${line.replace(/ \[\d+:\d+\]$/, '')}`);
    }
  }
  return { links, rules };
}

/**
 * What changed between two snapshots and is not explained by other tsbuild
 * roots working at the same time (other test files run in parallel): links
 * and rules that appeared or vanished. A link counts as someone else's when
 * its alias names another root; a veth counts as someone else's when it is
 * enslaved to such a bridge... which we cannot see once gone, so veths are
 * attributed by the test's own records instead (`ours`).
 */
export function leftovers(before: HostSnapshot, after: HostSnapshot, root: string): string[] {
  const out: string[] = [];
  const othersActive = [...after.links.values(), ...before.links.values()].some((a) => a.startsWith('tsbuild ') && !a.endsWith(` ${root}`));
  for (const [name, alias] of after.links) {
    if (before.links.has(name)) continue;
    if (alias.startsWith('tsbuild ') && !alias.endsWith(` ${root}`)) continue; // another root's bridge
    if (othersActive && name.startsWith('veth')) continue;
    out.push(`new link ${name} ${alias}`);
  }
  for (const name of before.links.keys()) if (!after.links.has(name) && !name.startsWith('veth') && !name.startsWith('tsb')) out.push(`link gone ${name}`);
  for (const r of after.rules) {
    if (before.rules.has(r)) continue;
    if (othersActive && r.includes('TSBUILD')) continue;
    out.push(`new rule ${r}`);
  }
  for (const r of before.rules) if (!after.rules.has(r) && !r.includes('TSBUILD')) out.push(`rule gone ${r}`);
  return out;
}
