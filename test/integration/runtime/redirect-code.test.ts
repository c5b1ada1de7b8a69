/**
 * The entry redirect's machine code agrees with its assembly, and the entry
 * check refuses what a jump must not overwrite: functions too short for it,
 * branches into the bytes it replaces, calls returning into them; it goes
 * after an endbr64 and takes the absolute form beyond ±2 GB.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeJump,
  FAR_SIZE,
  FAR_TEMPLATE,
  NEAR_SIZE,
  NEAR_TEMPLATE,
  planEntry,
  REDIRECT_ASM,
} from '../../../runtime/loader/redirect-code.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** `mov 0x0(%rip),%rax; lea (%rdi,%rdi,4),%rdx; mov (%rax),%rax; lea 0x1(%rax,%rdx,2),%rax; ret`: 20 bytes, no branch. */
const PLAIN = hex('488b0500000000 488d14bf 488b00 488d445001 c3');
const ENDBR = hex('f30f1efa');

describe('entry redirect code', () => {
  it('is exactly what `as` makes of its assembly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ulp-redirect-'));
    try {
      writeFileSync(join(dir, 'r.s'), REDIRECT_ASM);
      execFileSync('as', ['--64', '-o', join(dir, 'r.o'), join(dir, 'r.s')]);
      execFileSync('objcopy', ['-O', 'binary', '--only-section=.text', join(dir, 'r.o'), join(dir, 'r.bin')]);
      assert.match(execFileSync('readelf', ['-r', join(dir, 'r.o')], { encoding: 'utf8' }), /no relocations/);
      assert.deepEqual(readFileSync(join(dir, 'r.bin')), Buffer.concat([NEAR_TEMPLATE, FAR_TEMPLATE]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('encodes the near form within ±2 GB, measured from the end of the jump', () => {
    const at = 0x7f0000001000n;
    const near = encodeJump(at, at + 0x1000n);
    assert.equal(near.length, NEAR_SIZE);
    assert.equal(near[0], 0xe9);
    assert.equal(near.readInt32LE(1), 0x1000 - 5);
    assert.equal(encodeJump(at, at - 0x10n).readInt32LE(1), -0x15);
    // The last reachable byte forward, and one past it.
    assert.equal(encodeJump(at, at + 5n + 0x7fffffffn).length, NEAR_SIZE);
    assert.equal(encodeJump(at, at + 5n + 0x80000000n).length, FAR_SIZE);
  });

  it('encodes the absolute form beyond ±2 GB', () => {
    const far = encodeJump(0x7f0000001000n, 0x5555_0000_1234n);
    assert.equal(far.length, FAR_SIZE);
    assert.deepEqual(far.subarray(0, 6), hex('ff2500000000'));
    assert.equal(far.readBigUInt64LE(6), 0x5555_0000_1234n);
  });

  it('puts the jump at the entry of a plain function', () => {
    const site = planEntry(PLAIN, 0x1000n, 0x2000n);
    assert.ok(!('reason' in site));
    assert.equal(site.offset, 0);
    assert.deepEqual(site.bytes, encodeJump(0x1000n, 0x2000n));
  });

  it('puts the jump after an endbr64, which indirect calls must still land on', () => {
    const site = planEntry(Buffer.concat([ENDBR, PLAIN]), 0x1000n, 0x2000n);
    assert.ok(!('reason' in site));
    assert.equal(site.offset, 4);
    assert.deepEqual(site.bytes, encodeJump(0x1004n, 0x2000n));
  });

  it('refuses a function too short for the jump', () => {
    // lea 0x1(%rdi),%eax; ret: 4 bytes
    assert.deepEqual(planEntry(hex('8d4701 c3'), 0x1000n, 0x2000n), {
      reason: 'too-short',
      size: 4,
      needed: 5,
    });
    // endbr64 + 4 bytes: 9 are needed, 8 are there
    assert.deepEqual(planEntry(Buffer.concat([ENDBR, hex('8d4701 c3')]), 0x1000n, 0x2000n), {
      reason: 'too-short',
      size: 8,
      needed: 9,
    });
    // Far target: 14 bytes are needed.
    assert.deepEqual(planEntry(PLAIN.subarray(0, 13), 0x1000n, 0x5555_0000_0000n), {
      reason: 'too-short',
      size: 13,
      needed: 14,
    });
  });

  it('refuses a function whose own branch lands on the replaced bytes', () => {
    // loop: mov (%rdi),%eax; test %eax,%eax; jne loop (back to +0); ret; padded
    const loopAtEntry = hex('8b07 85c0 75fa c3');
    assert.deepEqual(planEntry(Buffer.concat([loopAtEntry, Buffer.alloc(8, 0xcc)]), 0x1000n, 0x2000n), {
      reason: 'branch-into-entry',
      from: 4,
      to: 0,
    });
    // A forward jcc into +3 (inside the 5 replaced bytes) from further down.
    // xor %eax,%eax; 4 x nop; inc %eax; cmp $10,%eax; jl (rel8 at +12, next instruction at +13); ret
    const code = hex('31c0 90 90 90 90 ffc0 83f80a 7c00 c3');
    const intoEntry = Buffer.from(code);
    intoEntry.writeInt8(3 - 13, 12);
    assert.deepEqual(planEntry(intoEntry, 0x1000n, 0x2000n), {
      reason: 'branch-into-entry',
      from: 11,
      to: 3,
    });
    // The same loop landing right after the replaced bytes is fine.
    const past = Buffer.from(code);
    past.writeInt8(5 - 13, 12);
    assert.ok(!('reason' in planEntry(past, 0x1000n, 0x2000n)));
  });

  it('refuses a call whose return address would lie inside the jump', () => {
    // endbr64; call *%rax (2 bytes, returns to +6, inside [4, 9)); ret; padding
    const code = Buffer.concat([ENDBR, hex('ffd0 c3'), Buffer.alloc(10, 0x90)]);
    assert.deepEqual(planEntry(code, 0x1000n, 0x2000n), { reason: 'call-in-entry', at: 4 });
    // A 5-byte call at the entry returns right after the jump: fine.
    assert.ok(
      !(
        'reason' in planEntry(Buffer.concat([hex('e800000000 c3'), Buffer.alloc(4, 0xcc)]), 0x1000n, 0x2000n)
      ),
    );
  });

  it('refuses code it cannot decode, accepts trailing padding', () => {
    assert.deepEqual(
      planEntry(Buffer.concat([PLAIN.subarray(0, 7), hex('06 06 06'), PLAIN.subarray(7)]), 0x1000n, 0x2000n),
      { reason: 'undecodable', offset: 7 },
    );
    assert.ok(!('reason' in planEntry(Buffer.concat([PLAIN, hex('cccc')]), 0x1000n, 0x2000n)));
  });
});
