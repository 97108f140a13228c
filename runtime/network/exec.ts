// Running the host's network tools: iproute2 (`ip`), iptables-save/-restore
// and nsenter. Each call is one short-lived process; batches (`ip -batch -`,
// one iptables-restore per change) keep a container start to a handful of
// them. Errors name the command and carry its stderr.
import { spawn } from 'node:child_process';

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(`${command}: ${stderr.trim() || `exited with ${exitCode}`}`);
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs file with args, feeding input on stdin; rejects with CommandError on a non-zero exit. */
export function runTool(file: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', (e) => {
      const hint = (e as NodeJS.ErrnoException).code === 'ENOENT' ? ` (install ${file === 'nsenter' ? 'util-linux' : file.startsWith('ip') && file !== 'ip' ? 'iptables' : 'iproute2'})` : '';
      reject(new CommandError([file, ...args].join(' '), `${e.message}${hint}`, null));
    });
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new CommandError([file, ...args].join(' ') + (input ? ` <<< ${JSON.stringify(input.slice(0, 2000))}` : ''), stderr, code));
    });
    child.stdin.on('error', () => {
      /* the tool exited before reading everything: its exit code tells */
    });
    child.stdin.end(input ?? '');
  });
}

/** `ip ARGS...` */
export function ip(...args: string[]): Promise<RunResult> {
  return runTool('ip', args);
}

/**
 * Several iproute2 commands in one process (`ip -batch -`), optionally inside
 * the network namespace at netnsPath (through nsenter --net). Stops at the
 * first failing line.
 */
export function ipBatch(lines: string[], netnsPath?: string): Promise<RunResult> {
  const input = lines.join('\n') + '\n';
  if (netnsPath) return runTool('nsenter', [`--net=${netnsPath}`, '--', 'ip', '-batch', '-'], input);
  return runTool('ip', ['-batch', '-'], input);
}

/** True for iproute2's "no such device" answers (the thing to delete is already gone). */
export function isNoSuchDevice(e: unknown): boolean {
  return e instanceof CommandError && /Cannot find device|does not exist|No such device/i.test(e.stderr);
}
