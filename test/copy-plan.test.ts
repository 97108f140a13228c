// COPY's planned layer (builder/layer-plan.ts): the tar made from the plan must
// be byte for byte what the generic layer writer makes of the written dir, for
// trees with hardlinks, symlinks, setuid bits, xattrs, devices, empty dirs,
// copied-up image dirs, overwrites, --chown/--chmod and SOURCE_DATE_EPOCH; a
// source that changes after planning is an error; what the plan cannot
// predict (ACLs) is reported so the build tars the dir instead; and a
// --no-cache rebuild that reuses the snapshot still gives later steps the files.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParallelGzip } from '../builder/compress.js';
import { copyToLayer, parseChmod, planCopy, type CopyRequest } from '../builder/copy.js';
import { MergedView } from '../builder/merged.js';
import { DirFS, ViewFS } from '../builder/sourcefs.js';
import { tarDirectory } from '../image/layer-writer.js';
import { llistxattr, lsetxattr, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../image/native.js';
import { BuildEnv } from './build-helpers.js';
import { TempDirs } from './helpers.js';

const temps = new TempDirs();
const env = new BuildEnv();
beforeAll(() => env.init('plan'));
afterAll(() => {
  temps.cleanup();
  return env.cleanup();
});

async function sha(s: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of s) h.update(c as Buffer);
  return h.digest('hex');
}

const CAP = Buffer.from('0000000280040000000000000000000000000000', 'hex');

/** POSIX ACL xattr value (version 2): user::rwx, user:1234:r--, group::r-x, mask::r-x, other::r-x. */
const ACL = (() => {
  const e = (tag: number, perm: number, id: number) => {
    const b = Buffer.alloc(8);
    b.writeUInt16LE(tag, 0);
    b.writeUInt16LE(perm, 2);
    b.writeUInt32LE(id >>> 0, 4);
    return b;
  };
  const v = Buffer.alloc(4);
  v.writeUInt32LE(2, 0);
  return Buffer.concat([v, e(0x01, 7, -1), e(0x02, 4, 1234), e(0x04, 5, -1), e(0x10, 5, -1), e(0x20, 5, -1)]);
})();

function write(p: string, data: string | Buffer, mode = 0o644): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  fs.chmodSync(p, mode);
}

/** Context + two image layers with most of what a layer can hold. */
function fixture(): { ctx: string; lowers: string[] } {
  const base = temps.make('plan-fixture');
  const ctx = path.join(base, 'ctx');
  write(`${ctx}/a.txt`, 'a');
  write(`${ctx}/big.bin`, Buffer.alloc(3 * 1024 * 1024 + 5, 'big '));
  write(`${ctx}/dir/x`, 'x');
  write(`${ctx}/dir/sub/suid`, '#!/bin/sh\n', 0o4755);
  write(`${ctx}/dir/sub/sgid`, 'g', 0o2711);
  write(`${ctx}/dir/mode0`, '', 0);
  fs.mkdirSync(`${ctx}/dir/empty`);
  fs.chmodSync(`${ctx}/dir/empty`, 0o1777);
  fs.linkSync(`${ctx}/dir/x`, `${ctx}/dir/x-hard`);
  fs.linkSync(`${ctx}/dir/x`, `${ctx}/dir/sub/x-hard2`);
  fs.symlinkSync('/etc/passwd', `${ctx}/dir/abs-link`);
  fs.symlinkSync('sub/suid', `${ctx}/dir/rel-link`);
  fs.symlinkSync('nowhere', `${ctx}/dir/dangling`);
  lsetxattr(`${ctx}/dir/sub/suid`, 'user.note', Buffer.from([0, 1, 0xff]));
  lsetxattr(`${ctx}/dir/sub/suid`, 'security.capability', CAP);
  lsetxattr(`${ctx}/dir/sub`, 'user.dir', Buffer.from('d'));
  lsetxattr(`${ctx}/dir/abs-link`, 'trusted.link', Buffer.from('t'));
  mknod(`${ctx}/dir/fifo`, S_IFIFO | 0o640, 0, 0);
  mknod(`${ctx}/dir/null`, S_IFCHR | 0o666, 1, 3);
  mknod(`${ctx}/dir/sda`, S_IFBLK | 0o660, 8, 1);
  write(`${ctx}/${'ü'.repeat(60)}/${'long-name-'.repeat(12)}.txt`, 'long');
  write(`${ctx}/over/a.txt`, 'replaces a.txt');
  write(`${ctx}/over/x`, 'replaces the hardlinked x');
  let t = 1_600_000_000;
  const walk = (d: string): void => {
    for (const n of fs.readdirSync(d)) {
      const p = path.join(d, n);
      if (fs.lstatSync(p).isDirectory()) walk(p);
      fs.lutimesSync(p, t, (t += 7) + 0.25);
    }
  };
  walk(ctx);
  fs.utimesSync(`${ctx}/a.txt`, 2_000_000_000.999, 2_000_000_000.999);
  const l1 = path.join(base, 'l1');
  const l2 = path.join(base, 'l2');
  write(`${l1}/etc/passwd`, 'root:x:0:0::/root:/bin/sh\n');
  fs.chmodSync(`${l1}/etc`, 0o750);
  fs.lchownSync(`${l1}/etc`, 1, 2);
  lsetxattr(`${l1}/etc`, 'user.etc', Buffer.from('e'));
  fs.mkdirSync(`${l1}/opt/deep`, { recursive: true });
  fs.symlinkSync('/', `${l1}/danger`);
  fs.symlinkSync('/etc', `${l1}/etclink`);
  fs.mkdirSync(`${l2}/srv`, { recursive: true });
  fs.symlinkSync('/opt', `${l2}/srv/optlink`);
  for (const d of [l1, l2]) walk(d);
  return { ctx, lowers: [l2, l1] };
}

