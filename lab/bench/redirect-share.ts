/**
 * The entry redirects' share of the pause: how much of the time every thread
 * is stopped goes to writing the jumps (and restoring earlier ones) and their
 * journal, on a bundle with many redirects (the real libcrypto 3.0.19 ->
 * 3.0.20, in python3 doing TLS handshakes) beside one with a few (libdemo).
 *
 * The switch reports no per-step times inside the pause, so this process
 * makes the applies and reverts itself (runOne, what the command runs) with
 * Session's stopAll/resume/poke wrapped to time every write made while all
 * threads are stopped; each write is then sorted by where it landed in the
 * target's maps: executable pages (jumps written or original bytes put
 * back), the `ulp:redirects:` journal, or anything else (GOT slots, data
 * pointers). The first apply runs the switch code cold in V8, as every run
 * of the command does; the medians are over the later, warm cycles.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readBundleFile } from '../../patches/index.js';
import { Session } from '../../runtime/session.js';
import { runOne } from '../../trigger/apply.js';
import { ROOT } from '../cli.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../real-builds.js';
import { startTarget, type Target } from '../target.js';
import { selfSignedCert } from '../tls-cert.js';
import { fmtMs, markdownTable, median } from './common.js';

export interface ShareCycle {
  which: 'apply' | 'revert';
  pauseMs: number;
  /** ms of writes to executable pages (jumps and restored entry bytes), to the journal, and elsewhere, all inside the pause. */
  codeMs: number;
  journalMs: number;
  otherMs: number;
  codeWrites: number;
  otherWrites: number;
}

export interface ShareRow {
  bundle: string;
  /** Redirects the apply wrote (switch.redirects.written) and the revert put back or wrote. */
  written: number;
  restored: number;
  first: ShareCycle;
  /** Medians over the warm cycles. */
  apply: { pauseMs: number; redirectMs: number; otherMs: number; otherWrites: number; share: number };
  revert: { pauseMs: number; redirectMs: number; otherMs: number; otherWrites: number; share: number };
  cycles: number;
}

interface Write {
  addr: bigint;
  ms: number;
}

/** Writes made inside pauses since the last take(); filled once instrument() has wrapped Session. */
const writes: Write[] = [];
let inPause = false;
let wrapped = false;

/** Wraps Session's pause boundaries and writes, once for the whole process. */
function instrument(): { take(): Write[] } {
  if (!wrapped) {
    const proto = Session.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
    const stopAll = proto.stopAll!;
    const resume = proto.resume!;
    const detach = proto.detach!;
    const poke = proto.poke!;
    proto.stopAll = function (this: unknown, ...a: unknown[]) {
      const n = stopAll.apply(this, a);
      inPause = true;
      return n;
    };
    proto.resume = function (this: unknown, ...a: unknown[]) {
      inPause = false;
      return resume.apply(this, a);
    };
    proto.detach = function (this: unknown, ...a: unknown[]) {
      inPause = false;
      return detach.apply(this, a);
    };
    proto.poke = function (this: unknown, ...a: unknown[]) {
      const t0 = performance.now();
      const r = poke.apply(this, a);
      if (inPause) writes.push({ addr: a[0] as bigint, ms: performance.now() - t0 });
      return r;
    };
    wrapped = true;
  }
  return { take: () => writes.splice(0) };
}

function classify(
  pid: number,
  writes: Write[],
): Pick<ShareCycle, 'codeMs' | 'journalMs' | 'otherMs' | 'codeWrites' | 'otherWrites'> {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [range, perms, , , , ...path] = l.split(/\s+/);
      const [s, e] = range!.split('-').map((x) => BigInt(`0x${x}`));
      return {
        start: s!,
        end: e!,
        exec: perms!.includes('x'),
        journal: path.join(' ').includes('ulp:redirects:'),
      };
    });
  const out = { codeMs: 0, journalMs: 0, otherMs: 0, codeWrites: 0, otherWrites: 0 };
  for (const w of writes) {
    const m = maps.find((x) => w.addr >= x.start && w.addr < x.end);
    if (m?.exec) {
      out.codeMs += w.ms;
      out.codeWrites++;
    } else if (m?.journal) out.journalMs += w.ms;
    else {
      out.otherMs += w.ms;
      out.otherWrites++;
    }
  }
  return out;
}

