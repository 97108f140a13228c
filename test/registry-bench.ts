// Push and pull of one image to the local registry: tsbuild vs skopeo, side
// by side (wall time, MB/s, peak RSS from /usr/bin/time). Not a test; run:
//   npm run build && npx vite-node test/registry-bench.ts [SIZE_MB] [RUNS]
// Each measured operation gets a fresh registry (so no tool can mount or
// reuse what another pushed) and a fresh destination; runs alternate tools.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from './helpers.js';
import { CLI, randomTree, startRegistry } from './registry-harness.js';

const sizeMb = Number(process.argv[2] ?? 100);
const runs = Number(process.argv[3] ?? 3);

interface Sample {
  seconds: number;
  rssMb: number;
}

function timed(cmd: string, args: string[]): Sample {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  const last = r.stderr.trim().split('\n').at(-1)!.split(' ');
  return { seconds: Number(last[0]), rssMb: Number(last[1]) / 1024 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const work = tempDir('regbench');
  try {
    const root = path.join(work, 'root');
    const tree = randomTree(path.join(work, 'tree'), sizeMb * 1024 * 1024);
    execFileSync('node', [CLI, '--root', root, 'import', tree, 'bench:1'], { stdio: 'pipe' });
    const layout = path.join(work, 'layout');
    execFileSync('node', [CLI, '--root', root, 'save', '--format', 'oci-dir', '-o', layout, 'bench:1'], { stdio: 'pipe' });
    const blobMb = Number(execFileSync('du', ['-sm', path.join(layout, 'blobs')], { encoding: 'utf8' }).split('\t')[0]);
    const res: Record<string, Sample[]> = { 'tsbuild push': [], 'skopeo push': [], 'tsbuild pull': [], 'skopeo pull': [] };
    for (let i = 0; i < runs; i++) {
      for (const tool of i % 2 === 0 ? ['tsbuild', 'skopeo'] : ['skopeo', 'tsbuild']) {
        // push into an empty registry
        let reg = await startRegistry(path.join(work, `reg-${i}-${tool}-push`));
        try {
          const dst = `${reg.host}/bench:1`;
          if (tool === 'tsbuild') {
            rmSync(path.join(root, 'registry'), { recursive: true, force: true });
            execFileSync('node', [CLI, '--root', root, 'tag', 'bench:1', dst]);
            res['tsbuild push']!.push(timed('node', [CLI, '--root', root, 'push', '-q', dst]));
          } else {
            res['skopeo push']!.push(timed('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}`, `docker://${dst}`]));
          }
        } finally {
          await reg.stop();
        }
        // pull from a registry that has the image (put there by the other tool)
        reg = await startRegistry(path.join(work, `reg-${i}-${tool}-pull`));
        try {
          const ref = `${reg.host}/bench:1`;
          execFileSync('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}`, `docker://${ref}`]);
          const dest = path.join(work, `dest-${i}-${tool}`);
          mkdirSync(dest);
          if (tool === 'tsbuild') res['tsbuild pull']!.push(timed('node', [CLI, '--root', dest, 'pull', '-q', ref]));
          else res['skopeo pull']!.push(timed('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${ref}`, `oci:${dest}/layout:bench`]));
          rmSync(dest, { recursive: true, force: true });
        } finally {
          await reg.stop();
        }
      }
    }
    console.log(`image: one ${sizeMb} MiB random layer (${blobMb} MB of blobs), ${runs} runs each, median (min-max)`);
    console.log('| operation | seconds | MB/s | peak RSS MB |');
    console.log('|---|---|---|---|');
    for (const [k, xs] of Object.entries(res)) {
      const s = xs.map((x) => x.seconds);
      const m = median(s);
      console.log(`| ${k} | ${m.toFixed(2)} (${Math.min(...s).toFixed(2)}-${Math.max(...s).toFixed(2)}) | ${(blobMb / m).toFixed(0)} | ${median(xs.map((x) => x.rssMb)).toFixed(0)} |`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
