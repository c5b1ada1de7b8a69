/**
 * The in-flight caller check (packer/code/ipara.ts) on gcc builds of
 * test/fixtures/ipara/libipara.c: g keeps values in call-clobbered registers
 * across `call f` because gcc's -fipa-ra saw that f writes only %rax. The
 * ranges it lists are checked against the builds' own symbol tables.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf } from '../../../elf/index.js';
import { matchFunctions } from '../../../packer/code/match.js';
import { inFlightHazards, type InFlightHazards } from '../../../packer/code/ipara.js';
import { createBuild, type Build } from '../../../packer/model.js';
import { compile } from '../../../lab/compile.js';
import { stripped } from '../../../lab/packer/fixtures.js';

type Define =
  | 'F_RCX'
  | 'F_RAX'
  | 'F_UNKNOWN'
  | 'EXPORTED'
  | 'TAIL'
  | 'VIA_MID'
  | 'VIA_H'
  | 'H_OWN'
  | 'SWITCH'
  | 'G_CHANGED';

function lib(defines: Define[]): string {
  return compile({
    sources: ['ipara/libipara.c'],
    out: 'libipara.so.1',
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      '-Wl,-soname,libipara.so.1',
      '-Wl,--build-id',
      ...defines.map((d) => `-D${d}`),
    ],
  });
}

function build(label: string, path: string): Build {
  const bytes = readFileSync(path);
  return createBuild(label, path, bytes, parseElf(bytes));
}

function hazards(from: string, to: string): InFlightHazards {
  const a = build('old', from);
  const b = build('new', to);
  return inFlightHazards(a, b, matchFunctions(a, b));
}

/** The named functions of `from` whose code differs in `to`: the only callers the check looks at. */
function changed(from: string, to: string): string[] {
  const m = matchFunctions(build('old', from), build('new', to));
  return m.pairs.filter((p) => !p.same && p.a.name !== undefined).map((p) => p.a.name!);
}

/** A function's [start, end) in a build, from its symbol table. */
function rangeOf(path: string, name: string): { start: number; end: number } {
  const sym = parseElf(readFileSync(path)).symtab.find((s) => s.name === name)!;
  assert.ok(sym, `${name} in ${path}`);
  return { start: Number(sym.value), end: Number(sym.value + sym.size) };
}

const simple = (h: InFlightHazards) => ({
  apply: h.apply.map((r) => `${r.build} ${r.name ?? `0x${r.start.toString(16)}`}`),
  revert: h.revert.map((r) => `${r.build} ${r.name ?? `0x${r.start.toString(16)}`}`),
});

