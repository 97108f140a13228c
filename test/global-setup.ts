// Runs once before all test files: installs what is missing and builds dist/
// (the CLI and the runtime's stage processes run from there). Building here,
// once, keeps test files from racing each other writing dist/.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export default function setup(): void {
  execFileSync('bash', [path.resolve('scripts/setup.sh')], { stdio: 'inherit' });
}
