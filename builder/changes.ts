// `--change` for `import` and `commit`: one Dockerfile instruction applied to an
// image config. Supports what `docker import --change` supports: CMD,
// ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR (and STOPSIGNAL).
// The full Dockerfile parser (builder issue) will take this over; this one covers
// the single-line forms, JSON exec form and quoted key=value pairs.
import type { ImageConfig } from '../image/schemas.js';

type ContainerConfig = NonNullable<ImageConfig['config']>;

/** Splits `k=v k2="a b" k3='c'` into pairs, honouring quotes and backslash escapes. */
export function parseKeyValues(s: string, what: string): [string, string][] {
  const words: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`${what}: unterminated quote in "${s}"`);
  if (inWord) words.push(cur);
  const pairs: [string, string][] = [];
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`${what}: expected key=value, got "${w}"`);
    pairs.push([w.slice(0, eq), w.slice(eq + 1)]);
  }
  return pairs;
}

function jsonOrShell(rest: string): string[] {
  const t = rest.trim();
  if (t.startsWith('[')) {
    try {
      const v = JSON.parse(t) as unknown;
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    } catch {
      /* falls back to shell form, as Docker does */
    }
  }
  return ['/bin/sh', '-c', t];
}

export function applyChange(config: ContainerConfig, change: string): ContainerConfig {
  const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(change);
  if (!m) throw new Error(`invalid --change "${change}": expected an instruction such as CMD ["sh"]`);
  const instr = m[1]!.toUpperCase();
  const rest = (m[2] ?? '').trim();
  const what = `--change "${change}"`;
  const c: ContainerConfig = { ...config };
  switch (instr) {
    case 'CMD':
      c.Cmd = jsonOrShell(rest);
      break;
    case 'ENTRYPOINT':
      c.Entrypoint = jsonOrShell(rest);
      break;
    case 'ENV': {
      const pairs: [string, string][] = rest.includes('=') ? parseKeyValues(rest, what) : (() => {
        const sp = rest.search(/\s/);
        if (sp < 0) throw new Error(`${what}: ENV needs a value`);
        return [[rest.slice(0, sp), rest.slice(sp).trim()] as [string, string]];
      })();
      const env = [...(c.Env ?? [])];
      for (const [k, v] of pairs) {
        const i = env.findIndex((e) => e.split('=')[0] === k);
        if (i >= 0) env[i] = `${k}=${v}`;
        else env.push(`${k}=${v}`);
      }
      c.Env = env;
      break;
    }
    case 'LABEL':
      c.Labels = { ...(c.Labels ?? {}), ...Object.fromEntries(parseKeyValues(rest, what)) };
      break;
    case 'EXPOSE': {
      const ports = { ...(c.ExposedPorts ?? {}) };
      for (const p of rest.split(/\s+/).filter(Boolean)) {
        if (!/^\d+(-\d+)?(\/(tcp|udp|sctp))?$/i.test(p)) throw new Error(`${what}: invalid port "${p}"`);
        ports[p.includes('/') ? p.toLowerCase() : `${p}/tcp`] = {};
      }
      c.ExposedPorts = ports;
      break;
    }
    case 'USER':
      if (!rest) throw new Error(`${what}: USER needs a value`);
      c.User = rest;
      break;
    case 'WORKDIR':
      if (!rest) throw new Error(`${what}: WORKDIR needs a path`);
      c.WorkingDir = rest.startsWith('/') ? rest : `${(c.WorkingDir || '/').replace(/\/$/, '')}/${rest}`;
      break;
    case 'VOLUME': {
      const vols = rest.trim().startsWith('[') ? jsonOrShell(rest) : rest.split(/\s+/).filter(Boolean);
      if (vols[0] === '/bin/sh' && vols[1] === '-c') throw new Error(`${what}: invalid JSON array`);
      c.Volumes = { ...(c.Volumes ?? {}), ...Object.fromEntries(vols.map((v) => [v, {}])) };
      break;
    }
    case 'STOPSIGNAL':
      c.StopSignal = rest;
      break;
    case 'ONBUILD':
      if (!rest) throw new Error(`${what}: ONBUILD needs an instruction`);
      c.OnBuild = [...(c.OnBuild ?? []), rest];
      break;
    default:
      throw new Error(`${what}: ${instr} is not supported by --change (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)`);
  }
  return c;
}