describe('packer: callers in flight that rely on -fipa-ra', function () {
  this.timeout(120_000);

  it('the new f writes %rcx, which the old g keeps live across `call f`: the old g is listed for apply', () => {
    const v1 = lib([]);
    const v2 = lib(['F_RCX', 'G_CHANGED']);
    const h = hazards(v1, v2);
    assert.deepEqual(simple(h), { apply: ['old g'], revert: [] });
    assert.deepEqual({ start: h.apply[0]!.start, end: h.apply[0]!.end }, rangeOf(v1, 'g'));
    assert.match(
      h.apply[0]!.reason,
      /^calls f at 0x[0-9a-f]+ with rcx live across the call, which the new f writes$/,
    );
  });

  it('the same pair packed the other way round: the new g is listed for revert', () => {
    const v1 = lib([]);
    const v2 = lib(['F_RCX', 'G_CHANGED']);
    const h = hazards(v2, v1);
    assert.deepEqual(simple(h), { apply: [], revert: ['new g'] });
    assert.deepEqual({ start: h.revert[0]!.start, end: h.revert[0]!.end }, rangeOf(v1, 'g'));
    assert.match(h.revert[0]!.reason, /with rcx live across the call, which the old f writes$/);
  });

  it('stripped builds (f known from the unwind table only, paired by position): the same range', () => {
    const v1 = lib([]);
    const v2 = lib(['F_RCX', 'G_CHANGED']);
    const h = hazards(stripped(v1), stripped(v2));
    assert.equal(h.apply.length, 1);
    assert.equal(h.apply[0]!.name, 'g'); // g is exported: its name survives in .dynsym
    assert.deepEqual({ start: h.apply[0]!.start, end: h.apply[0]!.end }, rangeOf(v1, 'g'));
    assert.deepEqual(h.revert, []);
  });

  it('an unchanged caller in between: k calls mid (the same code in both builds), which calls the changed f', () => {
    const v1 = lib(['VIA_MID']);
    const v2 = lib(['VIA_MID', 'F_RCX']);
    const h = hazards(v1, v2);
    assert.deepEqual(simple(h), { apply: ['old k'], revert: [] });
    assert.match(
      h.apply[0]!.reason,
      /^calls mid at 0x[0-9a-f]+ with rcx live across the call, which mid reaches new code that writes$/,
    );
  });

  it('a caller further down the stack: k (the same code in both builds) keeps %rcx across h, the old h calls f', () => {
    // The new h no longer calls f, so k may keep %rcx in both builds; a thread inside the old h at the
    // switch reaches the new f, which writes it, and returns into k. h reads nothing after f but returns.
    const [v1, v2] = [lib(['VIA_H']), lib(['VIA_H', 'F_RCX', 'H_OWN'])];
    assert.deepEqual(changed(v1, v2), ['f', 'h']);
    const h = hazards(v1, v2);
    assert.deepEqual(simple(h), { apply: ['old h'], revert: [] });
    assert.match(
      h.apply[0]!.reason,
      /^calls f at 0x[0-9a-f]+ with rcx live across the call, which the new f writes$/,
    );
  });

  it('what g does after the call goes through a jump table: the cases are followed, only %rcx is at stake', () => {
    // Were the switch not followed, every register would count as live there.
    const h = hazards(lib(['SWITCH']), lib(['SWITCH', 'F_RCX', 'G_CHANGED']));
    assert.deepEqual(simple(h), { apply: ['old g'], revert: [] });
    assert.match(h.apply[0]!.reason, /with rcx live across the call, which the new f writes$/);
  });

  // In the three cases below g changed too, so it is checked, and found safe.
  it('the new f still writes only %rax: nothing is listed', () => {
    const [v1, v2] = [lib([]), lib(['F_RAX', 'G_CHANGED'])];
    assert.deepEqual(changed(v1, v2), ['f', 'g']);
    assert.deepEqual(simple(hazards(v1, v2)), { apply: [], revert: [] });
  });

  it('an exported f is called through the PLT, so its callers assume the ABI: nothing is listed', () => {
    const [v1, v2] = [lib(['EXPORTED']), lib(['EXPORTED', 'F_RCX', 'G_CHANGED'])];
    assert.deepEqual(changed(v1, v2), ['f', 'g']);
    assert.deepEqual(simple(hazards(v1, v2)), { apply: [], revert: [] });
  });

  it('g tail-calls f (`jmp f`): no frame of g waits for f, nothing is listed', () => {
    const [v1, v2] = [lib(['TAIL']), lib(['TAIL', 'F_RCX', 'G_CHANGED'])];
    assert.deepEqual(changed(v1, v2), ['f', 'g']);
    assert.deepEqual(simple(hazards(v1, v2)), { apply: [], revert: [] });
  });

  it('the new f runs an instruction the register table does not know: assumed to clobber everything, g is listed', () => {
    const h = hazards(lib([]), lib(['F_UNKNOWN', 'G_CHANGED']));
    assert.deepEqual(simple(h), { apply: ['old g'], revert: [] });
    assert.match(h.apply[0]!.reason, /rcx, .*rsi, r8, r9/);
  });

  it('the OLD f runs an instruction the register table does not know: what g relied on is not assumed away, g is listed', () => {
    // gcc knew the old f writes only %rax (its asm names no clobber), so the old g keeps %rcx across it; an
    // upper bound for the old f (everything) would hide that the new f writes %rcx.
    const h = hazards(lib(['F_UNKNOWN']), lib(['F_RCX', 'G_CHANGED']));
    // The revert too: the old f's unknown instruction may write what the new g keeps (an upper bound there).
    assert.deepEqual(simple(h), { apply: ['old g'], revert: ['new g'] });
    assert.match(h.apply[0]!.reason, /with rcx/);
  });

  it('a caller whose code is the same in both builds is never listed (the new compiler made f respect it)', () => {
    // F_RCX without G_CHANGED: gcc gives g other registers in the new build, so g changes anyway; with
    // F_UNKNOWN g stays the same code (emms clobbers nothing gcc knows of), and is not checked.
    const [v1, v2] = [lib([]), lib(['F_UNKNOWN'])];
    assert.deepEqual(changed(v1, v2), ['f']);
    assert.deepEqual(simple(hazards(v1, v2)), { apply: [], revert: [] });
  });
});
