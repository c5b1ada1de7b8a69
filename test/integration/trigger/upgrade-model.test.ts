/**
 * `--outdated --apply`, the pure part: grouping by build pair, the bundle's
 * name, what still needs a restart, the batch lines; and the command line's
 * refusals, which happen before any process or folder is touched.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OutdatedLibrary, OutdatedProcess } from '../../../trigger/outdated-model.js';
import {
  bundleFileName,
  needingRestart,
  renderUpgrade,
  resultLine,
  upgradeGroups,
  type UpgradeResult,
} from '../../../trigger/upgrade-model.js';
import { runCli } from '../../../lab/cli.js';

const proc = (
  pid: number,
  state: OutdatedProcess['state'],
  buildId: string | undefined,
  command = 'srv',
): OutdatedProcess => ({
  pid,
  command,
  state,
  running: { buildId },
  mapFiles: `/proc/${pid}/map_files/1000-2000`,
});
const library = (path: string, disk: string | undefined, processes: OutdatedProcess[]): OutdatedLibrary => ({
  path,
  soname: 'libx.so.1',
  onDisk: { buildId: disk },
  processes,
});

describe('--outdated --apply: model (pure)', () => {
  it('groups patchable processes by running build: one bundle per pair, refused and patched ones left out', () => {
    const libs = [
      library('/usr/lib/libx.so.1', 'n', [
        proc(1, 'patchable', 'a'),
        proc(2, 'patchable', 'b'),
        proc(3, 'patchable', 'a'),
        proc(4, 'refused', 'c'),
        proc(5, 'patched', 'n'),
        proc(6, 'inaccessible', undefined),
      ]),
      library('/usr/lib/liby.so.1', undefined, [proc(7, 'patchable', 'a')]),
    ];
    assert.deepEqual(
      upgradeGroups({ libraries: libs }).map((g) => [
        g.library.path,
        g.from,
        g.to,
        g.processes.map((p) => p.pid),
      ]),
      [
        ['/usr/lib/libx.so.1', 'a', 'n', [1, 3]],
        ['/usr/lib/libx.so.1', 'b', 'n', [2]],
      ],
    );
  });

  it('names a bundle by SONAME and both full build-ids, with nothing a path could misread', () => {
    assert.equal(bundleFileName('libssl.so.3', 'aa', 'bb'), 'libssl.so.3_aa_bb.ulp');
    assert.equal(bundleFileName('../lib x', 'aa', 'bb'), '.._lib_x_aa_bb.ulp');
  });

  it('lists what still needs a restart by command, as needrestart -b does', () => {
    const libs = [
      library('/l1', 'n', [
        proc(9, 'refused', 'a', 'nginx'),
        proc(3, 'patched', 'n', 'nginx'),
        proc(4, 'patchable', 'a', 'nginx'),
      ]),
      library('/l2', 'n', [proc(9, 'inaccessible', 'a', 'nginx'), proc(2, 'refused', 'a', 'cron')]),
    ];
    assert.deepEqual(
      [...needingRestart({ libraries: libs })],
      [
        ['cron', [2]],
        ['nginx', [4, 9]],
      ],
    );
  });

  it('one result line per process, values with spaces quoted', () => {
    assert.equal(
      resultLine({
        pid: 7,
        command: 'srv',
        soname: 'libx.so.1',
        library: '/l',
        from: 'a',
        to: 'b',
        result: 'applied',
        patchId: 'p',
        pauseMs: 1.234,
      }),
      'ULP-RESULT: pid=7 comm=srv lib=libx.so.1 result=applied from=a to=b patch=p pause_ms=1.23',
    );
    assert.equal(
      resultLine({
        pid: 8,
        command: 'my app',
        soname: undefined,
        library: '/l',
        from: 'a',
        to: undefined,
        result: 'refused',
        reason: { code: 'DATA_X', message: 'data "moved"' },
      }),
      'ULP-RESULT: pid=8 comm="my app" lib=/l result=refused from=a code=DATA_X reason="data \\"moved\\""',
    );
  });

  it('renders results, then the batch lines', () => {
    const r: UpgradeResult = {
      bundlesDir: '/b',
      bundles: [
        {
          soname: 'libx.so.1',
          library: '/l',
          from: 'aaaaaaaaaaaaaaaa',
          to: 'bbbbbbbbbbbbbbbb',
          state: 'packed',
          path: '/b/x.ulp',
          patchId: 'pppppppppppppppp',
        },
      ],
      processes: [
        {
          pid: 1,
          command: 'srv',
          soname: 'libx.so.1',
          library: '/l',
          from: 'a',
          to: 'b',
          result: 'applied',
          patchId: 'p',
          pauseMs: 1,
        },
        {
          pid: 2,
          command: 'srv',
          soname: 'libx.so.1',
          library: '/l',
          from: 'a',
          to: 'b',
          result: 'failed',
          patchId: 'p',
          reason: { code: 'PROC_STOP_TIMEOUT', message: 'a thread did not stop' },
        },
      ],
      after: {
        libraries: [library('/l', 'b', [proc(1, 'patched', 'b'), proc(2, 'patchable', 'a')])],
        pairs: [],
        summary: { processes: 2, patched: 1, patchable: 1, refused: 0, inaccessible: 0 },
        uninspected: 0,
        scanned: 2,
        totalMs: 1,
      },
      totalMs: 1,
    };
    const text = renderUpgrade(r);
    assert.match(
      text,
      /^libx\.so\.1 \(\/l\): aaaaaaaaaaaa -> bbbbbbbbbbbb: packed \/b\/x\.ulp \(patch pppppppppppp\)\n/,
    );
    assert.match(
      text,
      /\n {2}pid 2 \(srv\) libx\.so\.1: failed: a thread did not stop \[PROC_STOP_TIMEOUT\]\n/,
    );
    assert.match(
      text,
      /\nresult: 1 patched; still to restart: 1 processes \(--outdated says why\)\n\nULP-RESULT: pid=1 .*\nULP-RESULT: pid=2 .*\nNEEDRESTART-PID: srv=2\n$/,
    );
  });
});

describe('--outdated --apply: command line', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'ulp-apply-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  function expectError(args: string[], exit: number, code: string, env: Record<string, string> = {}): void {
    const r = runCli('ulp-trigger', [...args, '--json'], env);
    assert.equal(r.code, exit, r.stdout + r.stderr);
    assert.equal(r.json?.error?.code, code, r.stdout);
    assert.ok(r.json.error.hint);
  }

  it('refuses contradictions (64) and a bundles folder it cannot use (5) before scanning', () => {
    expectError(['--apply', '1'], 64, 'TRIGGER_USAGE');
    expectError(['--outdated', '--bundles-dir', dir], 64, 'TRIGGER_USAGE');
    expectError(['--outdated', '--apply', '--dry-run'], 64, 'TRIGGER_USAGE');
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    expectError(
      ['--outdated', '--apply', '--bundles-dir', join(file, 'sub'), '1'],
      5,
      'TRIGGER_BUNDLES_DIR_UNWRITABLE',
    );
    expectError(['--outdated', '--apply', '1'], 5, 'TRIGGER_BUNDLES_DIR_UNWRITABLE', {
      ULP_BUNDLES_DIR: join(file, 'sub'),
    });
  });

  it('with nothing outdated: exit 0, the folder created, nothing in it', () => {
    const bundles = join(dir, 'bundles');
    const r = runCli('ulp-trigger', ['--outdated', '--apply', '--bundles-dir', bundles, String(process.pid)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /^no process runs a replaced shared library that is not patched\nresult: 0 patched; no process needs a restart for a replaced library\n/,
    );
    assert.ok(existsSync(bundles));
  });
});