/** Apply/revert cycles of `fix` in `pid` from this process; the target must stay correct (checked by the caller). */
export function measureShare(pid: number, fix: string, name: string, cycles: number): ShareRow {
  const probe = instrument();
  const bundle = readBundleFile(fix);
  probe.take();
  const one = (which: 'forward' | 'reverse'): { cycle: ShareCycle; written: number; restored: number } => {
    const r = runOne(pid, bundle, { which });
    const want = which === 'forward' ? /^applied(-partly)?$/ : /^reverted(-partly)?$/;
    if (!want.test(r.outcome) || r.pauseMs === undefined)
      throw new Error(`${name}: ${which} gave ${r.outcome}`);
    const red = (r as { switch?: { redirects?: { written: number; restored: number } } }).switch?.redirects;
    return {
      cycle: {
        which: which === 'forward' ? 'apply' : 'revert',
        pauseMs: r.pauseMs,
        ...classify(pid, probe.take()),
      },
      written: red?.written ?? 0,
      restored: red?.restored ?? 0,
    };
  };
  const first = one('forward');
  const back = one('reverse');
  const applies: ShareCycle[] = [];
  const reverts: ShareCycle[] = [];
  for (let i = 0; i < cycles; i++) {
    applies.push(one('forward').cycle);
    reverts.push(one('reverse').cycle);
  }
  const med = (xs: ShareCycle[]) => {
    const pauseMs = median(xs.map((c) => c.pauseMs));
    const redirectMs = median(xs.map((c) => c.codeMs + c.journalMs));
    return {
      pauseMs,
      redirectMs,
      otherMs: median(xs.map((c) => c.otherMs)),
      otherWrites: median(xs.map((c) => c.otherWrites)),
      share: median(xs.map((c) => (c.codeMs + c.journalMs) / c.pauseMs)),
    };
  };
  return {
    bundle: name,
    written: first.written,
    restored: back.restored,
    first: first.cycle,
    apply: med(applies),
    revert: med(reverts),
    cycles,
  };
}

const rounds = (out: string) =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{"round"'))
    .map((l) => JSON.parse(l) as { round: number; ok: boolean });

/** python3 doing hashes, HMACs and TLS handshakes on the real 3.0.19 libcrypto from a private folder, or why it cannot run. */
export async function realCryptoTarget(
  work: string,
): Promise<{ target: Target; fix: string; check(): Promise<void> } | string> {
  const real = realBuildsDir();
  if (!real) return 'no real builds (../shared/real-builds)';
  if (!existsSync('/usr/bin/python3')) return 'no /usr/bin/python3';
  for (const f of [REAL_FILES.crypto, REAL_FILES.ssl])
    copyFileSync(realBuild(real, REAL.ssl19, f), join(work, f));
  selfSignedCert(work);
  const fix = join(work, 'crypto-19-20.ulp');
  execFileSync(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'bin/ulp-pack.ts'),
      realBuild(real, REAL.ssl19, REAL_FILES.crypto),
      realBuild(real, REAL.ssl20, REAL_FILES.crypto),
      '-o',
      fix,
    ],
    { cwd: ROOT, stdio: 'ignore' },
  );
  const target = startTarget(
    [
      '/usr/bin/python3',
      join(ROOT, 'test/fixtures/real/openssl_loop.py'),
      join(work, 'cert.pem'),
      join(work, 'key.pem'),
      '--sleep',
      '0.02',
    ],
    { LD_LIBRARY_PATH: work },
  );
  await target.waitFor((o) => rounds(o).length >= 3, 60_000);
  const check = async () => {
    const mark = target.output().length;
    await target.waitFor((o) => rounds(o.slice(mark)).length >= 3, 60_000);
    const bad = rounds(target.output()).filter((r) => !r.ok);
    if (bad.length || !target.alive())
      throw new Error(`python3 on libcrypto gave ${bad.length} wrong rounds (alive: ${target.alive()})`);
  };
  return { target, fix, check };
}

export function renderShare(rows: ShareRow[]): string {
  const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
  return markdownTable(
    [
      'bundle',
      'redirects written',
      'first apply: pause / redirect writes',
      'apply: pause',
      'apply: redirect writes',
      'apply: share',
      'apply: other writes',
      'revert: pause',
      'revert: redirect writes',
      'revert: share',
    ],
    rows.map((r) => [
      r.bundle,
      String(r.written),
      `${fmtMs(r.first.pauseMs)} / ${fmtMs(r.first.codeMs + r.first.journalMs)}`,
      fmtMs(r.apply.pauseMs),
      fmtMs(r.apply.redirectMs),
      pct(r.apply.share),
      `${fmtMs(r.apply.otherMs)} (${r.apply.otherWrites})`,
      fmtMs(r.revert.pauseMs),
      fmtMs(r.revert.redirectMs),
      pct(r.revert.share),
    ]),
  );
}
