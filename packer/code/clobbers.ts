/**
 * The call-clobbered registers a call to each function of a build may
 * change: what its own instructions write and, transitively, what every
 * function it calls or jumps to inside the build writes. That is the set
 * gcc's -fipa-ra computes for a function that binds locally, and lets the
 * function's callers rely on everything outside it.
 *
 * What the code does not show is assumed to clobber every call-clobbered
 * register: a call through the PLT or a pointer, a jump to code that was
 * not decoded, an instruction elf/x86/registers.ts does not know. Callee-saved
 * registers are never in a set: every function, -fipa-ra or not, gives them
 * back as it found them.
 */
import { Flow } from '../../elf/x86/decode.js';
import type { Build } from '../model.js';
import { functionCodeOf } from './function-code.js';
import { TO_PLT, type Program } from './program.js';
import { CALL_CLOBBERED, type RegSet } from '../../elf/x86/registers.js';

/** The functions a function's code reaches directly, and what it clobbers by itself. */
export interface CallGraph {
  program: Program;
  /** Per function: the registers its own instructions write, the unknown callees' ABI set included. */
  own: Int32Array;
  /** Per function: the functions it calls or jumps into (a tail call, a jump to its .cold part). */
  reaches: Int32Array[];
  /** Per function: those of `reaches` entered at their first byte (a call or a tail call), where a redirect would take them. */
  entered: Int32Array[];
  /** Per function: those of `reaches` jumped into past their first byte (a .cold part's way back), which no redirect changes. */
  inside: Int32Array[];
}

const graphs = new WeakMap<Program, CallGraph>();
const lowerGraphs = new WeakMap<Program, CallGraph>();

/**
 * `lower`: the sets are lower bounds of what the compiler knew each function writes (what the code
 * surely writes: an unknown instruction, a jump the analysis cannot follow or an undecoded callee adds
 * nothing), for the set callers were compiled against; otherwise upper bounds (they add every
 * call-clobbered register), for what a call may write.
 */
export function callGraphOf(program: Program, lower = false): CallGraph {
  const cache = lower ? lowerGraphs : graphs;
  let g = cache.get(program);
  if (!g) cache.set(program, (g = buildGraph(program, lower)));
  return g;
}

function buildGraph(p: Program, lower: boolean): CallGraph {
  /** What a guess adds: every call-clobbered register for an upper bound, nothing for a lower one. */
  const guess = lower ? 0 : CALL_CLOBBERED;
  const n = p.functions.length;
  const own = new Int32Array(n);
  const reaches: Int32Array[] = [];
  const entered: Int32Array[] = [];
  const inside: Int32Array[] = [];
  for (let f = 0; f < n; f++) {
    if (!p.decoded[f]) {
      own[f] = guess;
      reaches.push(new Int32Array(0));
      entered.push(new Int32Array(0));
      inside.push(new Int32Array(0));
      continue;
    }
    let w = 0;
    const to = new Set<number>();
    const atStart = new Set<number>();
    const past = new Set<number>();
    const reach = (t: number) => {
      // A branch target: inside this function, into another one, or somewhere unknown.
      if (t === -1) return;
      if (t < 0) {
        w |= t === TO_PLT ? CALL_CLOBBERED : guess;
        return;
      }
      const g = p.fn[t]!;
      if (g === f) return;
      to.add(g);
      if (p.addr[t] === p.functions[g]!.start) atStart.add(g);
      else past.add(g);
    };
    for (let i = p.first[f]!; i < p.last[f]!; i++) {
      if (!lower || p.exact[i]) w |= p.writes[i]!;
      switch (p.flow[i]) {
        case Flow.Call:
          if (p.callee[i]! >= 0 && p.decoded[p.callee[i]!]) {
            to.add(p.callee[i]!);
            atStart.add(p.callee[i]!);
          } else w |= p.target[i] === TO_PLT ? CALL_CLOBBERED : guess; // a PLT call: the ABI's set, for its compiler too
          break;
        case Flow.Jmp:
        case Flow.Jcc:
          reach(p.target[i]!);
          break;
        case Flow.IndirectCall:
          w |= CALL_CLOBBERED;
          break;
        case Flow.IndirectJmp: {
          const cases = p.cases.get(i);
          if (cases) for (const c of cases) reach(c);
          else w |= guess;
          break;
        }
      }
    }
    own[f] = w & CALL_CLOBBERED;
    reaches.push(Int32Array.from(to));
    entered.push(Int32Array.from(atStart));
    inside.push(Int32Array.from(past));
  }
  return { program: p, own, reaches, entered, inside };
}

