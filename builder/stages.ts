// The stage graph: which stages the target needs and in what order they can
// run. A stage depends on another when its FROM names an earlier stage, or a
// COPY --from / RUN --mount from= names a stage (by name, case-insensitive, or
// by index). Only stages reachable from the target are built; stages with no
// path between them run concurrently (build.ts starts each stage once all of
// its dependencies are done).
import { DockerfileError, type Dockerfile, type Location, type Stage } from './instructions.js';

export interface StageRef {
  /** The stage, when the reference names one; undefined: an image reference. */
  stage?: Stage;
  /** The expanded reference text. */
  ref: string;
}

export interface StagePlan {
  target: Stage;
  /** Stages to build, in file order. */
  needed: Stage[];
  /** Dependencies of each needed stage (by index). */
  deps: Map<number, Stage[]>;
  /** Stage names shown in messages. */
  displayName(stage: Stage): string;
}

/** Finds a stage by name (case-insensitive) or by index; `before` limits to earlier stages (FROM). */
export function findStage(df: Dockerfile, ref: string, before?: number): Stage | undefined {
  const lower = ref.toLowerCase();
  const limit = before ?? df.stages.length;
  const byName = df.stages.find((s) => s.index < limit && s.from.stageName === lower);
  if (byName) return byName;
  if (/^\d+$/.test(ref)) {
    const i = Number(ref);
    if (i < limit) return df.stages[i];
  }
  return undefined;
}

export function stageNames(df: Dockerfile): string {
  const names = df.stages.map((s) => s.from.stageName ?? String(s.index));
  return names.join(', ');
}

/**
 * Plans the build. `expand` expands a stage reference (FROM image, --from)
 * with the global build args.
 */
export function planStages(df: Dockerfile, target: string | undefined, expand: (word: string, loc: Location) => string): StagePlan {
  let targetStage: Stage;
  if (target !== undefined && target !== '') {
    const t = df.stages.find((s) => s.from.stageName === target.toLowerCase());
    if (!t) {
      const named = df.stages.filter((s) => s.from.stageName).map((s) => s.from.stageName);
      throw new DockerfileError(
        `failed to reach build target ${target} in Dockerfile: no stage is named ${JSON.stringify(target)} (${named.length ? `stages: ${named.join(', ')}` : 'no stage has a name: add AS NAME to a FROM line'})`,
        { file: df.file, startLine: 1, endLine: 1 },
      );
    }
    targetStage = t;
  } else {
    targetStage = df.stages[df.stages.length - 1]!;
  }

  const depsOf = (s: Stage): Stage[] => {
    const out = new Set<Stage>();
    const fromRef = expand(s.from.image, s.from.loc);
    const base = findStage(df, fromRef, s.index);
    if (base) out.add(base);
    for (const ins of s.instructions) {
      let refs: string[] = [];
      if ((ins.kind === 'COPY' || ins.kind === 'ADD') && ins.from !== undefined) refs = [ins.from];
      if (ins.kind === 'RUN') refs = ins.mounts.map((m) => m.options.from).filter((f): f is string => f !== undefined && f !== '');
      for (const r of refs) {
        const st = findStage(df, expand(r, ins.loc));
        if (st === s) throw new DockerfileError(`${ins.kind} refers to its own stage (${r}): a stage cannot copy from itself`, ins.loc);
        if (st) out.add(st);
      }
    }
    return [...out];
  };

  const deps = new Map<number, Stage[]>();
  const needed = new Set<Stage>();
  const visiting = new Set<Stage>();
  const visit = (s: Stage, chain: Stage[]) => {
    if (needed.has(s)) return;
    if (visiting.has(s)) {
      const cycle = [...chain.slice(chain.indexOf(s)), s].map((x) => x.from.stageName ?? x.index).join(' -> ');
      throw new DockerfileError(`circular dependency detected on stage: ${cycle}`, s.from.loc);
    }
    visiting.add(s);
    const d = depsOf(s);
    deps.set(s.index, d);
    for (const x of d) visit(x, [...chain, s]);
    visiting.delete(s);
    needed.add(s);
  };
  visit(targetStage, []);
  const multi = df.stages.length > 1;
  return {
    target: targetStage,
    needed: [...needed].sort((a, b) => a.index - b.index),
    deps,
    displayName: (s) => (multi ? (s.from.stageName ?? `stage-${s.index}`) : ''),
  };
}
