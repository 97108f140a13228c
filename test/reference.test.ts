import { describe, expect, it } from 'vitest';
import {
  familiarName,
  familiarRepository,
  formatReference,
  parseReference,
  ReferenceError,
  repositoryName,
  withTag,
  type Reference,
} from '../image/reference.js';

const D = `sha256:${'a'.repeat(64)}` as const;
const HEX = 'b'.repeat(64);

// input, expected full form, expected familiar form, expected fields
const valid: [string, string, string, Reference][] = [
  ['app', 'docker.io/library/app:latest', 'app:latest', { domain: 'docker.io', path: 'library/app', tag: 'latest' }],
  ['app:1.2', 'docker.io/library/app:1.2', 'app:1.2', { domain: 'docker.io', path: 'library/app', tag: '1.2' }],
  ['user/app', 'docker.io/user/app:latest', 'user/app:latest', { domain: 'docker.io', path: 'user/app', tag: 'latest' }],
  ['user/app:1', 'docker.io/user/app:1', 'user/app:1', { domain: 'docker.io', path: 'user/app', tag: '1' }],
  ['docker.io/app', 'docker.io/library/app:latest', 'app:latest', { domain: 'docker.io', path: 'library/app', tag: 'latest' }],
  ['docker.io/library/app:x', 'docker.io/library/app:x', 'app:x', { domain: 'docker.io', path: 'library/app', tag: 'x' }],
  ['index.docker.io/app', 'docker.io/library/app:latest', 'app:latest', { domain: 'docker.io', path: 'library/app', tag: 'latest' }],
  ['index.docker.io/u/app:2', 'docker.io/u/app:2', 'u/app:2', { domain: 'docker.io', path: 'u/app', tag: '2' }],
  ['library/app', 'docker.io/library/app:latest', 'app:latest', { domain: 'docker.io', path: 'library/app', tag: 'latest' }],
  // library/ is stripped only when nothing follows it
  ['library/a/b', 'docker.io/library/a/b:latest', 'library/a/b:latest', { domain: 'docker.io', path: 'library/a/b', tag: 'latest' }],
  ['localhost/app', 'localhost/app:latest', 'localhost/app:latest', { domain: 'localhost', path: 'app', tag: 'latest' }],
  ['localhost:5000/a/b:t', 'localhost:5000/a/b:t', 'localhost:5000/a/b:t', { domain: 'localhost:5000', path: 'a/b', tag: 't' }],
  [
    `localhost:5000/a/b:t@${D}`,
    `localhost:5000/a/b:t@${D}`,
    `localhost:5000/a/b:t@${D}`,
    { domain: 'localhost:5000', path: 'a/b', tag: 't', digest: D },
  ],
  [`app@${D}`, `docker.io/library/app@${D}`, `app@${D}`, { domain: 'docker.io', path: 'library/app', digest: D }],
  ['127.0.0.1:5000/app', '127.0.0.1:5000/app:latest', '127.0.0.1:5000/app:latest', { domain: '127.0.0.1:5000', path: 'app', tag: 'latest' }],
  ['[::1]:5000/app:v1', '[::1]:5000/app:v1', '[::1]:5000/app:v1', { domain: '[::1]:5000', path: 'app', tag: 'v1' }],
  ['[fe80::1]/app', '[fe80::1]/app:latest', '[fe80::1]/app:latest', { domain: '[fe80::1]', path: 'app', tag: 'latest' }],
  ['ghcr.io/org/team/app:sha-1', 'ghcr.io/org/team/app:sha-1', 'ghcr.io/org/team/app:sha-1', { domain: 'ghcr.io', path: 'org/team/app', tag: 'sha-1' }],
  ['Registry.Example.COM/app', 'Registry.Example.COM/app:latest', 'Registry.Example.COM/app:latest', { domain: 'Registry.Example.COM', path: 'app', tag: 'latest' }],
  ['example.com/a.b_c__d---e/f', 'example.com/a.b_c__d---e/f:latest', 'example.com/a.b_c__d---e/f:latest', { domain: 'example.com', path: 'a.b_c__d---e/f', tag: 'latest' }],
  ['app:Latest_1.0-rc', 'docker.io/library/app:Latest_1.0-rc', 'app:Latest_1.0-rc', { domain: 'docker.io', path: 'library/app', tag: 'Latest_1.0-rc' }],
  ['app:_x', 'docker.io/library/app:_x', 'app:_x', { domain: 'docker.io', path: 'library/app', tag: '_x' }],
  // like Docker: without a slash, "localhost:5000" is the repository "localhost" with tag "5000"
  ['localhost:5000', 'docker.io/library/localhost:5000', 'localhost:5000', { domain: 'docker.io', path: 'library/localhost', tag: '5000' }],
  ['localhost', 'docker.io/library/localhost:latest', 'localhost:latest', { domain: 'docker.io', path: 'library/localhost', tag: 'latest' }],
  // a dot-less, colon-less first component is a path component, not a host
  ['myregistry/app', 'docker.io/myregistry/app:latest', 'myregistry/app:latest', { domain: 'docker.io', path: 'myregistry/app', tag: 'latest' }],
  [`a:${'x'.repeat(128)}`, `docker.io/library/a:${'x'.repeat(128)}`, `a:${'x'.repeat(128)}`, { domain: 'docker.io', path: 'library/a', tag: 'x'.repeat(128) }],
  // a 64-hex string with a tag is an ordinary name
  [`${HEX}:1`, `docker.io/library/${HEX}:1`, `${HEX}:1`, { domain: 'docker.io', path: `library/${HEX}`, tag: '1' }],
];

