// Where the stage scripts are. Each stage is its own Node process started
// with `node <stage>.js <spec.json>`. Compiled, they sit next to this module
// in dist/runtime/. Under vitest this module is the .ts source, and Node 20
// cannot run .ts files, so we fall back to the compiled copies in dist/
// (run `npx tsc -p .` first).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Stage = 'init' | 'monitor';

export function stageScript(stage: Stage): string {
  const here = fileURLToPath(import.meta.url);
  const sibling = path.join(path.dirname(here), `${stage}.js`);
  if (here.endsWith('.js')) return sibling;
  const compiled = path.join(path.dirname(here), '..', 'dist', 'runtime', `${stage}.js`);
  if (!existsSync(compiled)) throw new Error(`runtime stage ${compiled} not found: build first (npx tsc -p .)`);
  return compiled;
}
