/**
 * Symbol versioning (the GNU extension): VERSYM gives each dynamic symbol a
 * version index; VERDEF names the indices this object defines, VERNEED the
 * ones it requires from other files. Both are linked lists inside the
 * object, so walks are bounded and checked for loops.
 */
import type { StringTable } from './bytes.js';
import type { DynamicInfo } from './types.js';
import { VER_FLG_BASE } from './constants.js';
import { malformed } from './errors.js';
import type { Image } from './image.js';

export interface VersionDef {
  index: number;
  name: string;
  flags: number;
  /** The object's own name (VER_FLG_BASE): not a version symbols can carry. */
  base: boolean;
  /** Names of the versions this one inherits from (further Verdaux entries). */
  parents: string[];
  hash: number;
}

export interface VersionNeed {
  index: number;
  name: string;
  file: string;
  flags: number;
  hash: number;
}

export interface Versions {
  defs: Map<number, VersionDef>;
  needs: Map<number, VersionNeed>;
}

/** Version indices are 15 bits; a list longer than this is corrupt or looping. */
const MAX_ENTRIES = 0x8000;
const VERDEF_SIZE = 20;
const VERDAUX_SIZE = 8;
const VERNEED_SIZE = 16;
const VERNAUX_SIZE = 16;

function need(strings: StringTable | undefined, what: string): StringTable {
  if (!strings) throw malformed(what, 'version information without a dynamic string table (DT_STRTAB)');
  return strings;
}

export function parseVersions(img: Image, dyn: DynamicInfo, strings: StringTable | undefined): Versions {
  const defs = new Map<number, VersionDef>();
  const needs = new Map<number, VersionNeed>();

  if (dyn.verdef) {
    const st = need(strings, 'DT_VERDEF');
    // ld.so follows vd_next alone; VERDEFNUM (what readelf uses) agrees on sane objects and bounds a corrupt one.
    const limit = dyn.verdef.count > 0 ? Math.min(dyn.verdef.count, MAX_ENTRIES) : MAX_ENTRIES;
    let at = dyn.verdef.addr;
    for (let i = 0; i < limit; i++) {
      const what = `version definition ${i}`;
      const v = img.read(at, VERDEF_SIZE, what);
      const version = v.u16(0);
      if (version !== 1) throw malformed(`${what} vd_version`, `is ${version}, expected 1`, at);
      const flags = v.u16(2);
      const index = v.u16(4);
      const cnt = v.u16(6);
      const hash = v.u32(8);
      const auxOff = v.u32(12);
      const next = v.u32(16);
      const names: string[] = [];
      let auxAt = at + BigInt(auxOff);
      for (let j = 0; j < cnt; j++) {
        const a = img.read(auxAt, VERDAUX_SIZE, `${what} aux ${j}`);
        names.push(st.get(a.u32(0), `${what} aux ${j} vda_name`));
        const an = a.u32(4);
        if (an === 0) break;
        auxAt += BigInt(an);
      }
      if (names.length === 0) throw malformed(what, 'has no name (vd_cnt is 0)', at);
      if (!defs.has(index & 0x7fff))
        defs.set(index & 0x7fff, {
          index,
          name: names[0]!,
          flags,
          base: (flags & VER_FLG_BASE) !== 0,
          parents: names.slice(1),
          hash,
        });
      // vd_next is an unsigned offset, so the walk only moves forward: it ends.
      if (next === 0) break;
      at += BigInt(next);
    }
  }

  if (dyn.verneed) {
    const st = need(strings, 'DT_VERNEED');
    const limit = dyn.verneed.count > 0 ? Math.min(dyn.verneed.count, MAX_ENTRIES) : MAX_ENTRIES;
    let at = dyn.verneed.addr;
    let total = 0;
    for (let i = 0; i < limit; i++) {
      const what = `version requirement ${i}`;
      const v = img.read(at, VERNEED_SIZE, what);
      const version = v.u16(0);
      if (version !== 1) throw malformed(`${what} vn_version`, `is ${version}, expected 1`, at);
      const cnt = v.u16(2);
      const file = st.get(v.u32(4), `${what} vn_file`);
      const auxOff = v.u32(8);
      const next = v.u32(12);
      let auxAt = at + BigInt(auxOff);
      for (let j = 0; j < cnt; j++) {
        if (++total > MAX_ENTRIES)
          throw malformed(
            'DT_VERNEED',
            `more than ${MAX_ENTRIES} required versions: the list is corrupt`,
            at,
          );
        const a = img.read(auxAt, VERNAUX_SIZE, `${what} aux ${j}`);
        const hash = a.u32(0);
        const flags = a.u16(4);
        const other = a.u16(6);
        const name = st.get(a.u32(8), `${what} aux ${j} vna_name`);
        if (!needs.has(other & 0x7fff)) needs.set(other & 0x7fff, { index: other, name, file, flags, hash });
        const an = a.u32(12);
        if (an === 0) break;
        auxAt += BigInt(an);
      }
      if (next === 0) break;
      at += BigInt(next);
    }
  }
  return { defs, needs };
}
