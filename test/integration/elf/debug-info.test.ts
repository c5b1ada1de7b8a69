/**
 * Structure layouts read from DWARF, checked against what gcc itself says
 * (a program printing offsetof/sizeof/bit positions of the same header),
 * against pahole when it is installed, and under DWARF 3, 4 and 5, zlib
 * compression (SHF_COMPRESSED and the older .zdebug_*), dwz, and damage.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isUlpError } from '../../../common/errors.js';
import { parseElf } from '../../../elf/index.js';
import {
  debugSectionsOf,
  debugSectionsOfFile,
  readStructLayouts,
  type StructLayout,
  type StructLayouts,
} from '../../../elf/debug-info.js';
import { FIXTURES, compile } from '../../../lab/compile.js';
import { tempDir } from '../../../lab/packer/run.js';

const dir = tempDir();
after(() => dir.dispose());

function shapes(dwarf: string, extra: string[] = []): string {
  return compile({
    sources: ['layouts/shapes.c'],
    out: 'libshapes.so',
    flags: ['-shared', '-fPIC', '-O2', dwarf, `-I${join(FIXTURES, 'layouts')}`, ...extra],
  });
}

function layoutsOf(path: string): StructLayouts {
  const s = debugSectionsOfFile(readFileSync(path));
  assert.ok(s, `${path} has .debug_info`);
  return readStructLayouts(s);
}

function only(l: StructLayouts, name: string): StructLayout {
  const v = l.byName.get(name);
  assert.ok(v, `${name} is found (have: ${[...l.byName.keys()].join(', ')})`);
  assert.equal(v.length, 1, `${name} has one definition`);
  return v[0]!;
}

interface Truth {
  struct: string;
  member?: string;
  offset?: number;
  size?: number;
  bitOffset?: number;
  bitSize?: number;
}

let truthCache: Truth[] | undefined;
function truth(): Truth[] {
  const exe = compile({
    sources: ['layouts/shapes-truth.c'],
    out: 'shapes-truth',
    flags: ['-O0', `-I${join(FIXTURES, 'layouts')}`],
  });
  return (truthCache ??= execFileSync(exe, { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Truth));
}

/** Every size, offset and bit position the compiler printed is what the DWARF reader says. */
function checkAgainstCompiler(l: StructLayouts): number {
  let checked = 0;
  for (const t of truth()) {
    const s = only(l, t.struct);
    if (t.member === undefined) {
      assert.equal(s.size, t.size, `sizeof(${t.struct})`);
    } else {
      const m = s.members.find((x) => x.name === t.member);
      assert.ok(m, `${t.struct} has member ${t.member} (have: ${s.members.map((x) => x.name).join(', ')})`);
      if (t.bitSize !== undefined) {
        assert.equal(m.bitOffset, t.bitOffset, `bit offset of ${t.struct}.${t.member}`);
        assert.equal(m.bitSize, t.bitSize, `bit size of ${t.struct}.${t.member}`);
        assert.equal(m.offset, Math.floor(t.bitOffset! / 8));
      } else {
        assert.equal(m.offset, t.offset, `offsetof(${t.struct}, ${t.member})`);
        assert.equal(m.bitSize, undefined);
        if (t.size !== undefined) assert.equal(m.size, t.size, `sizeof ${t.struct}.${t.member}`);
        else assert.equal(m.size, undefined, `${t.member} is a flexible array`);
      }
    }
    checked++;
  }
  return checked;
}

function hasTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('elf: structure layouts from DWARF', function () {
  this.timeout(120_000);

  for (const dwarf of ['-gdwarf-3', '-gdwarf-4', '-gdwarf-5']) {
    it(`${dwarf}: every size, offset and bit-field position is the compiler's`, () => {
      const l = layoutsOf(shapes(dwarf));
      assert.deepEqual(l.versions, [Number(dwarf.slice(-1))]);
      assert.ok(checkAgainstCompiler(l) > 40);
    });
  }

  for (const dwarf of ['-gdwarf-4', '-gdwarf-5']) {
    it(`${dwarf} -fdebug-types-section: types in type units (.debug_types, DW_UT_type) read the same`, () => {
      const l = layoutsOf(shapes(dwarf, ['-fdebug-types-section']));
      checkAgainstCompiler(l);
      assert.deepEqual(only(l, 'struct node').units, ['(type unit)'], 'the structure came from a type unit');
      assert.deepEqual(withoutUnits(l), withoutUnits(layoutsOf(shapes(dwarf))));
    });
  }

  it('DWARF 3 with -gstrict-dwarf (DW_AT_bit_offset from the most significant bit) gives the same bit positions', () => {
    const strict = layoutsOf(shapes('-gdwarf-3', ['-gstrict-dwarf']));
    checkAgainstCompiler(strict);
    assert.deepEqual(only(strict, 'struct bits'), only(layoutsOf(shapes('-gdwarf-5')), 'struct bits'));
  });

  it('names types the way C spells them, and anonymous members in place', () => {
    const node = only(layoutsOf(shapes('-gdwarf-5')), 'struct node');
    const type = (n: string) => node.members.find((m) => m.name === n)?.type;
    assert.equal(type('next'), 'struct node *');
    assert.equal(type('an'), 'anon_t');
    assert.equal(type('name'), 'char[16]');
    assert.equal(type('grid'), 'double[3][4]');
    assert.equal(type('tail'), 'char[]');
    assert.equal(type('cb'), 'function pointer');
    assert.equal(type('p'), 'volatile const char *');
    assert.deepEqual(
      node.members.map((m) => m.name),
      ['next', 'an', 'in', 'name', 'cb', 'i', 'f', 'pt.x', 'pt.y', 'p', 'grid', 'tail'],
    );
    assert.equal(only(layoutsOf(shapes('-gdwarf-5')), 'anon_t').kind, 'struct');
  });

  it('C++: namespaces, nested classes, templates and base classes, against what g++ says', () => {
    const flags = ['-O2', '-Wno-invalid-offsetof'];
    const lib = compile({
      sources: ['layouts/classes.cpp'],
      out: 'libclasses.so',
      flags: ['-shared', '-fPIC', '-g', ...flags],
      libs: ['-lstdc++'],
    });
    const exe = compile({
      sources: ['layouts/classes-truth.cpp'],
      out: 'classes-truth',
      flags: [`-I${join(FIXTURES, 'layouts')}`, ...flags],
      libs: ['-lstdc++'],
    });
    const l = layoutsOf(lib);
    const lines = execFileSync(exe, { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((x) => JSON.parse(x) as Truth);
    for (const t of lines) {
      const s = only(l, t.struct.replace(/ /g, ''));
      if (t.member === undefined) assert.equal(s.size, t.size, `sizeof(${t.struct})`);
      else {
        const m = s.members.find((x) => x.name === t.member);
        assert.ok(m, `${t.struct}::${t.member}`);
        assert.deepEqual([m.offset, m.size], [t.offset, t.size], `${t.struct}::${t.member}`);
      }
    }
    const derived = only(l, 'ns::Derived');
    assert.equal(derived.kind, 'class');
    assert.deepEqual(
      derived.members.slice(0, 2).map((m) => [m.name, m.offset]),
      [
        ['<base ns::Base>', 0],
        ['<base ns::Empty>', 0],
      ],
    );
    assert.ok(
      !derived.members.some((m) => m.name === 'counter'),
      'a static member has no place in the object',
    );
    assert.equal(only(l, 'ns::Base').members[0]!.name, '_vptr.Base');
  });

  it('agrees with pahole on the size of every structure of a real library built with -g', function () {
    if (!hasTool('pahole')) {
      console.log('      SKIPPED: pahole is not installed (apt-get install dwarves)');
      this.skip();
    }
    // zlib's sources are not here; the fixture library plus libc's headers give a mix of system and own types.
    const lib = compile({
      sources: ['layouts/shapes.c', 'layouts/handle.c'],
      out: 'libmix.so',
      flags: [
        '-shared',
        '-fPIC',
        '-O2',
        '-g',
        `-I${join(FIXTURES, 'layouts')}`,
        '-include',
        'stdio.h',
        '-include',
        'pthread.h',
        '-include',
        'sys/stat.h',
      ],
    });
    const ours = layoutsOf(lib);
    const sizes = execFileSync('pahole', ['--sizes', lib], { encoding: 'utf8' }).trim().split('\n');
    let compared = 0;
    for (const line of sizes) {
      const [name, size] = line.split('\t');
      const candidates = [`struct ${name}`, `union ${name}`, name!];
      const mine = candidates.map((c) => ours.byName.get(c)).find((v) => v !== undefined);
      if (!mine) continue;
      assert.ok(
        mine.some((s) => s.size === Number(size)),
        `${name}: pahole says ${size}, we say ${mine.map((s) => s.size).join('/')}`,
      );
      compared++;
    }
    assert.ok(compared >= 8, `compared ${compared} structures with pahole`);
    // And member by member for one of them.
    const text = execFileSync('pahole', ['-C', 'wide', lib], { encoding: 'utf8' });
    const offsets = [...text.matchAll(/\s(\w+)(?: __attribute__\S*)?;\s+\/\*\s+(\d+)\s+(\d+)\s+\*\//g)].map(
      (m) => ({ name: m[1], offset: Number(m[2]), size: Number(m[3]) }),
    );
    assert.deepEqual(
      offsets,
      only(ours, 'struct wide').members.map((m) => ({ name: m.name, offset: m.offset, size: m.size })),
    );
  });

  it("the real Debian debug file of this machine's libc.so.6 (libc6-dbg): every structure size is pahole's", function () {
    const id = parseElf(readFileSync('/lib/x86_64-linux-gnu/libc.so.6')).buildId!;
    const debug = `/usr/lib/debug/.build-id/${id.slice(0, 2)}/${id.slice(2)}.debug`;
    if (!existsSync(debug) || !hasTool('pahole')) {
      console.log(`      SKIPPED: needs ${debug} (libc6-dbg) and pahole (dwarves)`);
      this.skip();
    }
    const s = debugSectionsOfFile(readFileSync(debug))!;
    assert.equal(s.buildId, id, 'the debug file belongs to this libc');
    const ours = readStructLayouts(s);
    const sizes = execFileSync('pahole', ['--sizes', debug], { encoding: 'utf8', maxBuffer: 1 << 26 })
      .trim()
      .split('\n');
    const wrong: string[] = [];
    let compared = 0;
    for (const line of sizes) {
      const [name, size] = line.split('\t');
      const mine = [`struct ${name}`, `union ${name}`, name!]
        .map((c) => ours.byName.get(c))
        .find((v) => v !== undefined);
      if (!mine) wrong.push(`${name}: missing`);
      else if (!mine.some((x) => x.size === Number(size)))
        wrong.push(`${name}: pahole ${size}, ours ${mine.map((x) => x.size).join('/')}`);
      compared++;
    }
    assert.deepEqual(wrong, []);
    assert.ok(compared > 300, `${compared} structures compared`);
    // A structure every glibc user knows, member by member.
    const file = ours.byName.get('struct _IO_FILE')![0]!;
    assert.deepEqual(
      file.members.slice(0, 3).map((m) => [m.name, m.offset, m.size]),
      [
        ['_flags', 0, 4],
        ['_IO_read_ptr', 8, 8],
        ['_IO_read_end', 16, 8],
      ],
    );
  });

  it('reads zlib-compressed debug sections (SHF_COMPRESSED and .zdebug_*) to the same layouts', () => {
    const plain = shapes('-gdwarf-5');
    const expected = layoutsOf(plain);
    for (const how of ['zlib-gabi', 'zlib-gnu']) {
      const out = join(dir.path, `shapes-${how}.so`);
      execFileSync('objcopy', [`--compress-debug-sections=${how}`, plain, out]);
      const names = execFileSync('readelf', ['-S', '-W', out], { encoding: 'utf8' });
      assert.match(
        names,
        how === 'zlib-gnu' ? /\.zdebug_info/ : /\.debug_info\s+PROGBITS\s+\S+\s+\S+\s+\S+\s+\S+\s+C\b/,
        `${how} compressed the sections`,
      );
      assert.deepEqual(layoutsOf(out), expected);
    }
  });

  it('a build without .debug_info has none; a parsed object gives the same as its bytes', () => {
    const bare = compile({
      sources: ['layouts/handle.c'],
      out: 'libhandle.so',
      flags: ['-shared', '-fPIC', '-O2'],
    });
    assert.equal(debugSectionsOfFile(readFileSync(bare)), undefined);
    assert.equal(debugSectionsOf(parseElf(readFileSync(bare))), undefined);
    const withG = shapes('-gdwarf-4');
    const viaObj = debugSectionsOf(parseElf(readFileSync(withG)));
    assert.ok(viaObj);
    assert.deepEqual(readStructLayouts(viaObj), layoutsOf(withG));
  });

  it('one definition per name across compile units; two different ones are both kept, marked ambiguous', () => {
    const lib = compile({
      sources: ['layouts/state-a.c', 'layouts/state-b.c', 'layouts/shapes.c'],
      out: 'libstate.so',
      flags: ['-shared', '-fPIC', '-O2', '-g', `-I${join(FIXTURES, 'layouts')}`],
    });
    const l = layoutsOf(lib);
    const state = l.byName.get('struct state')!;
    assert.equal(state.length, 2);
    assert.ok(state.every((s) => s.ambiguous));
    assert.deepEqual(state.map((s) => s.size).sort(), [24, 8]);
    assert.deepEqual(state.map((s) => s.units.map((u) => u.replace(/.*\//, ''))).sort(), [
      ['state-a.c'],
      ['state-b.c'],
    ]);
    assert.equal(l.units, 3);
    // A structure of shapes.h seen in one unit only is not ambiguous.
    assert.equal(only(l, 'struct node').ambiguous, false);
  });

  it('dwz output (partial units, imported units) and a dwz supplementary file give the same layouts', function () {
    if (!hasTool('dwz')) {
      console.log('      SKIPPED: dwz is not installed (apt-get install dwz)');
      this.skip();
    }
    const flags = ['-shared', '-fPIC', '-O2', '-g', `-I${join(FIXTURES, 'layouts')}`];
    // Several units that share shapes.h, so that dwz has something to move into partial units.
    const srcs = ['a', 'b', 'c'].map((n) => ({
      name: `layouts-dwz/${n}.c`,
      code: `#include "shapes.h"\nint use_${n}(struct node *n, big_t *g) { return n->an.a + g->bf.b; }\n`,
    }));
    const lib = compile({ sources: ['layouts/shapes.c', ...srcs], out: 'libdwz.so', flags });
    const expected = layoutsOf(lib);
    const single = join(dir.path, 'libdwz-single.so');
    copyFileSync(lib, single);
    execFileSync('dwz', [single]);
    const info = execFileSync('readelf', ['--debug-dump=info', single], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    assert.match(info, /DW_TAG_partial_unit/, 'dwz made partial units');
    assert.deepEqual(withoutUnits(layoutsOf(single)), withoutUnits(expected));

    // Multifile: common DIEs move into a supplementary file that .gnu_debugaltlink names.
    const one = join(dir.path, 'libdwz-1.so');
    const two = join(dir.path, 'libdwz-2.so');
    copyFileSync(lib, one);
    copyFileSync(lib, two);
    const common = join(dir.path, 'common.debug');
    execFileSync('dwz', ['-m', common, one, two]);
    const s = debugSectionsOfFile(readFileSync(one))!;
    assert.ok(s.altLink, 'dwz -m wrote .gnu_debugaltlink');
    const missing = readStructLayouts(s);
    assert.equal(
      missing.missingSupplementary,
      s.altLink.path,
      'without the supplementary file the gap is reported',
    );
    const alt = debugSectionsOfFile(readFileSync(common))!;
    const full = readStructLayouts(s, { supplementary: alt });
    assert.equal(full.missingSupplementary, undefined);
    assert.deepEqual(withoutUnits(full), withoutUnits(expected));
  });

  it('a unit that refers into another compile unit (DW_FORM_ref_addr): read with every unit kept', () => {
    const lib = compile({
      sources: ['layouts/cross-unit.s'],
      out: 'libcross.so',
      flags: ['-shared', '-nostdlib'],
    });
    const l = layoutsOf(lib);
    assert.deepEqual(
      only(l, 'struct outer').members.map((m) => [m.name, m.offset, m.size, m.type]),
      [
        ['in', 0, 8, 'struct inner *'],
        ['n', 8, 4, 'int'],
      ],
    );
    assert.deepEqual(only(l, 'struct inner').units, ['first.c']);
    assert.equal(l.units, 2);
  });

  it('the same layouts whether units are streamed or all kept, on every fixture and the libc debug file', () => {
    const files = [
      shapes('-gdwarf-4'),
      shapes('-gdwarf-5', ['-fdebug-types-section']),
      shapes('-gdwarf-3', ['-gstrict-dwarf']),
    ];
    const id = parseElf(readFileSync('/lib/x86_64-linux-gnu/libc.so.6')).buildId!;
    const libcDebug = `/usr/lib/debug/.build-id/${id.slice(0, 2)}/${id.slice(2)}.debug`;
    if (existsSync(libcDebug)) files.push(libcDebug);
    for (const f of files) {
      const s = debugSectionsOfFile(readFileSync(f))!;
      assert.deepEqual(readStructLayouts(s), readStructLayouts(s, { keepAllUnits: true }), f);
    }
  });

  describe('damaged DWARF is an ELF error, never a crash', () => {
    const lib = () => shapes('-gdwarf-5');
    const infoOffset = (path: string) => {
      const obj = parseElf(readFileSync(path));
      return { info: obj.section('.debug_info')!, abbrev: obj.section('.debug_abbrev')! };
    };

    it('a unit length past the section: ELF_MALFORMED', () => {
      const buf = Buffer.from(readFileSync(lib()));
      buf.writeUInt32LE(0x7fffff00, Number(infoOffset(lib()).info.offset));
      assert.throws(
        () => layoutsOfBuf(buf),
        (e: unknown) => isUlpError(e) && e.code === 'ELF_MALFORMED' && /does not fit/.test(e.message),
      );
    });

    it('a DWARF version this reader does not know: ELF_DWARF_UNSUPPORTED', () => {
      const buf = Buffer.from(readFileSync(lib()));
      buf.writeUInt16LE(7, Number(infoOffset(lib()).info.offset) + 4);
      assert.throws(
        () => layoutsOfBuf(buf),
        (e: unknown) => isUlpError(e) && e.code === 'ELF_DWARF_UNSUPPORTED' && !!e.hint,
      );
    });

    it('random corruption of .debug_info and .debug_abbrev: a result or an ELF_ error, every time', () => {
      const base = readFileSync(lib());
      const { info, abbrev } = infoOffset(lib());
      let seed = 12345;
      const rnd = (n: number) => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed % n;
      };
      let errors = 0;
      for (let i = 0; i < 300; i++) {
        const buf = Buffer.from(base);
        const s = i % 3 === 0 ? abbrev : info;
        for (let k = 0; k < 1 + rnd(4); k++) buf[Number(s.offset) + rnd(Number(s.size))] = rnd(256);
        try {
          layoutsOfBuf(buf);
        } catch (e) {
          assert.ok(
            isUlpError(e) &&
              (e.code === 'ELF_MALFORMED' ||
                e.code === 'ELF_DWARF_UNSUPPORTED' ||
                e.code === 'ELF_TRUNCATED'),
            `iteration ${i}: ${String(e)}`,
          );
          errors++;
        }
      }
      assert.ok(errors > 0, 'some corruptions were detected');
    });
  });
});

function layoutsOfBuf(buf: Buffer): StructLayouts {
  const s = debugSectionsOfFile(buf);
  assert.ok(s);
  return readStructLayouts(s);
}

function withoutUnits(l: StructLayouts): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [n, v] of l.byName) out[n] = v.map((s) => ({ ...s, units: [] }));
  return out;
}
