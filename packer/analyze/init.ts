/**
 * init: constructors are never run again for an update, so the state they
 * built in the old build's data must be what the new build's constructors
 * would have built. Hence: the same number of DT_INIT / INIT_ARRAY /
 * PREINIT_ARRAY entries, and each entry's code unchanged together with every
 * function it calls (or takes the address of) inside the library, compared
 * with addresses masked (code/compare.ts). Destructors (DT_FINI,
 * FINI_ARRAY) run from the old build at exit; their changes are warnings.
 */
import { RelocType, symbolIndex, type ElfSymbol } from '../../elf/index.js';
import type { Category } from '../../patches/index.js';
import { compareCode } from '../code/compare.js';
import { functionAt } from '../code/extent.js';
import type { Build } from '../model.js';
import { Findings } from './findings.js';
import type { Pair } from './pair.js';

type Kind = 'DT_INIT' | 'PREINIT_ARRAY' | 'INIT_ARRAY' | 'DT_FINI' | 'FINI_ARRAY';

/** Bounds the walk through callees; far beyond any real constructor. */
const MAX_FUNCTIONS = 20000;

/** The function addresses an init/fini table holds once relocated. */
export function entryPoints(build: Build, kind: Kind): number[] {
  const d = build.obj.dynamic;
  if (!d) return [];
  if (kind === 'DT_INIT') return d.init !== undefined ? [Number(d.init)] : [];
  if (kind === 'DT_FINI') return d.fini !== undefined ? [Number(d.fini)] : [];
  const range = kind === 'INIT_ARRAY' ? d.initArray : kind === 'PREINIT_ARRAY' ? d.preinitArray : d.finiArray;
  if (!range || range.size === 0n) return [];
  const words = build.obj.readAt(range.addr, Number(range.size));
  const out: number[] = [];
  for (let i = 0; i + 8 <= words.length; i += 8) {
    const r = build.relocAt.get(Number(range.addr) + i);
    let v = words.readBigUInt64LE(i);
    if (r && r.table !== 'relr' && r.type === RelocType.RELATIVE) v = r.addend;
    else if (r && r.symbol?.defined) v = r.symbol.value + r.addend;
    out.push(Number(v));
  }
  return out;
}

function label(build: Build, vaddr: number): string {
  const s = symbolIndex(build.obj).containing(vaddr);
  return s && Number(s.value) === vaddr ? build.nameOf(s) : `0x${vaddr.toString(16)}`;
}

/** An exported function reached through the PLT may be this library's own: follow it like a direct call. */
function ownDefinition(build: Build, importName: string): ElfSymbol | undefined {
  const s = build.exports.get(importName.replace(/\+\d+$/, ''));
  return s && build.kindAt(Number(s.value)) === 'code' ? s : undefined;
}

interface ClosureDiff {
  where: string;
  reason: string;
  offset: number;
}

/** Compares the code reachable from two entry points, pairing callees as they are met. */
function compareClosure(pair: Pair, a0: number, b0: number): ClosureDiff | undefined {
  const { from, to } = pair;
  const queue: Array<[number, number]> = [[a0, b0]];
  const seen = new Set<string>();
  const enqueue = (a: number, b: number) => {
    const k = `${a}:${b}`;
    if (!seen.has(k)) {
      seen.add(k);
      queue.push([a, b]);
    }
    return true;
  };
  seen.add(`${a0}:${b0}`);
  let count = 0;
  while (queue.length > 0) {
    if (++count > MAX_FUNCTIONS)
      return {
        where: label(from, a0),
        reason: `more than ${MAX_FUNCTIONS} functions are reachable; not compared`,
        offset: 0,
      };
    const [a, b] = queue.shift()!;
    const fa = functionAt(from, a);
    const fb = functionAt(to, b);
    const d = compareCode(
      { build: from, start: fa.start, end: fa.end },
      { build: to, start: fb.start, end: fb.end },
      {
        onCode: enqueue,
        onCall: (x, y) => enqueue(x, y),
        onImport: (name) => {
          const x = ownDefinition(from, name);
          const y = ownDefinition(to, name);
          if (x && y) enqueue(Number(x.value), Number(y.value));
          return true;
        },
      },
    );
    if (d) return { where: fa.name ?? label(from, a), reason: d.reason, offset: d.offset };
  }
  return undefined;
}

function compareTable(pair: Pair, f: Findings, kind: Kind, severity: 'error' | 'warning'): boolean {
  const { from, to } = pair;
  const ea = entryPoints(from, kind);
  const eb = entryPoints(to, kind);
  const isInit = severity === 'error';
  const prefix = isInit ? 'INIT' : 'FINI';
  if (ea.length !== eb.length) {
    f.add(
      severity,
      `${prefix}_COUNT_CHANGED`,
      `${kind} has ${ea.length} entries in the ${from.label} build and ${eb.length} in the ${to.label} build${isInit ? ': constructors are not run again, so the state they set up would be missing' : ''}`,
      undefined,
      { kind, from: ea.length, to: eb.length },
    );
    return true;
  }
  let changed = false;
  ea.forEach((a, i) => {
    const d = compareClosure(pair, a, eb[i]!);
    if (!d) return;
    changed = true;
    const entry = label(from, a);
    const inside = d.where === entry ? '' : ` (in ${d.where}, which it reaches)`;
    f.add(
      severity,
      `${prefix}_CODE_CHANGED`,
      isInit
        ? `constructor ${entry} (${kind}[${i}]) changed${inside} at +0x${d.offset.toString(16)}: ${d.reason}; it would not run again, so the new code could find state it does not expect`
        : `destructor ${entry} (${kind}[${i}]) changed${inside}: at exit the ${from.label} build's version runs`,
      [entry, ...(inside ? [d.where] : [])],
      { kind, index: i, function: d.where, offset: d.offset, reason: d.reason },
    );
  });
  return changed;
}

export function analyzeInit(pair: Pair): Category {
  const f = new Findings();
  for (const kind of ['PREINIT_ARRAY', 'DT_INIT', 'INIT_ARRAY'] as const)
    compareTable(pair, f, kind, 'error');
  for (const kind of ['DT_FINI', 'FINI_ARRAY'] as const) compareTable(pair, f, kind, 'warning');
  const count = (b: Build) =>
    ['PREINIT_ARRAY', 'DT_INIT', 'INIT_ARRAY'].reduce((n, k) => n + entryPoints(b, k as Kind).length, 0);
  return f.category(`${count(pair.from)} constructors compared with their callees`);
}
