/**
 * Which registers are live before each instruction of a build: read on some
 * path from there before being written. Computed backwards over the whole
 * build at once, so that a path that leaves a function (a jump to its .cold
 * part and back, a tail call into a local function) is followed as it runs.
 * The question it answers for ipara.ts: after `call f` returns at c, which
 * registers does the caller still read — liveIn of the instruction after c.
 *
 * Where the code does not show what happens, every register is live:
 * an unknown instruction, an indirect jump that is not a recognised switch,
 * a branch to code that was not decoded. Other rules:
 *
 * - a call reads the argument registers (a call to a function of the build:
 *   what that function reads of them); the registers the callee may
 *   clobber (clobbers.ts for a local function, the ABI's set through the PLT
 *   or a pointer) are dead before it, since the caller's compiler relied on
 *   none of them surviving; a direct call into code that is not a known
 *   function's start kills nothing;
 * - a return reads the return registers (rax, rdx, xmm0, xmm1) and what is
 *   live where it goes back to after a direct call of its function in the
 *   build (the caller may keep registers across the call: -fipa-ra);
 * - a tail call through a GOT slot, or through a register after the frame
 *   was given back, reads the argument registers;
 * - falling off the end of the decoded code (after a call that does not
 *   return) reads nothing.
 */
import { Flow } from '../../elf/x86/decode.js';
import { NO_TARGET, TO_PLT, type Program } from './program.js';
import { ALL, CALL_CLOBBERED, CALL_READS, RETURN_READS, RSP } from '../../elf/x86/registers.js';

/**
 * liveIn per instruction of `p`. `clobbers` is the transitive clobber set
 * per function of the same build (clobbers.ts).
 *
 * A direct call to a function of the build reads what that function reads
 * of its entry registers, transitively (its liveIn at entry with returns
 * reading nothing: a first pass), rather than every argument register.
 */
export function liveness(p: Program, clobbers: Int32Array): Int32Array {
  const entryReads = pass(p, clobbers, undefined, undefined);
  return pass(p, clobbers, returnSites(p), entryReads);
}

/**
 * Per function: the instructions its returns go back to, the ones after
 * each direct call of it and, through a tail call or a jump into it (a
 * .cold part), those of the function that jumped. A caller in the build
 * may keep registers across the call (-fipa-ra), so they are live at the
 * function's returns; callers through the PLT or a pointer rely on the ABI
 * only, and are covered by RETURN_READS.
 */
function returnSites(p: Program): Int32Array[] {
  const n = p.functions.length;
  const sites: Set<number>[] = Array.from({ length: n }, () => new Set());
  const into: number[][] = Array.from({ length: n }, () => []); // g -> functions g jumps into
  for (let i = 0; i < p.count; i++) {
    const f = p.flow[i];
    if (f === Flow.Call) {
      if (p.callee[i]! >= 0 && p.next[i]! >= 0) sites[p.callee[i]!]!.add(p.next[i]!);
      continue;
    }
    const jumpInto = (t: number) => {
      if (t >= 0 && p.fn[t] !== p.fn[i]) into[p.fn[i]!]!.push(p.fn[t]!);
    };
    if (f === Flow.Jmp || f === Flow.Jcc) jumpInto(p.target[i]!);
    else if (f === Flow.IndirectJmp) for (const c of p.cases.get(i) ?? []) jumpInto(c);
  }
  // Whatever g returns to, a function g jumps into returns to as well: to a fixpoint.
  const work = Array.from({ length: n }, (_, g) => g);
  const queued = new Uint8Array(n).fill(1);
  while (work.length > 0) {
    const g = work.pop()!;
    queued[g] = 0;
    for (const h of into[g]!) {
      const before = sites[h]!.size;
      for (const s of sites[g]!) sites[h]!.add(s);
      if (sites[h]!.size !== before && !queued[h]) {
        queued[h] = 1;
        work.push(h);
      }
    }
  }
  return sites.map((x) => Int32Array.from(x));
}

/** The instruction a function starts with, or -1 when it was not decoded. */
function entryOf(p: Program, f: number): number {
  return p.decoded[f] && p.first[f]! < p.last[f]! && p.addr[p.first[f]!] === p.functions[f]!.start
    ? p.first[f]!
    : -1;
}

/**
 * One backward fixpoint. `returnsTo`, given, is per function where its
 * returns go back to: a return reads RETURN_READS and what is live there;
 * without it a return reads nothing (the first pass: what a function reads
 * of its entry registers). `callReads`, given, is liveIn per instruction of
 * the first pass, read at a called function's entry; without it a call
 * reads its callee's liveIn of this very pass.
 */
