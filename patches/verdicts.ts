/**
 * The report's category order and verdicts as plain values, without zod: report.ts builds its schemas
 * from them, and the packer's `--check` uses them without loading the schemas (building zod and every
 * schema costs about 0.1 s of CPU on import, and `--check` writes and reads no bundle).
 */
export const VERDICTS = ['unchanged', 'compatible', 'incompatible'] as const;
export type Verdict = (typeof VERDICTS)[number];

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
] as const;
export type CategoryName = (typeof CATEGORY_NAMES)[number];

/** The worst verdict wins. */
export function combineVerdicts(verdicts: Iterable<Verdict>): Verdict {
  let rank = 0;
  for (const v of verdicts) rank = Math.max(rank, VERDICTS.indexOf(v));
  return VERDICTS[rank]!;
}
