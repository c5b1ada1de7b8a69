/**
 * Counts of what the tracer asks of the kernel and of the target: each
 * ptrace request by name, each wait (and the stop it returned), each
 * process_vm transfer, each remote system call and function call. Off
 * unless a tally is open: the benchmarks open one around a run to show
 * where a process's stops and requests go (docs/PERFORMANCE.md), and the
 * tests use it to hold the count of stops of an apply to what it is.
 */

/** Count per key: `ptrace:PTRACE_GETREGS`, `wait`, `stop`, `syscall:mmap`, `call`, `vm:read`... */
export type Tally = Map<string, number>;

let open: Tally | undefined;

/** Starts counting into a fresh tally (replacing any open one) and returns it. */
export function openTally(): Tally {
  open = new Map();
  return open;
}

/** Stops counting; returns what was counted since openTally. */
export function closeTally(): Tally {
  const t = open ?? new Map<string, number>();
  open = undefined;
  return t;
}

/** Adds one to `key` of the open tally, if any. */
export function note(key: string): void {
  if (open) open.set(key, (open.get(key) ?? 0) + 1);
}

/** Pure: the sum of the counts whose key starts with `prefix` (`ptrace:` gives every request). */
export function total(t: Tally, prefix: string): number {
  let n = 0;
  for (const [k, v] of t) if (k.startsWith(prefix)) n += v;
  return n;
}

/** Pure: every count divided by `n` (per process), keys sorted by count, largest first. */
export function perItem(t: Tally, n: number): Array<[string, number]> {
  return [...t]
    .map(([k, v]): [string, number] => [k, v / n])
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}