describe('planned COPY layer', () => {
  it('tars byte for byte like the generic layer writer on the dir it writes', async () => {
    const { ctx, lowers } = fixture();
    const ctxFs = new DirFS(ctx, 'build context');
    const stage = new ViewFS(new MergedView(lowers), 'stage s');
    const req = (over: Partial<CopyRequest>): CopyRequest => ({ items: [], dest: '/', destIsDir: true, parents: false, extractArchives: false, now: 1_700_000_000.5, tmpDir: temps.make('plan-tmp'), ...over });
    const cases: [string, CopyRequest][] = [
      ['dir contents', req({ items: [{ fs: ctxFs, path: 'dir' }], dest: '/app/' })],
      ['into an image dir, through links in the image', req({ items: [{ fs: ctxFs, path: 'a.txt' }, { fs: ctxFs, path: 'dir' }], dest: '/danger/etclink/' })],
      ['deep copy-up through a link', req({ items: [{ fs: ctxFs, path: 'dir' }], dest: '/srv/optlink/deep/new/' })],
      ['--chown and --chmod', req({ items: [{ fs: ctxFs, path: 'dir' }, { fs: ctxFs, path: 'big.bin' }], dest: '/c/', chown: { uid: 1000, gid: 1001 }, chmod: parseChmod('u+x,g-w,o=r') })],
      ['later sources replace earlier ones (also one name of a hardlinked file)', req({ items: [{ fs: ctxFs, path: 'a.txt' }, { fs: ctxFs, path: 'dir' }, { fs: ctxFs, path: 'over' }], dest: '/' })],
      ['another stage keeps owners', req({ items: [{ fs: stage, path: '/' }], dest: '/st/' })],
      ['long and non-ASCII names', req({ items: [{ fs: ctxFs, path: 'ü*' }], dest: '/u/' })],
      ['WORKDIR', req({ mkdir: ['opt', 'w1', 'w2'], chown: { uid: 5, gid: 6 } })],
    ];
    for (const [name, r] of cases) {
      const plan = await planCopy(new MergedView(lowers), r);
      for (const sourceDateEpoch of [undefined, 1_650_000_000]) {
        const planned = await sha(plan.tar({ sourceDateEpoch }));
        const dir = temps.make('plan-layer');
        expect(await plan.materialize(dir), name).toBe(true);
        expect(planned, `${name}, SOURCE_DATE_EPOCH=${sourceDateEpoch}`).toBe(await sha(tarDirectory(dir, { mode: 'dir', sourceDateEpoch })));
      }
    }
    // The written dir holds what the old writer wrote, e.g. hardlinks stay hardlinks, xattrs and setuid survive.
    const dir = temps.make('plan-layer');
    await copyToLayer(new MergedView(lowers), dir, req({ items: [{ fs: ctxFs, path: 'dir' }], dest: '/app/' }));
    expect(fs.statSync(`${dir}/app/x`).nlink).toBe(3);
    expect(fs.statSync(`${dir}/app/sub/suid`).mode & 0o7777).toBe(0o4755);
    expect(llistxattr(`${dir}/app/sub/suid`).sort()).toEqual(['security.capability', 'user.note']);
    expect(fs.readlinkSync(`${dir}/app/rel-link`)).toBe('sub/suid');
  });

  it('a source that changes after planning is an error, never a layer unlike its snapshot', async () => {
    const ctx = temps.make('plan-change');
    write(`${ctx}/f`, 'before');
    const plan = await planCopy(new MergedView([]), { items: [{ fs: new DirFS(ctx, 'build context'), path: 'f' }], dest: '/f', destIsDir: false, parents: false, extractArchives: false, now: 0, tmpDir: ctx });
    write(`${ctx}/f`, 'after!'); // same size, new contents
    await expect(sha(plan.tar())).rejects.toThrow(/f changed while it was being copied: run the build again/);
    await expect(plan.materialize(temps.make('plan-layer'))).rejects.toThrow(/changed while it was being copied/);
    write(`${ctx}/f`, 'be');
    await expect(sha(plan.tar())).rejects.toThrow(/file shrank while it was being archived/);
  });

  it('ACLs make the plan inexact: the layer dir is written and tarred instead', async () => {
    const ctx = temps.make('plan-acl');
    write(`${ctx}/f`, 'acl', 0o755);
    lsetxattr(`${ctx}/f`, 'system.posix_acl_access', ACL);
    const src = new DirFS(ctx, 'build context');
    const req: CopyRequest = { items: [{ fs: src, path: 'f' }], dest: '/f', destIsDir: false, parents: false, extractArchives: false, now: 0, tmpDir: ctx };
    const plan = await planCopy(new MergedView([]), req);
    expect(plan.exact).toBe(false);
    expect(await plan.materialize(temps.make('plan-layer'))).toBe(false);
    // A default ACL on the layer dir itself would give entries ACLs the plan does not have.
    write(`${ctx}/g`, 'plain');
    const plain = await planCopy(new MergedView([]), { ...req, items: [{ fs: src, path: 'g' }], dest: '/g' });
    expect(plain.exact).toBe(true);
    const aclDir = temps.make('plan-layer');
    lsetxattr(aclDir, 'system.posix_acl_default', ACL);
    expect(await plain.materialize(aclDir)).toBe(false);
    expect(llistxattr(`${aclDir}/g`)).toContain('system.posix_acl_access');
  });

  it('a --no-cache rebuild reuses the stored snapshot, and later steps still see the files', async () => {
    const dir = env.context({
      Dockerfile: 'FROM busybox\nCOPY data/ /data/\nRUN cat /data/a /data/sub/b > /both\n',
      'data/a': 'one ',
      'data/sub/b': 'two',
    });
    const first = await env.build(dir, { tags: ['plan-rebuild'], noCache: true });
    const again = await env.build(dir, { tags: ['plan-rebuild'], noCache: true });
    // The COPY layer is the same (the RUN layer's /both has a new mtime).
    expect(again.image.layers[1]!.diffId).toBe(first.image.layers[1]!.diffId);
    const root = await env.rootfs('plan-rebuild');
    expect(fs.readFileSync(path.join(root, 'both'), 'utf8')).toBe('one two');
  });
});

