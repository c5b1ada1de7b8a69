/**
 * Function boundaries from the unwind tables (.eh_frame, found through
 * PT_GNU_EH_FRAME). gcc emits a frame description (FDE) for every function,
 * so a stripped build, which has no .symtab, still tells where each of its
 * functions starts and ends. Only what is needed for that is decoded: CIE
 * augmentation (for the pointer encoding) and each FDE's pc_begin/pc_range.
 */
import { DwarfReader, ehFrameStart, type ElfObject } from '../../elf/index.js';

export interface CodeRange {
  start: number;
  end: number;
}

/**
 * Every FDE's [pc_begin, pc_begin + pc_range), sorted by start. Returns an
 * empty list when there is no unwind table or it cannot be decoded: callers
 * then know fewer functions, which only makes the report coarser.
 */
export function unwindRanges(obj: ElfObject): CodeRange[] {
  const start = ehFrameStart(obj);
  if (start === undefined) return [];
  try {
    return walkEhFrame(obj, Number(start));
  } catch {
    return [];
  }
}

function walkEhFrame(obj: ElfObject, start: number): CodeRange[] {
  const seg = obj.loadSegments.find((p) => BigInt(start) >= p.vaddr && BigInt(start) < p.vaddr + p.filesz);
  if (!seg) return [];
  const len = Number(seg.vaddr + seg.filesz) - start;
  const r = new DwarfReader(obj.readAt(BigInt(start), len), start);
  const cieEncodings = new Map<number, number>();
  const out: CodeRange[] = [];
  while (r.pos + 4 <= r.buf.length) {
    const entryAt = r.pos;
    let length = r.u32();
    if (length === 0) break; // terminator
    if (length === 0xffffffff) {
      length = Number(r.buf.readBigUInt64LE(r.pos));
      r.pos += 8;
    }
    const bodyAt = r.pos;
    const next = bodyAt + length;
    if (next > r.buf.length) break;
    const id = r.u32();
    if (id === 0) {
      cieEncodings.set(entryAt, parseCieEncoding(r));
    } else {
      const cieAt = bodyAt - id;
      let enc = cieEncodings.get(cieAt);
      if (enc === undefined) {
        const save = r.pos;
        r.pos = cieAt + 4 + 4;
        enc = parseCieEncoding(r);
        cieEncodings.set(cieAt, enc);
        r.pos = save;
      }
      const pcBegin = r.encoded(enc, true);
      const pcRange = r.encoded(enc & 0x0f, false);
      if (pcRange > 0) out.push({ start: pcBegin, end: pcBegin + pcRange });
    }
    r.pos = next;
  }
  return out.sort((a, b) => a.start - b.start || a.end - b.end);
}

/** Reads a CIE body (after its id) up to its 'R' augmentation: the FDE pointer encoding. */
function parseCieEncoding(r: DwarfReader): number {
  const version = r.u8();
  const aug = r.cstring();
  if (aug.includes('eh')) r.pos += 8;
  r.uleb(); // code alignment
  r.sleb(); // data alignment
  if (version === 1) r.u8();
  else r.uleb(); // return address register
  let enc = 0; // DW_EH_PE_absptr
  if (aug.startsWith('z')) {
    r.uleb(); // augmentation data length
    for (const c of aug.slice(1)) {
      if (c === 'R') enc = r.u8();
      else if (c === 'P') {
        const penc = r.u8();
        r.encoded(penc & 0x7f, false);
      } else if (c === 'L') r.u8();
      else if (c === 'S' || c === 'B' || c === 'G') continue;
      else break; // unknown augmentation: the rest cannot be parsed, keep what we have
    }
  }
  return enc;
}
