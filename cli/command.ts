// The shape of a CLI command. One file per command group registers its
// commands; cli/main.ts only dispatches. Business logic lives in image/,
// builder/, registry/ and runtime/.
import type { FlagSpec, ParsedArgs } from './args.js';
import { Store } from '../image/store.js';

export interface Context {
  /** Store root from --root / TSBUILD_ROOT / default. */
  root: string | undefined;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  store(): Promise<Store>;
}

export interface Command {
  name: string;
  /** e.g. "images [OPTIONS] [REPOSITORY[:TAG]]" */
  usage: string;
  description: string;
  flags: FlagSpec[];
  /** Leave everything after the first positional untouched (run, exec). */
  stopAtPositional?: boolean;
  minArgs?: number;
  maxArgs?: number;
  /** A command group (`volume ls`, `network create`): the first argument picks one of these. */
  subcommands?: Command[];
  /** Returns the exit code. Throw for errors: main prints "Error: ..." and exits 1 (or err.exitCode). */
  run(args: ParsedArgs, ctx: Context): Promise<number>;
}

/** An error carrying a specific exit code (Docker uses 125 for its own failures in `run`). */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export function out(ctx: Context, line = ''): void {
  ctx.stdout.write(line + '\n');
}
