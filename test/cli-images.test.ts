// The image commands through the real CLI binary: import, images, tag, rmi,
// inspect, history, prune — outputs, exit codes and what is left on disk.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, extract as tarExtract } from 'tar-stream';
import { createGunzip } from 'node:zlib';
import { TempDirs } from './helpers.js';
import { makeBusyboxRootfs } from '../fixtures/busybox/make-rootfs.js';

const CLI = path.resolve('dist/cli/main.js');
const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

function cli(root: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('node', [CLI, '--root', root, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, input: '' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

let rootfsTar: string;
let work: string;
beforeAll(async () => {
  work = dirs.make('cli');
  rootfsTar = path.join(work, 'busybox.tar');
  await makeBusyboxRootfs(rootfsTar);
});

describe('import', () => {
  it('imports a tarball with --change and shows it in images/inspect/history', () => {
    const root = dirs.make('root');
    const imp = cli(root, ['import', '-c', 'CMD ["sh"]', '--change', 'ENV A=1 B="two words"', '-c', 'WORKDIR /srv', '-c', 'EXPOSE 80', '-m', 'base', rootfsTar, 'busybox:1'], { SOURCE_DATE_EPOCH: '1704067200' });
    expect(imp.code, imp.err).toBe(0);
    const id = imp.out.trim();
    expect(id).toMatch(/^sha256:[a-f0-9]{64}$/);

    const images = cli(root, ['images']);
    expect(images.code).toBe(0);
    const lines = images.out.trim().split('\n');
    expect(lines[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(lines[1]).toMatch(new RegExp(`^busybox\\s+1\\s+${id.slice(7, 19)}\\s+`));

    const json = cli(root, ['images', '--format', 'json']);
    const row = JSON.parse(json.out.trim().split('\n')[0]!);
    expect(row).toMatchObject({ Repository: 'busybox', Tag: '1', ID: id.slice(7, 19) });

    const insp = JSON.parse(cli(root, ['inspect', 'busybox:1']).out);
    expect(insp).toHaveLength(1);
    expect(insp[0].Id).toBe(id);
    expect(insp[0].Config.Cmd).toEqual(['sh']);
    expect(insp[0].Config.Env).toEqual(['A=1', 'B=two words']);
    expect(insp[0].Config.WorkingDir).toBe('/srv');
    expect(insp[0].Config.ExposedPorts).toEqual({ '80/tcp': {} });
    expect(insp[0].Created).toBe('2024-01-01T00:00:00.000Z');
    expect(insp[0].RootFS.Layers).toHaveLength(1);
    expect(insp[0].Architecture).toBe('amd64');

    const hist = cli(root, ['history', 'busybox:1']);
    expect(hist.out).toMatch(/IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT/);
    expect(hist.out).toContain('base');

    expect(cli(root, ['inspect', '--format', '{{.Config.WorkingDir}} {{json .Config.Cmd}}', id.slice(7, 15)]).out.trim()).toBe('/srv ["sh"]');
  });

  it('gives the same image ID for the same rootfs and SOURCE_DATE_EPOCH', () => {
    const a = cli(dirs.make('root'), ['import', '-m', 'x', rootfsTar, 'a'], { SOURCE_DATE_EPOCH: '1704067200' });
    const b = cli(dirs.make('root'), ['import', '-m', 'x', rootfsTar, 'b'], { SOURCE_DATE_EPOCH: '1704067200' });
    expect(a.code).toBe(0);
    expect(a.out).toBe(b.out);
  });

  it('imports a directory, keeping modes, owners and symlinks', async () => {
    const root = dirs.make('root');
    const src = dirs.make('src');
    mkdirSync(path.join(src, 'bin'));
    writeFileSync(path.join(src, 'bin', 'tool'), '#!/bin/sh\n');
    chownSync(path.join(src, 'bin', 'tool'), 1234, 5678);
    chmodSync(path.join(src, 'bin', 'tool'), 0o4755); // after chown, which clears setuid
    symlinkSync('bin/tool', path.join(src, 'link'));
    const imp = cli(root, ['import', src, 'dirimg']);
    expect(imp.code, imp.err).toBe(0);
    expect(cli(root, ['images', '-q']).out.trim()).toBe(imp.out.trim().slice(7, 19));
    // Read the stored layer back and check its entries.
    const desc = JSON.parse(cli(root, ['inspect', 'dirimg']).out)[0].Descriptor;
    const manifest = JSON.parse(readFileSync(path.join(root, 'blobs', 'sha256', desc.digest.slice(7)), 'utf8'));
    const entries: Record<string, { mode: number; uid: number; gid: number; type: string; linkname: string | null }> = {};
    const ex = tarExtract();
    ex.on('entry', (h, stream, next) => {
      entries[h.name] = { mode: h.mode!, uid: h.uid!, gid: h.gid!, type: h.type!, linkname: h.linkname ?? null };
      stream.resume();
      stream.on('end', next);
    });
    await pipeline(createReadStream(path.join(root, 'blobs', 'sha256', manifest.layers[0].digest.slice(7))), createGunzip(), ex);
    expect(entries['bin/tool']).toMatchObject({ mode: 0o4755, uid: 1234, gid: 5678, type: 'file' });
    expect(entries['link']).toMatchObject({ type: 'symlink', linkname: 'bin/tool' });
    expect(Object.keys(entries)).toEqual(['bin/', 'bin/tool', 'link']);
  });

  it('rejects a hostile tarball with a clear error and leaves nothing behind', async () => {
    const root = dirs.make('root');
    const evil = path.join(work, 'evil.tar');
    const p = tarPack();
    const done = pipeline(p, createWriteStream(evil));
    p.entry({ name: 'ok.txt' }, 'fine');
    p.entry({ name: 'esc', type: 'symlink', linkname: '/' });
    p.entry({ name: '../../../../tmp/tsbuild-escape-marker' }, 'pwned');
    p.finalize();
    await done;
    const r = cli(root, ['import', evil, 'evil']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^Error: .*evil\.tar/);
    expect(r.err).toMatch(/\.\./);
    expect(existsSync('/tmp/tsbuild-escape-marker')).toBe(false);
    expect(cli(root, ['images', '-q']).out).toBe('');
    expect(readdirSync(path.join(root, 'tmp'))).toEqual([]);
    expect(readdirSync(path.join(root, 'blobs', 'sha256'))).toEqual([]);
  });

  it('fails clearly on a missing file, a bad name and a bad --change', () => {
    const root = dirs.make('root');
    const missing = cli(root, ['import', '/nonexistent/rootfs.tar', 'x']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/\/nonexistent\/rootfs\.tar/);
    const badName = cli(root, ['import', rootfsTar, 'Bad/Name']);
    expect(badName.code).toBe(1);
    expect(badName.err).toMatch(/invalid reference "Bad\/Name"/);
    const badChange = cli(root, ['import', '-c', 'RUN echo hi', rootfsTar, 'x']);
    expect(badChange.code).toBe(1);
    expect(badChange.err).toMatch(/RUN is not supported by --change/);
    const usage = cli(root, ['import']);
    expect(usage.code).toBe(125);
    expect(usage.err).toMatch(/requires at least 1 and at most 2 arguments/);
    expect(existsSync(path.join(root, 'index.json'))).toBe(false);
  });
});

describe('tag, rmi, prune', () => {
  it('tags, untags and deletes like docker', () => {
    const root = dirs.make('root');
    const id = cli(root, ['import', rootfsTar, 'base:1']).out.trim();
    expect(cli(root, ['tag', 'base:1', 'localhost:5000/team/base:v2']).code).toBe(0);
    expect(cli(root, ['tag', 'base:1', 'other']).code).toBe(0);
    const repos = cli(root, ['images', '--format', '{{.Repository}}:{{.Tag}}']).out.trim().split('\n').sort();
    expect(repos).toEqual(['base:1', 'localhost:5000/team/base:v2', 'other:latest']);

    // By ID with several tags: refused without -f.
    const conflict = cli(root, ['rmi', id.slice(7, 19)]);
    expect(conflict.code).toBe(1);
    expect(conflict.err).toMatch(/referenced in multiple repositories/);

    // By tag: only untags while other tags remain.
    const untag = cli(root, ['rmi', 'other']);
    expect(untag.out.trim()).toBe('Untagged: other:latest');
    expect(cli(root, ['rmi', 'localhost:5000/team/base:v2']).out.trim()).toBe('Untagged: localhost:5000/team/base:v2');
    const last = cli(root, ['rmi', 'base:1']);
    expect(last.out.trim().split('\n')).toEqual(['Untagged: base:1', `Deleted: ${id}`]);
    expect(readdirSync(path.join(root, 'blobs', 'sha256'))).toEqual([]);
    expect(existsSync(path.join(root, 'snapshots')) ? readdirSync(path.join(root, 'snapshots')) : []).toEqual([]);

    const gone = cli(root, ['rmi', 'base:1']);
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/No such image: base:1/);
    expect(cli(root, ['tag', 'nope', 'x']).err).toMatch(/No such image: nope/);
    expect(cli(root, ['tag', 'nope', 'x@sha256:' + '1'.repeat(64)]).code).toBe(1);
  });

  it('refuses to remove an image a container uses unless forced', () => {
    const root = dirs.make('root');
    const id = cli(root, ['import', rootfsTar, 'used']).out.trim();
    // A container record as the runtime writes it.
    mkdirSync(path.join(root, 'containers', 'c0ffee'), { recursive: true });
    writeFileSync(path.join(root, 'containers', 'c0ffee', 'config.json'), JSON.stringify({ Id: 'c0ffee', Name: 'web', Image: id }));
    const refused = cli(root, ['rmi', 'used']);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/image is being used by container c0ffee/);
    const forced = cli(root, ['rmi', '-f', 'used']);
    expect(forced.code).toBe(0);
    expect(forced.out.trim()).toBe('Untagged: used:latest');
    // Still present as a dangling image, blobs intact, because the container needs it.
    expect(cli(root, ['images', '--format', '{{.Repository}} {{.ID}}']).out.trim()).toBe(`<none> ${id.slice(7, 19)}`);
    expect(cli(root, ['prune', '-f']).code).toBe(0);
    expect(cli(root, ['inspect', id]).code).toBe(0);
  });

  it('prune removes dangling images and needs -f or a yes', () => {
    const root = dirs.make('root');
    cli(root, ['import', rootfsTar, 'keep']);
    const src = dirs.make('src');
    writeFileSync(path.join(src, 'f'), 'x');
    const dangling = cli(root, ['import', src]).out.trim();
    expect(cli(root, ['images', '-q']).out.trim().split('\n')).toHaveLength(2);
    const noConfirm = cli(root, ['prune']);
    expect(noConfirm.out).toMatch(/Are you sure you want to continue\? \[y\/N\]/);
    expect(cli(root, ['images', '-q']).out.trim().split('\n')).toHaveLength(2);
    const pr = cli(root, ['prune', '-f']);
    expect(pr.code).toBe(0);
    expect(pr.out).toContain(`deleted: ${dangling}`);
    expect(pr.out).toMatch(/Total reclaimed space: \d/);
    expect(cli(root, ['images', '--format', '{{.Repository}}']).out.trim()).toBe('keep');
    const all = cli(root, ['prune', '-a', '-f']);
    expect(all.code).toBe(0);
    expect(cli(root, ['images', '-q']).out).toBe('');
    expect(readdirSync(path.join(root, 'blobs', 'sha256'))).toEqual([]);
  });

  it('reports unknown commands and flags like docker', () => {
    const root = dirs.make('root');
    const unk = cli(root, ['frobnicate']);
    expect(unk.code).toBe(1);
    expect(unk.err).toMatch(/'frobnicate' is not a tsbuild command/);
    const flag = cli(root, ['images', '--bogus']);
    expect(flag.code).toBe(125);
    expect(flag.err).toMatch(/unknown flag: --bogus/);
    const missing = cli(root, ['inspect', 'nothing-here']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/No such object: nothing-here/);
    expect(JSON.parse(missing.out)).toEqual([]);
  });
});
