// save / load commands (placeholder until image/archive.ts lands).
import type { Command } from './command.js';

export const archiveCommands: Command[] = [];
