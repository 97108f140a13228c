// tsbuild's iptables rules. Everything lives in chains named TSBUILD-*, so
// leftovers are easy to find (`iptables-save | grep TSBUILD`); the only rules
// outside them are the jumps from the built-in chains into them. Every rule
// that belongs to a network or an endpoint carries a comment tag, and removal
// is "delete every rule with this tag" from a fresh iptables-save: idempotent,
// and it works after a crash from nothing but the tag.
//
//   filter INPUT       -j TSBUILD-INPUT        per network: packets from the bridge to 127.0.0.0/8 dropped
//                                             (route_localnet is on for the bridge, see README)
//   filter FORWARD     -j TSBUILD-FORWARD      first rule: -j TSBUILD-ISOLATION
//     TSBUILD-ISOLATION  per network: -i br -o br RETURN; -i br -o tsb+ DROP (no traffic between tsbuild networks)
//     TSBUILD-FORWARD    per network: -o br RELATED,ESTABLISHED,DNAT ACCEPT; -i br ACCEPT; -o br DROP
//   nat PREROUTING     -m addrtype --dst-type LOCAL -j TSBUILD-DNAT
//   nat OUTPUT         -m addrtype --dst-type LOCAL -j TSBUILD-DNAT
//     TSBUILD-DNAT       per published port: [-d hostip] -p tcp --dport H -j DNAT --to ctr:C
//   nat POSTROUTING    -j TSBUILD-POSTROUTING
//     TSBUILD-POSTROUTING per network: -s subnet ! -o br MASQUERADE (outbound);
//                        -s 127.0.0.0/8 -o br MASQUERADE (published port reached on 127.0.0.1);
//                        -s subnet -o br --ctstate DNAT MASQUERADE (hairpin: a container to a published port)
//
// Changes go through `iptables-restore --noflush`, one call per change: a
// table's lines are committed atomically, and one process is cheaper than one
// `iptables` per rule. Callers hold the host network lock (state.ts), so a
// read-then-write (save, then restore) never races another tsbuild process.
import { runTool } from './exec.js';

export const CHAIN_PREFIX = 'TSBUILD-';

interface BaseChain {
  table: 'filter' | 'nat';
  chain: string;
  /** The jump from a built-in chain (inserted at position 1), if any. */
  from?: { chain: string; match: string };
}

const BASE: BaseChain[] = [
  { table: 'filter', chain: 'TSBUILD-INPUT', from: { chain: 'INPUT', match: '' } },
  { table: 'filter', chain: 'TSBUILD-ISOLATION' },
  { table: 'filter', chain: 'TSBUILD-FORWARD', from: { chain: 'FORWARD', match: '' } },
  { table: 'nat', chain: 'TSBUILD-DNAT', from: { chain: 'PREROUTING', match: '-m addrtype --dst-type LOCAL' } },
  { table: 'nat', chain: 'TSBUILD-DNAT', from: { chain: 'OUTPUT', match: '-m addrtype --dst-type LOCAL' } },
  { table: 'nat', chain: 'TSBUILD-POSTROUTING', from: { chain: 'POSTROUTING', match: '' } },
];
const ISOLATION_JUMP = '-A TSBUILD-FORWARD -j TSBUILD-ISOLATION';

export interface Rule {
  table: 'filter' | 'nat';
  /** The rule as iptables-save prints it, starting with -A CHAIN. */
  line: string;
}

export interface Ruleset {
  /** table -> chain names declared in it */
  chains: Map<string, Set<string>>;
  rules: Rule[];
}

/** Splits an iptables-save rule line into tokens, honouring its double quotes. */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line))) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

/** The --comment of a rule line, or undefined. */
export function commentOf(line: string): string | undefined {
  const t = tokenize(line);
  const i = t.indexOf('--comment');
  return i === -1 ? undefined : t[i + 1];
}

export function parseSave(text: string): Ruleset {
  const chains = new Map<string, Set<string>>();
  const rules: Rule[] = [];
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      table = line.slice(1);
      if (!chains.has(table)) chains.set(table, new Set());
    } else if (line.startsWith(':')) {
      chains.get(table)?.add(line.slice(1).split(' ')[0]!);
    } else if (line.startsWith('-A ') && (table === 'filter' || table === 'nat')) {
      rules.push({ table, line });
    }
  }
  return { chains, rules };
}

