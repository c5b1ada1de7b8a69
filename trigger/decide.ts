/**
 * What applying or reverting a bundle means for a library in a given state.
 * Pure: the state comes from the process (runtime/loader/library.ts).
 *
 * Every switch is "make build T live". Apply makes the bundle's new build live
 * when the process runs its old build; revert makes the old build live when
 * the process runs the new one — or any build stacked on it later, since a
 * patch stacked on top only exists because this one was applied (when the
 * loader's own build is live again, an earlier revert already went below this
 * patch, and there is nothing left to revert). Which builds are stacked on
 * which is read from the names of the builds ulp mapped (the lineage,
 * runtime/loader/library.ts): reverting a patch the process already runs
 * below changes nothing, whatever order patches are reverted in. A slot mix of
 * both builds is an interrupted switch, and re-running either command
 * completes it in that command's direction.
 */
import { UlpError } from '../common/errors.js';
// Not through runtime/loader/index.ts, which loads the runtime (koffi): this module stays pure.
import { stackedOn, type Lineage } from '../runtime/loader/lineage.js';
import { shortBuildId } from '../common/format.js';

export interface LibraryFacts {
  pid: number;
  soname: string;
  liveBuildId: string | undefined;
  /** Build-ids that slots point at (more than one: an interrupted switch). */
  referenced: string[];
  /** Build-ids of every build of the library mapped in the process. */
  present: string[];
  /** The live build is the one the dynamic loader mapped (nothing stacked by ulp is live). */
  liveIsLoaderBuild: boolean;
  /** Which build was stacked on which (runtime/loader/library.ts); without it, any other live ulp build counts as stacked on top. */
  lineage?: Lineage;
  /** Some build of the library in the process was mapped by ulp-trigger (false: ld.so's build is all there is). */
  patchedByUlp?: boolean;
}

export type Decision = { action: 'switch'; note?: string } | { action: 'noop'; reason: NoopReason };

/**
 * already-applied: ulp made the bundle's new build live. runs-new-build: the
 * process loaded the new build itself at start and ulp never touched the
 * library; calling that "applied" would hide a process that merely runs the
 * bundle's new build (which, for a bundle packed the wrong way round, is the
 * vulnerable one). not-applied: a revert with nothing to undo.
 */
export type NoopReason = 'already-applied' | 'runs-new-build' | 'not-applied';

export function decide(
  which: 'forward' | 'reverse',
  fromBuildId: string,
  toBuildId: string,
  f: LibraryFacts,
): Decision {
  const mixed = f.referenced.length > 1;
  if (f.liveBuildId === toBuildId && !mixed) {
    if (which === 'reverse') return { action: 'noop', reason: 'not-applied' };
    return {
      action: 'noop',
      reason: f.liveIsLoaderBuild && f.patchedByUlp === false ? 'runs-new-build' : 'already-applied',
    };
  }
  if (mixed && f.referenced.includes(toBuildId))
    return { action: 'switch', note: 'completes an interrupted switch' };
  if (f.liveBuildId === fromBuildId) return { action: 'switch' };
  if (which === 'reverse' && f.present.includes(fromBuildId)) {
    // Another build is live. Stacked on top of this patch: undo the stack down to its old build.
    // Below it (an earlier revert already went below this patch): nothing to do — a revert never moves up.
    const above = f.lineage && f.liveBuildId ? stackedOn(f.lineage, f.liveBuildId, fromBuildId) : undefined;
    if (above === false) return { action: 'noop', reason: 'not-applied' };
    // Without a lineage that tells, the loader's own build is taken as below and any other as on top.
    if (above === undefined && f.liveIsLoaderBuild) return { action: 'noop', reason: 'not-applied' };
    return {
      action: 'switch',
      note: `also undoes what was stacked on top of it (live build ${shortBuildId(f.liveBuildId)})`,
    };
  }
  if (which === 'forward') {
    throw new UlpError(
      'TRIGGER_WRONG_BUILD',
      `${f.soname} in process ${f.pid} is build ${shortBuildId(f.liveBuildId)}; this bundle patches build ${shortBuildId(fromBuildId)}`,
      'Use the bundle made for the build this process runs (see --status), or pack one for it.',
      { pid: f.pid, soname: f.soname, live: f.liveBuildId, expected: fromBuildId },
    );
  }
  throw new UlpError(
    'TRIGGER_NOT_APPLIED',
    `this patch was never applied in process ${f.pid}: ${f.soname} is build ${shortBuildId(f.liveBuildId)}, neither of the bundle's builds`,
    'Nothing to revert here; --status shows the builds and patches of the process.',
    { pid: f.pid, soname: f.soname, live: f.liveBuildId },
  );
}
