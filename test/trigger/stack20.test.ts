/**
 * Many patches on one process (test/fixtures/hard/libstack.c): twenty
 * versions stacked by nineteen bundles (v1->v2, v2->v3, ... v19->v20), then
 * every bundle reverted in a random order (seeded; ULP_STACK_SEED replays a
 * run). Reverting a patch that has others stacked on it undoes the stack
 * down to its old build; reverting one that is not in effect (the process
 * already runs a build below it) changes nothing. Each build is mapped
 * once: reverts only switch between builds already in memory, which
 * --status's ulpMappedBytes shows.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { imageSpan, parseElf, writableRegions } from '../../elf/index.js';
import { HardLab, lines, linesAfter, status, trigger, triggerAsync } from '../helpers/hard-lab.js';
import type { Target } from '../helpers/target.js';
import { seededRandom } from '../helpers/random.js';

const SONAME = 'libstack.so.1';
const N = 20;


function shuffle<T>(xs: T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** The version the program prints once a command has returned (the first round after it may predate the switch). */
async function versionNow(t: Target): Promise<string> {
  const ls = await linesAfter(t, t.output().length, (l) => l.length >= 2);
  return ls.at(-1)!.version!;
}

/** Distinct build memfds of the library mapped in the process (one inode per staged build). */
function mappedBuilds(pid: number): number {
  const inodes = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`/memfd:ulp:`) && l.includes(`:${SONAME}`) && !l.includes('/memfd:ulp:data:'))
    .map((l) => l.split(/\s+/)[4]);
  return new Set(inodes).size;
}

describe('twenty stacked patches on one process', function () {
  this.timeout(180_000);
  let lab: HardLab;
  before(() => {
    lab = new HardLab({ s: { soname: SONAME, sources: ['hard/libstack.c'] } }, 'stack');
  });
  after(() => lab?.dispose());

  it('applies 19 stacked bundles, reverts them in a random order, and maps each build once', async () => {
    const seed = Number(process.env.ULP_STACK_SEED ?? Math.floor(Math.random() * 2 ** 32));
    console.log(`      seed ${seed} (ULP_STACK_SEED=${seed} replays this order)`);
    const exe = lab.exe('stack_main', { sources: ['hard/stack_main.c'], needs: ['s'] });
    // Packed one after another in the background while the first ones are applied.
    const packing = lab.packEach(
      's',
      Array.from({ length: N - 1 }, (_, i) => [i + 1, i + 2] as [number, number]),
    );
    const t = lab.start(exe, { s: 1 });
    await linesAfter(t, 0, (l) => l.length >= 2);

    for (let k = 1; k < N; k++) {
      const r = (await triggerAsync(String(t.pid), await packing[k - 1]!, '--json')).json;
      assert.deepEqual([r.outcome, r.switch.staged], ['applied', true], `v${k} -> v${k + 1}`);
      assert.equal(await versionNow(t), String(k + 1), `after applying v${k} -> v${k + 1}`);
    }
    const stacked = status(t.pid);
    const lib = stacked.libraries.find((l: { soname: string }) => l.soname === SONAME);
    assert.equal(lib.builds.length, N, 'the loader’s build and 19 staged ones');
    assert.equal(mappedBuilds(t.pid), N - 1, 'each build is mapped once');
    // Memory: each staged build costs its image (its writable region mapped from the shared data), plus, once,
    // the loader build's alias of the shared data and the stub page (and fork handlers: a few pages).
    const elf = parseElf(readFileSync(lab.lib('s', 1)));
    const span = Number(imageSpan(elf).end - imageSpan(elf).start);
    const region = writableRegions(elf).reduce((n, r) => n + Number(r.end - r.start), 0);
    console.log(`      ulpMappedBytes after ${N - 1} patches: ${stacked.ulpMappedBytes} (image ${span} bytes, shared data ${region})`);
    assert.ok(stacked.ulpMappedBytes <= (N - 1) * span + region + 64 * 1024, `${stacked.ulpMappedBytes} bytes for ${N - 1} builds of ${span} bytes`);

    const bundles = await Promise.all(packing);
    let live = N;
    const order = shuffle(
      Array.from({ length: N - 1 }, (_, i) => i + 1),
      seededRandom(seed),
    );
    for (const k of order) {
      const r = trigger(String(t.pid), bundles[k - 1]!, '--revert', '--json').json;
      if (live > k) {
        assert.deepEqual([r.outcome, r.switch.staged], ['reverted', false], `revert v${k} -> v${k + 1} at v${live}`);
        live = k;
      } else {
        assert.equal(r.outcome, 'not-applied', `revert v${k} -> v${k + 1} at v${live}: the patch is not in effect`);
      }
      assert.equal(await versionNow(t), String(live), `after reverting v${k} -> v${k + 1} (order ${order.join(',')})`);
    }
    assert.equal(live, 1);

    // Going up again switches to builds already mapped.
    assert.equal(trigger(String(t.pid), bundles[0]!, '--json').json.switch.staged, false);
    assert.equal(await versionNow(t), '2');
    const end = status(t.pid);
    assert.equal(end.ulpMappedBytes, stacked.ulpMappedBytes, 'no revert or re-apply mapped anything');
    assert.equal(mappedBuilds(t.pid), N - 1);

    // The library's data was shared by all twenty builds: the counter went up by one every round.
    const all = lines(t.output(), 'round');
    all.forEach((l, i) => assert.equal(l.counter, String(i + 1), `round ${l.round}`));
  });
});
