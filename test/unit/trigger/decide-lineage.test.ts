/**
 * The revert decision in a stack of patches (trigger/decide.ts with the
 * lineage of runtime/loader/library.ts), pure: which build sits on which is
 * what tells "undo the stack above this patch" from "this patch is not in
 * effect". test/integration/trigger/stack20.test.ts runs the same on a real process.
 */
import assert from 'node:assert/strict';
import { lineageOf, stackedOn } from '../../../runtime/loader/library.js';
import type { Family, ProcessObject } from '../../../runtime/loader/model.js';
import { decide, type LibraryFacts } from '../../../trigger/decide.js';

const id = (v: number) => `${String(v).padStart(2, '0')}`.repeat(20); // 40 hex digits

/** A build as lineageOf sees it: its build-id and, for a staged one, its memfd name's parts. */
function build(v: number, ulp?: { role: 'new' | 'old'; peer?: number }): ProcessObject {
  return {
    buildId: id(v),
    source: ulp ? 'ulp' : 'linkmap',
    ...(ulp
      ? {
          ulp: {
            patchId: 'ab'.repeat(16),
            role: ulp.role,
            soname: 'libx.so.1',
            ...(ulp.peer ? { peer: id(ulp.peer).slice(0, 16) } : {}),
          },
        }
      : {}),
  } as ProcessObject;
}

/** v1 loaded by ld.so, v2..vn each stacked on the one before. */
function stack(n: number, opts: { withoutPeer?: number } = {}): Family {
  const builds = [
    build(1),
    ...Array.from({ length: n - 1 }, (_, i) =>
      build(i + 2, { role: 'new', ...(opts.withoutPeer === i + 2 ? {} : { peer: i + 1 }) }),
    ),
  ];
  return { soname: 'libx.so.1', canonical: builds[0]!, builds };
}

function facts(family: Family, live: number): LibraryFacts {
  return {
    pid: 1,
    soname: family.soname,
    liveBuildId: id(live),
    referenced: [id(live)],
    present: family.builds.map((b) => b.buildId!),
    liveIsLoaderBuild: live === 1,
    lineage: lineageOf(family),
  };
}

/** Reverting the bundle v(k) -> v(k+1). */
const revert = (f: LibraryFacts, k: number) => decide('reverse', id(k + 1), id(k), f);

describe('revert decisions in a stack of patches', () => {
  it('reads the stack from the staged builds’ peers', () => {
    const l = lineageOf(stack(4));
    assert.equal(l.complete, true);
    assert.deepEqual(
      [...l.below].map(([u, d]) => [u.slice(0, 2), d.map((x) => x.slice(0, 2))]),
      [
        ['02', ['01']],
        ['03', ['02']],
        ['04', ['03']],
      ],
    );
    assert.equal(stackedOn(l, id(4), id(2)), true);
    assert.equal(stackedOn(l, id(2), id(4)), false);
    assert.equal(stackedOn(l, id(1), id(2)), false);
  });

  it('undoes the stack above a patch, and leaves a patch the process is already below alone', () => {
    const fam = stack(5);
    assert.deepEqual(revert(facts(fam, 5), 2), {
      action: 'switch',
      note: `also undoes what was stacked on top of it (live build ${id(5).slice(0, 12)})`,
    });
    assert.deepEqual(
      revert(facts(fam, 2), 3),
      { action: 'noop', reason: 'not-applied' },
      'a revert never moves up',
    );
    assert.deepEqual(revert(facts(fam, 2), 4), { action: 'noop', reason: 'not-applied' });
    assert.deepEqual(revert(facts(fam, 4), 1), {
      action: 'switch',
      note: `also undoes what was stacked on top of it (live build ${id(4).slice(0, 12)})`,
    });
    assert.deepEqual(
      revert(facts(fam, 3), 3),
      { action: 'noop', reason: 'not-applied' },
      'v3 live: reverting v3 -> v4 has nothing to do',
    );
    assert.deepEqual(
      revert(facts(fam, 4), 3),
      { action: 'switch' },
      'the live build is the bundle’s new one',
    );
  });

  it('an old build staged by a revert sits under the bundle’s new build', () => {
    // The process started on v2 (ld.so's build); reverting v1 -> v2 staged v1 as the bundle's old build.
    const builds = [build(2), build(1, { role: 'old', peer: 2 }), build(3, { role: 'new', peer: 2 })];
    const fam: Family = { soname: 'libx.so.1', canonical: builds[0]!, builds };
    const l = lineageOf(fam);
    assert.equal(stackedOn(l, id(2), id(1)), true);
    assert.equal(stackedOn(l, id(3), id(1)), true);
    assert.equal(stackedOn(l, id(1), id(3)), false);
    const f = { ...facts(fam, 1), liveIsLoaderBuild: false };
    assert.deepEqual(
      decide('reverse', id(3), id(2), f),
      { action: 'noop', reason: 'not-applied' },
      'at v1, v2 -> v3 is not in effect',
    );
  });

  it('a process that loaded the new build at start runs it, it was not patched', () => {
    const fam = stack(1);
    const f = { ...facts(fam, 1), patchedByUlp: false };
    assert.deepEqual(decide('forward', id(0), id(1), f), { action: 'noop', reason: 'runs-new-build' });
    assert.deepEqual(
      decide('forward', id(0), id(1), { ...f, patchedByUlp: true }),
      { action: 'noop', reason: 'already-applied' },
      'ulp reverted and re-applied it',
    );
    assert.deepEqual(decide('reverse', id(1), id(0), { ...f, liveBuildId: id(0), referenced: [id(0)] }), {
      action: 'noop',
      reason: 'not-applied',
    });
    const patched = stack(2);
    assert.deepEqual(decide('forward', id(1), id(2), { ...facts(patched, 2), patchedByUlp: true }), {
      action: 'noop',
      reason: 'already-applied',
    });
  });

  it('without peers in the names (builds mapped by an older trigger), keeps the earlier rule', () => {
    const fam = stack(4, { withoutPeer: 3 });
    assert.equal(lineageOf(fam).complete, false);
    // v2 live, revert v3 -> v4: the lineage cannot tell, and any live staged build counts as stacked on top.
    assert.equal(revert(facts(fam, 2), 3).action, 'switch');
    assert.deepEqual(revert(facts(fam, 1), 3), { action: 'noop', reason: 'not-applied' });
  });
});
