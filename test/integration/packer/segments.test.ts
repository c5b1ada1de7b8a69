/**
 * The packer on both ways GNU ld lays out a library's segments
 * (lab/versioned.ts SEGMENT_LAYOUTS). Without -z separate-code the one
 * executable segment also holds the ELF header, the dynamic symbols, .rodata
 * and .eh_frame: code is what the executable sections hold, not what the
 * executable segment does (packer/model.ts), so the same source gives the
 * same functions and the same report in either layout.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dynamicIsWritable, parseElf, SHF_EXECINSTR } from '../../../elf/index.js';
import { createBuild, type Build } from '../../../packer/model.js';
import { runCli } from '../../../lab/cli.js';
import { libdemo, loadSegments, SEGMENT_LAYOUTS, type SegmentLayout } from '../../../lab/versioned.js';

const LAYOUTS = Object.keys(SEGMENT_LAYOUTS) as SegmentLayout[];

function demoLib(v: number, layout: SegmentLayout): string {
  const path = libdemo(v, { flags: [...SEGMENT_LAYOUTS[layout].flags] });
  assert.deepEqual(loadSegments(path), SEGMENT_LAYOUTS[layout].loads);
  return path;
}

function build(path: string): Build {
  const bytes = readFileSync(path);
  return createBuild('old', path, bytes, parseElf(bytes));
}

describe('packer: -z separate-code and -z noseparate-code libraries', function () {
  this.timeout(120_000);

  for (const layout of LAYOUTS)
    it(`-z ${layout}: functions lie inside the executable sections, and headers and .rodata are read-only data`, () => {
      const b = build(demoLib(1, layout));
      const exec = b.obj.sections.filter((s) => (s.flags & SHF_EXECINSTR) !== 0n && s.size > 0n);
      const inExec = (start: number, end: number) =>
        exec.some((s) => start >= Number(s.addr) && end <= Number(s.addr + s.size));
      const fns = b.functions();
      assert.ok(fns.some((f) => f.name === 'demo_compute'));
      for (const f of fns) assert.ok(inExec(f.start, f.end), `${f.name} ${f.start}..${f.end}`);
      // _fini has size 0 in its symbol: it ends with its section, not with the segment.
      const fini = b.obj.sections.find((s) => s.name === '.fini')!;
      assert.equal(fns.find((f) => f.name === '_fini')?.end, Number(fini.addr + fini.size));
      const at = (name: string) => Number(b.obj.sections.find((s) => s.name === name)!.addr);
      assert.equal(b.kindAt(at('.text')), 'code');
      assert.equal(b.kindAt(at('.rodata')), 'readonly');
      assert.equal(b.kindAt(at('.eh_frame')), 'readonly');
      assert.equal(b.kindAt(0), 'readonly', 'the ELF header');
    });

  it('-z norelro: refused, its dynamic section lies in the data the builds share', () => {
    const lib = (v: number) => libdemo(v, { flags: ['-Wl,-z,norelro'] });
    assert.equal(parseElf(readFileSync(lib(1))).relro, undefined, 'no PT_GNU_RELRO');
    for (const layout of LAYOUTS)
      assert.equal(dynamicIsWritable(parseElf(readFileSync(demoLib(1, layout)))), false);
    const r = runCli('ulp-pack', [lib(1), lib(2), '--check', '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.json.verdict, 'incompatible');
    assert.deepEqual(
      r.json.forward.categories.data.findings.map((f: { code: string }) => f.code),
      ['DATA_DYNAMIC_WRITABLE', 'DATA_DYNAMIC_WRITABLE'],
    );
  });

  it('v1 -> v2 gets the same verdict and findings in both layouts', () => {
    const reports = LAYOUTS.map((layout) => {
      const r = runCli('ulp-pack', [demoLib(1, layout), demoLib(2, layout), '--check', '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return r.json;
    });
    const [separate, noseparate] = reports.map((r) => r.forward);
    // Summaries name addresses, which differ; what each category found may not.
    const found = (r: { categories: Record<string, { verdict: string; findings: unknown[] }> }) =>
      Object.entries(r.categories).map(([name, c]) => [name, c.verdict, c.findings]);
    assert.deepEqual(found(noseparate), found(separate));
    assert.equal(noseparate.verdict, 'compatible');
    assert.deepEqual(
      separate.categories.code.findings.flatMap((f: { symbols?: string[] }) => f.symbols ?? []),
      ['demo_version', 'demo_greet', 'demo_compute'],
    );
  });
});
