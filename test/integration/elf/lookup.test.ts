/**
 * Symbol lookup through DT_GNU_HASH and DT_HASH against two oracles: every
 * defined dynamic symbol of real libraries must be found exactly (by name and
 * version, and by name alone when it is the default), and the real ld.so
 * (dlsym/dlvsym in a helper process) must agree on what each name resolves to.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  gnuHashOf,
  lookupSymbol,
  parseElf,
  sysvHashOf,
  SHN_ABS,
  STT_GNU_IFUNC,
  STT_TLS,
  type ElfObject,
  type ElfSymbol,
} from '../../../elf/index.js';
import { compile } from '../../../lab/compile.js';
import { fixture } from '../../../lab/elf/fixtures.js';

const SYS = '/usr/lib/x86_64-linux-gnu';
const REAL = ['libc.so.6', 'libstdc++.so.6', 'libm.so.6', 'libcrypto.so.3', 'ld-linux-x86-64.so.2'].map(
  (n) => `${SYS}/${n}`,
);
const ALLOWED = new Set([0, 1, 2, 5, 6, 10]);

/** Symbols ld.so would ever bind to (check_match's first two tests). */
function bindable(s: ElfSymbol): boolean {
  return s.defined && !(s.value === 0n && s.type !== STT_TLS && s.shndx !== SHN_ABS) && ALLOWED.has(s.type);
}

function tables(o: ElfObject): Array<'gnu' | 'sysv'> {
  const t: Array<'gnu' | 'sysv'> = [];
  if (o.dynamic?.gnuHash !== undefined) t.push('gnu');
  if (o.dynamic?.sysvHash !== undefined) t.push('sysv');
  return t;
}

function checkEvery(o: ElfObject, label: string): number {
  let n = 0;
  const bad: string[] = [];
  const defaults = new Map<string, number>();
  for (const s of o.dynamicSymbols)
    if (bindable(s) && !s.versionHidden) defaults.set(s.name, (defaults.get(s.name) ?? 0) + 1);
  for (const s of o.dynamicSymbols) {
    if (!bindable(s)) continue;
    n++;
    for (const t of tables(o)) {
      const exact = lookupSymbol(o, { name: s.name, version: s.version, hidden: true }, t);
      if (exact !== s) bad.push(`${t}: ${s.name}@${s.version} found #${exact?.index}, want #${s.index}`);
      if (s.version !== undefined && lookupSymbol(o, { name: s.name, version: s.version }, t) !== s)
        bad.push(`${t}: ${s.name}@${s.version} (non-hidden reference)`);
      // By name alone: the default (or unversioned) definition, when it is the only one.
      if (!s.versionHidden && defaults.get(s.name) === 1) {
        const plain = lookupSymbol(o, { name: s.name }, t);
        if (plain !== s)
          bad.push(`${t}: ${s.name} found #${plain?.index}@${plain?.version}, want #${s.index}@${s.version}`);
      }
    }
  }
  assert.deepEqual(bad.slice(0, 10), [], label);
  return n;
}

describe('elf: symbol lookup', function () {
  this.timeout(120_000);

  for (const p of REAL) {
    it(`finds every defined dynamic symbol of ${p.split('/').pop()} by name and version`, () => {
      const o = parseElf(readFileSync(p));
      const n = checkEvery(o, p);
      assert.ok(n > 30, `${p}: ${n} symbols checked`);
    });
  }

  it('finds every symbol of the fixtures through both GNU and SysV hash tables', () => {
    for (const name of ['versioned', 'both-hash', 'sysv-hash', 'ifunc', 'tls']) {
      const o = parseElf(readFileSync(fixture(name).path));
      checkEvery(o, name);
    }
    assert.deepEqual(tables(parseElf(readFileSync(fixture('versioned').path))), ['gnu', 'sysv']);
  });

  it('misses names that are not there (bloom filter, empty buckets, chains) and wrong versions', () => {
    const o = parseElf(readFileSync(`${SYS}/libc.so.6`));
    const names = new Set(o.dynamicSymbols.map((s) => s.name));
    let misses = 0;
    for (const s of o.dynamicSymbols.filter(bindable)) {
      for (const other of [`${s.name}_x`, s.name.slice(1), s.name.toUpperCase()]) {
        if (names.has(other)) continue;
        misses++;
        assert.equal(o.lookup(other), undefined, other);
      }
      assert.equal(o.lookup(s.name, 'NOPE_1.0'), undefined, s.name);
    }
    assert.ok(misses > 5000);
    assert.equal(o.lookup('malloc', 'GLIBC_9.99'), undefined);
    // Only hidden (compat) definitions: an unversioned lookup finds nothing, a versioned one finds it.
    assert.equal(o.lookup('_sys_errlist'), undefined);
    assert.equal(o.lookup('_sys_errlist', 'GLIBC_2.4')!.versionHidden, true);
    // A name with a default and hidden versions: the default wins without a version.
    assert.equal(o.lookup('realpath')!.version, 'GLIBC_2.3');
    assert.equal(o.lookup('realpath', 'GLIBC_2.2.5')!.versionHidden, true);
    // Undefined references are never results.
    assert.equal(o.lookup('_dl_argv', 'GLIBC_PRIVATE'), undefined);
  });

  it('computes the GNU and SysV hash functions of the ABI', () => {
    assert.equal(gnuHashOf(''), 5381);
    assert.equal(gnuHashOf('printf'), 0x156b2bb8);
    assert.equal(sysvHashOf(''), 0);
    assert.equal(sysvHashOf('printf'), 0x077905a6);
  });

  it('agrees with the real ld.so (dlsym, dlvsym) on libc and on the versioned fixture', () => {
    const helper = compile({ sources: ['elf/dlsym.c'], out: 'dlsym', flags: ['-O1'] });
    for (const lib of [`${SYS}/libc.so.6`, fixture('versioned').path, `${SYS}/libm.so.6`]) {
      const o = parseElf(readFileSync(lib));
      // dlsym answers an IFUNC with the resolved implementation and TLS with a thread's address: not comparable.
      const syms = o.dynamicSymbols.filter(
        (s) => bindable(s) && s.type !== STT_GNU_IFUNC && s.type !== STT_TLS && s.shndx !== SHN_ABS,
      );
      const reqs: Array<{ name: string; version?: string }> = [];
      for (const s of syms) {
        reqs.push({ name: s.name, version: s.version });
        if (!s.versionHidden) reqs.push({ name: s.name });
      }
      const out = execFileSync(helper, [lib], {
        input: reqs.map((r) => (r.version ? `${r.name}@${r.version}` : r.name)).join('\n') + '\n',
        encoding: 'latin1',
      })
        .trim()
        .split('\n');
      assert.equal(out.length, reqs.length);
      const bad: string[] = [];
      reqs.forEach((r, i) => {
        // dlvsym makes a hidden reference (exact version); dlsym returns the newest (default) version.
        const ours = lookupSymbol(o, { name: r.name, version: r.version, hidden: r.version !== undefined });
        const want = out[i]!;
        const got = ours ? ours.value.toString(16) : '-';
        if (got !== want) bad.push(`${r.name}${r.version ? `@${r.version}` : ''}: ours ${got} ld.so ${want}`);
      });
      assert.deepEqual(bad.slice(0, 10), [], lib);
      assert.ok(reqs.length > 5);
    }
  });
});
