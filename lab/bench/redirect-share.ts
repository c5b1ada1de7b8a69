/**
 * The entry redirects' share of the pause: how much of the time every thread
 * is stopped goes to writing the jumps (and restoring earlier ones) and their
 * journal, on a bundle with many redirects (the real libcrypto 3.0.19 ->
 * 3.0.20, in python3 doing TLS handshakes: lab/bench/real-openssl.ts) beside
 * one with a few (libdemo).
 *
 * The switch reports its pause by phase (`switch.pauseIo`: stopping,
 * reading back and comparing, writing, resuming) but not which writes were
 * which, so this process makes the applies and reverts itself (runOne, what
 * the command runs) with PauseIO's one write path wrapped: every write of
 * the pause (one pwrite of /proc/PID/mem per block of patches, or the
 * PTRACE_POKEDATA fallback) is timed and sorted by where it lands in the
 * target's maps: executable pages (jumps written or original bytes put
 * back), the `ulp:redirects:` journal, or anything else (GOT slots, data
 * pointers). The count of writes wrapped must equal the switch's own
 * (`pauseIo.writes`), or the measurement stops: a wrapper that no longer sees
 * the writes would report zeros. The first apply runs the switch code cold
 * in V8, as every run of the command does; the medians are over the later,
 * warm cycles.
 */
import { readFileSync } from 'node:fs';
import { readBundleFile } from '../../patches/index.js';
import { PauseIO } from '../../runtime/loader/pause-io.js';
import { runOne } from '../../trigger/apply.js';
import { fmtMs, markdownTable, median } from './common.js';

export interface ShareCycle {
  which: 'apply' | 'revert';
  pauseMs: number;
  /** The switch's own phases of the pause (switch.pauseIo), ms. */
  stopMs: number;
  checkMs: number;
  writeMs: number;
  resumeMs: number;
  /** ms and write calls to executable pages (jumps and restored entry bytes) and to the journal, inside the pause. */
  codeMs: number;
  journalMs: number;
  redirectWrites: number;
  /** ms and write calls anywhere else (GOT slots, function pointers). */
  otherMs: number;
  otherWrites: number;
}

/** Medians over the warm cycles. */
export interface ShareMedians {
  pauseMs: number;
  stopMs: number;
  checkMs: number;
  resumeMs: number;
  redirectMs: number;
  redirectWrites: number;
  otherMs: number;
  otherWrites: number;
  /** Median over cycles of (redirect writes' ms / pause ms). */
  share: number;
}

export interface ShareRow {
  bundle: string;
  /** Redirects the apply wrote (switch.redirects.written) and the revert put back. */
  written: number;
  restored: number;
  first: ShareCycle;
  apply: ShareMedians;
  revert: ShareMedians;
  cycles: number;
}

interface Write {
  addr: bigint;
  ms: number;
}

/** Writes PauseIO made since the last take(); filled once instrument() has wrapped it. */
const writes: Write[] = [];
let wrapped = false;

/**
 * Wraps PauseIO's one write path (writeFrom: every write, writeBlock and the
 * poke fallback included), once for the whole process. It is private, so a
 * rename shows here as an error, not as a table of zeros.
 */
function instrument(): { take(): Write[] } {
  if (!wrapped) {
    const proto = PauseIO.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
    const writeFrom = proto.writeFrom;
    if (typeof writeFrom !== 'function')
      throw new Error('redirect-share: PauseIO has no writeFrom any more; update the instrumentation');
    proto.writeFrom = function (this: unknown, ...a: unknown[]) {
      const t0 = performance.now();
      try {
        return writeFrom.apply(this, a);
      } finally {
        // (data, offset, length, addr)
        writes.push({ addr: a[3] as bigint, ms: performance.now() - t0 });
      }
    };
    wrapped = true;
  }
  return { take: () => writes.splice(0) };
}

function classify(
  pid: number,
  writes: Write[],
): Pick<ShareCycle, 'codeMs' | 'journalMs' | 'redirectWrites' | 'otherMs' | 'otherWrites'> {
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
  const out = { codeMs: 0, journalMs: 0, redirectWrites: 0, otherMs: 0, otherWrites: 0 };
  for (const w of writes) {
    const m = maps.find((x) => w.addr >= x.start && w.addr < x.end);
    if (m?.exec || m?.journal) {
      if (m.exec) out.codeMs += w.ms;
      else out.journalMs += w.ms;
      out.redirectWrites++;
    } else {
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
    const io = r.switch?.pauseIo;
    if (!io) throw new Error(`${name}: ${which} reported no pauseIo`);
    const seen = probe.take();
    if (seen.length !== io.writes)
      throw new Error(
        `${name}: ${which}: the switch made ${io.writes} writes in its pause, the instrumentation saw ${seen.length}`,
      );
    return {
      cycle: {
        which: which === 'forward' ? 'apply' : 'revert',
        pauseMs: r.pauseMs,
        stopMs: io.stopMs,
        checkMs: io.checkMs,
        writeMs: io.writeMs,
        resumeMs: io.resumeMs,
        ...classify(pid, seen),
      },
      written: r.switch?.redirects.written ?? 0,
      restored: r.switch?.redirects.restored ?? 0,
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
  const med = (xs: ShareCycle[]): ShareMedians => ({
    pauseMs: median(xs.map((c) => c.pauseMs)),
    stopMs: median(xs.map((c) => c.stopMs)),
    checkMs: median(xs.map((c) => c.checkMs)),
    resumeMs: median(xs.map((c) => c.resumeMs)),
    redirectMs: median(xs.map((c) => c.codeMs + c.journalMs)),
    redirectWrites: median(xs.map((c) => c.redirectWrites)),
    otherMs: median(xs.map((c) => c.otherMs)),
    otherWrites: median(xs.map((c) => c.otherWrites)),
    share: median(xs.map((c) => (c.codeMs + c.journalMs) / c.pauseMs)),
  });
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

export function renderShare(rows: ShareRow[]): string {
  const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
  const writes = (ms: number, n: number) => `${fmtMs(ms)} (${n})`;
  return markdownTable(
    [
      'bundle',
      'redirects written',
      'first apply: pause / redirect writes',
      'apply: pause',
      'apply: stop / read back + compare / resume',
      'apply: redirect writes (calls)',
      'apply: other writes (calls)',
      'apply: share',
      'revert: pause',
      'revert: redirect writes (calls)',
      'revert: other writes (calls)',
      'revert: share',
    ],
    rows.map((r) => [
      r.bundle,
      String(r.written),
      `${fmtMs(r.first.pauseMs)} / ${fmtMs(r.first.codeMs + r.first.journalMs)}`,
      fmtMs(r.apply.pauseMs),
      [r.apply.stopMs, r.apply.checkMs, r.apply.resumeMs].map(fmtMs).join(' / '),
      writes(r.apply.redirectMs, r.apply.redirectWrites),
      writes(r.apply.otherMs, r.apply.otherWrites),
      pct(r.apply.share),
      fmtMs(r.revert.pauseMs),
      writes(r.revert.redirectMs, r.revert.redirectWrites),
      writes(r.revert.otherMs, r.revert.otherWrites),
      pct(r.revert.share),
    ]),
  );
}
