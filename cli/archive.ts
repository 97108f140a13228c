// save / load: images to and from tarballs and OCI layouts (image/archive.ts does the work).
import type { Readable, Writable } from 'node:stream';
import { bool, str, UsageError } from './args.js';
import { out, type Command } from './command.js';
import { ARCHIVE_FORMATS, loadArchive, saveImages, type ArchiveFormat } from '../image/archive.js';
import { shortTag } from '../image/images.js';

const save: Command = {
  name: 'save',
  usage: 'save [OPTIONS] IMAGE [IMAGE...]',
  description: 'Save one or more images to a tar archive (streamed to STDOUT by default)',
  flags: [
    { name: 'output', short: 'o', type: 'string', description: 'Write to a file, instead of STDOUT', arg: 'string' },
    {
      name: 'format',
      type: 'string',
      description: `Archive format: ${ARCHIVE_FORMATS.join(', ')}`,
      default: 'docker-archive',
      arg: 'string',
    },
  ],
  minArgs: 1,
  async run(args, ctx) {
    const format = str(args, 'format') ?? 'docker-archive';
    if (!(ARCHIVE_FORMATS as readonly string[]).includes(format)) {
      throw new UsageError(`invalid argument "${format}" for "--format" flag: use one of ${ARCHIVE_FORMATS.join(', ')}`);
    }
    const output = str(args, 'output');
    const store = await ctx.store();
    if (output !== undefined) {
      if (output === '') throw new UsageError('the -o flag needs a file name');
      await saveImages(store, args.positionals, output, format as ArchiveFormat);
      return 0;
    }
    if (format === 'oci-dir') throw new UsageError('the oci-dir format writes a directory: give it with -o DIR');
    if ((ctx.stdout as { isTTY?: boolean }).isTTY) {
      throw new Error('cowardly refusing to save to a terminal. Use the -o flag or redirect');
    }
    await saveImages(store, args.positionals, ctx.stdout as unknown as Writable, format as ArchiveFormat);
    return 0;
  },
};

const load: Command = {
  name: 'load',
  usage: 'load [OPTIONS]',
  description: 'Load images from a tar archive or an OCI layout (STDIN by default)',
  flags: [
    { name: 'input', short: 'i', type: 'string', description: 'Read from tar archive file (or OCI layout directory), instead of STDIN', arg: 'string' },
    { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress the load output' },
  ],
  maxArgs: 0,
  async run(args, ctx) {
    const input = str(args, 'input');
    const store = await ctx.store();
    let source: string | Readable;
    if (input !== undefined) {
      source = input;
    } else {
      if (process.stdin.isTTY) throw new Error('requested load from stdin, but stdin is empty');
      source = process.stdin;
    }
    const res = await loadArchive(store, source, { source: input ?? 'stdin' });
    // Docker prints these lines even with -q (which only hides progress); so do we.
    void bool(args, 'quiet');
    for (const img of res.images) {
      if (img.tags.length === 0) out(ctx, `Loaded image ID: ${img.id}`);
      for (const t of img.tags) out(ctx, `Loaded image: ${shortTag(t)}`);
    }
    return 0;
  },
};

export const archiveCommands: Command[] = [save, load];
