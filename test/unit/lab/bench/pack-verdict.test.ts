/**
 * lab/bench/pack-verdict.ts: what scripts/bench-pack.ts makes of one
 * ulp-pack run. A refusal (exit 2) is a result with ulp-pack's reasons, read
 * from the report as packer/render.ts prints it; anything else but 0 stops
 * the benchmark.
 */
import assert from 'node:assert/strict';
import { judgePackRun } from '../../../../lab/bench/pack-verdict.js';
import { renderReport } from '../../../../packer/render.js';
import type { Report } from '../../../../patches/report.js';
import { CATEGORY_NAMES } from '../../../../patches/verdicts.js';

/** The update direction's report as ulp-pack prints it: one error in data, a warning in code, an info in api. */
function refusedReport(): string {
  const categories = Object.fromEntries(
    CATEGORY_NAMES.map((name) => [name, { verdict: 'unchanged', summary: 'no change', findings: [] }]),
  ) as unknown as Report['categories'];
  categories.data = {
    verdict: 'incompatible',
    summary: '1 object changed',
    findings: [
      { severity: 'error', code: 'DATA_INITIALIZER_CHANGED', message: 'initial value of table changed' },
    ],
  };
  categories.code = {
    verdict: 'compatible',
    summary: '1 function changed',
    findings: [{ severity: 'warning', code: 'CODE_SOMETHING', message: 'a warning, not a reason' }],
  };
  categories.api.findings.push({ severity: 'info', code: 'API_INFO', message: 'a change, not a reason' });
  const report = { verdict: 'incompatible', categories } as unknown as Report;
  return `libfoo.so.1: old -> new\n\n${renderReport(report, 'update (old -> new)')}\n\nresult: incompatible: no bundle written\n`;
}

/** What /usr/bin/time -f '%U %S' adds to the stderr of a command that exits non-zero. */
const timeTail = (code: number) => `Command exited with non-zero status ${code}\n12.31 0.52\n`;

describe('bench-pack: the verdict of one ulp-pack run', () => {
  it('exit 0 is a measurement', () => {
    assert.deepEqual(judgePackRun('ulp-pack a b --check', { code: 0, stdout: 'x', stderr: '1.00 0.10\n' }), {
      refused: false,
    });
  });

  it("exit 2 of an incompatible pair is a refusal with the report's errors as reasons, warnings left out", () => {
    const stderr =
      'ulp-pack: refused: the new build cannot replace the old one in running processes (1 reason above); nothing written\n' +
      timeTail(2);
    assert.deepEqual(judgePackRun('ulp-pack a b -o x', { code: 2, stdout: refusedReport(), stderr }), {
      refused: true,
      reasons: ['data: initial value of table changed [DATA_INITIALIZER_CHANGED]'],
    });
  });

  it('exit 2 without a report (a downgrade, or stdout not kept) takes the reason from stderr', () => {
    const downgrade =
      'ulp-pack: error [PACK_DOWNGRADE]: the new build looks older than the old one (x)\n  hint: Swap OLD and NEW\n' +
      timeTail(2);
    assert.deepEqual(judgePackRun('ulp-pack a b -o x', { code: 2, stdout: '', stderr: downgrade }), {
      refused: true,
      reasons: ['error [PACK_DOWNGRADE]: the new build looks older than the old one (x)'],
    });
    assert.deepEqual(judgePackRun('ulp-pack a b -o x', { code: 2, stdout: '', stderr: timeTail(2) }), {
      refused: true,
      reasons: ['exit 2, no reason printed'],
    });
  });

  it('any other exit, or a signal, stops the benchmark naming the command and what it printed', () => {
    assert.throws(
      () =>
        judgePackRun('ulp-pack a b -o x', {
          code: 3,
          stdout: '',
          stderr: 'ulp-pack: error [ELF_NOT_ELF]: a: not an ELF file\n',
        }),
      /^Error: ulp-pack a b -o x exited 3: ulp-pack: error \[ELF_NOT_ELF\]/,
    );
    assert.throws(
      () => judgePackRun('ulp-pack a b -o x', { code: null, signal: 'SIGKILL', stdout: '', stderr: '' }),
      /ulp-pack a b -o x was killed by SIGKILL/,
    );
    assert.throws(
      () => judgePackRun('ulp-pack a b', { code: 1, stdout: '', stderr: 'internal' }),
      /exited 1/,
    );
  });
});
