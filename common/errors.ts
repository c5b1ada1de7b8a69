/**
 * The one error type of the project. Every failure a user can meet is a
 * UlpError with a stable `code` (scripts match on it, docs list it) and a
 * `hint` that says what to do next. The code is one of common/error-codes.ts,
 * which gives it its exit class; nothing else decides an exit status.
 */
import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

export class UlpError extends Error {
  override readonly name = 'UlpError';

  constructor(
    /** Stable, SCREAMING_SNAKE identifier from the registry, e.g. `ELF_TRUNCATED`. Never reworded once released. */
    readonly code: ErrorCode,
    message: string,
    /** What the user can do about it; one sentence. */
    readonly hint?: string,
    /** Structured facts for `--json` output (offsets, pids, build-ids...). */
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      hint: this.hint,
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

export function isUlpError(e: unknown): e is UlpError {
  return e instanceof UlpError;
}

/** Whether `e` is a UlpError with one of `codes` (a typo in a code fails the typecheck). */
export function hasCode(e: unknown, ...codes: ErrorCode[]): e is UlpError {
  return e instanceof UlpError && codes.includes(e.code);
}
