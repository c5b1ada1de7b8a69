/**
 * Where a shifted field access's base register comes from (layout.ts finds
 * the accesses). A structure that lives on a stack frame is no object "the
 * old build allocated" once no call that made it is still running: gcc's
 * `compiler_common common_data; compiler_common *common = &common_data;` in
 * pcre2's jit_compile, passed by pointer to static helpers, is such a one.
 *
 * An access is *stack-confined* when its base is derived from the stack
 * pointer of the function it is in (`lea d(%rsp),%reg`, `mov %rsp,%rbp`
 * then `lea -d(%rbp),%reg`: below that function's entry %rsp), or arrives in
 * a register of a *local* function (not exported, its address never taken
 * by a relocation or a RIP-relative operand anywhere, every caller's code
 * decoded) and is stack-confined at EVERY direct call or jump into it. The
 * functions whose own frames hold the structure are its *creators*: the
 * structure is alive only while one of them is on a thread's stack.
 *
 * The dataflow is forward, per function, over every path (a register
 * redefined on any path by anything but a copy or a constant offset is
 * unknown; elf/x86/effects.ts counts every write it cannot rule out), and
 * interprocedural over the direct calls into local functions, to a fixed
 * point. A value loaded from memory, returned by a call, reaching a
 * function some caller of which cannot be seen, or passed by a tail call is
 * never confined. Pure; memoised per build.
 */
import { decode, Flow, newInsn, relDisplacement, REGISTER_NAMES } from '../../elf/x86/decode.js';
import { CALLER_SAVED, effectOf, Move, RBP, RSP, type Effect } from '../../elf/x86/effects.js';
import { PF_X, RelocType, SHF_EXECINSTR } from '../../elf/index.js';
import type { Build, FunctionInfo } from '../model.js';
import { targetsOf } from '../code/targets.js';

export interface Access {
  /** Start of the function the access is in. */
  function: number;
  /** Offset of the instruction in that function. */
  at: number;
  /** Base register number (0 rax .. 15 r15). */
  base: number;
}

export type Confinement = { confined: true; creators: number[] } | { confined: false; reason: string };

/** Register values. Frame: entry %rsp + off of the function analysed; Confined: in a frame of one of `creators`. */
type Val =
  | { k: 'bottom' }
  | { k: 'unknown' }
  | { k: 'frame'; off: number }
  | { k: 'confined'; creators: readonly number[]; key: string }
  /** A jump table's address (`lea X(%rip)`), an entry read from it, the entry added to it: where a switch jumps. */
  | { k: 'table' | 'entry' | 'target'; table: number };

const UNKNOWN: Val = { k: 'unknown' };
/**
 * The sixteen registers, and `m`: 64-bit words of the function's own frame by their offset from its
 * entry %rsp, as its own `mov %reg, d(%rsp)` left them (a spill, reloaded by `mov d(%rsp), %reg`).
 */
type State = Val[] & { m?: Map<number, Val> };

interface Fn {
  info: FunctionInfo;
  /** Undefined when some bytes do not decode: nothing about it or its calls can be followed. */
  insns: Insn[] | undefined;
  index: Map<number, number>;
  hasIndirectJump: boolean;
  /**
   * Where its indirect jumps may land (instruction indices): the entries of the jump tables its code
   * addresses, its own labels whose address it takes, relocated pointers into it. Undefined when it has no
   * indirect jump or none of these can be found: then any instruction may be a landing.
   */
  landings: number[] | undefined;
  /** The landings of each jump table the function addresses, by the table's address. */
  tables: Map<number, number[]>;
}

interface Insn {
  addr: number;
  end: number;
  flow: Flow;
  /** Absolute target of a direct branch or call, else -1. */
  target: number;
  /** Absolute address a RIP-relative operand refers to, else -1. */
  rip: number;
  lea: boolean;
  /** NOP, int3: alignment padding between blocks. */
  pad: boolean;
  /** A call of a C library function that never returns (__stack_chk_fail, abort, exit...): no fall-through. */
  noreturn?: boolean;
  /** The memory operand's base register, -1 without one; its displacement; whether it has an index. */
  base: number;
  disp: number;
  indexed: boolean;
  effect: Effect;
}

interface Edge {
  from: Fn;
  /** Index of the branching instruction in `from`. */
  at: number;
  target: number;
  call: boolean;
}

interface Program {
  fns: Fn[];
  starts: number[];
  /** Why a function's entries cannot all be seen, by start; absent for local functions. */
  open: Map<number, string>;
  /** Direct calls and jumps into each function from outside it (and calls of itself), by start. */
  edges: Map<number, Edge[]>;
  /**
   * The caller-saved registers a call of each function may change, by start: gcc's interprocedural
   * register allocation lets a caller keep a value in one across a call of a static function that
   * leaves it alone (pcre2 keeps its `common` in %r11 so). Functions absent: every caller-saved register.
   */
  clobbers: Map<number, number>;
}

