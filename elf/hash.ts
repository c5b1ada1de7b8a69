/**
 * DT_GNU_HASH and DT_HASH: the number of dynamic symbols (a loaded object has
 * no section headers to tell it) and symbol lookup exactly as ld.so's
 * do_lookup_x / check_match perform it.
 */
import type { ElfSymbol } from './types.js';
import type { View } from './bytes.js';
import {
  SHN_ABS,
  SHN_UNDEF,
  STT_COMMON,
  STT_FUNC,
  STT_GNU_IFUNC,
  STT_NOTYPE,
  STT_OBJECT,
  STT_TLS,
  VERSYM_HIDDEN,
  VERSYM_VERSION,
} from './constants.js';
import { malformed } from './errors.js';
import type { Image } from './image.js';

export function gnuHashOf(name: string): number {
  let h = 5381;
  for (let i = 0; i < name.length; i++) h = ((h << 5) + h + (name.charCodeAt(i) & 0xff)) >>> 0;
  return h;
}

export function sysvHashOf(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) {
    h = ((h << 4) + (name.charCodeAt(i) & 0xff)) >>> 0;
    const g = h & 0xf0000000;
    if (g !== 0) h ^= g >>> 24;
    h = (h & ~g) >>> 0;
  }
  return h;
}

export interface GnuHash {
  kind: 'gnu';
  nbuckets: number;
  symoffset: number;
  bloomWords: number;
  shift: number;
  bloom: View;
  buckets: View;
  /** chain[i - symoffset] for i in [symoffset, count). */
  chain: View;
  /** Number of dynamic symbols the table implies. */
  count: number;
}

export interface SysvHash {
  kind: 'sysv';
  nbucket: number;
  nchain: number;
  buckets: View;
  chains: View;
  count: number;
}

export type HashTable = GnuHash | SysvHash;

/** The largest symbol count any table may imply: no more symbols than bytes can hold them. */
function maxSymbols(img: Image): number {
  return Math.floor(img.maxRead / 24);
}

export function parseGnuHash(img: Image, addr: bigint): GnuHash {
  const head = img.read(addr, 16, 'DT_GNU_HASH header');
  const nbuckets = head.u32(0);
  const symoffset = head.u32(4);
  const bloomWords = head.u32(8);
  const shift = head.u32(12);
  // ld.so masks with bloomWords - 1 and divides by nbuckets: anything else is undefined behaviour there.
  if (nbuckets === 0) throw malformed('DT_GNU_HASH nbuckets', 'is 0', addr);
  if (bloomWords === 0 || (bloomWords & (bloomWords - 1)) !== 0)
    throw malformed('DT_GNU_HASH bloom size', `${bloomWords} is not a power of two`, addr + 8n);
  const fixed = 16 + bloomWords * 8 + nbuckets * 4;
  const extent = img.extent(addr);
  if (BigInt(fixed) > extent)
    throw malformed(
      'DT_GNU_HASH',
      `bloom filter and buckets (${fixed} bytes) run past the end of their segment`,
      addr,
    );
  const bloom = img.read(addr + 16n, bloomWords * 8, 'DT_GNU_HASH bloom filter');
  const buckets = img.read(addr + 16n + BigInt(bloomWords * 8), nbuckets * 4, 'DT_GNU_HASH buckets');
  const chainAddr = addr + BigInt(fixed);

  let maxBucket = 0;
  for (let i = 0; i < nbuckets; i++) maxBucket = Math.max(maxBucket, buckets.buf.readUInt32LE(i * 4));
  let count = symoffset;
  if (maxBucket !== 0) {
    if (maxBucket < symoffset)
      throw malformed(
        'DT_GNU_HASH buckets',
        `bucket points at symbol ${maxBucket}, below symoffset ${symoffset}`,
        addr + 16n + BigInt(bloomWords * 8),
      );
    // The last chain ends at the last symbol: walk it to its stop bit, reading in growing chunks.
    // Bounded by the segment and by how many symbols the object can hold: a .bss-sized memsz must not make us walk zeros for ever.
    const segRoom = (extent - BigInt(fixed)) / 4n;
    const room = Math.min(
      Number(segRoom > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : segRoom),
      maxSymbols(img),
    );
    let i = maxBucket - symoffset;
    let chunk = 256;
    let done = false;
    while (!done) {
      if (i >= room)
        throw malformed(
          'DT_GNU_HASH chain',
          `the last chain has no end before its segment ends (${room} entries)`,
          chainAddr,
        );
      const n = Math.min(chunk, room - i);
      const part = img.read(chainAddr + BigInt(i) * 4n, n * 4, 'DT_GNU_HASH chains');
      for (let k = 0; k < n; k++, i++) {
        if ((part.buf.readUInt32LE(k * 4) & 1) !== 0) {
          done = true;
          i++;
          break;
        }
      }
      chunk *= 2;
    }
    count = symoffset + i;
  }
  if (count > maxSymbols(img))
    throw malformed('DT_GNU_HASH', `implies ${count} symbols, more than the object can hold`, addr);
  const chain = img.read(chainAddr, (count - symoffset) * 4, 'DT_GNU_HASH chains');
  return { kind: 'gnu', nbuckets, symoffset, bloomWords, shift, bloom, buckets, chain, count };
}

