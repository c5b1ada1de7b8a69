/**
 * Fork after a patch (docs/FORK.md). A switch turns a library's writable
 * data into a MAP_SHARED mapping, which fork() would share between parent
 * and child; the atfork handlers the runtime installs give every child its
 * own copy, taken before the fork. Real processes (test/fixtures/fork),
 * patched with the real ulp-pack and ulp-trigger; each process prints what
 * its library global holds, and the test also reads it from outside.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FORK_PAGE_SIZE } from '../../../runtime/loader/fork/layout.js';
import { STUB_SIZE } from '../../../runtime/stub/layout.js';
import { runCli, type Run } from '../../../lab/cli.js';
import { compile } from '../../../lab/compile.js';
import { startTarget, type Target } from '../../../lab/target.js';

type Line = Record<string, string>;
type Relro = 'full' | 'partial';

const RELRO: Record<Relro, string[]> = { full: ['-Wl,-z,relro,-z,now'], partial: ['-Wl,-z,relro,-z,lazy'] };
const SONAME = 'libfork.so.1';
const DATA = `/memfd:ulp:data:${SONAME} (deleted)`;

interface Lab {
  pack(from: number, to: number): string;
  start(version: number, mode: 'pair' | 'workers' | 'threads'): Target;
  dispose(): void;
}

function buildLab(relro: Relro): Lab {
  const dir = mkdtempSync(join(tmpdir(), 'ulp-fork-'));
  const lib = (v: number) =>
    compile({
      sources: ['fork/libfork.c'],
      out: `libfork-v${v}.so`,
      flags: ['-shared', '-fPIC', '-O2', `-DFORK_VERSION=${v}`, `-Wl,-soname,${SONAME}`, ...RELRO[relro]],
    });
  mkdirSync(join(dir, 'link'));
  copyFileSync(lib(1), join(dir, 'link', SONAME));
  const exe = compile({
    sources: ['fork/forker.c'],
    out: 'forker',
    flags: ['-O2', '-pthread', ...RELRO[relro]],
    libs: [`-L${join(dir, 'link')}`, `-l:${SONAME}`],
  });
  const targets: Target[] = [];
  let n = 0;
  return {
    pack(from, to) {
      const out = join(dir, `fix-${from}-${to}.ulp`);
      ok(runCli('ulp-pack', [lib(from), lib(to), '-o', out]));
      return out;
    },
    start(version, mode) {
      const run = join(dir, `run-${n++}`);
      mkdirSync(run);
      copyFileSync(lib(version), join(run, SONAME));
      const t = startTarget([exe, mode], { LD_LIBRARY_PATH: run });
      targets.push(t);
      return t;
    },
    dispose() {
      // Children die with their parent (PR_SET_PDEATHSIG in the fixture).
      for (const t of targets) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

const trigger = (...args: string[]) => ok(runCli('ulp-trigger', args));

function lines(out: string, who?: string): Line[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('who='))
    .map(
      (l) =>
        Object.fromEntries(
          l.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
        ) as Line,
    )
    .filter((l) => who === undefined || l.who === who);
}

/** Waits until `pred` holds for the lines printed after `mark` (an output length). */
async function linesAfter(
  t: Target,
  mark: number,
  pred: (ls: Line[]) => boolean,
  timeoutMs = 15_000,
): Promise<Line[]> {
  const out = await t.waitFor((o) => pred(lines(o.slice(mark))), timeoutMs);
  return lines(out.slice(mark));
}

/** Each process's value lines must go up by exactly `step`: any other jump is another process's write. */
function assertSteps(ls: Line[], step: number, what: string): void {
  const byPid = new Map<string, Line[]>();
  for (const l of ls.filter((x) => x.value !== undefined && x.round !== undefined))
    byPid.set(l.pid!, [...(byPid.get(l.pid!) ?? []), l]);
  assert.ok(byPid.size > 0, `no lines of ${what}`);
  for (const [pid, own] of byPid) {
    for (let i = 1; i < own.length; i++) {
      const d = BigInt(own[i]!.value!) - BigInt(own[i - 1]!.value!);
      assert.equal(
        d,
        BigInt(step),
        `${what} ${pid}: value went ${own[i - 1]!.value} -> ${own[i]!.value} (round ${own[i]!.round}): another process wrote its global`,
      );
    }
  }
}

