// WWW-Authenticate challenges (RFC 7235 syntax) and the token cache of the
// Docker registry token protocol: a token is granted for a set of scopes
// ("repository:library/app:pull,push") and is only good until it expires.

export interface Challenge {
  /** Lowercased auth scheme: "basic", "bearer", ... */
  scheme: string;
  /** Lowercased parameter names: realm, service, scope, error, ... */
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header value into its challenges. Handles quoted
 * strings with escapes, commas inside quotes, several challenges in one header
 * (`Basic realm="x", Bearer realm="y",service="z"`) and several headers.
 */
export function parseWwwAuthenticate(value: string | string[] | undefined): Challenge[] {
  if (value === undefined) return [];
  const values = Array.isArray(value) ? value : [value];
  const out: Challenge[] = [];
  for (const v of values) out.push(...parseOne(v));
  return out;
}

function parseOne(s: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = s.length;
  const skipWs = () => {
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipWs();
    if (s[i] === ',') {
      i++;
      continue;
    }
    const start = i;
    const name = token();
    if (name === '') {
      i++; // junk character: skip it
      continue;
    }
    skipWs();
    if (s[i] === '=' && current) {
      // auth-param of the current challenge (token68 values like "abc==" are rare in registries)
      i++;
      skipWs();
      let val = '';
      if (s[i] === '"') {
        i++;
        while (i < n && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < n) i++;
          val += s[i];
          i++;
        }
        i++; // closing quote
      } else {
        val = token();
      }
      current.params[name.toLowerCase()] = val;
      continue;
    }
    if (s[i] === '=' && !current) {
      // A parameter before any scheme: malformed; skip to the next comma.
      while (i < n && s[i] !== ',') i++;
      continue;
    }
    // A new challenge starts with a scheme token followed by whitespace, a comma or the end.
    void start;
    current = { scheme: name.toLowerCase(), params: {} };
    out.push(current);
  }
  return out;
}

/** The challenge tsbuild will answer: Bearer if offered, else Basic. */
export function pickChallenge(list: Challenge[]): Challenge | undefined {
  return list.find((c) => c.scheme === 'bearer' && c.params.realm) ?? list.find((c) => c.scheme === 'basic');
}

export function repositoryScope(repo: string, actions: ('pull' | 'push')[]): string {
  return `repository:${repo}:${actions.join(',')}`;
}

/**
 * Merges scope strings: actions of the same resource are united
 * ("repository:a:pull" + "repository:a:push" -> "repository:a:pull,push"), the result sorted.
 */
export function mergeScopes(...lists: (string | undefined)[][]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const list of lists) {
    for (const item of list) {
      if (!item) continue;
      for (const scope of item.split(' ').filter(Boolean)) {
        const c = scope.lastIndexOf(':');
        if (c < 0) {
          byResource.set(scope, byResource.get(scope) ?? new Set());
          continue;
        }
        const res = scope.slice(0, c);
        const set = byResource.get(res) ?? new Set<string>();
        for (const a of scope.slice(c + 1).split(',').filter(Boolean)) set.add(a);
        byResource.set(res, set);
      }
    }
  }
  return [...byResource.entries()].map(([r, a]) => (a.size ? `${r}:${[...a].sort().join(',')}` : r)).sort();
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Tokens by scope set; an entry is dropped a little before it expires. */
export class TokenCache {
  private tokens = new Map<string, CachedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  static key(scopes: string[]): string {
    return [...scopes].sort().join(' ');
  }

  get(scopes: string[]): string | undefined {
    const k = TokenCache.key(scopes);
    const t = this.tokens.get(k);
    if (!t) return undefined;
    if (this.now() >= t.expiresAt) {
      this.tokens.delete(k);
      return undefined;
    }
    return t.token;
  }

  /** expiresIn in seconds (the spec's default is 60); 10% (at most 30 s) kept as a margin. */
  set(scopes: string[], token: string, expiresIn = 60, issuedAt?: string): void {
    let start = this.now();
    if (issuedAt) {
      const t = Date.parse(issuedAt);
      // Trust the token service's clock only when it is close to ours.
      if (!Number.isNaN(t) && Math.abs(t - start) < 5 * 60_000) start = Math.min(start, t);
    }
    const life = Math.max(1, expiresIn) * 1000;
    const margin = Math.min(30_000, life / 10);
    this.tokens.set(TokenCache.key(scopes), { token, expiresAt: start + life - margin });
  }

  delete(scopes: string[]): void {
    this.tokens.delete(TokenCache.key(scopes));
  }

  get size(): number {
    return this.tokens.size;
  }
}