describe('parseReference: valid references', () => {
  it.each(valid)('%s', (input, full, familiar, fields) => {
    const r = parseReference(input);
    expect(r).toEqual(fields);
    expect(formatReference(r)).toBe(full);
    expect(familiarName(r)).toBe(familiar);
    // the full form is a fixed point
    expect(parseReference(full)).toEqual(fields);
    expect(parseReference(familiar)).toEqual(fields);
  });
});

// input, expected message (exact) or a fragment (RegExp)
const invalid: [string, string | RegExp][] = [
  ['', 'invalid reference "": empty'],
  ['Foo/bar', 'invalid reference "Foo/bar": repository name must be lowercase ("Foo")'],
  ['user/App', 'invalid reference "user/App": repository name must be lowercase ("App")'],
  ['example.com/App:1', 'invalid reference "example.com/App:1": repository name must be lowercase ("App")'],
  ['APP', 'invalid reference "APP": repository name must be lowercase ("APP")'],
  ['app:bad tag!', 'invalid reference "app:bad tag!": invalid tag "bad tag!"'],
  ['app:.x', 'invalid reference "app:.x": invalid tag ".x"'],
  ['app:-x', 'invalid reference "app:-x": invalid tag "-x"'],
  [`a:${'x'.repeat(129)}`, /invalid tag "x{129}": longer than 128 characters/],
  ['a@sha256:123', /^invalid reference "a@sha256:123": invalid digest "sha256:123": expected "sha256:" followed by 64/],
  [`a@sha256:${'A'.repeat(64)}`, /invalid digest "sha256:A{64}"/],
  [`a@sha512:${'a'.repeat(128)}`, /invalid digest "sha512:a+": unsupported algorithm "sha512"/],
  [`a@${D}@x`, /invalid digest "sha256:a{64}@x"/],
  ['app@', 'invalid reference "app@": empty digest after "@"'],
  ['app:', 'invalid reference "app:": empty tag (trailing colon)'],
  ['localhost:5000/app:', 'invalid reference "localhost:5000/app:": empty tag (trailing colon)'],
  [':tag', 'invalid reference ":tag": missing repository name'],
  [`@${D}`, `invalid reference "@${D}": missing repository name`],
  ['a//b', 'invalid reference "a//b": empty path component (double slash)'],
  ['example.com/a//b', 'invalid reference "example.com/a//b": empty path component (double slash)'],
  ['a/', 'invalid reference "a/": repository name must not end with "/"'],
  ['/a', 'invalid reference "/a": repository name must not start with "/"'],
  ['example.com/', 'invalid reference "example.com/": missing repository name after domain "example.com"'],
  ['localhost:abc/app', 'invalid reference "localhost:abc/app": invalid port "abc" in domain "localhost:abc"'],
  ['localhost:/app', 'invalid reference "localhost:/app": invalid domain "localhost:": empty port'],
  ['localhost:99999/app', /invalid port "99999" in domain "localhost:99999": out of range/],
  ['-bad.com/app', 'invalid reference "-bad.com/app": invalid domain "-bad.com"'],
  ['bad-.com/app', 'invalid reference "bad-.com/app": invalid domain "bad-.com"'],
  ['a..b.com/app', /invalid domain "a\.\.b\.com"/],
  ['my_reg.io/app', /invalid domain "my_reg\.io"/],
  [':5000/app', /invalid domain ":5000": empty host/],
  ['::1/app', /invalid domain "::1".*brackets/],
  ['[::1/app', /unterminated "\[" in IPv6 address/],
  ['[zz::1]:5000/app', /bad IPv6 address "\[zz::1\]"/],
  ['a b', /invalid repository name component "a b"/],
  ['a-/b', /invalid repository name component "a-"/],
  ['_a', /invalid repository name component "_a"/],
  ['a___b', /invalid repository name component "a___b"/],
  ['a.-b', /invalid repository name component "a\.-b"/],
  [HEX, `invalid reference "${HEX}": a 64-character hexadecimal string is an image ID, not a repository name`],
  [`a/${'b'.repeat(250)}`, /repository name too long \(262 characters after normalisation to "docker\.io\/\.\.\.", at most 255\)$/],
];

