/**
 * Dynamic relocations: DT_RELA, DT_JMPREL and DT_RELR, each decoded into
 * individual sites. x86-64 uses RELA only (glibc ignores DT_REL there).
 */
import { RelocType, type DynamicInfo, type ElfSymbol, type Relocation } from './types.js';
import { toNum, words } from './bytes.js';
import { DT_PLTREL, DT_RELA, DT_RELAENT, DT_RELRENT, RELA_SIZE } from './constants.js';
import { dynValue } from './dynamic.js';
import { malformed } from './errors.js';
import type { Image } from './image.js';

export interface RelocationInput {
  img: Image;
  dyn: DynamicInfo;
  symbols: () => ElfSymbol[];
  /** Upper bound on decoded sites: each writes its own 8-byte word of the image. */
  maxSites: number;
}

export function parseRelocations({ img, dyn, symbols, maxSites }: RelocationInput): Relocation[] {
  const relaent = dynValue(dyn, DT_RELAENT);
  if (relaent !== undefined && relaent !== BigInt(RELA_SIZE) && dyn.rela)
    throw malformed('DT_RELAENT', `is ${relaent}, expected ${RELA_SIZE}`);
  const pltrel = dynValue(dyn, DT_PLTREL);
  if (dyn.jmprel && dyn.jmprel.size > 0n && pltrel !== undefined && pltrel !== DT_RELA) {
    throw malformed('DT_PLTREL', `is ${pltrel}, but x86-64 PLT relocations must be DT_RELA (${DT_RELA})`);
  }
  const relrent = dynValue(dyn, DT_RELRENT);
  if (relrent !== undefined && relrent !== 8n && dyn.relr)
    throw malformed('DT_RELRENT', `is ${relrent}, expected 8`);

  let rela = dyn.rela;
  const jmprel = dyn.jmprel;
  // Some linkers count the PLT relocations in DT_RELASZ too; ld.so then trims them from the RELA range.
  if (
    rela &&
    jmprel &&
    jmprel.size > 0n &&
    rela.size >= jmprel.size &&
    rela.addr + rela.size === jmprel.addr + jmprel.size
  ) {
    rela = { addr: rela.addr, size: rela.size - jmprel.size };
  }

  const out: Relocation[] = [];
  const room = () => maxSites - out.length;
  let syms: ElfSymbol[] | undefined;
  // The entry's label is built only for the error: most entries with a symbol never need it.
  const symbol = (i: number, table: string, entry: number): ElfSymbol => {
    syms ??= symbols();
    const s = syms[i];
    if (!s)
      throw malformed(
        `${table}[${entry}]`,
        `refers to symbol ${i}, but there are ${syms.length} dynamic symbols`,
      );
    return s;
  };

  const readRela = (
    range: { addr: bigint; size: bigint } | undefined,
    table: 'rela' | 'jmprel',
    name: string,
  ) => {
    if (!range || range.size === 0n) return;
    if (range.size % BigInt(RELA_SIZE) !== 0n)
      throw malformed(name, `size ${range.size} is not a multiple of ${RELA_SIZE}`, range.addr);
    const n = toNum(range.size / BigInt(RELA_SIZE), `${name} entry count`);
    if (n > room()) throw malformed(name, `${n} relocations is more than the object can hold`, range.addr);
    const v = img.read(range.addr, n * RELA_SIZE, name);
    const w = words(v.buf);
    if (w) {
      const { u64, i64, u32 } = w;
      for (let i = 0; i < n; i++) {
        const symIndex = u32[i * 6 + 3]!;
        const r: Relocation = {
          offset: u64[i * 3]!,
          type: u32[i * 6 + 2]!,
          symIndex,
          addend: i64[i * 3 + 2]!,
          table,
        };
        if (symIndex !== 0) r.symbol = symbol(symIndex, name, i);
        out.push(r);
      }
      return;
    }
    const b = v.buf;
    for (let i = 0; i < n; i++) {
      const o = i * RELA_SIZE;
      const symIndex = b.readUInt32LE(o + 12);
      const r: Relocation = {
        offset: b.readBigUInt64LE(o),
        type: b.readUInt32LE(o + 8),
        symIndex,
        addend: b.readBigInt64LE(o + 16),
        table,
      };
      if (symIndex !== 0) r.symbol = symbol(symIndex, name, i);
      out.push(r);
    }
  };
  readRela(rela, 'rela', 'DT_RELA');
  readRela(jmprel, 'jmprel', 'DT_JMPREL');

  const relr = dyn.relr;
  if (relr && relr.size > 0n) {
    if (relr.size % 8n !== 0n)
      throw malformed('DT_RELR', `size ${relr.size} is not a multiple of 8`, relr.addr);
    const n = toNum(relr.size / 8n, 'DT_RELR entry count');
    const b = img.read(relr.addr, n * 8, 'DT_RELR').buf;
    let where: bigint | undefined;
    const push = (offset: bigint) => {
      if (out.length >= maxSites)
        throw malformed(
          'DT_RELR',
          `decodes to more relocations than the object can hold (${maxSites})`,
          relr.addr,
        );
      out.push({ offset, type: RelocType.RELATIVE, symIndex: 0, addend: 0n, table: 'relr' });
    };
    for (let i = 0; i < n; i++) {
      const lo = b.readUInt32LE(i * 8);
      const hi = b.readUInt32LE(i * 8 + 4);
      if ((lo & 1) === 0) {
        // An address entry: relocate it, then bitmaps continue from the next word.
        where = b.readBigUInt64LE(i * 8);
        push(where);
        where += 8n;
      } else {
        if (where === undefined)
          throw malformed(
            'DT_RELR',
            'a bitmap entry comes before any address entry',
            relr.addr + BigInt(i * 8),
          );
        // Bits 1..63 each stand for one of the next 63 words.
        for (let bit = 1; bit < 64; bit++) {
          const set = bit < 32 ? (lo >>> bit) & 1 : (hi >>> (bit - 32)) & 1;
          if (set) push(where + BigInt((bit - 1) * 8));
        }
        where += 63n * 8n;
      }
    }
  }
  return out;
}
