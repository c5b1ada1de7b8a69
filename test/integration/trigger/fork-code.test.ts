/**
 * The fork handlers' machine code is kept as bytes with its assembly beside
 * it (runtime/loader/fork/code.ts); this re-assembles the assembly with the
 * system `as` and checks they agree, and that the layout the code and the
 * trigger share is consistent.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENTRY, FORK_ASM, FORK_CODE } from '../../../runtime/loader/fork/code.js';
import {
  CODE_OFF,
  CODE_SIZE,
  FORK,
  FORK_PAGE_SIZE,
  LIB,
  MAX_ALIAS,
  MAX_COUNT,
  MAX_FORKS,
  MAX_LIBS,
  TABLE,
  TABLE_OFF,
  TABLE_SIZE,
} from '../../../runtime/loader/fork/layout.js';
import { decodeTable } from '../../../runtime/loader/fork/table.js';

describe('fork handler code', () => {
  it('is exactly what `as` makes of its assembly, with no relocation', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ulp-fork-'));
    try {
      writeFileSync(join(dir, 'fork.s'), FORK_ASM);
      execFileSync('as', ['--64', '-o', join(dir, 'fork.o'), join(dir, 'fork.s')]);
      execFileSync('objcopy', [
        '-O',
        'binary',
        '--only-section=.text',
        join(dir, 'fork.o'),
        join(dir, 'fork.bin'),
      ]);
      assert.match(
        execFileSync('readelf', ['-r', join(dir, 'fork.o')], { encoding: 'utf8' }),
        /no relocations/,
        'the handlers must be position-independent',
      );
      const bytes = readFileSync(join(dir, 'fork.bin'));
      assert.deepEqual(
        bytes,
        FORK_CODE,
        `FORK_CODE is stale; as makes:\n${[...bytes].map((b) => '0x' + b.toString(16).padStart(2, '0')).join(', ')}`,
      );
      const syms = execFileSync('nm', [join(dir, 'fork.o')], { encoding: 'utf8' });
      const addr = (name: string) => parseInt(new RegExp(`^([0-9a-f]+) t ${name}$`, 'm').exec(syms)![1]!, 16);
      assert.equal(addr('prepare'), ENTRY.PREPARE);
      assert.equal(addr('parent'), ENTRY.PARENT);
      assert.equal(addr('child'), ENTRY.CHILD);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fits its layout', () => {
    assert.ok(FORK_CODE.length <= CODE_SIZE);
    assert.equal(CODE_OFF % 4096, 0);
    assert.equal(TABLE_OFF % 4096, 0, 'code (r-x) and table (rw-) must be separate pages');
    assert.equal(TABLE_OFF, CODE_OFF + CODE_SIZE);
    assert.equal(FORK_PAGE_SIZE % 4096, 0);
    assert.ok(TABLE.LIBS + MAX_LIBS * LIB.SIZE <= TABLE.FORKS, 'library entries overlap the fork entries');
    assert.ok(TABLE.FORKS + MAX_FORKS * FORK.SIZE <= TABLE_SIZE, 'fork entries run past the table');
    assert.ok(LIB.ALIAS + MAX_ALIAS * 8 <= LIB.SIZE);
    assert.ok(LIB.NAME + LIB.NAME_SIZE <= LIB.ALIAS);
    assert.ok(FORK.FD + 4 * MAX_LIBS <= FORK.SIZE);
    assert.equal((MAX_FORKS * FORK.SIZE) % 8, 0, 'the child clears the fork entries with rep stosq');
    assert.ok(
      MAX_LIBS <= MAX_COUNT && MAX_ALIAS <= MAX_COUNT,
      'counts must stay below 256 to be published with one byte changing',
    );
  });

  it('decodes an empty table as nothing registered', () => {
    const t = decodeTable(Buffer.alloc(TABLE_SIZE));
    assert.deepEqual(t, { registered: false, prepares: 0n, libs: [] });
  });
});
