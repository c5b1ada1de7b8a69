/**
 * Bad input: crafted headers of the wrong kind of file, and a generated
 * corpus of damaged real objects (truncated at many lengths, bytes flipped
 * at random and at every field the reader follows). Each case must either
 * parse — with every accessor evaluated — or fail with a UlpError of a known
 * ELF_ code: never another exception type, never a hang, never a huge
 * allocation. Seeds are fixed so a failure names a reproducible case.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { isUlpError, UlpError } from '../../../common/errors.js';
import {
  imageSpan,
  lookupSymbol,
  parseElf,
  parseElfFromMemory,
  symbolContaining,
  writableRegion,
  writableRegions,
  DT_GNU_HASH,
  DT_HASH,
  DT_RELR,
  DT_VERDEF,
  DT_VERNEED,
  DT_VERSYM,
  PT_DYNAMIC,
  PT_NOTE,
  type ElfObject,
} from '../../../elf/index.js';
import { fixture } from '../../../lab/elf/fixtures.js';
import { simulateLoad } from '../../../lab/elf/memory.js';
import { seededRandom } from '../../../lab/random.js';

const CODES = new Set([
  'ELF_NOT_ELF',
  'ELF_UNSUPPORTED_CLASS',
  'ELF_UNSUPPORTED_ENDIAN',
  'ELF_UNSUPPORTED_MACHINE',
  'ELF_NOT_SHARED_OBJECT',
  'ELF_TRUNCATED',
  'ELF_MALFORMED',
  'ELF_MEMORY_READ',
  'ELF_UNSUPPORTED_LAYOUT',
]);

interface Outcome {
  ok: number;
  codes: Record<string, number>;
}

/** Evaluates everything a caller could ask, each accessor on its own: one failing table must not hide another's bug. */
function exercise(
  obj: ElfObject,
  names: Array<{ name: string; version?: string }>,
  out: Outcome,
  label: string,
): void {
  const steps: Array<[string, () => unknown]> = [
    ['header', () => obj.header],
    ['programHeaders', () => obj.programHeaders],
    ['sections', () => obj.sections],
    ['dynamic', () => obj.dynamic],
    ['dynamicSymbols', () => obj.dynamicSymbols],
    ['symtab', () => obj.symtab],
    ['relocations', () => obj.relocations],
    ['notes', () => obj.notes],
    ['buildId', () => obj.buildId],
    ['soname', () => obj.soname],
    ['tls', () => obj.tls],
    ['relro', () => obj.relro],
    ['loadSegments', () => obj.loadSegments],
    ['section', () => obj.section('.text')],
    ['imageSpan', () => imageSpan(obj)],
    ['writableRegion', () => writableRegion(obj)],
    ['writableRegions', () => writableRegions(obj)],
    ['readAt', () => obj.loadSegments.map((p) => obj.readAt(p.vaddr, Math.min(64, Number(p.memsz))))],
    [
      'lookup',
      () =>
        names.map((n) => [
          obj.lookup(n.name),
          obj.lookup(n.name, n.version),
          lookupSymbol(obj, { ...n, hidden: true }, 'sysv'),
        ]),
    ],
    [
      'symbolContaining',
      () => names.length && obj.loadSegments.map((p) => symbolContaining(obj, p.vaddr + 16n)),
    ],
  ];
  for (const [what, f] of steps) {
    try {
      f();
      out.ok++;
    } catch (e) {
      check(e, `${label}: ${what}`);
      out.codes[(e as UlpError).code] = (out.codes[(e as UlpError).code] ?? 0) + 1;
    }
  }
}

function check(e: unknown, label: string): asserts e is UlpError {
  if (!isUlpError(e))
    assert.fail(`${label}: threw ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)}`);
  if (!CODES.has(e.code))
    assert.fail(
      `${label}: unexpected code ${e.code}: ${e.message}\n${(e.cause as Error | undefined)?.stack ?? ''}`,
    );
  assert.ok(e.message.length > 10 && e.hint, `${label}: ${e.code} without a message and a hint`);
}

function attempt(
  buf: Buffer,
  names: Array<{ name: string; version?: string }>,
  out: Outcome,
  label: string,
): void {
  let obj: ElfObject;
  try {
    obj = parseElf(buf, { expect: 'any' });
  } catch (e) {
    check(e, `${label}: parseElf`);
    out.codes[e.code] = (out.codes[e.code] ?? 0) + 1;
    return;
  }
  exercise(obj, names, out, label);
}

interface Field {
  at: number;
  size: 2 | 4 | 8;
  what: string;
}

