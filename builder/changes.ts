// `--change` for `import` and `commit`: one Dockerfile instruction applied to an
// image config, as `docker import --change` does. Supported: CMD, ENTRYPOINT,
// ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR (Docker's list) and
// STOPSIGNAL. Parsed by the Dockerfile parser (parser.ts) and expanded with
// expand.ts against the config's own Env, as Docker's dispatchers do.
import path from 'node:path';
import type { ImageConfig } from '../image/schemas.js';
import { envListToVars, expandPairs, expandWord, expandWords, ExpandError } from './expand.js';
import { DockerfileError, type CommandLine, type Instruction } from './instructions.js';
import { parseInstructions, splitWordsRaw } from './parser.js';

type ContainerConfig = NonNullable<ImageConfig['config']>;

const SUPPORTED = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'ONBUILD', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR'];
const FILE = '--change';

/**
 * Splits `k=v k2="a b" k3='c'` into pairs, honouring quotes and backslash
 * escapes (a `$` reference is kept as written).
 */
export function parseKeyValues(s: string, what: string): [string, string][] {
  const pairs: [string, string][] = [];
  for (const w of splitWordsRaw(s, '\\')) {
    let word: string;
    try {
      word = expandWord(w, {}, '\\', { skipUnset: true });
    } catch (e) {
      if (e instanceof ExpandError) throw new Error(`${what}: unterminated quote in "${s}"`);
      throw e;
    }
    const eq = word.indexOf('=');
    if (eq <= 0) throw new Error(`${what}: expected key=value, got "${w}"`);
    pairs.push([word.slice(0, eq), word.slice(eq + 1)]);
  }
  return pairs;
}

function parseOne(change: string, what: string): Instruction {
  let instructions: Instruction[];
  try {
    ({ instructions } = parseInstructions(change, FILE, { directives: false }));
  } catch (e) {
    if (e instanceof DockerfileError) throw new Error(`${what}: ${e.message.replace(/^--change:\d+: /, '')}`);
    throw e;
  }
  if (instructions.length !== 1) {
    throw new Error(`invalid ${what}: expected one instruction such as CMD ["sh"]`);
  }
  return instructions[0]!;
}

function commandArgv(cmd: CommandLine, config: ContainerConfig): string[] {
  if (cmd.form === 'exec') return cmd.argv;
  const shell = config.Shell;
  return [...(shell && shell.length ? shell : ['/bin/sh', '-c']), cmd.command];
}

/** Docker's port spec: 80, 80/udp, 8000-8002/tcp (ranges become one entry per port). */
function exposedPorts(spec: string, what: string): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/([a-zA-Z]+))?$/.exec(spec);
  const proto = (m?.[3] ?? 'tcp').toLowerCase();
  if (!m || !['tcp', 'udp', 'sctp'].includes(proto)) {
    throw new Error(`${what}: invalid port "${spec}" (use PORT, PORT/tcp, PORT/udp, PORT/sctp or START-END)`);
  }
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > 65535 || hi > 65535 || hi < lo) throw new Error(`${what}: invalid port range "${spec}"`);
  const out: string[] = [];
  for (let p = lo; p <= hi; p++) out.push(`${p}/${proto}`);
  return out;
}

export function applyChange(config: ContainerConfig, change: string): ContainerConfig {
  const what = `--change "${change}"`;
  if (!/^\s*[A-Za-z]+/.test(change)) throw new Error(`invalid ${what}: expected an instruction such as CMD ["sh"]`);
  const kind = /^\s*([A-Za-z]+)/.exec(change)![1]!.toUpperCase();
  if (!SUPPORTED.includes(kind)) {
    throw new Error(`${what}: ${kind} is not supported by --change (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)`);
  }
  const ins = parseOne(change, what);
  const vars = envListToVars(config.Env ?? []);
  const expand = (w: string) => {
    try {
      return expandWord(w, vars);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
  };
  const c: ContainerConfig = { ...config };
  switch (ins.kind) {
    case 'CMD':
      c.Cmd = commandArgv(ins.command, c);
      break;
    case 'ENTRYPOINT':
      c.Entrypoint = commandArgv(ins.command, c);
      break;
    case 'ENV': {
      let pairs: { key: string; value: string }[];
      try {
        pairs = expandPairs(ins.pairs, vars);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}`);
      }
      const env = [...(c.Env ?? [])];
      for (const { key, value } of pairs) {
        const i = env.findIndex((e) => e.split('=')[0] === key);
        if (i >= 0) env[i] = `${key}=${value}`;
        else env.push(`${key}=${value}`);
      }
      c.Env = env;
      break;
    }
    case 'LABEL': {
      let pairs: { key: string; value: string }[];
      try {
        pairs = expandPairs(ins.pairs, vars);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}`);
      }
      c.Labels = { ...(c.Labels ?? {}), ...Object.fromEntries(pairs.map((p) => [p.key, p.value])) };
      break;
    }
    case 'EXPOSE': {
      const ports = { ...(c.ExposedPorts ?? {}) };
      for (const raw of ins.ports) {
        let specs: string[];
        try {
          specs = expandWords(raw, vars);
        } catch (e) {
          throw new Error(`${what}: ${(e as Error).message}`);
        }
        for (const spec of specs) for (const p of exposedPorts(spec, what)) ports[p] = {};
      }
      c.ExposedPorts = ports;
      break;
    }
    case 'USER':
      c.User = expand(ins.user);
      break;
    case 'WORKDIR': {
      const p = expand(ins.path);
      c.WorkingDir = path.posix.resolve(c.WorkingDir || '/', p);
      break;
    }
    case 'VOLUME':
      c.Volumes = { ...(c.Volumes ?? {}), ...Object.fromEntries(ins.volumes.map((v) => [expand(v), {}])) };
      break;
    case 'STOPSIGNAL':
      c.StopSignal = expand(ins.signal);
      break;
    case 'ONBUILD':
      c.OnBuild = [...(c.OnBuild ?? []), ins.expression];
      break;
    default:
      throw new Error(`${what}: ${ins.kind} is not supported by --change`);
  }
  return c;
}