export async function readRuleset(): Promise<Ruleset> {
  // Only the two tables we use: a busy host's mangle/raw tables are none of our business.
  const [filter, nat] = await Promise.all([runTool('iptables-save', ['-t', 'filter']), runTool('iptables-save', ['-t', 'nat'])]);
  return parseSave(filter.stdout + '\n' + nat.stdout);
}

/** Applies lines per table with one `iptables-restore --noflush` (each table's block is committed atomically). */
export async function restore(byTable: { filter?: string[]; nat?: string[] }): Promise<void> {
  let text = '';
  for (const t of ['filter', 'nat'] as const) {
    const lines = byTable[t];
    if (lines?.length) text += `*${t}\n${lines.join('\n')}\nCOMMIT\n`;
  }
  if (!text) return;
  await runTool('iptables-restore', ['--noflush', '-w'], text);
}

const jumpLine = (b: BaseChain) => `-A ${b.from!.chain} ${b.from!.match ? b.from!.match + ' ' : ''}-j ${b.chain}`;

/** The lines that create the TSBUILD-* chains and the jumps into them where missing (none when all are there). */
export function baseChainLines(rs: Ruleset): { filter: string[]; nat: string[] } {
  const add: { filter: string[]; nat: string[] } = { filter: [], nat: [] };
  const declared = new Set<string>();
  for (const b of BASE) {
    const have = rs.chains.get(b.table)?.has(b.chain);
    if (!have && !declared.has(`${b.table}/${b.chain}`)) {
      add[b.table].unshift(`:${b.chain} - [0:0]`);
      declared.add(`${b.table}/${b.chain}`);
    }
    if (b.from) {
      const want = jumpLine(b);
      if (!rs.rules.some((r) => r.table === b.table && normalize(r.line) === normalize(want))) {
        add[b.table].push(want.replace(`-A ${b.from.chain} `, `-I ${b.from.chain} 1 `));
      }
    }
  }
  if (!rs.rules.some((r) => r.table === 'filter' && normalize(r.line) === normalize(ISOLATION_JUMP))) {
    add.filter.push(ISOLATION_JUMP.replace('-A TSBUILD-FORWARD', '-I TSBUILD-FORWARD 1'));
  }
  // Chain declarations must come before the rules that use them.
  for (const t of ['filter', 'nat'] as const) add[t].sort((a, b) => Number(b.startsWith(':')) - Number(a.startsWith(':')));
  return add;
}

/** Creates the TSBUILD-* chains and the jumps into them where missing (a no-op when all are there). */
export async function ensureBaseChains(rs?: Ruleset): Promise<void> {
  await restore(baseChainLines(rs ?? (await readRuleset())));
}

/** iptables-save spells matches its own way (-m tcp added, quotes); compare on tokens without the implicit ones. */
function normalize(line: string): string {
  return tokenize(line).join(' ');
}

/** The lines that remove the chains and the jumps into them. */
function baseRemovalLines(rs: Ruleset): { filter: string[]; nat: string[] } {
  const del: { filter: string[]; nat: string[] } = { filter: [], nat: [] };
  for (const r of rs.rules) {
    const t = tokenize(r.line);
    const chain = t[1]!;
    const target = t[t.indexOf('-j') + 1] ?? '';
    if (!chain.startsWith(CHAIN_PREFIX) && target.startsWith(CHAIN_PREFIX)) del[r.table].push(r.line.replace(/^-A /, '-D '));
  }
  for (const t of ['filter', 'nat'] as const) {
    const mine = [...(rs.chains.get(t) ?? [])].filter((c) => c.startsWith(CHAIN_PREFIX));
    for (const c of mine) del[t].push(`-F ${c}`);
    for (const c of mine) del[t].push(`-X ${c}`);
  }
  return del;
}

/** Whether the TSBUILD-* chains hold nothing but the fixed isolation jump (no network is active on the host). */
function onlyBaseLeft(rules: Rule[]): boolean {
  return rules.filter((r) => r.line.split(' ')[1]!.startsWith(CHAIN_PREFIX)).every((r) => normalize(r.line) === normalize(ISOLATION_JUMP));
}

