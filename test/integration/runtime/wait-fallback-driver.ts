/**
 * A tracer whose wait alarm cannot be set up (wait-fallback.test.ts): the
 * real-time signal runtime/sys/wait-alarm.ts uses already has a handler of
 * someone else's here, so every wait must fall back to napping. Stops every
 * thread of PID three times, makes a remote getpid each time, resumes, and
 * prints what it saw as JSON.
 *
 *   wait-fallback-driver.ts PID
 */
import koffi from 'koffi';
import { NR, Session } from '../../../runtime/index.js';
import * as alarm from '../../../runtime/sys/wait-alarm.js';

const pid = Number(process.argv[2]);
const libc = koffi.load('libc.so.6');
const sigaction = libc.func('int sigaction(int sig, void *act, void *old)') as (
  sig: number,
  act: Buffer,
  old: null,
) => number;
const dlsym = libc.func('uintptr_t dlsym(uintptr_t handle, const char *name)') as (
  h: number,
  name: string,
) => number | bigint;
const sigrtmax = libc.func('int __libc_current_sigrtmax()') as () => number;

// Another component's handler on the alarm's signal (getppid: any function that returns will do).
const act = Buffer.alloc(152);
act.writeBigUInt64LE(BigInt.asUintN(64, BigInt(dlsym(0, 'getppid'))), 0);
if (sigaction(sigrtmax() - 2, act, null) !== 0) throw new Error('sigaction failed');

const s = Session.open(pid, { deferSignals: false });
const rounds: Array<{ stopped: number; getpid: number }> = [];
try {
  for (let i = 0; i < 3; i++) {
    const stopped = s.stopAll();
    rounds.push({ stopped, getpid: Number(s.syscall(NR.getpid)) });
    s.resume();
  }
} finally {
  s.detach();
}
process.stdout.write(JSON.stringify({ alarm: alarm.available(), rounds }) + '\n');