const programs = new WeakMap<Build, Program>();

/** Imports the C library declares noreturn, by name. */
const NORETURN = new Set([
  '__stack_chk_fail',
  '__fortify_fail',
  '__chk_fail',
  'abort',
  'exit',
  '_exit',
  '_Exit',
  'quick_exit',
  '__assert_fail',
  '__assert_perror_fail',
  'longjmp',
  'siglongjmp',
  '_longjmp',
  '__longjmp_chk',
  'pthread_exit',
  'err',
  'errx',
  'verr',
  'verrx',
]);

/** Decides each access in `build`: confined (with the creators' starts) or not, and why. */
export function confinement(build: Build, accesses: readonly Access[]): Confinement[] {
  let prog = programs.get(build);
  if (!prog) programs.set(build, (prog = programOf(build)));
  return new Solver(prog).decide(accesses);
}

function fnAt(prog: Program, addr: number): Fn | undefined {
  let lo = 0;
  let hi = prog.starts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (prog.starts[mid]! <= addr) lo = mid + 1;
    else hi = mid;
  }
  const f = prog.fns[lo - 1];
  return f && addr < f.info.end ? f : undefined;
}

const insn = newInsn();

function decodeRange(build: Build, start: number, end: number): { insns: Insn[]; ok: boolean } {
  const buf = build.bytesAt(start, end - start);
  const insns: Insn[] = [];
  let p = 0;
  while (p < buf.length) {
    if (!decode(buf, p, buf.length, insn)) {
      if (buf.subarray(p).every((b) => b === 0 || b === 0xcc)) break;
      return { insns, ok: false };
    }
    const effect = effectOf(buf, p, buf.length, insn)!;
    const addr = start + p;
    const end = addr + insn.length;
    const target = insn.relOff < 0 ? -1 : end + relDisplacement(buf, p, insn);
    const rip = insn.ripOff >= 0 ? end + buf.readInt32LE(p + insn.ripOff) : -1;
    let q = p;
    while (buf[q] === 0x66 || buf[q] === 0x2e) q++;
    const pad = insn.hint || buf[q] === 0x90 || buf[q] === 0xcc;
    const disp =
      insn.dispOff < 0
        ? 0
        : insn.dispSize === 1
          ? buf.readInt8(p + insn.dispOff)
          : buf.readInt32LE(p + insn.dispOff);
    insns.push({
      addr,
      end,
      flow: insn.flow,
      target,
      rip,
      lea: insn.lea,
      pad,
      base: insn.base,
      disp,
      indexed: insn.indexed,
      effect,
    });
    p += insn.length;
  }
  return { insns, ok: true };
}

