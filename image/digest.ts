// sha256 digests: validation, hashing streams and files.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';

export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

/** Validates an untrusted digest string; only sha256 is accepted. */
export function parseDigest(s: string, what = 'digest'): Digest {
  if (!isDigest(s)) {
    if (/^[a-z0-9]+([+._-][a-z0-9]+)*:/.test(s) && !s.startsWith('sha256:')) {
      throw new Error(`${what} "${s}": unsupported algorithm (only sha256 is supported)`);
    }
    throw new Error(`${what} "${s}" is not a valid sha256 digest (expected sha256: followed by 64 lowercase hex digits)`);
  }
  return s;
}

export function hexOf(d: Digest): string {
  return d.slice('sha256:'.length);
}

export function sha256(data: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A pass-through stream that hashes and counts what flows through it. */
export class HashCounter extends Transform {
  readonly hash: Hash = createHash('sha256');
  size = 0;
  private _digest?: Digest;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }

  /** Valid once the stream has ended. */
  digest(): Digest {
    this._digest ??= `sha256:${this.hash.digest('hex')}`;
    return this._digest;
  }
}

export async function sha256File(path: string): Promise<{ digest: Digest; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}
