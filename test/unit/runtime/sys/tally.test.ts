/**
 * The tally (runtime/sys/tally.ts): counts only while open, a fresh count
 * per opening, and the per-process arithmetic the benchmarks print.
 */
import assert from 'node:assert/strict';
import { closeTally, note, openTally, perItem, total } from '../../../../runtime/sys/tally.js';

describe('runtime/sys/tally', () => {
  afterEach(() => closeTally());

  it('counts notes only while a tally is open, from zero each time', () => {
    note('ptrace:PTRACE_GETREGS');
    const first = openTally();
    note('ptrace:PTRACE_GETREGS');
    note('ptrace:PTRACE_GETREGS');
    note('stop');
    assert.equal(closeTally(), first);
    note('stop');
    assert.deepEqual(
      [...first],
      [
        ['ptrace:PTRACE_GETREGS', 2],
        ['stop', 1],
      ],
    );
    openTally();
    note('stop');
    assert.deepEqual([...closeTally()], [['stop', 1]]);
    assert.equal(closeTally().size, 0, 'closing with nothing open gives an empty tally');
  });

  it('sums by prefix and divides per item, largest first', () => {
    const t = new Map([
      ['ptrace:PTRACE_SYSCALL', 40],
      ['ptrace:PTRACE_GETREGS', 10],
      ['stop', 20],
      ['syscall:mmap', 10],
    ]);
    assert.equal(total(t, 'ptrace:'), 50);
    assert.equal(total(t, 'call'), 0);
    assert.deepEqual(perItem(t, 10), [
      ['ptrace:PTRACE_SYSCALL', 4],
      ['stop', 2],
      ['ptrace:PTRACE_GETREGS', 1],
      ['syscall:mmap', 1],
    ]);
  });
});