describe('layer gzip pipeline', () => {
  async function gz(src: Readable, gzip: ParallelGzip): Promise<Buffer> {
    const out: Buffer[] = [];
    await pipeline(src, gzip, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
    return Buffer.concat(out);
  }

  it('reusing the tar chunks once they are deflated changes no byte', async () => {
    const dir = temps.make('plan-gz');
    for (let i = 0; i < 12; i++) write(`${dir}/f${i}`, i % 2 ? Buffer.alloc(700_000 + i * 9_999, `text ${i} `) : createHash('sha512').update(String(i)).digest().toString('hex').repeat(5_000));
    const tarBytes = Buffer.concat(await tarDirectory(dir, { mode: 'dir' }).toArray());
    const plain = await gz(tarDirectory(dir, { mode: 'dir' }), new ParallelGzip(1));
    const t = tarDirectory(dir, { mode: 'dir' });
    let released = 0;
    const reused = await gz(t, new ParallelGzip(1, undefined, (c) => (released++, t.recycle(c))));
    expect(released).toBeGreaterThan(5);
    expect(reused.equals(plain)).toBe(true);
    expect(zlib.gunzipSync(reused).equals(tarBytes)).toBe(true);
  });

  it('never reuses memory it was only lent: input chunks that are not whole blocks stay intact', async () => {
    const data = Buffer.from(createHash('sha256').update('x').digest('hex').repeat(150_000)); // 9.6 MB
    const copy = Buffer.from(data);
    const pieces = [data.subarray(0, 3_000_001), data.subarray(3_000_001, 3_000_001 + (2 << 20)), data.subarray(3_000_001 + (2 << 20))];
    const out = await gz(Readable.from(pieces), new ParallelGzip(1, 2, () => {
      throw new Error('release is only for whole input chunks');
    }));
    expect(data.equals(copy)).toBe(true);
    expect(zlib.gunzipSync(out).equals(copy)).toBe(true);
  });
});
