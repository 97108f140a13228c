// The Debian base recipe (fixtures/debian): APT sources parsing (one-line and
// deb822), the post-debootstrap cleanup on a fake rootfs, and the real recipe
// end to end — debootstrap from this machine's mirror (cached under
// TSBUILD_FIXTURES_CACHE or /var/cache/tsbuild-fixtures, ~30 s the first time),
// import, a second run that reuses both, and a container from the image.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AptSourcesError, debianMirror, imageSources, parseDeb822, parseOneLine, readAptSources, renderDeb822 } from '../fixtures/debian/apt-sources.js';
import { cleanRootfs, makeDebianBase } from '../fixtures/debian/make-base.js';
import { mknod, S_IFCHR } from '../image/native.js';
import { TempDirs } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

function write(root: string, rel: string, content: string): void {
  mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  writeFileSync(path.join(root, rel), content);
}

describe('APT sources', () => {
  it('parses one-line entries with options and comments', () => {
    const s = parseOneLine(
      [
        '# the main archive',
        'deb http://mirror.example/debian bookworm main contrib  # trailing comment',
        'deb-src http://mirror.example/debian bookworm main',
        'deb [ arch=amd64,arm64 signed-by=/usr/share/keyrings/k.gpg ] http://sec.example/debian-security bookworm-security main',
        '',
      ].join('\n'),
      '/etc/apt/sources.list',
    );
    expect(s).toHaveLength(3);
    expect(s[0]).toMatchObject({ types: ['deb'], uris: ['http://mirror.example/debian'], suites: ['bookworm'], components: ['main', 'contrib'], where: '/etc/apt/sources.list:2' });
    expect(s[1]!.types).toEqual(['deb-src']);
    expect(Object.fromEntries(s[2]!.options)).toEqual({ Architectures: 'amd64 arm64', 'Signed-By': '/usr/share/keyrings/k.gpg' });
  });

  it('names the file and line of a bad one-line entry', () => {
    expect(() => parseOneLine('deb http://x/debian bookworm main\ndeeb http://x bookworm', '/etc/apt/sources.list.d/x.list')).toThrow(
      /x\.list:2: expected "deb" or "deb-src".*"deeb"/,
    );
    expect(() => parseOneLine('deb http://only-a-uri', 'f.list')).toThrow(/f\.list:1: an entry needs a URI and a suite/);
    expect(() => parseOneLine('deb [trusted] http://x bookworm main', 'f.list')).toThrow(AptSourcesError);
  });

  it('parses deb822 paragraphs: comments, continuation lines, Enabled: no', () => {
    const s = parseDeb822(
      [
        'Types: deb',
        '# http://snapshot.example/archive/debian/20250520T000000Z',
        'URIs: http://mirror.example/debian',
        'Suites: bookworm bookworm-updates',
        'Components: main',
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
        '',
        'Types: deb deb-src',
        'URIs: http://off.example/debian',
        'Suites: bookworm',
        'Components: main',
        'Enabled: no',
        '',
        '',
        'Types: deb',
        'URIs: http://sec.example/debian-security',
        'Suites: bookworm-security',
        'Components: main',
        'Signed-By:',
        ' -----BEGIN PGP PUBLIC KEY BLOCK-----',
        ' .',
        ' abc',
      ].join('\n'),
      '/etc/apt/sources.list.d/debian.sources',
    );
    expect(s).toHaveLength(2);
    expect(s[0]).toMatchObject({ uris: ['http://mirror.example/debian'], suites: ['bookworm', 'bookworm-updates'], where: '/etc/apt/sources.list.d/debian.sources:1' });
    expect(s[1]!.where).toBe('/etc/apt/sources.list.d/debian.sources:15');
    expect(s[1]!.options.get('Signed-By')).toBe('\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc');
    expect(() => parseDeb822('Types: deb\nSuites: bookworm\n', 'a.sources')).toThrow(/a\.sources:1: a deb822 source needs Types, URIs and Suites/);
    expect(() => parseDeb822('Types: deb\nnot a field\n', 'a.sources')).toThrow(/a\.sources:2: expected "Field: value"/);
  });

  it('reads sources.list, *.list and *.sources in order and ignores other names', async () => {
    const apt = dirs.make('apt');
    write(apt, 'sources.list', '# nothing here\n');
    write(apt, 'sources.list.d/b.list', 'deb http://b.example/debian bookworm main\n');
    write(apt, 'sources.list.d/a.sources', 'Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\n');
    write(apt, 'sources.list.d/c.list.disabled', 'deb http://c.example/debian bookworm main\n');
    write(apt, 'sources.list.d/d.sources.save', 'Types: deb\nURIs: http://d.example/debian\nSuites: bookworm\n');
    const s = await readAptSources(apt);
    expect(s.map((x) => x.uris[0])).toEqual(['http://a.example/debian', 'http://b.example/debian']);
    expect(debianMirror(s, 'bookworm', {})).toBe('http://a.example/debian');
    expect(await readAptSources(path.join(apt, 'missing'))).toEqual([]);
  });

  it('picks the mirror for the suite, honours TSBUILD_DEBIAN_MIRROR, and says what to do when there is none', () => {
    const s = parseOneLine(
      'deb http://sec.example/debian-security bookworm-security main\ndeb http://contrib.example/debian bookworm contrib\ndeb http://m.example/debian bookworm main\n',
      'x.list',
    );
    expect(debianMirror(s, 'bookworm', {})).toBe('http://m.example/debian');
    expect(debianMirror(s, 'bookworm', { TSBUILD_DEBIAN_MIRROR: 'http://override.example/debian' })).toBe('http://override.example/debian');
    expect(() => debianMirror(s, 'trixie', {})).toThrow(/no "deb" source for suite trixie.*TSBUILD_DEBIAN_MIRROR=/);
  });

  it('keeps the suite, -updates and -security for the image and renders deb822 that parses back', () => {
    const s = parseOneLine(
      [
        'deb http://m.example/debian bookworm main',
        'deb http://m.example/debian bookworm-updates main',
        'deb http://m.example/debian bookworm-backports main',
        'deb-src http://m.example/debian bookworm main',
        'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://s.example/debian-security bookworm-security main',
        'deb https://vendor.example/apt stable main',
      ].join('\n'),
      'x.list',
    );
    const img = imageSources(s, 'bookworm');
    expect(img.map((x) => [x.uris[0], x.suites.join(' ')])).toEqual([
      ['http://m.example/debian', 'bookworm'],
      ['http://m.example/debian', 'bookworm-updates'],
      ['http://s.example/debian-security', 'bookworm-security'],
    ]);
    const text = renderDeb822(img);
    expect(text).toContain('Types: deb\nURIs: http://s.example/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n');
    const back = parseDeb822(text, 'rendered');
    expect(back.map((x) => [x.uris[0], x.suites, x.components, Object.fromEntries(x.options)])).toEqual(
      img.map((x) => [x.uris[0], x.suites, x.components, Object.fromEntries(x.options)]),
    );
  });
});

