/**
 * The staging plan (runtime/loader/relocate.ts planStage) on a hand-built
 * process: the value every relocation site of the new build gets, why, and
 * the refusals. The live build v1 is the loader's; what ld.so stored at its
 * sites is given as memory words, which is all planStage reads.
 */
import assert from 'node:assert/strict';
import { isUlpError } from '../../../../common/errors.js';
import { RelocType } from '../../../../elf/types.js';
import { STB_WEAK, STT_GNU_IFUNC, STT_OBJECT } from '../../../../elf/constants.js';
import { ownRegion } from '../../../../runtime/loader/region.js';
import { planStage, type StageInput } from '../../../../runtime/loader/relocate.js';
import {
  family,
  placed,
  syntheticElf,
  wordReader,
  type ElfSpec,
  type RelocSpec,
  type SymSpec,
} from '../../../../lab/process-model.js';

const V1 = 0x7f00_0000_0000n;
const V2 = 0x7f00_0010_0000n;
const EXE = 0x5555_5555_4000n;
const LIBC = 0x7f00_0020_0000n;

function lib(symbols: SymSpec[], relocs: RelocSpec[], extra: Partial<ElfSpec> = {}): ElfSpec {
  return {
    soname: 'libx.so.1',
    text: { vaddr: 0n, size: 0x3000n },
    data: { vaddr: 0x4000n, size: 0x2000n },
    relro: { vaddr: 0x4000n, size: 0x1000n },
    symbols: [{ name: 'd', value: 0x5010n, type: STT_OBJECT }, ...symbols],
    relocs,
    ...extra,
  };
}

/** v1 as ld.so loaded it: it imports malloc and calls its own f through the PLT; TLS module 3. */
function world(target: ElfSpec) {
  const exe = placed(
    syntheticElf({ text: { vaddr: 0n, size: 0x1000n }, symbols: [{ name: 'e', value: 0x100n }] }),
    { name: '', bias: EXE },
  );
  const libc = placed(
    syntheticElf({
      soname: 'libc.so.6',
      text: { vaddr: 0n, size: 0x1000n },
      symbols: [
        { name: 'malloc', value: 0x500n },
        { name: 'calloc', value: 0x580n },
        { name: 'strchr', value: 0x700n, type: STT_GNU_IFUNC },
      ],
    }),
    { bias: LIBC },
  );
  const v1 = placed(
    syntheticElf(
      lib(
        [{ name: 'f', value: 0x1100n }],
        [
          { offset: 0x4000n, type: RelocType.GLOB_DAT, symbol: 'malloc' },
          { offset: 0x4008n, type: RelocType.JUMP_SLOT, symbol: 'f' },
          { offset: 0x4010n, type: RelocType.DTPMOD64 },
        ],
      ),
    ),
    { name: '/usr/lib/libx.so.1', bias: V1 },
  );
  const memory = new Map([
    [V1 + 0x4000n, LIBC + 0x500n],
    [V1 + 0x4008n, V1 + 0x1100n],
    [V1 + 0x4010n, 3n],
  ]);
  const input: StageInput = {
    target: syntheticElf(target),
    targetBias: V2,
    family: family(v1),
    from: v1,
    scope: [exe, v1, libc],
    region: ownRegion(v1.elf)!,
    read: wordReader(memory),
  };
  return { input, exe, libc, v1 };
}

const at = (plan: ReturnType<typeof planStage>, offset: bigint) =>
  plan.writes.find((w) => w.addr === V2 + offset);
const refusal = (fn: () => unknown, code: string) =>
  assert.throws(fn, (e: unknown) => isUlpError(e) && e.code === code);

