/**
 * Entry redirects (runtime/loader/redirects.ts) on a real process
 * (test/fixtures/redirects): pointers into the library taken before a switch
 * — copied from a RELRO ops table, returned by a getter and kept on the heap,
 * a callback in the library's .bss, a dlsym result — run the live build after
 * the apply and the old one after the revert, as do the PLT call and the
 * internal call, while 8 threads call every route and check each result. A
 * thread spinning inside an old function keeps running there and its next
 * call is new code. Pointers taken while patched reach the reverted code;
 * stacked builds v1 -> v2 -> v3 revert in either order.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { HardLab, libStatus, linesAfter, trigger, type Line, type Relro } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';
import { loadSegments, SEGMENT_LAYOUTS } from '../../../lab/versioned.js';

const SONAME = 'libroute.so.1';
const ROUTES = ['plt', 'ops', 'heap', 'cb', 'dlsym', 'internal'];
const LATE = ['late_ops', 'late_heap', 'late_dlsym'];

/** The round lines printed after `mark`, once two complete ones are there (the first may predate the switch). */
async function roundAfter(t: Target, mark: number, keys: string[] = ROUTES): Promise<Line> {
  const ls = await linesAfter(
    t,
    mark,
    (xs) => xs.filter((l) => l.round && keys.every((k) => l[k] !== undefined)).length >= 2,
  );
  return ls.filter((l) => l.round && keys.every((k) => l[k] !== undefined)).at(-1)!;
}

function expectVersion(line: Line, v: number, keys: string[]): void {
  for (const k of keys)
    assert.equal(line[k], String(v), `${k} ran build v${line[k]}, expected v${v}: ${JSON.stringify(line)}`);
}

function noBadResults(t: Target): void {
  assert.ok(
    !/BAD/.test(t.output()),
    t
      .output()
      .split('\n')
      .find((l) => l.startsWith('BAD')),
  );
  assert.ok(t.alive(), 'the target is alive');
}

const VARIANTS: Array<{
  name: string;
  flags: string[];
  relro: Relro;
  tag?: string;
  /** The PT_LOADs the flags must give (lab/versioned.ts loadSegments). */
  loads?: readonly string[];
}> = [
  { name: 'full RELRO', flags: [], relro: 'full' },
  { name: 'full RELRO, with endbr64 (-fcf-protection)', flags: ['-fcf-protection=full'], relro: 'full' },
  { name: 'partial RELRO', flags: [], relro: 'partial' },
  // Code, headers, .rodata and .eh_frame in one segment: function extents and staging must not mix them up.
  {
    name: 'partial RELRO, -z noseparate-code',
    flags: [...SEGMENT_LAYOUTS['noseparate-code'].flags],
    relro: 'partial',
    tag: 'route-noseparate',
    loads: SEGMENT_LAYOUTS['noseparate-code'].loads,
  },
];

