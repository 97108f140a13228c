// Which scheme and which TLS settings a registry host gets, as Docker decides:
//  - https with the system roots, plus CA certificates from
//    /etc/docker/certs.d/HOST[:PORT]/*.crt (base overridable with $TSBUILD_CERTS_D,
//    or a whole directory given with --cert-dir), and a client certificate from
//    *.cert + *.key in the same directory;
//  - "insecure" hosts — localhost, 127.0.0.0/8, ::1, --insecure-registry HOST —
//    try https without verifying the certificate (unless a CA is configured for
//    them) and fall back to plain http;
//  - --tls-verify=false makes any host insecure; an explicit --tls-verify=true
//    makes even a loopback host require a verified https connection.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { rootCertificates } from 'node:tls';

export const DEFAULT_CERTS_D = '/etc/docker/certs.d';

export interface TlsOptions {
  /** Directory with *.crt CAs and *.cert/*.key client pairs, used instead of certs.d/HOST. */
  certDir?: string;
  /** undefined: Docker's default (loopback/insecure hosts unverified); true: always verify; false: never. */
  tlsVerify?: boolean;
  /** Hosts (host or host:port, or CIDR-less IPs) treated like localhost: unverified TLS or plain http. */
  insecureRegistries?: string[];
}

export interface HostTls {
  /** Verify the server's certificate. */
  verify: boolean;
  /** Fall back to plain http when the https handshake fails. */
  allowHttp: boolean;
  /** CA certificates to trust in addition to the system roots (undefined: system roots only). */
  ca?: string[];
  cert?: Buffer;
  key?: Buffer;
  /** Where the certificates came from, for messages. */
  certSource?: string;
}

export function certsDBase(): string {
  return process.env.TSBUILD_CERTS_D || DEFAULT_CERTS_D;
}

/** The host part without the port: "127.0.0.1:5000" -> "127.0.0.1", "[::1]:5000" -> "::1". */
export function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const c = host.lastIndexOf(':');
  return c >= 0 ? host.slice(0, c) : host;
}

export function isLoopback(host: string): boolean {
  const h = hostname(host).toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export function isInsecureHost(host: string, opts: TlsOptions): boolean {
  if (opts.tlsVerify === false) return true;
  if (opts.tlsVerify === true) return false;
  if (isLoopback(host)) return true;
  const list = opts.insecureRegistries ?? [];
  return list.includes(host) || list.includes(hostname(host));
}

/** TLS settings for one registry host (reads the certificate directory if there is one). */
export async function hostTls(host: string, opts: TlsOptions): Promise<HostTls> {
  const dir = opts.certDir ? path.resolve(opts.certDir) : path.join(certsDBase(), host);
  const files = await readDirIfExists(dir, Boolean(opts.certDir));
  const ca: string[] = [];
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  for (const f of files.sort()) {
    const p = path.join(dir, f);
    if (f.endsWith('.crt')) ca.push(await fsp.readFile(p, 'utf8'));
    else if (f.endsWith('.cert')) {
      const keyFile = p.slice(0, -'.cert'.length) + '.key';
      try {
        key = await fsp.readFile(keyFile);
      } catch {
        throw new Error(`missing key ${keyFile} for client certificate ${p}`);
      }
      cert = await fsp.readFile(p);
    } else if (f.endsWith('.key')) {
      const certFile = p.slice(0, -'.key'.length) + '.cert';
      if (!files.includes(path.basename(certFile))) throw new Error(`missing client certificate ${certFile} for key ${p}`);
    }
  }
  const insecure = isInsecureHost(host, opts);
  const haveCa = ca.length > 0;
  return {
    // A CA configured for an insecure host means the user wants it checked (unless --tls-verify=false).
    verify: opts.tlsVerify === false ? false : !insecure || haveCa,
    allowHttp: insecure,
    ca: haveCa ? [...rootCertificates, ...ca] : undefined,
    cert,
    key,
    certSource: haveCa || cert ? dir : undefined,
  };
}

async function readDirIfExists(dir: string, required: boolean): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return [];
    if (code === 'ENOENT') throw new Error(`certificate directory ${dir} does not exist (--cert-dir)`);
    if (code === 'ENOTDIR') throw new Error(`certificate directory ${dir} is not a directory`);
    throw new Error(`cannot read certificate directory ${dir}: ${(e as Error).message}`);
  }
}

/** Node/OpenSSL error codes that mean "the certificate did not verify". */
export function isCertificateError(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? '';
  return (
    /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS_CERT_ALTNAME_INVALID/.test(code) ||
    /certificate/i.test((e as Error)?.message ?? '')
  );
}
