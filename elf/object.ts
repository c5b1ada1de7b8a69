/**
 * The ElfObject implementation: headers are checked at construction, every
 * other part is parsed on first access and cached (errors too, so a bad table
 * costs one parse however often it is asked for).
 */
import type {
  DynamicInfo,
  ElfHeader,
  ElfNote,
  ElfObject,
  ElfOrigin,
  ElfSymbol,
  ProgramHeader,
  Relocation,
  SectionHeader,
  TlsInfo,
} from './types.js';
import { StringTable, toNum } from './bytes.js';
import * as C from './constants.js';
import { dynValue, parseDynamic, readEntries, type ParsedDynamic } from './dynamic.js';
import { ElfErrorCode, elfError, guard, malformed } from './errors.js';
import { hashLookup, parseGnuHash, parseSysvHash, type HashTable, type LookupRequest } from './hash.js';
import { FileImage, MEMORY_MAX_READ, type Image } from './image.js';
import { buildIdOf, parseNotes } from './notes.js';
import { parseRelocations } from './relocations.js';
import { parseSections } from './sections.js';
import { parseSymbols } from './symbols.js';
import { parseVersions, type Versions } from './versions.js';

export class ElfImage implements ElfObject {
  private readonly cache = new Map<string, { ok: true; v: unknown } | { ok: false; e: unknown }>();
  readonly loadSegments: ProgramHeader[];

  constructor(
    readonly origin: ElfOrigin,
    readonly header: ElfHeader,
    readonly programHeaders: ProgramHeader[],
    readonly image: Image,
    /** Bias the dynamic section was relocated by (memory images). */
    readonly bias: bigint | undefined,
  ) {
    this.loadSegments = programHeaders.filter((p) => p.type === C.PT_LOAD);
  }

  private memo<T>(key: string, fn: () => T): T {
    let c = this.cache.get(key);
    if (!c) {
      try {
        c = { ok: true, v: guard(key, fn) };
      } catch (e) {
        c = { ok: false, e };
      }
      this.cache.set(key, c);
    }
    if (!c.ok) throw c.e;
    return c.v as T;
  }

  private get fileImage(): FileImage | undefined {
    return this.image instanceof FileImage ? this.image : undefined;
  }

  private phdr(type: number): ProgramHeader | undefined {
    return this.programHeaders.find((p) => p.type === type);
  }

  get sections(): SectionHeader[] {
    return this.memo('section headers', () => {
      const f = this.fileImage;
      return f ? parseSections(f, this.header) : [];
    });
  }

  section(name: string): SectionHeader | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** The dynamic section with its string table. */
  get parsedDynamic(): ParsedDynamic | undefined {
    return this.memo('dynamic section', () => {
      const p = this.phdr(C.PT_DYNAMIC);
      if (!p) return undefined;
      const size = toNum(p.memsz, 'PT_DYNAMIC p_memsz', this.image.maxRead);
      const v = this.image.read(p.vaddr, size - (size % C.DYN_SIZE), 'dynamic section (PT_DYNAMIC)');
      const relocatedBy = this.bias !== undefined && (p.flags & C.PF_W) !== 0 ? this.bias : undefined;
      return parseDynamic(readEntries(v, relocatedBy), this.image);
    });
  }

  get dynamic(): DynamicInfo | undefined {
    return this.parsedDynamic?.info;
  }

  get soname(): string | undefined {
    return this.dynamic?.soname;
  }

  /** The hash table ld.so would use (GNU when present), or the one asked for. */
  hashTable(kind?: 'gnu' | 'sysv'): HashTable | undefined {
    const d = this.dynamic;
    if (!d) return undefined;
    const gnu = () =>
      d.gnuHash === undefined
        ? undefined
        : this.memo('DT_GNU_HASH', () => parseGnuHash(this.image, d.gnuHash!));
    const sysv = () =>
      d.sysvHash === undefined
        ? undefined
        : this.memo('DT_HASH', () => parseSysvHash(this.image, d.sysvHash!));
    if (kind === 'gnu') return gnu();
    if (kind === 'sysv') return sysv();
    return gnu() ?? sysv();
  }

  /** Number of dynamic symbols: from the hash table, as a loaded object offers no other source. */
  private dynsymCount(d: DynamicInfo): number {
    const h = this.hashTable();
    if (h) return h.count;
    const s = this.sections.find((x) => x.type === C.SHT_DYNSYM);
    if (s) return toNum(s.size / BigInt(C.SYM_SIZE), '.dynsym size');
    // Linkers put .dynstr right after .dynsym; the gap is the last resort without any hash table.
    if (d.strtab && d.symtab !== undefined && d.strtab.addr > d.symtab) {
      return toNum(
        (d.strtab.addr - d.symtab) / BigInt(C.SYM_SIZE),
        'DT_STRTAB - DT_SYMTAB',
        this.image.maxRead,
      );
    }
    throw malformed(
      'DT_SYMTAB',
      'no DT_GNU_HASH, DT_HASH or .dynsym section tells how many dynamic symbols there are',
    );
  }

  get versions(): Versions | undefined {
    return this.memo('symbol versions', () => {
      const pd = this.parsedDynamic;
      if (!pd || pd.info.versym === undefined) return undefined;
      return parseVersions(this.image, pd.info, pd.strings);
    });
  }

