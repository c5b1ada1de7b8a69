/**
 * Thread-local storage across a patch (test/fixtures/hard/libtls.c): four
 * threads each keep their own counters in every TLS access model a library
 * uses (general-dynamic, initial-exec, local-dynamic, static initial-exec),
 * and the program reads the library's TLS directly too. The new build must
 * reuse the old build's TLS module id and offsets; otherwise its code would
 * read another block (zeros, or another variable) and the counters would
 * jump. Every printed line is checked against the thread's own round count.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { parseElf, RelocType } from '../../../elf/index.js';
import { HardLab, libStatus, lines, linesAfter, trigger, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

const SONAME = 'libtls.so.1';
const TLS_TYPES = new Set<number>([RelocType.DTPMOD64, RelocType.DTPOFF64, RelocType.TPOFF64]);

/** Every line a thread prints must match its own counters: id * 1000 + offset + round. */
function checkLine(l: Line): void {
  const base = BigInt(l.t!) * 1000n + BigInt(l.round!);
  const want = { gd: base, ie: base + 100n, ld: base + 200n, sie: base + 300n };
  for (const [k, v] of Object.entries(want))
    assert.equal(
      BigInt(l[k]!),
      v,
      `thread ${l.t} round ${l.round}: ${k}=${l[k]}, expected ${v} (line: ${JSON.stringify(l)})`,
    );
  assert.equal(l.xgd, l.gd, `thread ${l.t}: the program and the library see different tls_gd`);
  assert.equal(l.xlast, l.last);
  assert.equal(l.same, '1', `thread ${l.t}: the library's &tls_gd is not the program's`);
}

function checkRounds(all: Line[]): void {
  const byThread = new Map<string, Line[]>();
  for (const l of all) byThread.set(l.t!, [...(byThread.get(l.t!) ?? []), l]);
  for (const [t, ls] of byThread)
    ls.forEach((l, i) => assert.equal(Number(l.round), i + 1, `thread ${t} skipped a round`));
  all.forEach(checkLine);
}

/** After a switch: every thread (the first line of each aside, which may have run before it) runs `version`'s code. */
async function expectVersion(t: Target, mark: number, threads: number, version: string): Promise<void> {
  const enough = (ls: Line[]) =>
    new Set(ls.map((l) => l.t)).size >= threads &&
    [...Array(threads).keys()].every((i) => ls.filter((l) => l.t === String(i + 1)).length >= 3);
  const ls = await linesAfter(t, mark, enough);
  for (let i = 1; i <= threads; i++) {
    const own = ls.filter((l) => l.t === String(i)).slice(1);
    assert.ok(
      own.every((l) => l.version === version && l.last === version),
      `thread ${i} after the switch: ${JSON.stringify(own.find((l) => l.version !== version || l.last !== version))}`,
    );
  }
}

/** The 8-byte values at the TLS relocation sites of the build mapped at `base`, keyed by (type, symbol, addend). */
function tlsSlots(pid: number, file: string, base: bigint): Map<string, bigint> {
  const elf = parseElf(readFileSync(file));
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const out = new Map<string, bigint>();
    for (const r of elf.relocations) {
      if (!TLS_TYPES.has(r.type)) continue;
      const b = Buffer.alloc(8);
      readSync(fd, b, 0, 8, Number(base + r.offset));
      out.set(`${r.type}:${r.symbol?.name ?? ''}:${r.addend}`, b.readBigUInt64LE());
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

describe('TLS across a patch', function () {
  this.timeout(180_000);
  let lab: HardLab;
  before(() => {
    lab = new HardLab({ tls: { soname: SONAME, sources: ['hard/libtls.c'] } }, 'tls');
  });
  after(() => lab?.dispose());

  it('keeps every thread’s values in all four TLS models through apply and revert, new threads included', async () => {
    const exe = lab.exe('tls_main', { sources: ['hard/tls_main.c'], needs: ['tls'] });
    const fix = lab.pack('tls', 1, 2);
    const t = lab.start(exe, { tls: 1 });
    await linesAfter(t, 0, (ls) =>
      [1, 2, 3, 4].every((i) => ls.filter((l) => l.t === String(i)).length >= 3),
    );

    trigger(String(t.pid), fix);
    let mark = t.output().length;
    process.kill(t.pid, 'SIGUSR1'); // thread 5 starts on the patched library
    await expectVersion(t, mark, 5, '2');

    // From outside: the new build's TLS slots hold exactly the old build's module id and offsets.
    const lib = libStatus(t.pid, SONAME);
    const [old, neu] = [
      lib.builds.find((b: { source: string }) => b.source === 'loader'),
      lib.builds.find((b: { source: string }) => b.source === 'ulp'),
    ];
    assert.equal(neu.live, true);
    const was = tlsSlots(t.pid, lab.lib('tls', 1), BigInt(old.base));
    const now = tlsSlots(t.pid, lab.lib('tls', 2), BigInt(neu.base));
    assert.ok(was.size >= 7, `the fixture has ${was.size} TLS relocations`);
    assert.deepEqual(now, was);

    trigger(String(t.pid), fix, '--revert');
    mark = t.output().length;
    process.kill(t.pid, 'SIGUSR1'); // thread 6 starts after the revert
    await expectVersion(t, mark, 6, '1');

    trigger(String(t.pid), fix);
    mark = t.output().length;
    await expectVersion(t, mark, 6, '2');
    checkRounds(lines(t.output(), 't'));
    assert.ok(t.alive());
  });
});
