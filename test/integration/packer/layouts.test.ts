/**
 * Structure layouts compared between two builds: the pure comparison on
 * hand-made layouts, then real gcc builds of a library whose heap object is
 * reached only through an opaque handle (a field added in the middle, one
 * added at the end, a code-only change), with the DWARF in the build or in
 * a separate debug file found by build-id or by name under --debug-dir.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isUlpError } from '../../../common/errors.js';
import { parseElf } from '../../../elf/index.js';
import type { StructLayout, StructLayouts } from '../../../elf/debug-info.js';
import {
  analyzeLayoutsFromDwarf,
  compareStructLayouts,
  layoutFindings,
  structLayoutsOf,
} from '../../../packer/analyze/layouts.js';
import { makePair } from '../../../packer/analyze/pair.js';
import { createBuild, type Build } from '../../../packer/model.js';
import { FIXTURES, compile } from '../../../lab/compile.js';
import { libfix } from '../../../lab/packer/fixtures.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';

const dir = tempDir();
after(() => dir.dispose());

function layout(
  name: string,
  size: number,
  members: Array<[string, number, number?]>,
  units = ['a.c'],
): StructLayout {
  return {
    kind: 'struct',
    name,
    size,
    members: members.map(([n, offset, s]) => ({ name: n, offset, size: s ?? 4, type: 'int' })),
    units,
    ambiguous: false,
  };
}

function layouts(...ls: StructLayout[]): StructLayouts {
  const byName = new Map<string, StructLayout[]>();
  for (const l of ls) byName.set(l.name, [...(byName.get(l.name) ?? []), l]);
  for (const v of byName.values()) if (v.length > 1) for (const l of v) l.ambiguous = true;
  return { byName, units: 1, versions: [5] };
}

type Variant = 'base' | 'mid' | 'end' | 'code';

/** libhandle.so.1 with -g; `variant` picks the change (test/fixtures/layouts/handle.c). */
function handle(variant: Variant, extra: string[] = ['-g']): string {
  const flags = ['-shared', '-fPIC', '-O2', '-Wl,-soname,libhandle.so.1', '-Wl,--build-id', ...extra];
  if (variant !== 'base') flags.push(`-D${variant.toUpperCase()}`);
  return compile({ sources: ['layouts/handle.c'], out: 'libhandle.so.1', flags });
}

function build(label: string, path: string): Build {
  const bytes = readFileSync(path);
  return createBuild(label, path, bytes, parseElf(bytes));
}

/** A stripped copy of `lib` and its debug file (objcopy --only-keep-debug), as a distribution splits them. */
function split(lib: string, name: string, compress = false): { stripped: string; debug: string } {
  const folder = join(dir.path, name);
  mkdirSync(folder, { recursive: true });
  const debug = join(folder, 'full.debug');
  execFileSync('objcopy', [
    '--only-keep-debug',
    ...(compress ? ['--compress-debug-sections=zlib'] : []),
    lib,
    debug,
  ]);
  const stripped = join(folder, basename(lib));
  execFileSync('strip', ['--strip-debug', '-o', stripped, lib]);
  return { stripped, debug };
}

