/**
 * Real OpenSSL targets for the benchmarks: Debian's python3 running on the
 * real 3.0.19 libcrypto and libssl (lab/real-builds.ts), loaded from a
 * private folder so that nothing else on the machine is touched, with the
 * bundle of one of them to 3.0.20 packed by the compiled ulp-pack. Three
 * programs, each checking its own results:
 *
 *   tls       test/fixtures/real/openssl_loop.py: hashes, HMACs and TLS
 *             handshakes in a loop, one thread, every round against known
 *             answers;
 *   hashing   8 threads hashing without a pause (busy threads);
 *   blocked   27 threads, all blocked with no timeout of their own or a long
 *             one: 7 in a futex (Event.wait), 7 in clock_nanosleep (an
 *             hour), 6 in select and 6 in read on a pipe nobody writes, and
 *             the main thread in sigwait; on SIGUSR1 it hashes and prints
 *             the live OpenSSL_version_num, so a check wakes no other thread.
 *
 * Every reason a target cannot run (no real builds, no python3) comes back
 * as a string, for the benchmark to print instead of a figure.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSslRounds, PYTHON, startOpenSslLoop } from '../openssl-loop.js';
import { REAL, REAL_BUILDS_ARCHIVE, REAL_FILES, realBuild, realBuildsDir } from '../real-builds.js';
import { startTarget, type Target } from '../target.js';
import { pack } from './fixtures.js';

export type RealLib = 'crypto' | 'ssl';
export type RealProgram = 'tls' | 'hashing' | 'blocked';

export interface RealTarget {
  target: Target;
  /** The bundle 3.0.19 -> 3.0.20 of the library asked for. */
  fix: string;
  /** Threads the program runs (the main thread included). */
  threads: number;
  /** Throws unless the program goes on giving right results; `live` is the version that should run, where the program can tell. */
  check(live?: 'old' | 'new'): Promise<void>;
}

const HASH_PY = `
import hashlib, threading, time, sys
want = hashlib.sha256(b'ulp' * 1000).hexdigest()
bad = 0
def work():
    global bad
    while True:
        if hashlib.sha256(b'ulp' * 1000).hexdigest() != want: bad += 1
for _ in range(int(sys.argv[1])): threading.Thread(target=work, daemon=True).start()
print('ready', flush=True)
while True:
    time.sleep(0.2)
    print('bad=%d' % bad, flush=True)
`;

const BLOCKED_PY = `
import ctypes, hashlib, os, select, signal, ssl, threading, time  # ssl: libssl is loaded too
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # inherited: only sigwait takes it
r, w = os.pipe()
never = threading.Event()
def futex():
    while True: never.wait()
def sleep():
    while True: time.sleep(3600)
def in_select():
    while True: select.select([r], [], [])
def in_read():
    while True: os.read(r, 1)
for kind, n in ((futex, 7), (sleep, 7), (in_select, 6), (in_read, 6)):
    for _ in range(n): threading.Thread(target=kind, daemon=True).start()
crypto = ctypes.CDLL('libcrypto.so.3')
crypto.OpenSSL_version_num.restype = ctypes.c_ulong
want = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
def line(tag):
    ok = hashlib.sha256(b'abc').hexdigest() == want
    return '%s threads=%d ok=%d version=%x' % (tag, threading.active_count(), ok, crypto.OpenSSL_version_num())
print(line('ready'), flush=True)
n = 0
while True:
    signal.sigwait({signal.SIGUSR1})
    n += 1
    print(line('wake=%d' % n), flush=True)
`;

/** OPENSSL_VERSION_NUMBER of the two builds: what OpenSSL_version_num returns in each. */
const VERSION_NUM = { old: '30000130', new: '30000140' } as const;

/** Bundles packed in this process, per library: packing libcrypto takes seconds. */
const packed = new Map<RealLib, string>();

