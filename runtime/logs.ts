// Container logs, Docker's json-file format: one JSON object per line,
//
//   {"log":"hello\n","stream":"stdout","time":"2026-11-22T18:47:19.123Z"}
//
// in <root>/containers/<id>/<id>-json.log. `log` is one line of output with
// its newline; a partial line is flushed as is (no newline) when it reaches
// 16 KiB or the stream ends, as Docker does. Written by the monitor of a
// detached container (monitor.ts); a foreground `run` writes to the terminal
// only.
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

export type LogStream = 'stdout' | 'stderr';

export interface LogEntry {
  log: string;
  stream: LogStream;
  time: string;
}

const MAX_PARTIAL = 16 * 1024;

export class JsonLogWriter {
  private out: WriteStream;
  private partial: Record<LogStream, string> = { stdout: '', stderr: '' };
  /** A UTF-8 character may be split across two reads. */
  private decoders: Record<LogStream, StringDecoder> = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };

  constructor(file: string) {
    this.out = createWriteStream(file, { flags: 'a', mode: 0o640 });
    this.out.on('error', () => {
      /* the container dir was removed (rm -f): nothing to keep */
    });
  }

  write(stream: LogStream, chunk: Buffer): void {
    let buf = this.partial[stream] + this.decoders[stream].write(chunk);
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      this.entry(stream, buf.slice(0, nl + 1));
      buf = buf.slice(nl + 1);
    }
    while (buf.length >= MAX_PARTIAL) {
      this.entry(stream, buf.slice(0, MAX_PARTIAL));
      buf = buf.slice(MAX_PARTIAL);
    }
    this.partial[stream] = buf;
  }

  private entry(stream: LogStream, log: string): void {
    const e: LogEntry = { log, stream, time: new Date().toISOString() };
    this.out.write(JSON.stringify(e) + '\n');
  }

  async close(): Promise<void> {
    for (const s of ['stdout', 'stderr'] as const) {
      const last = this.partial[s] + this.decoders[s].end();
      if (last) this.entry(s, last);
    }
    this.partial = { stdout: '', stderr: '' };
    await new Promise<void>((resolve) => this.out.end(resolve));
  }
}

/** Parses json-file lines; a torn last line (being written) is left for the next read. */
export function parseLogLines(text: string): { entries: LogEntry[]; rest: string } {
  const entries: LogEntry[] = [];
  const lines = text.split('\n');
  const rest = lines.pop() ?? '';
  for (const l of lines) {
    try {
      entries.push(JSON.parse(l) as LogEntry);
    } catch {
      /* not a log line */
    }
  }
  return { entries, rest };
}

export interface FollowOptions {
  /** Print only the last N entries of what is there now (undefined: all). */
  tail?: number;
  /** Keep reading until stillRunning() says false. */
  follow?: boolean;
  stillRunning?: () => Promise<boolean>;
  onEntry(e: LogEntry): void;
}

/** Reads a json-file log, optionally following it while the container runs. */
export async function readLogs(file: string, opts: FollowOptions): Promise<void> {
  let pos = 0;
  let rest = '';
  const readMore = async (): Promise<LogEntry[]> => {
    let fh;
    try {
      fh = await fsp.open(file, 'r');
    } catch {
      return [];
    }
    try {
      const { size } = await fh.stat();
      if (size <= pos) return [];
      const buf = Buffer.alloc(size - pos);
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      pos += bytesRead;
      const r = parseLogLines(rest + buf.subarray(0, bytesRead).toString('utf8'));
      rest = r.rest;
      return r.entries;
    } finally {
      await fh.close();
    }
  };
  let first = await readMore();
  if (opts.tail !== undefined) first = opts.tail <= 0 ? [] : first.slice(-opts.tail);
  first.forEach(opts.onEntry);
  if (!opts.follow) return;
  for (;;) {
    const running = opts.stillRunning ? await opts.stillRunning() : false;
    (await readMore()).forEach(opts.onEntry);
    if (!running) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}