function programOf(build: Build): Program {
  const infos = [...build.functions()].sort((a, b) => a.start - b.start);
  const fns: Fn[] = [];
  const open = new Map<number, string>();
  const ripTargets: number[] = [];
  let blind: string | undefined;
  for (const info of infos) {
    if (fns.length && info.start < fns[fns.length - 1]!.info.end) {
      blind = `functions overlap at 0x${info.start.toString(16)}`;
      continue;
    }
    const { insns, ok } = decodeRange(build, info.start, info.end);
    const index = new Map<number, number>();
    insns.forEach((x, i) => {
      index.set(x.addr, i);
      if (x.rip >= 0) ripTargets.push(x.rip);
    });
    fns.push({
      info,
      insns: ok ? insns : undefined,
      index,
      hasIndirectJump: insns.some((x) => x.flow === Flow.IndirectJmp),
      landings: undefined,
      tables: new Map(),
    });
    if (!ok) blind = `the code of ${label(info)} does not decode`;
  }
  const prog: Program = {
    fns,
    starts: fns.map((f) => f.info.start),
    open,
    edges: new Map(),
    clobbers: new Map(),
  };
  // Code outside every function (PLT, .init, padding, assembly without unwind info): its branches count as calls
  // from code nobody analyses, and code that does not decode hides its calls altogether.
  const gapEdges: number[] = [];
  // Executable sections where the file has section headers (read-only data may share the segment), else the segments.
  const exec = build.obj.sections.filter((h) => (h.flags & SHF_EXECINSTR) !== 0n && h.size > 0n);
  const ranges = exec.length
    ? exec.map((h) => ({ start: Number(h.addr), end: Number(h.addr + h.size) }))
    : build.obj.loadSegments
        .filter((seg) => seg.flags & PF_X)
        .map((seg) => ({ start: Number(seg.vaddr), end: Number(seg.vaddr + seg.filesz) }));
  for (const range of ranges) {
    let at = range.start;
    const segEnd = range.end;
    for (const f of fns) {
      if (f.info.end <= at) continue;
      if (f.info.start >= segEnd) break;
      if (f.info.start > at) scanGap(build, at, f.info.start);
      at = Math.max(at, f.info.end);
    }
    if (at < segEnd) scanGap(build, at, segEnd);
  }
  function scanGap(b: Build, start: number, end: number): void {
    const { insns, ok } = decodeRange(b, start, end);
    for (const x of insns) if (x.rip >= 0) ripTargets.push(x.rip);
    if (!ok && !blind)
      blind = `code at 0x${start.toString(16)}-0x${end.toString(16)} lies outside every function and does not decode`;
    for (const x of insns) if (x.target >= 0) gapEdges.push(x.target);
  }
  for (const t of gapEdges) {
    const f = fnAt(prog, t);
    if (f && !open.has(f.info.start)) open.set(f.info.start, 'code outside every function branches into it');
  }
  for (const t of ripTargets) {
    const f = fnAt(prog, t);
    if (f && !open.has(f.info.start)) open.set(f.info.start, 'its address is taken in code');
  }
  for (const r of build.obj.relocations) {
    let v: number | undefined;
    if (r.type === RelocType.RELATIVE || r.type === RelocType.IRELATIVE) v = Number(r.addend);
    if (r.table === 'relr') {
      try {
        v = Number(build.bytesAt(Number(r.offset), 8).readBigUInt64LE(0));
      } catch {
        v = undefined;
      }
    }
    if (
      (r.type === RelocType.R64 || r.type === RelocType.GLOB_DAT || r.type === RelocType.JUMP_SLOT) &&
      r.symbol?.defined
    )
      v = Number(r.symbol.value + r.addend);
    else if (r.type === RelocType.R64 && r.symIndex === 0) v = Number(r.addend);
    const f = v === undefined ? undefined : fnAt(prog, v);
    if (f && !open.has(f.info.start)) open.set(f.info.start, 'a relocation holds its address');
  }
  for (const s of build.obj.dynamicSymbols) {
    if (!s.defined || s.index === 0) continue;
    const f = fnAt(prog, Number(s.value));
    if (f) open.set(f.info.start, `it is exported (${s.name})`);
  }
  for (const f of fns) {
    if (!f.insns) {
      open.set(f.info.start, 'its code does not decode');
      continue;
    }
    f.insns.forEach((x, i) => {
      const into = x.target >= 0 && (x.flow === Flow.Call || x.flow === Flow.Jmp || x.flow === Flow.Jcc);
      if (into) {
        const g = fnAt(prog, x.target);
        if (!g) return;
        if (g !== f || (x.flow === Flow.Call && x.target === f.info.start))
          addEdge(g, { from: f, at: i, target: x.target, call: x.flow === Flow.Call });
      }
    });
    // Falling off the end runs the next function (a call as the last instruction is one the compiler knows never returns).
    const last = f.insns[f.insns.length - 1];
    if (last && (last.flow === Flow.Seq || last.flow === Flow.Jcc)) {
      const g = fnAt(prog, f.info.end);
      if (g) addEdge(g, { from: f, at: f.insns.length - 1, target: g.info.start, call: false });
    }
  }
  function addEdge(g: Fn, e: Edge): void {
    let list = prog.edges.get(g.info.start);
    if (!list) prog.edges.set(g.info.start, (list = []));
    list.push(e);
  }
  if (blind) for (const f of fns) if (!open.has(f.info.start)) open.set(f.info.start, blind);
  // No direct call or jump reaches it, yet it is code: reached some way the analysis does not see
  // (DT_INIT, DT_FINI, the unwinder), so with nothing known.
  for (const f of fns)
    if (!open.has(f.info.start) && !prog.edges.get(f.info.start)?.length)
      open.set(f.info.start, 'no direct call or jump reaches it');
  // A table of 32-bit offsets from its own address (reached by a RIP-relative operand) whose entries land on
  // function entries takes their addresses, as a relocated pointer would: read while they do.
  for (const t of ripTargets) {
    for (let at = t; ; at += 4) {
      let entry: number;
      try {
        entry = build.bytesAt(at, 4).readInt32LE(0);
      } catch {
        break;
      }
      const g = fnAt(prog, t + entry);
      if (!g || g.info.start !== t + entry) break;
      if (!open.has(g.info.start)) open.set(g.info.start, 'a table of offsets in data points at it');
    }
  }
  // Calls that never return: gcc puts other code right after them (a stack-protector failure mid-function).
  const names = targetsOf(build);
  for (const f of fns)
    for (const x of f.insns ?? [])
      if (x.flow === Flow.Call && x.target >= 0) {
        const name = names.nameOf(x.target);
        if (name.startsWith('i:') && NORETURN.has(name.slice(2).replace(/@.*$/, ''))) x.noreturn = true;
      }
  computeClobbers(prog);
  const relocated = new Set<number>();
  for (const r of build.obj.relocations)
    if (r.type === RelocType.RELATIVE || r.type === RelocType.IRELATIVE) relocated.add(Number(r.addend));
  for (const f of fns) if (f.insns && f.hasIndirectJump) f.landings = landingsOf(prog, build, f, relocated);
  return prog;
}