for (const variant of VARIANTS) {
  describe(`entry redirects: six routes into a changed library, ${variant.name}`, function () {
    this.timeout(180_000);
    const lab = new HardLab(
      {
        route: {
          soname: SONAME,
          sources: ['redirects/libroute.c'],
          flags: variant.flags,
          relro: variant.relro,
        },
      },
      variant.tag ?? `route-${variant.flags.length}-${variant.relro}`,
    );
    let exe: string;
    before(() => {
      if (variant.loads) assert.deepEqual(loadSegments(lab.lib('route', 1)), variant.loads);
      exe = lab.exe('route_main', {
        sources: ['redirects/route_main.c'],
        needs: ['route'],
        libs: ['-ldl'],
        flags: variant.flags,
        relro: variant.relro,
      });
      lab.pack('route', 1, 2);
      lab.pack('route', 2, 3);
    });
    after(() => lab.dispose());

    it('every route runs the new build after the apply and the old one after the revert, pointers taken while patched included', async () => {
      const t = lab.start(exe, { route: 1 });
      expectVersion(await roundAfter(t, 0), 1, ROUTES);
      const fix = lab.bundlePath('route', 1, 2);

      const applied = trigger(String(t.pid), fix, '--json').json;
      assert.equal(applied.outcome, 'applied', JSON.stringify(applied.switch.redirects));
      assert.deepEqual(applied.switch.redirects.uncovered, []);
      // route_plt, route_dlsym, helper, op_a, getter_fn, cb_fn, route_spin, route_block: every changed function.
      assert.equal(applied.switch.redirects.active, 8);
      expectVersion(await roundAfter(t, t.output().length), 2, ROUTES);

      // Pointers taken now point into v2.
      let mark = t.output().length;
      t.kill('SIGUSR1');
      expectVersion(await roundAfter(t, mark, [...ROUTES, ...LATE]), 2, [...ROUTES, ...LATE]);

      const st = libStatus(t.pid, SONAME);
      assert.deepEqual(
        st.patches.map((p: { state: string }) => p.state),
        ['applied'],
      );
      assert.deepEqual(st.oldCode, { known: true, redirected: 8, reachable: [] });

      const reverted = trigger(String(t.pid), fix, '--revert', '--json').json;
      assert.equal(reverted.outcome, 'reverted', JSON.stringify(reverted.switch.redirects));
      assert.equal(reverted.switch.redirects.restored, 8, 'the old build gets its own entries back');
      assert.equal(
        reverted.switch.redirects.active,
        8,
        "the new build's changed functions jump back to the old ones",
      );
      mark = t.output().length;
      expectVersion(await roundAfter(t, mark, [...ROUTES, ...LATE]), 1, [...ROUTES, ...LATE]);
      assert.deepEqual(libStatus(t.pid, SONAME).oldCode, { known: true, redirected: 8, reachable: [] });

      // Applied again: the new build's jumps are taken back, the old build's written again.
      const again = trigger(String(t.pid), fix, '--json').json;
      assert.equal(again.outcome, 'applied');
      assert.deepEqual([again.switch.redirects.written, again.switch.redirects.restored], [8, 8]);
      expectVersion(await roundAfter(t, t.output().length, [...ROUTES, ...LATE]), 2, [...ROUTES, ...LATE]);
      noBadResults(t);
      // A spinning or busy target left running would starve the next test's trigger on a small machine.
      t.dispose();
    });

    // Where a thread is does not depend on the RELRO kind or the segment layout: the thread cases run on the
    // first variant, and the parked one on the endbr64 variant too (its entry bytes are 4 longer).
    const threads = variant === VARIANTS[0];
    const parked = threads || variant === VARIANTS[1];
    if (threads)
      it('a thread spinning inside an old function keeps running there; its next call is new code', async () => {
        const t = lab.start(exe, { route: 1 }, ['spin']);
        await roundAfter(t, 0);
        await linesAfter(t, 0, (ls) => ls.some((l) => l.spinning !== undefined));
        trigger(String(t.pid), lab.bundlePath('route', 1, 2));
        await roundAfter(t, t.output().length);
        // Each SIGUSR2 is sent only after the spinner said which generation it waits out (see route_main.c).
        const spinAfter = async (mark: number) => {
          t.kill('SIGUSR2');
          const ls = await linesAfter(t, mark, (xs) => {
            const i = xs.findIndex((l) => l.spin !== undefined);
            return i >= 0 && xs.slice(i + 1).some((l) => l.spinning !== undefined);
          });
          return ls.find((l) => l.spin !== undefined)!.spin;
        };
        assert.equal(
          await spinAfter(t.output().length),
          '1',
          'the call that was running at the switch finished in the old build',
        );
        assert.equal(
          await spinAfter(t.output().length),
          '2',
          'the next call through the same old pointer runs the new build',
        );
        noBadResults(t);
        // A spinning or busy target left running would starve the next test's trigger on a small machine.
        t.dispose();
      });

    if (parked)
      it('a thread parked inside the first bytes of a changed function: that entry is left and named, the rest applied', async () => {
        const t = lab.start(exe, { route: 1 }, ['block']);
        await roundAfter(t, 0);
        // The blocker thread is in pause(2), 4 bytes into route_block (after endbr64: 8), before the trigger runs.
        const inPause = (tid: string) => {
          try {
            return readFileSync(`/proc/${t.pid}/task/${tid}/syscall`, 'utf8').startsWith('34 ');
          } catch {
            return false;
          }
        };
        await t.waitFor(() => readdirSync(`/proc/${t.pid}/task`).some(inPause));
        const fix = lab.bundlePath('route', 1, 2);
        const applied = trigger(String(t.pid), fix, '--json').json;
        assert.equal(applied.outcome, 'applied-partly');
        assert.deepEqual(
          applied.switch.redirects.uncovered.map((u: { fn: { name: string }; reason: string }) => [
            u.fn.name,
            u.reason,
          ]),
          [['route_block', 'a thread was executing its entry bytes at every attempt']],
        );
        assert.equal(applied.switch.redirects.active, 7);
        expectVersion(await roundAfter(t, t.output().length), 2, ROUTES);
        const st = libStatus(t.pid, SONAME);
        assert.deepEqual(
          st.patches.map((p: { state: string }) => p.state),
          ['applied-partly'],
        );
        assert.deepEqual(
          st.oldCode.reachable.map((u: { fn: { name: string } }) => u.fn.name),
          ['route_block'],
        );
        const text = trigger('--status', String(t.pid)).stdout;
        assert.match(text, /patch [0-9a-f]{12}: applied-partly/);
        assert.match(text, /route_block in build [0-9a-f]{12}: a thread was executing its entry bytes/);
        // Nothing of v2 runs under a thread: the revert is complete.
        const reverted = trigger(String(t.pid), fix, '--revert', '--json').json;
        assert.equal(reverted.outcome, 'reverted', JSON.stringify(reverted.switch.redirects.uncovered));
        expectVersion(await roundAfter(t, t.output().length), 1, ROUTES);
        noBadResults(t);
        // A spinning or busy target left running would starve the next test's trigger on a small machine.
        t.dispose();
      });

    it('stacked v1 -> v2 -> v3 reverts in either order; pointers taken at v3 follow', async () => {
      const t = lab.start(exe, { route: 1 });
      await roundAfter(t, 0);
      t.kill('SIGUSR1');
      await roundAfter(t, 0, [...ROUTES, ...LATE]);
      const [p12, p23] = [lab.bundlePath('route', 1, 2), lab.bundlePath('route', 2, 3)];
      const all = [...ROUTES, ...LATE];
      const step = async (args: string[], outcome: string, v: number) => {
        const r = trigger(String(t.pid), ...args, '--json').json;
        assert.equal(r.outcome, outcome, JSON.stringify(r.switch?.redirects));
        expectVersion(await roundAfter(t, t.output().length, all), v, all);
      };
      trigger(String(t.pid), p12);
      await step([p23], 'applied', 3);
      const st = libStatus(t.pid, SONAME);
      // v1's and v2's changed functions all jump straight to v3.
      assert.deepEqual(st.oldCode, { known: true, redirected: 16, reachable: [] });
      let mark = t.output().length;
      t.kill('SIGUSR1');
      expectVersion(await roundAfter(t, mark, all), 3, all);
      // The patch below first: the whole stack goes, down to v1.
      await step([p12, '--revert'], 'reverted', 1);
      assert.deepEqual(libStatus(t.pid, SONAME).oldCode, { known: true, redirected: 16, reachable: [] });
      // Up again, then the top first.
      await step([p12], 'applied', 2);
      await step([p23], 'applied', 3);
      mark = t.output().length;
      t.kill('SIGUSR1');
      expectVersion(await roundAfter(t, mark, all), 3, all);
      await step([p23, '--revert'], 'reverted', 2);
      await step([p12, '--revert'], 'reverted', 1);
      noBadResults(t);
      // A spinning or busy target left running would starve the next test's trigger on a small machine.
      t.dispose();
    });
  });
}
