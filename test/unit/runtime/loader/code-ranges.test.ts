/**
 * Where a loaded object's code is (runtime/loader/code-ranges.ts), on
 * objects built by hand as memory shows them: an executable segment that
 * also holds the headers, dynamic-linking tables, .rodata and .eh_frame
 * (-z noseparate-code), one that holds only code (-z separate-code), and
 * layouts the cut must leave whole.
 */
import assert from 'node:assert/strict';
import {
  PF_R,
  PF_W,
  PF_X,
  PT_GNU_EH_FRAME,
  PT_LOAD,
  STT_FUNC,
  type ElfObject,
} from '../../../../elf/index.js';
import { codeOf } from '../../../../runtime/loader/code-ranges.js';

type Input = Parameters<typeof codeOf>[0];

const seg = (type: number, flags: number, vaddr: bigint, memsz: bigint) => ({
  type,
  flags,
  offset: vaddr,
  vaddr,
  paddr: vaddr,
  filesz: memsz,
  memsz,
  align: 0x1000n,
});

const fn = (name: string, value: bigint, size: bigint) =>
  ({ name, value, size, type: STT_FUNC, defined: true }) as unknown as ElfObject['symtab'][number];

function object(o: {
  loads: ReturnType<typeof seg>[];
  ehFrameHdr?: bigint;
  dynamic?: Partial<NonNullable<ElfObject['dynamic']>>;
  functions?: ReturnType<typeof fn>[];
}): Input {
  const eh = o.ehFrameHdr === undefined ? [] : [seg(PT_GNU_EH_FRAME, PF_R, o.ehFrameHdr, 0x40n)];
  return {
    loadSegments: o.loads,
    programHeaders: [...o.loads, ...eh],
    dynamic: o.dynamic as ElfObject['dynamic'],
    dynamicSymbols: o.functions ?? [],
    symtab: [],
  };
}

const hex = (rs: ReadonlyArray<{ start: bigint; end: bigint }>) =>
  rs.map((r) => `${r.start.toString(16)}-${r.end.toString(16)}`);

describe('the code of a loaded object', () => {
  it('-z noseparate-code: the headers and tables before .init and the unwind tables from .eh_frame_hdr on are not code (.rodata, between, stays)', () => {
    const o = object({
      loads: [seg(PT_LOAD, PF_R | PF_X, 0n, 0x7fcn), seg(PT_LOAD, PF_R | PF_W, 0x1df8n, 0x230n)],
      ehFrameHdr: 0x6d0n,
      dynamic: {
        strtab: { addr: 0x2d0n, size: 0x90n },
        rela: { addr: 0x3a0n, size: 0xc0n },
        jmprel: { addr: 0x460n, size: 0x30n },
        init: 0x490n,
        fini: 0x69cn,
      },
      functions: [fn('demo_version', 0x520n, 0x10n), fn('demo_compute', 0x530n, 0x40n)],
    });
    assert.deepEqual(hex(codeOf(o)), ['490-6d0']);
  });

  it('-z separate-code: the executable segment is all code', () => {
    const o = object({
      loads: [
        seg(PT_LOAD, PF_R, 0n, 0x4f0n),
        seg(PT_LOAD, PF_R | PF_X, 0x1000n, 0x1d9n),
        seg(PT_LOAD, PF_R, 0x2000n, 0x120n),
        seg(PT_LOAD, PF_R | PF_W, 0x3df8n, 0x230n),
      ],
      ehFrameHdr: 0x2020n,
      dynamic: { strtab: { addr: 0x2d0n, size: 0x90n }, rela: { addr: 0x3a0n, size: 0xc0n }, init: 0x1000n },
      functions: [fn('f', 0x1100n, 0x20n)],
    });
    assert.deepEqual(hex(codeOf(o)), ['1000-11d9']);
  });

  it('never cuts past known code: a table after a function, or .eh_frame_hdr before one, leaves the segment whole', () => {
    const o = object({
      loads: [seg(PT_LOAD, PF_R | PF_X, 0n, 0x2000n)],
      ehFrameHdr: 0x100n,
      dynamic: { rela: { addr: 0x800n, size: 0x100n } },
      functions: [fn('early', 0x200n, 0x10n), fn('late', 0x1800n, 0x10n)],
    });
    assert.deepEqual(hex(codeOf(o)), ['0-2000']);
  });

  it('an object with no known code address keeps its executable segments whole', () => {
    const o = object({
      loads: [seg(PT_LOAD, PF_R | PF_X, 0n, 0x900n)],
      ehFrameHdr: 0x800n,
      dynamic: { strtab: { addr: 0x100n, size: 0x100n } },
    });
    assert.deepEqual(hex(codeOf(o)), ['0-900']);
  });
});
