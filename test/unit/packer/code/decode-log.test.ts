/**
 * packer/code/decode-log.ts, and datarefs.ts's replay of it: a log keeps
 * each recorded instruction's fields exactly, answers only for the range it
 * recorded, and a data-reference map made from a log (whole, partial, or
 * for other ranges) is the map made by decoding. Functions as
 * hand-assembled bytes (objdump's reading in each comment) at fixed
 * addresses; the real builds' maps are compared in
 * test/system/packer/datarefs.test.ts.
 */
import assert from 'node:assert/strict';
import { DecodeLog, decodeLogOf, loggedInsns, startDecodeLog } from '../../../../packer/code/decode-log.js';
import { dataRefMap } from '../../../../packer/code/datarefs.js';
import { decode, newInsn } from '../../../../elf/x86/decode.js';
import { SHF_EXECINSTR } from '../../../../elf/index.js';
import type { Build, FunctionInfo } from '../../../../packer/model.js';

const TEXT = 0x1000;
const REGION = { start: 0x3000, end: 0x3100 };

/** [start, bytes]: .text from 0x1000, int3 between. */
const CODE: Array<[number, string]> = [
  // a: lea 0x1ff9(%rip),%rax (0x3000); jmp 0x100a (inside a); nop; call 0x1060 (code no symbol names); ret
  [0x1000, '488d05f91f0000' + 'eb01' + '90' + 'e851000000' + 'c3'],
  // b: mov 0x1ffa(%rip),%eax (0x3010); jne 0x1020 (inside b, past where decoding stops); (bad) 0x06; zeros
  [0x1010, '8b05fa1f0000' + '7508' + '06' + '00000000000000'],
  // b, after the byte that does not decode: mov 0x1ff9(%rip),%rcx (0x3020); ret
  [0x1020, '488b0df91f0000' + 'c3'],
  // c, reached by a's call only: mov 0x1fda(%rip),%eax (0x3040); lea 0x3(%rip),%rax (0x1070); jmp 0x1000 (a)
  [0x1060, '8b05da1f0000' + '488d0503000000' + 'eb91'],
  // a table c addresses, whose first 4 bytes read as a disp32 would point into the region
  [0x1070, '8c1f0000'],
];

const FNS: FunctionInfo[] = [
  { name: 'a', start: 0x1000, end: 0x1010, exported: false },
  { name: 'b', start: 0x1010, end: 0x1030, exported: false },
];

/** The parts of a Build that dataRefMap reads. */
function fakeBuild(): Build {
  const image = Buffer.alloc(0x80, 0xcc);
  for (const [start, hex] of CODE) Buffer.from(hex, 'hex').copy(image, start - TEXT);
  return {
    label: 'new',
    writable: { start: BigInt(REGION.start), end: BigInt(REGION.end) },
    obj: {
      sections: [{ name: '.text', addr: BigInt(TEXT), size: BigInt(image.length), flags: SHF_EXECINSTR }],
      loadSegments: [],
      dynamic: undefined,
      symtab: [],
      dynamicSymbols: [],
      relocations: [],
    },
    functions: () => FNS,
    bytesAt: (vaddr: number, length: number) => image.subarray(vaddr - TEXT, vaddr - TEXT + length),
  } as unknown as Build;
}

/** What fingerprint (compare.ts) records of one range: a linear decoding, as the map's own. */
function record(log: DecodeLog, build: Build, start: number, end: number): void {
  const buf = build.bytesAt(start, end - start);
  const ins = newInsn();
  log.begin(start, end);
  let p = 0;
  while (p < buf.length && decode(buf, p, buf.length, ins)) {
    if (ins.relOff >= 0 || ins.ripOff >= 0) log.insn(p, ins.length, ins.relOff, ins.relSize, ins.ripOff);
    p += ins.length;
  }
  log.finish(p);
}

