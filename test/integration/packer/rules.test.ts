/**
 * Each compatibility rule through the real command: pairs of gcc builds of
 * test/fixtures/packer/libfix.c that differ by one kind of change, with full
 * and partial RELRO, stripped and not.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { readBundleFile } from '../../../patches/index.js';
import { libfix, stripped, type Variant } from '../../../lab/packer/fixtures.js';
import { codes, tempDir, ulpPack, type Run } from '../../../lab/packer/run.js';

const dir = tempDir();
after(() => dir.dispose());

let n = 0;
/** Packs a pair with --json into a fresh output path. */
function packPair(a: Variant, b: Variant): Run & { out: string } {
  const out = join(dir.path, `fix-${++n}.ulp`);
  return { ...ulpPack([libfix(a), libfix(b), '-o', out, '--json']), out };
}

function expectWritten(r: Run & { out: string }): void {
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal(r.json.output, r.out);
  assert.ok(existsSync(r.out), 'the bundle was written');
}

function expectRefused(r: Run & { out: string }, expected: string[]): void {
  assert.equal(r.code, 2, r.stderr + r.stdout);
  assert.equal(r.json.verdict, 'incompatible');
  assert.equal(r.json.output, null);
  assert.ok(!existsSync(r.out), 'no bundle is written for an incompatible pair');
  assert.ok(
    !readdirSync(dir.path).some((f) => f.includes(`fix-${n}.ulp.`)),
    'no temporary file is left behind',
  );
  const found = codes(r.json.forward);
  for (const code of expected) assert.ok(found.includes(code), `expected ${code} among ${found.join(', ')}`);
  for (const f of found) {
    const [cat, code] = f.split(':');
    const finding = r.json.forward.categories[cat!].findings.find((x: { code: string }) => x.code === code);
    assert.ok(finding.message.length > 20, `finding ${f} has a message a person can act on`);
  }
}

