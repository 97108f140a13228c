// `npm run bench [section...] [--runs N]`: side-by-side benchmarks against the
// reference tools, in one run. Sections: run (runtime.ts: run --rm vs docker,
// podman, runc, crun), build (build.ts: build and build+push vs docker build
// with BuildKit and buildah build; build-small: only its small cold and cached
// builds, a minute instead of ten). --runs N (default 10) is the small cases'
// run count; build's large cases use min(N, 3).
import { benchBuild } from './build.js';
import { benchRuntime } from './runtime.js';

const sections: Record<string, (runs: number) => Promise<unknown>> = {
  run: benchRuntime,
  build: benchBuild,
  'build-small': (runs) => benchBuild(runs, { smallOnly: true }),
};

const argv = process.argv.slice(2);
const ri = argv.indexOf('--runs');
const runs = ri >= 0 ? Number(argv[ri + 1]) : 10;
const wanted = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--runs');
for (const name of wanted.length ? wanted : ['run', 'build']) {
  const fn = sections[name];
  if (!fn) {
    console.error(`bench: unknown section ${name} (have: ${Object.keys(sections).join(', ')})`);
    process.exit(2);
  }
  await fn(runs);
}
