/**
 * lab/versioned.ts builds every workbench's versioned library and the
 * program linked against it: these check what the workbenches rely on, on
 * real gcc output: each version carries the SONAME (so any version installs
 * in place of another) and its own build-id, the program needs the SONAME
 * and no file path, and the link folder is named by content (so the
 * program's compile cache hits across runs).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf } from '../../../elf/index.js';
import { libdemo, linkFolder, linkedProgram } from '../../../lab/versioned.js';

const tag = 'lab-versioned-test';

describe('lab: versioned fixture libraries', function () {
  this.timeout(120_000);

  it('builds each version under the one SONAME with its own build-id, honouring the RELRO mode', () => {
    const v1 = parseElf(readFileSync(libdemo(1, { tag })));
    const v2 = parseElf(readFileSync(libdemo(2, { tag })));
    const lazy = parseElf(readFileSync(libdemo(1, { tag, relro: 'partial' })));
    assert.equal(v1.dynamic?.soname, 'libdemo.so.1');
    assert.equal(v2.dynamic?.soname, 'libdemo.so.1');
    assert.notEqual(v1.buildId, v2.buildId);
    assert.equal(v1.dynamic?.bindNow, true);
    assert.equal(lazy.dynamic?.bindNow, false);
  });

  it('links a program that needs the SONAME, not the file it was linked with', () => {
    const exe = linkedProgram({
      sources: ['trigger/demo_main.c'],
      out: 'demo_main',
      flags: ['-pthread'],
      against: { 'libdemo.so.1': libdemo(1, { tag }) },
    });
    const needed = parseElf(readFileSync(exe), { expect: 'any' }).dynamic?.needed ?? [];
    assert.ok(needed.includes('libdemo.so.1'), `DT_NEEDED: ${needed.join(', ')}`);
    assert.ok(!needed.some((n) => n.includes('/')), `DT_NEEDED: ${needed.join(', ')}`);
  });

  it('names the link folder by the libraries it holds', () => {
    const a = linkFolder({ 'libdemo.so.1': libdemo(1, { tag }) });
    assert.equal(linkFolder({ 'libdemo.so.1': libdemo(1, { tag }) }), a);
    assert.notEqual(linkFolder({ 'libdemo.so.1': libdemo(2, { tag }) }), a);
    assert.notEqual(linkFolder({ 'libother.so.1': libdemo(1, { tag }) }), a);
  });
});