export function parseSysvHash(img: Image, addr: bigint): SysvHash {
  const head = img.read(addr, 8, 'DT_HASH header');
  const nbucket = head.u32(0);
  const nchain = head.u32(4);
  if (nbucket === 0 && nchain !== 0) throw malformed('DT_HASH nbucket', 'is 0', addr);
  if (nchain > maxSymbols(img))
    throw malformed('DT_HASH nchain', `${nchain} symbols is more than the object can hold`, addr + 4n);
  const buckets = img.read(addr + 8n, nbucket * 4, 'DT_HASH buckets');
  const chains = img.read(addr + 8n + BigInt(nbucket) * 4n, nchain * 4, 'DT_HASH chains');
  return { kind: 'sysv', nbucket, nchain, buckets, chains, count: nchain };
}

/** Symbol types ld.so will bind to (ALLOWED_STT). */
const ALLOWED_STT =
  (1 << STT_NOTYPE) |
  (1 << STT_OBJECT) |
  (1 << STT_FUNC) |
  (1 << STT_COMMON) |
  (1 << STT_TLS) |
  (1 << STT_GNU_IFUNC);

export interface LookupRequest {
  name: string;
  /** Version name the reference asks for; undefined for an unversioned lookup. */
  version?: string;
  /** The reference is to a hidden version (ld.so's r_found_version.hidden): only that exact version matches. */
  hidden?: boolean;
}

/**
 * ld.so's check_match for one candidate. Returns 'match', 'skip', or
 * 'versioned' (an unversioned lookup met a non-hidden versioned definition:
 * acceptable only when it is the only one, as dlsym does).
 */
function check(sym: ElfSymbol, req: LookupRequest, hasVersions: boolean): 'match' | 'skip' | 'versioned' {
  if ((sym.value === 0n && sym.type !== STT_TLS && sym.shndx !== SHN_ABS) || sym.shndx === SHN_UNDEF)
    return 'skip';
  if (((1 << sym.type) & ALLOWED_STT) === 0) return 'skip';
  if (sym.name !== req.name) return 'skip';
  if (!hasVersions) return 'match';
  const raw = sym.versym ?? 0;
  const ndx = raw & VERSYM_VERSION;
  if (req.version !== undefined) {
    // A definition without a version name (index 0/1) satisfies a non-hidden versioned reference.
    if (
      sym.version !== req.version &&
      (req.hidden || sym.version !== undefined || (raw & VERSYM_HIDDEN) !== 0)
    )
      return 'skip';
    return 'match';
  }
  if (ndx >= 2) return (raw & VERSYM_HIDDEN) === 0 ? 'versioned' : 'skip';
  return 'match';
}

/** Candidate symbol indices for `name`, in ld.so's order (none when the bloom filter or bucket rules it out). */
function* candidates(h: HashTable, name: string): Generator<number> {
  if (h.kind === 'gnu') {
    const hv = gnuHashOf(name);
    const w = Math.floor(hv / 64) & (h.bloomWords - 1);
    const lo = h.bloom.buf.readUInt32LE(w * 8);
    const hi = h.bloom.buf.readUInt32LE(w * 8 + 4);
    const bit = (b: number) => ((b < 32 ? lo >>> b : hi >>> (b - 32)) & 1) === 1;
    // ld.so shifts a 64-bit value, so a shift of 32 or more leaves 0 rather than wrapping.
    const b2 = (h.shift >= 32 ? 0 : hv >>> h.shift) % 64;
    if (!bit(hv % 64) || !bit(b2)) return;
    let i = h.buckets.buf.readUInt32LE((hv % h.nbuckets) * 4);
    if (i === 0) return;
    for (; i < h.count; i++) {
      if (i < h.symoffset) return;
      const c = h.chain.buf.readUInt32LE((i - h.symoffset) * 4);
      if ((c ^ hv) >>> 1 === 0) yield i;
      if ((c & 1) !== 0) return;
    }
    return;
  }
  if (h.nbucket === 0) return;
  const hv = sysvHashOf(name);
  let i = h.buckets.buf.readUInt32LE((hv % h.nbucket) * 4);
  // A chain cannot be longer than the table without visiting a symbol twice: bound it so a loop cannot hang us.
  for (let steps = 0; i !== 0 && steps <= h.nchain; steps++) {
    if (i >= h.nchain) return;
    yield i;
    i = h.chains.buf.readUInt32LE(i * 4);
  }
}

export function hashLookup(
  h: HashTable,
  symbols: ElfSymbol[],
  hasVersions: boolean,
  req: LookupRequest,
): ElfSymbol | undefined {
  let versioned: ElfSymbol | undefined;
  let nversioned = 0;
  for (const i of candidates(h, req.name)) {
    const sym = symbols[i];
    if (!sym)
      throw malformed(
        'hash table',
        `chain reaches symbol ${i}, beyond the ${symbols.length} dynamic symbols`,
      );
    const r = check(sym, req, hasVersions);
    if (r === 'match') return sym;
    if (r === 'versioned' && nversioned++ === 0) versioned = sym;
  }
  return nversioned === 1 ? versioned : undefined;
}
