// Build progress, in BuildKit's two styles:
//  - 'plain' (CI logs, --progress=plain, or stderr is not a terminal):
//        #3 [2/4] RUN make
//        #3 0.512 compiling...
//        #3 DONE 1.2s
//        #4 [3/4] COPY app /app
//        #4 CACHED
//  - 'tty': a view redrawn in place: a header with the elapsed time and
//    steps done, one line per step with its time or CACHED, and the last
//    lines of output under each running step.
//  - 'quiet': nothing (-q).
// Everything goes to stderr; stdout is left for -q's image ID.

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'quiet';

export interface StepHandle {
  /** A chunk of the step's output (RUN's stdout/stderr). */
  output(chunk: Buffer): void;
  cached(): void;
  done(): void;
  error(message: string): void;
}

interface StepState {
  id: number;
  name: string;
  start: number;
  end?: number;
  status: 'running' | 'done' | 'cached' | 'error';
  /** Output lines (plain: pending partial line only). */
  lines: string[];
  partial: string;
  /** Plain mode: whether this step's header is the last thing printed. */
}

const TAIL_LINES = 6;

export class Progress {
  private steps: StepState[] = [];
  private next = 1;
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private drawnLines = 0;
  readonly mode: 'plain' | 'tty' | 'quiet';

  constructor(
    private readonly out: NodeJS.WritableStream,
    mode: ProgressMode,
  ) {
    const isTTY = (out as { isTTY?: boolean }).isTTY === true;
    this.mode = mode === 'auto' ? (isTTY ? 'tty' : 'plain') : mode === 'tty' && !isTTY ? 'plain' : mode;
    if (this.mode === 'tty') {
      this.timer = setInterval(() => this.draw(), 100);
      this.timer.unref();
    }
  }

  private elapsed(s: StepState): string {
    return (((s.end ?? Date.now()) - s.start) / 1000).toFixed(1);
  }

  private writePlain(s: string): void {
    this.out.write(s);
  }

  /** A note (warning) shown above the steps. */
  note(message: string): void {
    if (this.mode === 'quiet') return;
    if (this.mode === 'plain') this.writePlain(`${message}\n`);
    else this.printAbove(message);
  }

  step(name: string): StepHandle {
    const s: StepState = { id: this.next++, name, start: Date.now(), status: 'running', lines: [], partial: '' };
    this.steps.push(s);
    if (this.mode === 'plain') this.writePlain(`#${s.id} ${name}\n`);
    const finish = (status: StepState['status']) => {
      if (s.status !== 'running') return;
      s.status = status;
      s.end = Date.now();
      if (this.mode === 'plain') {
        if (s.partial) this.writePlain(`#${s.id} ${this.elapsed(s)} ${s.partial}\n`);
        s.partial = '';
      }
    };
    return {
      output: (chunk) => {
        const text = s.partial + chunk.toString('utf8');
        const parts = text.split(/\r?\n/);
        s.partial = parts.pop() ?? '';
        if (this.mode === 'plain') {
          const t = ((Date.now() - s.start) / 1000).toFixed(3);
          for (const l of parts) this.writePlain(`#${s.id} ${t} ${l}\n`);
        } else {
          s.lines.push(...parts);
          if (s.lines.length > 200) s.lines.splice(0, s.lines.length - 200);
        }
      },
      cached: () => {
        finish('cached');
        if (this.mode === 'plain') this.writePlain(`#${s.id} CACHED\n`);
      },
      done: () => {
        finish('done');
        if (this.mode === 'plain') this.writePlain(`#${s.id} DONE ${this.elapsed(s)}s\n`);
      },
      error: (message) => {
        if (s.partial) s.lines.push(s.partial);
        finish('error');
        if (this.mode === 'plain') this.writePlain(`#${s.id} ERROR: ${message}\n`);
        else if (this.mode === 'tty') {
          // The failed step's whole (kept) output, as BuildKit prints it.
          this.draw();
          const log = s.lines.map((l) => `#${s.id} ${l}`).join('\n');
          this.printAbove(`------\n > ${s.name}:\n${log}${log ? '\n' : ''}------`);
        }
      },
    };
  }

  /** Prints text that stays (above the redrawn view). */
  private printAbove(text: string): void {
    this.clear();
    this.out.write(text + '\n');
    this.draw();
  }

  private clear(): void {
    if (this.drawnLines > 0) this.out.write(`\x1b[${this.drawnLines}F\x1b[J`);
    this.drawnLines = 0;
  }

  private draw(): void {
    if (this.mode !== 'tty') return;
    const cols = (this.out as { columns?: number }).columns ?? 100;
    const fit = (s: string) => (s.length > cols - 1 ? s.slice(0, cols - 2) + '…' : s);
    const doneCount = this.steps.filter((s) => s.status !== 'running').length;
    const lines = [`[+] Building ${((Date.now() - this.started) / 1000).toFixed(1)}s (${doneCount}/${this.steps.length})`];
    for (const s of this.steps) {
      const right = s.status === 'cached' ? '' : `${this.elapsed(s)}s`;
      const left = ` => ${s.status === 'cached' ? 'CACHED ' : s.status === 'error' ? 'ERROR ' : ''}${s.name}`;
      const pad = Math.max(1, cols - 1 - left.length - right.length);
      lines.push(left.length + right.length + 1 >= cols ? fit(`${left} ${right}`) : `${left}${' '.repeat(pad)}${right}`);
      if (s.status === 'running') {
        const tail = [...s.lines, ...(s.partial ? [s.partial] : [])].slice(-TAIL_LINES);
        for (const l of tail) lines.push(`\x1b[2m${fit(` => => # ${l}`)}\x1b[0m`);
      }
    }
    this.clear();
    this.out.write(lines.join('\n') + '\n');
    this.drawnLines = lines.length;
  }

  /** Final render; stops the timer. */
  end(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.mode === 'tty') this.draw();
  }

  /** A line after the view (summary). */
  line(text: string): void {
    if (this.mode === 'quiet') return;
    this.out.write(text + '\n');
  }
}