describe('cleanRootfs', () => {
  it('removes apt lists, caches, logs, backups, device nodes and host files; slims docs; pins shadow dates; writes APT sources', async () => {
    const r = dirs.make('fake-rootfs');
    write(r, 'var/lib/apt/lists/m.example_debian_dists_bookworm_InRelease', 'Date: x\n');
    write(r, 'var/cache/apt/pkgcache.bin', 'x');
    write(r, 'var/cache/apt/archives/bash_5.2_amd64.deb', 'x');
    mkdirSync(path.join(r, 'var/cache/apt/archives/partial'), { recursive: true });
    write(r, 'var/log/dpkg.log', 'x');
    write(r, 'var/log/bootstrap.log', 'x');
    write(r, 'var/log/wtmp', 'login records');
    write(r, 'var/log/apt/history.log', 'x');
    write(r, 'var/cache/debconf/config.dat-old', 'x');
    write(r, 'var/cache/debconf/config.dat', 'keep');
    write(r, 'var/lib/dpkg/status-old', 'x');
    write(r, 'var/lib/dpkg/status', 'keep');
    write(r, 'var/cache/ldconfig/aux-cache', 'x');
    write(r, 'etc/passwd-', 'x');
    write(r, 'etc/passwd', 'root:x:0:0:root:/root:/bin/bash\n');
    write(r, 'etc/shadow', 'root:*:20779:0:99999:7:::\nnobody:*:20779:0:99999:7:::\n');
    write(r, 'etc/hostname', 'buildhost\n');
    write(r, 'etc/resolv.conf', 'nameserver 10.0.0.1\n');
    write(r, 'etc/apt/sources.list', 'deb http://m.example/debian bookworm main\n');
    mkdirSync(path.join(r, 'etc/apt/apt.conf.d'), { recursive: true });
    mkdirSync(path.join(r, 'dev/pts'), { recursive: true });
    mknod(path.join(r, 'dev/null'), S_IFCHR | 0o666, 1, 3);
    write(r, 'usr/share/doc/bash/copyright', 'GPL');
    write(r, 'usr/share/doc/bash/changelog.Debian.gz', 'x');
    write(r, 'usr/share/man/man1/bash.1.gz', 'x');
    write(r, 'usr/share/locale/de/LC_MESSAGES/bash.mo', 'x');
    write(r, 'usr/share/keyrings/debian-archive-keyring.gpg', 'key');
    write(r, 'debootstrap/debootstrap.log', 'x');

    const sources = parseOneLine(
      'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m.example/debian bookworm main\n' +
        'deb [signed-by=/etc/apt/host-only.gpg] http://s.example/debian-security bookworm-security main\n',
      'x.list',
    );
    const epoch = 1_783_764_997; // 2026-07-11
    await cleanRootfs(r, { epoch, sources, validUntilOff: true });

    const ls = (rel: string) => readdirSync(path.join(r, rel)).sort();
    expect(ls('var/lib/apt/lists')).toEqual([]);
    expect(ls('var/cache/apt')).toEqual(['archives']);
    expect(ls('var/cache/apt/archives')).toEqual(['partial']);
    expect(ls('var/log')).toEqual(['apt', 'wtmp']);
    expect(ls('var/log/apt')).toEqual([]);
    expect(readFileSync(path.join(r, 'var/log/wtmp'), 'utf8')).toBe('');
    expect(ls('var/cache/debconf')).toEqual(['config.dat']);
    expect(ls('var/lib/dpkg')).toEqual(['status']);
    expect(existsSync(path.join(r, 'var/cache/ldconfig/aux-cache'))).toBe(false);
    expect(existsSync(path.join(r, 'debootstrap'))).toBe(false);
    expect(ls('dev')).toEqual([]);
    for (const f of ['etc/passwd-', 'etc/hostname', 'etc/resolv.conf', 'etc/apt/sources.list']) expect(existsSync(path.join(r, f)), f).toBe(false);
    const day = Math.floor(epoch / 86400);
    expect(readFileSync(path.join(r, 'etc/shadow'), 'utf8')).toBe(`root:*:${day}:0:99999:7:::\nnobody:*:${day}:0:99999:7:::\n`);
    expect(ls('usr/share/doc/bash')).toEqual(['copyright']);
    expect(ls('usr/share/man')).toEqual([]);
    expect(ls('usr/share/locale')).toEqual([]);
    expect(readFileSync(path.join(r, 'etc/dpkg/dpkg.cfg.d/docker-slim'), 'utf8')).toContain('path-include /usr/share/doc/*/copyright');
    // The keyring the image has stays named; one only the host has is dropped.
    expect(readFileSync(path.join(r, 'etc/apt/sources.list.d/debian.sources'), 'utf8')).toBe(
      'Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' +
        'Types: deb\nURIs: http://s.example/debian-security\nSuites: bookworm-security\nComponents: main\n',
    );
    expect(ls('etc/apt/apt.conf.d')).toEqual(['docker-autoremove-suggests', 'docker-clean', 'docker-gzip-indexes', 'docker-no-languages', 'tsbuild-snapshot']);
    expect(lstatSync(path.join(r, 'usr/share/keyrings/debian-archive-keyring.gpg')).isFile()).toBe(true);
  });
});

