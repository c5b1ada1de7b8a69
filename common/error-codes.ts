/**
 * Every error code a user can meet, in one table: the layer that throws it,
 * the exit class both commands give it (docs/CLI.md "Exit codes"), and what
 * it means in one line. `UlpError` takes only these codes, so a misspelt code
 * fails the typecheck; test/unit/common/error-codes.test.ts checks docs/CLI.md
 * against this table.
 *
 * A code's prefix names the layer it started in and is kept for scripts
 * that match on it, but decides nothing: the runtime's loader throws some
 * `TRIGGER_` codes, `SWITCH_ROLLED_BACK` has no prefix, and `LOADER_` codes
 * fall in three exit classes. Codes are never renamed once released; adding
 * one means a line here and a line in docs/CLI.md (docs/DEVELOPING.md).
 */

/** The exit classes of docs/CLI.md, by the name common/cli.ts's ExitCode gives each number. */
export type ExitClass =
  | 'INTERNAL'
  | 'REFUSED'
  | 'INVALID_INPUT'
  | 'TARGET'
  | 'IO'
  | 'ROLLED_BACK'
  | 'INTERRUPTED'
  | 'PARTIAL'
  | 'USAGE';

/** The folder whose code throws it (docs/DEVELOPING.md "Layout"). */
export type Layer = 'common' | 'elf' | 'patches' | 'packer' | 'runtime' | 'trigger';

export interface ErrorSpec {
  readonly layer: Layer;
  readonly exit: ExitClass;
  readonly meaning: string;
}

const spec = (layer: Layer, exit: ExitClass, meaning: string): ErrorSpec => ({ layer, exit, meaning });

