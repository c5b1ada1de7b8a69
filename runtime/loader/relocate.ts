/**
 * Plans the relocation of a build that is about to be staged in a process:
 * for every relocation site outside the shared writable region, the 64-bit
 * value to store there. Pure: it reads the process only through `read`.
 *
 * Where the previous build had the same relocation, its value (filled in by
 * the dynamic loader itself) is inherited. That reproduces ld.so's answer
 * exactly — scope order, symbol versions, interposition, IFUNC results, TLS
 * module and offsets — without re-implementing it. Only what the previous
 * build did not have is resolved here, in ld.so's lookup order for the library.
 */
import { UlpError } from '../../common/errors.js';
import { STB_WEAK, STT_GNU_IFUNC } from '../../elf/constants.js';
import { RelocType, type ElfObject, type ElfSymbol, type Relocation } from '../../elf/types.js';
import { contains, type Family, type ProcessObject, type ReadMemory, type Region } from './model.js';
import { isDefinition, lookupIn, scopeOf, type Definition, type SymbolRef } from './scope.js';
import { inRegion, ownRegion } from './region.js';

export interface StageInput {
  /** The build to stage, parsed from its file. */
  target: ElfObject;
  /** Where it will be mapped: runtime address = targetBias + vaddr. */
  targetBias: bigint;
  family: Family;
  /** The build that is live now; its resolved relocations are inherited. */
  from: ProcessObject;
  scope: readonly ProcessObject[];
  /** The canonical build's writable region (its vaddrs); the target's own may lie elsewhere, with the same size and layout (region.ts). */
  region: Region;
  read: ReadMemory;
}

export type WriteReason = 'relative' | 'inherited' | 'resolved' | 'self' | 'tls' | 'weak-undefined';

export interface RelocWrite {
  /** Runtime address of the site in the staged build. */
  addr: bigint;
  value: bigint;
  /** The value is an address in the staged build itself (it moves with the build: shiftPlan). */
  own: boolean;
  reason: WriteReason;
  reloc: Relocation;
}

/** A site whose value is what an IFUNC resolver returns; the resolver runs in the target. */
export interface IfuncWrite {
  addr: bigint;
  resolver: bigint;
  /** The resolver is the staged build's own. */
  own: boolean;
  /** Added to the resolver's result. */
  addend: bigint;
  reloc: Relocation;
}

export interface StagePlan {
  writes: RelocWrite[];
  ifuncs: IfuncWrite[];
  /** Sites inside the shared writable region: left alone, they already hold the library's live values. */
  sharedSites: number;
  /** Imports the previous build did not have, with where they resolved. */
  newImports: Array<{ name: string; version?: string | undefined; from: string }>;
}

const refOf = (s: ElfSymbol): SymbolRef => ({ name: s.name, version: s.version });
const keyOf = (type: number, s: ElfSymbol | undefined) =>
  `${type}:${s ? `${s.name}@${s.version ?? ''}` : ''}`;

/** Values the dynamic loader stored at the previous build's symbol relocations, by (type, symbol). */
function inheritedValues(
  from: ProcessObject,
  family: Family,
  read: ReadMemory,
): Map<string, { value: bigint; reloc: Relocation }> {
  const out = new Map<string, { value: bigint; reloc: Relocation }>();
  for (const r of from.elf.relocations) {
    if (r.table === 'relr') continue;
    const key = keyOf(r.type, r.symbol);
    if (out.has(key)) continue;
    const value = read(from.bias + r.offset, 8).readBigUInt64LE(0);
    // An unbound lazy slot still points at a PLT of the library (the canonical build's, when the
    // .got.plt is shared under partial RELRO): it tells nothing about where the symbol resolves.
    if (
      r.type === RelocType.JUMP_SLOT &&
      r.symbol &&
      !r.symbol.defined &&
      family.builds.some((b) => inSpan(b, value))
    )
      continue;
    out.set(key, { value, reloc: r });
  }
  return out;
}

function inSpan(obj: ProcessObject, addr: bigint): boolean {
  return contains(obj.span, addr);
}

