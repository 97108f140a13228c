// Multi-stage builds: only the stages the target needs, independent stages
// concurrently, --target (case-insensitive), FROM an earlier stage.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildEnv } from './build-helpers.js';

const env = new BuildEnv();
beforeAll(() => env.init('stages'));
afterAll(() => env.cleanup());

const read = (root: string, p: string) => fs.readFileSync(path.join(root, p), 'utf8');

describe('stages', () => {
  it('builds only what the target needs; --target picks a stage, case-insensitively', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox AS base
ENV BASE=1
RUN echo base > /base

FROM base AS broken
RUN echo this stage must not run; exit 1

FROM base AS Test
RUN echo test > /test

FROM busybox AS final
COPY --from=base /base /base
CMD ["cat", "/base"]
`,
    });
    const r = await env.build(dir);
    expect(r.log).not.toMatch(/must not run/);
    expect(r.log).not.toMatch(/echo test/);
    expect(r.log).toMatch(/\[base 2\/2\] RUN echo base > \/base/);
    expect(r.log).toMatch(/\[final 2\/2\] COPY --from=base \/base \/base/);
    const root = await env.rootfs(r.image);
    expect(read(root, 'base')).toBe('base\n');
    expect(r.image.config.config!.Cmd).toEqual(['cat', '/base']);

    const t = await env.build(dir, { target: 'TEST' });
    expect(t.log).not.toMatch(/must not run/);
    const troot = await env.rootfs(t.image);
    expect(read(troot, 'test')).toBe('test\n');
    // FROM an earlier stage inherits its config and layers.
    expect(t.image.config.config!.Env).toEqual(['BASE=1']);
    expect(read(troot, 'base')).toBe('base\n');
  });

  it('runs independent stages at the same time', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox AS a
RUN --mount=type=cache,id=concurrency,target=/c touch /c/a && sleep 3 && ls /c > /a-saw

FROM busybox AS b
RUN --mount=type=cache,id=concurrency,target=/c touch /c/b && sleep 3 && ls /c > /b-saw

FROM busybox
COPY --from=a /a-saw /a-saw
COPY --from=b /b-saw /b-saw
`,
    });
    const r = await env.build(dir);
    const root = await env.rootfs(r.image);
    // Each saw the other's marker while it slept.
    expect(read(root, 'a-saw').split('\n')).toContain('b');
    expect(read(root, 'b-saw').split('\n')).toContain('a');
  });

  it('ARGs before FROM parameterise FROM lines; a stage name can be chosen by a build arg', async () => {
    const dir = env.context({
      Dockerfile: `ARG VARIANT=one
FROM busybox AS one
RUN echo one > /v
FROM busybox AS two
RUN echo two > /v
FROM \${VARIANT}
RUN cat /v > /chosen
`,
    });
    const r1 = await env.build(dir);
    expect(read(await env.rootfs(r1.image), 'chosen')).toBe('one\n');
    const r2 = await env.build(dir, { buildArgs: { VARIANT: 'two' } });
    expect(read(await env.rootfs(r2.image), 'chosen')).toBe('two\n');
    expect(r2.log).not.toMatch(/echo one/);
  });

  it('COPY --from is cached by what it copies: a source stage that ran again with the same files still hits', async () => {
    const dir = env.context({
      Dockerfile: `FROM busybox AS gen
ARG V=1
ARG OUT=same
RUN echo $V > /other && echo $OUT > /out
FROM busybox
COPY --from=gen /out /out
RUN cat /out > /copy
`,
    });
    const r1 = await env.build(dir);
    // V changes: gen's RUN runs again, /out is the same, so the COPY and the RUN after it are cached.
    const r2 = await env.build(dir, { buildArgs: { V: '2' } });
    expect(r2.log).toMatch(/RUN echo 2 > \/other[^\n]*\n#\d+ DONE/);
    expect(r2.log).toMatch(/COPY --from=gen \/out \/out\n#\d+ CACHED/);
    expect(r2.log).toMatch(/RUN cat \/out > \/copy\n#\d+ CACHED/);
    expect(r2.image.layers.map((l) => l.descriptor.digest)).toEqual(r1.image.layers.map((l) => l.descriptor.digest));
    // /out changes: the COPY runs.
    const r3 = await env.build(dir, { buildArgs: { V: '2', OUT: 'changed' } });
    expect(r3.log).toMatch(/COPY --from=gen \/out \/out\n#\d+ DONE/);
    expect(read(await env.rootfs(r3.image), 'copy')).toBe('changed\n');
  });
});
