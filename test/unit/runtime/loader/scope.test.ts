/**
 * ld.so's lookup order as runtime/loader/scope.ts models it, on hand-built
 * link maps: the global search list, the local group of an object
 * dlopen'ed RTLD_LOCAL, and which symbols count as definitions.
 */
import assert from 'node:assert/strict';
import { STB_LOCAL, STB_WEAK, STT_GNU_IFUNC, STT_SECTION, STT_TLS } from '../../../../elf/constants.js';
import {
  globalScope,
  isDefinition,
  lookupIn,
  lookupInScope,
  recordScopes,
  scopeOf,
} from '../../../../runtime/loader/scope.js';
import { placed, syntheticElf, type SymSpec } from '../../../../lab/process-model.js';

let nextBias = 0x7f00_0000_0000n;
function obj(
  name: string,
  symbols: SymSpec[] = [],
  needed: string[] = [],
  source: 'linkmap' | 'ulp' = 'linkmap',
) {
  nextBias += 0x10_0000n;
  const soname = name ? name.slice(name.lastIndexOf('/') + 1) : undefined;
  return placed(
    syntheticElf({ ...(soname ? { soname } : {}), needed, text: { vaddr: 0n, size: 0x1000n }, symbols }),
    { name, bias: nextBias, source },
  );
}

describe('scope: where ld.so looks a symbol up', () => {
  it('without a readable global list, every link-map object in link-map order; builds mapped by ulp never', () => {
    const exe = obj('');
    const a = obj('/lib/liba.so');
    const staged = obj('/memfd:ulp:x', [], [], 'ulp');
    assert.deepEqual(globalScope([exe, a, staged]), [exe, a]);
    recordScopes([exe, a, staged], undefined);
    assert.deepEqual(globalScope([exe, a, staged]), [exe, a]);
  });

  it('follows ld.so’s search list order, not the link map’s', () => {
    const exe = obj('');
    const a = obj('/lib/liba.so');
    const b = obj('/lib/libb.so');
    recordScopes([exe, a, b], [exe, b, a]);
    assert.deepEqual(globalScope([exe, a, b]), [exe, b, a]);
    assert.deepEqual(
      scopeOf(a, globalScope([exe, a, b])),
      [exe, b, a],
      'a global object searches the global scope only',
    );
  });

  it('an object dlopen’ed RTLD_LOCAL searches the global scope, then its own dependency closure', () => {
    const exe = obj('');
    const libc = obj('/lib/libc.so.6');
    const plugin = obj('/opt/plugin.so', [], ['libdep.so', 'libc.so.6']);
    const dep = obj('/opt/libdep.so', [], ['libdeeper.so']);
    const deeper = obj('/opt/libdeeper.so');
    const objects = [exe, libc, plugin, dep, deeper];
    recordScopes(objects, [exe, libc]);
    const global = globalScope(objects);
    assert.deepEqual(global, [exe, libc]);
    assert.deepEqual(scopeOf(plugin, global), [exe, libc, plugin, dep, deeper]);
    assert.deepEqual(
      scopeOf(deeper, global),
      [exe, libc, plugin, dep, deeper],
      'a dependency shares the group of the dlopen that reached it',
    );
  });

  it('the first definition in scope wins, even a weak one', () => {
    const exe = obj('', [{ name: 'hook', value: 0x10n, bind: STB_WEAK }]);
    const lib = obj('/lib/libh.so', [{ name: 'hook', value: 0x20n }]);
    const def = lookupInScope([exe, lib], { name: 'hook' });
    assert.equal(def?.obj, exe);
    assert.equal(def?.addr, exe.bias + 0x10n);
    assert.equal(lookupInScope([lib, exe], { name: 'hook' })?.obj, lib);
    assert.equal(lookupInScope([exe, lib], { name: 'absent' }), undefined);
  });

  it('finds a versioned reference in the object that defines that version', () => {
    const old = obj('/lib/libv.so', [
      { name: 'f', value: 0x10n, version: 'V_1', hidden: true },
      { name: 'f', value: 0x20n, version: 'V_2' },
    ]);
    assert.equal(lookupIn(old, { name: 'f', version: 'V_1' })?.addr, old.bias + 0x10n);
    assert.equal(
      lookupIn(old, { name: 'f' })?.addr,
      old.bias + 0x20n,
      'an unversioned reference binds the default version',
    );
    assert.equal(lookupIn(old, { name: 'f', version: 'V_3' }), undefined);
  });

  it('counts as definitions only what ld.so accepts: not local symbols, not sections, not zero values except TLS', () => {
    const o = obj('/lib/libd.so', [
      { name: 'local', value: 0x10n, bind: STB_LOCAL },
      { name: 'sect', value: 0x10n, type: STT_SECTION },
      { name: 'zero', value: 0n },
      { name: 'tls0', value: 0n, type: STT_TLS },
      { name: 'ifunc', value: 0x30n, type: STT_GNU_IFUNC },
    ]);
    const def = (n: string) => isDefinition(o.elf.lookup(n)!);
    assert.deepEqual(['local', 'sect', 'zero', 'tls0', 'ifunc'].map(def), [false, false, false, true, true]);
    assert.equal(
      lookupIn(o, { name: 'tls0' })?.addr,
      0n,
      'a TLS definition’s address is its offset in the module’s block',
    );
  });
});
