/**
 * Holds SIGINT/SIGTERM/SIGHUP sent to the tracer while sessions are open,
 * and re-raises them once the last one closes. Without this, Ctrl-C would
 * kill the tracer mid-injection (the stub page would recover the thread,
 * but a half-done switch is better avoided than recovered).
 *
 * Node dispatches a caught signal to JS only when the event loop runs, which
 * for a synchronous session is after it has closed. So the listener stays
 * installed after the sessions close: a signal it receives while no session
 * is open (including one queued during a synchronous session) makes it
 * remove itself and re-raise the signal, whose default action then applies.
 * A program that listens for a signal itself keeps handling it.
 */
const HELD: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

let open = 0;
const pending = new Set<NodeJS.Signals>();
const holders = new Map<NodeJS.Signals, () => void>();

function reraise(sig: NodeJS.Signals): void {
  const h = holders.get(sig);
  if (h) process.off(sig, h);
  holders.delete(sig);
  process.kill(process.pid, sig);
}

export function holdSignals(): void {
  open++;
  for (const sig of HELD) {
    if (holders.has(sig) || process.listenerCount(sig) > 0) continue;
    const h = () => (open > 0 ? void pending.add(sig) : reraise(sig));
    holders.set(sig, h);
    process.on(sig, h);
  }
}

export function releaseSignals(): void {
  if (--open > 0) return;
  const raise = [...pending];
  pending.clear();
  for (const sig of raise) reraise(sig);
  // A signal that arrived during a synchronous session is still queued in libuv, which hands it to the
  // listener only when the loop polls; nothing may keep the loop alive once the command is done (signal
  // handles are unref'd), so the loop is kept turning a little longer, or the process would exit and drop it.
  // Two turns: the first runs the callbacks already due, the signal pipe is read on the poll of the next.
  if (holders.size > 0) setImmediate(() => setImmediate(() => {}));
}