/** Places `debug` where the Debian dbgsym packages put it: <dir>/.build-id/xx/rest.debug. */
function placeByBuildId(debugDir: string, lib: string, debug: string): string {
  const id = parseElf(readFileSync(lib)).buildId!;
  const at = join(debugDir, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`);
  mkdirSync(join(debugDir, '.build-id', id.slice(0, 2)), { recursive: true });
  copyFileSync(debug, at);
  return at;
}

describe('packer: structure layouts from DWARF', function () {
  this.timeout(120_000);

  describe('compareStructLayouts (pure)', () => {
    it('equal layouts, and layouts that differ only in member names or type spellings: no change', () => {
      const a = layout('struct s', 8, [
        ['x', 0],
        ['y', 4],
      ]);
      const renamed = layout('struct s', 8, [
        ['x', 0],
        ['why', 4],
      ]);
      renamed.members[1]!.type = 'unsigned int';
      assert.deepEqual(
        compareStructLayouts(
          layouts(a),
          layouts(
            layout('struct s', 8, [
              ['x', 0],
              ['y', 4],
            ]),
          ),
        ),
        [],
      );
      assert.deepEqual(compareStructLayouts(layouts(a), layouts(renamed)), []);
    });

    it('a field added in the middle: the size and every later member move', () => {
      const c = compareStructLayouts(
        layouts(
          layout('struct s', 12, [
            ['a', 0],
            ['b', 4],
            ['c', 8],
          ]),
        ),
        layouts(
          layout('struct s', 16, [
            ['a', 0],
            ['n', 4],
            ['b', 8],
            ['c', 12],
          ]),
        ),
      );
      assert.deepEqual(c, [
        {
          struct: 'struct s',
          oldSize: 12,
          newSize: 16,
          moved: [
            { name: 'b', from: 4, to: 8 },
            { name: 'c', from: 8, to: 12 },
          ],
          resized: [],
          added: [{ name: 'n', offset: 4 }],
          removed: [],
        },
      ]);
    });

    it('a field added in padding (same size, nothing moved) is still a change; so is a removed or resized one', () => {
      const old = layout('struct s', 8, [
        ['a', 0],
        ['b', 4, 1],
      ]);
      const padded = layout('struct s', 8, [
        ['a', 0],
        ['b', 4, 1],
        ['c', 5, 1],
      ]);
      assert.deepEqual(compareStructLayouts(layouts(old), layouts(padded))[0]?.added, [
        { name: 'c', offset: 5 },
      ]);
      assert.deepEqual(compareStructLayouts(layouts(padded), layouts(old))[0]?.removed, [
        { name: 'c', offset: 5 },
      ]);
      const wider = layout('struct s', 8, [['a', 0, 8]]);
      const narrow = layout('struct s', 8, [['a', 0, 4]]);
      assert.deepEqual(compareStructLayouts(layouts(narrow), layouts(wider))[0]?.resized, [
        { name: 'a', from: 4, to: 8, fromType: 'int', toType: 'int' },
      ]);
    });

    it('bit-fields moved within a byte are moves', () => {
      const a = layout('struct s', 4, [['f', 0]]);
      a.members[0]!.bitOffset = 3;
      a.members[0]!.bitSize = 2;
      const b = layout('struct s', 4, [['f', 0]]);
      b.members[0]!.bitOffset = 5;
      b.members[0]!.bitSize = 2;
      assert.deepEqual(compareStructLayouts(layouts(a), layouts(b))[0]?.moved, [
        { name: 'f', from: 0, to: 0, fromBit: 3, toBit: 5 },
      ]);
    });

    it('only structures both builds define are compared', () => {
      assert.deepEqual(
        compareStructLayouts(
          layouts(layout('struct gone', 4, [['a', 0]])),
          layouts(layout('struct new', 8, [['a', 0]])),
        ),
        [],
      );
    });

    it('an ambiguous name: definitions are paired by compile unit, unpaired differences are marked ambiguous', () => {
      const a1 = layout(
        'struct state',
        8,
        [
          ['a', 0],
          ['b', 4],
        ],
        ['a.c'],
      );
      const b1 = layout('struct state', 24, [['x', 0, 8]], ['b.c']);
      const a2 = layout(
        'struct state',
        12,
        [
          ['a', 0],
          ['b', 4],
          ['c', 8],
        ],
        ['a.c'],
      );
      assert.deepEqual(
        compareStructLayouts(layouts(a1, b1), layouts(a1, b1)),
        [],
        'the same two definitions',
      );
      const changed = compareStructLayouts(layouts(a1, b1), layouts(a2, b1));
      assert.equal(changed.length, 1);
      assert.equal(changed[0]!.oldSize, 8);
      assert.equal(changed[0]!.newSize, 12);
      assert.equal(changed[0]!.ambiguous, undefined, 'paired by a.c');
      const moved = layout(
        'struct state',
        12,
        [
          ['a', 0],
          ['b', 4],
          ['c', 8],
        ],
        ['c.c'],
      );
      const unpaired = compareStructLayouts(layouts(a1, b1), layouts(moved, b1));
      assert.equal(unpaired.length, 1);
      assert.equal(unpaired[0]!.ambiguous, true);
    });

    it("an ambiguous name: one unit takes over the other's layout (the new build has one definition for both)", () => {
      const a1 = layout(
        'struct state',
        8,
        [
          ['a', 0],
          ['b', 4],
        ],
        ['a.c'],
      );
      const b1 = layout('struct state', 24, [['x', 0, 8]], ['b.c']);
      const both = layout('struct state', 24, [['x', 0, 8]], ['a.c', 'b.c']);
      const c = compareStructLayouts(layouts(a1, b1), layouts(both));
      assert.deepEqual(
        c.map((x) => [x.oldSize, x.newSize, x.ambiguous]),
        [[8, 24, undefined]],
      );
    });

    it('compile units are matched across build folders (absolute paths differ, the file is the same)', () => {
      const a1 = layout(
        'struct state',
        8,
        [
          ['a', 0],
          ['b', 4],
        ],
        ['/home/me/v1/src/a.c'],
      );
      const b1 = layout('struct state', 24, [['x', 0, 8]], ['/home/me/v1/src/b.c']);
      const a2 = layout(
        'struct state',
        8,
        [
          ['a', 0],
          ['b', 4],
        ],
        ['/tmp/build-v2/src/a.c'],
      );
      const b2 = layout('struct state', 24, [['x', 0, 8]], ['/tmp/build-v2/src/b.c']);
      assert.deepEqual(compareStructLayouts(layouts(a1, b1), layouts(a2, b2)), []);
      const a3 = layout(
        'struct state',
        12,
        [
          ['a', 0],
          ['b', 4],
          ['c', 8],
        ],
        ['/tmp/build-v3/src/a.c'],
      );
      assert.deepEqual(
        compareStructLayouts(layouts(a1, b1), layouts(a3, b2)).map((x) => [
          x.oldSize,
          x.newSize,
          x.ambiguous,
        ]),
        [[8, 12, undefined]],
      );
    });
  });

  describe('real builds', () => {
    const layoutsFrom = (path: string) => structLayoutsOf(parseElf(readFileSync(path)), { buildPath: path });

    it('the opaque handle: a field added in the middle moves every later field', () => {
      const r = analyzeLayoutsFromDwarf(makePair(build('old', handle('base')), build('new', handle('mid'))))!;
      assert.ok(r, 'both builds have DWARF');
      const h = r.changes.find((c) => c.struct === 'struct h');
      assert.ok(h, JSON.stringify(r.changes));
      assert.equal(h.oldSize, 40);
      assert.equal(h.newSize, 48);
      assert.deepEqual(h.added, [{ name: 'flags', offset: 8 }]);
      assert.deepEqual(h.moved, [
        { name: 'name', from: 4, to: 16 },
        { name: 'st', from: 24, to: 32 },
      ]);
      assert.match(
        r.source,
        /old: \.debug_info of .*libhandle\.so\.1; new: \.debug_info of .*libhandle\.so\.1/,
      );
      assert.equal(r.changes.length, 1, 'struct stats did not change');
    });

    it('a field added at the end: the object grows, nothing moves', () => {
      const r = analyzeLayoutsFromDwarf(makePair(build('old', handle('base')), build('new', handle('end'))))!;
      assert.deepEqual(
        r.changes.map((c) => ({
          struct: c.struct,
          grew: c.newSize - c.oldSize,
          moved: c.moved.length,
          added: c.added,
        })),
        [{ struct: 'struct h', grew: 8, moved: 0, added: [{ name: 'extra', offset: 40 }] }],
      );
      const f = layoutFindings(r);
      assert.equal(f.length, 1);
      assert.equal(f[0]!.code, 'LAYOUT_STRUCT_CHANGED');
      assert.equal(f[0]!.severity, 'error');
      assert.match(
        f[0]!.message,
        /^struct h grew from 0x28 to 0x30 bytes; added extra at 0x28: .*decided from DWARF \(old: .*; new: .*\)\)$/,
      );
    });

    it('a code-only change: the layouts are equal', () => {
      const r = analyzeLayoutsFromDwarf(
        makePair(build('old', handle('base')), build('new', handle('code'))),
      )!;
      assert.ok(r);
      assert.deepEqual(r.changes, []);
      assert.ok(layoutsFrom(handle('base'))!.layouts.byName.has('struct stats'));
    });

    it('two files with their own `struct state`, built in different folders: paired by file, one change found', () => {
      const a = readFileSync(join(FIXTURES, 'layouts', 'state-a.c'), 'utf8');
      const b = readFileSync(join(FIXTURES, 'layouts', 'state-b.c'), 'utf8');
      const lib = (folder: string, aCode: string) =>
        compile({
          sources: [
            { name: `${folder}/state-a.c`, code: aCode },
            { name: `${folder}/state-b.c`, code: b },
          ],
          out: 'libstate.so.1',
          flags: ['-shared', '-fPIC', '-O2', '-g', '-Wl,-soname,libstate.so.1', '-Wl,--build-id'],
        });
      const v1 = build('old', lib('state-v1', a));
      const same = analyzeLayoutsFromDwarf(makePair(v1, build('new', lib('state-v1-again', a))))!;
      assert.deepEqual(same.changes, []);
      const grown = a.replace('struct state { int a; int b; };', 'struct state { int a; int b; int c; };');
      assert.notEqual(grown, a);
      const r = analyzeLayoutsFromDwarf(makePair(v1, build('new', lib('state-v2', grown))))!;
      assert.deepEqual(
        r.changes.map((c) => [c.struct, c.oldSize, c.newSize, c.added, c.ambiguous]),
        [['struct state', 8, 12, [{ name: 'c', offset: 8 }], undefined]],
      );
    });

    it('DWARF 4 against DWARF 5 of the same source: no change', () => {
      const r = analyzeLayoutsFromDwarf(
        makePair(
          build('old', handle('base', ['-gdwarf-4'])),
          build('new', handle('base', ['-gdwarf-5', '-O1'])),
        ),
      )!;
      assert.deepEqual(r.changes, []);
    });

    it('no DWARF on one side: undefined (the machine code is the evidence)', () => {
      assert.equal(
        analyzeLayoutsFromDwarf(makePair(build('old', handle('base', [])), build('new', handle('end')))),
        undefined,
      );
      assert.equal(
        analyzeLayoutsFromDwarf(makePair(build('old', handle('base')), build('new', handle('end', [])))),
        undefined,
      );
      assert.equal(layoutsFrom(libfix({})), undefined);
      // -g1 keeps line tables and functions but no types: nothing to decide with.
      assert.equal(layoutsFrom(handle('base', ['-g1'])), undefined);
      assert.equal(
        analyzeLayoutsFromDwarf(makePair(build('old', handle('base', ['-g1'])), build('new', handle('end')))),
        undefined,
      );
    });

    it('separate debug files under --debug-dir: by build-id (plain and zlib-compressed) and by file name', () => {
      const debugDir = join(dir.path, 'debug');
      const old = split(handle('base'), 'old');
      const neu = split(handle('mid'), 'new', true);
      const pair = () => makePair(build('old', old.stripped), build('new', neu.stripped));
      assert.equal(
        analyzeLayoutsFromDwarf(pair(), { debugDirs: [debugDir] }),
        undefined,
        'nothing placed yet',
      );
      const oldAt = placeByBuildId(debugDir, old.stripped, old.debug);
      const newAt = placeByBuildId(debugDir, neu.stripped, neu.debug);
      const r = analyzeLayoutsFromDwarf(pair(), { debugDirs: [join(dir.path, 'nothing-here'), debugDir] })!;
      assert.ok(r);
      assert.equal(r.source, `old: ${oldAt}; new: ${newAt}`);
      assert.deepEqual(
        r.changes.map((c) => c.struct),
        ['struct h'],
      );
      assert.equal(r.changes[0]!.added[0]!.name, 'flags');

      // By name: <dir>/<basename>.debug, as a plain folder of debug files holds them.
      const byName = join(dir.path, 'by-name');
      mkdirSync(byName, { recursive: true });
      copyFileSync(old.debug, join(byName, 'libhandle.so.1.debug'));
      const found = structLayoutsOf(parseElf(readFileSync(old.stripped)), {
        debugDirs: [byName],
        buildPath: old.stripped,
      })!;
      assert.equal(found.source, join(byName, 'libhandle.so.1.debug'));
      assert.ok(found.layouts.byName.has('struct h'));

      // By the name .gnu_debuglink records (objcopy --add-gnu-debuglink), whatever the build is called.
      const linked = join(dir.path, 'linked');
      mkdirSync(linked, { recursive: true });
      const renamed = join(linked, 'libhandle-renamed.so');
      const debugName = 'handle-symbols.dbg';
      copyFileSync(old.debug, join(linked, debugName));
      execFileSync('objcopy', [`--add-gnu-debuglink=${join(linked, debugName)}`, old.stripped, renamed]);
      const viaLink = structLayoutsOf(parseElf(readFileSync(renamed)), {
        debugDirs: [linked],
        buildPath: renamed,
      })!;
      assert.ok(viaLink, 'found through .gnu_debuglink');
      assert.equal(viaLink.source, join(linked, debugName));
    });

    it("this machine's stripped libc.so.6 finds its Debian debug file by build-id under /usr/lib/debug", function () {
      const libc = '/lib/x86_64-linux-gnu/libc.so.6';
      const obj = parseElf(readFileSync(libc));
      const id = obj.buildId!;
      const expected = `/usr/lib/debug/.build-id/${id.slice(0, 2)}/${id.slice(2)}.debug`;
      if (!existsSync(expected)) {
        console.log(`      SKIPPED: no ${expected} (libc6-dbg is not installed)`);
        this.skip();
      }
      assert.equal(
        structLayoutsOf(obj, { buildPath: libc }),
        undefined,
        'the library itself carries no DWARF',
      );
      const found = structLayoutsOf(obj, { debugDirs: ['/usr/lib/debug'], buildPath: libc })!;
      assert.equal(found.source, expected);
      assert.ok(found.layouts.byName.has('struct _IO_FILE'));
      assert.deepEqual(compareStructLayouts(found.layouts, found.layouts), []);
    });

    it('a debug file of another build is never used, even where this build would look', () => {
      const old = split(handle('base'), 'old-wrong');
      const neu = split(handle('end'), 'new-wrong');
      const wrong = join(dir.path, 'wrong');
      mkdirSync(wrong, { recursive: true });
      copyFileSync(neu.debug, join(wrong, 'libhandle.so.1.debug'));
      const id = parseElf(readFileSync(old.stripped)).buildId!;
      mkdirSync(join(wrong, '.build-id', id.slice(0, 2)), { recursive: true });
      copyFileSync(neu.debug, join(wrong, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`));
      assert.equal(
        structLayoutsOf(parseElf(readFileSync(old.stripped)), {
          debugDirs: [wrong],
          buildPath: old.stripped,
        }),
        undefined,
      );
    });

    it('a damaged debug file found by build-id: ELF_MALFORMED naming the file', () => {
      const old = split(handle('base'), 'old-damaged');
      const damagedDir = join(dir.path, 'damaged');
      const at = placeByBuildId(damagedDir, old.stripped, old.debug);
      const obj = parseElf(readFileSync(at), { expect: 'any' });
      const info = obj.section('.debug_info')!;
      const buf = Buffer.from(readFileSync(at));
      buf.writeUInt32LE(0x7fffff00, Number(info.offset));
      writeFileSync(at, buf);
      assert.throws(
        () =>
          structLayoutsOf(parseElf(readFileSync(old.stripped)), {
            debugDirs: [damagedDir],
            buildPath: old.stripped,
          }),
        (e: unknown) =>
          isUlpError(e) &&
          e.code === 'ELF_MALFORMED' &&
          e.message.startsWith(`${at}: `) &&
          e.details?.path === at,
      );
    });
  });

  describe('ulp-pack --debug-dir', () => {
    it('a --debug-dir that is not a folder: exit 5, PACK_DEBUG_DIR_UNREADABLE, nothing written', () => {
      const out = join(dir.path, 'never.ulp');
      const missing = join(dir.path, 'no-such-dir');
      const r = ulpPack([handle('base'), handle('code'), '-o', out, '--debug-dir', missing, '--json']);
      assert.equal(r.code, 5, r.stdout + r.stderr);
      assert.equal(r.json?.error?.code, 'PACK_DEBUG_DIR_UNREADABLE');
      assert.match(r.json.error.message, /no-such-dir/);
      assert.ok(r.json.error.hint);
      assert.throws(() => readFileSync(out));
    });

    it('--debug-dir with --inspect: usage, exit 64', () => {
      const r = ulpPack(['--inspect', join(dir.path, 'x.ulp'), '--debug-dir', dir.path]);
      assert.equal(r.code, 64, r.stderr);
      assert.match(r.stderr, /--debug-dir cannot be used with --inspect/);
    });

    it('repeated --debug-dir folders are accepted and the pack runs', () => {
      const r = ulpPack([
        handle('base'),
        handle('code'),
        '--check',
        '--debug-dir',
        dir.path,
        '--debug-dir',
        dir.path,
        '--json',
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.json?.verdict, 'compatible');
    });
  });
});
