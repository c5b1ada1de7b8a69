/**
 * code: which functions changed. Every change here is compatible (the new
 * build's code is mapped fresh); the list is what a person reviews, what the
 * trigger reports, and (`pairs`) where it redirects old entries to new code.
 * Functions are paired by code/match.ts: by name with .symtab on both
 * sides; otherwise exported functions by name and the rest by content, then
 * by position between unchanged neighbours.
 */
import type { Category, FunctionChanges } from '../../patches/index.js';
import { hex } from '../../patches/hex.js';
import { matchFunctions, type Matching } from '../code/match.js';
import type { FunctionInfo } from '../model.js';
import { Findings, listText, plural } from './findings.js';
import type { Pair } from './pair.js';

export interface CodeResult {
  category: Category;
  functions: FunctionChanges;
  matching: Matching;
}

const total = (fns: FunctionInfo[]) => ({
  count: fns.length,
  bytes: fns.reduce((n, f) => n + (f.end - f.start), 0),
});
const range = (f: FunctionInfo) => ({ start: hex(f.start), end: hex(f.end) });
const named = (f: FunctionInfo) => (f.name === undefined ? {} : { name: f.name });

export function analyzeCode(pair: Pair, onProgress?: (done: number, total: number) => void): CodeResult {
  const { from, to } = pair;
  onProgress?.(0, 1);
  const matching = matchFunctions(from, to);
  onProgress?.(1, 1);
  const changed: string[] = [];
  let unchanged = 0;
  for (const p of matching.pairs) {
    if (p.same) unchanged++;
    else if (p.by === 'name') changed.push(p.a.name!);
  }
  // Names that exist on one side only; unnamed functions left over are counted, not listed.
  const names = (fns: FunctionInfo[], keep: (f: FunctionInfo) => boolean) =>
    fns.filter((f) => f.name !== undefined && keep(f)).map((f) => f.name!);
  const keep = matching.named ? () => true : (f: FunctionInfo) => f.exported;
  const removed = names(matching.onlyA, keep);
  const added = names(matching.onlyB, keep);

  const functions: FunctionChanges = {
    named: matching.named,
    changed,
    added,
    removed,
    unchanged,
    from: total(from.functions()),
    to: total(to.functions()),
    pairs: matching.pairs
      .filter((p) => !p.same)
      .map((p) => ({ ...named(p.a), by: p.by, from: range(p.a), to: range(p.b) })),
    // With .symtab an unnamed range is a linker stub (the PLT), not a function the program can hold a pointer to.
    unpaired: matching.onlyA
      .filter((f) => !matching.named || f.name !== undefined)
      .map((f) => ({ ...named(f), ...range(f) })),
  };
  const f = new Findings();
  if (!matching.named) {
    // Unnamed functions whose code matched none on the other side (changed ones paired by position included).
    const unmatched = (fns: FunctionInfo[], side: 'a' | 'b') => {
      const left = new Set([
        ...matching.pairs.filter((p) => p.by === 'position').map((p) => p[side]),
        ...(side === 'a' ? matching.onlyA : matching.onlyB),
      ]);
      return fns.filter((x) => !keep(x) && left.has(x));
    };
    const ua = unmatched(from.functions(), 'a');
    const ub = unmatched(to.functions(), 'b');
    functions.unnamedChanged = { from: total(ua), to: total(ub) };
    if (ua.length || ub.length) {
      f.info(
        'CODE_UNNAMED_CHANGED',
        `without symbols: ${plural(ua.length, 'function')} (${total(ua).bytes} bytes) of the ${from.label} build have no identical counterpart, ${plural(ub.length, 'function')} (${total(ub).bytes} bytes) of the ${to.label} build are new or changed`,
      );
    }
  }
  if (changed.length)
    f.info(
      'CODE_FUNCTION_CHANGED',
      `${plural(changed.length, 'function')} changed: ${listText(changed)}`,
      changed,
    );
  if (added.length)
    f.info('CODE_FUNCTION_ADDED', `${plural(added.length, 'function')} added: ${listText(added)}`, added);
  if (removed.length)
    f.info(
      'CODE_FUNCTION_REMOVED',
      `${plural(removed.length, 'function')} removed: ${listText(removed)}`,
      removed,
    );

  const summary = matching.named
    ? `${changed.length} changed, ${added.length} added, ${removed.length} removed, ${unchanged} unchanged`
    : `stripped: ${changed.length} exported changed, ${added.length} added, ${removed.length} removed; ${functions.unnamedChanged!.from.count} unnamed changed or removed, ${functions.unnamedChanged!.to.count} changed or added; ${unchanged} unchanged`;
  return { category: f.category(summary), functions, matching };
}
