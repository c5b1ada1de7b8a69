/**
 * One address per datum: after a switch, the staged build's code reaches the
 * library's globals at the addresses the program has been using, not at the
 * staged build's alias of them. Real processes (test/fixtures/datarefs):
 *   - a list whose sentinel points at itself, walked by four threads in a
 *     loop, and the sentinel handed out before the patch: both recognised
 *     after apply, revert, stacking, and a revert that stages the old build;
 *   - a thread blocked on the library's static mutex when the patch lands
 *     wakes when another thread unlocks it through the new code;
 *   - refusals when a build's references are not all known or cannot reach
 *     the data from anywhere free, and what --allow-aliasing accepts instead.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeBundle, decodeDataRefs, encodeBundle, encodeDataRefs } from '../../../patches/index.js';
import { runCli } from '../../../lab/cli.js';
import { compile } from '../../../lab/compile.js';
import { startTarget, type Target } from '../../../lab/target.js';

const RELRO = { full: ['-Wl,-z,relro,-z,now'], partial: ['-Wl,-z,relro,-z,lazy'] };
type Relro = keyof typeof RELRO;

interface Lab {
  lib(v: number): string;
  pack(from: number, to: number): string;
  start(v: number, args: string[]): Target;
  dir: string;
}

/** Versions of one fixture library, a program linked against version 1, bundles between versions. */
function lab(
  name: 'ident' | 'asm',
  relro: Relro,
  main: string | { name: string; code: string },
  defines: string[] = [],
): Lab & { dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), `ulp-datarefs-${name}-`));
  const soname = `lib${name}.so.1`;
  const lib = (v: number) =>
    compile({
      sources: [`datarefs/lib${name}.c`],
      out: soname,
      flags: [
        '-shared',
        '-fPIC',
        '-O2',
        `-DVERSION=${v}`,
        ...defines.map((d) => `-D${d}`),
        `-Wl,-soname,${soname}`,
        '-Wl,--build-id',
        ...RELRO[relro],
        '-pthread',
      ],
    });
  const link = join(dir, 'link');
  mkdirSync(link);
  copyFileSync(lib(1), join(link, soname));
  const exe = compile({
    sources: [main],
    out: `${name}_main`,
    flags: ['-O2', '-pthread', ...RELRO[relro]],
    libs: [`-L${link}`, `-l:${soname}`],
  });
  const targets: Target[] = [];
  return {
    dir,
    lib,
    pack(from, to) {
      const out = join(dir, `fix-${from}-${to}.ulp`);
      const r = runCli('ulp-pack', [lib(from), lib(to), '-o', out]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return out;
    },
    start(v, args) {
      const run = join(dir, `run-${targets.length}`);
      mkdirSync(run);
      copyFileSync(lib(v), join(run, soname));
      const t = startTarget([exe, ...args], { LD_LIBRARY_PATH: run });
      targets.push(t);
      return t;
    },
    dispose() {
      for (const t of targets) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Round = Record<string, string>;
/** Complete round lines (the last line may still be being written). */
const rounds = (out: string): Round[] =>
  out
    .slice(0, out.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.startsWith('round='))
    .map((l) => Object.fromEntries(l.split(' ').map((kv) => kv.split('=') as [string, string])));

/** The second complete round printed after `mark` (taken once a switch returned): computed entirely after that switch. */
async function roundAfter(t: Target, mark: number): Promise<Round> {
  const out = await t.waitFor((o) => rounds(o.slice(mark)).length >= 2);
  return rounds(out.slice(mark))[1]!;
}

function trigger(t: Target, args: string[]) {
  const r = runCli('ulp-trigger', [String(t.pid), ...args, '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.json;
}

/** Switches and checks the program's next round: the version it runs, the walk ends at the sentinel, the old pointer is the default object. */
async function switchTo(t: Target, args: string[], version: number) {
  const json = trigger(t, args);
  const r = await roundAfter(t, t.output().length);
  assert.equal(r.version, String(version));
  assert.equal(r.sum, String(6 * version), 'the list walk ends at the sentinel');
  assert.equal(r.default, '1', 'the pointer handed out before the patch is still the default object');
  return json;
}

function ulpMappings(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.includes('/memfd:ulp:'));
}

describe('one address per datum', function () {
  this.timeout(300_000);

  for (const relro of ['full', 'partial'] as const) {
    describe(`${relro} RELRO`, () => {
      let l: ReturnType<typeof lab>;
      before(() => {
        l = lab('ident', relro, 'datarefs/ident_main.c');
      });
      after(() => l?.dispose());

      it('the sentinel list and a pointer handed out earlier are recognised after apply, revert and re-apply, under four threads', async () => {
        const fix = l.pack(1, 2);
        const t = l.start(1, ['loop']);
        const first = rounds(await t.waitFor((o) => rounds(o).length >= 2))[0]!;
        const applied = await switchTo(t, [fix], 2);
        assert.equal(applied.switch.dataRefs.mode, 'one-address');
        assert.ok(
          applied.switch.dataRefs.code >= 10,
          `code references rewritten: ${applied.switch.dataRefs.code}`,
        );
        assert.equal(applied.aliasing, undefined);
        await switchTo(t, [fix, '--revert'], 1);
        await switchTo(t, [fix], 2);
        const last = rounds(t.output()).at(-1)!;
        assert.equal(
          last.bad,
          '0',
          'a worker saw a walk that did not end, a lost default object or a lost counter update',
        );
        for (let i = 0; i < 4; i++)
          assert.ok(Number(last[`t${i}`]) > Number(first[`t${i}`]), `thread ${i} made progress`);
      });

      it("a thread blocked on the library's static mutex wakes when another unlocks it through the new code", async () => {
        const fix = l.pack(1, 2);
        const t = l.start(1, ['wake']);
        const out = await t.waitFor((o) => /B waits tid=\d+/.test(o));
        const b = /B waits tid=(\d+)/.exec(out)![1]!;
        // B is asleep in futex(2) (syscall 202) on the mutex before the patch lands.
        await t.waitFor(() => readFileSync(`/proc/${t.pid}/task/${b}/syscall`, 'utf8').startsWith('202 '));
        trigger(t, [fix]);
        assert.ok(!/B woke/.test(t.output()));
        t.kill('SIGUSR1');
        const done = await t.waitFor((o) => /done/.test(o), 20_000);
        // A's and B's lines may come in either order: B prints as soon as it has the lock.
        assert.match(done, /A unlocked version=2\n/);
        assert.match(done, /B woke\n/);
      });
    });
  }

  describe('stacking and a revert that stages the old build', () => {
    let l: ReturnType<typeof lab>;
    before(() => {
      l = lab('ident', 'full', 'datarefs/ident_main.c');
    });
    after(() => l?.dispose());

    it("v1 -> v2 -> v3 and back: every staged build addresses the first build's data", async () => {
      const fix12 = l.pack(1, 2);
      const fix23 = l.pack(2, 3);
      const t = l.start(1, ['loop']);
      await t.waitFor((o) => rounds(o).length >= 2);
      await switchTo(t, [fix12], 2);
      await switchTo(t, [fix23], 3);
      await switchTo(t, [fix23, '--revert'], 2);
      await switchTo(t, [fix12, '--revert'], 1);
      await switchTo(t, [fix12], 2);
      assert.equal(rounds(t.output()).at(-1)!.bad, '0');
    });

    it("a process started on the new build is reverted with the old build's map", async () => {
      const fix12 = l.pack(1, 2);
      const t = l.start(2, ['loop']);
      await t.waitFor((o) => rounds(o).length >= 2);
      const reverted = await switchTo(t, [fix12, '--revert'], 1);
      assert.equal(reverted.switch.staged, true);
      assert.equal(reverted.switch.dataRefs.mode, 'one-address');
      await switchTo(t, [fix12], 2);
      await switchTo(t, [fix12, '--revert'], 1);
      assert.equal(rounds(t.output()).at(-1)!.bad, '0');
    });
  });

  describe('refusals', () => {
    let l: ReturnType<typeof lab>;
    before(() => {
      l = lab('ident', 'full', 'datarefs/ident_main.c');
    });
    after(() => l?.dispose());

    it('a bundle without maps (format 1.0) is refused untouched, and applied with --allow-aliasing, which the report says', async () => {
      const b = decodeBundle(readFileSync(l.pack(1, 2)));
      const manifest = { ...b.manifest, format: '1.0.0' } as typeof b.manifest;
      delete manifest.datarefs;
      const old = join(l.dir, 'format-1.0.ulp');
      writeFileSync(old, encodeBundle({ manifest, oldBuild: b.oldBuild, newBuild: b.newBuild }));
      // Without worker threads: under plain aliasing a waiter on the mutex could sleep forever (see the wake test).
      const t = l.start(1, ['loop', 'alone']);
      await t.waitFor((o) => rounds(o).length >= 2);
      for (const extra of [[], ['--dry-run']]) {
        const r = runCli('ulp-trigger', [String(t.pid), old, '--json', ...extra]);
        assert.equal(r.code, 2, r.stdout + r.stderr);
        assert.equal(r.json.error.code, 'TRIGGER_DATAREFS_MISSING');
        assert.match(r.json.error.hint, /--allow-aliasing/);
      }
      assert.deepEqual(ulpMappings(t.pid), [], 'nothing was mapped into the process');
      const r = runCli('ulp-trigger', [String(t.pid), old, '--allow-aliasing', '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.json.switch.dataRefs.mode, 'aliasing');
      assert.match(r.json.aliasing.reason, /no data-reference map/);
      // What plain aliasing does, measured: the new code's walk never meets the sentinel, the old pointer is not the default.
      const after = await roundAfter(t, t.output().length);
      assert.deepEqual([after.version, after.sum, after.default], ['2', '-1', '0']);
      const text = runCli('ulp-trigger', [String(t.pid), old, '--revert']);
      assert.equal(text.code, 0, text.stderr);
    });

    it('a damaged map, and a map that does not fit its build, are bad bundles (exit 3), the process untouched', async () => {
      const b = decodeBundle(readFileSync(l.pack(1, 2)));
      const stored = b.manifest.datarefs!;
      const variant = (name: string, neu: typeof stored.new) => {
        const path = join(l.dir, `${name}.ulp`);
        writeFileSync(
          path,
          encodeBundle({
            manifest: { ...b.manifest, datarefs: { old: stored.old, new: neu } },
            oldBuild: b.oldBuild,
            newBuild: b.newBuild,
          }),
        );
        return path;
      };
      const truncated = variant('truncated', {
        ...stored.new!,
        code: { ...stored.new!.code, packed: stored.new!.code.packed.slice(0, 8) },
      });
      const map = decodeDataRefs(stored.new!);
      map.code[3] = {
        ...map.code[3]!,
        offset: (map.code[3]!.offset + 8) % (map.region.end - map.region.start),
      };
      const shifted = variant('shifted', encodeDataRefs(map));
      const t = l.start(1, ['loop']);
      await t.waitFor((o) => rounds(o).length >= 2);
      for (const [path, code] of [
        [truncated, 'BUNDLE_MANIFEST_INVALID'],
        [shifted, 'LOADER_DATAREFS_MISMATCH'],
      ] as const) {
        for (const extra of [[], ['--allow-aliasing']]) {
          const r = runCli('ulp-trigger', [String(t.pid), path, '--json', ...extra]);
          assert.equal(r.code, 3, r.stdout + r.stderr);
          assert.equal(r.json.error.code, code);
        }
      }
      assert.deepEqual(ulpMappings(t.pid), [], 'nothing was mapped into the process');
      assert.equal(rounds(t.output()).at(-1)!.version, '1');
    });

    it('a process whose address space around the library is full is refused untouched: no build could reach the data', async () => {
      const fix = l.pack(1, 2);
      const t = l.start(1, ['wall', 'alone']);
      await t.waitFor((o) => rounds(o).length >= 2);
      const r = runCli('ulp-trigger', [String(t.pid), fix, '--json']);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.equal(r.json.error.code, 'LOADER_DATAREFS_OUT_OF_REACH');
      assert.deepEqual(ulpMappings(t.pid), [], 'nothing was mapped into the process');
      const ok = runCli('ulp-trigger', [String(t.pid), fix, '--allow-aliasing', '--json']);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.equal(ok.json.switch.dataRefs.mode, 'aliasing');
      assert.match(ok.json.aliasing.reason, /no address within reach/);
      assert.equal((await roundAfter(t, t.output().length)).version, '2');
      assert.ok(ulpMappings(t.pid).length > 0);
    });

    it('a build whose map leaves code uncovered is refused with the ranges named, and applied with --allow-aliasing', async () => {
      const main = {
        name: 'asm_main.c',
        code: '#include <stdio.h>\n#include <unistd.h>\nint asm_version(void);\nlong asm_table_sum(void);\nint main(void) {\n  for (long i = 0;; i++) {\n    printf("round=%ld version=%d sum=%ld\\n", i, asm_version(), asm_table_sum());\n    fflush(stdout);\n    usleep(20000);\n  }\n}\n',
      };
      const a = lab('asm', 'full', main, ['STRAY']);
      try {
        const fix = a.pack(1, 2);
        const stored = decodeBundle(readFileSync(fix)).manifest.datarefs!.new!;
        assert.equal(stored.coverage.proven, false);
        const range = stored.coverage.uncovered[0]!;
        const t = a.start(1, []);
        await t.waitFor((o) => /round=1 /.test(o));
        const r = runCli('ulp-trigger', [String(t.pid), fix, '--json']);
        assert.equal(r.code, 2, r.stdout + r.stderr);
        assert.equal(r.json.error.code, 'TRIGGER_DATAREFS_UNPROVEN');
        assert.ok(r.json.error.message.includes(`[${range.start}, ${range.end})`), r.json.error.message);
        assert.deepEqual(ulpMappings(t.pid), []);
        const ok = runCli('ulp-trigger', [String(t.pid), fix, '--allow-aliasing', '--json']);
        assert.equal(ok.code, 0, ok.stdout + ok.stderr);
        assert.deepEqual(
          ok.json.aliasing.uncovered.map((u: { start: string }) => u.start),
          [range.start],
        );
        // What the map covers is still rewritten: only the uncovered bytes would use the alias.
        assert.equal(ok.json.switch.dataRefs.mode, 'one-address');
        const mark = t.output().length;
        await t.waitFor((o) => /version=2 sum=12\n/.test(o.slice(mark)));
      } finally {
        a.dispose();
      }
    });
  });
});