/** Inodes of the library's shared-data memfd mappings in a process (one per alias). */
function dataInodes(pid: number | string): number[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(DATA))
    .map((l) => Number(l.split(/\s+/)[4]));
}

/** fork_value read from outside: the loader's build's address (every alias shares its pages). */
function readValue(pid: number | string): bigint {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n');
  const lib = maps.find((l) => l.endsWith(`/${SONAME}`) && l.split(/\s+/)[2] === '00000000')!;
  const path = lib.split(/\s+/).at(-1)!;
  const sym = execFileSync('nm', ['-D', '--defined-only', path], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.endsWith(' fork_value'))!;
  const addr = BigInt('0x' + lib.split('-')[0]) + BigInt('0x' + sym.split(' ')[0]);
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, Number(addr));
    return b.readBigInt64LE();
  } finally {
    closeSync(fd);
  }
}

const status = (pid: number | string) => trigger('--status', String(pid), '--json').json;

describe('fork after a patch', function () {
  this.timeout(120_000);
  let lab: Lab;
  before(() => {
    lab = buildLab('full');
  });
  after(() => lab?.dispose());

  it('gives a child forked after the patch its own copy of the library data, taken at fork time', async () => {
    const fix = lab.pack(1, 2);
    const t = lab.start(1, 'pair');
    await linesAfter(t, 0, () => lines(t.output(), 'parent').length >= 3);
    trigger(String(t.pid), fix);
    let mark = t.output().length;
    process.kill(t.pid, 'SIGUSR1');
    const ls = await linesAfter(
      t,
      mark,
      (l) =>
        l.filter((x) => x.who === 'child').length >= 6 && l.filter((x) => x.who === 'parent').length >= 8,
    );
    const forked = ls.find((l) => l.event === 'forked')!;
    const child = forked.child!;
    const kids = ls.filter((l) => l.who === 'child');
    // The child starts from the parent's value at the fork, then only its own writes count.
    assert.equal(
      kids[0]!.value,
      String(BigInt(forked.value!) + 1000n),
      'the child did not start from the value at fork time',
    );
    assert.ok(
      kids.every((k) => k.version === '2'),
      'the child runs the live (patched) build',
    );
    assertSteps(kids, 1000, 'child');
    assertSteps(
      ls.filter((l) => l.who === 'parent'),
      1,
      'parent',
    );

    // From outside: two values, two memfds, and both of the child's aliases on its own.
    const [pv, cv] = [readValue(t.pid), readValue(child)];
    assert.notEqual(pv, cv);
    assert.ok(
      pv < BigInt(forked.value!) + 1000n && cv >= BigInt(forked.value!) + 1000n,
      `parent ${pv}, child ${cv}`,
    );
    const [pi, ci] = [dataInodes(t.pid), dataInodes(child)];
    assert.equal(pi.length, 2, 'the parent maps its data at the loader build and at the new build');
    assert.equal(new Set(pi).size, 1);
    assert.equal(ci.length, 2, 'the child maps its copy at both aliases');
    assert.equal(new Set(ci).size, 1, 'the two builds in the child still share one set of globals');
    assert.notEqual(ci[0], pi[0], 'the child maps its own memfd, not the parent’s');

    // The child is a patched process in its own right.
    const cs = status(child);
    assert.equal(cs.fork.installed, true);
    assert.deepEqual(cs.fork.unprotected, []);
    const lib = cs.libraries.find((l: { soname: string }) => l.soname === SONAME);
    assert.equal(lib.aliased, true);
    assert.equal(lib.patches[0].state, 'applied');

    // "memory mapped by ulp" counts the stub and fork pages whole: /proc/PID/maps names only their first page.
    const named = readFileSync(`/proc/${t.pid}/maps`, 'utf8')
      .split('\n')
      .filter((l) => l.includes(' /memfd:ulp:'));
    assert.ok(
      named.some((l) => l.endsWith('/memfd:ulp:fork (deleted)')) &&
        named.some((l) => l.endsWith('/memfd:ulp:stub (deleted)')),
    );
    const namedBytes = named
      .map((l) =>
        l
          .split(' ')[0]!
          .split('-')
          .map((h) => parseInt(h, 16)),
      )
      .reduce((n, [a, b]) => n + b! - a!, 0);
    const mapped = status(t.pid).ulpMappedBytes;
    assert.ok(
      mapped >= namedBytes - 2 * 4096 + STUB_SIZE + FORK_PAGE_SIZE &&
        mapped <= namedBytes + STUB_SIZE + FORK_PAGE_SIZE,
      `${mapped} bytes mapped by ulp, ${namedBytes} named`,
    );

    // posix_spawn and vfork run no handlers and need none: the child execs.
    mark = t.output().length;
    process.kill(t.pid, 'SIGUSR2');
    const sp = await linesAfter(
      t,
      mark,
      (l) =>
        l.some((x) => x.event === 'spawned' && x.how === 'vfork') &&
        l.filter((x) => x.who === 'parent' && x.round).length >= 3,
    );
    assert.deepEqual(
      sp.filter((l) => l.event === 'spawned').map((l) => [l.how, l.status]),
      [
        ['posix_spawn', '0'],
        ['vfork', '0'],
      ],
    );
    assert.equal(sp.filter((l) => l.who === 'spawn').length, 2);
    assertSteps(
      sp.filter((l) => l.who === 'parent'),
      1,
      'parent',
    );
    assert.ok(
      !lines(t.output()).some((l) => l.event === 'reaped' && l.child === child),
      'the forked child died',
    );
  });

  it('leaves a child forked before the patch alone, and a child keeps its copy when the parent reverts', async () => {
    const fix = lab.pack(1, 2);
    const t = lab.start(1, 'pair');
    await linesAfter(t, 0, () => lines(t.output(), 'parent').length >= 3);
    process.kill(t.pid, 'SIGUSR1');
    const early = (await linesAfter(t, 0, (l) => l.filter((x) => x.who === 'child').length >= 2)).find(
      (l) => l.event === 'forked',
    )!.child!;

    trigger(String(t.pid), fix);
    let mark = t.output().length;
    let ls = await linesAfter(
      t,
      mark,
      (l) => l.filter((x) => x.who === 'parent').length >= 5 && l.filter((x) => x.pid === early).length >= 5,
    );
    assert.ok(ls.filter((l) => l.who === 'parent').every((l) => l.version === '2'));
    assert.ok(
      ls.filter((l) => l.pid === early).every((l) => l.version === '1'),
      'a child forked before the patch keeps its build',
    );
    assert.deepEqual(dataInodes(early), [], 'and its data stays private memory');

    process.kill(t.pid, 'SIGUSR1');
    ls = await linesAfter(t, mark, (l) => l.filter((x) => x.who === 'child' && x.pid !== early).length >= 3);
    const late = ls.find((l) => l.event === 'forked')!.child!;
    trigger(String(t.pid), fix, '--revert');
    mark = t.output().length;
    ls = await linesAfter(
      t,
      mark,
      (l) => l.filter((x) => x.who === 'parent').length >= 6 && l.filter((x) => x.pid === late).length >= 6,
    );
    assert.ok(
      ls.filter((l) => l.who === 'parent').every((l) => l.version === '1'),
      'the parent reverted',
    );
    assert.ok(
      ls.filter((l) => l.pid === late).every((l) => l.version === '2'),
      'the child keeps the build it was forked with',
    );
    assertSteps(
      ls.filter((l) => l.pid === late),
      1000,
      'late child',
    );
    assertSteps(
      ls.filter((l) => l.pid === early),
      1000,
      'early child',
    );
    assertSteps(lines(t.output(), 'parent'), 1, 'parent');
    assert.notEqual(dataInodes(late)[0], dataInodes(t.pid)[0]);
  });

  it('gives every child of concurrent forks from several threads its own copy', async () => {
    const fix = lab.pack(1, 2);
    const t = lab.start(1, 'threads');
    await linesAfter(t, 0, () => lines(t.output(), 'parent').length >= 2);
    trigger(String(t.pid), fix);
    // Registration happens once per process, whatever the trigger does afterwards.
    trigger(String(t.pid), fix, '--revert');
    trigger(String(t.pid), fix);
    const before = status(t.pid).fork;
    assert.equal(before.installed, true);
    assert.deepEqual(before.libraries, [{ name: `ulp:data:${SONAME}`, aliases: 2 }]);
    const mark = t.output().length;
    process.kill(t.pid, 'SIGUSR1');
    const burst = (await linesAfter(t, mark, (l) => l.some((x) => x.event === 'burst'))).find(
      (l) => l.event === 'burst',
    )!;
    assert.deepEqual([burst.ok, burst.bad, burst.value, burst.version], ['20', '0', '777', '2']);
    assert.equal(
      status(t.pid).fork.forks - before.forks,
      20,
      'one prepare per fork: the handlers are registered once',
    );
  });
});

