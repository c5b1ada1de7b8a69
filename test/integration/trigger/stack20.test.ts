/**
 * Many patches on one process (test/fixtures/hard/libstack.c): twenty
 * versions stacked by nineteen bundles (v1->v2, v2->v3, ... v19->v20), then
 * every bundle reverted in a random order (seeded; ULP_STACK_SEED replays a
 * run). Reverting a patch that has others stacked on it undoes the stack
 * down to its old build; reverting one that is not in effect (the process
 * already runs a build below it) changes nothing. Each build is mapped
 * once: each apply adds at most one image to --status's ulpMappedBytes,
 * and reverts or re-applies add nothing.
 *
 * The 38 switches and the packing run in this process (hard-lab `here`:
 * the same code as the commands, through the real ptrace path); spawning a
 * command for each would cost most of a second apiece. The commands
 * themselves are run for the status report and the last re-apply.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { imageSpan, parseElf, writableRegions } from '../../../elf/index.js';
import { FORK_PAGE_SIZE } from '../../../runtime/loader/fork/layout.js';
import { STUB_SIZE } from '../../../runtime/stub/layout.js';
import { HardLab, here, lines, linesAfter, status, trigger } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';
import { seededRandom } from '../../../lab/random.js';

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

/** Bytes of the library's redirect journal (runtime/loader/redirect-journal.ts): it grows with the builds it describes. */
function journalBytes(pid: number): number {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.includes('/memfd:ulp:redirects:'))
    .reduce((n, l) => {
      const [a, b] = l.split(' ')[0]!.split('-');
      return n + Number(BigInt('0x' + b) - BigInt('0x' + a));
    }, 0);
}

/** Distinct build memfds of the library mapped in the process (one inode per staged build). */
function mappedBuilds(pid: number): number {
  const inodes = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter(
      (l) =>
        l.includes(`/memfd:ulp:`) &&
        l.includes(`:${SONAME}`) &&
        !l.includes('/memfd:ulp:data:') &&
        !l.includes('/memfd:ulp:redirects:'),
    )
    .map((l) => l.split(/\s+/)[4]);
  return new Set(inodes).size;
}

describe('twenty stacked patches on one process', function () {
  this.timeout(120_000);
  let lab: HardLab;
  before(() => {
    lab = new HardLab({ s: { soname: SONAME, sources: ['hard/libstack.c'] } }, 'stack');
  });
  after(() => lab?.dispose());

  it('applies 19 stacked bundles, reverts them in a random order, and maps each build once', async () => {
    const seed = Number(process.env.ULP_STACK_SEED ?? Math.floor(Math.random() * 2 ** 32));
    console.log(`      seed ${seed} (ULP_STACK_SEED=${seed} replays this order)`);
    const exe = lab.exe('stack_main', { sources: ['hard/stack_main.c'], needs: ['s'] });
    const bundles: string[] = [];
    for (let k = 1; k < N; k++) bundles.push(await lab.packHere('s', k, k + 1));
    const elf = parseElf(readFileSync(lab.lib('s', 1)));
    const span = Number(imageSpan(elf).end - imageSpan(elf).start);
    const region = writableRegions(elf).reduce((n, r) => n + Number(r.end - r.start), 0);

    const t = lab.start(exe, { s: 1 });
    await linesAfter(t, 0, (l) => l.length >= 2);
    const growth: number[] = [];
    let mapped = 0;
    for (let k = 1; k < N; k++) {
      const r = await here.trigger(t.pid, bundles[k - 1]!);
      assert.deepEqual([r.outcome, r.switch?.staged], ['applied', true], `v${k} -> v${k + 1}`);
      assert.equal(await versionNow(t), String(k + 1), `after applying v${k} -> v${k + 1}`);
      // Builds only: the redirect journal is replaced by every switch and checked on its own below.
      const now = (await here.status(t.pid)).ulpMappedBytes - journalBytes(t.pid);
      growth.push(now - mapped);
      mapped = now;
    }
    console.log(
      `      ulpMappedBytes after each apply grew by: ${growth.join(' ')} (image ${span} bytes, shared data ${region})`,
    );
    // The first switch also aliases the loader build's data and maps the stub and fork pages (counted whole);
    // every later one costs one image at most, its writable part mapped from the shared data.
    assert.ok(
      growth[0]! <= span + region + STUB_SIZE + FORK_PAGE_SIZE + 64 * 1024,
      `first apply: ${growth[0]} bytes`,
    );
    growth
      .slice(1)
      .forEach((g, i) =>
        assert.ok(
          g > 0 && g <= span,
          `apply v${i + 2} -> v${i + 3} mapped ${g} bytes, more than the ${span}-byte image`,
        ),
      );

    const stacked = status(t.pid); // the command's report
    assert.equal(stacked.ulpMappedBytes - journalBytes(t.pid), mapped);
    // The journal, describing 19 builds' jumps to the live one, and the spare the next switch writes into.
    assert.ok(
      journalBytes(t.pid) > 0 && journalBytes(t.pid) <= 64 * 1024,
      `journal of ${journalBytes(t.pid)} bytes`,
    );
    const lib = stacked.libraries.find((l: { soname: string }) => l.soname === SONAME);
    assert.equal(lib.builds.length, N, 'the loader’s build and 19 staged ones');
    assert.equal(mappedBuilds(t.pid), N - 1, 'each build is mapped once');

    let live = N;
    const order = shuffle(
      Array.from({ length: N - 1 }, (_, i) => i + 1),
      seededRandom(seed),
    );
    for (const k of order) {
      const r = await here.trigger(t.pid, bundles[k - 1]!, 'reverse');
      if (live > k) {
        assert.deepEqual(
          [r.outcome, r.switch?.staged],
          ['reverted', false],
          `revert v${k} -> v${k + 1} at v${live}`,
        );
        live = k;
      } else {
        assert.equal(
          r.outcome,
          'not-applied',
          `revert v${k} -> v${k + 1} at v${live}: the patch is not in effect`,
        );
      }
      assert.equal(
        await versionNow(t),
        String(live),
        `after reverting v${k} -> v${k + 1} (order ${order.join(',')})`,
      );
    }
    assert.equal(live, 1);

    // Going up again switches to builds already mapped.
    assert.equal(trigger(String(t.pid), bundles[0]!, '--json').json.switch.staged, false);
    assert.equal(await versionNow(t), '2');
    assert.equal(
      status(t.pid).ulpMappedBytes - journalBytes(t.pid),
      mapped,
      'no revert or re-apply mapped a build',
    );
    assert.equal(mappedBuilds(t.pid), N - 1);

    // The library's data was shared by all twenty builds: the counter went up by one every round.
    const all = lines(t.output(), 'round');
    all.forEach((l, i) => assert.equal(l.counter, String(i + 1), `round ${l.round}`));
  });
});
