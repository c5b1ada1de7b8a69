/**
 * Every error the reader throws is built here, so that codes stay stable and
 * each message names the offending field and offset the same way.
 */
import { UlpError } from '../common/errors.js';
import { hex } from '../common/format.js';

export const ElfErrorCode = {
  NOT_ELF: 'ELF_NOT_ELF',
  UNSUPPORTED_CLASS: 'ELF_UNSUPPORTED_CLASS',
  UNSUPPORTED_ENDIAN: 'ELF_UNSUPPORTED_ENDIAN',
  UNSUPPORTED_MACHINE: 'ELF_UNSUPPORTED_MACHINE',
  NOT_SHARED_OBJECT: 'ELF_NOT_SHARED_OBJECT',
  TRUNCATED: 'ELF_TRUNCATED',
  MALFORMED: 'ELF_MALFORMED',
  MEMORY_READ: 'ELF_MEMORY_READ',
  UNSUPPORTED_LAYOUT: 'ELF_UNSUPPORTED_LAYOUT',
  DWARF_UNSUPPORTED: 'ELF_DWARF_UNSUPPORTED',
  INVALID_ARGUMENT: 'ELF_INVALID_ARGUMENT',
  INTERNAL: 'ELF_INTERNAL',
} as const;
export type ElfErrorCode = (typeof ElfErrorCode)[keyof typeof ElfErrorCode];

const HINT_DAMAGED =
  'The file looks damaged or was not produced by a linker; rebuild it or check that it was copied completely.';

export function truncated(
  what: string,
  at: bigint | number,
  need: bigint | number,
  have: bigint | number,
): UlpError {
  return new UlpError(
    ElfErrorCode.TRUNCATED,
    `${what} at ${hex(at)} needs ${need} bytes but only ${have} are available`,
    HINT_DAMAGED,
    { field: what, offset: hex(at), need: Number(need), have: Number(have) },
  );
}

export function malformed(what: string, detail: string, at?: bigint | number): UlpError {
  return new UlpError(
    ElfErrorCode.MALFORMED,
    `${what}${at === undefined ? '' : ` at ${hex(at)}`}: ${detail}`,
    HINT_DAMAGED,
    { field: what, ...(at === undefined ? {} : { offset: hex(at) }) },
  );
}

/** Valid DWARF the reader does not read (a newer version or form, zstd): not damage, so a code of its own. */
export function dwarfUnsupported(detail: string, details: Record<string, unknown> = {}): UlpError {
  return new UlpError(
    ElfErrorCode.DWARF_UNSUPPORTED,
    `debug information: ${detail}`,
    'Pack without it: give a build without .debug_* sections (strip --strip-debug) and no --debug-dir, so that the layout evidence comes from the machine code.',
    details,
  );
}

export function elfError(
  code: ElfErrorCode,
  message: string,
  hint: string,
  details?: Record<string, unknown>,
): UlpError {
  return new UlpError(code, message, hint, details);
}

/**
 * Runs `fn` and turns anything that is not a UlpError into ELF_INTERNAL. The
 * reader bounds-checks before every read, so reaching this is a reader bug;
 * callers still get the one error type they were promised.
 */
export function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UlpError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new UlpError(
      ElfErrorCode.INTERNAL,
      `internal error of the ELF reader while reading ${what}: ${msg}`,
      'This is a bug in the reader; please report it with the input file.',
      { field: what },
      { cause: e },
    );
  }
}
