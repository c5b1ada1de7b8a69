/**
 * Where an object's unwind table (.eh_frame) lies, found through
 * PT_GNU_EH_FRAME as a loaded object offers it (section headers may be
 * gone). The packer decodes the table's entries (packer/code/ehframe.ts);
 * the runtime hands the table to the process's unwinder, which walks it
 * until a zero-length entry, so its end is checked here first.
 */
import { PT_GNU_EH_FRAME } from './constants.js';
import type { ElfObject } from './types.js';

const DW_EH_PE_omit = 0xff;

/**
 * The vaddr of .eh_frame, from .eh_frame_hdr's eh_frame_ptr; undefined when
 * the object has no header or encodes the pointer in a way other than the
 * ones linkers emit (absolute, or PC-relative 4 or 8 bytes).
 */
export function ehFrameStart(obj: ElfObject): bigint | undefined {
  const ph = obj.programHeaders.find((p) => p.type === PT_GNU_EH_FRAME);
  if (!ph || ph.memsz < 4n + 4n) return undefined;
  let hdr: Buffer;
  try {
    hdr = obj.readAt(ph.vaddr, Math.min(Number(ph.memsz), 16));
  } catch {
    return undefined;
  }
  const [version, enc] = [hdr[0]!, hdr[1]!];
  if (version !== 1 || enc === DW_EH_PE_omit) return undefined;
  const at = ph.vaddr + 4n;
  const pcrel = (enc & 0x70) === 0x10 ? at : (enc & 0x70) === 0 ? 0n : undefined;
  if (pcrel === undefined) return undefined;
  switch (enc & 0x0f) {
    case 0x0b: // sdata4
      return pcrel + BigInt(hdr.readInt32LE(4));
    case 0x03: // udata4
      return pcrel + BigInt(hdr.readUInt32LE(4));
    case 0x00: // absptr
    case 0x04: // udata8
    case 0x0c: // sdata8
      return hdr.length >= 12 ? BigInt.asUintN(64, pcrel + hdr.readBigInt64LE(4)) : undefined;
    default:
      return undefined;
  }
}

/**
 * The vaddr just past .eh_frame's zero terminator, walking entry lengths
 * from `start` inside its load segment; undefined when the walk leaves the
 * segment first (an unterminated table must not be handed to an unwinder).
 */
export function ehFrameEnd(obj: ElfObject, start: bigint): bigint | undefined {
  const seg = obj.loadSegments.find((p) => start >= p.vaddr && start < p.vaddr + p.filesz);
  if (!seg) return undefined;
  const limit = seg.vaddr + seg.filesz;
  let bytes: Buffer;
  try {
    bytes = obj.readAt(start, Number(limit - start));
  } catch {
    return undefined;
  }
  let pos = 0;
  while (pos + 4 <= bytes.length) {
    const length = bytes.readUInt32LE(pos);
    if (length === 0) return start + BigInt(pos + 4);
    if (length === 0xffffffff) {
      if (pos + 12 > bytes.length) return undefined;
      const long = bytes.readBigUInt64LE(pos + 4);
      if (long > BigInt(bytes.length)) return undefined;
      pos += 12 + Number(long);
    } else pos += 4 + length;
  }
  return undefined;
}
