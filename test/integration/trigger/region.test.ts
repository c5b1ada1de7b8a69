/**
 * Builds whose writable region lies at another vaddr (moved by whole pages,
 * same layout): the staged build maps the shared pages at its own region's
 * address, and everything it refers to there (GOT slots, RELRO pointers,
 * RIP-relative code, function pointers in .data) reaches the one canonical
 * copy. Real processes (test/fixtures/region), bundles from the real
 * ulp-pack, checks of what the program prints and keeps in memory.
 */
import assert from 'node:assert/strict';
// Outcomes may be `applied-partly`/`reverted-partly`: the fixtures' 4-byte functions are too short for an entry
// redirect (test/integration/trigger/redirects.test.ts covers redirects); here what matters is the build that is live.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseElf, writableRegion } from '../../../elf/index.js';
import { decodeBundle, encodeBundle } from '../../../patches/index.js';
import { runCli, type Run } from '../../../lab/cli.js';
import { processState } from '../../../lab/process-state.js';
import { compile } from '../../../lab/compile.js';
import { startTarget, type Target } from '../../../lab/target.js';

type Line = Record<string, string>;
type Relro = 'full' | 'partial';

const RELRO: Record<Relro, string[]> = { full: ['-Wl,-z,relro,-z,now'], partial: ['-Wl,-z,relro,-z,lazy'] };
const SONAME = 'libmoved.so.1';
const DATA = `/memfd:ulp:data:${SONAME} (deleted)`;
/** Version -> bytes of .rodata padding: v2 and v3 have their region two pages after v1's. */
const PAD: Record<number, number> = { 1: 0, 2: 8192, 3: 8192 };

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

const trigger = (...args: string[]) => ok(runCli('ulp-trigger', args));

interface Lab {
  lib(v: number): string;
  pack(from: number, to: number): string;
  start(version: number): Target;
  dispose(): void;
}

