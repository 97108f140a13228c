// Image references ("app", "user/app:1", "localhost:5000/a/b:t@sha256:...")
// parsed and normalised the way Docker does it, following the grammar of
// github.com/distribution/reference:
//
//   reference      := name [ ":" tag ] [ "@" digest ]
//   name           := [domain "/"] path
//   domain         := host [":" port]
//   host           := domain-name | "[" IPv6 "]"
//   domain-name    := component ("." component)*    component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//   path           := path-component ("/" path-component)*
//   path-component := [a-z0-9]+ (separator [a-z0-9]+)*   separator: "." | "_" | "__" | "-"+
//   tag            := [\w][\w.-]{0,127}
//   digest         := "sha256:" 64 lowercase hex     (only sha256 here)
//
// The first "/"-separated component is a domain when it contains "." or ":"
// or is "localhost"; otherwise the domain is docker.io, and a one-component
// docker.io path gets "library/" in front. Deliberate difference from Docker:
// Docker also treats an uppercase first component ("Foo/bar") as a registry
// host; we report it as a non-lowercase repository name, which is what the
// user almost always meant.
import { isDigest, type Digest } from './digest.js';

export const DEFAULT_DOMAIN = 'docker.io';
export const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
export const DEFAULT_TAG = 'latest';
export const NAME_TOTAL_LENGTH_MAX = 255;

export interface Reference {
  /** Registry host with optional port, e.g. "docker.io", "localhost:5000", "[::1]:5000". */
  domain: string;
  /** Repository path within the registry, e.g. "library/app". */
  path: string;
  tag?: string;
  digest?: Digest;
}

/**
 * A malformed reference. Takes a complete message, like Error; the parser's
 * messages read `invalid reference "<input>": <what is wrong>`.
 */
export class ReferenceError extends Error {
  constructor(message: string) {
    super(message);
    // Not "ReferenceError": that would read like a JavaScript scoping bug in a stack trace.
    this.name = 'InvalidReferenceError';
  }
}

function invalid(input: string, reason: string): ReferenceError {
  return new ReferenceError(`invalid reference ${JSON.stringify(input)}: ${reason}`);
}

