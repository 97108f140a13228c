// Helpers the init stage uses after pivot_root, when `/` is the container's
// root: the user from the image's /etc/passwd and /etc/group, and the
// program from the container's $PATH (execve does not search PATH).
import fs from 'node:fs';
import path from 'node:path';

/** An error with Docker's exit code for it: 125 tsbuild failed, 126 cannot execute, 127 not found. */
export class StageError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  groups: number[];
  home: string;
}

function readLines(file: string): string[][] {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

const isNum = (s: string) => /^\d+$/.test(s);

/** Docker's --user: "", "name", "uid", "name:group", "uid:gid". Names must exist in the image. */
export function resolveUser(spec: string): ResolvedUser {
  const [u = '', g] = spec === '' ? ['root'] : spec.split(':', 2);
  const passwd = readLines('/etc/passwd');
  const groups = readLines('/etc/group');
  const pw = passwd.find((f) => (isNum(u) ? f[2] === u : f[0] === u));
  let uid: number;
  let gid: number;
  let home = '/';
  if (pw) {
    uid = Number(pw[2]);
    gid = Number(pw[3]);
    home = pw[5] || '/';
  } else if (isNum(u)) {
    uid = Number(u);
    gid = 0;
  } else if (u === 'root') {
    uid = 0;
    gid = 0;
    home = '/root';
  } else {
    throw new StageError(`unable to find user ${u}: no matching entries in passwd file`, 125);
  }
  if (g !== undefined && g !== '') {
    const gr = groups.find((f) => (isNum(g) ? f[2] === g : f[0] === g));
    if (gr) gid = Number(gr[2]);
    else if (isNum(g)) gid = Number(g);
    else throw new StageError(`unable to find group ${g}: no matching entries in group file`, 125);
  }
  // Supplementary groups: every group listing the user by name (as Docker does); none for a uid unknown to passwd.
  const name = pw?.[0];
  const extra = name ? groups.filter((f) => (f[3] ?? '').split(',').includes(name)).map((f) => Number(f[2])) : [];
  return { uid, gid, groups: [...new Set([gid, ...extra])], home };
}

function isExecutableFile(p: string): boolean {
  try {
    const st = fs.statSync(p);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The program to execve, as Go's exec.LookPath (which runc uses) finds it. */
export function lookPath(file: string, env: string[]): string {
  if (file === '') throw new StageError('exec: "": executable file not found in $PATH', 127);
  if (file.includes('/')) return file;
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '';
  for (const dir of pathVar.split(':')) {
    const candidate = path.join(dir === '' ? '.' : dir, file);
    if (isExecutableFile(candidate)) return candidate;
  }
  throw new StageError(`exec: "${file}": executable file not found in $PATH`, 127);
}

/** Maps a failed execve to Docker's message and exit code. */
export function execError(file: string, e: NodeJS.ErrnoException): StageError {
  switch (e.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new StageError(`exec: "${file}": no such file or directory`, 127);
    case 'EACCES':
    case 'EPERM':
    case 'EISDIR':
      return new StageError(`exec: "${file}": permission denied`, 126);
    case 'ENOEXEC':
      return new StageError(`exec: "${file}": exec format error`, 126);
    default:
      return new StageError(`exec: "${file}": ${e.message}`, 126);
  }
}