describe('ulp-pack: code-only changes are compatible', () => {
  for (const relro of ['full', 'partial'] as const) {
    for (const stripped of [false, true]) {
      it(`${relro} RELRO, ${stripped ? 'stripped' : 'with symbols'}: bundle written, changed function named`, () => {
        const r = packPair({ relro, stripped }, { relro, stripped, defines: ['COMPUTE_ADD=2'] });
        expectWritten(r);
        const f = r.json.forward;
        assert.equal(f.verdict, 'compatible');
        assert.deepEqual(f.functions.changed, ['fix_compute']);
        assert.deepEqual(f.functions.added, []);
        assert.deepEqual(f.functions.removed, []);
        assert.equal(f.functions.named, !stripped);
        for (const cat of ['meta', 'api', 'init', 'data', 'tls'])
          assert.equal(f.categories[cat].verdict, 'unchanged', cat);
        assert.equal(f.categories.code.verdict, 'compatible');

        // The manifest carries what the trigger needs.
        const m = readBundleFile(r.out).manifest;
        assert.equal(m.soname, 'libfix.so.1');
        assert.equal(m.forward.report.writable?.start, f.writable.start);
        const sites = m.forward.report.writable!.sites;
        const types = new Set(sites.map((s) => s.typeName));
        assert.ok(types.has('R_X86_64_RELATIVE'), 'the function pointer in .data is a site');
        if (relro === 'partial')
          assert.ok(
            types.has('R_X86_64_JUMP_SLOT'),
            'the shared .got.plt slots are sites under partial RELRO',
          );
        else assert.ok(!types.has('R_X86_64_JUMP_SLOT'), 'full RELRO: the GOT is not in the writable region');
        assert.equal(m.reverse.from, 'new');
        assert.deepEqual(m.reverse.report.functions.changed, ['fix_compute']);

        // Function pairs (the trigger's redirects): the changed function's range in each build, from its symbol.
        const range = (path: string) => {
          const sym = parseElf(readFileSync(path)).lookup('fix_compute')!;
          return { start: `0x${sym.value.toString(16)}`, end: `0x${(sym.value + sym.size).toString(16)}` };
        };
        const [oldRange, newRange] = [
          range(libfix({ relro, stripped })),
          range(libfix({ relro, stripped, defines: ['COMPUTE_ADD=2'] })),
        ];
        assert.deepEqual(m.forward.report.functions.pairs, [
          { name: 'fix_compute', by: 'name', from: oldRange, to: newRange },
        ]);
        assert.deepEqual(m.reverse.report.functions.pairs, [
          { name: 'fix_compute', by: 'name', from: newRange, to: oldRange },
        ]);
        assert.deepEqual(m.forward.report.functions.unpaired, []);
      });
    }
  }

  it('a build with symbols against a stripped one: compared by exported names only', () => {
    const r = {
      ...ulpPack([libfix({}), stripped(libfix({ defines: ['COMPUTE_ADD=2'] })), '--check', '--json']),
      out: '',
    };
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.forward.verdict, 'compatible');
    assert.equal(r.json.forward.functions.named, false);
    assert.deepEqual(r.json.forward.functions.changed, ['fix_compute']);
    assert.deepEqual(
      codes(r.json.forward),
      ['code:CODE_FUNCTION_CHANGED'],
      'no difference is invented by the missing local names',
    );
  });

  it('a new import under full RELRO is compatible and listed with its version and library', () => {
    const r = packPair({ relro: 'full' }, { relro: 'full', defines: ['NEW_IMPORT'] });
    expectWritten(r);
    assert.deepEqual(r.json.forward.imports.added, [
      { name: 'getenv', version: 'GLIBC_2.2.5', library: 'libc.so.6' },
    ]);
    assert.deepEqual(r.json.forward.exports.added, [{ name: 'fix_env' }]);
    assert.ok(codes(r.json.forward).includes('meta:META_IMPORT_ADDED'));
    assert.deepEqual(r.json.reverse.imports.added, [], 'the reverse patch needs no new import');
  });

  it('a changed initial value is a warning: bundle written, variable named', () => {
    const r = packPair({}, { defines: ['LIMIT_INIT=20'] });
    expectWritten(r);
    const w = r.json.forward.categories.data.findings.find(
      (f: { code: string }) => f.code === 'DATA_INITIAL_VALUE_CHANGED',
    );
    assert.equal(w.severity, 'warning');
    assert.deepEqual(w.symbols, ['limit']);
    const text = ulpPack([libfix({}), libfix({ defines: ['LIMIT_INIT=20'] }), '--check']);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /warnings:\n\s+data: initial values differ for limit/);
  });

  it('a function pointer in .data retargeted: listed with old and new targets', () => {
    const r = packPair({}, { defines: ['HANDLER=handler_b'] });
    expectWritten(r);
    const f = r.json.forward.categories.funcptrs.findings.find(
      (x: { code: string }) => x.code === 'FUNCPTR_RETARGETED',
    );
    assert.ok(f, 'FUNCPTR_RETARGETED');
    const m = readBundleFile(r.out).manifest;
    const site = m.forward.report.writable!.sites.find((s) => s.fromTarget.kind === 'code');
    assert.ok(site, 'the site is in the manifest');
    assert.equal(site.typeName, 'R_X86_64_RELATIVE');
    assert.equal(site.fromTarget.symbol, 'handler_a');
    assert.equal(site.toTarget.symbol, 'handler_b');
    assert.equal(site.toTarget.kind, 'code');
    assert.equal(site.fromAddend, site.fromTarget.vaddr);
    const rev = m.reverse.report.writable!.sites.find((s) => s.offset === site.offset)!;
    assert.equal(rev.fromTarget.symbol, 'handler_b', 'the reverse patch retargets back');
    assert.equal(rev.toTarget.symbol, 'handler_a');
  });
});

