/**
 * Shared pieces of the runtime tests: compiling the fixtures of
 * test/fixtures/runtime, starting them detached, parsing what they print.
 */
import { compile } from '../compile.js';
import { startTarget, type Target } from '../target.js';

/** Compiles test/fixtures/runtime/NAME.c (cached) and returns the binary. */
export function fixture(name: string, flags: string[] = [], libs: string[] = []): string {
  return compile({
    sources: [`runtime/${name}.c`],
    out: name,
    flags: ['-O1', '-g', '-pthread', ...flags],
    libs: ['-pthread', ...libs],
  });
}

/** Starts a fixture and waits for its `ready` line. */
export async function startFixture(name: string, args: string[] = [], flags: string[] = []): Promise<Target> {
  const t = startTarget([fixture(name, flags), ...args]);
  try {
    await t.waitFor((o) => /^ready$/m.test(o));
  } catch (e) {
    t.dispose();
    throw e;
  }
  return t;
}

/** `key=0x...` or `key=123` printed by a fixture. */
export function printed(out: string, key: string): bigint {
  const m = new RegExp(`\\b${key}=(0x[0-9a-f]+|-?\\d+)`).exec(out);
  if (!m) throw new Error(`fixture did not print ${key}=; output:\n${out}`);
  return BigInt(m[1]!);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `pred` until it holds (threads of a loaded 2-core machine may need a while to all get CPU). */
export async function until(pred: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Runs `fn` with a started fixture and always disposes of it. */
export async function withFixture<T>(
  name: string,
  args: string[],
  fn: (t: Target) => Promise<T>,
  flags: string[] = [],
): Promise<T> {
  const t = await startFixture(name, args, flags);
  try {
    return await fn(t);
  } finally {
    t.dispose();
  }
}