describe('makeDebianBase (real debootstrap from the machine\'s mirror)', () => {
  it('makes or reuses the tarball, imports local/debian:bookworm once, and the image runs', async () => {
    const root = dirs.make('debian-root');
    const log: string[] = [];
    const first = await makeDebianBase({ root, log: (l) => log.push(l) });
    expect(first.importStatus).toBe('imported');
    expect(first.tag).toBe('local/debian:bookworm');
    expect(first.tarDigest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(first.tarSize).toBeGreaterThan(40e6);
    expect(first.tarSize).toBeLessThan(150e6); // minbase, slimmed: ~77 MB

    const second = await makeDebianBase({ root, log: (l) => log.push(l) });
    expect(second).toMatchObject({ cached: true, importStatus: 'skipped', imageId: first.imageId, tarDigest: first.tarDigest });
    expect(second.timings).toEqual({});
    expect(log.join('\n')).toMatch(/import skipped/);

    const insp = spawnSync('node', [CLI, '--root', root, 'inspect', '-f', '{{json .Config.Cmd}} {{json .Config.Env}}', 'local/debian:bookworm'], { encoding: 'utf8' });
    expect(insp.status, insp.stderr).toBe(0);
    expect(insp.stdout.trim()).toBe('["bash"] ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]');

    const run = spawnSync(
      'node',
      [CLI, '--root', root, 'run', '--rm', 'local/debian:bookworm', 'sh', '-c', '. /etc/os-release; echo $VERSION_CODENAME; ls /var/lib/apt/lists | wc -l; grep -c ^URIs: /etc/apt/sources.list.d/debian.sources; command -v apt-get'],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    // One deb822 paragraph per bookworm source of this machine.
    const paragraphs = imageSources(await readAptSources(), 'bookworm').length || 1;
    expect(run.stdout.split('\n')).toEqual(['bookworm', '0', String(paragraphs), '/usr/bin/apt-get', '']);
  }, 300_000);
});