describe('parseReference: invalid references', () => {
  it.each(invalid)('%j', (input, msg) => {
    let err: unknown;
    try {
      parseReference(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ReferenceError);
    expect(err).toBeInstanceOf(Error);
    const m = (err as Error).message;
    if (typeof msg === 'string') expect(m).toBe(msg);
    else expect(m).toMatch(msg);
    // every message names the input
    expect(m.startsWith(`invalid reference ${JSON.stringify(input)}: `)).toBe(true);
  });
});

describe('length limit', () => {
  it('counts the normalised name, docker.io/library/ included', () => {
    const ok = 'a'.repeat(255 - 'docker.io/library/'.length);
    expect(repositoryName(parseReference(ok))).toHaveLength(255);
    expect(() => parseReference(ok + 'a')).toThrow(/too long \(256 characters/);
  });
  it('does not count tag and digest', () => {
    const ok = 'a'.repeat(255 - 'docker.io/library/'.length);
    expect(() => parseReference(`${ok}:${'t'.repeat(128)}@${D}`)).not.toThrow();
  });
});

describe('formatting helpers', () => {
  it('repositoryName drops tag and digest', () => {
    expect(repositoryName(parseReference('app'))).toBe('docker.io/library/app');
    expect(repositoryName(parseReference(`localhost:5000/a/b:t@${D}`))).toBe('localhost:5000/a/b');
  });
  it('familiarRepository', () => {
    expect(familiarRepository(parseReference('app:1'))).toBe('app');
    expect(familiarRepository(parseReference('user/app'))).toBe('user/app');
    expect(familiarRepository(parseReference('quay.io/library/app'))).toBe('quay.io/library/app');
  });
  it('familiarName of a hand-built reference with the legacy domain', () => {
    expect(familiarName({ domain: 'index.docker.io', path: 'library/app', tag: 'x' })).toBe('app:x');
  });
  it('withTag replaces tag and digest', () => {
    const r = withTag(parseReference(`localhost:5000/a:t@${D}`), 'v2');
    expect(formatReference(r)).toBe('localhost:5000/a:v2');
    expect(() => withTag(r, 'bad tag')).toThrow('invalid reference "localhost:5000/a:bad tag": invalid tag "bad tag"');
  });
  it('ReferenceError takes a plain message like Error', () => {
    const e = new ReferenceError('boom');
    expect(e.message).toBe('boom');
    expect(e).toBeInstanceOf(Error);
  });
});
