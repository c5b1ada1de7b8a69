/** Note segments/sections, and the GNU build-id that identifies a build. */
import type { ElfNote } from './types.js';
import type { View } from './bytes.js';
import { NT_GNU_BUILD_ID } from './constants.js';
import { malformed } from './errors.js';

const pad = (n: number, align: number) => Math.ceil(n / align) * align;

/**
 * Notes are padded to 4 bytes, except in 8-aligned note segments (GNU
 * property notes), where descriptors are padded to 8, as ld.so and readelf read them.
 */
export function parseNotes(v: View, align: bigint): ElfNote[] {
  const a = align === 8n ? 8 : 4;
  const out: ElfNote[] = [];
  let o = 0;
  // Each note consumes at least its 12-byte header, so this ends.
  while (o + 12 <= v.length) {
    const namesz = v.u32(o, 'note n_namesz');
    const descsz = v.u32(o + 4, 'note n_descsz');
    const type = v.u32(o + 8, 'note n_type');
    const nameAt = o + 12;
    if (namesz > v.length - nameAt) {
      throw malformed(
        `${v.what} note at +${o}`,
        `name (${namesz} bytes) runs past the end of the notes (${v.length} bytes)`,
        v.base + BigInt(o),
      );
    }
    const descAt = o + pad(12 + namesz, a);
    if (descAt > v.length || descsz > v.length - descAt) {
      throw malformed(
        `${v.what} note at +${o}`,
        `name (${namesz} bytes) and descriptor (${descsz} bytes) run past the end of the notes (${v.length} bytes)`,
        v.base + BigInt(o),
      );
    }
    let name = v.buf.toString('latin1', nameAt, nameAt + namesz);
    if (name.endsWith('\0')) name = name.slice(0, -1);
    out.push({ name, type, desc: Buffer.from(v.buf.subarray(descAt, descAt + descsz)) });
    o += pad(descAt - o + descsz, a);
  }
  return out;
}

export function buildIdOf(notes: ElfNote[]): string | undefined {
  const n = notes.find((x) => x.name === 'GNU' && x.type === NT_GNU_BUILD_ID);
  return n?.desc.toString('hex');
}
