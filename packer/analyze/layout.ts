/**
 * layout: structures in the heap changed shape. ELF metadata cannot show a
 * heap object's layout, but the code that uses it does: a field is a
 * constant displacement off a base register (`mov 0x1d40(%rdi),%eax`), and
 * a structure that grew shows as the same instruction reading another
 * displacement in the other build (`mov 0x1d50(%rdi),%eax`). Objects the
 * old build allocated live on after the switch and the new code would read
 * and write them at the wrong places, so such an update is refused.
 *
 * Evidence is taken from matched functions whose code changed
 * (code/match.ts), aligned instruction by instruction (code/align.ts):
 *
 *  - LAYOUT_FIELD_MOVED: an instruction of the same shape (same operation,
 *    same registers, same targets) whose displacement off a base register
 *    differs, with its neighbours aligned on both sides, so the logic
 *    around the access did not change. Only accesses count: LEA computes
 *    (`lea 0x1(%rbp),%eax` is x + 1), NOPs and prefetches touch nothing. Stack slots are ruled out (off %rsp,
 *    or off %rbp in a function that sets up a frame pointer), and so are
 *    RIP-relative operands (global data: the data rules' business).
 *  - LAYOUT_SIZE_CHANGED: a size passed to an allocator (malloc, calloc,
 *    realloc, or any function named like one) changed in otherwise aligned
 *    code: a field added at the end of a structure moves no other field,
 *    but an object the old build allocated is too small for the new code.
 *
 * One such access is enough to refuse: a single store at a new offset (as
 * in libevent's bufferevent_private) corrupts every object that predates
 * the switch. The report names each function and shift as the evidence.
 */
import type { Category } from '../../patches/index.js';
import { hex } from '../../patches/hex.js';
import {
  align,
  baseAt,
  calleeAt,
  dispAt,
  evidenceKeys,
  flowAt,
  immAt,
  immRegAt,
  instructionsOf,
  isAccess,
  offsetAt,
  type Decoded,
} from '../code/align.js';
import type { FunctionPair } from '../code/match.js';
import type { Build, FunctionInfo } from '../model.js';
import { Flow, REGISTER_NAMES } from '../../elf/x86/decode.js';
import { Findings, listText, plural } from './findings.js';
import { layoutFindings, type DwarfLayoutResult } from './layouts.js';
import type { Pair } from './pair.js';
import { stackConfined, type StackCondition } from './stack-structs.js';

export interface FieldShift {
  function: string;
  /** Offset of the instruction in the `from` build's function. */
  at: number;
  register: string;
  from: number;
  to: number;
}

export interface SizeShift {
  function: string;
  at: number;
  callee: string;
  from: number;
  to: number;
}

export interface LayoutEvidence {
  fields: FieldShift[];
  sizes: SizeShift[];
  /** Changed pairs compared, and those too different to align. */
  compared: number;
  unaligned: number;
}

const RSP = 4;
const RBP = 5;
/** Aligned instructions needed on each side of an access for its context to count as unchanged. */
const CONTEXT = 2;
/** rdi and rsi: malloc(size), calloc(n, size), realloc(p, size) and wrappers that keep libc's argument order. */
const SIZE_REGISTERS = new Set([7, 6]);
/** How far before a call an allocation size may be loaded. */
const SIZE_WINDOW = 6;
/** Functions that take the size of what they allocate: libc's, and wrappers named like them (CRYPTO_zalloc, g_malloc, apr_palloc...). */
const ALLOCATOR = /alloc|memalign/i;
const NOT_ALLOCATOR = /dealloc|free/i;

/**
 * The evidence is a property of the pair of builds, found once: the reverse
 * direction reads the same shifts the other way round (names and offsets
 * from its own `from` build).
 */
const memo = new WeakMap<Build, WeakMap<Build, { evidence: LayoutEvidence; mirror: LayoutEvidence }>>();