/**
 * The instructions an indirect jump of `f` may reach. gcc's switch tables are 32-bit offsets from the
 * table's own address, which the function takes with a RIP-relative LEA: every entry read from there
 * while it lands on an instruction of `f` (a real entry always does, so reading on past the table's end
 * only adds landings) counts. Labels whose address `f` takes (computed goto) and relocated pointers into
 * `f` (absolute tables) count too.
 */
function landingsOf(prog: Program, build: Build, f: Fn, relocated: Set<number>): number[] | undefined {
  const out = new Set<number>();
  const { start, end } = f.info;
  // Where a table entry lands: an instruction of `f`, or of another function (a part gcc split off as
  // `.cold`), which then has an entry no call shows.
  const land = (a: number): boolean => {
    if (a >= start && a < end) {
      const i = f.index.get(a);
      if (i !== undefined) out.add(i);
      return i !== undefined;
    }
    const g = fnAt(prog, a);
    if (!g || !g.index.has(a)) return false;
    if (!prog.open.has(g.info.start))
      prog.open.set(g.info.start, 'a jump table of another function lands in it');
    return true;
  };
  for (const a of relocated) if (a >= start && a < end) land(a);
  for (const x of f.insns!) {
    if (x.rip < 0 || !x.lea) continue;
    if (x.rip >= start && x.rip < end) {
      land(x.rip);
      continue;
    }
    const mine = new Set<number>();
    for (let at = x.rip; ; at += 4) {
      let entry: number;
      try {
        entry = build.bytesAt(at, 4).readInt32LE(0);
      } catch {
        break;
      }
      const a = x.rip + entry;
      if (!land(a)) break;
      const i = f.index.get(a);
      if (i !== undefined) mine.add(i);
    }
    if (mine.size) f.tables.set(x.rip, [...mine]);
  }
  return out.size ? [...out] : undefined;
}

/**
 * What each function may change of the caller-saved registers, with what the functions it calls and
 * jumps to change, to a fixed point. A function that calls or jumps anywhere the analysis cannot follow
 * (an import through the PLT, a pointer, code that does not decode) may change all of them.
 */
function computeClobbers(prog: Program): void {
  const own = new Map<Fn, number>();
  const calls = new Map<Fn, number[]>();
  for (const f of prog.fns) {
    if (!f.insns) continue;
    let w = 0;
    const targets: number[] = [];
    for (const x of f.insns) {
      const out = x.target >= 0 && (x.target < f.info.start || x.target >= f.info.end);
      if (x.flow === Flow.Call || (out && (x.flow === Flow.Jmp || x.flow === Flow.Jcc))) {
        if (x.target < 0) w = CALLER_SAVED;
        else if (x.flow !== Flow.Call || x.target !== f.info.start) targets.push(x.target);
      } else if (x.flow === Flow.IndirectCall || (x.flow === Flow.IndirectJmp && !f.landings))
        w = CALLER_SAVED;
      else w |= x.effect.writes;
    }
    const last = f.insns[f.insns.length - 1];
    if (last && (last.flow === Flow.Seq || last.flow === Flow.Jcc)) targets.push(f.info.end);
    own.set(f, w & CALLER_SAVED);
    calls.set(f, targets);
  }
  const value = new Map<Fn, number>(own);
  for (let changed = true; changed;) {
    changed = false;
    for (const [f, targets] of calls) {
      let w = value.get(f)!;
      for (const t of targets) {
        const g = fnAt(prog, t);
        w |= g && g.info.start === t && value.has(g) ? value.get(g)! : CALLER_SAVED;
      }
      if (w !== value.get(f)) {
        value.set(f, w);
        changed = true;
      }
    }
  }
  for (const [f, w] of value) prog.clobbers.set(f.info.start, w);
}

/** The lowest address of its own frame that a function holds in a register other than %rsp. */
function lowestFrameAddress(
  insns: readonly Insn[],
  ins: ReadonlyArray<State | undefined>,
  self: number,
): number {
  let low = Infinity;
  for (let i = 0; i < ins.length; i++) {
    const s = ins[i];
    if (!s) continue;
    // %rsp itself stored (push %rsp, mov %rsp,mem): an address of the frame in memory, offset unknown here.
    const e = insns[i]!.effect;
    if ((e.move === Move.Store || e.move === Move.Push) && e.src === RSP) return -Infinity;
    for (let r = 0; r < 16; r++) {
      if (r === RSP) continue;
      const v = s[r]!;
      if (v.k === 'frame') low = Math.min(low, v.off);
      else if (v.k === 'confined' && v.creators.includes(self)) return -Infinity;
    }
  }
  return low;
}

