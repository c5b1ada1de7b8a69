/**
 * A tracer in its own process, for the tests that SIGKILL the tracer
 * (a test's own Node process cannot be killed and keep testing).
 *
 *   driver.ts PID setup                      create the stub page, detach
 *   driver.ts PID loop WORK TID,TID,...      borrow each thread in turn and make
 *                                            remote calls and syscalls on it, forever
 *   driver.ts PID hang WORK TID OP STEP      one remote OP (syscall|call) on TID that
 *                                            stops dead at STEP (see InjectionStep); OP
 *                                            sequence: two getpid in one Session.syscalls,
 *                                            STEP#N stops at the Nth such step
 *   driver.ts PID hold MS                    stop all threads, stay busy MS ms, detach
 *                                            (the test sends SIGTERM meanwhile)
 *   driver.ts PID probe                      open a session and print the error as JSON
 *                                            (run as another user by the tests)
 *
 * WORK is the address of the victim's work(a, b) = 3a + b. Prints "looping"
 * once the loop is going and "HANG <step>" when it stops dead; exits 3 on a
 * wrong result.
 */
import { isUlpError } from '../../common/errors.js';
import { MAP, NR, PROT, Session, type InjectionStep } from '../../runtime/index.js';

const [pidArg, mode, workArg, tidsArg, opArg, stepArg] = process.argv.slice(2);
const pid = Number(pidArg);
const say = (line: string) => process.stdout.write(line + '\n');
const forever = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);

function check(what: string, got: bigint, want: bigint): void {
  if (got !== want) {
    say(`WRONG ${what}: got ${got}, want ${want}`);
    process.exit(3);
  }
}

function exercise(s: Session, tid: number, work: bigint, i: number): void {
  check('work', s.call(work, [i, 7], { tid }), BigInt(3 * i + 7));
  check('getpid', s.syscall(NR.getpid, [], { tid }), BigInt(pid));
  // One sequence (one save and restore of the thread) for the two, as the loader stages.
  s.syscalls(() => {
    const m = s.sys.mmap(0n, 8192, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    s.sys.munmap(m, 8192);
  });
}

if (mode === 'setup') {
  const s = Session.open(pid);
  s.borrow();
  s.stub();
  s.detach();
  say('done');
} else if (mode === 'loop') {
  const work = BigInt(workArg!);
  const tids = tidsArg!.split(',').map(Number);
  const s = Session.open(pid);
  for (let i = 0; ; i++) {
    const tid = tids[i % tids.length]!;
    try {
      if (process.env.ULP_DEBUG) say(`borrow ${tid}`);
      s.borrow(tid);
      if (process.env.ULP_DEBUG) say(`exercise ${tid}`);
      exercise(s, tid, work, i);
    } catch (e) {
      if (!isUlpError(e) || e.code !== 'PROC_NO_THREAD') throw e;
    } finally {
      s.resume();
    }
    if (i === 0) say('looping');
  }
} else if (mode === 'hang') {
  const work = BigInt(workArg!);
  const tid = Number(tidsArg);
  const [stepName, nth] = stepArg!.split('#');
  const op = opArg === 'sequence' ? 'syscall' : opArg;
  let seen = 0;
  const s = Session.open(pid, {
    onStep: (step: InjectionStep, info) => {
      if (step === stepName && info.op === op && ++seen === Number(nth ?? 1)) {
        say(`HANG ${stepArg}`);
        forever();
      }
    },
  });
  s.borrow(tid);
  s.stub();
  if (opArg === 'call') s.call(work, [1, 2], { tid });
  else if (opArg === 'sequence')
    s.syscalls(() => {
      check('getpid', s.syscall(NR.getpid, [], { tid }), BigInt(pid));
      check('getpid', s.syscall(NR.getpid, [], { tid }), BigInt(pid));
    });
  else s.syscall(NR.getpid, [], { tid });
  say('step never reached');
} else if (mode === 'hold') {
  const s = Session.open(pid);
  s.stopAll();
  say('holding');
  const end = Date.now() + Number(workArg);
  while (Date.now() < end); // synchronous work: no JS signal handler can run now
  s.syscall(NR.getpid);
  s.detach();
  say('detached');
  setTimeout(() => say('still alive'), 3000); // the held SIGTERM ends the process before this
} else if (mode === 'probe') {
  try {
    Session.open(pid).detach();
    say('{"code":"OK"}');
  } catch (e) {
    say(JSON.stringify(isUlpError(e) ? e.toJSON() : { code: 'INTERNAL', message: String(e) }));
  }
} else {
  say('usage: driver.ts PID setup|loop|hang ...');
  process.exit(64);
}
