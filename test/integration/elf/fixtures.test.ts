/**
 * The reader against readelf on gcc-built fixtures that each exercise one
 * feature (RELRO modes, TLS, versions, -Bsymbolic, IFUNC, stripping, RELR,
 * copy relocations, executables), plus the facts readelf does not print the
 * way the reader exposes them.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import {
  parseElf,
  RelocType,
  relocTypeName,
  STT_GNU_IFUNC,
  versionTables,
  writableRegion,
  type ElfObject,
} from '../../../elf/index.js';
import { isUlpError } from '../../../common/errors.js';
import { compareWithReadelf } from '../../../lab/elf/compare.js';
import { FIXTURE_NAMES, fixture, withoutSectionHeaders } from '../../../lab/elf/fixtures.js';
import { readelfSync } from '../../../lab/elf/readelf.js';

const load = (name: string): ElfObject => {
  const f = fixture(name);
  return parseElf(readFileSync(f.path), { expect: f.kind === 'library' ? 'shared-object' : 'any' });
};
const types = (o: ElfObject) => new Set(o.relocations.map((r) => r.type));

describe('elf: fixtures agree with readelf -W', function () {
  this.timeout(120_000);

  for (const name of FIXTURE_NAMES) {
    it(`${name}: headers, dynamic, symbols, versions and relocations`, () => {
      const f = fixture(name);
      const obj = load(name);
      const bad = compareWithReadelf(obj, readelfSync(f.path), {
        symbolDetails: true,
        relocDetails: true,
        symtabEntries: true,
      });
      assert.deepEqual(bad, []);
    });
  }

  it('reads the same symbols and relocations from bytes that are not 8-byte aligned in their buffer', () => {
    for (const name of FIXTURE_NAMES) {
      const f = fixture(name);
      const bytes = readFileSync(f.path);
      const aligned = Buffer.from(new ArrayBuffer(bytes.length));
      const shifted = Buffer.alloc(bytes.length + 1).subarray(1);
      bytes.copy(aligned);
      bytes.copy(shifted);
      const expect = f.kind === 'library' ? 'shared-object' : 'any';
      const a = parseElf(aligned, { expect });
      const b = parseElf(shifted, { expect });
      assert.ok(a.relocations.length > 0 && a.dynamicSymbols.length > 0, name);
      assert.deepEqual(b.relocations, a.relocations, name);
      assert.deepEqual(b.dynamicSymbols, a.dynamicSymbols, name);
      assert.deepEqual(b.symtab, a.symtab, name);
    }
  });

  it('finds the same symbols and relocations without any section header', () => {
    for (const name of ['full-relro', 'versioned', 'tls', 'relr', 'sysv-hash']) {
      const f = fixture(name);
      const a = parseElf(readFileSync(f.path));
      const b = parseElf(readFileSync(withoutSectionHeaders(f.path)));
      assert.equal(b.sections.length, 0, name);
      assert.equal(b.symtab.length, 0, name);
      assert.deepEqual(b.dynamicSymbols, a.dynamicSymbols, name);
      assert.deepEqual(b.relocations, a.relocations, name);
      assert.equal(b.buildId, a.buildId, name);
      assert.ok(b.notes.length > 0, `${name}: notes come from PT_NOTE`);
    }
  });
});

describe('elf: fixture semantics', function () {
  this.timeout(120_000);

  it('full RELRO: bind-now, no PLT slot stays writable', () => {
    const o = load('full-relro');
    assert.equal(o.dynamic!.bindNow, true);
    assert.ok(o.relro);
    const w = writableRegion(o)!;
    assert.deepEqual(
      w.sections.map((s) => s.name),
      ['.data', '.bss'],
    );
    const got = o.section('.got')!;
    assert.ok(got.addr + got.size <= w.start, '.got is protected');
    assert.equal(w.start, o.relro!.vaddr + o.relro!.memsz, 'ld pads RELRO to a page end');
  });

  it('partial RELRO: lazy binding, .got.plt in the writable region', () => {
    const o = load('partial-relro');
    assert.equal(o.dynamic!.bindNow, false);
    const w = writableRegion(o)!;
    assert.deepEqual(
      w.sections.map((s) => s.name),
      ['.got.plt', '.data', '.bss'],
    );
    assert.ok(
      o.relocations.some(
        (r) =>
          r.table === 'jmprel' && r.type === RelocType.JUMP_SLOT && r.offset >= w.start && r.offset < w.end,
      ),
    );
  });

  it('no RELRO: no PT_GNU_RELRO, the whole RW segment stays writable', () => {
    const o = load('no-relro');
    assert.equal(o.relro, undefined);
    const rw = o.loadSegments.find((p) => p.flags & 2)!;
    const w = writableRegion(o)!;
    assert.equal(w.start, rw.vaddr & ~0xfffn);
    assert.ok(w.sections.some((s) => s.name === '.got'));
  });

  it('-Bsymbolic: DT_SYMBOLIC / DF_SYMBOLIC', () => {
    assert.equal(load('symbolic').dynamic!.symbolic, true);
    assert.equal(load('full-relro').dynamic!.symbolic, false);
  });

  it('RELR: DT_RELR decodes into RELATIVE sites, the same ones RELA lists in a RELA build', () => {
    const relr = load('relr');
    const plain = load('full-relro');
    const sites = relr.relocations.filter((r) => r.table === 'relr');
    assert.ok(sites.length > 0);
    assert.ok(sites.every((r) => r.type === RelocType.RELATIVE && r.symIndex === 0));
    assert.equal(
      relr.relocations.filter((r) => r.table === 'rela' && r.type === RelocType.RELATIVE).length,
      0,
    );
    // Same source and flags but the packing: the number of RELATIVE sites is the same.
    assert.equal(sites.length, plain.relocations.filter((r) => r.type === RelocType.RELATIVE).length);
  });

  it('TLS: PT_TLS template and the general-dynamic and initial-exec relocations', () => {
    const o = load('tls');
    assert.ok(o.tls && o.tls.memsz >= 128n + 4n + 8n);
    const t = types(o);
    assert.ok(t.has(RelocType.DTPMOD64), 'general dynamic');
    assert.ok(t.has(RelocType.TPOFF64), 'initial exec');
    assert.equal(o.dynamic!.staticTls, true);
    const d = load('tls-desc');
    assert.ok(types(d).has(RelocType.TLSDESC), 'TLS descriptors with -mtls-dialect=gnu2');
  });

  it('versions: default and hidden definitions of one name, version requirements', () => {
    const o = load('versioned');
    const vf = o.dynamicSymbols.filter((s) => s.name === 'ver_func');
    assert.deepEqual(vf.map((s) => [s.version, s.versionHidden]).sort(), [
      ['VERS_1', true],
      ['VERS_2', false],
    ]);
    assert.equal(o.lookup('ver_func')!.version, 'VERS_2');
    assert.equal(o.lookup('ver_func', 'VERS_1')!.versionHidden, true);
    assert.equal(o.lookup('ver_old', 'VERS_1')!.name, 'ver_old');
    assert.equal(o.lookup('ver_old'), o.lookup('ver_old', 'VERS_1'));
    assert.equal(o.lookup('ver_func', 'VERS_3'), undefined);
    const tables = versionTables(o)!;
    assert.deepEqual(
      [...tables.defs.values()].map((d) => [d.index, d.name, d.base, d.parents]),
      [
        [1, 'libver.so.1', true, []],
        [2, 'VERS_1', false, []],
        [3, 'VERS_2', false, ['VERS_1']],
      ],
    );
    const basic = load('full-relro');
    const malloc = basic.dynamicSymbols.find((s) => s.name === 'malloc')!;
    assert.equal(malloc.defined, false);
    assert.equal(malloc.versionFile, 'libc.so.6');
    assert.match(malloc.version!, /^GLIBC_/);
    const need = versionTables(basic)!.needs.get(malloc.versym! & 0x7fff)!;
    assert.deepEqual([need.name, need.file], [malloc.version, 'libc.so.6']);
  });

  it('IFUNC: an STT_GNU_IFUNC export and IRELATIVE relocations', () => {
    const o = load('ifunc');
    assert.equal(o.lookup('ifunc_pick')!.type, STT_GNU_IFUNC);
    assert.ok(o.relocations.some((r) => r.type === RelocType.IRELATIVE && r.symIndex === 0));
  });

  it('stripped: no .symtab, dynamic symbols intact', () => {
    for (const name of ['strip-all', 'strip-unneeded']) {
      const o = load(name);
      assert.equal(o.symtab.length, 0, name);
      assert.ok(o.lookup('basic_add'), name);
    }
    assert.ok(load('full-relro').symtab.length > 0);
  });

  it('executables: copy relocations, refused where a shared object is expected', () => {
    for (const name of ['exe-nopie', 'exe-pie']) {
      const f = fixture(name);
      const buf = readFileSync(f.path);
      assert.throws(
        () => parseElf(buf),
        (e: unknown) =>
          isUlpError(e) && e.code === 'ELF_NOT_SHARED_OBJECT' && /executable/.test(e.message) && !!e.hint,
      );
    }
    const exe = load('exe-nopie');
    const copies = exe.relocations
      .filter((r) => r.type === RelocType.COPY)
      .map((r) => r.symbol!.name)
      .sort();
    assert.deepEqual(copies, ['basic_buffer', 'basic_counter', 'stdin', 'stdout']);
    const stdout = exe.dynamicSymbols.find((s) => s.name === 'stdout')!;
    assert.equal(stdout.defined, true, 'a copy-relocated symbol is defined in the executable');
    assert.equal(stdout.versionFile, 'libc.so.6', 'and keeps the version it was copied from');
    assert.equal(load('exe-pie').dynamic!.pie, true);
  });

  it('tells runnable libraries from position-independent executables', () => {
    const lib = load('runnable-lib');
    assert.ok(lib.programHeaders.some((p) => p.type === 3) && lib.soname === undefined && !lib.dynamic!.pie);
    const old = readFileSync(fixture('runnable-old').path);
    assert.ok(
      !parseElf(old, { expect: 'any' }).dynamic!.entries.some((e) => e.tag === 0x6ffffffbn),
      'no DT_FLAGS_1',
    );
    assert.throws(
      () => parseElf(old),
      (e: unknown) => isUlpError(e) && e.code === 'ELF_NOT_SHARED_OBJECT' && /PT_INTERP/.test(e.message),
    );
  });

  it('libc.so.6 and ld.so have PT_INTERP and a SONAME: they are shared objects', () => {
    for (const p of [
      '/usr/lib/x86_64-linux-gnu/libc.so.6',
      '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
    ]) {
      const o = parseElf(readFileSync(p));
      assert.ok(o.soname, p);
    }
  });

  it('names relocation types the way readelf does', () => {
    assert.equal(relocTypeName(RelocType.JUMP_SLOT), 'R_X86_64_JUMP_SLOT');
    assert.equal(relocTypeName(RelocType.R64), 'R_X86_64_64');
    assert.equal(relocTypeName(999), 'R_X86_64_unknown_999');
  });
});
