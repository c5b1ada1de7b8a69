/**
 * Bad input, short: one case of every kind of damage (lab/soak/corpus.ts)
 * through the real commands against a live target. Each must be refused with
 * its specific code and the exit code docs/CLI.md gives that code, ulp-pack
 * must write nothing, and the target must keep its mappings and every GOT
 * word. `npm run soak` runs the whole corpus with random flips and fuzz.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCorpus, runCorpus, shortCorpus, type CorpusResult } from '../../../lab/soak/corpus.js';
import { knownCorpus } from '../../../lab/soak/known-bugs.js';
import { reliable, runner, verdict } from './shared.js';

/** Every kind of damage the corpus must hold, by group (the list). */
const GROUPS: Record<string, string> = {
  file: 'not a bundle: empty, zip, directory, device, missing',
  truncated: 'truncated bundles and trailing garbage',
  'bit flip': 'single bits flipped',
  paths: 'absolute and traversal entry names',
  links: 'symbolic and hard links',
  entries: 'directories, devices, pax headers, unexpected, duplicate and missing entries',
  size: 'oversized entries',
  manifest: 'schema violations and forged manifests',
  hashes: 'hash and size mismatches',
  'build-ids': 'wrong build-ids',
  signature: 'signature mismatches, unsigned, edited after signing',
  keys: 'bad --key files',
  'elf in bundle': 'broken ELF files inside consistent bundles',
  process:
    'consistent bundles wrong for the process (other build, not loaded, glibc, layout, unresolved import)',
  elf: 'broken ELF files given to ulp-pack',
  'elf fuzz': 'random header bytes given to ulp-pack',
};

describe('reliability: bad input (short corpus)', function () {
  let results: CorpusResult[] = [];
  let health: string[] = [];
  let dir: string;

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'ulp-corpus-'));
    const all = buildCorpus(reliable('partial'), dir, {
      flips: 6,
      elfFuzz: 2,
      seed: Number(process.env.ULP_SEED ?? 11),
      heavy: false,
    });
    // Besides the first case of each group: the forged bundles that only the trigger's loader can refuse.
    const also = [
      'new build with another data layout, report forged',
      'new build imports a symbol nobody defines, report forged',
    ];
    const run = await runCorpus(runner, reliable('partial'), shortCorpus(all, also));
    results = run.results;
    health = run.health;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [group, what] of Object.entries(GROUPS)) {
    it(`${group}: ${what}`, function () {
      const mine = results.filter((r) => r.group === group);
      assert.ok(mine.length > 0, `the short corpus has no "${group}" case`);
      const failed = mine.filter((r) => !r.ok);
      const bugs = failed.map(knownCorpus);
      const problems = failed.map((r) => `${r.tool} ${r.name}: ${r.problems.join('; ')}`);
      verdict(this, group, problems, bugs.every((b) => b && b === bugs[0]) ? bugs[0] : undefined);
    });
  }

  it('the target is healthy after the corpus (alive, every call right)', function () {
    assert.deepEqual(health, []);
  });
});
