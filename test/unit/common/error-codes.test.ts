/**
 * The error registry (common/error-codes.ts) against the documentation: the
 * error tables of docs/CLI.md (with the process and ELF tables it points to
 * in RUNTIME.md and ELF.md) list exactly the registry's codes, and the exit
 * tables of both commands give each code the registry's exit code; the
 * EXIT STATUS sections of the man pages list the same exit statuses as those
 * tables, and a code a man page names there exits with that status.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ExitCode, exitCodeOf } from '../../../common/cli.js';
import { ERROR_CODES, exitClassOf, isErrorCode, type ErrorCode } from '../../../common/error-codes.js';
import { hasCode, UlpError } from '../../../common/errors.js';

const doc = (name: string) => readFileSync(new URL(`../../../docs/${name}`, import.meta.url), 'utf8');

/** The table rows (cells) under the heading `heading`, up to the next heading of any level. */
function tableRows(markdown: string, heading: string): string[][] {
  const lines = markdown.split('\n');
  const rows: string[][] = [];
  const starts = lines.flatMap((l, i) => (l.trim() === heading ? [i] : []));
  assert.ok(starts.length > 0, `no heading "${heading}"`);
  for (const start of starts) {
    for (let i = start + 1; i < lines.length && !lines[i]!.startsWith('#'); i++) {
      const line = lines[i]!;
      if (!line.startsWith('|') || /^\|[-| ]+\|$/.test(line)) continue;
      rows.push(
        line
          .slice(1, -1)
          .split(' | ')
          .map((c) => c.trim()),
      );
    }
  }
  return rows;
}

/** The codes and code wildcards (`PROC_*`) written in backticks in a cell. */
function codesIn(cell: string): { codes: string[]; prefixes: string[] } {
  const quoted = [...cell.matchAll(/`([A-Z][A-Z0-9_]*(?:\*)?)`/g)].map((m) => m[1]!);
  return {
    codes: quoted.filter((q) => !q.endsWith('*')),
    prefixes: quoted.filter((q) => q.endsWith('*')).map((q) => q.slice(0, -1)),
  };
}

/** Each code an exit table covers, with the exit it gives: named, or matched by a wildcard (`BUNDLE_*`) and not named in another row. */
function exitTable(heading: string): Map<string, number> {
  const rows = tableRows(doc('CLI.md'), heading).filter((r) => /^\d+$/.test(r[0]!));
  const named = new Map<string, number>();
  for (const [exit, when] of rows) for (const code of codesIn(when!).codes) named.set(code, Number(exit));
  const covered = new Map(named);
  for (const [exit, when] of rows) {
    for (const prefix of codesIn(when!).prefixes) {
      for (const code of Object.keys(ERROR_CODES))
        if (code.startsWith(prefix) && !named.has(code)) covered.set(code, Number(exit));
    }
  }
  return covered;
}

/** The entries of a man page's EXIT STATUS section: each exit status with its text, roff requests and escapes included. */
function manExits(program: string): Map<number, string> {
  const page = readFileSync(new URL(`../../../man/${program}.1`, import.meta.url), 'utf8');
  const section = /^\.SH EXIT STATUS\n([\s\S]*?)^\.SH /m.exec(page);
  assert.ok(section, `man/${program}.1 has no EXIT STATUS section`);
  const exits = new Map<number, string>();
  for (const entry of section[1]!.split(/^\.TP\n/m).slice(1)) {
    const m = /^\.B (\d+)\n([\s\S]*?)(?=^\.PP\n|$(?![\s\S]))/m.exec(entry);
    assert.ok(m, `man/${program}.1: an exit status entry that is not ".TP" ".B N": ${entry.slice(0, 60)}`);
    exits.set(Number(m[1]), m[2]!);
  }
  return exits;
}