function bundle(real: string, lib: RealLib, work: string): string {
  let fix = packed.get(lib);
  if (!fix || !existsSync(fix)) {
    fix = pack(
      realBuild(real, REAL.ssl19, REAL_FILES[lib]),
      realBuild(real, REAL.ssl20, REAL_FILES[lib]),
      join(work, `${lib}-19-20.ulp`),
    );
    packed.set(lib, fix);
  }
  return fix;
}

/** Why the real targets cannot run here, or undefined when they can. */
export function realTargetsMissing(): string | undefined {
  if (!existsSync(REAL_BUILDS_ARCHIVE)) return `no real builds (${REAL_BUILDS_ARCHIVE})`;
  if (!existsSync(PYTHON)) return `no ${PYTHON}`;
  return undefined;
}

/**
 * `program` in python3 on the real 3.0.19 libcrypto and libssl copied into
 * `work` (which must exist and stay for the target's life), with the bundle
 * of `lib`; or why it cannot run. The caller disposes of the target.
 */
export async function realOpenSslTarget(
  work: string,
  lib: RealLib,
  program: RealProgram,
): Promise<RealTarget | string> {
  const missing = realTargetsMissing();
  if (missing) return missing;
  const real = realBuildsDir()!;
  const libs = join(work, 'lib');
  mkdirSync(libs, { recursive: true });
  for (const f of [REAL_FILES.crypto, REAL_FILES.ssl])
    copyFileSync(realBuild(real, REAL.ssl19, f), join(libs, f));
  const fix = bundle(real, lib, work);
  const env = { LD_LIBRARY_PATH: libs };
  if (program === 'tls') {
    const target = await startOpenSslLoop(work, libs);
    return {
      target,
      fix,
      threads: 1,
      async check() {
        const mark = target.output().length;
        await target.waitFor((o) => openSslRounds(o.slice(mark)).length >= 3, 60_000);
        const bad = openSslRounds(target.output()).filter((r) => !r.ok);
        if (bad.length || !target.alive())
          throw new Error(`python3 on OpenSSL gave ${bad.length} wrong rounds (alive: ${target.alive()})`);
      },
    };
  }
  if (program === 'hashing') {
    writeFileSync(join(work, 'hash.py'), HASH_PY);
    const target = startTarget([PYTHON, join(work, 'hash.py'), '8'], env);
    await target.waitFor((o) => /^ready/m.test(o), 60_000);
    return {
      target,
      fix,
      threads: 9,
      async check() {
        const mark = target.output().length;
        const out = await target.waitFor((o) => /bad=\d+/.test(o.slice(mark)), 30_000);
        const bad = Number(/bad=(\d+)/.exec(out.slice(mark))![1]);
        if (bad !== 0 || !target.alive())
          throw new Error(`python3 saw ${bad} wrong hashes (alive: ${target.alive()})`);
      },
    };
  }
  writeFileSync(join(work, 'blocked.py'), BLOCKED_PY);
  const target = startTarget([PYTHON, join(work, 'blocked.py')], env);
  const ready = await target.waitFor((o) => /^ready threads=\d+/m.test(o), 60_000);
  const threads = Number(/^ready threads=(\d+)/m.exec(ready)![1]);
  return {
    target,
    fix,
    threads,
    async check(live) {
      const mark = target.output().length;
      process.kill(target.pid, 'SIGUSR1');
      const out = await target.waitFor((o) => /wake=\d+ .*version=\w+/.test(o.slice(mark)), 30_000);
      const [, ok, version] = /wake=\d+ threads=\d+ ok=(\d) version=(\w+)/.exec(out.slice(mark))!;
      if (ok !== '1') throw new Error('python3 computed a wrong sha256 after the switch');
      // OpenSSL_version_num is one of the changed functions: its entry jump says which build runs.
      if (live && lib === 'crypto' && version !== VERSION_NUM[live])
        throw new Error(`python3 runs OpenSSL ${version}, expected ${VERSION_NUM[live]} (${live})`);
    },
  };
}