describe('ulp-pack: incompatible pairs exit 2 with every reason and write nothing', () => {
  it('an added global shifts the writable data', () =>
    expectRefused(packPair({}, { defines: ['EXTRA_GLOBAL'] }), [
      'data:DATA_SYMBOL_MOVED',
      'data:DATA_SYMBOL_REPLACED',
    ]));

  it('an added global, stripped builds (exported variables only)', () =>
    expectRefused(packPair({ stripped: true }, { stripped: true, defines: ['EXTRA_GLOBAL'] }), [
      'data:DATA_SYMBOL_MOVED',
    ]));

  it('a global that changes size', () =>
    expectRefused(packPair({}, { defines: ['BUFFER_SIZE=64'] }), [
      'data:DATA_SYMBOL_RESIZED',
      'data:DATA_SECTIONS_CHANGED',
      'data:DATA_SEGMENT_LAYOUT_CHANGED',
      'api:API_EXPORT_SIZE_CHANGED',
    ]));

  it('a removed export', () =>
    expectRefused(packPair({}, { defines: ['REMOVE_EXPORT'] }), ['api:API_EXPORT_REMOVED']));

  it('an export that changes type', () =>
    expectRefused(packPair({}, { defines: ['KIND_OBJECT'] }), ['api:API_EXPORT_TYPE_CHANGED']));

  it('an exported variable that changes size', () =>
    expectRefused(packPair({}, { defines: ['TABLE_SIZE=8'] }), [
      'api:API_EXPORT_SIZE_CHANGED',
      'data:DATA_SYMBOL_RESIZED',
    ]));

  it('exports that change version', () => {
    const r = packPair({ map: 'v1.map' }, { map: 'v2.map' });
    expectRefused(r, ['api:API_EXPORT_VERSION_CHANGED']);
    assert.equal(
      r.json.forward.categories.code.verdict,
      'unchanged',
      'a renamed version node does not make the code differ',
    );
  });

  it('a new import under partial RELRO', () => {
    const r = packPair({ relro: 'partial' }, { relro: 'partial', defines: ['NEW_IMPORT'] });
    expectRefused(r, ['data:DATA_NEW_IMPORT_PARTIAL_RELRO']);
    const f = r.json.forward.categories.data.findings.find(
      (x: { code: string }) => x.code === 'DATA_NEW_IMPORT_PARTIAL_RELRO',
    );
    assert.deepEqual(f.symbols, ['getenv@GLIBC_2.2.5']);
  });

  it('a new import under partial RELRO, stripped builds', () =>
    expectRefused(
      packPair(
        { relro: 'partial', stripped: true },
        { relro: 'partial', stripped: true, defines: ['NEW_IMPORT'] },
      ),
      ['data:DATA_NEW_IMPORT_PARTIAL_RELRO'],
    ));

  it('a TLS block that changes size', () =>
    expectRefused(packPair({}, { defines: ['TLS_SIZE=4'] }), [
      'tls:TLS_LAYOUT_CHANGED',
      'tls:TLS_SYMBOL_MOVED',
    ]));

  it('a changed constructor', () => {
    const r = packPair({}, { defines: ['INIT_ADD=2'] });
    expectRefused(r, ['init:INIT_CODE_CHANGED']);
    assert.deepEqual(r.json.forward.categories.init.findings[0].symbols, ['fix_init']);
  });

  it('a change in a function only a constructor calls: the constructor counts as changed', () => {
    const r = packPair({}, { defines: ['INIT_HELPER_VALUE=8'] });
    expectRefused(r, ['init:INIT_CODE_CHANGED']);
    const f = r.json.forward.categories.init.findings[0];
    assert.match(f.message, /constructor fix_init .*in init_helper, which it reaches/);
    assert.deepEqual(r.json.forward.functions.changed, ['init_helper']);
  });

  it('the same, stripped: the unnamed callee is followed', () =>
    expectRefused(packPair({ stripped: true }, { stripped: true, defines: ['INIT_HELPER_VALUE=8'] }), [
      'init:INIT_CODE_CHANGED',
    ]));

  it('a changed constructor, stripped and partial RELRO', () =>
    expectRefused(
      packPair(
        { stripped: true, relro: 'partial' },
        { stripped: true, relro: 'partial', defines: ['INIT_ADD=2'] },
      ),
      ['init:INIT_CODE_CHANGED'],
    ));

  it('prints the reasons as text and says nothing was written', () => {
    const r = ulpPack([libfix({}), libfix({ defines: ['EXTRA_GLOBAL'] }), '-o', join(dir.path, 'text.ulp')]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /refused because:\n\s+data: .*\[DATA_SYMBOL_MOVED\]/);
    assert.match(r.stdout, /result: incompatible: no bundle written/);
    assert.match(r.stderr, /refused: .*nothing written/);
    assert.ok(!existsSync(join(dir.path, 'text.ulp')));
  });
});