function buildLab(relro: Relro): Lab {
  const dir = mkdtempSync(join(tmpdir(), 'ulp-region-'));
  const lib = (v: number) =>
    compile({
      sources: ['region/libmoved.c'],
      out: `libmoved-v${v}.so`,
      flags: [
        '-shared',
        '-fPIC',
        '-O2',
        `-DMOVED_VERSION=${v}`,
        ...(PAD[v] ? [`-DMOVED_PAD=${PAD[v]}`] : []),
        `-Wl,-soname,${SONAME}`,
        '-Wl,--build-id',
        ...RELRO[relro],
      ],
    });
  mkdirSync(join(dir, 'link'));
  copyFileSync(lib(1), join(dir, 'link', SONAME));
  const exe = compile({
    sources: ['region/moved_main.c'],
    out: 'moved_main',
    flags: ['-O2', ...RELRO[relro]],
    libs: [`-L${join(dir, 'link')}`, `-l:${SONAME}`],
  });
  const targets: Target[] = [];
  let n = 0;
  return {
    lib,
    pack(from, to) {
      const out = join(dir, `fix-${from}-${to}.ulp`);
      ok(runCli('ulp-pack', [lib(from), lib(to), '-o', out]));
      return out;
    },
    start(version) {
      const run = join(dir, `run-${n++}`);
      mkdirSync(run);
      copyFileSync(lib(version), join(run, SONAME));
      const t = startTarget([exe], { LD_LIBRARY_PATH: run });
      targets.push(t);
      return t;
    },
    dispose() {
      for (const t of targets) t.dispose(); // the children die with their parent (PR_SET_PDEATHSIG)
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function lines(out: string): Line[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('who='))
    .map(
      (l) =>
        Object.fromEntries(
          l.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
        ) as Line,
    );
}

async function linesAfter(t: Target, mark: number, pred: (ls: Line[]) => boolean): Promise<Line[]> {
  const out = await t.waitFor((o) => pred(lines(o.slice(mark))), 20_000);
  return lines(out.slice(mark));
}

const rounds = (ls: Line[], who = 'parent') => ls.filter((l) => l.who === who && l.round !== undefined);

/** Every round of a process adds exactly `step` to both counters: the state was kept, nothing else wrote it. */
function assertCounts(ls: Line[], step: number, what: string): void {
  assert.ok(ls.length > 1, `no lines of ${what}`);
  for (let i = 1; i < ls.length; i++) {
    assert.equal(
      BigInt(ls[i]!.value!) - BigInt(ls[i - 1]!.value!),
      BigInt(step),
      `${what}: value ${ls[i - 1]!.value} -> ${ls[i]!.value} at round ${ls[i]!.round}`,
    );
  }
  for (const l of ls)
    assert.equal(
      l.total,
      l.value,
      `${what}: the RIP-relative counter and the GOT-reached one are the same state (round ${l.round})`,
    );
}

/** Round lines printed after `mark` by the parent, at least `n`, all of `version`. */
async function runsVersion(t: Target, mark: number, version: number, n = 4): Promise<Line[]> {
  const ls = rounds(await linesAfter(t, mark, (l) => rounds(l).length >= n));
  for (const l of ls) {
    assert.equal(l.version, String(version), `round ${l.round} runs version ${l.version}`);
    assert.equal(
      l.handler,
      String(1 + 100 * version),
      `round ${l.round}: the function pointer in .data calls version ${version}'s handler`,
    );
    assert.equal(
      l.label,
      'note',
      `round ${l.round}: the RELRO pointer into the region finds the shared .data`,
    );
    assert.equal(
      l.pick,
      String(1 + 10 * version),
      `round ${l.round}: the local IFUNC's slot holds version ${version}'s choice`,
    );
  }
  return ls;
}

/** The runtime start of each mapping of the shared data in the process. */
function dataMappings(pid: number): bigint[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(DATA))
    .map((l) => BigInt('0x' + l.split('-')[0]));
}

for (const relro of ['full', 'partial'] as Relro[]) {
  describe(`ulp-trigger: a build whose writable region moved by whole pages (${relro} RELRO)`, function () {
    this.timeout(180_000);
    let lab: Lab;
    before(() => {
      lab = buildLab(relro);
      // The premise: v2's region lies elsewhere than v1's, with the same size.
      const [r1, r2] = [1, 2].map((v) => writableRegion(parseElf(readFileSync(lab.lib(v))))!);
      assert.equal(r2!.start - r1!.start, 0x2000n, 'v2 has its region two pages further on');
      assert.equal(r2!.end - r2!.start, r1!.end - r1!.start);
    });
    after(() => lab?.dispose());

    it('applies: the state is kept, the new code runs on it, a child forked afterwards gets private data; reverts', async () => {
      const fix = lab.pack(1, 2);
      const t = lab.start(1);
      await runsVersion(t, 0, 1, 3);

      const applied = trigger(String(t.pid), fix, '--json').json;
      assert.match(
        applied.outcome,
        /^applied(-partly)?$/,
        JSON.stringify(applied.switch?.redirects?.uncovered),
      );
      assert.equal(applied.switch.aliasedNow, true);
      assert.equal(applied.switch.pointers.retargeted, 1, 'moved_handler, found by its region offset');
      let mark = t.output().length;
      await runsVersion(t, mark, 2);
      // Both builds map the same pages, each at its own region: v1's at its vaddr, v2's two pages further into its image.
      const maps = dataMappings(t.pid);
      assert.equal(maps.length, 2, 'the loader build and the staged build both map the shared data');

      process.kill(t.pid, 'SIGUSR1');
      const ls = await linesAfter(t, mark, (l) => rounds(l, 'child').length >= 5 && rounds(l).length >= 8);
      const child = ls.find((l) => l.event === 'forked')!.child!;
      const kids = rounds(ls, 'child');
      assert.ok(
        kids.every((k) => k.version === '2' && k.handler === '201' && k.pick === '21' && k.label === 'note'),
        'the child runs the live build',
      );
      assertCounts(kids, 1000, 'child');
      assertCounts(rounds(ls), 1, 'parent after the fork');
      const [pi, ci] = [dataMappings(t.pid), dataMappings(Number(child))];
      assert.deepEqual(ci, pi, 'the child maps its copy at both builds’ regions');

      const reverted = trigger(String(t.pid), fix, '--revert', '--json').json;
      assert.match(reverted.outcome, /^reverted(-partly)?$/);
      mark = t.output().length;
      await runsVersion(t, mark, 1);
      assertCounts(rounds(lines(t.output())), 1, 'parent over apply and revert');
      assertCounts(rounds(lines(t.output()), 'child'), 1000, 'child over the parent’s revert');
      assert.ok(t.alive());
    });

    it('refuses a bundle whose report was made for another region than its build has, and leaves the process as it was', async () => {
      const fix = lab.pack(1, 2);
      const b = decodeBundle(readFileSync(fix));
      const m = structuredClone(b.manifest);
      const w = m.forward.report.writable!;
      w.to = { start: w.start, end: w.end }; // claims the new build's region did not move
      const forged = `${fix}.forged.ulp`;
      writeFileSync(forged, encodeBundle({ manifest: m, oldBuild: b.oldBuild, newBuild: b.newBuild }));
      const t = lab.start(1);
      await runsVersion(t, 0, 1, 2);
      const before = processState(t.pid);
      const r = runCli('ulp-trigger', [String(t.pid), forged, '--json']);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.equal(r.json.error.code, 'TRIGGER_LAYOUT_MISMATCH');
      assert.match(
        r.json.error.message,
        /keeps its writable region at \[0x[0-9a-f]+, 0x[0-9a-f]+\), but the bundle's report was made for/,
      );
      const after = processState(t.pid);
      assert.equal(after.maps, before.maps, 'mappings changed');
      assert.deepEqual(after.slots, before.slots, 'a slot changed');
      await runsVersion(t, t.output().length, 1, 2);
    });

    it('a process started on the moved build is reverted by staging the old build at its own region', async () => {
      const fix = lab.pack(1, 2);
      const t = lab.start(2);
      await runsVersion(t, 0, 2, 3);
      const r = trigger(String(t.pid), fix, '--revert', '--json').json;
      assert.match(r.outcome, /^reverted(-partly)?$/);
      assert.equal(r.switch.staged, true);
      const mark = t.output().length;
      await runsVersion(t, mark, 1);
      assertCounts(rounds(lines(t.output())), 1, 'parent');
    });
  });
}

describe('ulp-trigger: stacking across a moved region', function () {
  this.timeout(180_000);
  let lab: Lab;
  before(() => {
    lab = buildLab('full');
  });
  after(() => lab?.dispose());

  it('v1 -> v2 (region moved) -> v3 (not moved), then reverts in order back to v1', async () => {
    const a = lab.pack(1, 2);
    const b = lab.pack(2, 3);
    const t = lab.start(1);
    await runsVersion(t, 0, 1, 3);
    for (const [args, version] of [
      [[a], 2],
      [[b], 3],
      [[b, '--revert'], 2],
      [[a, '--revert'], 1],
      [[a], 2],
      [[b], 3],
    ] as const) {
      trigger(String(t.pid), ...args);
      await runsVersion(t, t.output().length, version);
    }
    // Reverting the bottom patch undoes the whole stack.
    trigger(String(t.pid), a, '--revert');
    await runsVersion(t, t.output().length, 1);
    assertCounts(rounds(lines(t.output())), 1, 'parent over the whole stack');
    assert.ok(t.alive());
  });
});
