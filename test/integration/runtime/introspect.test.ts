/**
 * Reading a process without stopping it: /proc/PID/maps, the auxiliary
 * vector, and the loader's link map with each object's build-id read from
 * memory, compared with what the files on disk say.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import {
  AT,
  auxvInfo,
  findMapping,
  parseMaps,
  readAuxv,
  readLinkMap,
  readMaps,
} from '../../../runtime/index.js';
import { compile } from '../../../lab/compile.js';
import { startTarget } from '../../../lab/target.js';

function linkdemo(extra: string[]): string {
  const lib = compile({
    sources: ['runtime/linkdemo_lib.c'],
    out: 'libulpdemo.so',
    flags: ['-shared', '-fPIC', '-Wl,--build-id', '-Wl,-soname,libulpdemo.so'],
  });
  return compile({
    sources: ['runtime/linkdemo.c'],
    out: 'linkdemo',
    flags: ['-Wl,--build-id', ...extra],
    libs: [lib, `-Wl,-rpath,${dirname(lib)}`],
  });
}

describe('runtime: reading a process from outside', () => {
  it('parses /proc/PID/maps lines', () => {
    const maps = parseMaps(
      [
        '55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234                       /usr/bin/prog',
        '7f0000000000-7f0000001000 rw-s 00000000 00:01 77                         /memfd:ulp:stub (deleted)',
        '7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]',
        '7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]',
        '7ffe00000000-7ffe00001000 rw-p 00000000 00:00 0 ',
      ].join('\n'),
    );
    assert.equal(maps.length, 5);
    assert.deepEqual(maps[0], {
      start: 0x55d0c0a00000n,
      end: 0x55d0c0a01000n,
      read: true,
      write: false,
      exec: false,
      shared: false,
      offset: 0n,
      dev: '08:01',
      inode: 1234,
      path: '/usr/bin/prog',
      deleted: false,
    });
    assert.equal(maps[1]!.shared, true);
    assert.equal(maps[1]!.deleted, true);
    assert.equal(maps[3]!.exec, true);
    assert.equal(maps[4]!.path, '');
    assert.equal(findMapping(maps, 0x7ffc00000fffn)?.path, '[stack]');
    assert.equal(findMapping(maps, 0x7ffc00021000n), undefined);
  });

  for (const [kind, flags] of [
    ['PIE', ['-fPIE', '-pie']],
    ['non-PIE', ['-fno-PIE', '-no-pie']],
  ] as const) {
    it(`walks the link map of a ${kind} executable with build-ids read from memory`, async () => {
      const exe = linkdemo([...flags]);
      const t = startTarget([exe]);
      try {
        await t.waitFor((o) => /ready/.test(o));
        const aux = auxvInfo(readAuxv(t.pid));
        const maps = readMaps(t.pid);
        assert.equal(aux.pageSize, 4096);
        assert.equal(findMapping(maps, aux.phdr)?.path, exe);
        assert.ok(findMapping(maps, aux.base)?.path.includes('ld-linux'), 'AT_BASE is ld.so');
        assert.equal(findMapping(maps, aux.sysinfoEhdr)?.path, '[vdso]');
        assert.equal(readAuxv(t.pid).get(AT.ENTRY), aux.entry);

        const lm = readLinkMap(t.pid);
        assert.ok(lm.consistent);
        const byName = (re: RegExp) => lm.objects.find((o) => re.test(o.path));
        const main = lm.objects[0]!;
        assert.ok(main.isMain);
        assert.equal(main.name, '');
        assert.equal(main.path, exe);
        if (kind === 'non-PIE') {
          assert.equal(main.bias, 0n);
          assert.equal(main.headerAddr, 0x400000n);
        }
        const lib = byName(/libulpdemo\.so$/)!;
        const libc = byName(/libc\.so\.6$/)!;
        const ld = byName(/ld-linux-x86-64\.so\.2$/)!;
        const vdso = lm.objects.find((o) => o.isVdso)!;
        assert.ok(lib && libc && ld && vdso, JSON.stringify(lm.objects.map((o) => o.path)));
        assert.equal(ld.bias, aux.base);
        assert.equal(vdso.headerAddr, aux.sysinfoEhdr);
        for (const o of [main, lib, libc, ld]) {
          const file = parseElf(readFileSync(o.path), { expect: 'any' });
          assert.ok(o.buildId, `${basename(o.path)} has a build-id`);
          assert.equal(o.buildId, file.buildId, `build-id of ${o.path}`);
          const m = findMapping(maps, o.headerAddr)!;
          assert.equal(m.offset, 0n);
          assert.equal(m.path, o.path === exe ? exe : m.path);
          assert.equal(findMapping(maps, o.ld)?.inode, m.inode, 'l_ld lies in the same file');
        }
        assert.ok(vdso.buildId, 'the vDSO has a build-id too');
      } finally {
        t.dispose();
      }
    });
  }
});