describe('fork after a patch: an nginx-style master re-forking its workers', function () {
  this.timeout(120_000);
  let lab: Lab;
  before(() => {
    lab = buildLab('partial'); // the shared region holds .got.plt too: the children bind lazily on their own copy
  });
  after(() => lab?.dispose());

  it('forks workers that run the live build on private data, across apply, stacking and revert', async () => {
    const a = lab.pack(1, 2);
    const b = lab.pack(2, 3);
    const t = lab.start(1, 'workers');
    const gen = async (g: number, version: string) => {
      const mark = t.output().length;
      if (g > 1) process.kill(t.pid, 'SIGHUP');
      const ls = await linesAfter(t, g > 1 ? mark : 0, (l) => {
        const w = l.filter((x) => x.who === 'worker' && x.gen === String(g));
        return (
          new Set(w.map((x) => x.id)).size === 3 &&
          w.length >= 15 &&
          l.filter((x) => x.who === 'master' && x.gen === String(g)).length >= 3
        );
      });
      const workers = ls.filter((l) => l.who === 'worker' && l.gen === String(g));
      assert.ok(
        workers.every((w) => w.version === version),
        `generation ${g} runs version ${version}: ${[...new Set(workers.map((w) => w.version))]}`,
      );
      // Each worker starts from the master's value at the fork and counts alone.
      for (const id of ['0', '1', '2']) {
        const own = workers.filter((w) => w.id === id);
        assert.equal(
          own[0]!.value,
          String(g * 1_000_000 + Number(own[0]!.round)),
          `worker ${id} of generation ${g} did not start from its own copy`,
        );
      }
      assertSteps(workers, 1, `generation ${g} worker`);
      // The workers' writes never reach the master.
      assert.ok(
        ls
          .filter((l) => l.who === 'master' && l.gen === String(g) && l.value)
          .every((m) => m.value === String(g * 1_000_000)),
        'a worker wrote into the master',
      );
      return [...new Set(workers.map((w) => w.pid!))];
    };

    await gen(1, '1');
    trigger(String(t.pid), a);
    const g2 = await gen(2, '2');
    const inodes = g2.map((p) => dataInodes(p));
    assert.ok(inodes.every((i) => i.length === 2 && new Set(i).size === 1));
    assert.equal(
      new Set([...inodes.map((i) => i[0]), dataInodes(t.pid)[0]]).size,
      4,
      'master and three workers: four separate copies',
    );

    trigger(String(t.pid), b);
    const g3 = await gen(3, '3');
    // The table learnt the third build's region when it was staged: all three aliases are private in a new worker.
    assert.equal(dataInodes(g3[0]!).length, 3);
    assert.equal(new Set(dataInodes(g3[0]!)).size, 1);
    assert.notEqual(dataInodes(g3[0]!)[0], dataInodes(t.pid)[0]);

    trigger(String(t.pid), a, '--revert');
    await gen(4, '1');
    const st = status(t.pid).fork;
    assert.equal(st.installed, true);
    assert.ok(st.forks >= 9, `forks seen: ${st.forks}`);
    assert.deepEqual(st.libraries, [{ name: `ulp:data:${SONAME}`, aliases: 3 }]);
  });
});
