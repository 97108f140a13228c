// login / logout: check credentials against the registry, then store or
// erase them where the Docker CLI keeps them (see credentials.ts).
import { eraseCredentials, storeCredentials, type AuthFileOptions, type Credentials } from './credentials.js';
import { RegistryClient, type ClientOptions } from './transport.js';

/** "https://127.0.0.1:5000/v2/" -> "127.0.0.1:5000"; empty -> "docker.io". */
export function normalizeRegistryHost(s: string | undefined): string {
  let h = (s ?? '').trim().replace(/^[a-z]+:\/\//i, '');
  const slash = h.indexOf('/');
  if (slash >= 0) h = h.slice(0, slash);
  h = h.toLowerCase();
  if (h === '' || h === 'index.docker.io' || h === 'registry-1.docker.io') return 'docker.io';
  if (!/^(\[[0-9a-f:]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:\d{1,5})?$/.test(h)) throw new Error(`invalid registry address "${s}"`);
  return h;
}

/** Verifies the credentials with the registry (GET /v2/ or a token request) and stores them. */
export async function login(registry: string, creds: Credentials, opts: ClientOptions & AuthFileOptions = {}): Promise<{ host: string; file: string; helper?: string }> {
  const host = normalizeRegistryHost(registry);
  const client = new RegistryClient(host, { ...opts, credentials: creds });
  await client.verifyLogin();
  const saved = await storeCredentials(host, creds, opts);
  return { host, ...saved };
}

/** Removes stored credentials; false when there were none. */
export async function logout(registry: string, opts: AuthFileOptions = {}): Promise<{ host: string; removed: boolean }> {
  const host = normalizeRegistryHost(registry);
  return { host, removed: await eraseCredentials(host, opts) };
}
