// Where the stage scripts are. Each stage is its own Node process started
// with `node <stage>.js <spec.json>`: dist/runtime/init.js and monitor.js
// (bundled by scripts/bundle.mjs). This module is found in one of three places:
// dist/runtime/ (tsc's output: the stages are siblings), dist/chunks/ (inside
// a bundle: the stages are in ../runtime/), or runtime/ as .ts source under
// vitest, where Node 20 cannot run .ts files, so the compiled dist/ copies are
// used (npm run build first).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Stage = 'init' | 'monitor';

export function stageScript(stage: Stage): string {
  const here = fileURLToPath(import.meta.url);
  const dir = path.dirname(here);
  const candidates = here.endsWith('.js')
    ? [path.join(dir, `${stage}.js`), path.join(dir, '..', 'runtime', `${stage}.js`)]
    : [path.join(dir, '..', 'dist', 'runtime', `${stage}.js`)];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`runtime stage ${candidates.at(-1)} not found: build first (npm run build)`);
  return found;
}
