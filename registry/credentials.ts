// Registry credentials as the Docker CLI keeps them: config.json
// (--authfile, else $DOCKER_CONFIG/config.json, else ~/.docker/config.json)
// with `auths` entries, or external docker-credential-<name> programs named
// by `credHelpers` (per registry) or `credsStore` (for all).
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../image/atomic.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface AuthFileOptions {
  /** Explicit config file (--authfile). */
  authfile?: string;
}

/** The key Docker uses for Docker Hub in config.json. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface ConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [k: string]: unknown;
}

export function authFilePath(opts: AuthFileOptions = {}): string {
  if (opts.authfile) return path.resolve(opts.authfile);
  const dir = process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

/** "docker.io" -> Docker Hub's legacy key; any other host as it is. */
export function authKey(host: string): string {
  return host === 'docker.io' || host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB_AUTH_KEY : host;
}

/** Reduces a config.json key ("https://host:5000/v1/", "http://host") to its host. */
function keyHost(key: string): string {
  let k = key.trim();
  k = k.replace(/^[a-z]+:\/\//i, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  k = k.toLowerCase();
  return k === 'index.docker.io' || k === 'registry-1.docker.io' ? 'docker.io' : k;
}

async function readConfig(file: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`cannot read registry credentials file ${file}: ${(e as Error).message}`);
  }
  if (text.trim() === '') return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('expected a JSON object');
    return v as ConfigFile;
  } catch (e) {
    throw new Error(`registry credentials file ${file} is not valid JSON (${(e as Error).message}): fix or remove it`);
  }
}

function helperFor(cfg: ConfigFile, host: string): string | undefined {
  for (const [k, v] of Object.entries(cfg.credHelpers ?? {})) if (keyHost(k) === host && v) return v;
  return cfg.credsStore || undefined;
}

function decodeEntry(e: AuthEntry, where: string): Credentials | undefined {
  if (e.auth) {
    const raw = Buffer.from(e.auth, 'base64').toString('utf8');
    const i = raw.indexOf(':');
    if (i < 0) throw new Error(`${where}: "auth" is not base64 of "user:password"`);
    return { username: raw.slice(0, i), password: raw.slice(i + 1) };
  }
  if (e.username !== undefined && e.password !== undefined) return { username: e.username, password: e.password };
  return undefined;
}

/** Credentials for a registry host, or undefined for anonymous access. */
export async function getCredentials(host: string, opts: AuthFileOptions = {}): Promise<Credentials | undefined> {
  const file = authFilePath(opts);
  const cfg = await readConfig(file);
  const h = keyHost(host);
  const helper = helperFor(cfg, h);
  if (helper) {
    const got = await runHelper(helper, 'get', authKey(h));
    if (got !== undefined) {
      const v = parseHelperOutput(got, helper);
      if (v) return v;
    }
    // Docker falls back to `auths` when a per-registry helper has nothing.
  }
  for (const [k, e] of Object.entries(cfg.auths ?? {})) {
    if (keyHost(k) === h && e) {
      const c = decodeEntry(e, `${file}: auths["${k}"]`);
      if (c) return c;
    }
  }
  return undefined;
}

function parseHelperOutput(text: string, helper: string): Credentials | undefined {
  let v: { Username?: unknown; Secret?: unknown };
  try {
    v = JSON.parse(text) as typeof v;
  } catch {
    throw new Error(`docker-credential-${helper} get: output is not JSON`);
  }
  if (typeof v.Username !== 'string' || typeof v.Secret !== 'string') return undefined;
  if (v.Username === '<token>') {
    throw new Error(`docker-credential-${helper} returned an identity token, which tsbuild does not support yet: log in with a username and password`);
  }
  return { username: v.Username, password: v.Secret };
}

/** Saves credentials where Docker would: the registry's helper, else `auths` (file mode 0600). */
export async function storeCredentials(host: string, creds: Credentials, opts: AuthFileOptions = {}): Promise<{ file: string; helper?: string }> {
  const file = authFilePath(opts);
  const cfg = await readConfig(file);
  const h = keyHost(host);
  const helper = helperFor(cfg, h);
  if (helper) {
    await runHelper(helper, 'store', JSON.stringify({ ServerURL: authKey(h), Username: creds.username, Secret: creds.password }));
    return { file, helper };
  }
  cfg.auths ??= {};
  for (const k of Object.keys(cfg.auths)) if (keyHost(k) === h) delete cfg.auths[k];
  cfg.auths[authKey(h)] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
  await writeConfig(file, cfg);
  return { file };
}

/** Removes stored credentials; false when there were none. */
export async function eraseCredentials(host: string, opts: AuthFileOptions = {}): Promise<boolean> {
  const file = authFilePath(opts);
  const cfg = await readConfig(file);
  const h = keyHost(host);
  let found = false;
  const helper = helperFor(cfg, h);
  if (helper) {
    const got = await runHelper(helper, 'get', authKey(h));
    if (got !== undefined) {
      await runHelper(helper, 'erase', authKey(h));
      found = true;
    }
  }
  let changed = false;
  for (const k of Object.keys(cfg.auths ?? {})) {
    if (keyHost(k) === h) {
      delete cfg.auths![k];
      changed = true;
    }
  }
  if (changed) await writeConfig(file, cfg);
  return found || changed;
}

async function writeConfig(file: string, cfg: ConfigFile): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, JSON.stringify(cfg, null, '\t') + '\n', 0o600);
  await fsp.chmod(file, 0o600);
}

/**
 * Runs docker-credential-<name> <action> with input on stdin. Returns its
 * stdout, or undefined when it reports that it has no credentials.
 */
export function runHelper(name: string, action: 'get' | 'store' | 'erase', input: string): Promise<string | undefined> {
  const prog = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(prog, [action], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(new Error(e.code === 'ENOENT' ? `credential helper ${prog} not found in PATH (named in the registry credentials file)` : `${prog} ${action}: ${e.message}`));
    });
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      const msg = (out.trim() || err.trim()).split('\n')[0] ?? '';
      if (action !== 'store' && /credentials not found/i.test(msg)) return resolve(undefined);
      reject(new Error(`${prog} ${action} failed (exit ${code})${msg ? `: ${msg}` : ''}`));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}
