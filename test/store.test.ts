// Content store: verified ingest, atomic index, cross-process safety, GC, and
// consistency after a SIGKILL in the middle of a large import.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import { Store, DigestMismatchError } from '../image/store.js';
import { sha256 } from '../image/digest.js';
import { TempDirs } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

function cli(root: string, ...args: string[]) {
  return spawnSync('node', [CLI, '--root', root, ...args], { encoding: 'utf8' });
}

/** Every blob in the store hashes to its own name. */
function assertStoreConsistent(root: string) {
  const blobDir = path.join(root, 'blobs', 'sha256');
  for (const name of readdirSync(blobDir)) {
    const h = createHash('sha256').update(readFileSync(path.join(blobDir, name))).digest('hex');
    expect(h, `blob ${name}`).toBe(name);
  }
}

describe('blobs', () => {
  it('stores content under its digest and reads it back verified', async () => {
    const store = await Store.open(dirs.make('store'));
    const info = await store.putBlob('hello');
    expect(info.digest).toBe(sha256('hello'));
    expect(info.size).toBe(5);
    expect((await store.readBlob(info.digest)).toString()).toBe('hello');
    expect(await store.hasBlob(info.digest)).toBe(true);
    expect(readdirSync(store.tmpDir)).toEqual([]);
  });

  it('rejects content that does not match the expected digest or size, leaving nothing behind', async () => {
    const store = await Store.open(dirs.make('store'));
    const wrong = sha256('something else');
    await expect(store.putBlob('hello', { digest: wrong })).rejects.toBeInstanceOf(DigestMismatchError);
    await expect(store.ingest(Readable.from([Buffer.from('hello')]), { size: 4 })).rejects.toThrow(/size mismatch/);
    expect(await store.hasBlob(wrong)).toBe(false);
    expect(await store.hasBlob(sha256('hello'))).toBe(false);
    expect(readdirSync(path.join(store.root, 'blobs', 'sha256'))).toEqual([]);
    expect(readdirSync(store.tmpDir)).toEqual([]);
  });

  it('a failing input stream leaves no temp file and no blob', async () => {
    const store = await Store.open(dirs.make('store'));
    const bad = new Readable({
      read() {
        this.push(Buffer.alloc(1000, 1));
        this.destroy(new Error('connection reset'));
      },
    });
    await expect(store.ingest(bad)).rejects.toThrow(/connection reset/);
    expect(readdirSync(store.tmpDir)).toEqual([]);
    expect(readdirSync(path.join(store.root, 'blobs', 'sha256'))).toEqual([]);
  });

  it('detects a corrupted blob on read', async () => {
    const store = await Store.open(dirs.make('store'));
    const { digest } = await store.putBlob('original');
    writeFileSync(store.blobPath(digest), 'tampered');
    await expect(store.readBlob(digest)).rejects.toThrow(/does not match its digest/);
  });

  it('rejects malformed digests before touching the filesystem', async () => {
    const store = await Store.open(dirs.make('store'));
    expect(() => store.blobPath('sha256:../../etc/passwd' as never)).toThrow(/not a valid sha256 digest/);
    expect(() => store.blobPath('md5:abc' as never)).toThrow(/unsupported algorithm/);
  });
});

