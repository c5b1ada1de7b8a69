/**
 * Small readers of /proc/PID files that the session and the error messages
 * need. They never throw for a vanished process: they return undefined and
 * let the caller choose the error.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export interface ProcStatus {
  name: string;
  /** One letter: R S D T t Z X I ... */
  state: string;
  tgid: number;
  pid: number;
  ppid: number;
  tracerPid: number;
  /** Real, effective, saved, filesystem uids. */
  uids: number[];
  threads: number;
  sigBlk: bigint;
  /** Signals pending for this thread (SigPnd) and for the whole process (ShdPnd). */
  sigPnd: bigint;
  shdPnd: bigint;
}

export function readStatus(pid: number, tid?: number): ProcStatus | undefined {
  const text = readText(tid === undefined ? `/proc/${pid}/status` : `/proc/${pid}/task/${tid}/status`);
  if (text === undefined) return undefined;
  const f = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) f.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const num = (k: string) => Number((f.get(k) ?? '0').split(/\s+/)[0]);
  return {
    name: f.get('Name') ?? '?',
    state: (f.get('State') ?? '?').charAt(0),
    tgid: num('Tgid'),
    pid: num('Pid'),
    ppid: num('PPid'),
    tracerPid: num('TracerPid'),
    uids: (f.get('Uid') ?? '').split(/\s+/).filter(Boolean).map(Number),
    threads: num('Threads'),
    sigBlk: BigInt('0x' + (f.get('SigBlk') ?? '0')),
    sigPnd: BigInt('0x' + (f.get('SigPnd') ?? '0')),
    shdPnd: BigInt('0x' + (f.get('ShdPnd') ?? '0')),
  };
}

/** Thread ids of a process, or undefined when it is gone. */
export function listTasks(pid: number): number[] | undefined {
  try {
    return readdirSync(`/proc/${pid}/task`)
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return undefined;
  }
}

/** The state letter of one thread from /proc/PID/task/TID/stat (field 3), or undefined. */
export function threadState(pid: number, tid: number): string | undefined {
  const text = readText(`/proc/${pid}/task/${tid}/stat`);
  if (text === undefined) return undefined;
  return text.slice(text.lastIndexOf(')') + 2).charAt(0);
}

/** Kernel threads have no mm; PF_KTHREAD is bit 0x00200000 of the flags field (field 9). */
export function isKernelThread(pid: number): boolean {
  const text = readText(`/proc/${pid}/stat`);
  if (text === undefined) return false;
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[6]) & 0x00200000) !== 0;
}

export function readComm(pid: number): string | undefined {
  return readText(`/proc/${pid}/comm`)?.trim();
}

export function readExeLink(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    // A main thread that exited (pthread_exit) has no exe link while the others run on: read one of theirs.
    try {
      const via = liveTid(pid);
      return via === pid ? undefined : readlinkSync(`/proc/${via}/exe`);
    } catch {
      return undefined;
    }
  }
}

export function readWchan(pid: number, tid: number): string | undefined {
  return readText(`/proc/${pid}/task/${tid}/wchan`)?.trim();
}

/** Some thread of the process has not exited. */
export function processAlive(pid: number): boolean {
  return (listTasks(pid) ?? []).some((t) => !/^[ZX]$/.test(threadState(pid, t) ?? 'Z'));
}

/**
 * processAlive, asked again for up to 200 ms while it says yes: a process
 * killed with SIGKILL fails ptrace calls at once but its threads take a moment
 * to show as zombies, and telling "a thread exited" from "the process died"
 * depends on that.
 */
export function processAliveSettled(pid: number, settleMs = 200): boolean {
  const deadline = performance.now() + settleMs;
  while (processAlive(pid)) {
    if (performance.now() > deadline) return true;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  }
  return false;
}

/**
 * A thread id through which the process's memory and files can be reached:
 * the pid itself, unless the main thread has exited (pthread_exit) while
 * other threads run on. Its /proc/PID/{maps,auxv,exe,fd} are then empty and
 * process_vm_readv(PID) fails, but those of any live thread work.
 */
export function liveTid(pid: number): number {
  const st = readStatus(pid);
  if (!st || (st.state !== 'Z' && st.state !== 'X')) return pid;
  return listTasks(pid)?.find((t) => t !== pid && !/^[ZX]$/.test(threadState(pid, t) ?? 'Z')) ?? pid;
}