/** The offsets of every field the reader follows, found in the pristine file. */
function fieldsOf(buf: Buffer): Field[] {
  const obj = parseElf(buf, { expect: 'any' });
  const f: Field[] = [];
  const add = (at: number | bigint, size: 2 | 4 | 8, what: string) => {
    if (Number(at) + size <= buf.length) f.push({ at: Number(at), size, what });
  };
  for (const [at, size, what] of [
    [16, 2, 'e_type'],
    [24, 8, 'e_entry'],
    [32, 8, 'e_phoff'],
    [40, 8, 'e_shoff'],
    [54, 2, 'e_phentsize'],
    [56, 2, 'e_phnum'],
    [58, 2, 'e_shentsize'],
    [60, 2, 'e_shnum'],
    [62, 2, 'e_shstrndx'],
  ] as const)
    add(at, size, what);
  const phoff = Number(obj.header.phoff);
  obj.programHeaders.forEach((_p, i) => {
    const o = phoff + i * 56;
    add(o, 4, `phdr ${i} type`);
    for (const [k, n] of [
      [8, 'offset'],
      [16, 'vaddr'],
      [32, 'filesz'],
      [40, 'memsz'],
      [48, 'align'],
    ] as const)
      add(o + k, 8, `phdr ${i} ${n}`);
  });
  const fileOff = (vaddr: bigint) => {
    const p = obj.loadSegments.find((x) => vaddr >= x.vaddr && vaddr < x.vaddr + x.filesz);
    return p ? Number(p.offset + (vaddr - p.vaddr)) : -1;
  };
  const dyn = obj.programHeaders.find((p) => p.type === PT_DYNAMIC);
  if (dyn) {
    obj.dynamic!.entries.forEach((e, i) => {
      add(Number(dyn.offset) + i * 16, 8, `dynamic ${i} tag 0x${e.tag.toString(16)}`);
      add(Number(dyn.offset) + i * 16 + 8, 8, `dynamic ${i} value of 0x${e.tag.toString(16)}`);
    });
    const d = obj.dynamic!;
    const at = (tag: bigint) => d.entries.find((e) => e.tag === tag)?.value;
    const gnu = at(DT_GNU_HASH);
    if (gnu !== undefined) {
      const o = fileOff(gnu);
      for (let k = 0; k < 4; k++) add(o + 4 * k, 4, `gnu hash header ${k}`);
      const nb = buf.readUInt32LE(o);
      const bloom = buf.readUInt32LE(o + 8);
      for (let k = 0; k < Math.min(nb, 8); k++) add(o + 16 + bloom * 8 + 4 * k, 4, `gnu hash bucket ${k}`);
      for (let k = 0; k < 8; k++) add(o + 16 + bloom * 8 + nb * 4 + 4 * k, 4, `gnu hash chain ${k}`);
    }
    const sysv = at(DT_HASH);
    if (sysv !== undefined) {
      const o = fileOff(sysv);
      add(o, 4, 'sysv nbucket');
      add(o + 4, 4, 'sysv nchain');
      for (let k = 0; k < 8; k++) add(o + 8 + 4 * k, 4, `sysv word ${k}`);
    }
    for (const [tag, n] of [
      [DT_VERDEF, 'verdef'],
      [DT_VERNEED, 'verneed'],
    ] as const) {
      const v = at(tag);
      if (v === undefined) continue;
      const o = fileOff(v);
      for (let k = 0; k < 20; k += 2) add(o + k, k >= 4 && k % 4 === 0 ? 4 : 2, `${n} +${k}`);
      for (let k = 0; k < 8; k++) add(o + 20 + 4 * k, 4, `${n} aux word ${k}`);
    }
    const versym = at(DT_VERSYM);
    if (versym !== undefined) for (let k = 1; k < 6; k++) add(fileOff(versym) + 2 * k, 2, `versym ${k}`);
    const relr = at(DT_RELR);
    if (relr !== undefined) for (let k = 0; k < 4; k++) add(fileOff(relr) + 8 * k, 8, `relr ${k}`);
    if (d.symtab !== undefined)
      for (let k = 1; k < 6; k++) add(fileOff(d.symtab) + 24 * k, 4, `dynsym ${k} st_name`);
    if (d.rela) for (let k = 0; k < 3; k++) add(fileOff(d.rela.addr) + 24 * k + 8, 8, `rela ${k} info`);
    if (d.jmprel) for (let k = 0; k < 3; k++) add(fileOff(d.jmprel.addr) + 24 * k + 8, 8, `jmprel ${k} info`);
  }
  const note = obj.programHeaders.find((p) => p.type === PT_NOTE);
  if (note) for (let k = 0; k < 3; k++) add(Number(note.offset) + 4 * k, 4, `note word ${k}`);
  const shoff = Number(obj.header.shoff);
  obj.sections.slice(0, 16).forEach((_s, i) => {
    const o = shoff + i * 64;
    add(o, 4, `section ${i} name`);
    add(o + 24, 8, `section ${i} offset`);
    add(o + 32, 8, `section ${i} size`);
    add(o + 40, 4, `section ${i} link`);
  });
  return f;
}