describe('error registry', () => {
  it('docs/CLI.md, with the RUNTIME.md and ELF.md tables it points to, lists exactly the registry codes', () => {
    const listed = new Set<string>();
    for (const row of tableRows(doc('CLI.md'), '### Error codes'))
      for (const code of codesIn(row[0]!).codes) listed.add(code);
    for (const row of tableRows(doc('RUNTIME.md'), '## Errors'))
      for (const code of codesIn(row[0]!).codes) listed.add(code);
    for (const row of tableRows(doc('ELF.md'), '## Errors'))
      for (const code of codesIn(row[0]!).codes) listed.add(code);
    const registry = new Set(Object.keys(ERROR_CODES));
    assert.deepEqual(
      [...listed].filter((c) => !registry.has(c)).sort(),
      [],
      'documented but not in common/error-codes.ts',
    );
    assert.deepEqual(
      [...registry].filter((c) => !listed.has(c)).sort(),
      [],
      'in common/error-codes.ts but not documented',
    );
  });

  for (const program of ['ulp-pack', 'ulp-trigger']) {
    it(`the exit table of ${program} gives each code it covers the registry's exit code`, () => {
      const table = exitTable(`### Exit codes of ${program}`);
      assert.ok(table.size > 20, `${table.size} codes`);
      const wrong = [...table]
        .filter(([code, exit]) => exitCodeOf(code) !== exit)
        .map(([code, exit]) => `${code}: documented ${exit}, registry ${exitCodeOf(code)}`);
      assert.deepEqual(wrong, []);
    });
  }

  for (const program of ['ulp-pack', 'ulp-trigger']) {
    it(`man/${program}.1 lists the exit statuses of docs/CLI.md's table, and the codes it names exit there`, () => {
      const documented = tableRows(doc('CLI.md'), `### Exit codes of ${program}`)
        .filter((r) => /^\d+$/.test(r[0]!))
        .map((r) => Number(r[0]));
      const man = manExits(program);
      assert.deepEqual(
        [...man.keys()].sort((a, b) => a - b),
        [...new Set(documented)].sort((a, b) => a - b),
      );
      const wrong = [...man].flatMap(([exit, text]) =>
        [...text.matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)]
          .map((m) => m[0])
          .filter((code) => exitCodeOf(code) !== exit)
          .map((code) => `${code}: man ${exit}, registry ${exitCodeOf(code)}`),
      );
      assert.deepEqual(wrong, []);
    });
  }

  it('every registry code has an exit code in the exit table of at least one command', () => {
    const covered = new Set([
      ...exitTable('### Exit codes of ulp-pack').keys(),
      ...exitTable('### Exit codes of ulp-trigger').keys(),
    ]);
    assert.deepEqual(
      Object.keys(ERROR_CODES).filter((c) => !covered.has(c)),
      [],
    );
  });

  it('a prefix decides nothing: codes of one prefix in several exit classes, a code without prefix', () => {
    assert.equal(exitCodeOf('TRIGGER_USAGE'), ExitCode.USAGE);
    assert.equal(exitCodeOf('TRIGGER_BUILD_MISMATCH'), ExitCode.INVALID_INPUT);
    assert.equal(exitCodeOf('TRIGGER_RACE'), ExitCode.REFUSED);
    assert.equal(exitCodeOf('SWITCH_ROLLED_BACK'), ExitCode.ROLLED_BACK);
    assert.equal(ERROR_CODES.TRIGGER_RACE.layer, 'runtime', 'thrown by the loader');
  });

  it('a code outside the registry (read back from JSON) is an internal error, never a guess from its prefix', () => {
    assert.equal(isErrorCode('PROC_SOMETHING_NEW'), false);
    assert.equal(exitClassOf('PROC_SOMETHING_NEW'), 'INTERNAL');
    assert.equal(exitCodeOf('toString'), ExitCode.INTERNAL, 'not an inherited property');
  });

  it('a misspelt code does not compile', () => {
    // tsc fails on this file if the line below compiles: UlpError takes registry codes only.
    // @ts-expect-error PROC_NOT_FUOND is not a registry code
    const typo = new UlpError('PROC_NOT_FUOND', 'm');
    assert.equal(exitCodeOf(typo.code), ExitCode.INTERNAL);
  });

  it('hasCode matches a UlpError by code only', () => {
    const race = new UlpError('TRIGGER_RACE', 'm');
    assert.equal(hasCode(race, 'TRIGGER_RACE'), true);
    assert.equal(hasCode(race, 'PROC_NOT_FOUND', 'TRIGGER_RACE'), true);
    assert.equal(hasCode(race, 'PROC_NOT_FOUND'), false);
    assert.equal(hasCode(Object.assign(new Error('m'), { code: 'TRIGGER_RACE' }), 'TRIGGER_RACE'), false);
  });

  it('every code is SCREAMING_SNAKE with a one-line meaning', () => {
    for (const [code, spec] of Object.entries(ERROR_CODES) as [
      ErrorCode,
      (typeof ERROR_CODES)[ErrorCode],
    ][]) {
      assert.match(code, /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$/);
      assert.ok(spec.meaning.length > 5 && !spec.meaning.includes('\n'), code);
    }
  });
});
