// What the registry commands (pull, push, copy, login) and `build --push`
// share: the transport flags and the options they make, and the per-blob
// progress view. Light on purpose: cli/build.ts imports it for every build,
// so nothing here loads the registry client (undici); types only.
import { list, str, UsageError, type FlagSpec, type ParsedArgs } from './args.js';
import { humanSize } from './format.js';
import type { ProgressEvent } from '../registry/common.js';
import type { ClientOptions } from '../registry/transport.js';

/** --tls-verify, --insecure-registry, --cert-dir, --authfile. */
export const transportFlags: FlagSpec[] = [
  { name: 'tls-verify', type: 'bool', description: 'Require HTTPS and verify certificates (default: yes, except for localhost and --insecure-registry hosts)' },
  { name: 'insecure-registry', type: 'list', description: 'Registry host to reach with unverified TLS or plain HTTP', arg: 'host' },
  { name: 'cert-dir', type: 'string', description: 'Directory with CA certificates (*.crt) and client certificates (*.cert/*.key) for the registry', arg: 'dir' },
  { name: 'authfile', type: 'string', description: 'Path of the credentials file (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)', arg: 'path' },
];

/** Client options from the transport flags (and push/pull's hidden --chunk-size, --concurrency). */
export function clientOptions(a: ParsedArgs): ClientOptions & { chunkSize?: number; concurrency?: number } {
  const tv = a.flags['tls-verify'];
  const o: ClientOptions & { chunkSize?: number; concurrency?: number } = {
    tlsVerify: typeof tv === 'boolean' ? tv : undefined,
    insecureRegistries: list(a, 'insecure-registry'),
    certDir: str(a, 'cert-dir'),
    authfile: str(a, 'authfile'),
  };
  const cs = str(a, 'chunk-size');
  if (cs !== undefined) o.chunkSize = parseSize(cs, '--chunk-size');
  const cc = str(a, 'concurrency');
  if (cc !== undefined) {
    const n = Number(cc);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`invalid argument "${cc}" for "--concurrency" flag: expected a number from 1 to 64`);
    o.concurrency = n;
  }
  return o;
}

export function parseSize(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)$/i.exec(s.trim());
  if (!m) throw new UsageError(`invalid argument "${s}" for "${flag}" flag: expected a size such as 5242880, 512KiB or 16MiB`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Math.floor(Number(m[1]) * mult);
  if (n < 1) throw new UsageError(`invalid argument "${s}" for "${flag}" flag: must be at least 1 byte`);
  return n;
}

export type Mode = 'tty' | 'plain' | 'quiet';

export const PULL_WORDS: Record<string, string> = {
  waiting: 'Pulling fs layer',
  downloading: 'Downloading',
  exists: 'Already exists',
  complete: 'Pull complete',
  retrying: 'Retrying',
};
export const PUSH_WORDS: Record<string, string> = {
  preparing: 'Preparing',
  uploading: 'Pushing',
  pushed: 'Pushed',
  exists: 'Layer already exists',
  mounted: 'Mounted from',
  retrying: 'Retrying',
};

interface Row {
  id: string;
  phase: string;
  current?: number;
  total?: number;
  detail?: string;
  started?: number;
  startBytes?: number;
}

/**
 * Per-blob progress. tty: one line per blob redrawn in place (bar, bytes,
 * rate), at most every 100 ms. plain: one line per change of phase.
 */
export class ProgressView {
  private rows: Row[] = [];
  private drawn = 0;
  private timer?: NodeJS.Timeout;
  private dirty = false;

  constructor(
    private mode: Mode,
    private stream: NodeJS.WritableStream,
    private words: Record<string, string>,
  ) {}

  readonly onProgress = (e: ProgressEvent): void => {
    if (this.mode === 'quiet') return;
    if (e.type === 'info') {
      this.line(e.message);
      return;
    }
    if (e.kind === 'config') return; // Docker shows layers only
    let row = this.rows.find((r) => r.id === e.id);
    const isNew = !row;
    if (!row) {
      row = { id: e.id, phase: e.phase };
      this.rows.push(row);
    }
    const changed = isNew || row.phase !== e.phase;
    if ((e.phase === 'downloading' || e.phase === 'uploading') && (changed || row.started === undefined)) {
      row.started = Date.now();
      row.startBytes = e.current ?? 0;
    }
    row.phase = e.phase;
    row.current = e.current;
    row.total = e.total;
    row.detail = e.detail;
    if (this.mode === 'plain') {
      if (changed && e.phase !== 'downloading' && e.phase !== 'uploading') this.stream.write(this.text(row) + '\n');
      else if (changed) this.stream.write(`${row.id}: ${this.words[row.phase] ?? row.phase}\n`);
      return;
    }
    this.dirty = true;
    if (changed) this.draw();
    else this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw();
    }, 100);
  };

  /** A line above the bars (info, retries). */
  line(s: string): void {
    if (this.mode === 'quiet') return;
    if (this.mode === 'tty' && this.drawn > 0) {
      this.stream.write(`\x1b[${this.drawn}A\x1b[J${s}\n`);
      this.drawn = 0;
      this.dirty = true;
      this.draw();
      return;
    }
    this.stream.write(s + '\n');
  }

  private text(r: Row): string {
    const word = this.words[r.phase] ?? r.phase;
    if (r.phase === 'mounted') return `${r.id}: ${word} ${r.detail ?? ''}`.trimEnd();
    if (r.phase === 'retrying') return `${r.id}: ${word}${r.detail ? ` (${r.detail})` : ''}`;
    if ((r.phase === 'downloading' || r.phase === 'uploading') && r.total) {
      if (this.mode === 'plain') return `${r.id}: ${word}`;
      const cur = r.current ?? 0;
      const width = 50;
      const filled = Math.min(width, Math.floor((cur / r.total) * width));
      const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? (filled === width ? '=' : '>') : '') + ' '.repeat(width - filled);
      const secs = r.started ? (Date.now() - r.started) / 1000 : 0;
      const rate = secs > 0.2 ? `  ${humanSize((cur - (r.startBytes ?? 0)) / secs)}/s` : '';
      return `${r.id}: ${word} [${bar}] ${humanSize(cur).padStart(7)}/${humanSize(r.total)}${rate}`;
    }
    return `${r.id}: ${word}`;
  }

  private draw(): void {
    if (this.mode !== 'tty' || !this.dirty) return;
    this.dirty = false;
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const r of this.rows) s += `\x1b[2K${this.text(r)}\n`;
    this.drawn = this.rows.length;
    this.stream.write(s);
  }

  /** Final redraw; later output goes below the bars. */
  finish(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = true;
    this.draw();
    this.rows = [];
    this.drawn = 0;
  }
}