function write(buf: Buffer, f: Field, v: bigint): void {
  const u = BigInt.asUintN(f.size * 8, v);
  if (f.size === 2) buf.writeUInt16LE(Number(u), f.at);
  else if (f.size === 4) buf.writeUInt32LE(Number(u), f.at);
  else buf.writeBigUInt64LE(u, f.at);
}

function read(buf: Buffer, f: Field): bigint {
  return f.size === 2
    ? BigInt(buf.readUInt16LE(f.at))
    : f.size === 4
      ? BigInt(buf.readUInt32LE(f.at))
      : buf.readBigUInt64LE(f.at);
}

/** ULP_ELF_FUZZ_SCALE=n multiplies the random cases (deeper local runs); the default keeps CI at a few seconds. */
const SCALE = Math.max(1, Number(process.env.ULP_ELF_FUZZ_SCALE ?? 1) || 1);

const SOURCES = () => [
  fixture('versioned').path,
  fixture('relr').path,
  fixture('tls-desc').path,
  fixture('exe-nopie').path,
  fixture('sysv-hash').path,
  '/usr/lib/x86_64-linux-gnu/libz.so.1',
];

describe('elf: bad input', function () {
  this.timeout(120_000);

  const codeOf = (f: () => unknown): UlpError => {
    try {
      f();
    } catch (e) {
      check(e, 'crafted');
      return e;
    }
    assert.fail('no error');
  };
  const base = () => Buffer.from(readFileSync(fixture('full-relro').path));

  it('refuses a file that is not ELF', () => {
    for (const b of [
      Buffer.alloc(0),
      Buffer.from('#!/bin/sh\necho hi\n'),
      Buffer.from('/* GNU ld script */ GROUP ( libc.so.6 )'),
      Buffer.from([0x1f, 0x8b, 8, 0]),
    ]) {
      const e = codeOf(() => parseElf(b));
      assert.equal(e.code, 'ELF_NOT_ELF');
      assert.match(e.message, /7f454c46/);
    }
  });

  it('refuses 32-bit, big-endian and non-x86-64 objects, naming the field', () => {
    const c32 = base();
    c32[4] = 1;
    assert.match(codeOf(() => parseElf(c32)).message, /32-bit.*EI_CLASS|EI_CLASS.*32-bit/);
    assert.equal(codeOf(() => parseElf(c32)).code, 'ELF_UNSUPPORTED_CLASS');
    const be = base();
    be[5] = 2;
    assert.equal(codeOf(() => parseElf(be)).code, 'ELF_UNSUPPORTED_ENDIAN');
    assert.match(codeOf(() => parseElf(be)).message, /big-endian/);
    const arm = base();
    arm.writeUInt16LE(183, 18);
    const e = codeOf(() => parseElf(arm));
    assert.equal(e.code, 'ELF_UNSUPPORTED_MACHINE');
    assert.match(e.message, /e_machine/);
  });

  it('refuses an executable where a shared object is expected', () => {
    for (const name of ['exe-nopie', 'exe-pie']) {
      const e = codeOf(() => parseElf(readFileSync(fixture(name).path)));
      assert.equal(e.code, 'ELF_NOT_SHARED_OBJECT');
    }
    const rel = base();
    rel.writeUInt16LE(1, 16);
    assert.match(codeOf(() => parseElf(rel)).message, /ET_REL/);
  });

  it('names the offset of a truncation', () => {
    const b = base();
    const e = codeOf(() => parseElf(b.subarray(0, 100)));
    assert.equal(e.code, 'ELF_TRUNCATED');
    assert.match(e.message, /program header table at 0x40/);
    // The section headers are at the end: the object still parses, the sections do not.
    const cut = parseElf(b.subarray(0, b.length - 100));
    const e2 = codeOf(() => cut.sections);
    assert.equal(e2.code, 'ELF_TRUNCATED');
    assert.match(e2.message, /section header table/);
    assert.ok(cut.dynamicSymbols.length > 0);
  });

  it('survives a corpus of damaged real objects (truncated, flipped, targeted fields)', () => {
    const out: Outcome = { ok: 0, codes: {} };
    let cases = 0;
    let peak = 0;
    const start = process.memoryUsage();
    for (const [si, path] of SOURCES().entries()) {
      const orig = readFileSync(path);
      const pristine = parseElf(orig, { expect: 'any' });
      const names = pristine.dynamicSymbols
        .filter((s) => s.defined)
        .slice(0, 6)
        .map((s) => ({ name: s.name, version: s.version }));
      const run = (buf: Buffer, label: string) => {
        cases++;
        attempt(buf, names, out, `${path} ${label}`);
        const m = process.memoryUsage();
        peak = Math.max(peak, m.arrayBuffers - start.arrayBuffers, m.heapUsed - start.heapUsed);
      };
      const r = seededRandom(0x5eed + si);

      // Truncations: around every structure start, and at random lengths.
      const cuts = new Set<number>([
        0,
        1,
        3,
        4,
        5,
        15,
        16,
        17,
        52,
        63,
        64,
        65,
        orig.length - 1,
        orig.length - 8,
      ]);
      for (const p of pristine.programHeaders)
        for (const x of [p.offset, p.offset + p.filesz])
          for (const d of [-1, 0, 1, 8]) cuts.add(Number(x) + d);
      for (let k = 0; k < 8; k++) cuts.add(Number(pristine.header.phoff) + 56 * k);
      for (let k = 0; k < 20 * SCALE; k++) cuts.add(Math.floor(r() * orig.length));
      for (const n of cuts) if (n >= 0 && n < orig.length) run(orig.subarray(0, n), `truncated to ${n}`);

      // Random damage: single bytes, and random words.
      for (let k = 0; k < 50 * SCALE; k++) {
        const b = Buffer.from(orig);
        const at = Math.floor(r() * b.length);
        b[at] ^= 1 + Math.floor(r() * 255);
        run(b, `byte ${at} flipped`);
      }
      for (let k = 0; k < 25 * SCALE; k++) {
        const b = Buffer.from(orig);
        const at = Math.floor(r() * (b.length - 8));
        b.writeUInt32LE(Math.floor(r() * 2 ** 32), at);
        run(b, `word at ${at} randomised`);
      }

      // Every field the reader follows, set to the values that break naive readers.
      for (const f of fieldsOf(orig)) {
        const v = read(orig, f);
        const values = [
          0n,
          1n,
          -1n,
          1n << BigInt(f.size * 8 - 1),
          v + 1n,
          v - 1n,
          v + 8n,
          v * 2n,
          BigInt(orig.length),
          0x10000000n,
        ];
        // A few of them per field (all with a larger scale), picked by the seeded generator.
        const picked = SCALE >= 4 ? values : values.filter(() => r() < 0.2 * SCALE);
        for (const nv of picked) {
          const b = Buffer.from(orig);
          write(b, f, nv);
          run(b, `${f.what} (at ${f.at}) = 0x${BigInt.asUintN(f.size * 8, nv).toString(16)}`);
        }
      }
    }
    console.log(
      `      ${cases} damaged files: ${out.ok} accessor results, errors ${JSON.stringify(out.codes)}; peak growth ${(peak / 2 ** 20).toFixed(0)} MiB`,
    );
    assert.ok(cases > 1000, `${cases} cases`);
    assert.ok(peak < 512 * 2 ** 20, 'no case made the reader allocate out of proportion');
  });

  it('survives damaged memory images (random bytes and dynamic entries of a loaded object)', () => {
    const out: Outcome = { ok: 0, codes: {} };
    let cases = 0;
    for (const [si, path] of [fixture('versioned').path, fixture('relr').path].entries()) {
      const orig = readFileSync(path);
      const bias = 0x7f1234560000n;
      const pristine = parseElf(orig);
      const names = pristine.dynamicSymbols
        .filter((s) => s.defined)
        .map((s) => ({ name: s.name, version: s.version }));
      const dyn = pristine.programHeaders.find((p) => p.type === PT_DYNAMIC)!;
      const r = seededRandom(0xd00d + si);
      for (let k = 0; k < 150 * SCALE; k++) {
        const sim = simulateLoad(orig, bias);
        const region = sim.regions[Math.floor(r() * sim.regions.length)]!;
        // Half the cases hit the dynamic section, the rest anywhere.
        let at: number;
        const dr = sim.regions.find(
          (x) => bias + dyn.vaddr >= x.start && bias + dyn.vaddr < x.start + BigInt(x.bytes.length),
        )!;
        if (k % 2 === 0) {
          at = Number(bias + dyn.vaddr - dr.start) + Math.floor(r() * Number(dyn.memsz));
          dr.bytes[at] ^= 1 + Math.floor(r() * 255);
        } else {
          at = Math.floor(r() * (region.bytes.length - 4));
          region.bytes.writeUInt32LE(Math.floor(r() * 2 ** 32), at);
        }
        cases++;
        let obj: ElfObject;
        try {
          obj = parseElfFromMemory(sim.read, { bias, expect: 'any' });
        } catch (e) {
          check(e, `${path} memory case ${k}`);
          out.codes[e.code] = (out.codes[e.code] ?? 0) + 1;
          continue;
        }
        exercise(obj, names, out, `${path} memory case ${k}`);
      }
    }
    console.log(
      `      ${cases} damaged memory images: ${out.ok} accessor results, errors ${JSON.stringify(out.codes)}`,
    );
    assert.ok(cases >= 300);
  });
});
