/**
 * Unwind rules (elf/cfi.ts) against the oracle: `readelf -wF` interprets
 * every frame description of a library into a table of rows (address, CFA
 * rule, one rule per register); frameRulesAt must give the same rules at
 * every row's address, for every row of the system's libc, libstdc++, libz
 * and libgcc_s.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { frameRulesAt, type RegRule } from '../../../elf/cfi.js';
import { parseElf } from '../../../elf/index.js';

const REGS: Record<string, number> = {
  rax: 0,
  rdx: 1,
  rcx: 2,
  rbx: 3,
  rsi: 4,
  rdi: 5,
  rbp: 6,
  rsp: 7,
  r8: 8,
  r9: 9,
  r10: 10,
  r11: 11,
  r12: 12,
  r13: 13,
  r14: 14,
  r15: 15,
  ra: 16,
};

interface Row {
  loc: number;
  cfa: string;
  regs: Map<number, string>;
}

/** Every row of `readelf -wF`, with the FDE it belongs to. */
function readelfRows(path: string): Row[] {
  // readelf exits 1 over warnings about separate debug files; the table it printed is complete.
  const r = spawnSync('readelf', ['-wF', path], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.error || !r.stdout.includes('Contents of the .eh_frame section'))
    throw new Error(`readelf -wF ${path}: ${r.error?.message ?? r.stderr}`);
  const out = r.stdout;
  const rows: Row[] = [];
  let columns: number[] | undefined;
  let inFde = false;
  for (const line of out.split('\n')) {
    if (/^[0-9a-f]+ [0-9a-f]+ [0-9a-f]+ (FDE|CIE)/.test(line)) {
      inFde = line.includes(' FDE ');
      columns = undefined;
      continue;
    }
    const head = /^\s+LOC\s+CFA\s+(.*)$/.exec(line);
    if (head) {
      columns = head[1]!
        .trim()
        .split(/\s+/)
        .map((c) => {
          const n = REGS[c];
          if (n === undefined) throw new Error(`unknown readelf column ${c}`);
          return n;
        });
      continue;
    }
    const row = /^([0-9a-f]{16}) (\S+)\s+(.*)$/.exec(line);
    if (!row || !columns || !inFde) continue;
    // A register rule prints as "r9 (r9)": the name in parentheses is a second token.
    const cells = row[3]!
      .trim()
      .split(/\s+/)
      .filter((c) => !/^\(\w+\)$/.test(c));
    rows.push({
      loc: parseInt(row[1]!, 16),
      cfa: row[2]!,
      regs: new Map(columns.map((c, i) => [c, cells[i] ?? 'u'])),
    });
  }
  return rows;
}

function cfaText(rule: ReturnType<typeof frameRulesAt>): string {
  if (!rule) return 'none';
  const cfa = rule.cfa;
  if (cfa.kind === 'expression') return 'exp';
  const name = Object.keys(REGS).find((k) => REGS[k] === cfa.reg)!;
  return `${name}${cfa.offset >= 0 ? '+' : ''}${cfa.offset}`;
}

function regText(rule: RegRule | undefined): string {
  if (!rule) return 'u';
  switch (rule.kind) {
    case 'undefined':
      return 'u';
    case 'same':
      return 's';
    case 'offset':
      return `c${rule.offset >= 0 ? '+' : ''}${rule.offset}`;
    case 'val-offset':
      return `v${rule.offset >= 0 ? '+' : ''}${rule.offset}`;
    case 'register':
      return `r${rule.reg}`;
    case 'expression':
      return 'exp';
    case 'val-expression':
      return 'vexp';
  }
}

describe('elf: unwind rules against readelf -wF', function () {
  this.timeout(120_000);
  for (const lib of ['libc.so.6', 'libstdc++.so.6', 'libz.so.1', 'libgcc_s.so.1']) {
    it(lib, () => {
      const path = `/lib/x86_64-linux-gnu/${lib}`;
      const elf = parseElf(readFileSync(path));
      const rows = readelfRows(path);
      assert.ok(rows.length > 100, `${rows.length} rows`);
      const wrong: string[] = [];
      for (const row of rows) {
        const rules = frameRulesAt(elf, row.loc);
        const got = cfaText(rules);
        if (got !== row.cfa) wrong.push(`0x${row.loc.toString(16)}: CFA ${got}, readelf ${row.cfa}`);
        for (const [reg, want] of row.regs) {
          const have = regText(rules?.regs.get(reg));
          if (have !== want) wrong.push(`0x${row.loc.toString(16)}: r${reg} ${have}, readelf ${want}`);
        }
      }
      assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${rows.length} rows differ`);
    });
  }
});
