/**
 * Bugs in runtime/, trigger/ or patches/ that these scenarios found and that
 * are not fixed yet, each recognised from what a scenario observed. The soak
 * still counts them as failures (it is the evidence, and exits non-zero);
 * the CI short forms mark a test that fails only because of one of them as
 * pending, naming the bug, so that CI stays green without hiding it. Remove
 * an entry when its fix lands: the tests then hold the fix.
 *
 * docs/RELIABILITY.md describes each one with its reproduction.
 */
import type { CorpusResult } from './corpus.js';
import type { DeathResult, EnvResult } from './environments.js';
import type { FaultAttempt } from './scenarios.js';

export interface KnownBug {
  id: string;
  title: string;
  /** The file and function at fault. */
  where: string;
  fault?: (a: FaultAttempt) => boolean;
  /** A held SIGINT/SIGTERM the command did not act on (FaultAttempt.heldSignal). */
  held?: (a: FaultAttempt) => boolean;
  death?: (d: DeathResult) => boolean;
  env?: (problem: string, r: EnvResult) => boolean;
  corpus?: (r: CorpusResult) => boolean;
}

export const KNOWN_BUGS: readonly KnownBug[] = [
  // None open: the last three (held-signal-lost, died-slow-wait, stale-plan-after-race) are fixed; their tests hold the fixes.
];

export function knownFault(a: FaultAttempt): KnownBug | undefined {
  return KNOWN_BUGS.find((b) => b.fault?.(a));
}

export function knownHeld(a: FaultAttempt): KnownBug | undefined {
  return KNOWN_BUGS.find((b) => b.held?.(a));
}

export function knownDeath(d: DeathResult): KnownBug | undefined {
  return KNOWN_BUGS.find((b) => b.death?.(d));
}

export function knownCorpus(r: CorpusResult): KnownBug | undefined {
  return KNOWN_BUGS.find((b) => b.corpus?.(r));
}

/** The bug behind every problem of `r`, if one bug explains them all. */
export function knownEnv(r: EnvResult): KnownBug | undefined {
  if (r.problems.length === 0) return undefined;
  const bug = KNOWN_BUGS.find((b) => b.env && r.problems.every((p) => b.env!(p, r)));
  return bug;
}
