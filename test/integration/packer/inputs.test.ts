/** Bad inputs and bad command lines: each gets its own error code, exit code and a hint. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile } from '../../../lab/compile.js';
import { libfix, program, stripped } from '../../../lab/packer/fixtures.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';

const dir = tempDir();
after(() => dir.dispose());

function expectError(args: string[], exit: number, code: string, message?: RegExp): void {
  const r = ulpPack([...args, '--json']);
  assert.equal(r.code, exit, r.stderr + r.stdout);
  assert.equal(r.json?.error?.code, code, r.stdout);
  assert.ok(r.json.error.hint, 'a hint says what to do');
  if (message) assert.match(r.json.error.message, message);
  const text = ulpPack(args);
  assert.equal(text.code, exit);
  assert.match(text.stderr, new RegExp(`^ulp-pack: error \\[${code}\\]: .+\\n  hint: .+`, 'm'));
}

describe('ulp-pack: bad input', () => {
  const out = () => join(dir.path, 'out.ulp');

  it('different SONAMEs: exit 3', () =>
    expectError(
      [libfix({}), libfix({ soname: 'libother.so.1' }), '-o', out()],
      3,
      'PACK_SONAME_MISMATCH',
      /libfix\.so\.1.*libother\.so\.1/,
    ));

  it('the same build on both sides: exit 3', () =>
    expectError([libfix({}), libfix({}), '-o', out()], 3, 'PACK_SAME_BUILD'));

  it('a build and its strip(1)ped copy (same build-id): exit 3', () =>
    expectError([libfix({}), stripped(libfix({})), '-o', out()], 3, 'PACK_SAME_BUILD_ID'));

  it('a build without build-id: exit 3', () => {
    const noId = compile({
      sources: ['packer/libfix.c'],
      out: 'libfix.so.1',
      flags: ['-shared', '-fPIC', '-O2', '-Wl,-soname,libfix.so.1', '-Wl,--build-id=none'],
    });
    expectError([noId, libfix({}), '-o', out()], 3, 'PACK_NO_BUILD_ID');
  });

  it('a build without SONAME: exit 3', () => {
    const noSoname = compile({
      sources: ['packer/libfix.c'],
      out: 'libfix-nosoname.so',
      flags: ['-shared', '-fPIC', '-O2', '-Wl,--build-id'],
    });
    expectError([libfix({}), noSoname, '-o', out()], 3, 'PACK_NO_SONAME');
  });

  it('a file that is not ELF: exit 3, the file named', () => {
    const txt = join(dir.path, 'notes.txt');
    writeFileSync(txt, 'hello, this is not a library\n');
    expectError([libfix({}), txt, '-o', out()], 3, 'ELF_NOT_ELF', /new build .*notes\.txt/);
  });

  it('an executable: exit 3', () =>
    expectError([program(), libfix({}), '-o', out()], 3, 'ELF_NOT_SHARED_OBJECT', /old build/));

  it('a missing file: exit 5', () =>
    expectError(
      [join(dir.path, 'missing.so'), libfix({}), '-o', out()],
      5,
      'PACK_INPUT_UNREADABLE',
      /missing\.so/,
    ));

  it('a directory as input: exit 5', () =>
    expectError([dir.path, libfix({}), '-o', out()], 5, 'PACK_INPUT_UNREADABLE'));

  it('an output folder that does not exist: exit 5, nothing created', () => {
    const target = join(dir.path, 'no', 'such', 'fix.ulp');
    expectError([libfix({}), libfix({ defines: ['COMPUTE_ADD=2'] }), '-o', target], 5, 'BUNDLE_WRITE_FAILED');
    assert.ok(!existsSync(join(dir.path, 'no')));
  });

  it('an output path that is a directory: exit 5, no partial or temporary file', () => {
    const target = join(dir.path, 'taken');
    mkdirSync(target);
    expectError([libfix({}), libfix({ defines: ['COMPUTE_ADD=2'] }), '-o', target], 5, 'BUNDLE_WRITE_FAILED');
    assert.deepEqual(readdirSync(target), []);
    assert.ok(
      !readdirSync(dir.path).some((f) => f.endsWith('.tmp')),
      'no temporary file is left in the folder',
    );
  });
});

describe('ulp-pack: command line', () => {
  const usage = (args: string[], pattern: RegExp) => {
    const r = ulpPack(args);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, pattern);
    assert.equal(r.stdout, '');
  };

  it('no arguments: usage, exit 64', () => usage([], /expected OLD\.so and NEW\.so/));
  it('one argument: exit 64', () => usage([libfix({})], /got 1 argument/));
  it('an unknown option: exit 64', () => usage(['--frobnicate'], /unknown option/));
  it('a missing option value: exit 64', () => usage([libfix({}), libfix({}), '-o'], /argument missing/));
  it('no -o and no --check: exit 64', () =>
    usage([libfix({}), libfix({ defines: ['COMPUTE_ADD=2'] })], /missing -o FILE/));
  it('--check with -o: exit 64', () =>
    usage([libfix({}), libfix({}), '--check', '-o', 'x.ulp'], /--check writes nothing/));
  it('--key without --inspect: exit 64', () =>
    usage([libfix({}), libfix({}), '-o', 'x.ulp', '--key', 'k.pem'], /--key is for --inspect/));
  it('--inspect with builds: exit 64', () => usage(['--inspect', 'x.ulp', libfix({})], /--inspect takes no/));
  it('a bad --created-at: exit 64', () =>
    usage(
      [libfix({}), libfix({ defines: ['COMPUTE_ADD=2'] }), '--check', '--created-at', 'yesterday'],
      /not a time/,
    ));

  it('--help: exit 0, options and exit codes', () => {
    const r = ulpPack(['--help']);
    assert.equal(r.code, 0);
    for (const o of [
      '--output',
      '--check',
      '--json',
      '--sign',
      '--inspect',
      '--key',
      '--created-at',
      'Exit codes',
    ])
      assert.ok(r.stdout.includes(o), o);
  });

  it('--version and -V: exit 0, the program and the package version', () => {
    for (const flag of ['--version', '-V']) {
      const r = ulpPack([flag]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^ulp-pack \d+\.\d+\.\d+\n$/);
    }
  });

  it('usage errors have the shape of every other error: program, code, message, hint; JSON with --json', () => {
    const r = ulpPack(['--frobnicate']);
    assert.equal(r.code, 64);
    assert.equal(
      r.stderr,
      "ulp-pack: error [PACK_USAGE]: unknown option '--frobnicate'\n  hint: Run ulp-pack --help.\n",
    );
    const j = ulpPack([libfix({}), libfix({}), '--json', '-o']);
    assert.equal(j.code, 64);
    assert.equal(j.json.error.code, 'PACK_USAGE');
    assert.match(j.json.error.message, /argument missing/);
    assert.equal(j.json.error.hint, 'Run ulp-pack --help.');
  });
});
