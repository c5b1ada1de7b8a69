/**
 * The whole analysis of one direction (from -> to): every category, then the
 * report. Pure: it reads two parsed builds and returns data.
 */
import type { BuildSummary, Report } from '../../patches/index.js';
import { CATEGORY_NAMES, combineVerdicts } from '../../patches/verdicts.js';
import type { Build } from '../model.js';
import { analyzeApi } from './api.js';
import { analyzeCode } from './code.js';
import { analyzeData } from './data.js';
import { analyzeFuncptrs } from './funcptrs.js';
import { analyzeInit } from './init.js';
import { analyzeLayout } from './layout.js';
import { hex } from '../../patches/hex.js';
import { inFlightCallers, type HazardRange } from '../code/ipara.js';
import { analyzeLayoutsFromDwarf } from './layouts.js';
import { analyzeMeta } from './meta.js';
import { makePair } from './pair.js';
import { analyzeRelro, analyzeRo } from './sections.js';
import { analyzeTls } from './tls.js';

export type ProgressFn = (message: string) => void;

export interface AnalyzeOptions {
  /**
   * Folders with separate debug files (--debug-dir): where the structure
   * layouts come from when a build carries no DWARF itself
   * (analyzeLayoutsFromDwarf in layouts.ts).
   */
  debugDirs?: string[];
}

export function summarize(b: Build): BuildSummary {
  const s: BuildSummary = { sha256: b.sha256, size: b.bytes.length, relro: b.relro, stripped: b.stripped };
  if (b.obj.soname) s.soname = b.obj.soname;
  if (b.obj.buildId) s.buildId = b.obj.buildId;
  return s;
}

export function analyzePair(
  from: Build,
  to: Build,
  progress: ProgressFn = () => {},
  options: AnalyzeOptions = {},
): Report {
  const pair = makePair(from, to);
  const step = (what: string) => progress(`${from.label} -> ${to.label}: ${what}`);
  step('meta');
  const meta = analyzeMeta(pair);
  step('exports');
  const api = analyzeApi(pair);
  step('code');
  const code = analyzeCode(pair, (done, total) => step(`code ${done}/${total} functions`));
  step('structure layouts');
  const held: Parameters<typeof analyzeLayout>[3] = {};
  const layout = analyzeLayout(pair, code.matching.pairs, analyzeLayoutsFromDwarf(pair, options), held);
  step('callers in flight');
  const inFlight = inFlightCallers(pair.from, pair.to, code.matching);
  step('constructors');
  const init = analyzeInit(pair);
  step('read-only data');
  const ro = analyzeRo(pair);
  const relro = analyzeRelro(pair);
  step('writable data');
  const data = analyzeData(pair);
  const tls = analyzeTls(pair);
  const funcptrs = analyzeFuncptrs(data.sites, new Set(code.functions.changed));
  const categories = {
    meta: meta.category,
    api: api.category,
    code: code.category,
    layout,
    init,
    ro,
    relro,
    data: data.category,
    tls,
    funcptrs,
  };
  return {
    verdict: combineVerdicts(CATEGORY_NAMES.map((c) => categories[c].verdict)),
    from: summarize(from),
    to: summarize(to),
    categories,
    functions: code.functions,
    exports: api.exports,
    imports: meta.imports,
    needed: meta.needed,
    writable: data.writable,
    ...conditionsOf(held?.condition?.functions ?? [], inFlight),
  };
}

type Range = { name?: string | undefined; start: number | bigint; end: number | bigint };

const rangeOf = (c: Range) => ({ ...(c.name ? { name: c.name } : {}), start: hex(c.start), end: hex(c.end) });

/**
 * The report's conditions: functions of the outgoing build no thread may be inside at the switch,
 * for a structure that lives on their stack (layout.ts) or for callers that keep call-clobbered
 * registers live across a call the switch sends to code that writes them (code/ipara.ts).
 */
function conditionsOf(stack: readonly Range[], inFlight: readonly HazardRange[]): Pick<Report, 'conditions'> {
  const conditions: NonNullable<Report['conditions']> = [];
  if (stack.length)
    conditions.push({
      kind: 'inactive',
      functions: stack.map(rangeOf),
      reason:
        'shifted fields of a structure that lives on the stack of these functions (LAYOUT_STACK_CONFINED)',
    });
  if (inFlight.length)
    conditions.push({
      kind: 'inactive',
      functions: inFlight.map(rangeOf),
      reason: `callers that keep call-clobbered registers across calls the switch sends to code that writes them (gcc -fipa-ra; CODE_CALLERS_IN_FLIGHT): ${inFlight
        .slice(0, 3)
        .map((h) => `${h.name ?? hex(h.start)} ${h.reason}`)
        .join('; ')}${inFlight.length > 3 ? ` and ${inFlight.length - 3} more` : ''}`,
    });
  return conditions.length ? { conditions } : {};
}
