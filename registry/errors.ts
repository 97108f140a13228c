// Errors of the registry client. Every one carries a message meant for the
// user as it is: one line naming the registry/reference and what went wrong.

/** One entry of a registry's error body: {"errors":[{"code","message","detail"}]}. */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

/** A registry answered with an error status (after retries, where they apply). */
export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly errors: RegistryErrorEntry[] = [],
    /** From a Retry-After header of the failing response, in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RegistryError';
  }

  /** True when the registry's error codes include this one (e.g. "MANIFEST_UNKNOWN"). */
  hasCode(code: string): boolean {
    return this.errors.some((e) => e.code === code);
  }
}

/** 401/403 from a registry or its token service; the message says what to do. */
export class AuthError extends RegistryError {
  constructor(message: string, status?: number, errors: RegistryErrorEntry[] = []) {
    super(message, status, errors);
    this.name = 'AuthError';
  }
}

/** The content a registry sent does not match its digest or size. Never retried. */
export class ContentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContentError';
  }
}

/**
 * Turns a registry error body into one line: "manifest unknown (MANIFEST_UNKNOWN)",
 * several errors joined with "; ". Returns undefined when the body is not that shape.
 */
export function describeErrorBody(text: string): { line: string; errors: RegistryErrorEntry[] } | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  const list = (body as { errors?: unknown })?.errors;
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const errors: RegistryErrorEntry[] = [];
  for (const e of list) {
    if (!e || typeof e !== 'object') continue;
    const code = typeof (e as RegistryErrorEntry).code === 'string' ? (e as RegistryErrorEntry).code : 'UNKNOWN';
    const message = typeof (e as RegistryErrorEntry).message === 'string' ? (e as RegistryErrorEntry).message : undefined;
    errors.push({ code, message, detail: (e as RegistryErrorEntry).detail });
  }
  if (errors.length === 0) return undefined;
  const line = errors
    .map((e) => {
      const msg = e.message || e.code.toLowerCase().replace(/_/g, ' ');
      const detail = describeDetail(e.detail);
      return `${msg}${detail ? `: ${detail}` : ''} (${e.code})`;
    })
    .join('; ');
  return { line, errors };
}

function describeDetail(d: unknown): string {
  if (d === undefined || d === null || d === '') return '';
  if (typeof d === 'string') return d;
  if (Array.isArray(d)) {
    // distribution's UNAUTHORIZED detail: [{Type, Class, Name, Action}]
    const parts = d
      .map((x) => (x && typeof x === 'object' && 'Name' in x ? `${String((x as Record<string, unknown>).Action ?? '')} ${String((x as Record<string, unknown>).Name)}`.trim() : ''))
      .filter(Boolean);
    return parts.join(', ');
  }
  // Objects ({"Tag":…}, {"Name":…}, {"Digest":…}) repeat what the caller's message already names.
  return '';
}
