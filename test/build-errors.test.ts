// Bad Dockerfiles and invocations through the real CLI: exit 1 (125 for flag
// errors, as Docker), a message naming file:line and what to do, and nothing
// left behind: no image, no tag, no temp or step dir, no mount.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildEnv, CLI, leftovers, mountsUnder } from './build-helpers.js';

const env = new BuildEnv();
beforeAll(() => env.init('errors'));
afterAll(() => env.cleanup());

function indexOf(root: string): { images: string[]; tags: string[] } {
  const idx = JSON.parse(fs.readFileSync(path.join(root, 'index.json'), 'utf8')) as { images: object; tags: object };
  return { images: Object.keys(idx.images).sort(), tags: Object.keys(idx.tags).sort() };
}

interface Case {
  name: string;
  files?: Record<string, string>;
  args?: string[];
  /** Expected stderr pattern. */
  err: RegExp;
  code?: number;
}

const cases: Case[] = [
  { name: 'unknown instruction', files: { Dockerfile: 'FROM busybox\nRUNN echo hi\n' }, err: /Dockerfile:2: unknown instruction: RUNN \(did you mean RUN\?\)/ },
  { name: 'missing COPY source', files: { Dockerfile: 'FROM busybox\nCOPY nothere.txt /x\n' }, err: /Dockerfile:2: .*"nothere.txt" not found in the build context/ },
  { name: 'unknown stage in --from', files: { Dockerfile: 'FROM busybox AS build\nFROM busybox\nCOPY --from=biuld /a /b\n' }, err: /Dockerfile:3: image biuld is not in the local store; import or pull it.*not a stage of this Dockerfile either \(stages: build\)/ },
  { name: '--chown naming a user the image lacks', files: { Dockerfile: 'FROM busybox\nCOPY --chown=ghost f /f\n', f: 'x' }, err: /Dockerfile:2: unable to find user ghost: no matching entries in the image's \/etc\/passwd/ },
  { name: 'RUN exiting 1', files: { Dockerfile: 'FROM busybox\nRUN echo before\nRUN echo failing >&2; exit 1\n' }, err: /Dockerfile:3: process "\/bin\/sh -c echo failing >&2; exit 1" did not complete successfully: exit code: 1/ },
  { name: 'RUN of a missing program', files: { Dockerfile: 'FROM busybox\nRUN ["/no/such/program"]\n' }, err: /Dockerfile:2: process "\/no\/such\/program" did not complete successfully: exit code: 127/ },
  { name: 'unterminated heredoc', files: { Dockerfile: 'FROM busybox\nRUN <<EOF\necho hi\n' }, err: /Dockerfile:2: unterminated heredoc/ },
  { name: 'unknown flag on an instruction', files: { Dockerfile: 'FROM busybox\nCOPY --bogus=1 f /f\n', f: 'x' }, err: /Dockerfile:2: .*bogus/ },
  { name: 'undefined build target', files: { Dockerfile: 'FROM busybox AS base\nFROM base AS final\n' }, args: ['--target', 'prod'], err: /failed to reach build target prod in Dockerfile: no stage is named "prod" \(stages: base, final\)/ },
  { name: 'base image not in the store', files: { Dockerfile: 'FROM nosuchimage:1.0\n' }, err: /Dockerfile:1: image nosuchimage:1.0 is not in the local store; import or pull it/ },
  { name: 'several sources to a non-directory', files: { Dockerfile: 'FROM busybox\nCOPY a b /notadir\n', a: 'a', b: 'b' }, err: /Dockerfile:2: .*destination must be a directory and end with a \// },
  { name: 'wildcard matching nothing', files: { Dockerfile: 'FROM busybox\nCOPY *.nothing /x/\n' }, err: /Dockerfile:2: .*no source files were specified/ },
  { name: 'instruction before FROM', files: { Dockerfile: 'RUN echo hi\nFROM busybox\n' }, err: /Dockerfile:1: RUN before the first FROM/ },
  { name: 'empty Dockerfile', files: { Dockerfile: '# nothing here\n' }, err: /Dockerfile:1: file with no instructions/ },
  { name: 'no Dockerfile in the context', files: { 'other.txt': 'x' }, err: /failed to read dockerfile: open Dockerfile: no such file or directory.*-f PATH/ },
  { name: 'COPY below a file of the image', files: { Dockerfile: 'FROM busybox\nCOPY f /etc/passwd/x\n', f: 'x' }, err: /Dockerfile:2: .*\/etc\/passwd is not a directory/ },
  { name: 'circular stage dependency', files: { Dockerfile: 'FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n' }, err: /circular dependency detected on stage/ },
  { name: 'invalid EXPOSE port', files: { Dockerfile: 'FROM busybox\nEXPOSE 80/tcpx\n' }, err: /Dockerfile:2: EXPOSE: invalid/ },
  { name: 'invalid STOPSIGNAL', files: { Dockerfile: 'FROM busybox\nSTOPSIGNAL SIGNOPE\n' }, err: /Dockerfile:2: STOPSIGNAL: invalid signal "SIGNOPE"/ },
  { name: 'missing required secret', files: { Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n' }, err: /Dockerfile:2: secret npmrc is required but was not given: pass --secret id=npmrc,src=FILE/ },
  { name: 'ssh mount', files: { Dockerfile: 'FROM busybox\nRUN --mount=type=ssh true\n' }, err: /Dockerfile:2: RUN --mount=type=ssh is not supported/ },
  { name: 'SHELL not in JSON form', files: { Dockerfile: 'FROM busybox\nSHELL /bin/bash -c\n' }, err: /Dockerfile:2: SHELL requires the arguments to be in JSON form/ },
  { name: 'invalid --chmod', files: { Dockerfile: 'FROM busybox\nCOPY --chmod=u+q f /f\n', f: 'x' }, err: /Dockerfile:2: .*chmod/ },
  { name: 'context dir missing', args: ['/nonexistent/tsbuild-ctx'], err: /unable to prepare context: path "\/nonexistent\/tsbuild-ctx" not found/ },
  { name: 'invalid tag', files: { Dockerfile: 'FROM busybox\n' }, args: ['-t', 'UPPER/Case:1'], err: /invalid argument "UPPER\/Case:1" for "-t, --tag" flag/, code: 125 },
  { name: 'unknown CLI flag', files: { Dockerfile: 'FROM busybox\n' }, args: ['--no-such-flag'], err: /unknown flag: --no-such-flag/, code: 125 },
];

describe('bad input: exit non-zero, say where and what to do, leave nothing behind', () => {
  for (const c of cases) {
    it(c.name, () => {
      const before = indexOf(env.root);
      const dir = env.context(c.files ?? {});
      const args = c.args?.some((a) => a.startsWith('/')) ? ['build', '-t', 'bad:1', ...c.args] : ['build', '-t', 'bad:1', ...(c.args ?? []), dir];
      const r = env.cli(args, { cwd: dir });
      expect(r.code, r.err).toBe(c.code ?? 1);
      expect(r.err).toMatch(c.err);
      expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
      expect(indexOf(env.root)).toEqual(before);
      expect(leftovers(env.root)).toEqual([]);
      expect(mountsUnder(env.root)).toEqual([]);
    });
  }

  it('accepts what BuildKit accepts: an invalid JSON array is shell form', async () => {
    const dir = env.context({ Dockerfile: "FROM busybox\nCMD ['sh', '-c']\n" });
    const r = env.cli(['build', '-q', '-t', 'oddjson:1', dir]);
    expect(r.code, r.err).toBe(0);
    const img = await env.image('oddjson:1');
    expect(img.config.config!.Cmd).toEqual(['/bin/sh', '-c', "['sh', '-c']"]);
  });

  it('a failed RUN shows its output and the earlier steps stay cached', () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nRUN echo step-one > /one\nRUN echo visible-output; exit 3\n' });
    const r1 = env.cli(['build', '--progress=plain', dir]);
    expect(r1.code).toBe(1);
    expect(r1.err).toMatch(/visible-output/);
    expect(r1.err).toMatch(/exit code: 3/);
    const r2 = env.cli(['build', '--progress=plain', dir]);
    expect(r2.err).toMatch(/RUN echo step-one > \/one\n#\d+ CACHED/);
  });

  it('Ctrl-C during a RUN: exit 130, temp dirs gone, the container with them; the next build cleans the step dir', async () => {
    const dir = env.context({ Dockerfile: 'FROM busybox\nCOPY Dockerfile /df\nRUN echo started; sleep 4321\n' });
    const child = spawn('node', [CLI, '--root', env.root, 'build', '--progress=plain', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (c: Buffer) => {
        err += c.toString();
        if (err.includes(' started')) resolve();
      });
    });
    const code = await new Promise<number | null>((resolve) => {
      child.on('exit', (c) => resolve(c));
      child.kill('SIGINT');
    });
    expect(code).toBe(130);
    expect(leftovers(env.root).filter((l) => l.startsWith('tmp/'))).toEqual([]);
    await new Promise((r) => setTimeout(r, 500));
    expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toMatch(/sleep 4321/);
    const again = env.cli(['build', '-q', env.context({ Dockerfile: 'FROM busybox\nRUN true\n' })]);
    expect(again.code, again.err).toBe(0);
    expect(leftovers(env.root)).toEqual([]);
    expect(mountsUnder(env.root)).toEqual([]);
  });
});