export function planStage(input: StageInput): StagePlan {
  const { target, targetBias, family, from, scope, region, read } = input;
  const canonical = family.canonical;
  const inherited = inheritedValues(from, family, read);
  // Where ld.so would look up the library's imports: the global scope, and its local group if it was dlopen'ed RTLD_LOCAL.
  const lookupScope = scopeOf(canonical, scope);
  const symbolic = target.dynamic?.symbolic ?? false;
  const plan: StagePlan = { writes: [], ifuncs: [], sharedSites: 0, newImports: [] };
  // The target's own region: its sites there are the shared words, and its data there lives in the canonical copy.
  const targetRegion = ownRegion(target);
  const inOwnRegion = (vaddr: bigint) => inRegion(targetRegion, vaddr);

  /** Runtime address of a vaddr of the target: data in its region lives in the canonical copy, at the same offset from the region start. */
  const addrOf = (vaddr: bigint) =>
    targetRegion && inOwnRegion(vaddr)
      ? canonical.bias + region.start + (vaddr - targetRegion.start)
      : targetBias + vaddr;
  /** Whether addrOf(vaddr) lies in the staged build (it is not data of the shared region). */
  const ownAddr = (vaddr: bigint) => !(targetRegion && inOwnRegion(vaddr));

  /** Where a symbol of this library lives once the target is live; undefined when the target lacks it. */
  const targetSymbol = (ref: SymbolRef) => {
    const sym = target.lookup(ref.name, ref.version);
    return sym && isDefinition(sym) ? sym : undefined;
  };

  /**
   * ld.so's answer for the target had it been loaded in the canonical build's
   * place: the scope in order (so the executable and every object before the
   * library still interpose), with the target standing where the canonical
   * build stands. The staged build is in no scope of ld.so's, so a symbol it
   * defines and that nothing before it defines binds to its own definition,
   * even when an object after it defines the symbol too.
   */
  const resolveInPlace = (ref: SymbolRef): { self: ElfSymbol } | { def: Definition } | undefined => {
    for (const obj of lookupScope) {
      if (family.builds.includes(obj)) {
        const own = targetSymbol(ref);
        if (own) return { self: own };
        continue;
      }
      const def = lookupIn(obj, ref);
      if (def) return { def };
    }
    const own = targetSymbol(ref);
    return own ? { self: own } : undefined;
  };
  /** The previous build defined the symbol: ld.so's answer for it (inherited) already reflects the library's place in scope. */
  const fromDefines = (ref: SymbolRef) => {
    const sym = from.elf.lookup(ref.name, ref.version);
    return sym !== undefined && isDefinition(sym);
  };

  // glibc adds the addend only for R_X86_64_64; GLOB_DAT and JUMP_SLOT store the bare address.
  const addendOf = (r: Relocation) => (r.type === RelocType.R64 ? r.addend : 0n);

  const write = (r: Relocation, value: bigint, reason: WriteReason, own = false) =>
    plan.writes.push({
      addr: targetBias + r.offset,
      value: BigInt.asUintN(64, value),
      own,
      reason,
      reloc: r,
    });

  /** Stores the address of the target's own definition of `sym` (+ addend) at the site of `r`. */
  const writeSelf = (r: Relocation, sym: ElfSymbol, reason: WriteReason) => {
    if (sym.type === STT_GNU_IFUNC)
      plan.ifuncs.push({
        addr: targetBias + r.offset,
        resolver: targetBias + sym.value,
        own: true,
        addend: addendOf(r),
        reloc: r,
      });
    else write(r, addrOf(sym.value) + addendOf(r), reason, ownAddr(sym.value));
  };

  const familyBuildAt = (addr: bigint) => family.builds.find((b) => inSpan(b, addr));

  for (const r of target.relocations) {
    if (inOwnRegion(r.offset)) {
      plan.sharedSites++;
      continue;
    }
    switch (r.type) {
      case RelocType.NONE:
        break;
      case RelocType.RELATIVE: {
        // RELR sites carry their addend in place.
        const addend = r.table === 'relr' ? target.readAt(r.offset, 8).readBigUInt64LE(0) : r.addend;
        write(r, addrOf(addend), 'relative', ownAddr(addend));
        break;
      }
      case RelocType.IRELATIVE:
        plan.ifuncs.push({
          addr: targetBias + r.offset,
          resolver: targetBias + r.addend,
          own: true,
          addend: 0n,
          reloc: r,
        });
        break;
      case RelocType.GLOB_DAT:
      case RelocType.JUMP_SLOT:
      case RelocType.R64: {
        const s = r.symbol;
        if (!s) {
          write(r, addrOf(r.addend), 'relative', ownAddr(r.addend)); // ld.so: the null symbol resolves to the object itself
          break;
        }
        const own = targetSymbol(refOf(s));
        if (own && s.defined && symbolic) {
          writeSelf(r, own, 'self');
          break;
        }
        // A symbol the target defines but the previous build did not: the previous build's binding came from
        // further down the scope than the target's own definition, which ld.so would have found first.
        const prev =
          own && !fromDefines(refOf(s))
            ? undefined
            : (inherited.get(keyOf(r.type, s)) ??
              inherited.get(keyOf(RelocType.GLOB_DAT, s)) ??
              inherited.get(keyOf(RelocType.JUMP_SLOT, s)));
        if (prev) {
          const def = prev.value - addendOf(prev.reloc);
          if (familyBuildAt(def)) {
            // The loader bound the previous build to this library itself: bind the target to its own copy.
            if (own) writeSelf(r, own, 'self');
            else throw missingInTarget(s, target);
          } else write(r, def + addendOf(r), 'inherited');
          break;
        }
        const found = resolveInPlace(refOf(s));
        if (!found) {
          if (s.bind === STB_WEAK) write(r, 0n, 'weak-undefined');
          else
            throw new UlpError(
              'LOADER_UNRESOLVED_SYMBOL',
              `symbol ${fmtRef(s)} needed by the new build is not defined by any object loaded in the process`,
              'The new build imports something the process does not provide; rebuild it against the same dependencies or load the missing library first.',
              { symbol: fmtRef(s) },
            );
          break;
        }
        if ('self' in found) {
          writeSelf(r, found.self, 'self');
          break;
        }
        const def = found.def;
        if (!s.defined)
          plan.newImports.push({
            name: s.name,
            version: s.version,
            from: def.obj.soname ?? (def.obj.name || '(executable)'),
          });
        if (def.sym.type === STT_GNU_IFUNC)
          plan.ifuncs.push({
            addr: targetBias + r.offset,
            resolver: def.addr,
            own: false,
            addend: addendOf(r),
            reloc: r,
          });
        else write(r, def.addr + addendOf(r), 'resolved');
        break;
      }
      case RelocType.DTPMOD64:
      case RelocType.DTPOFF64:
      case RelocType.TPOFF64:
        write(r, tlsValue(r, target, from, inherited), 'tls');
        break;
      default:
        throw new UlpError(
          'LOADER_UNSUPPORTED_RELOC',
          `the new build has a relocation of type ${r.type} at 0x${r.offset.toString(16)}, which the loader cannot apply`,
          'Text relocations and TLS descriptors are not supported; build the library with -fPIC and the default TLS dialect.',
          { type: r.type, offset: `0x${r.offset.toString(16)}` },
        );
    }
  }
  // Resolvers run in this order, after every other write. The library's own come last: one may call
  // through the GOT an IFUNC of another object (libc's strchr...) that the old build did not import,
  // whose slot must hold that resolver's result by then. ld.so likewise runs an object's IRELATIVE
  // relocations after all its others (elf/do-rel.h); test/integration/trigger/ifunc.test.ts (full RELRO) fails without it.
  plan.ifuncs.sort((a, b) => Number(a.own) - Number(b.own));
  return plan;
}

