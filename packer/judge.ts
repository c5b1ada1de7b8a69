/**
 * The packer's verdict on two builds given as bytes, without a bundle: what
 * `ulp-pack OLD NEW --check` would decide, for callers that found the builds
 * somewhere else than in files named on a command line (ulp-trigger
 * --outdated reads the running build from a process). Pure.
 */
import { isUlpError } from '../common/errors.js';
import { parseElf } from '../elf/index.js';
import { CATEGORY_NAMES } from '../patches/verdicts.js';
import { analyzePair } from './analyze/index.js';
import { createBuild } from './model.js';
import { checkPair, sameSymbolLevel } from './pack.js';

export interface Judgement {
  /** unchanged and compatible: ulp-pack writes a bundle; incompatible: it refuses; unusable: the two are not a pair of builds of one library. */
  verdict: 'unchanged' | 'compatible' | 'incompatible' | 'unusable';
  /** Why the pair is refused: the analysis's errors, or the pair check's error. Empty otherwise. */
  reasons: Array<{ code: string; message: string; category?: string }>;
}

export function judgeBuilds(
  oldBytes: Buffer,
  newBytes: Buffer,
  names: { old: string; new: string } = { old: 'old', new: 'new' },
): Judgement {
  try {
    const old = createBuild('old', names.old, oldBytes, parseElf(oldBytes, { expect: 'shared-object' }));
    const neu = createBuild('new', names.new, newBytes, parseElf(newBytes, { expect: 'shared-object' }));
    checkPair(old, neu);
    const [a, b] = sameSymbolLevel(old, neu);
    const report = analyzePair(a, b);
    const reasons = CATEGORY_NAMES.flatMap((category) =>
      (report.categories[category]?.findings ?? [])
        .filter((f) => f.severity === 'error')
        .map((f) => ({ code: f.code, message: f.message, category })),
    );
    return { verdict: report.verdict, reasons };
  } catch (e) {
    // A build that is not an ELF shared object, or two that do not form a pair (no build-id, another SONAME...).
    if (!isUlpError(e)) throw e;
    return { verdict: 'unusable', reasons: [{ code: e.code, message: e.message }] };
  }
}