export const ERROR_CODES = {
  INTERNAL_ERROR: spec('common', 'INTERNAL', 'a bug: something other than a UlpError was thrown'),

  ELF_NOT_ELF: spec('elf', 'INVALID_INPUT', 'no ELF magic'),
  ELF_UNSUPPORTED_CLASS: spec('elf', 'INVALID_INPUT', 'not ELF64'),
  ELF_UNSUPPORTED_ENDIAN: spec('elf', 'INVALID_INPUT', 'not little-endian'),
  ELF_UNSUPPORTED_MACHINE: spec('elf', 'INVALID_INPUT', 'not x86-64'),
  ELF_NOT_SHARED_OBJECT: spec(
    'elf',
    'INVALID_INPUT',
    'an executable, object file or core dump where a shared object was expected',
  ),
  ELF_TRUNCATED: spec(
    'elf',
    'INVALID_INPUT',
    'a structure runs past the end of the file, segment or memory read',
  ),
  ELF_MALFORMED: spec('elf', 'INVALID_INPUT', 'a field holds an impossible value'),
  ELF_MEMORY_READ: spec('elf', 'INVALID_INPUT', 'reading an object from process memory failed'),
  ELF_UNSUPPORTED_LAYOUT: spec('elf', 'INVALID_INPUT', 'the writable pages after RELRO are not one range'),
  ELF_DWARF_UNSUPPORTED: spec('elf', 'INVALID_INPUT', 'valid DWARF the reader does not read'),
  ELF_INVALID_ARGUMENT: spec('elf', 'INTERNAL', 'a caller passed the reader something unusable: a bug'),
  ELF_INTERNAL: spec('elf', 'INTERNAL', 'an exception of another type escaped a parser: a reader bug'),

  BUNDLE_READ_FAILED: spec('patches', 'IO', 'the bundle cannot be read'),
  BUNDLE_WRITE_FAILED: spec('patches', 'IO', 'the bundle cannot be written'),
  BUNDLE_NOT_GZIP: spec('patches', 'INVALID_INPUT', 'not a gzip stream'),
  BUNDLE_CORRUPT: spec('patches', 'INVALID_INPUT', 'damaged gzip or tar'),
  BUNDLE_TOO_LARGE: spec('patches', 'INVALID_INPUT', 'the file or its unpacked tar exceeds the limits'),
  BUNDLE_ENTRY_TOO_LARGE: spec('patches', 'INVALID_INPUT', 'one entry exceeds its limit'),
  BUNDLE_UNSAFE_PATH: spec('patches', 'INVALID_INPUT', 'an absolute, empty or .. entry name'),
  BUNDLE_LINK_ENTRY: spec('patches', 'INVALID_INPUT', 'a hard or symbolic link entry'),
  BUNDLE_NOT_REGULAR_FILE: spec(
    'patches',
    'INVALID_INPUT',
    'a directory, device, FIFO or extended header entry',
  ),
  BUNDLE_UNEXPECTED_ENTRY: spec('patches', 'INVALID_INPUT', 'an entry name the format does not have'),
  BUNDLE_DUPLICATE_ENTRY: spec('patches', 'INVALID_INPUT', 'an entry appears twice'),
  BUNDLE_MISSING_ENTRY: spec('patches', 'INVALID_INPUT', 'ulp.json, new.so or old.so is missing'),
  BUNDLE_MANIFEST_INVALID: spec(
    'patches',
    'INVALID_INPUT',
    'ulp.json is not JSON or does not match the schema',
  ),
  BUNDLE_FORMAT_UNSUPPORTED: spec('patches', 'INVALID_INPUT', 'another major format version'),
  BUNDLE_PATCH_ID_MISMATCH: spec(
    'patches',
    'INVALID_INPUT',
    'the patch id does not match the builds the manifest names',
  ),
  BUNDLE_INCOMPATIBLE: spec(
    'patches',
    'INVALID_INPUT',
    "the bundle's own report says the update is incompatible",
  ),
  BUNDLE_SIZE_MISMATCH: spec('patches', 'INVALID_INPUT', 'a build differs in size from the manifest'),
  BUNDLE_HASH_MISMATCH: spec('patches', 'INVALID_INPUT', 'a build differs in hash from the manifest'),
  BUNDLE_BUILD_INVALID: spec('patches', 'INVALID_INPUT', 'a build is not an ELF shared object'),
  BUNDLE_BUILD_ID_MISMATCH: spec('patches', 'INVALID_INPUT', "a build's build-id differs from the manifest"),
  BUNDLE_UNSIGNED: spec('patches', 'INVALID_INPUT', 'a key was given, the bundle is not signed'),
  BUNDLE_SIGNATURE_KEY_MISMATCH: spec('patches', 'INVALID_INPUT', 'signed by another key than the one given'),
  BUNDLE_SIGNATURE_INVALID: spec('patches', 'INVALID_INPUT', 'the signature does not match the contents'),
  BUNDLE_SIGNATURE_MALFORMED: spec('patches', 'INVALID_INPUT', 'the signature entry is not a ulp signature'),
  BUNDLE_KEY_INVALID: spec('patches', 'INVALID_INPUT', 'a key file is not an Ed25519 PEM key'),
  BUNDLE_BAD_TIME: spec('patches', 'INVALID_INPUT', '(API) a creation time that is not a date'),

  PACK_USAGE: spec('packer', 'USAGE', 'ulp-pack: contradictory, missing or unknown options'),
  PACK_BAD_PACKAGE: spec('packer', 'USAGE', '--package is empty or not a package name'),
  PACK_BAD_VERSION: spec('packer', 'USAGE', '--from-version/--to-version is empty or has spaces'),
  PACK_BAD_CVE: spec('packer', 'USAGE', 'a --fixes value is not a CVE id'),
  PACK_INPUT_UNREADABLE: spec('packer', 'IO', 'OLD or NEW cannot be read'),
  PACK_KEY_UNREADABLE: spec('packer', 'IO', 'the --sign/--key file cannot be read'),
  PACK_DEBUG_DIR_UNREADABLE: spec('packer', 'IO', 'a --debug-dir is missing or not a folder'),
  PACK_KNOWN_DIR_UNREADABLE: spec('packer', 'IO', 'a --known folder is missing or not a folder'),
  PACK_DEBUG_FILE_UNREADABLE: spec('packer', 'IO', 'a debug file found for a build cannot be read'),
  PACK_NO_BUILD_ID: spec('packer', 'INVALID_INPUT', 'a build has no GNU build-id note'),
  PACK_NO_SONAME: spec('packer', 'INVALID_INPUT', 'a build has no DT_SONAME'),
  PACK_SONAME_MISMATCH: spec('packer', 'INVALID_INPUT', 'the builds are of different libraries'),
  PACK_SAME_BUILD: spec('packer', 'INVALID_INPUT', 'both files have identical bytes'),
  PACK_SAME_BUILD_ID: spec('packer', 'INVALID_INPUT', 'both files carry one build-id'),
  PACK_DOWNGRADE: spec('packer', 'REFUSED', 'the new build looks older than the old one'),
  PACK_INCOMPATIBLE: spec(
    'packer',
    'REFUSED',
    '--outdated --apply: the pack found the on-disk build unable to replace the running one',
  ),
  PACK_PROCESS_NOT_FOUND: spec('packer', 'TARGET', '--pid: no such process'),
  PACK_PROCESS_UNREADABLE: spec('packer', 'TARGET', "--pid: the process's mappings cannot be read"),
  PACK_LIBRARY_NOT_LOADED: spec('packer', 'INVALID_INPUT', "--pid: the process does not map NEW's library"),
  PACK_DEB_INVALID: spec(
    'packer',
    'INVALID_INPUT',
    '--deb: a file is not a Debian package dpkg-deb can unpack',
  ),
  PACK_DEB_MISMATCH: spec(
    'packer',
    'INVALID_INPUT',
    '--deb: the two packages are not versions of one package',
  ),
  PACK_DEB_NO_LIBRARIES: spec('packer', 'INVALID_INPUT', '--deb: the packages share no shared library'),
  PACK_DPKG_DEB_MISSING: spec('packer', 'IO', '--deb: dpkg-deb is not installed'),

  PROC_NOT_FOUND: spec('runtime', 'TARGET', 'no such process'),
  PROC_PERMISSION_DENIED: spec(
    'runtime',
    'TARGET',
    'the kernel refused to let this process trace the target',
  ),
  PROC_ALREADY_TRACED: spec(
    'runtime',
    'TARGET',
    'another tracer (debugger, strace, a second trigger) is attached',
  ),
  PROC_ZOMBIE: spec('runtime', 'TARGET', 'the process has exited and waits to be reaped'),
  PROC_EXITED: spec('runtime', 'TARGET', 'the process exited while the runtime was working on it'),
  PROC_THREAD_EXITED: spec('runtime', 'TARGET', 'the thread the runtime was using exited mid-operation'),
  PROC_UNSUPPORTED_ARCH: spec('runtime', 'TARGET', 'the process is not a 64-bit x86-64 process'),
  PROC_STATIC: spec('runtime', 'TARGET', 'the process is statically linked: no dynamic loader, no link map'),
  PROC_NO_LINK_MAP: spec('runtime', 'TARGET', 'the dynamic loader has not published its link map (yet)'),
  PROC_STOP_TIMEOUT: spec('runtime', 'TARGET', 'a thread did not stop in time (e.g. uninterruptible sleep)'),
  PROC_CALL_TIMEOUT: spec(
    'runtime',
    'TARGET',
    'a remote function call did not return in time; the thread was restored',
  ),
  PROC_CALL_FAULT: spec(
    'runtime',
    'TARGET',
    'a remote function call crashed (fault signal); the thread was restored',
  ),
  PROC_SYSCALL_FAILED: spec('runtime', 'TARGET', 'a system call made inside the target returned an error'),
  PROC_MEMORY: spec('runtime', 'TARGET', 'target memory could not be read or written at that address'),
  PROC_NO_THREAD: spec('runtime', 'TARGET', 'no thread of the process is in a state the runtime can borrow'),
  PROC_STUB: spec('runtime', 'TARGET', 'the ulp:stub page in the target is unusable'),
  PROC_PTRACE: spec('runtime', 'TARGET', 'an unexpected ptrace failure'),

  // Thrown by the loader (runtime/loader/) before it touches the process, under the trigger's prefix.
  TRIGGER_NOT_LOADED: spec('runtime', 'REFUSED', "the process has not loaded the bundle's library"),
  TRIGGER_BUILD_MISMATCH: spec(
    'runtime',
    'INVALID_INPUT',
    'a build in the bundle does not carry the build-id its manifest names',
  ),
  TRIGGER_LAYOUT_MISMATCH: spec(
    'runtime',
    'REFUSED',
    "the library's writable region in the process and the bundle's build differ",
  ),
  TRIGGER_RACE: spec(
    'runtime',
    'REFUSED',
    "another ulp-trigger changed the process between this one's plan and its attach",
  ),

  LOADER_DATAREFS_OUT_OF_REACH: spec(
    'runtime',
    'REFUSED',
    "no free address range within ±2 GiB of the library's data can hold the build",
  ),
  LOADER_DATAREFS_MISMATCH: spec(
    'runtime',
    'INVALID_INPUT',
    "the bundle's data-reference map does not fit its build",
  ),
  LOADER_UNRESOLVED_SYMBOL: spec(
    'runtime',
    'REFUSED',
    'the new build needs a symbol no loaded object defines',
  ),
  LOADER_SYMBOL_MISSING: spec(
    'runtime',
    'REFUSED',
    'the process bound a symbol into the library that the new build lacks',
  ),
  LOADER_UNSUPPORTED_RELOC: spec('runtime', 'REFUSED', 'the build has a relocation the loader cannot apply'),
  LOADER_TLS_UNKNOWN: spec('runtime', 'REFUSED', 'the TLS module or offset of the old build cannot be found'),
  LOADER_LAYOUT: spec(
    'runtime',
    'REFUSED',
    'an object has more than one writable region after RELRO, or its dynamic section in it (-z norelro)',
  ),
  LOADER_NO_SEGMENTS: spec('runtime', 'INVALID_INPUT', 'the build to stage has no loadable segments'),
  LOADER_ALIAS: spec(
    'runtime',
    'ROLLED_BACK',
    'the shared data mapping could not be made during the switch; the switch and what was staged are undone',
  ),
  LOADER_ALIAS_UNAVAILABLE: spec(
    'runtime',
    'REFUSED',
    "the build cannot be given the library's shared data (a staged build lost its mapping, or the kernel would not map it again) before anything in the process changed",
  ),
  LOADER_NO_SAFE_THREAD: spec(
    'runtime',
    'REFUSED',
    'every thread was inside the allocator, fork, ld.so or the unwinder each time',
  ),
  LOADER_FUNCTION_ACTIVE: spec(
    'runtime',
    'REFUSED',
    "a thread was inside a function the bundle's condition names (or one lacks its entry redirect) each time",
  ),
  LOADER_FORK_UNSUPPORTED: spec('runtime', 'REFUSED', 'the process has no glibc __register_atfork'),
  LOADER_FORK_REGISTER: spec('runtime', 'REFUSED', '__register_atfork failed in the process'),
  LOADER_FORK_TABLE_FULL: spec('runtime', 'REFUSED', "the process's fork table is full"),
  ULP_RETAIN_MISMATCH: spec(
    'runtime',
    'TARGET',
    "--outdated --apply: the memfd copy of the old build's code did not land or read back; the process stays patched on the deleted file",
  ),
  SWITCH_ROLLED_BACK: spec(
    'runtime',
    'ROLLED_BACK',
    'a slot or entry-redirect write failed during the switch; every write was undone',
  ),

  TRIGGER_USAGE: spec('trigger', 'USAGE', 'ulp-trigger: contradictory, missing or unknown options'),
  TRIGGER_KEY_UNREADABLE: spec('trigger', 'IO', 'the --key file cannot be read'),
  TRIGGER_BUNDLES_DIR_UNWRITABLE: spec(
    'trigger',
    'IO',
    '--outdated --apply: the bundles folder cannot be created or written',
  ),
  TRIGGER_BUILDS_CHANGED: spec(
    'trigger',
    'REFUSED',
    '--outdated --apply: the builds on disk or in the process changed while packing',
  ),
  TRIGGER_POLICY_INVALID: spec(
    'trigger',
    'INVALID_INPUT',
    'the host policy file cannot be read or is malformed',
  ),
  TRIGGER_POLICY_UNSIGNED: spec(
    'trigger',
    'INVALID_INPUT',
    'the host policy requires a verified signature and the bundle has none (or --allow-unverified was given)',
  ),
  TRIGGER_POLICY_UNTRUSTED: spec(
    'trigger',
    'INVALID_INPUT',
    "the bundle's signature is by no key the host policy trusts",
  ),
  TRIGGER_INTERRUPTED: spec(
    'trigger',
    'INTERRUPTED',
    '--all: SIGINT, SIGTERM or SIGHUP stopped the run between processes',
  ),
  TRIGGER_PARTIAL_SCAN: spec(
    'trigger',
    'PARTIAL',
    '--all, not as root: some process in scope could not be inspected (it may run the library) and --allow-partial was not given',
  ),
  TRIGGER_SIGNATURE_UNVERIFIED: spec('trigger', 'INVALID_INPUT', 'the bundle is signed and no key was given'),
  TRIGGER_WRONG_BUILD: spec('trigger', 'REFUSED', 'the process runs another build than the bundle patches'),
  TRIGGER_NOT_APPLIED: spec('trigger', 'REFUSED', 'revert: the patch was never applied in this process'),
  TRIGGER_GLIBC: spec('trigger', 'REFUSED', 'the bundle targets glibc itself'),
  TRIGGER_INCOMPATIBLE: spec(
    'trigger',
    'REFUSED',
    'the direction asked for is marked incompatible in the bundle',
  ),
  TRIGGER_EXPORT_BOUND: spec(
    'trigger',
    'REFUSED',
    'a loaded object is bound to an export the build to switch to does not define',
  ),
  TRIGGER_DATAREFS_MISSING: spec('trigger', 'REFUSED', 'the bundle has no data-reference maps (format 1.0)'),
  TRIGGER_DATAREFS_UNPROVEN: spec(
    'trigger',
    'REFUSED',
    'the map of the build to stage does not cover all of its code',
  ),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Narrows a code read back from JSON or another process's output. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** The exit class of `code`; a code outside the registry (a bug) is INTERNAL. */
export function exitClassOf(code: string): ExitClass {
  return isErrorCode(code) ? ERROR_CODES[code].exit : 'INTERNAL';
}
