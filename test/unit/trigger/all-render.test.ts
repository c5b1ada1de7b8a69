/**
 * The pure parts of `--all`: the text of a run (each process's line, the
 * summary, an interruption) and the Buffers a worker's structured clone
 * turns into plain Uint8Arrays.
 */
import assert from 'node:assert/strict';
import { toBuffers, type AllResult, type ProcessOutcome } from '../../../trigger/all.js';
import type { RunResult } from '../../../trigger/apply.js';
import { renderAll, renderAllLine, renderAllSummary } from '../../../trigger/render.js';

const result = (pid: number): RunResult => ({
  pid,
  soname: 'libdemo.so.1',
  patchId: 'f'.repeat(64),
  which: 'forward',
  outcome: 'applied',
  fromBuildId: 'a'.repeat(40),
  toBuildId: 'b'.repeat(40),
  liveBefore: 'a'.repeat(40),
  pauseMs: 0.5,
});

const ok = (pid: number): ProcessOutcome => ({ pid, ok: true, result: result(pid) });
const failed = (pid: number): ProcessOutcome => ({
  pid,
  ok: false,
  error: {
    code: 'PROC_ALREADY_TRACED',
    message: `process ${pid} is traced by 1`,
    hint: 'stop the other tracer',
  },
});

const run = (processes: ProcessOutcome[], extra: Partial<AllResult> = {}): AllResult => ({
  soname: 'libdemo.so.1',
  patchId: 'f'.repeat(64),
  which: 'forward',
  fromBuildId: 'a'.repeat(40),
  toBuildId: 'b'.repeat(40),
  processes,
  matches: [],
  inaccessible: 0,
  skipped: [],
  totalMs: 12,
  ...extra,
});

describe('--all output', () => {
  it('one line per process: outcome and pause, or FAILED with the code', () => {
    assert.equal(renderAllLine(ok(42)), '       42  applied (paused 0.50 ms)\n');
    assert.equal(
      renderAllLine(failed(43)),
      '       43  FAILED [PROC_ALREADY_TRACED] process 43 is traced by 1\n',
    );
  });

  it('a complete run: the counts, no interruption', () => {
    const text = renderAllSummary(run([ok(1), failed(2)]));
    assert.match(
      text,
      /^2 processes with libdemo.so.1 build aaaaaaaaaaaa or bbbbbbbbbbbb loaded: 1 ok, 1 failed; 12 ms in all$/m,
    );
    assert.doesNotMatch(text, /stopped|not attempted/);
  });

  it('an interrupted run counts and lists the processes not attempted', () => {
    const text = renderAllSummary(
      run([ok(1)], { interrupted: { signal: 'SIGTERM', notAttempted: [7, 8, 9] } }),
    );
    assert.match(
      text,
      /^4 processes with libdemo.so.1 .* loaded: 1 ok, 0 failed, 3 not attempted; 12 ms in all$/m,
    );
    assert.match(text, /^stopped by SIGTERM after 1 process: .*not attempted \(untouched\): 7, 8, 9$/m);
  });

  it('lists at most 50 pids not attempted and says how many more', () => {
    const left = Array.from({ length: 60 }, (_, i) => 100 + i);
    const text = renderAllSummary(run([], { interrupted: { signal: 'SIGINT', notAttempted: left } }));
    assert.match(text, /: 100, 101, .*, 149, and 10 more \(--json lists all\)$/m);
    assert.doesNotMatch(text, /\b150\b/);
  });

  it('the whole text is the package line, the process lines and the summary', () => {
    const withPackage = {
      ...ok(5),
      result: { ...result(5), package: { name: 'libdemo1', fromVersion: '1', toVersion: '2' } },
    } as ProcessOutcome;
    const r = run([withPackage]);
    assert.equal(
      renderAll(r),
      'package libdemo1 1 -> 2\n' + renderAllLine(withPackage) + renderAllSummary(r),
    );
  });
});

describe('toBuffers (outcomes and bundles through a worker)', () => {
  it('makes every Uint8Array a Buffer again, at any depth, and keeps the rest', () => {
    const cloned = structuredClone({
      a: Buffer.from('ab'),
      list: [Buffer.from('c'), 1n, 'x'],
      map: new Map([['k', Buffer.from('d')]]),
      nested: { n: 2, none: undefined },
    });
    assert.ok(!Buffer.isBuffer(cloned.a), 'structured cloning drops the Buffer prototype');
    const back = toBuffers(cloned) as typeof cloned;
    assert.ok(Buffer.isBuffer(back.a) && back.a.toString() === 'ab');
    assert.ok(Buffer.isBuffer(back.list[0]) && (back.list[0] as Buffer).toString() === 'c');
    assert.deepEqual(back.list.slice(1), [1n, 'x']);
    assert.ok(Buffer.isBuffer(back.map.get('k')));
    assert.deepEqual(back.nested, { n: 2, none: undefined });
  });
});