/**
 * Deletes every rule in a TSBUILD-* chain whose comment satisfies match,
 * from one iptables-save and with one iptables-restore. With dropBaseIfUnused,
 * the chains and the jumps into them go too when nothing else is left in them
 * (the last tsbuild network on the host went away). Idempotent.
 */
export async function deleteTagged(match: (comment: string) => boolean, opts: { dropBaseIfUnused?: boolean; rs?: Ruleset } = {}): Promise<number> {
  const rs = opts.rs ?? (await readRuleset());
  const del: { filter: string[]; nat: string[] } = { filter: [], nat: [] };
  const kept: Rule[] = [];
  let n = 0;
  for (const r of rs.rules) {
    const c = r.line.split(' ')[1]!.startsWith(CHAIN_PREFIX) ? commentOf(r.line) : undefined;
    if (c !== undefined && match(c)) {
      del[r.table].push(r.line.replace(/^-A /, '-D '));
      n++;
    } else kept.push(r);
  }
  if (opts.dropBaseIfUnused && [...rs.chains.values()].some((cs) => [...cs].some((c) => c.startsWith(CHAIN_PREFIX))) && onlyBaseLeft(kept)) {
    const base = baseRemovalLines({ chains: rs.chains, rules: kept });
    del.filter.push(...base.filter);
    del.nat.push(...base.nat);
  }
  await restore(del);
  return n;
}

/** Removes the chains and jumps when no network rule is left in them; returns whether it did. */
export async function removeBaseChainsIfUnused(rs?: Ruleset): Promise<boolean> {
  rs ??= await readRuleset();
  if (!onlyBaseLeft(rs.rules) || ![...rs.chains.values()].some((cs) => [...cs].some((c) => c.startsWith(CHAIN_PREFIX)))) return false;
  await restore(baseRemovalLines(rs));
  return true;
}

// ---- the rules themselves -------------------------------------------------------

export const networkTag = (networkId: string) => `tsb-net:${networkId.slice(0, 12)}`;
export const endpointTag = (networkId: string, containerId: string) => `tsb-ep:${networkId.slice(0, 12)}:${containerId.slice(0, 12)}`;

const c = (tag: string) => `-m comment --comment "${tag}"`;

/** The rules of an active bridge network (see the header). */
export function networkRules(networkId: string, bridge: string, subnet: string): { filter: string[]; nat: string[] } {
  const tag = c(networkTag(networkId));
  return {
    filter: [
      `-A TSBUILD-ISOLATION -i ${bridge} -o ${bridge} ${tag} -j RETURN`,
      `-A TSBUILD-ISOLATION -i ${bridge} -o tsb+ ${tag} -j DROP`,
      `-A TSBUILD-FORWARD -o ${bridge} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT ${tag} -j ACCEPT`,
      `-A TSBUILD-FORWARD -i ${bridge} ${tag} -j ACCEPT`,
      `-A TSBUILD-FORWARD -o ${bridge} ${tag} -j DROP`,
      `-A TSBUILD-INPUT -i ${bridge} -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED ${tag} -j DROP`,
    ],
    nat: [
      `-A TSBUILD-POSTROUTING -s ${subnet} ! -o ${bridge} ${tag} -j MASQUERADE`,
      `-A TSBUILD-POSTROUTING -s 127.0.0.0/8 -o ${bridge} ${tag} -j MASQUERADE`,
      `-A TSBUILD-POSTROUTING -s ${subnet} -o ${bridge} -m conntrack --ctstate DNAT ${tag} -j MASQUERADE`,
    ],
  };
}

export interface PortRule {
  proto: 'tcp' | 'udp';
  /** "" or 0.0.0.0 = every host address. */
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

/** DNAT rules for published ports of one endpoint. */
export function portRules(networkId: string, containerId: string, ports: PortRule[]): { nat: string[] } {
  const tag = c(endpointTag(networkId, containerId));
  return {
    nat: ports.map((p) => {
      const dst = p.hostIp && p.hostIp !== '0.0.0.0' ? `-d ${p.hostIp}/32 ` : '';
      return `-A TSBUILD-DNAT ${dst}-p ${p.proto} -m ${p.proto} --dport ${p.hostPort} ${tag} -j DNAT --to-destination ${p.containerIp}:${p.containerPort}`;
    }),
  };
}