const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_NAME_RE = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$/;
const IPV6_RE = /^\[[a-fA-F0-9:]+\]$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const ID_RE = /^[a-f0-9]{64}$/;

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** Parses and normalises a reference; throws ReferenceError naming the bad part. */
export function parseReference(s: string): Reference {
  const fail = (reason: string): never => {
    throw invalid(s, reason);
  };
  if (s === '') fail('empty');
  if (ID_RE.test(s)) fail('a 64-character hexadecimal string is an image ID, not a repository name');

  // name [":" tag] ["@" digest]
  let rest = s;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (d === '') fail('empty digest after "@"');
    if (!isDigest(d)) {
      const alg = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):/.exec(d)?.[1];
      if (alg && alg !== 'sha256') fail(`invalid digest "${d}": unsupported algorithm "${alg}" (only sha256 is supported)`);
      fail(`invalid digest "${d}": expected "sha256:" followed by 64 lowercase hex digits`);
    }
    digest = d as Digest;
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0 && colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (tag === '') fail('empty tag (trailing colon)');
    if (!TAG_RE.test(tag)) {
      fail(tag.length > 128 ? `invalid tag "${tag}": longer than 128 characters` : `invalid tag "${tag}"`);
    }
  }
  const name = rest;
  if (name === '') fail('missing repository name');

  // [domain "/"] path
  let domain: string;
  let path: string;
  const slash = name.indexOf('/');
  const first = slash >= 0 ? name.slice(0, slash) : '';
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    domain = first;
    path = name.slice(slash + 1);
    checkDomain(domain, fail);
    if (path === '') fail(`missing repository name after domain "${domain}"`);
  } else {
    domain = DEFAULT_DOMAIN;
    path = name;
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;

  const components = path.split('/');
  components.forEach((c, i) => {
    if (c !== '') return;
    if (i === 0) fail('repository name must not start with "/"');
    if (i === components.length - 1) fail('repository name must not end with "/"');
    fail('empty path component (double slash)');
  });
  for (const c of components) {
    if (PATH_COMPONENT_RE.test(c)) continue;
    if (PATH_COMPONENT_RE.test(c.toLowerCase())) fail(`repository name must be lowercase (${JSON.stringify(c)})`);
    fail(
      `invalid repository name component ${JSON.stringify(c)} ` +
        `(allowed: lowercase letters and digits, separated by ".", "_", "__" or "-")`,
    );
  }
  if (domain === DEFAULT_DOMAIN && components.length === 1) path = `library/${path}`;

  const full = `${domain}/${path}`;
  if (full.length > NAME_TOTAL_LENGTH_MAX) {
    fail(`repository name too long (${full.length} characters after normalisation to "${domain}/...", at most ${NAME_TOTAL_LENGTH_MAX})`);
  }

  const ref: Reference = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  else if (digest === undefined) ref.tag = DEFAULT_TAG;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

function checkDomain(domain: string, fail: (reason: string) => never): void {
  let host = domain;
  let port: string | undefined;
  if (domain.startsWith('[')) {
    const end = domain.indexOf(']');
    if (end < 0) fail(`invalid domain "${domain}": unterminated "[" in IPv6 address`);
    host = domain.slice(0, end + 1);
    const after = domain.slice(end + 1);
    if (after !== '') {
      if (!after.startsWith(':')) fail(`invalid domain "${domain}"`);
      port = after.slice(1);
    }
    if (!IPV6_RE.test(host)) fail(`invalid domain "${domain}": bad IPv6 address "${host}"`);
  } else {
    const c = domain.indexOf(':');
    if (c >= 0) {
      host = domain.slice(0, c);
      port = domain.slice(c + 1);
      if (port.includes(':')) fail(`invalid domain "${domain}" (IPv6 addresses must be written in brackets, e.g. "[::1]:5000")`);
    }
    if (host === '') fail(`invalid domain "${domain}": empty host`);
    if (!DOMAIN_NAME_RE.test(host)) fail(`invalid domain "${domain}"`);
  }
  if (port !== undefined) {
    if (port === '') fail(`invalid domain "${domain}": empty port`);
    if (!/^[0-9]+$/.test(port)) fail(`invalid port "${port}" in domain "${domain}"`);
    if (Number(port) > 65535) fail(`invalid port "${port}" in domain "${domain}": out of range`);
  }
}

/** The repository without tag or digest: "docker.io/library/app". */
export function repositoryName(r: Reference): string {
  return `${r.domain}/${r.path}`;
}

function suffix(r: Reference): string {
  return (r.tag !== undefined ? `:${r.tag}` : '') + (r.digest !== undefined ? `@${r.digest}` : '');
}

/** The full normalised form: "docker.io/library/app:latest", "localhost:5000/a/b:t@sha256:...". */
export function formatReference(r: Reference): string {
  return repositoryName(r) + suffix(r);
}

/** The repository as Docker shows it: "app", "user/app", "localhost:5000/a/b". */
export function familiarRepository(r: Reference): string {
  if (r.domain !== DEFAULT_DOMAIN && r.domain !== LEGACY_DEFAULT_DOMAIN) return repositoryName(r);
  const rest = r.path.startsWith('library/') ? r.path.slice('library/'.length) : '';
  return rest !== '' && !rest.includes('/') ? rest : r.path;
}

/** Docker's short form with tag and digest: "app:latest", "user/app:1", "localhost:5000/a/b:t". */
export function familiarName(r: Reference): string {
  return familiarRepository(r) + suffix(r);
}

/** Copy of r with a different tag (and no digest). */
export function withTag(r: Reference, tag: string): Reference {
  if (!TAG_RE.test(tag)) throw invalid(`${repositoryName(r)}:${tag}`, `invalid tag "${tag}"`);
  return { domain: r.domain, path: r.path, tag };
}
