// Bundles tsc's output for the three process entry points — the CLI
// (dist/cli/main.js) and the runtime's stage processes (dist/runtime/init.js,
// dist/runtime/monitor.js) — in place, with the code they share in
// dist/chunks/. Run by `npm run build` right after tsc, which rewrites every
// file in dist/ (no incremental build), so the inputs here are always tsc's.
//
// Why: every tsbuild command is a fresh Node process, and `run` is two (the
// CLI and init). Loading ~60 small ES modules costs more than the code in them:
// bundled, `tsbuild run --rm` got ~27 ms and a cached `tsbuild build` ~43 ms
// faster on this machine (measured with hyperfine; see README, dependencies).
// Lazy imports (command groups, the registry client) stay lazy: they become
// chunks loaded on demand. koffi (a native addon) and undici stay in
// node_modules.
import { build } from 'esbuild';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

const dist = path.resolve(import.meta.dirname, '..', 'dist');
const entries = ['cli/main.js', 'runtime/init.js', 'runtime/monitor.js'].map((e) => path.join(dist, e));
const MARK = '// tsbuild bundle';

for (const e of entries) {
  if (!existsSync(e)) throw new Error(`bundle: ${e} is missing: run tsc first (npm run build)`);
  if (readFileSync(e, 'utf8').includes(MARK)) throw new Error(`bundle: ${e} is already a bundle: run tsc first (npm run build)`);
}

const tmp = path.join(dist, '.bundle-tmp');
rmSync(tmp, { recursive: true, force: true });
rmSync(path.join(dist, 'chunks'), { recursive: true, force: true });
try {
  await build({
    entryPoints: entries,
    outbase: dist,
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    chunkNames: 'chunks/[name]-[hash]',
    external: ['koffi', 'undici'],
    // CommonJS dependencies (tar-stream and its helpers) call require() for
    // Node's built-ins; an ES module has none unless we make one.
    banner: { js: `${MARK}\nimport { createRequire as __tsbuildCreateRequire } from 'node:module';\nconst require = __tsbuildCreateRequire(import.meta.url);` },
    logLevel: 'warning',
  });
  cpSync(tmp, dist, { recursive: true });
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
