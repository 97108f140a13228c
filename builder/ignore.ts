// .dockerignore and --exclude patterns as PathFilters (Docker's matching
// rules via @balena/dockerignore, a port of moby's fileutils: `*` stays in one
// directory, `**` spans any number, `!` re-includes, a matched dir excludes
// everything below it).
import { createRequire } from 'node:module';
import type { Ignore } from '@balena/dockerignore';

// The package is CommonJS with `module.exports = factory` (plus a `.default`).
const dockerignore = createRequire(import.meta.url)('@balena/dockerignore') as () => Ignore;
import type { PathFilter } from './sourcefs.js';

/** Docker's reading of an ignore file: one pattern a line, `#` comments, blank lines skipped, surrounding space trimmed. */
export function ignorePatterns(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    out.push(line);
  }
  return out;
}

export function patternFilter(patterns: string[]): PathFilter | undefined {
  const cleaned = patterns
    .map((p) => {
      const neg = p.startsWith('!');
      let body = (neg ? p.slice(1) : p).trim();
      // Docker cleans each pattern (filepath.Clean) and strips a leading '/'.
      body = body.replace(/^\/+/, '').replace(/\/+$/, '').replace(/\/\.(?=\/|$)/g, '');
      if (body === '' || body === '.') return undefined;
      return neg ? `!${body}` : body;
    })
    .filter((p): p is string => p !== undefined);
  if (cleaned.length === 0) return undefined;
  const ig = dockerignore().add(cleaned);
  return { excludes: (rel: string) => ig.ignores(rel), hasExceptions: cleaned.some((p) => p.startsWith('!')) };
}

/** A .dockerignore file (its text; `where` names it in errors). */
export function loadIgnoreFile(text: string, _where: string): PathFilter | undefined {
  return patternFilter(ignorePatterns(text));
}
