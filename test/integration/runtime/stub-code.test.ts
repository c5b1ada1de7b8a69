/**
 * The stub's machine code is kept as bytes with its assembly beside it; this
 * re-assembles the assembly with the system `as` and checks they agree, and
 * that the layout constants the code relies on are consistent.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENTRY, STUB_ASM, STUB_CODE } from '../../../runtime/stub/code.js';
import {
  BLOCK_STRIDE,
  CODE_OFF,
  CODE_SIZE,
  NSLOTS,
  SLOT,
  SLOT_DELTA,
  SLOTS_OFF,
  STUB_SIZE,
  XSAVE_OFF,
  XSAVE_STRIDE,
} from '../../../runtime/stub/layout.js';
import { restoreMask } from '../../../runtime/stub/slots.js';
import { REGS_SIZE, regOffset } from '../../../runtime/sys/regs.js';

describe('runtime stub code', () => {
  it('is exactly what `as` makes of its assembly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ulp-stub-'));
    try {
      writeFileSync(join(dir, 'stub.s'), STUB_ASM);
      execFileSync('as', ['--64', '-o', join(dir, 'stub.o'), join(dir, 'stub.s')]);
      execFileSync('objcopy', [
        '-O',
        'binary',
        '--only-section=.text',
        join(dir, 'stub.o'),
        join(dir, 'stub.bin'),
      ]);
      const relocs = execFileSync('readelf', ['-r', join(dir, 'stub.o')], { encoding: 'utf8' });
      assert.match(relocs, /no relocations/, 'the block must be position-independent');
      assert.deepEqual(readFileSync(join(dir, 'stub.bin')), STUB_CODE);
      const syms = execFileSync('nm', [join(dir, 'stub.o')], { encoding: 'utf8' });
      const addr = (name: string) => parseInt(new RegExp(`^([0-9a-f]+) t ${name}$`, 'm').exec(syms)![1]!, 16);
      assert.equal(addr('syscall_entry'), ENTRY.SYSCALL);
      assert.equal(addr('call_return'), ENTRY.CALL_RETURN);
      assert.equal(addr('marker_end'), ENTRY.MARKER_END);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fits its layout', () => {
    assert.ok(STUB_CODE.length <= BLOCK_STRIDE);
    assert.equal(SLOT_DELTA, SLOTS_OFF - CODE_OFF);
    assert.equal(CODE_SIZE, NSLOTS * BLOCK_STRIDE);
    assert.equal(CODE_OFF % 4096, 0);
    assert.equal(SLOTS_OFF % 4096, 0, 'code and slots must be separate pages (r-x and rw-)');
    assert.equal(XSAVE_OFF % 64, 0);
    assert.equal(XSAVE_STRIDE % 64, 0, 'xrstor needs 64-byte aligned areas');
    assert.equal(STUB_SIZE % 4096, 0);
    assert.ok(SLOT.REGS + REGS_SIZE <= SLOT.RFBM && SLOT.RFBM + 8 <= SLOT.SIZE);
    // rflags then rsp, as the stub's push/popf/mov sequence assumes
    assert.equal(regOffset('rsp'), regOffset('eflags') + 8);
  });

  it("restores every enabled component but AMX's unless the thread uses them", () => {
    const image = (xcr0: bigint, inUse: bigint) => {
      const b = Buffer.alloc(1024);
      b.writeBigUInt64LE(xcr0, 464);
      b.writeBigUInt64LE(inUse, 512);
      return b;
    };
    // x87, SSE, AVX, AVX-512 (5-7), PKRU (9), XTILECFG (17), XTILEDATA (18): a Sapphire Rapids Xeon
    const xcr0 = 0x602e7n;
    assert.equal(restoreMask(image(xcr0, 0x3n)), 0x002e7n, 'AVX-512 and PKRU too, though not in use');
    assert.equal(restoreMask(image(xcr0, 0x60007n)), xcr0);
    assert.equal(restoreMask(image(0x7n, 0x7n)), 0x7n);
  });
});
