/**
 * The report's category order and verdict ranking, as the packer needs them
 * at run time. patches/report.ts defines both next to its zod schemas, and
 * loading that module costs about 0.1 s of CPU (zod and every schema are
 * built on import), which `--check` otherwise never needs: the bundle layer
 * is only loaded to write or read a bundle. `satisfies` keeps these copies
 * identical to patches' lists (same names, same order) at compile time.
 */
import type {
  CATEGORY_NAMES as REPORT_CATEGORY_NAMES,
  VERDICTS as REPORT_VERDICTS,
  Verdict,
} from '../patches/report.js';

export const CATEGORY_NAMES = [
  'meta',
  'api',
  'code',
  'layout',
  'init',
  'ro',
  'relro',
  'data',
  'tls',
  'funcptrs',
] as const satisfies typeof REPORT_CATEGORY_NAMES;

const VERDICTS = ['unchanged', 'compatible', 'incompatible'] as const satisfies typeof REPORT_VERDICTS;

/** The worst verdict wins (patches' combineVerdicts). */
export function worstVerdict(verdicts: Iterable<Verdict>): Verdict {
  let rank = 0;
  for (const v of verdicts) rank = Math.max(rank, VERDICTS.indexOf(v));
  return VERDICTS[rank]!;
}
