/** The pure part of --outdated (trigger/outdated-model.ts) on fixed inputs. */
import assert from 'node:assert/strict';
import { parseMaps } from '../../../runtime/maps.js';
import {
  devString,
  dpkgPathAliases,
  mappedCodeFiles,
  mayBeReplaced,
  outdatedOutcome,
  packageFromNotes,
  parseDpkgStatus,
  stateOf,
  summarize,
  type OutdatedLibrary,
  type PairVerdict,
} from '../../../trigger/outdated-model.js';

const MAPS = `
55d0a0000000-55d0a0001000 r--p 00000000 fe:01 100 /usr/bin/prog
55d0a0001000-55d0a0002000 r-xp 00001000 fe:01 100 /usr/bin/prog
7f0000000000-7f0000020000 r--p 00000000 fe:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
7f0000020000-7f0000080000 r-xp 00020000 fe:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
7f0000080000-7f0000090000 rw-p 00080000 fe:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
7f0000100000-7f0000110000 r--p 00000000 fe:01 300 /usr/share/locale/data (deleted)
7f0000200000-7f0000201000 r-xp 00000000 00:01 7 /memfd:ulp:0123456789abcdef:new:libssl.so.3 (deleted)
7f0000300000-7f0000301000 r-xp 00000000 00:05 9 /dev/zero (deleted)
7f0000400000-7f0000401000 r-xp 00000000 00:00 0 [vdso]
7f0000500000-7f0000501000 r-xp 00001000 fe:01 400 /usr/lib/x86_64-linux-gnu/libnohdr.so
`;