const edgeKey = (from: number, at: number, target: number) => `${from}:${at}:${target}`;

function label(f: FunctionInfo): string {
  return f.name ?? `0x${f.start.toString(16)}`;
}

const confinedCache = new Map<string, Val>();
function confinedVal(creators: readonly number[]): Val {
  // Small lists (one or two creators): sorted and deduplicated by hand, no Set per join.
  const list =
    creators.length === 1
      ? creators
      : [...creators].sort((a, b) => a - b).filter((c, i, l) => i === 0 || c !== l[i - 1]);
  const key = list.length === 1 ? String(list[0]) : list.join(',');
  let v = confinedCache.get(key);
  if (!v) confinedCache.set(key, (v = { k: 'confined', creators: list, key }));
  return v;
}

function same(a: Val, b: Val): boolean {
  if (a === b) return true;
  if (a.k !== b.k) return false;
  if (a.k === 'frame') return a.off === (b as { off: number }).off;
  if (a.k === 'confined') return a.key === (b as { key: string }).key;
  if (a.k === 'table' || a.k === 'entry' || a.k === 'target')
    return a.table === (b as { table: number }).table;
  return true;
}

/** The least upper bound; `self` is the function analysed, whose frame a negative Frame offset lies in. */
function join(a: Val, b: Val, self: number, reg: number): Val {
  if (a.k === 'bottom') return b;
  if (b.k === 'bottom' || same(a, b)) return a;
  if (a.k === 'unknown' || b.k === 'unknown' || reg === RSP) return UNKNOWN;
  if (
    a.k === 'table' ||
    a.k === 'entry' ||
    a.k === 'target' ||
    b.k === 'table' ||
    b.k === 'entry' ||
    b.k === 'target'
  )
    return UNKNOWN;
  const set: number[] = [];
  for (const v of [a, b]) {
    if (v.k === 'frame') {
      if (v.off >= 0) return UNKNOWN;
      set.push(self);
    } else if (v.k === 'confined') set.push(...v.creators);
  }
  return confinedVal(set);
}

function offset(v: Val, d: number): Val {
  if (v.k === 'frame') return Number.isFinite(d) ? { k: 'frame', off: v.off + d } : UNKNOWN;
  if (v.k === 'confined' || v.k === 'bottom') return v;
  return UNKNOWN;
}

/**
 * The state after `x`. `limit`: frame words at offsets from `limit - 8` up may be part of an object
 * whose address the function takes (it holds an address of its frame at `limit` somewhere), so only
 * the words below are followed through memory: the compiler's spill slots, which no pointer reaches.
 */
function transfer(x: Insn, s: State, limit: number, clobbers?: Map<number, number>): State {
  const e = x.effect;
  const t: State = s.slice();
  let m = s.m;
  const slots = (): Map<number, Val> => (m = new Map(m));
  const kill = (lo: number, hi: number) => {
    if (!m) return;
    for (const k of m.keys()) if (k + 8 > lo && k < hi) slots().delete(k);
  };
  // The frame word a memory operand addresses, when its base holds an address of this frame.
  const at = (): number | undefined => {
    const b = x.base >= 0 ? s[x.base]! : undefined;
    return b && b.k === 'frame' && !x.indexed ? b.off + x.disp : undefined;
  };
  if (x.flow === Flow.Call && clobbers) {
    const w = x.target >= 0 ? (clobbers.get(x.target) ?? CALLER_SAVED) : CALLER_SAVED;
    for (let r = 0; r < 16; r++) if (w & (1 << r)) t[r] = UNKNOWN;
  } else
    switch (e.move) {
      case Move.Copy:
        t[e.dst] = s[e.src]!;
        break;
      case Move.Offset:
        t[e.dst] = offset(s[e.src]!, e.imm);
        break;
      case Move.Push: {
        t[RSP] = offset(s[RSP]!, -8);
        const r = t[RSP]!;
        if (r.k === 'frame') {
          kill(r.off, r.off + 8);
          if (e.src >= 0 && r.off + 8 <= limit) slots().set(r.off, s[e.src]!);
        }
        break;
      }
      case Move.Pop: {
        const r = s[RSP]!;
        t[RSP] = offset(r, 8);
        if (e.dst >= 0) t[e.dst] = (r.k === 'frame' && m?.get(r.off)) || UNKNOWN;
        break;
      }
      case Move.Leave:
        t[RSP] = offset(s[RBP]!, 8);
        t[RBP] = UNKNOWN;
        break;
      case Move.Load: {
        const a = at();
        t[e.dst] = (a !== undefined && m?.get(a)) || UNKNOWN;
        break;
      }
      case Move.LoadEntry: {
        const b = x.base >= 0 ? s[x.base]! : UNKNOWN;
        t[e.dst] = b.k === 'table' && x.disp === 0 ? { k: 'entry', table: b.table } : UNKNOWN;
        break;
      }
      case Move.AddRegister: {
        const [p, q] = [s[e.dst]!, s[e.src]!];
        t[e.dst] =
          (p.k === 'table' && q.k === 'entry' && p.table === q.table) ||
          (p.k === 'entry' && q.k === 'table' && p.table === q.table)
            ? { k: 'target', table: p.table }
            : UNKNOWN;
        break;
      }
      case Move.Store: {
        const a = at();
        if (a !== undefined) {
          kill(a, a + 8);
          if (a + 8 <= limit) slots().set(a, s[e.src]!);
        } else if (x.base >= 0 && s[x.base]!.k === 'frame') m = undefined;
        break;
      }
      default:
        for (let r = 0; r < 16; r++) if (e.writes & (1 << r)) t[r] = UNKNOWN;
        // lea X(%rip),%reg: perhaps a jump table's address.
        if (x.lea && x.rip >= 0 && e.writes && (e.writes & (e.writes - 1)) === 0)
          t[31 - Math.clz32(e.writes)] = { k: 'table', table: x.rip };
    }
  if (e.memory && e.move !== Move.Load && e.move !== Move.Store) {
    // Anything else with a memory operand in this frame may write it (up to a 64-byte vector).
    const a = at();
    if (a !== undefined) kill(a - 8, a + 64);
    else if (x.base >= 0 && s[x.base]!.k === 'frame') m = undefined;
  }
  // String instructions store through %rdi, which may point into this frame.
  if (e.move === Move.Other && (e.writes & 0xc2) === 0xc2) m = undefined;
  // A call writes below %rsp (its return address, the callee's frame); so may a signal past the red zone.
  const r = t[RSP]!;
  if (r.k !== 'frame') m = undefined;
  else if (m) kill(-Infinity, x.flow === Flow.Call || x.flow === Flow.IndirectCall ? r.off : r.off - 128);
  if (m && m.size) t.m = m;
  return t;
}

