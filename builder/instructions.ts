// Typed Dockerfile instructions: the contract between the parser (parser.ts:
// text -> nodes -> these values) and the executor (build.ts: these values ->
// layers and config), as BuildKit's frontend separates parser, instructions
// and dispatch.
//
// Values are *unexpanded*: `$VAR` is still in the strings. Expansion needs the
// ARG/ENV values in effect at that point of the stage, which only the
// executor knows; it calls expand.ts on exactly the fields BuildKit expands
// (marked "expanded" below). Everything else is used verbatim.

/** Where an instruction came from, for errors: "Dockerfile:12". */
export interface Location {
  file: string;
  /** 1-based first and last line (continuations and heredocs span several). */
  startLine: number;
  endLine: number;
}

/** A heredoc body attached to RUN or COPY/ADD. */
export interface Heredoc {
  /** The delimiter word as written, without quotes or `-`. */
  name: string;
  /** Body text, with a trailing newline per line; tabs stripped for `<<-`. */
  content: string;
  /** False when the delimiter was quoted: no expansion of the body. */
  expand: boolean;
  /** `<<-`: leading tabs were stripped. */
  chomp: boolean;
}

interface Base {
  loc: Location;
  /** The instruction as written (continuations joined), for history's created_by and errors. */
  original: string;
}

/** Shell form keeps the command as one string run through SHELL; exec form is an argv. */
export type CommandLine = { form: 'shell'; command: string } | { form: 'exec'; argv: string[] };

export interface FromInstruction extends Base {
  kind: 'FROM';
  /** expanded (with the global ARGs only) */
  image: string;
  /** `AS name`, lower-cased (stage names are case-insensitive). */
  stageName?: string;
  /** --platform, expanded with global ARGs + BUILDPLATFORM etc. */
  platform?: string;
}

export interface ArgInstruction extends Base {
  kind: 'ARG';
  /** `ARG a b=1`: several per line allowed; value undefined when no default. value expanded. */
  args: { key: string; value?: string }[];
}

export interface EnvInstruction extends Base {
  kind: 'ENV';
  /**
   * Both `ENV k=v ...` and the legacy `ENV k v w`. Values keep their quotes
   * and backslashes as written; the executor's expansion removes them (as
   * BuildKit's shell lexer does), using one snapshot of the variables for the
   * whole line. expanded
   */
  pairs: { key: string; value: string }[];
}

export interface RunMount {
  type: 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
  /**
   * key=value options of --mount. Values expanded (by the executor). Key
   * names are lower-cased and normalised by the parser: src -> source,
   * dst/destination/dest -> target, ro -> readonly, readwrite -> rw; the
   * others are from, id, sharing, required, mode, uid, gid, size, env. A bare
   * `ro`, `rw` or `required` is stored as "true". Literal values were checked
   * by the parser; re-check expanded ones with parser.ts checkMount().
   */
  options: Record<string, string>;
}

export interface RunInstruction extends Base {
  kind: 'RUN';
  command: CommandLine;
  /** `RUN <<EOF` etc. With shell form and a heredoc as the command, the heredoc is the script. */
  heredocs: Heredoc[];
  mounts: RunMount[];
  network?: 'default' | 'none' | 'host';
  security?: 'sandbox' | 'insecure';
}

export interface CopyInstruction extends Base {
  kind: 'COPY' | 'ADD';
  /** expanded; wildcards resolved by the executor. */
  sources: string[];
  /** expanded */
  dest: string;
  /** Inline sources given as heredocs (`COPY <<EOF /dst`). */
  heredocs: Heredoc[];
  /**
   * --from: stage name, stage index, or an image reference, as written (not
   * lower-cased: it may hold `$VAR`, and image tags are case-sensitive).
   * expanded; then compare with stage names case-insensitively.
   */
  from?: string;
  /** --chown user[:group], names or ids. expanded */
  chown?: string;
  /** --chmod octal (or symbolic, newer frontends). expanded */
  chmod?: string;
  link: boolean;
  /** --exclude patterns (repeatable). expanded */
  exclude: string[];
  /** --parents (COPY only). */
  parents: boolean;
  /** ADD only: --checksum=sha256:..., --keep-git-dir. */
  checksum?: string;
  keepGitDir?: boolean;
  /** ADD only: --unpack[=true|false] (newer frontends): force or forbid extracting archives; undefined = by content. */
  unpack?: boolean;
}

export interface WorkdirInstruction extends Base {
  kind: 'WORKDIR';
  /** expanded */
  path: string;
}
export interface UserInstruction extends Base {
  kind: 'USER';
  /** expanded */
  user: string;
}
export interface VolumeInstruction extends Base {
  kind: 'VOLUME';
  /** JSON or whitespace-separated; expanded */
  volumes: string[];
}
export interface ExposeInstruction extends Base {
  kind: 'EXPOSE';
  /** "80", "80/tcp", "53/udp", "8000-8010"; expanded */
  ports: string[];
}
export interface LabelInstruction extends Base {
  kind: 'LABEL';
  /** expanded (quotes removed by expansion, as ENV) */
  pairs: { key: string; value: string }[];
}
export interface CmdInstruction extends Base {
  kind: 'CMD' | 'ENTRYPOINT';
  command: CommandLine;
}
export interface StopSignalInstruction extends Base {
  kind: 'STOPSIGNAL';
  /** expanded */
  signal: string;
}
export interface HealthcheckInstruction extends Base {
  kind: 'HEALTHCHECK';
  /** `HEALTHCHECK NONE` gives test ["NONE"]; otherwise ["CMD", ...argv] or ["CMD-SHELL", command]. */
  test: string[];
  /** Nanoseconds, as the image config stores them; undefined = not given. */
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}
export interface OnbuildInstruction extends Base {
  kind: 'ONBUILD';
  /** The trigger instruction text, stored verbatim in the config's OnBuild. */
  expression: string;
}
export interface ShellInstruction extends Base {
  kind: 'SHELL';
  /** Must be a JSON array. */
  shell: string[];
}
export interface MaintainerInstruction extends Base {
  kind: 'MAINTAINER';
  maintainer: string;
}

export type Instruction =
  | FromInstruction
  | ArgInstruction
  | EnvInstruction
  | RunInstruction
  | CopyInstruction
  | WorkdirInstruction
  | UserInstruction
  | VolumeInstruction
  | ExposeInstruction
  | LabelInstruction
  | CmdInstruction
  | StopSignalInstruction
  | HealthcheckInstruction
  | OnbuildInstruction
  | ShellInstruction
  | MaintainerInstruction;

/** One FROM ... up to the next FROM. */
export interface Stage {
  /** 0-based position in the file. */
  index: number;
  from: FromInstruction;
  /** Everything after FROM, in order. */
  instructions: Exclude<Instruction, FromInstruction>[];
}

export interface Dockerfile {
  file: string;
  /** Parser directives: escape, syntax, check (keys lower-cased). */
  directives: Record<string, string>;
  /** The escape character in effect (`\\` or the `escape` directive's backtick): pass it to expand.ts. */
  escapeChar?: string;
  /** ARGs before the first FROM (usable only in FROM lines, and re-declarable in stages). */
  metaArgs: ArgInstruction[];
  stages: Stage[];
  /** Non-fatal notes (e.g. "syntax directive ignored", empty continuation lines), with locations. */
  warnings: { loc: Location; message: string }[];
}

/** A Dockerfile the user must fix: the message names file:line and what to do. */
export class DockerfileError extends Error {
  constructor(
    message: string,
    readonly loc?: Location,
  ) {
    super(loc ? `${loc.file}:${loc.startLine}: ${message}` : message);
  }
}