describe('opening', () => {
  it('explains an unusable state directory instead of a bare errno', () => {
    // A directory tsbuild may not write to: owned by nobody, and this root process
    // runs the CLI without the capabilities that bypass file permissions.
    const parent = dirs.make('noperm');
    chownSync(parent, 65534, 65534);
    chmodSync(parent, 0o755);
    const r = spawnSync('setpriv', ['--bounding-set=-dac_override,-dac_read_search,-fowner', '--inh-caps=-all', 'node', CLI, '--root', path.join(parent, 'root'), 'images'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot use the tsbuild state directory .*\(EACCES\): run tsbuild as root, or point --root \/ TSBUILD_ROOT at a writable directory/);
    expect(existsSync(path.join(parent, 'root'))).toBe(false);
  });
});

describe('index', () => {
  it('keeps every update when many processes write at once', async () => {
    const root = dirs.make('store');
    await Store.open(root);
    const storeModule = path.resolve('dist/image/store.js');
    // 8 processes x 10 read-modify-write updates each, all on the same index.json.
    const script = `
      const { Store } = await import(${JSON.stringify(storeModule)});
      const s = await Store.open(process.argv[1]);
      for (let i = 0; i < 10; i++) {
        await s.updateIndex((idx) => { idx.tags['docker.io/library/p' + process.argv[2] + ':' + i] = 'sha256:' + '0'.repeat(64); });
      }`;
    const procs = Array.from({ length: 8 }, (_, p) =>
      new Promise<number>((resolve) => spawn('node', ['--input-type=module', '-e', script, root, String(p)], { stdio: 'inherit' }).on('exit', (c) => resolve(c ?? 1))),
    );
    expect(await Promise.all(procs)).toEqual(Array(8).fill(0));
    const idx = JSON.parse(readFileSync(path.join(root, 'index.json'), 'utf8'));
    expect(Object.keys(idx.tags)).toHaveLength(80);
    expect(readdirSync(root).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('reports a damaged index clearly', async () => {
    const root = dirs.make('store');
    const store = await Store.open(root);
    writeFileSync(path.join(root, 'index.json'), '{ not json');
    await expect(store.readIndex()).rejects.toThrow(/index\.json is not valid JSON/);
  });
});

describe('garbage collection', () => {
  it('removes unreferenced blobs and orphaned temp files of dead processes only', async () => {
    const store = await Store.open(dirs.make('store'));
    const cfg = await store.putBlob(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [] } }));
    const layer = await store.putBlob('layer-bytes');
    const manifest = await store.putBlob(
      JSON.stringify({ schemaVersion: 2, config: { digest: cfg.digest, size: cfg.size, mediaType: 'x' }, layers: [{ digest: layer.digest, size: layer.size, mediaType: 'y' }] }),
    );
    const orphan = await store.putBlob('nobody needs me');
    await store.updateIndex((idx) => {
      idx.images[manifest.digest] = { digest: manifest.digest, size: manifest.size, mediaType: 'x', config: cfg.digest, added: new Date().toISOString() };
    });
    // A temp file of a dead writer, and one of a live one (this process's parent).
    writeFileSync(path.join(store.tmpDir, 'ingest-999999-dead'), 'x');
    writeFileSync(path.join(store.tmpDir, `ingest-${process.ppid}-live`), 'x');
    const res = await store.gc();
    expect(res.removed).toEqual([orphan.digest]);
    expect(res.tmpRemoved).toBe(1);
    for (const d of [cfg, layer, manifest]) expect(await store.hasBlob(d.digest)).toBe(true);
    expect(await store.hasBlob(orphan.digest)).toBe(false);
    expect(readdirSync(store.tmpDir)).toEqual([`ingest-${process.ppid}-live`]);
  });
});

describe('crash safety', () => {
  let bigTar: string;
  beforeAll(async () => {
    // A rootfs tarball large enough that importing it takes a while (~256 MB of random data).
    const dir = dirs.make('bigtar');
    bigTar = path.join(dir, 'big.tar');
    const p = tarPack();
    const done = pipeline(p, createWriteStream(bigTar));
    for (let i = 0; i < 4; i++) {
      const size = 64 << 20;
      const entry = p.entry({ name: `data${i}.bin`, size, mode: 0o644, mtime: new Date(0) });
      for (let off = 0; off < size; off += 1 << 20) {
        if (!entry.write(randomBytes(1 << 20))) await new Promise((r) => entry.once('drain', r));
      }
      entry.end();
      await new Promise((r) => entry.once('finish', r));
    }
    p.finalize();
    await done;
  });

  it('a SIGKILLed import leaves a consistent store that the next command can use and prune', async () => {
    const root = dirs.make('store');
    mkdirSync(root, { recursive: true });
    // Seed the store with a small image so there is something to stay intact.
    const small = dirs.make('small');
    writeFileSync(path.join(small, 'hello'), 'hi\n');
    expect(cli(root, 'import', small, 'small:1').status).toBe(0);
    const before = cli(root, 'images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}').stdout;

    const child = spawn('node', [CLI, '--root', root, 'import', bigTar, 'big:1'], { stdio: 'ignore' });
    // Wait until the import is visibly writing (temp files in the store), then kill it hard.
    const deadline = Date.now() + 60_000;
    const tmpUsed = () => readdirSync(path.join(root, 'tmp')).length > 0;
    while (!tmpUsed() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(tmpUsed()).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    assertStoreConsistent(root);
    const after = cli(root, 'images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}');
    expect(after.status).toBe(0);
    expect(after.stdout).toBe(before);
    expect(after.stdout).not.toContain('big');
    const prune = cli(root, 'prune', '-f');
    expect(prune.status, prune.stderr).toBe(0);
    expect(readdirSync(path.join(root, 'tmp'))).toEqual([]);
    const snaps = path.join(root, 'snapshots');
    if (existsSync(snaps)) expect(readdirSync(snaps).filter((n) => n.startsWith('tmp-'))).toEqual([]);
    // The surviving image is still whole.
    expect(cli(root, 'inspect', 'small:1').status).toBe(0);
    assertStoreConsistent(root);
    expect(existsSync(path.join(root, 'index.json'))).toBe(true);
  });
});