  get dynamicSymbols(): ElfSymbol[] {
    return this.memo('dynamic symbols', () => {
      const pd = this.parsedDynamic;
      if (!pd || pd.info.symtab === undefined) return [];
      const d = pd.info;
      const syment = dynValue(d, C.DT_SYMENT);
      if (syment !== undefined && syment !== BigInt(C.SYM_SIZE))
        throw malformed('DT_SYMENT', `is ${syment}, expected ${C.SYM_SIZE}`);
      if (!pd.strings) throw malformed('DT_SYMTAB', 'the dynamic section has no DT_STRTAB for symbol names');
      const count = this.dynsymCount(d);
      if (count * C.SYM_SIZE > this.image.maxRead)
        throw malformed('DT_SYMTAB', `${count} symbols is more than the object can hold`);
      const table = this.image.read(d.symtab!, count * C.SYM_SIZE, 'dynamic symbol table (DT_SYMTAB)');
      const versions = this.versions;
      const ver =
        versions && d.versym !== undefined
          ? { versym: this.image.read(d.versym, count * 2, 'DT_VERSYM'), versions }
          : undefined;
      return parseSymbols(table, count, pd.strings, '.dynsym', ver);
    });
  }

  get symtab(): ElfSymbol[] {
    return this.memo('.symtab', () => {
      const f = this.fileImage;
      if (!f) return [];
      const secs = this.sections;
      const s = secs.find((x) => x.type === C.SHT_SYMTAB);
      if (!s) return [];
      if (s.entsize !== BigInt(C.SYM_SIZE))
        throw malformed(`section ${s.name} sh_entsize`, `is ${s.entsize}, expected ${C.SYM_SIZE}`);
      const strs = secs[s.link];
      if (!strs || strs.type !== C.SHT_STRTAB)
        throw malformed(`section ${s.name} sh_link`, `section ${s.link} is not a string table`);
      const count = toNum(s.size / BigInt(C.SYM_SIZE), `${s.name} size`);
      const table = f.atOffset(s.offset, BigInt(count * C.SYM_SIZE), s.name);
      return parseSymbols(
        table,
        count,
        new StringTable(f.atOffset(strs.offset, strs.size, strs.name || 'symbol string table')),
        s.name || '.symtab',
      );
    });
  }

  get relocations(): Relocation[] {
    return this.memo('relocations', () => {
      const d = this.dynamic;
      if (!d) return [];
      return parseRelocations({
        img: this.image,
        dyn: d,
        symbols: () => this.dynamicSymbols,
        maxSites: this.maxRelocationSites(),
      });
    });
  }

  /** Each relocation writes its own 8-byte word, so there cannot be more sites than words in the image. */
  private maxRelocationSites(): number {
    const f = this.fileImage;
    if (f) return Math.floor(f.buf.length / 8);
    let total = 0n;
    for (const p of this.loadSegments) total += p.memsz;
    const cap = BigInt(MEMORY_MAX_READ);
    return Number((total < cap ? total : cap) / 8n);
  }

  get notes(): ElfNote[] {
    return this.memo('notes', () => {
      const out: ElfNote[] = [];
      const f = this.fileImage;
      const segs = this.programHeaders.filter((p) => p.type === C.PT_NOTE);
      segs.forEach((p, i) => {
        const what = `PT_NOTE (segment ${i})`;
        const v = f
          ? f.atOffset(p.offset, p.filesz, what)
          : this.image.read(p.vaddr, toNum(p.filesz, `${what} p_filesz`, this.image.maxRead), what);
        out.push(...parseNotes(v, p.align));
      });
      if (segs.length === 0 && f) {
        for (const s of this.sections)
          if (s.type === C.SHT_NOTE)
            out.push(...parseNotes(f.atOffset(s.offset, s.size, s.name), s.addralign));
      }
      return out;
    });
  }

  get buildId(): string | undefined {
    return this.memo('build-id', () => buildIdOf(this.notes));
  }

  get tls(): TlsInfo | undefined {
    const p = this.phdr(C.PT_TLS);
    return p && { vaddr: p.vaddr, filesz: p.filesz, memsz: p.memsz, align: p.align };
  }

  get relro(): ProgramHeader | undefined {
    return this.phdr(C.PT_GNU_RELRO);
  }

  readAt(vaddr: bigint, length: number): Buffer {
    return guard('readAt', () => {
      if (typeof vaddr !== 'bigint' || !Number.isSafeInteger(length) || length < 0) {
        throw elfError(
          ElfErrorCode.INVALID_ARGUMENT,
          `readAt(${String(vaddr)}, ${length}): expects a bigint vaddr and a non-negative integer length`,
          'Pass the address as a bigint.',
        );
      }
      return this.image.read(vaddr, length, `${length} bytes read at a vaddr`).buf;
    });
  }

  lookup(name: string, version?: string): ElfSymbol | undefined {
    return this.lookupSymbol(version === undefined ? { name } : { name, version });
  }

  /** ld.so's lookup with every option (hidden references, a chosen hash table). */
  lookupSymbol(req: LookupRequest, table?: 'gnu' | 'sysv'): ElfSymbol | undefined {
    return guard(`lookup of ${req.name}`, () => {
      const h = this.hashTable(table);
      if (!h) return undefined;
      const syms = this.dynamicSymbols;
      return hashLookup(h, syms, this.dynamic?.versym !== undefined, req);
    });
  }
}