/**
 * The plan for the build mapped `by` bytes further than the plan assumed:
 * what changes with the address is the sites and the values that point
 * into the build itself; every decision (what binds where, what refuses)
 * is the same. So the plan is made once, before the process is touched,
 * and moved where the build was mapped.
 */
export function shiftPlan(plan: StagePlan, by: bigint): StagePlan {
  const move = (v: bigint) => BigInt.asUintN(64, v + by);
  return {
    ...plan,
    writes: plan.writes.map((w) => ({ ...w, addr: move(w.addr), value: w.own ? move(w.value) : w.value })),
    ifuncs: plan.ifuncs.map((f) => ({
      ...f,
      addr: move(f.addr),
      resolver: f.own ? move(f.resolver) : f.resolver,
    })),
  };
}

/**
 * TLS: the target must use the module id and block offset the previous build
 * was given, or every thread would lose its state. Both are read back from the
 * previous build's own TLS relocations; the compatibility rules guarantee the
 * TLS block layout (symbol offsets inside it) is identical.
 */
function tlsValue(
  r: Relocation,
  target: ElfObject,
  from: ProcessObject,
  inherited: Map<string, { value: bigint; reloc: Relocation }>,
): bigint {
  const s = r.symbol;
  const ownSym = s ? target.lookup(s.name, s.version) : undefined;
  const own = !s || (ownSym?.defined ?? false);
  if (!own) {
    const prev = inherited.get(keyOf(r.type, s));
    if (!prev) throw tlsUnknown(r, 'the previous build has no matching TLS relocation');
    return prev.value - prev.reloc.addend + r.addend;
  }
  const symValue = ownSym?.value ?? 0n;
  if (r.type === RelocType.DTPOFF64) return symValue + r.addend;
  // Find any own-module relocation of the same type in the previous build to learn the module id / block offset.
  for (const [, prev] of inherited) {
    if (prev.reloc.type !== r.type) continue;
    const ps = prev.reloc.symbol;
    if (ps && !ps.defined) continue;
    if (r.type === RelocType.DTPMOD64) return prev.value;
    const prevSymValue = ps ? (from.elf.lookup(ps.name, ps.version)?.value ?? 0n) : 0n;
    const blockOffset = prev.value - prevSymValue - prev.reloc.addend;
    return blockOffset + symValue + r.addend;
  }
  throw tlsUnknown(
    r,
    'the previous build has no TLS relocation of this type to learn its module and offset from',
  );
}

function tlsUnknown(r: Relocation, why: string): UlpError {
  return new UlpError(
    'LOADER_TLS_UNKNOWN',
    `cannot place TLS relocation at 0x${r.offset.toString(16)}${r.symbol ? ` (${fmtRef(r.symbol)})` : ''}: ${why}`,
    'The builds access thread-local storage differently; rebuild the new build with the same TLS model as the old one.',
  );
}

function missingInTarget(s: ElfSymbol, target: ElfObject): UlpError {
  return new UlpError(
    'LOADER_SYMBOL_MISSING',
    `the new build ${target.soname ?? ''} does not define ${fmtRef(s)}, which the running process resolved into this library`,
    'The pair is not compatible for this process; repack with a new build that keeps the symbol.',
  );
}

export function fmtRef(s: SymbolRef): string {
  return s.version ? `${s.name}@${s.version}` : s.name;
}
