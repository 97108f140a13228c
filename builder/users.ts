// --chown and WORKDIR owners: user and group names looked up in the image's
// own /etc/passwd and /etc/group (never the host's), as BuildKit does:
//   1000        uid 1000, gid 1000
//   app         app's uid and primary gid from /etc/passwd
//   app:staff   app's uid, staff's gid from /etc/group
//   1000:50     as given
import type { MergedView } from './merged.js';

export class UserError extends Error {}

function table(view: MergedView, file: string): string[][] {
  const data = view.readFile(file);
  if (!data) return [];
  return data
    .toString('utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

const isNum = (s: string) => /^\d+$/.test(s);

/** Does the spec need the image's passwd/group files (any part is a name)? */
export function needsLookup(spec: string): boolean {
  return spec.split(':', 2).some((p) => p !== '' && !isNum(p));
}

export function resolveOwner(spec: string, view: MergedView | undefined): { uid: number; gid: number } {
  const [u = '', g] = spec.split(':', 2);
  if (u === '') throw new UserError(`invalid user ${JSON.stringify(spec)}: give USER[:GROUP] (names or numbers)`);
  let uid: number;
  let gid: number;
  if (isNum(u)) {
    uid = Number(u);
    gid = uid;
  } else {
    const pw = view ? table(view, '/etc/passwd').find((f) => f[0] === u) : undefined;
    if (!pw) {
      throw new UserError(`unable to find user ${u}: no matching entries in the image's /etc/passwd (create the user in an earlier RUN, or use a numeric uid)`);
    }
    uid = Number(pw[2]);
    gid = Number(pw[3]);
  }
  if (g !== undefined && g !== '') {
    if (isNum(g)) gid = Number(g);
    else {
      const gr = view ? table(view, '/etc/group').find((f) => f[0] === g) : undefined;
      if (!gr) throw new UserError(`unable to find group ${g}: no matching entries in the image's /etc/group (create the group first, or use a numeric gid)`);
      gid = Number(gr[2]);
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || uid > 0xfffffffe || gid > 0xfffffffe) {
    throw new UserError(`invalid user ${JSON.stringify(spec)}: uid/gid out of range`);
  }
  return { uid, gid };
}
