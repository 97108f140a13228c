// Parallel gzip for the layers a build writes, in the way of pigz -i: the tar
// stream is cut into fixed-size blocks, each block is deflated on its own
// (no shared dictionary) on libuv's threadpool, several at once, and the
// results are joined in order into ONE ordinary gzip member (header, the
// deflate blocks — each ending on a byte boundary with a sync flush, the last
// one final — then CRC-32 and length). Any gzip reader takes it; the output
// depends only on the input and the block size, so builds stay reproducible.
//
// Why: deflate is the slowest part of writing a layer (level 1: ~55-70 MB/s on
// one core here), and it is on the build's critical path. Blocks of 1 MiB
// cost under 1% of compression ratio against one long stream.
//
// Keeping every core busy: each block is deflated in ONE threadpool job (the
// output buffer holds a whole deflated block; with zlib's default 16 KiB
// chunks a block took ~40 round trips through the main thread, and the
// compressors stalled whenever the main thread was busy reading files);
// finished blocks are passed on as soon as they and all blocks before them are
// done; input chunks that are whole blocks (the tar writers of layer-writer.ts
// and copy.ts push exactly BLOCK bytes) are used as they are, never copied.
import os from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

/** Size of the blocks deflated independently; part of the output format (changing it changes every layer digest). */
export const GZIP_BLOCK = 1 << 20;
/** gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unix (as Node's zlib writes it). */
const HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]);

/**
 * Blocks in flight: one per core that libuv's threadpool can use, plus two
 * queued, so a core never waits for the main thread to hand it work (2 cores,
 * 4 threads: 4). The pool has UV_THREADPOOL_SIZE threads (default 4), read by
 * libuv when the pool starts — before any of our code runs, since Node's ESM
 * loader already uses it: set it in the environment of the process.
 */
export function defaultParallelism(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.min(Math.max(2, os.availableParallelism()), pool) + 2;
}

function deflateRaw(buf: Buffer, level: number, final: boolean): Promise<Buffer> {
  // Room for the whole deflated block (incompressible data grows by ~5 bytes per 16 KiB, plus the flush marker).
  const chunkSize = Math.max(1024, buf.length + (buf.length >> 10) + 1024);
  return new Promise((resolve, reject) => {
    zlib.deflateRaw(buf, { level, chunkSize, finishFlush: final ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH }, (err, out) => (err ? reject(err) : resolve(out)));
  });
}

/** A block to deflate: an input chunk itself (handed to `release` afterwards), a view into one, or our own buffer (reused). */
type BlockKind = 'input' | 'view' | 'own';

interface Job {
  out?: Buffer;
  err?: Error;
}

export class ParallelGzip extends Transform {
  /** The block being assembled from input chunks smaller than a block (or not aligned to one). */
  private partial: Buffer | undefined;
  /** Our own blocks, deflated and free again. */
  private spare: Buffer[] = [];
  /** What `held` is: an input chunk itself, a view into one, or one of our blocks. */
  private heldKind: BlockKind = 'own';
  private fill = 0;
  /** The newest whole block: submitted once we know it is not the last one. */
  private held: Buffer | undefined;
  /** Blocks in flight, in input order. */
  private queue: Job[] = [];
  /** Resolves when the queue has room again (or a job failed). */
  private waiter: (() => void) | undefined;
  private failed: Error | undefined;
  private crc = 0;
  private size = 0;
  private headerSent = false;

  /**
   * @param release called with each input chunk that was deflated as it was
   *   (a whole block) once this stage is done with it — for a producer that
   *   reuses its chunks (TarStream.recycle). Only when nothing else holds them.
   */
  constructor(
    private readonly level = 1,
    private readonly parallel = defaultParallelism(),
    private readonly release?: (chunk: Buffer) => void,
  ) {
    super({ readableHighWaterMark: 4 * GZIP_BLOCK });
  }

  private header(): void {
    if (!this.headerSent) {
      this.push(HEADER);
      this.headerSent = true;
    }
  }

  /** Passes on every finished block at the head of the queue; wakes a waiting submitter. */
  private drain(): void {
    while (this.queue.length > 0 && this.queue[0]!.out !== undefined) this.push(this.queue.shift()!.out);
    const err = this.queue.find((j) => j.err)?.err;
    if (err) this.failed ??= err;
    if (this.waiter && (this.failed || this.queue.length < this.parallel)) {
      const w = this.waiter;
      this.waiter = undefined;
      w();
    }
  }

  /** Starts compressing one block; resolves once there is room for another. */
  private submit(block: Buffer, final: boolean, kind: BlockKind): Promise<void> {
    this.crc = zlib.crc32(block, this.crc);
    this.size = (this.size + block.length) % 0x100000000;
    const job: Job = {};
    this.queue.push(job);
    deflateRaw(block, this.level, final).then(
      (out) => {
        job.out = out;
        if (kind === 'input') this.release?.(block);
        else if (kind === 'own' && block.length === GZIP_BLOCK && this.spare.length < 4) this.spare.push(block);
        this.drain();
      },
      (err: Error) => {
        job.err = err;
        this.drain();
      },
    );
    return this.room();
  }

  private room(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.queue.length < this.parallel) return Promise.resolve();
    return new Promise<void>((resolve) => (this.waiter = resolve)).then(() => {
      if (this.failed) throw this.failed;
    });
  }

  /** Until the queue is empty. */
  private async settle(): Promise<void> {
    while (this.queue.length > 0) {
      if (this.failed) throw this.failed;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    if (this.failed) throw this.failed;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.header();
    const full: [Buffer, BlockKind][] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.fill === 0 && chunk.length - off >= GZIP_BLOCK) {
        const whole = off === 0 && chunk.length === GZIP_BLOCK;
        full.push(whole ? [chunk, 'input'] : [chunk.subarray(off, off + GZIP_BLOCK), 'view']);
        off += GZIP_BLOCK;
        continue;
      }
      this.partial ??= this.spare.pop() ?? Buffer.allocUnsafe(GZIP_BLOCK);
      const n = chunk.copy(this.partial, this.fill, off, Math.min(chunk.length, off + GZIP_BLOCK - this.fill));
      this.fill += n;
      off += n;
      if (this.fill === GZIP_BLOCK) {
        full.push([this.partial, 'own']);
        this.partial = undefined;
        this.fill = 0;
      }
    }
    if (full.length === 0) return cb();
    (async () => {
      for (const [b, kind] of full) {
        // Keep one block back until we know whether it is the last one.
        if (this.held) await this.submit(this.held, false, this.heldKind);
        this.held = b;
        this.heldKind = kind;
      }
    })().then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.header();
    (async () => {
      let last: Buffer;
      let kind: BlockKind = 'view'; // a partial block or nothing: not reused
      if (this.fill > 0) {
        if (this.held) await this.submit(this.held, false, this.heldKind);
        last = this.partial!.subarray(0, this.fill);
      } else {
        last = this.held ?? Buffer.alloc(0);
        if (this.held) kind = this.heldKind;
      }
      this.held = this.partial = undefined;
      await this.submit(last, true, kind);
      await this.settle();
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.size >>> 0, 4);
      this.push(trailer);
    })().then(() => cb(), cb);
  }
}