/** Joins `b` into `a`'s frame words: a word kept is one both hold. */
function joinSlots(
  a: Map<number, Val> | undefined,
  b: Map<number, Val> | undefined,
  self: number,
): Map<number, Val> | undefined {
  if (!a || !b) return undefined;
  const out = new Map<number, Val>();
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w) {
      const j = join(v, w, self, -1);
      if (j.k !== 'unknown') out.set(k, j);
    }
  }
  return out.size ? out : undefined;
}

function sameSlots(a: Map<number, Val> | undefined, b: Map<number, Val> | undefined): boolean {
  if (!a || !b) return !a === !b;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || !same(v, w)) return false;
  }
  return true;
}

class Solver {
  /** In-state at each instruction of each function solved so far. */
  private states = new Map<number, Array<State | undefined>>();
  /** What each edge carries into its target, by "from:at". */
  private carried = new Map<string, State>();
  private relevant = new Set<number>();

  constructor(private prog: Program) {}

  decide(accesses: readonly Access[]): Confinement[] {
    // The functions whose states matter: those with accesses, and every caller of a local one among them.
    const work = [...new Set(accesses.map((a) => a.function))];
    for (let i = 0; i < work.length; i++) {
      const f = work[i]!;
      if (this.relevant.has(f)) continue;
      this.relevant.add(f);
      if (this.prog.open.has(f)) continue;
      for (const e of this.prog.edges.get(f) ?? []) work.push(e.from.info.start);
    }
    // Callers (found last) first: a callee solved before its callers would be solved again for each.
    const queue = [...this.relevant].reverse();
    const queued = new Set(queue);
    while (queue.length) {
      const start = queue.shift()!;
      queued.delete(start);
      for (const changed of this.solve(start))
        if (!queued.has(changed)) {
          queued.add(changed);
          queue.push(changed);
        }
    }
    return accesses.map((a) => this.verdict(a));
  }

  private verdict(a: Access): Confinement {
    const f = fnAt(this.prog, a.function);
    const reg = `%${REGISTER_NAMES[a.base]}`;
    if (!f || f.info.start !== a.function || !f.insns)
      return { confined: false, reason: 'its function cannot be decoded' };
    const i = f.index.get(a.function + a.at);
    const s = i === undefined ? undefined : this.states.get(f.info.start)?.[i];
    if (!s) return { confined: false, reason: `no caller that can be followed reaches it` };
    const v = s[a.base]!;
    if (v.k === 'frame' && v.off < 0) return { confined: true, creators: [f.info.start] };
    if (v.k === 'confined') return { confined: true, creators: [...v.creators] };
    if (v.k === 'frame')
      return { confined: false, reason: `${reg} points above its own frame (a caller's stack)` };
    const why = this.prog.open.get(f.info.start);
    return {
      confined: false,
      reason: why
        ? `${reg} is not derived from its own stack frame on every path, and its callers cannot all be followed (${why})`
        : `${reg} is not derived from a stack frame on every path (loaded from memory, returned by a call, or unknown at a call site)`,
    };
  }

