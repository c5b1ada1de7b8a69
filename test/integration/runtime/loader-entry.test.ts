/**
 * The loader as a layer (runtime/loader/index.ts): the trigger reaches it
 * through its one entry, and the pure decision code does not load the
 * runtime. Checked on the sources and on a real import in a fresh node.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../../lab/cli.js';

describe('the loader layer', () => {
  it('trigger/ imports runtime/loader only through index.ts, or lineage.ts where it must stay pure', () => {
    const dir = join(ROOT, 'trigger');
    const reached: string[] = [];
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/from '\.\.\/runtime\/loader\/([^']+)'/g))
        reached.push(`${f}: ${m[1]}`);
    }
    assert.ok(reached.length > 0, 'the trigger uses the loader');
    assert.deepEqual(
      reached.filter((r) => !/: (index|lineage)\.js$/.test(r)),
      [],
    );
  });

  it('importing the pure trigger/decide.ts does not load koffi (the runtime)', () => {
    const script = `await import(${JSON.stringify(join(ROOT, 'trigger', 'decide.ts'))}); const { readFileSync } = await import('node:fs'); process.stdout.write(String(readFileSync('/proc/self/maps', 'utf8').includes('koffi')));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'false');
    // The check can fail: the entry does map koffi.
    const entry = script.replace(
      join(ROOT, 'trigger', 'decide.ts'),
      join(ROOT, 'runtime', 'loader', 'index.ts'),
    );
    const e = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', entry], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.equal(e.stdout, 'true', e.stderr);
  });
});