export function layoutEvidence(from: Build, to: Build, pairs: readonly FunctionPair[]): LayoutEvidence {
  const known = memo.get(from)?.get(to);
  if (known) return known.evidence;
  const mirrored = memo.get(to)?.get(from);
  if (mirrored) return mirrored.mirror;
  const both = findEvidence(from, to, pairs);
  let inner = memo.get(from);
  if (!inner) memo.set(from, (inner = new WeakMap()));
  inner.set(to, both);
  return both.evidence;
}

function findEvidence(
  from: Build,
  to: Build,
  pairs: readonly FunctionPair[],
): { evidence: LayoutEvidence; mirror: LayoutEvidence } {
  const mirror: LayoutEvidence = { fields: [], sizes: [], compared: 0, unaligned: 0 };
  const fields: FieldShift[] = [];
  const sizes: SizeShift[] = [];
  let compared = 0;
  let unaligned = 0;
  for (const p of pairs) {
    if (p.same) continue;
    const da = instructionsOf(from, p.a.start, p.a.end);
    const db = instructionsOf(to, p.b.start, p.b.end);
    if (!da || !db) continue;
    compared++;
    // Most changed functions access the same fields and allocate the same sizes as before: nothing to align.
    if (sameEvidence(da, db)) continue;
    const al = align(da, db);
    if (!al) {
      unaligned++;
      continue;
    }
    const name = label(p.a);
    const framed = da.framePointer && db.framePointer;
    const { a: pa, b: pb, exact } = al;
    const na = da.count;
    const nb = db.count;
    /**
     * The aligned neighbour at distance k is adjacent on both sides and the same instruction, or
     * shifted by the same `delta`, or (`anyImm`, around an allocation size) differs in an immediate
     * only, such as the line number OpenSSL's allocators take.
     */
    const neighbourAgrees = (t: number, k: number, delta: number | undefined, anyImm = false): boolean => {
      const u = t + k;
      const ia = pa[t]! + k;
      const ib = pb[t]! + k;
      // Both functions begin or end there: a getter's whole body is its context.
      if ((ia < 0 && ib < 0) || (ia >= na && ib >= nb)) return true;
      if (u < 0 || u >= pa.length || pa[u]! !== ia || pb[u]! !== ib) return false;
      if (exact[u]) return true;
      const dx = dispAt(da, ia);
      const dy = dispAt(db, ib);
      if (anyImm && dx === dy) return true;
      return delta !== undefined && immAt(da, ia) === immAt(db, ib) && dx !== undefined && dy! - dx === delta;
    };
    const inContext = (t: number, delta: number | undefined, anyImm = false) => {
      for (let k = 1; k <= CONTEXT; k++)
        if (!neighbourAgrees(t, -k, delta, anyImm) || !neighbourAgrees(t, k, delta, anyImm)) return false;
      return true;
    };
    // Offsets still read or written unchanged somewhere in the function are fields that did not move.
    const kept = new Set<number>();
    for (let t = 0; t < pa.length; t++) {
      const x = pa[t]!;
      if (exact[t] && isAccess(da, x) && isFieldBase(baseAt(da, x), framed)) kept.add(dispAt(da, x)!);
    }
    for (let t = 0; t < pa.length; t++) {
      if (exact[t]) continue;
      const x = pa[t]!;
      const y = pb[t]!;
      const dx = dispAt(da, x);
      const dy = dispAt(db, y);
      if (
        isAccess(da, x) &&
        dx !== dy &&
        immAt(da, x) === immAt(db, y) &&
        isFieldBase(baseAt(da, x), framed) &&
        !kept.has(dx!) &&
        inContext(t, dy! - dx!)
      ) {
        fields.push({
          function: name,
          at: offsetAt(da, x),
          register: REGISTER_NAMES[baseAt(da, x)]!,
          from: dx!,
          to: dy!,
        });
        mirror.fields.push({
          function: label(p.b),
          at: offsetAt(db, y),
          register: REGISTER_NAMES[baseAt(db, y)]!,
          from: dy!,
          to: dx!,
        });
      }
    }
    // Allocation sizes: a size loaded into the first or second argument register just before an allocator call, all else equal.
    for (let t = 0; t < pa.length; t++) {
      const call = pa[t]!;
      if (flowAt(da, call) !== Flow.Call || !exact[t]) continue;
      const callee = calleeAt(da, call);
      if (callee === undefined || !isAllocator(calleeName(callee))) continue;
      for (let u = t - 1; u >= 0 && u >= t - SIZE_WINDOW; u--) {
        if (pa[u]! !== pa[t]! - (t - u) || pb[u]! !== pb[t]! - (t - u)) break;
        const sx = pa[u]!;
        const sy = pb[u]!;
        const flow = flowAt(da, sx);
        // The size reaches the call only along straight-line code.
        if (flow !== Flow.Seq && flow !== Flow.Jcc) break;
        const ix = immAt(da, sx);
        const iy = immAt(db, sy);
        if (
          exact[u] ||
          !SIZE_REGISTERS.has(immRegAt(da, sx)) ||
          ix === undefined ||
          iy === undefined ||
          ix <= 0 ||
          iy <= 0
        )
          continue;
        if (inContext(u, undefined, true)) {
          sizes.push({
            function: name,
            at: offsetAt(da, sx),
            callee: calleeName(callee),
            from: ix,
            to: iy,
          });
          mirror.sizes.push({
            function: label(p.b),
            at: offsetAt(db, sy),
            callee: calleeName(calleeAt(db, pb[t]!) ?? callee),
            from: iy,
            to: ix,
          });
        }
      }
    }
  }
  return { evidence: { fields, sizes, compared, unaligned }, mirror: { ...mirror, compared, unaligned } };
}