  /** The in-states at the targets of edges into `f`, translated from each caller's state. */
  private entries(f: Fn): Map<number, State> {
    const out = new Map<number, State>();
    const start = f.info.start;
    const add = (at: number, s: State) => {
      const old = out.get(at);
      out.set(at, old ? old.map((v, r) => join(v, s[r]!, start, r)) : s);
    };
    const why = this.prog.open.get(start);
    if (why) {
      const top: State = Array.from({ length: 16 }, () => UNKNOWN);
      const entry = top.slice();
      entry[RSP] = { k: 'frame', off: 0 };
      add(start, entry);
      for (const e of this.prog.edges.get(start) ?? []) if (e.target !== start) add(e.target, top);
      return out;
    }
    for (const e of this.prog.edges.get(start) ?? []) {
      const s = this.carried.get(edgeKey(e.from.info.start, e.at, e.target));
      if (s) add(e.target, s);
    }
    return out;
  }

  /** What an edge passes to its target, in the target's terms. */
  private carry(e: Edge, s: State): State {
    const caller = e.from.info.start;
    const callee = fnAt(this.prog, e.target)!;
    const rsp = s[RSP]!;
    // A jump to a function's entry with the caller's frame gone is a tail call: what lived there is dead.
    // Any other jump continues the caller's frame in another function (a part gcc split off as `.cold`):
    // what lives there stays alive while either runs, so both count as its creators.
    const tail = !e.call && e.target === callee.info.start && rsp.k === 'frame' && rsp.off === 0;
    const t: State = s.map((v, r): Val => {
      if (r === RSP) return UNKNOWN;
      if (v.k === 'frame') {
        if (v.off >= 0 || tail) return UNKNOWN;
        return confinedVal(e.call ? [caller] : [caller, callee.info.start]);
      }
      if (v.k === 'confined' && v.creators.includes(caller) && !e.call)
        return tail ? UNKNOWN : confinedVal([...v.creators, callee.info.start]);
      return v;
    });
    if (e.target === callee.info.start && (e.call || tail)) t[RSP] = { k: 'frame', off: 0 };
    return t;
  }

  /** The in-state of every instruction of `f`, from its entries, to a fixed point. */
  private flow(f: Fn, entries: Map<number, State>, broken: boolean, limit: number): Array<State | undefined> {
    const start = f.info.start;
    const insns = f.insns!;
    const n = insns.length;
    const ins: Array<State | undefined> = new Array(n);
    const internal = (x: Insn) => x.target >= 0 && x.target >= f.info.start && x.target < f.info.end;
    // A branch into the middle of an instruction: nothing here can be trusted.
    if (broken) {
      for (let i = 0; i < n; i++) ins[i] = Array.from({ length: 16 }, () => UNKNOWN);
      return ins;
    }
    for (const [at, s] of entries) ins[f.index.get(at)!] = s;
    const running = ins.some((x) => x !== undefined);
    // What jumps through a register carry: by the table whose entry they computed, or (any) to every landing.
    let indirect: State | undefined;
    const byTable = new Map<number, State>();
    const tablesAt = new Map<number, number[]>();
    for (const [table, list] of f.tables)
      for (const i of list) tablesAt.set(i, [...(tablesAt.get(i) ?? []), table]);
    let landing = f.landings ? new Set(f.landings) : undefined;
    const merge = (i: number, s: State): boolean => {
      const old = ins[i];
      if (!old) {
        ins[i] = s;
        return true;
      }
      let changed = false;
      const next: State = old.map((v, r) => {
        const j = join(v, s[r]!, start, r);
        if (!same(j, v)) changed = true;
        return j;
      });
      const m = joinSlots(old.m, s.m, start);
      if (m) next.m = m;
      if (!sameSlots(m, old.m)) changed = true;
      if (changed) ins[i] = next;
      return changed;
    };
    /** One pass in address order; true when a state changed that an earlier instruction's successor holds. */
    const pass = (): boolean => {
      let again = false;
      for (let i = 0; i < n; i++) {
        // A jump through a register (a switch table) lands with the state it had.
        if (indirect && (!landing || landing.has(i)) && merge(i, indirect)) again = true;
        for (const table of tablesAt.get(i) ?? []) {
          const st = byTable.get(table);
          if (st && merge(i, st)) again = true;
        }
        const s = ins[i];
        if (!s) continue;
        const x = insns[i]!;
        const out = transfer(x, s, limit, this.prog.clobbers);
        const via = x.flow === Flow.IndirectJmp && x.effect.src >= 0 ? s[x.effect.src]! : undefined;
        if (via?.k === 'target' && f.tables.has(via.table)) {
          const before = byTable.get(via.table);
          const joined: State = before ? before.map((v, r) => join(v, out[r]!, start, r)) : out.slice();
          const m = before ? joinSlots(before.m, out.m, start) : out.m;
          if (m) joined.m = m;
          byTable.set(via.table, joined);
          if (!before || joined.some((v, r) => !same(v, before[r]!)) || !sameSlots(m, before.m)) again = true;
        } else if (x.flow === Flow.IndirectJmp) {
          const before = indirect;
          const joined: State = before ? before.map((v, r) => join(v, out[r]!, start, r)) : out.slice();
          const m = before ? joinSlots(before.m, out.m, start) : out.m;
          if (m) joined.m = m;
          indirect = joined;
          if (!before || joined.some((v, r) => !same(v, before[r]!)) || !sameSlots(m, before.m)) again = true;
        }
        if ((x.flow === Flow.Jcc || x.flow === Flow.Jmp) && internal(x)) {
          const j = f.index.get(x.target)!;
          if (merge(j, out) && j <= i) again = true;
        }
        if (
          (x.flow === Flow.Seq ||
            x.flow === Flow.Jcc ||
            x.flow === Flow.Call ||
            x.flow === Flow.IndirectCall) &&
          !x.noreturn &&
          i + 1 < n
        )
          merge(i + 1, out);
      }
      return again;
    };
    while (pass());
    // With a jump through a register, code that nothing reaches (but padding) may be a landing the tables
    // did not show: then every instruction may be one, with the state the jumps had.
    if (running && landing && insns.some((x, i) => !ins[i] && !x.pad)) {
      landing = undefined;
      while (pass());
    }
    // Code still unreached but padding is reached some way no branch shows (an exception's landing pad,
    // entered by the unwinder): it starts with nothing known, and what it reaches too.
    if (running) {
      let seeded = false;
      for (let i = 0; i < n; i++)
        if (!ins[i] && !insns[i]!.pad) {
          ins[i] = Array.from({ length: 16 }, () => UNKNOWN);
          seeded = true;
        }
      if (seeded) while (pass());
    }
    return ins;
  }

