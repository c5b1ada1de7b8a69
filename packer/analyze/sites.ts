/**
 * Relocation sites inside the writable region, described for the trigger:
 * what each word holds once the loader has processed it, in each build.
 */
import {
  RelocType,
  relocTypeName,
  symbolContaining,
  symbolIndex,
  type ElfSymbol,
  type Relocation,
  type WritableRegion,
} from '../../elf/index.js';
import type { Site, SiteTarget } from '../../patches/index.js';
import { hex } from '../../patches/hex.js';
import type { Build } from '../model.js';

const TLS_TYPES = new Set<number>([
  RelocType.DTPMOD64,
  RelocType.DTPOFF64,
  RelocType.TPOFF64,
  RelocType.TLSDESC,
]);
/** Relocations that go through symbol lookup and whose slot the trigger relinks as a GOT entry. */
const GOT_TYPES = new Set<number>([RelocType.GLOB_DAT, RelocType.JUMP_SLOT]);

/** RELR sites keep their addend in the word they relocate; the reader reports 0 for them. */
export function effectiveAddend(build: Build, r: Relocation): bigint {
  return r.table === 'relr' ? build.obj.readAt(r.offset, 8).readBigUInt64LE(0) : r.addend;
}

/** Link-time addresses are exact as numbers (one shared index); a crafted addend beyond them is looked up as a bigint. */
function symbolAt(build: Build, vaddr: bigint): ElfSymbol | undefined {
  return vaddr >= 0n && vaddr <= BigInt(Number.MAX_SAFE_INTEGER)
    ? symbolIndex(build.obj).containing(Number(vaddr))
    : symbolContaining(build.obj, vaddr);
}

function local(build: Build, vaddr: bigint, kind?: SiteTarget['kind']): SiteTarget {
  const k = kind ?? build.kindAt(Number(vaddr));
  const t: SiteTarget = { kind: k === 'none' ? 'unknown' : k, vaddr: hex(vaddr) };
  const s = symbolAt(build, vaddr);
  if (s) {
    t.symbol = build.nameOf(s);
    t.symbolOffset = hex(vaddr - s.value);
  }
  return t;
}

export function siteTarget(build: Build, r: Relocation): SiteTarget {
  if (TLS_TYPES.has(r.type))
    return r.symbol && r.symIndex ? { kind: 'tls', symbol: r.symbol.name } : { kind: 'tls' };
  if (r.type === RelocType.RELATIVE) return local(build, effectiveAddend(build, r));
  if (r.type === RelocType.IRELATIVE) return local(build, r.addend, 'code');
  const sym = r.symIndex ? r.symbol : undefined;
  if (!sym) return { kind: 'unknown' };
  if (GOT_TYPES.has(r.type) || !sym.defined) {
    const t: SiteTarget = { kind: 'symbol', symbol: sym.name };
    if (sym.defined) t.vaddr = hex(sym.value);
    return t;
  }
  // An absolute pointer to a symbol this build defines (R_X86_64_64 in .data): normally binds to it.
  const t = local(build, sym.value + r.addend);
  t.symbol = sym.name;
  if (r.addend) t.symbolOffset = hex(r.addend);
  else delete t.symbolOffset;
  return t;
}

/**
 * Sites at the same region offset with the same type in both builds (the
 * only ones a compatible pair has). `offset` is the site in the `from`
 * build; in the `to` build it lies as far from that build's region start.
 */
export function matchedSites(from: Build, to: Build, ra: WritableRegion, rb: WritableRegion): Site[] {
  const toAt = new Map(to.relocsIn(Number(rb.start), Number(rb.end)).map((r) => [r.offset - rb.start, r]));
  const out: Site[] = [];
  for (const a of from.relocsIn(Number(ra.start), Number(ra.end))) {
    const b = toAt.get(a.offset - ra.start);
    if (!b || b.type !== a.type) continue;
    const site: Site = {
      offset: hex(a.offset),
      type: a.type,
      typeName: relocTypeName(a.type),
      fromAddend: hex(effectiveAddend(from, a)),
      toAddend: hex(effectiveAddend(to, b)),
      fromTarget: siteTarget(from, a),
      toTarget: siteTarget(to, b),
    };
    const sym = a.symIndex ? a.symbol : undefined;
    if (sym) site.symbol = sym.version ? { name: sym.name, version: sym.version } : { name: sym.name };
    out.push(site);
  }
  return out;
}
