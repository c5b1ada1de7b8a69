/**
 * What the injection code (remote syscalls and calls, the stub page) needs
 * from the session that drives it. Session implements it; the injection
 * modules depend on this interface only, so the session can import them
 * without the two depending on each other (npm run check:cycles).
 */
import type { RemoteMemory } from './memory.js';
import type { Tracee } from './tracee.js';

/**
 * redirected: the thread's registers point at injected code, it has not run yet;
 * running:    resumed into the injected code;
 * entered:    stopped at the injected syscall's entry (syscalls only);
 * returned:   the syscall returned / the called function returned to the stub;
 * restored:   the thread's own registers are back, not yet resumed.
 */
export type InjectionStep = 'redirected' | 'running' | 'entered' | 'returned' | 'restored';

export type InjectionOp = 'syscall' | 'call';

export interface InjectionHost {
  readonly pid: number;
  readonly memory: RemoteMemory;
  /** How long a thread may take to reach a stop, in ms. */
  readonly stopTimeoutMs: number;
  /** Serves the events of the threads that keep running while one is borrowed. */
  service(): void;
  /** service(), at most once a millisecond. */
  serviceSoon(): void;
  /** The stub slot thread `t` injects through, claimed on first use (stub/slots.ts). */
  slotFor(t: Tracee): { base: bigint; slot: number };
  /** Reports an injection step to the session's observer. */
  step(step: InjectionStep, tid: number, op: InjectionOp): void;
  /** The error for thread `t` gone during `what`: PROC_THREAD_EXITED, or PROC_EXITED when the whole process is. */
  threadGone(t: Tracee, what: string): Error;
}