  /** Solves one function; returns the relevant functions whose entries changed. */
  private solve(start: number): number[] {
    const f = fnAt(this.prog, start)!;
    if (!f.insns) return [];
    const insns = f.insns;
    const n = insns.length;
    const internal = (x: Insn) => x.target >= 0 && x.target >= f.info.start && x.target < f.info.end;
    const entries = this.entries(f);
    let broken = false;
    for (const at of entries.keys()) if (!f.index.has(at)) broken = true;
    for (const x of insns)
      if (internal(x) && (x.flow === Flow.Jcc || x.flow === Flow.Jmp) && !f.index.has(x.target))
        broken = true;
    // Frame words are followed below the lowest address of the frame the function holds in a register
    // (found by a run that follows none, then again until that address stays put).
    let ins = this.flow(f, entries, broken, -Infinity);
    const limit = lowestFrameAddress(insns, ins, start);
    if (limit > -Infinity) {
      const next = this.flow(f, entries, broken, limit);
      // Words followed may bring a lower address back into a register: then keep the run that follows none.
      if (lowestFrameAddress(insns, next, start) >= limit) ins = next;
    }
    this.states.set(start, ins);
    // What this function passes to the relevant local functions it calls or jumps into.
    const touched: number[] = [];
    f.insns.forEach((x, i) => {
      const s = ins[i];
      if (!s) return;
      const outs: Array<{ target: number; call: boolean }> = [];
      const branch = x.flow === Flow.Call || x.flow === Flow.Jmp || x.flow === Flow.Jcc;
      if (branch && x.target >= 0 && (!internal(x) || (x.flow === Flow.Call && x.target === start)))
        outs.push({ target: x.target, call: x.flow === Flow.Call });
      if (i === n - 1 && (x.flow === Flow.Seq || x.flow === Flow.Jcc))
        outs.push({ target: f.info.end, call: false });
      for (const o of outs) {
        const g = fnAt(this.prog, o.target);
        if (!g || !this.relevant.has(g.info.start) || this.prog.open.has(g.info.start)) continue;
        // A call passes the state before it (its arguments); a jump or a fall-through the state after the instruction.
        const c = this.carry(
          { from: f, at: i, target: o.target, call: o.call },
          o.call ? s : transfer(x, s, -Infinity),
        );
        const key = edgeKey(start, i, o.target);
        const old = this.carried.get(key);
        if (!old || old.some((v, r) => !same(v, c[r]!))) {
          this.carried.set(key, old ? old.map((v, r) => join(v, c[r]!, g.info.start, r)) : c);
          touched.push(g.info.start);
        }
      }
    });
    return touched;
  }
}