describe('planStage: the value of every relocation site of the staged build', () => {
  it('inherits ld.so’s answers, binds the library to its own new copy, and leaves the shared region alone', () => {
    const { input } = world(
      lib(
        [{ name: 'f', value: 0x1180n }],
        [
          { offset: 0x4000n, type: RelocType.GLOB_DAT, symbol: 'malloc' },
          { offset: 0x4008n, type: RelocType.JUMP_SLOT, symbol: 'f' },
          { offset: 0x4010n, type: RelocType.DTPMOD64 },
          { offset: 0x4020n, type: RelocType.RELATIVE, addend: 0x1500n },
          { offset: 0x4028n, type: RelocType.RELATIVE, addend: 0x5100n },
          { offset: 0x5008n, type: RelocType.RELATIVE, addend: 0x1500n },
          { offset: 0x4030n, type: RelocType.GLOB_DAT, symbol: 'd' },
        ],
      ),
    );
    const plan = planStage(input);
    assert.deepEqual(
      plan.writes.map((w) => [`0x${(w.addr - V2).toString(16)}`, w.reason]),
      [
        ['0x4000', 'inherited'],
        ['0x4008', 'self'],
        ['0x4010', 'tls'],
        ['0x4020', 'relative'],
        ['0x4028', 'relative'],
        ['0x4030', 'self'],
      ],
    );
    assert.equal(at(plan, 0x4000n)!.value, LIBC + 0x500n);
    assert.equal(
      at(plan, 0x4008n)!.value,
      V2 + 0x1180n,
      'the old build was bound to itself: the new one is bound to its own f',
    );
    assert.equal(at(plan, 0x4010n)!.value, 3n, 'the TLS module id of the build it replaces');
    assert.equal(at(plan, 0x4020n)!.value, V2 + 0x1500n);
    assert.equal(
      at(plan, 0x4028n)!.value,
      V1 + 0x5100n,
      'data of the region is addressed in the canonical copy',
    );
    assert.equal(at(plan, 0x4030n)!.value, V1 + 0x5010n, 'so is the library’s own datum');
    assert.equal(plan.sharedSites, 1);
    assert.deepEqual(plan.newImports, []);
  });

  it('resolves what the old build did not import in ld.so’s order, and reports it', () => {
    const { input } = world(
      lib(
        [],
        [
          { offset: 0x4000n, type: RelocType.GLOB_DAT, symbol: 'calloc' },
          { offset: 0x4008n, type: RelocType.GLOB_DAT, symbol: 'optional_hook' },
        ],
        { imports: [{ name: 'optional_hook', bind: STB_WEAK }] },
      ),
    );
    const plan = planStage(input);
    assert.deepEqual(
      plan.writes.map((w) => [w.reason, w.value]),
      [
        ['resolved', LIBC + 0x580n],
        ['weak-undefined', 0n],
      ],
    );
    assert.deepEqual(plan.newImports, [{ name: 'calloc', version: undefined, from: 'libc.so.6' }]);
  });

  it('a symbol the new build defines but something earlier in scope also defines binds to the earlier one, as ld.so would', () => {
    const { input } = world(
      lib([{ name: 'e', value: 0x1300n }], [{ offset: 0x4000n, type: RelocType.GLOB_DAT, symbol: 'e' }]),
    );
    assert.deepEqual(
      planStage(input).writes.map((w) => [w.reason, w.value]),
      [['resolved', EXE + 0x100n]],
    );
    // Under DT_SYMBOLIC the library binds its own definitions first.
    const { input: symbolic } = world(
      lib([{ name: 'e', value: 0x1300n }], [{ offset: 0x4000n, type: RelocType.GLOB_DAT, symbol: 'e' }], {
        symbolic: true,
      }),
    );
    assert.deepEqual(
      planStage(symbolic).writes.map((w) => [w.reason, w.value]),
      [['self', V2 + 0x1300n]],
    );
  });

  it('leaves IFUNC sites to their resolvers, other objects’ before the library’s own', () => {
    const { input } = world(
      lib(
        [],
        [
          { offset: 0x4000n, type: RelocType.IRELATIVE, addend: 0x1600n },
          { offset: 0x4008n, type: RelocType.GLOB_DAT, symbol: 'strchr' },
        ],
      ),
    );
    const plan = planStage(input);
    assert.deepEqual(plan.writes, []);
    assert.deepEqual(
      plan.ifuncs.map((f) => [f.addr - V2, f.resolver]),
      [
        [0x4008n, LIBC + 0x700n],
        [0x4000n, V2 + 0x1600n],
      ],
    );
  });

  it('refuses what it cannot place, before anything is written', () => {
    refusal(
      () =>
        planStage(world(lib([], [{ offset: 0x4000n, type: RelocType.GLOB_DAT, symbol: 'nowhere' }])).input),
      'LOADER_UNRESOLVED_SYMBOL',
    );
    refusal(
      () =>
        planStage(
          world(
            lib([], [{ offset: 0x4008n, type: RelocType.JUMP_SLOT, symbol: 'f' }], {
              imports: [{ name: 'f' }],
            }),
          ).input,
        ),
      'LOADER_SYMBOL_MISSING',
    );
    refusal(
      () => planStage(world(lib([], [{ offset: 0x4000n, type: RelocType.TLSDESC }])).input),
      'LOADER_UNSUPPORTED_RELOC',
    );
    refusal(
      () => planStage(world(lib([], [{ offset: 0x4000n, type: RelocType.TPOFF64 }])).input),
      'LOADER_TLS_UNKNOWN',
    );
  });
});
