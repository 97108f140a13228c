// From image config + `run` flags to the process to start, with Docker's rules.
// Pure functions, unit-tested.

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ImageProcessConfig {
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface ProcessOverrides {
  /** CLI args after the image: replace the image's CMD. */
  args: string[];
  /** --entrypoint: "" clears the image's ENTRYPOINT; any value also drops its CMD unless args were given. */
  entrypoint?: string;
  env: string[];
  workdir?: string;
  user?: string;
  hostname: string;
  /** Host environment, for `-e NAME` without a value. */
  hostEnv?: NodeJS.ProcessEnv;
}

export interface ProcessConfig {
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  entrypoint: string[];
  cmd: string[];
}

export class ConfigError extends Error {}

/** ENTRYPOINT + CMD as `docker run` combines them. */
export function commandLine(image: ImageProcessConfig, o: Pick<ProcessOverrides, 'args' | 'entrypoint'>): { entrypoint: string[]; cmd: string[] } {
  let entrypoint = image.Entrypoint ?? [];
  let cmd = image.Cmd ?? [];
  if (o.entrypoint !== undefined) {
    entrypoint = o.entrypoint === '' ? [] : [o.entrypoint];
    cmd = [];
  }
  if (o.args.length > 0) cmd = o.args;
  return { entrypoint, cmd };
}

/** Image Env, then HOSTNAME, then -e (later wins per name); PATH defaulted if nobody set it. */
export function mergeEnv(imageEnv: string[], flags: string[], hostname: string, hostEnv: NodeJS.ProcessEnv = {}): string[] {
  const order: string[] = [];
  const vals = new Map<string, string>();
  const set = (k: string, v: string) => {
    if (!vals.has(k)) order.push(k);
    vals.set(k, v);
  };
  const parse = (kv: string) => {
    const eq = kv.indexOf('=');
    return eq === -1 ? [kv, undefined] as const : [kv.slice(0, eq), kv.slice(eq + 1)] as const;
  };
  if (!imageEnv.some((e) => e.startsWith('PATH='))) set('PATH', DEFAULT_PATH.slice(5));
  set('HOSTNAME', hostname);
  for (const e of imageEnv) {
    const [k, v] = parse(e);
    if (v !== undefined) set(k, v);
  }
  for (const e of flags) {
    const [k, v] = parse(e);
    if (k === '') throw new ConfigError(`invalid environment variable: ${e}`);
    if (v !== undefined) set(k, v);
    else if (hostEnv[k] !== undefined) set(k, hostEnv[k]!);
  }
  return order.map((k) => `${k}=${vals.get(k)}`);
}

export function processConfig(image: ImageProcessConfig, o: ProcessOverrides): ProcessConfig {
  const { entrypoint, cmd } = commandLine(image, o);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new ConfigError('No command specified');
  const cwd = o.workdir ?? (image.WorkingDir || '/');
  if (!cwd.startsWith('/')) throw new ConfigError(`the working directory '${cwd}' is invalid, it needs to be an absolute path`);
  return {
    args,
    env: mergeEnv(image.Env ?? [], o.env, o.hostname, o.hostEnv),
    cwd,
    user: o.user ?? image.User ?? '',
    entrypoint,
    cmd,
  };
}