function pass(
  p: Program,
  clobbers: Int32Array,
  returnsTo: Int32Array[] | undefined,
  callReads: Int32Array | undefined,
): Int32Array {
  const n = p.count;
  const live = new Int32Array(n);
  const succ = (t: number): number =>
    t >= 0 ? live[t]! : t === NO_TARGET ? 0 : t === TO_PLT ? CALL_READS : ALL;
  const kill = new Int32Array(n);
  const entry = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    if (p.flow[i] === Flow.Call) {
      const c = p.callee[i]!;
      const local = c >= 0 && p.decoded[c];
      kill[i] = local ? clobbers[c]! : p.target[i] === TO_PLT ? CALL_CLOBBERED : 0;
      if (local) entry[i] = entryOf(p, c);
    } else if (p.flow[i] === Flow.IndirectCall) kill[i] = CALL_CLOBBERED;
    else kill[i] = p.exact[i] ? p.writes[i]! : 0;
  }
  // What is live where a function's returns go back to, kept per function and grown as those places
  // grow (liveness only grows), rather than recomputed at each return: a function called from
  // thousands of places has thousands of return sites.
  const exit = new Int32Array(p.functions.length);
  const rets: number[][] = Array.from({ length: p.functions.length }, () => []);
  const owners = new Map<number, number[]>(); // return site -> the functions returning there
  if (returnsTo) {
    for (let i = 0; i < n; i++) if (p.flow[i] === Flow.Ret) rets[p.fn[i]!]!.push(i);
    returnsTo.forEach((sites, f) => {
      for (const site of sites) {
        const o = owners.get(site);
        if (o) o.push(f);
        else owners.set(site, [f]);
      }
    });
  }
  const transfer = (i: number): number => {
    const r = p.reads[i]!;
    switch (p.flow[i]) {
      case Flow.Seq:
        return r | (succ(p.next[i]!) & ~kill[i]!);
      case Flow.Call: {
        const e = entry[i]!;
        const args = e < 0 ? CALL_READS : (callReads ?? live)[e]! | RSP;
        return r | args | (succ(p.next[i]!) & ~kill[i]!);
      }
      case Flow.IndirectCall:
        return r | CALL_READS | (succ(p.next[i]!) & ~kill[i]!);
      case Flow.Ret:
        return returnsTo ? r | RETURN_READS | exit[p.fn[i]!]! : r;
      case Flow.Stop:
        return r;
      case Flow.Jmp:
        return r | succ(p.target[i]!);
      case Flow.Jcc:
        return r | succ(p.target[i]!) | succ(p.next[i]!);
      case Flow.IndirectJmp: {
        if (p.viaMemory[i] || p.afterTeardown[i]) return r | CALL_READS;
        const cases = p.cases.get(i);
        if (!cases) return ALL;
        let v = r;
        for (const c of cases) v |= live[c]!;
        return v;
      }
    }
    return ALL;
  };

  // Predecessors, as one flat list (CSR): who must be recomputed when an instruction's liveIn grows.
  const outs = (i: number, each: (t: number) => void) => {
    const f = p.flow[i];
    if (f === Flow.Seq || f === Flow.Call || f === Flow.IndirectCall || f === Flow.Jcc) {
      if (p.next[i]! >= 0) each(p.next[i]!);
    }
    if (f === Flow.Call && !callReads && entry[i]! >= 0) each(entry[i]!);
    if ((f === Flow.Jmp || f === Flow.Jcc) && p.target[i]! >= 0) each(p.target[i]!);
    if (f === Flow.IndirectJmp) {
      const cases = p.cases.get(i);
      if (cases) for (const c of cases) each(c);
    }
  };
  const degree = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) outs(i, (t) => degree[t + 1]!++);
  for (let i = 0; i < n; i++) degree[i + 1]! += degree[i]!;
  const preds = new Int32Array(degree[n]!);
  const fill = degree.slice(0, n);
  for (let i = 0; i < n; i++) outs(i, (t) => (preds[fill[t]!++] = i));

  // Worklist, seeded in reverse address order so that most straight-line code settles in one pass.
  const queued = new Uint8Array(n).fill(1);
  const work = new Int32Array(n);
  for (let i = 0; i < n; i++) work[i] = i;
  let top = n;
  while (top > 0) {
    const i = work[--top]!;
    queued[i] = 0;
    const v = transfer(i);
    if (v === live[i]) continue;
    live[i] = v | live[i]!;
    for (let k = degree[i]!; k < degree[i + 1]!; k++) {
      const q = preds[k]!;
      if (!queued[q]) {
        queued[q] = 1;
        work[top++] = q;
      }
    }
    for (const f of owners.get(i) ?? []) {
      if ((exit[f]! | live[i]!) === exit[f]) continue;
      exit[f]! |= live[i]!;
      for (const q of rets[f]!) {
        if (!queued[q]) {
          queued[q] = 1;
          work[top++] = q;
        }
      }
    }
  }
  return live;
}

/** The registers live when the call at instruction i returns (nothing when the call does not return into decoded code). */
export function liveAfterCall(p: Program, live: Int32Array, i: number): number {
  const n = p.next[i]!;
  return n >= 0 ? live[n]! : 0;
}