describe('--outdated: pure part', () => {
  it('finds the files a process maps code from, with their header mapping, and nothing else', () => {
    const files = mappedCodeFiles(parseMaps(MAPS));
    assert.deepEqual(
      files.map((f) => [f.path, f.deleted, f.dev, f.inode, '0x' + f.header.start.toString(16)]),
      [
        ['/usr/bin/prog', false, 'fe:01', 100, '0x55d0a0000000'],
        ['/usr/lib/x86_64-linux-gnu/libssl.so.3', true, 'fe:01', 200, '0x7f0000000000'],
      ],
      'data files, memfds (ulp builds among them), devices, the vDSO and files without a mapped header are left out',
    );
  });

  it('encodes dev_t as maps prints it', () => {
    assert.equal(devString(0xfe01), 'fe:01');
    assert.equal(devString(8 * 256 + 1), '08:01');
    // Large minors and majors (glibc's gnu_dev_makedev layout).
    const makedev = (major: bigint, minor: bigint) =>
      ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
    assert.equal(devString(makedev(0x1abcn, 0x6745n)), '1abc:6745');
  });

  it('calls a file replaced when it was unlinked or the path names another inode, never when only an anonymous device differs', () => {
    const [, ssl] = mappedCodeFiles(parseMaps(MAPS));
    const prog = mappedCodeFiles(parseMaps(MAPS))[0]!;
    assert.equal(mayBeReplaced(ssl!, { dev: 0xfe01, ino: 999 }), true);
    assert.equal(mayBeReplaced(ssl!, undefined), false, 'removed without replacement: nothing to update to');
    assert.equal(mayBeReplaced(prog, { dev: 0xfe01, ino: 100 }), false);
    assert.equal(mayBeReplaced(prog, { dev: 0xfe01, ino: 101 }), true);
    assert.equal(
      mayBeReplaced(prog, { dev: 0x0801, ino: 100 }),
      true,
      'the same inode number on another disk',
    );
    assert.equal(
      mayBeReplaced(prog, { dev: 0x2d, ino: 100 }),
      false,
      'btrfs/overlayfs: stat shows an anonymous device',
    );
  });

  it('reads the package note (FDO 0xcafe1a7e) and ignores others and malformed ones', () => {
    const note = (name: string, type: number, desc: string) => ({ name, type, desc: Buffer.from(desc) });
    assert.deepEqual(
      packageFromNotes([
        note('GNU', 3, 'xx'),
        note(
          'FDO',
          0xcafe1a7e,
          '{"type":"deb","name":"libssl3","version":"3.0.20-1~deb12u2","architecture":"amd64"}\0\0',
        ),
      ]),
      {
        name: 'libssl3',
        version: '3.0.20-1~deb12u2',
        source: 'note',
      },
    );
    assert.equal(packageFromNotes([note('FDO', 0xcafe1a7e, '{not json')]), undefined);
    assert.equal(packageFromNotes([note('FDO', 0xcafe1a7e, '{"type":"deb"}')]), undefined);
    assert.equal(packageFromNotes([note('GNU', 0xcafe1a7e, '{"name":"x"}')]), undefined);
  });

  it('finds installed versions in dpkg status, and merged-/usr aliases of a path', () => {
    const status = parseDpkgStatus(
      [
        'Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 3.0.20-1~deb12u2\nDescription: x\n continued',
        'Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0',
        'Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13.dfsg-1',
      ].join('\n\n'),
    );
    assert.equal(status.get('libssl3'), '3.0.20-1~deb12u2');
    assert.equal(status.get('libssl3:amd64'), '3.0.20-1~deb12u2');
    assert.equal(status.get('zlib1g:amd64'), '1:1.2.13.dfsg-1');
    assert.equal(status.has('gone'), false, 'only installed packages');
    assert.deepEqual(dpkgPathAliases('/usr/lib/x86_64-linux-gnu/libc.so.6'), [
      '/usr/lib/x86_64-linux-gnu/libc.so.6',
      '/lib/x86_64-linux-gnu/libc.so.6',
    ]);
    assert.deepEqual(dpkgPathAliases('/lib64/ld-linux-x86-64.so.2'), [
      '/lib64/ld-linux-x86-64.so.2',
      '/usr/lib64/ld-linux-x86-64.so.2',
    ]);
    assert.deepEqual(dpkgPathAliases('/opt/app/lib/libx.so'), ['/opt/app/lib/libx.so']);
  });

  it('gives each process its state from the live build, the refusal and the pair verdict', () => {
    const pair = (verdict: PairVerdict['verdict']): PairVerdict => ({
      from: 'a',
      to: 'b',
      verdict,
      reasons: verdict === 'incompatible' ? [{ code: 'CODE_X', message: 'm' }] : [],
    });
    assert.deepEqual(stateOf('b', 'b', undefined, undefined), { state: 'patched' });
    assert.deepEqual(stateOf('a', 'b', pair('compatible'), undefined), { state: 'patchable' });
    assert.deepEqual(stateOf('a', 'b', pair('unchanged'), undefined), { state: 'patchable' });
    assert.deepEqual(stateOf('a', 'b', pair('incompatible'), undefined), {
      state: 'refused',
      reasons: [{ code: 'CODE_X', message: 'm' }],
    });
    assert.equal(stateOf('a', 'b', pair('unusable'), undefined).state, 'refused');
    assert.deepEqual(stateOf('a', 'b', undefined, { code: 'TRIGGER_GLIBC', message: 'g' }), {
      state: 'refused',
      reasons: [{ code: 'TRIGGER_GLIBC', message: 'g' }],
    });
    assert.equal(stateOf('a', 'b', undefined, undefined).state, 'inaccessible');
    assert.equal(
      stateOf(undefined, 'b', undefined, undefined).state,
      'inaccessible',
      'an unknown running build is never taken for patched',
    );
    assert.equal(stateOf(undefined, undefined, undefined, undefined).state, 'inaccessible');
  });

  it('counts and decides the exit status: outdated, uninspected or current', () => {
    const lib = (
      states: Array<[number, 'patched' | 'patchable' | 'refused' | 'inaccessible']>,
    ): OutdatedLibrary => ({
      path: '/l',
      soname: 'l',
      onDisk: { buildId: 'b' },
      processes: states.map(([pid, state]) => ({
        pid,
        command: 'c',
        state,
        running: { buildId: 'a' },
        mapFiles: '',
      })),
    });
    const s = summarize([
      lib([
        [1, 'patched'],
        [2, 'patchable'],
      ]),
      lib([[2, 'refused']]),
    ]);
    assert.deepEqual(s, { processes: 2, patched: 1, patchable: 1, refused: 1, inaccessible: 0 });
    assert.equal(outdatedOutcome({ summary: s, uninspected: 0 }), 'outdated');
    const done = summarize([lib([[1, 'patched']])]);
    assert.equal(outdatedOutcome({ summary: done, uninspected: 0 }), 'current');
    assert.equal(outdatedOutcome({ summary: done, uninspected: 3 }), 'uninspected');
    assert.equal(
      outdatedOutcome({ summary: summarize([lib([[1, 'inaccessible']])]), uninspected: 0 }),
      'outdated',
    );
  });
});