/**
 * Per function: the transitive clobber set. `instead`, when given, replaces
 * what a call entering function g at its first byte clobbers (undefined:
 * g's own transitive set): after a switch, the entry of a changed function
 * jumps to its counterpart in the other build.
 */
export function transitiveClobbers(
  graph: CallGraph,
  instead?: (g: number) => RegSet | undefined,
): Int32Array {
  const { own, reaches, entered, inside } = graph;
  const n = own.length;
  const out = Int32Array.from(own);
  // Constant contributions first (redirected entries), then a worklist over the reverse edges until nothing grows.
  const callers: number[][] = Array.from({ length: n }, () => []);
  for (let f = 0; f < n; f++) {
    const ent = new Set(entered[f]);
    const mid = new Set(inside[f]);
    for (const g of reaches[f]!) {
      const r = instead && ent.has(g) ? instead(g) : undefined;
      if (r !== undefined) out[f]! |= r & CALL_CLOBBERED;
      if (r === undefined || mid.has(g)) callers[g]!.push(f);
    }
  }
  const queued = new Uint8Array(n).fill(1);
  const work = Array.from({ length: n }, (_, i) => i);
  while (work.length > 0) {
    const g = work.pop()!;
    queued[g] = 0;
    const v = out[g]!;
    for (const f of callers[g]!) {
      if ((out[f]! | v) === out[f]) continue;
      out[f]! |= v;
      if (!queued[f]) {
        queued[f] = 1;
        work.push(f);
      }
    }
  }
  return out;
}

const plain = new WeakMap<Program, Int32Array>();
const plainLower = new WeakMap<Program, Int32Array>();

/** The transitive clobber sets of a build's functions, upper bounds or (`lower`) lower bounds (callGraphOf), computed once per build. */
export function clobbersOf(program: Program, lower = false): Int32Array {
  const cache = lower ? plainLower : plain;
  let c = cache.get(program);
  if (!c) cache.set(program, (c = transitiveClobbers(callGraphOf(program, lower))));
  return c;
}

/**
 * The transitive clobber set of one function of a build, as clobbersOf
 * gives it, computed from the functions it reaches alone (function-code.ts
 * decodes them on demand): what the -fipa-ra check needs when a pack
 * changes a few functions of a large build. Undefined when the build's
 * function ranges overlap: then only the whole table is exact.
 */
export function lazyClobbersOf(build: Build, lower = false): ((f: number) => RegSet) | undefined {
  const code = functionCodeOf(build);
  if (!code) return undefined;
  const cache = lower ? lazyLower : lazy;
  const own = (f: number) => (lower ? code.code(f).ownLower : code.code(f).own);
  let known = cache.get(build);
  if (!known) cache.set(build, (known = new Map()));
  const done = known;
  /**
   * A function that surely writes every call-clobbered register has the whole set, as both bounds,
   * whatever it reaches: it is settled without its register effects and without following its edges.
   */
  const settled = (f: number) => {
    if (!code.writesAll(f)) return false;
    done.set(f, CALL_CLOBBERED);
    return true;
  };
  return (root: number) => {
    const had = done.get(root);
    if (had !== undefined) return had;
    if (settled(root)) return CALL_CLOBBERED;
    // The functions root reaches that are not known yet, then a fixed point over them alone (a set
    // depends only on what its function reaches, so each is exact once its whole closure is in).
    const order: number[] = [];
    const seen = new Set<number>([root]);
    for (const stack = [root]; stack.length > 0;) {
      const f = stack.pop()!;
      if (f !== root && settled(f)) continue;
      order.push(f);
      const c = code.code(f);
      for (const edges of [c.entered, c.inside])
        for (const g of edges)
          if (!seen.has(g) && !done.has(g)) {
            seen.add(g);
            stack.push(g);
          }
    }
    const value = new Map<number, number>();
    for (const f of order) value.set(f, own(f));
    const of = (g: number) => done.get(g) ?? value.get(g)!;
    // Callees come after their callers in `order`: walking it backwards settles all but cycles in one pass.
    for (let changed = true; changed;) {
      changed = false;
      for (let k = order.length - 1; k >= 0; k--) {
        const f = order[k]!;
        const c = code.code(f);
        let w = value.get(f)!;
        for (const g of c.entered) w |= of(g);
        for (const g of c.inside) w |= of(g);
        if (w !== value.get(f)) {
          value.set(f, w);
          changed = true;
        }
      }
    }
    for (const [f, w] of value) done.set(f, w);
    return done.get(root)!;
  };
}

const lazy = new WeakMap<Build, Map<number, RegSet>>();
const lazyLower = new WeakMap<Build, Map<number, RegSet>>();
