/**
 * What the reliability tests share: one set of builds and bundles per RELRO
 * mode for the whole mocha run (packing costs seconds), the runner, and the
 * verdict rule for known bugs (lab/soak/known-bugs.ts): a test whose
 * only failures come from a listed bug is marked pending with the bug's id
 * (failed instead under ULP_KNOWN_BUGS=fail), any other failure fails it.
 */
import assert from 'node:assert/strict';
import type { Context } from 'mocha';
import { compiledProduct } from '../../../lab/cli.js';
import type { KnownBug } from '../../../lab/soak/known-bugs.js';
import { buildReliable, makeRunner, type Relro, type Reliable, type Runner } from '../../../lab/soak/lib.js';

/** The product transpiled once, as every command test runs it (lab/cli.ts); ULP_RUNNER=tsx runs the sources through tsx, ULP_RUNNER=dist the build in dist/ (must be fresh). */
export const runner: Runner =
  process.env.ULP_RUNNER === 'tsx'
    ? makeRunner('tsx')
    : process.env.ULP_RUNNER === 'dist'
      ? makeRunner('dist')
      : makeRunner('dist', compiledProduct());

const built = new Map<Relro, Reliable>();

export function reliable(relro: Relro = 'partial'): Reliable {
  let r = built.get(relro);
  if (!r) {
    r = buildReliable(runner, { relro });
    built.set(relro, r);
  }
  return r;
}

// Targets are killed and folders removed when mocha exits, whichever file ran last.
process.on('exit', () => {
  for (const r of built.values()) r.dispose();
});

/**
 * Passes when `problems` is empty. When a known bug explains them, the test
 * is marked pending (mocha lists it with the bug's id); otherwise it fails
 * with every problem.
 */
export function verdict(ctx: Context, what: string, problems: readonly string[], bug?: KnownBug): void {
  if (problems.length === 0) return;
  // ULP_KNOWN_BUGS=fail: a known bug fails its test too (to see every open bug as a failure).
  if (bug && process.env.ULP_KNOWN_BUGS !== 'fail') {
    ctx.test!.title += ` [known bug ${bug.id}: ${bug.where}]`;
    ctx.skip();
  }
  assert.fail(`${what}:\n  - ${problems.join('\n  - ')}`);
}
