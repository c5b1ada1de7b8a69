/** The two builds of one direction, named for what the analysis does with them. */
import type { Build } from '../model.js';

export interface Pair {
  /** The build running processes have (for the reverse patch: the new build). */
  from: Build;
  /** The build they switch to. */
  to: Build;
}

export function makePair(from: Build, to: Build): Pair {
  return { from, to };
}
