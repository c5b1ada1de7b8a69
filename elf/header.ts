/**
 * The ELF identification and header. The checks run in the order a user
 * would want them explained: not ELF at all, then the wrong kind of ELF.
 */
import type { ElfHeader } from './types.js';
import { View } from './bytes.js';
import { EHDR_SIZE, ELFCLASS64, ELFDATA2LSB, EM_X86_64, EV_CURRENT } from './constants.js';
import { ElfErrorCode, elfError, malformed, truncated } from './errors.js';
import { hex } from '../common/format.js';

const HINT_X86_64 =
  'The reader supports 64-bit little-endian x86-64 objects only; use the build of the library for x86-64.';

export function parseHeader(bytes: Buffer, where: bigint): ElfHeader {
  if (bytes.length < 4 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    throw elfError(
      ElfErrorCode.NOT_ELF,
      `not an ELF object: the first bytes at ${hex(where)} are ${bytes.subarray(0, 4).toString('hex') || '(none)'}, not 7f454c46`,
      'Give the path of an ELF shared object (.so); scripts, archives and linker scripts are not ELF.',
    );
  }
  if (bytes.length < 16) throw truncated('ELF identification', where, 16, bytes.length);
  const cls = bytes[4]!;
  if (cls !== ELFCLASS64) {
    throw elfError(
      ElfErrorCode.UNSUPPORTED_CLASS,
      `unsupported ELF class ${cls} (EI_CLASS at ${hex(where + 4n)}): ${cls === 1 ? '32-bit' : 'unknown'} objects are not supported`,
      HINT_X86_64,
      { eiClass: cls },
    );
  }
  const data = bytes[5]!;
  if (data !== ELFDATA2LSB) {
    throw elfError(
      ElfErrorCode.UNSUPPORTED_ENDIAN,
      `unsupported byte order ${data} (EI_DATA at ${hex(where + 5n)}): ${data === 2 ? 'big-endian' : 'unknown'} objects are not supported`,
      HINT_X86_64,
      { eiData: data },
    );
  }
  if (bytes[6] !== EV_CURRENT)
    throw malformed('EI_VERSION', `is ${bytes[6]}, expected ${EV_CURRENT}`, where + 6n);
  const v = new View(bytes, where, 'ELF header');
  v.need(0, EHDR_SIZE);
  const machine = v.u16(18);
  if (machine !== EM_X86_64) {
    throw elfError(
      ElfErrorCode.UNSUPPORTED_MACHINE,
      `unsupported machine ${machine} (e_machine at ${hex(where + 18n)}), expected ${EM_X86_64} (x86-64)`,
      HINT_X86_64,
      { machine },
    );
  }
  if (v.u32(20) !== EV_CURRENT)
    throw malformed('e_version', `is ${v.u32(20)}, expected ${EV_CURRENT}`, where + 20n);
  const h: ElfHeader = {
    type: v.u16(16),
    machine,
    entry: v.u64(24),
    phoff: v.u64(32),
    shoff: v.u64(40),
    flags: v.u32(48),
    phentsize: v.u16(54),
    phnum: v.u16(56),
    shentsize: v.u16(58),
    shnum: v.u16(60),
    shstrndx: v.u16(62),
  };
  return h;
}
