/**
 * Where one process's stops and ptrace requests go in `ulp-trigger --all`:
 * runAll() in this process on a small fleet (first apply, revert, re-apply),
 * every count of runtime/sys/tally.ts per process. Faster to iterate on than
 * scripts/bench-all.ts, which prints the same totals beside its rates.
 *
 *   npx tsx scripts/count-all.ts [--processes 20] [--sleep]
 */
import { join } from 'node:path';
import { readBundleFile } from '../patches/index.js';
import { closeTally, openTally } from '../runtime/sys/tally.js';
import { runAll } from '../trigger/all.js';
import { ensureBuilt, flag, markdownTable, numbers } from '../lab/bench/common.js';
import { fleetProgram, libdemo, libDir, pack, workDir } from '../lab/bench/fixtures.js';
import { countsOf, startFleet, type Counts } from './bench-all.js';
import { handleArgs } from '../lab/script-args.js';

const N = numbers('--processes', [20])[0]!;
const MODE = flag('--sleep') ? 'sleep' : 'wait';

async function counted(fix: string, which: 'forward' | 'reverse'): Promise<Counts> {
  const bundle = readBundleFile(fix);
  openTally();
  let r;
  let t;
  try {
    r = await runAll(bundle, { which });
  } finally {
    t = closeTally();
  }
  const bad = r.processes.filter((p) => !p.ok);
  if (bad.length) throw new Error(`runAll ${which}: ${bad.length} failed: ${JSON.stringify(bad[0])}`);
  return countsOf(t, r.processes.length);
}

async function main(): Promise<void> {
  handleArgs(import.meta.url, { values: ['--processes'], flags: ['--sleep'] });
  ensureBuilt();
  const tag = `count-${process.pid}-${Date.now()}`;
  const w = workDir('count-all');
  try {
    const fix = pack(libdemo(1, tag), libdemo(2, tag), join(w.dir, 'fix.ulp'));
    const lib = libDir(w.dir, 'lib', { 'libdemo.so.1': libdemo(1, tag) });
    const fleet = await startFleet(fleetProgram(tag), N, MODE, lib);
    try {
      const runs: Array<[string, Counts]> = [
        ['first apply', await counted(fix, 'forward')],
        ['revert', await counted(fix, 'reverse')],
        ['re-apply', await counted(fix, 'forward')],
      ];
      if (/BAD/.test(fleet.output())) throw new Error('a fleet process computed a wrong result');
      const keys = [...new Set(runs.flatMap(([, c]) => c.detail.map(([k]) => k)))];
      const of = (c: Counts, k: string) => c.detail.find(([x]) => x === k)?.[1] ?? 0;
      keys.sort((a, b) => of(runs[0]![1], b) - of(runs[0]![1], a));
      console.log(
        `Per process, ${N} processes waiting in ${MODE === 'wait' ? 'pause()' : 'nanosleep(1 s)'}:\n`,
      );
      console.log(
        markdownTable(
          ['count', ...runs.map(([name]) => name)],
          [
            ['target stops', ...runs.map(([, c]) => c.stops.toFixed(1))],
            ['ptrace requests', ...runs.map(([, c]) => c.requests.toFixed(1))],
            ['waits', ...runs.map(([, c]) => c.waits.toFixed(1))],
            ['remote syscalls', ...runs.map(([, c]) => c.syscalls.toFixed(1))],
            ['remote calls', ...runs.map(([, c]) => c.calls.toFixed(1))],
            ...keys.map((k) => [k, ...runs.map(([, c]) => of(c, k).toFixed(1))]),
          ],
        ),
      );
    } finally {
      fleet.dispose();
    }
  } finally {
    w.dispose();
  }
}

await main();