/**
 * Whether the two functions hold the same multiset of field accesses and of
 * sizes loaded into argument registers (each as the whole instruction):
 * then no alignment can pair an access with a shifted one, short of two
 * fields trading places exactly.
 */
function sameEvidence(a: Decoded, b: Decoded): boolean {
  // align.ts carriesEvidence: an access off a base other than %rsp, or a `mov $imm` into SIZE_REGISTERS.
  const x = evidenceKeys(a);
  const y = evidenceKeys(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function isAllocator(name: string): boolean {
  const bare = name.replace(/@.*$/, '');
  return ALLOCATOR.test(bare) && !NOT_ALLOCATOR.test(bare);
}

function label(f: FunctionInfo): string {
  return f.name ?? `0x${f.start.toString(16)}`;
}

/** `i:malloc@GLIBC_2.2.5` or `s:CRYPTO_zalloc+0`: the bare function name. */
function calleeName(target: string): string {
  return target.replace(/^[a-z]:/, '').replace(/\+0$/, '');
}

function isFieldBase(base: number, framed: boolean): boolean {
  return base >= 0 && base !== RSP && !(base === RBP && framed);
}

/**
 * The layout category of one direction. With DWARF on both sides (the
 * builds' own or debug files, `dwarf`), the structure layouts compared
 * exactly decide, and the code's evidence is listed as information; without
 * it, or when the DWARF is incomplete, the code's evidence decides.
 */
export function analyzeLayout(
  pair: Pair,
  pairs: readonly FunctionPair[],
  dwarf?: DwarfLayoutResult,
  held?: { condition?: StackCondition },
): Category {
  const { from, to } = pair;
  const f = new Findings();
  const e = layoutEvidence(from, to, pairs);
  const decided = dwarf !== undefined && dwarf.incomplete === undefined;
  // Shifted fields of structures that live on stack frames only: compatible while no frame of the outgoing build holds one.
  const stack =
    !decided && e.fields.length > 0 && e.sizes.length === 0
      ? stackConfined(from, to, e.fields, layoutEvidence(to, from, pairs).fields, pairs)
      : undefined;
  if (dwarf)
    for (const x of layoutFindings(dwarf)) f.add(x.severity, x.code, x.message, x.symbols, x.details);
  if (dwarf?.incomplete)
    f.warning(
      'LAYOUT_DWARF_INCOMPLETE',
      `the DWARF does not cover every structure (${dwarf.incomplete}); the code's evidence decides as well`,
    );
  const severity = decided ? 'info' : stack?.confined ? 'warning' : 'error';
  const because = decided ? "; DWARF decides, this is the code's evidence" : '';
  if (e.fields.length) {
    const fns = [...new Set(e.fields.map((x) => x.function))];
    const shown = e.fields.map(
      (x) => `${x.function}: ${hex(x.from)}(%${x.register}) -> ${hex(x.to)}(%${x.register})`,
    );
    f.add(
      severity,
      'LAYOUT_FIELD_MOVED',
      `a structure changed its layout: ${plural(fns.length, 'function')} access${fns.length === 1 ? 'es' : ''} the same field at another offset (${listText(shown, 6)}); ${stack?.confined ? `the structure lives only on stack frames (LAYOUT_STACK_CONFINED): one made by a call still running at the switch would be misread and corrupted by the ${to.label} code` : `objects the ${from.label} build allocated would be misread and corrupted by the ${to.label} code`}${because}`,
      fns,
      {
        shifts: e.fields
          .slice(0, 500)
          .map((x) => ({ ...x, at: hex(x.at), from: hex(x.from), to: hex(x.to) })),
      },
    );
  }
  if (stack?.confined) {
    const names = stack.condition.functions.map((c) => c.name ?? `0x${c.start.toString(16)}`);
    f.warning(
      'LAYOUT_STACK_CONFINED',
      `every shifted field belongs to a structure on the stack of ${listText(names, 6)} (in both builds): compatible on condition that no thread is inside ${names.length === 1 ? 'it' : 'one of them'} in the ${from.label} build at the switch; ulp-trigger checks every thread's call chain and refuses otherwise`,
      names,
      {
        creators: stack.condition.functions.map((c) => ({
          ...(c.name ? { name: c.name } : {}),
          start: hex(c.start),
          end: hex(c.end),
        })),
      },
    );
    if (held) held.condition = stack.condition;
  } else if (stack)
    f.info(
      'LAYOUT_NOT_STACK_CONFINED',
      `the structure cannot be shown to live only on stack frames whose creators all get an entry redirect: ${listText(stack.reasons, 4)}`,
      undefined,
      { reasons: stack.reasons.slice(0, 200) },
    );
  if (e.sizes.length) {
    const fns = [...new Set(e.sizes.map((x) => x.function))];
    const shown = e.sizes.map((x) => `${x.function}: ${x.callee}(${x.from}) -> ${x.callee}(${x.to})`);
    f.add(
      severity,
      'LAYOUT_SIZE_CHANGED',
      `an allocation changed size: ${listText(shown, 6)}; objects the ${from.label} build allocated would be too small or too large for the ${to.label} code${because}`,
      fns,
      { sizes: e.sizes.slice(0, 500).map((x) => ({ ...x, at: hex(x.at) })) },
    );
  }
  const code = `${plural(e.compared, 'changed function')} compared${e.unaligned ? ` (${e.unaligned} too different to align)` : ''}; ${e.fields.length + e.sizes.length ? `${plural(e.fields.length, 'field access', 'field accesses')} and ${plural(e.sizes.length, 'allocation size')} shifted` : 'no shifted field or allocation size'}`;
  const creators = stack?.confined
    ? `; compatible while no thread is inside ${listText(
        stack.condition.functions.map((c) => c.name ?? `0x${c.start.toString(16)}`),
        3,
      )}`
    : '';
  const summary = decided
    ? `decided from DWARF: ${plural(dwarf.changes.length, 'structure')} changed (${dwarf.source}); code: ${code}`
    : code + creators;
  return f.category(summary);
}
