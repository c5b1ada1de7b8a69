/**
 * The unprivileged-user tests run the commands as uid 65534 from a place
 * that user can read (lab/other-user.ts); these check that the readability
 * test reads the mode bits of the whole path, and that a readable copy of
 * the commands really runs as that user.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NOBODY, othersCanRead, readableCopy, runCliAs } from '../../../lab/other-user.js';

describe('lab: running the commands as another user', function () {
  this.timeout(180_000);

  it('a file is readable by others only when it and every folder above it let them through', () => {
    const top = mkdtempSync(join(tmpdir(), 'ulp-modes-'));
    try {
      mkdirSync(join(top, 'a'));
      const file = join(top, 'a', 'f');
      writeFileSync(file, 'x');
      for (const [topMode, dirMode, fileMode, want] of [
        [0o755, 0o755, 0o644, true],
        [0o700, 0o755, 0o644, false],
        [0o711, 0o711, 0o644, true],
        [0o755, 0o750, 0o644, false],
        [0o755, 0o755, 0o600, false],
      ] as const) {
        chmodSync(top, topMode);
        chmodSync(join(top, 'a'), dirMode);
        chmodSync(file, fileMode);
        assert.equal(
          othersCanRead(file),
          want,
          `${topMode.toString(8)}/${dirMode.toString(8)}/${fileMode.toString(8)}`,
        );
      }
      assert.equal(othersCanRead(join(top, 'missing')), false);
    } finally {
      rmSync(top, { recursive: true, force: true });
    }
  });

  it('the readable copy runs ulp-trigger as uid 65534', function () {
    if (process.getuid?.() !== 0) this.skip(); // switching users needs root
    const home = mkdtempSync(join(tmpdir(), 'ulp-home-'));
    chmodSync(home, 0o1777);
    try {
      const root = readableCopy();
      const r = runCliAs(NOBODY, 'ulp-trigger', ['--version'], home, { root });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /\d+\.\d+\.\d+/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
