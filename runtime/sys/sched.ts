/**
 * The tracer's own CPU priority while it holds a target stopped. On a busy
 * machine a tracer that has just used its share of the CPU (planning a
 * switch on a 4.7 MB library takes a second) is an ordinary task the
 * scheduler owes nothing: every ptrace request that wakes a target thread
 * (an interrupt, a resume, a detach) hands that thread the CPU, and the
 * tracer waits its turn before the next request. The pause then grows with
 * the machine's load, not with the work (measured at load 12 on 2 cores: 4
 * to 14 ms to resume 9 threads, 0.1 ms as a real-time task).
 *
 * As SCHED_FIFO (lowest real-time priority) the tracer's thread runs as
 * soon as it is runnable and is preempted by no ordinary task; it still
 * blocks in waitpid while the target's threads run to their stops, so it
 * never takes the CPU they need. Only for the pause: the thread's previous
 * policy and priority (its nice value is kept by the kernel) are put back
 * right after. SCHED_RESET_ON_FORK keeps a child from inheriting it. Needs
 * CAP_SYS_NICE (root) and a real-time budget in the tracer's cgroup; where
 * either is missing nothing changes and the pause is as before.
 */
import { schedGetparam, schedGetscheduler, schedSetscheduler } from './libc.js';

const SCHED_FIFO = 1;
const SCHED_RESET_ON_FORK = 0x40000000;

/** sched_param: one int (the real-time priority). */
const param = Buffer.alloc(8);

/** What to put back: the calling thread's policy and priority before `raise`. */
export interface SchedBefore {
  policy: number;
  priority: number;
}

/**
 * Makes the calling thread a real-time task; returns what to restore, or
 * undefined when the kernel refused (no privilege, no budget) or the thread
 * is real-time already (then it is left as it is).
 */
export function raiseToRealtime(): SchedBefore | undefined {
  const policy = schedGetscheduler(0);
  if (policy < 0 || (policy & ~SCHED_RESET_ON_FORK) === SCHED_FIFO) return undefined;
  if (schedGetparam(0, param) !== 0) return undefined;
  const priority = param.readInt32LE(0);
  param.writeInt32LE(1, 0);
  if (schedSetscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, param) !== 0) return undefined;
  return { policy, priority };
}

/** Puts back what `raiseToRealtime` returned. */
export function restoreSched(before: SchedBefore | undefined): void {
  if (!before) return;
  param.writeInt32LE(before.priority, 0);
  schedSetscheduler(0, before.policy, param);
}

/** The calling thread's policy (SCHED_OTHER 0, SCHED_FIFO 1...), without SCHED_RESET_ON_FORK. */
export function currentPolicy(): number {
  return schedGetscheduler(0) & ~SCHED_RESET_ON_FORK;
}
