// Pseudo-terminals for `run -t` and `exec -t`.
//
// The host side opens a pty pair (posix_openpt), hands the slave to the
// container's stages as fds 0-2, and relays between its own terminal (in raw
// mode) and the master. init makes the slave its controlling terminal after
// setsid() (TIOCSCTTY), so ^C typed at the user's terminal arrives as a byte,
// and the kernel's line discipline in the container turns it into SIGINT for
// the container's foreground process group, as with `docker run -t`. The
// slave is also bind-mounted on the container's /dev/console, which is how
// ttyname() finds a name for it inside the container (the container's
// /dev/pts is a fresh devpts instance that does not hold the host's slave).
// The window size follows the user's terminal (TIOCSWINSZ on SIGWINCH).
import fs from 'node:fs';
import { errnoError, libc } from '../image/native.js';

const _posix_openpt = libc.func('int posix_openpt(int flags)');
const _grantpt = libc.func('int grantpt(int fd)');
const _unlockpt = libc.func('int unlockpt(int fd)');
const _ptsname_r = libc.func('int ptsname_r(int fd, _Out_ char *buf, size_t buflen)');
const _ioctl = libc.func('int ioctl(int fd, unsigned long request, ...)');

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;
const TIOCSCTTY = 0x540e;
const TIOCSWINSZ = 0x5414;

export interface Pty {
  master: number;
  slave: number;
  slavePath: string;
}

export function openPty(): Pty {
  const master = _posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) throw errnoError('posix_openpt');
  try {
    if (_grantpt(master) !== 0) throw errnoError('grantpt');
    if (_unlockpt(master) !== 0) throw errnoError('unlockpt');
    const buf = Buffer.alloc(128);
    if (_ptsname_r(master, buf, buf.length) !== 0) throw errnoError('ptsname_r');
    const slavePath = buf.toString('utf8', 0, buf.indexOf(0));
    const slave = fs.openSync(slavePath, fs.constants.O_RDWR | O_NOCTTY);
    return { master, slave, slavePath };
  } catch (e) {
    fs.closeSync(master);
    throw e;
  }
}

export function setWindowSize(fd: number, cols: number, rows: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(cols, 2);
  _ioctl(fd, TIOCSWINSZ, 'void *', ws);
}

/** init, after setsid(): fd (the slave on fd 0) becomes the controlling terminal. */
export function setControllingTerminal(fd: number): void {
  if (_ioctl(fd, TIOCSCTTY, 'int', 0) !== 0) throw errnoError('ioctl(TIOCSCTTY)');
}

/**
 * Relays the user's terminal and the pty master until the container side
 * hangs up. stdin in raw mode while attached (restored afterwards). Returns a
 * function that stops relaying input; the promise resolves once the master
 * reads EOF/EIO (every slave fd closed: the program and its children exited).
 */
export function attachTerminal(pty: Pty, opts: { stdin?: NodeJS.ReadStream; stdout: NodeJS.WritableStream }): { done: Promise<void>; detach(): void; drain(): Promise<void> } {
  const stdin = opts.stdin;
  const wasRaw = stdin?.isTTY ? stdin.isRaw : undefined;
  if (stdin?.isTTY) stdin.setRawMode(true);
  const out = process.stdout as NodeJS.WriteStream;
  const resize = () => {
    if (out.isTTY) setWindowSize(pty.master, out.columns, out.rows);
  };
  resize();
  process.on('SIGWINCH', resize);
  const onData = (b: Buffer) => {
    try {
      fs.writeSync(pty.master, b);
    } catch {
      /* container side gone */
    }
  };
  stdin?.on('data', onData);
  stdin?.resume();
  const detach = () => {
    stdin?.off('data', onData);
    stdin?.pause();
    if (stdin?.isTTY && wasRaw === false) stdin.setRawMode(false);
    process.off('SIGWINCH', resize);
  };
  const done = new Promise<void>((resolve) => {
    // fs streams read on the threadpool, so a blocking master read is fine.
    const rs = fs.createReadStream('', { fd: pty.master, autoClose: true, highWaterMark: 16 * 1024 });
    rs.on('data', (b) => opts.stdout.write(b));
    rs.on('error', () => resolve()); // EIO: the last slave fd closed
    rs.on('end', () => resolve());
    rs.on('close', () => resolve());
  });
  const finished = done.finally(detach);
  // After the program exited: output may still sit in the pty; every slave fd
  // closes once the container's last process is gone, which ends the relay
  // (bounded, in case a process that escaped the container holds one).
  const drain = async () => {
    await Promise.race([finished, new Promise((r) => setTimeout(r, 2000))]);
    detach();
  };
  return { done: finished, detach, drain };
}
