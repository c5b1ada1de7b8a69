/**
 * The layout rule's stack exception (packer/analyze/confinement.ts,
 * stack-structs.ts) on gcc builds of test/fixtures/layout/libstack.c: a
 * struct on an exported function's stack, passed to static helpers, gains a
 * field in the middle. Accepted with the condition that names the creator
 * only while every shifted access is provably on that stack, in both builds;
 * refused when the same struct is also reached through a global, through a
 * pointer the caller passes, or by a helper whose address is taken.
 */
import assert from 'node:assert/strict';
import { compile } from '../../../lab/compile.js';
import { ulpPack } from '../../../lab/packer/run.js';

function libstack(defines: string[], extra: string[] = []): string {
  const tag = [...defines, ...extra].join('').replace(/[^A-Za-z0-9]/g, '') || 'base';
  return compile({
    sources: ['layout/libstack.c'],
    out: `libstack-${tag}.so`,
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      '-s',
      '-Wl,-soname,libstack.so.1',
      '-Wl,--build-id',
      ...defines,
      ...extra,
    ],
  });
}

function check(flavour: string[], extra: string[] = []) {
  const r = ulpPack([
    libstack(flavour, extra),
    libstack([...flavour, '-DGROWN'], extra),
    '--check',
    '--json',
  ]);
  return { r, f: r.json?.forward, b: r.json?.reverse };
}

const finding = (dir: any, code: string) =>
  dir.categories.layout.findings.find((x: { code: string }) => x.code === code);

describe('ulp-pack: structures that live only on a stack frame', function () {
  this.timeout(120_000);

  for (const extra of [[], ['-fno-omit-frame-pointer']]) {
    it(`a field added to a struct on stack_run's stack, used by static helpers${extra.length ? ' (frame pointer)' : ''}: compatible on the condition naming stack_run, both ways`, () => {
      const { r, f, b } = check([], extra);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      for (const [dir, build] of [
        [f, 'old'],
        [b, 'new'],
      ] as const) {
        assert.equal(dir.verdict, 'compatible', JSON.stringify(dir.categories.layout));
        assert.equal(dir.categories.layout.verdict, 'compatible');
        const moved = finding(dir, 'LAYOUT_FIELD_MOVED');
        assert.equal(moved.severity, 'warning', 'the shifted fields are still shown');
        const confined = finding(dir, 'LAYOUT_STACK_CONFINED');
        assert.ok(confined, JSON.stringify(dir.categories.layout));
        assert.deepEqual(confined.symbols, ['stack_run']);
        assert.match(confined.message, new RegExp(`no thread is inside it in the ${build} build`));
        assert.equal(dir.conditions.length, 1);
        assert.equal(dir.conditions[0].kind, 'inactive');
        assert.deepEqual(
          dir.conditions[0].functions.map((x: { name: string }) => x.name),
          ['stack_run'],
        );
      }
      assert.match(r.stdout, /LAYOUT_STACK_CONFINED/);
    });
  }

  const refused: Array<[string, string[], RegExp]> = [
    [
      'its address also stored in a global that an exported function reads',
      ['-DGLOBAL'],
      /stack_peek.*exported/,
    ],
    ['the helpers also run on an object the caller passes', ['-DHEAP'], /not derived from/],
    ['a helper whose address is taken', ['-DTAKEN'], /a relocation holds its address/],
    [
      'in a fixed-size union, so that the creator does not change and gets no entry redirect',
      ['-DPADDED'],
      /the creator stack_run of the (old|new) build is unchanged, so it gets no entry redirect/,
    ],
  ];
  for (const [what, flavour, why] of refused) {
    it(`the same struct, ${what}: refused, saying why`, () => {
      const { r, f, b } = check(flavour);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      for (const dir of [f, b]) {
        assert.equal(dir.verdict, 'incompatible');
        assert.equal(finding(dir, 'LAYOUT_FIELD_MOVED').severity, 'error');
        assert.equal(finding(dir, 'LAYOUT_STACK_CONFINED'), undefined);
        const not = finding(dir, 'LAYOUT_NOT_STACK_CONFINED');
        assert.ok(not, JSON.stringify(dir.categories.layout));
        assert.match(not.details.reasons.join('\n'), why);
        assert.equal(dir.conditions, undefined);
      }
    });
  }
});