describe('decode log (decode-log.ts) and the map replayed from it', () => {
  it('keeps every field of a recorded instruction, the stop, and answers only for the exact range', () => {
    const log = new DecodeLog();
    log.begin(0x2000, 0x2040);
    log.insn(0, 15, 14, 4, -1);
    log.insn(15, 2, 1, 1, -1);
    log.insn(17, 15, -1, 0, 14);
    log.insn(32, 7, -1, 0, 3);
    log.finish(39);
    const r = log.replay(0x2000, 0x2040);
    assert.ok(r);
    assert.equal(r.stop, 39);
    assert.deepEqual(loggedInsns(r), [
      { offset: 0, length: 15, relOff: 14, relSize: 4, ripOff: -1 },
      { offset: 15, length: 2, relOff: 1, relSize: 1, ripOff: -1 },
      { offset: 17, length: 15, relOff: -1, relSize: 0, ripOff: 14 },
      { offset: 32, length: 7, relOff: -1, relSize: 0, ripOff: 3 },
    ]);
    assert.equal(log.replay(0x2000, 0x2030), undefined, 'another end');
    assert.equal(log.replay(0x2001, 0x2040), undefined, 'another start');
  });

  it('grows past its first buffer without losing what it holds', () => {
    const log = new DecodeLog();
    for (let f = 0; f < 3; f++) {
      log.begin(f * 0x100000, f * 0x100000 + 0x50000);
      for (let i = 0; i < 0x10000; i++) log.insn(i * 5, 5, 1, 4, -1);
      log.finish(0x50000);
    }
    for (let f = 0; f < 3; f++) {
      const insns = loggedInsns(log.replay(f * 0x100000, f * 0x100000 + 0x50000)!);
      assert.equal(insns.length, 0x10000);
      assert.deepEqual(insns[0x8000], { offset: 0x8000 * 5, length: 5, relOff: 1, relSize: 4, ripOff: -1 });
    }
  });

  it('answers for thousands of functions, with the last decoding of a range decoded twice, and not for one begun but never finished', () => {
    const log = new DecodeLog();
    const N = 5000;
    for (let f = 0; f < N; f++) {
      log.begin(0x10000 + f * 0x40, 0x10000 + f * 0x40 + 0x30);
      log.insn(0, 5, 1, 4, -1);
      log.insn(5, 7, -1, 0, 3 + (f % 2));
      log.finish(0x30 - (f % 3));
    }
    // Begun but never finished (a comparison that stopped at a difference): no answer for it.
    log.begin(0x9000000, 0x9000010);
    log.insn(0, 2, 1, 1, -1);
    assert.equal(log.replay(0x9000000, 0x9000010), undefined);
    for (const f of [0, 1, 1023, 1024, 1025, 4999]) {
      const r = log.replay(0x10000 + f * 0x40, 0x10000 + f * 0x40 + 0x30);
      assert.ok(r, `function ${f}`);
      assert.equal(r.stop, 0x30 - (f % 3));
      assert.deepEqual(loggedInsns(r), [
        { offset: 0, length: 5, relOff: 1, relSize: 4, ripOff: -1 },
        { offset: 5, length: 7, relOff: -1, relSize: 0, ripOff: 3 + (f % 2) },
      ]);
    }
    log.begin(0x10000, 0x10030);
    log.insn(2, 6, -1, 0, 2);
    log.finish(0x20);
    const again = log.replay(0x10000, 0x10030)!;
    assert.equal(again.stop, 0x20);
    assert.deepEqual(loggedInsns(again), [{ offset: 2, length: 6, relOff: -1, relSize: 0, ripOff: 2 }]);
  });

  it('keeps no log unless one is started for the build', () => {
    const build = fakeBuild();
    assert.equal(decodeLogOf(build), undefined);
    const log = startDecodeLog(build);
    assert.equal(decodeLogOf(build), log);
    assert.equal(startDecodeLog(build), log, 'started once');
  });

  it('a map replayed from a log is the map decoded: whole, partial, and for ranges the log does not hold', () => {
    const decoded = dataRefMap(fakeBuild());
    assert.ok(decoded);
    // What the fixture exercises: operands of both functions, of b past its undecodable byte (a root
    // found by b's jne), of c (a root found by a's call), and the table c addresses.
    assert.deepEqual(
      decoded.code.map((r) => r.offset),
      [0x00, 0x10, 0x20, 0x40],
    );
    assert.ok(decoded.coverage.tables > 0 && decoded.coverage.uncovered.length === 0);

    const cases: Array<[string, (log: DecodeLog, b: Build) => void]> = [
      ['every function', (log, b) => FNS.forEach((f) => record(log, b, f.start, f.end))],
      ['b only', (log, b) => record(log, b, FNS[1]!.start, FNS[1]!.end)],
      ['a with another end', (log, b) => record(log, b, FNS[0]!.start, FNS[0]!.end - 6)],
    ];
    for (const [what, fill] of cases) {
      const build = fakeBuild();
      fill(startDecodeLog(build), build);
      assert.deepEqual(dataRefMap(build), decoded, what);
    }
  });
});
