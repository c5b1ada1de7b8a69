/**
 * Parsed loaded objects, shared across processes. An object whose file on
 * disk is still the one mapped (same device and inode) is parsed from the
 * file, once for every process that maps it: one read of the file instead of
 * many small reads of each process's memory, which is what makes `--all` on
 * many processes cheap. An object whose file was replaced or deleted — the
 * usual state after a package upgrade, exactly when patching matters — is
 * parsed from the process's memory, as the loader has it.
 *
 * The build files the trigger itself holds (a bundle's two builds) are
 * parsed once per Buffer too: every process of an `--all` run is staged
 * with, or compared against, the same bytes.
 */
import { readFileSync, statSync } from 'node:fs';
import { parseElf, parseElfFromMemory, type ElfObject } from '../../elf/index.js';
import type { Mapping } from '../maps.js';
import type { ReadMemory } from './model.js';

/** st_dev as "major:minor" in hex, the way /proc/PID/maps prints it (Linux's new_encode_dev). */
function devString(dev: number): string {
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`;
}

export class ElfCache {
  private readonly byFile = new Map<string, ElfObject | null>();
  private readonly byBytes = new WeakMap<Buffer, ElfObject>();

  /** A build file in the trigger's hands (a bundle's build), parsed once for as long as its Buffer lives. */
  file(bytes: Buffer): ElfObject {
    let elf = this.byBytes.get(bytes);
    if (!elf) this.byBytes.set(bytes, (elf = parseElf(bytes)));
    return elf;
  }

  /**
   * The object mapped with its ELF header at `headerAddr` (`mapping` is the
   * mapping that contains it, if known).
   */
  object(read: ReadMemory, bias: bigint, headerAddr: bigint, mapping: Mapping | undefined): ElfObject {
    const fromFile = mapping ? this.fromFile(mapping) : undefined;
    return fromFile ?? parseElfFromMemory(read, { bias, headerAddr, expect: 'any' });
  }

  private fromFile(m: Mapping): ElfObject | undefined {
    if (m.inode === 0 || m.deleted || !m.path.startsWith('/')) return undefined;
    const key = `${m.dev}:${m.inode}`;
    const cached = this.byFile.get(key);
    if (cached !== undefined) return cached ?? undefined;
    let obj: ElfObject | null = null;
    try {
      const st = statSync(m.path);
      // Same inode on the same device: the very file the process mapped (upgrades replace files by rename).
      if (st.ino === m.inode && devString(st.dev) === m.dev)
        obj = parseElf(readFileSync(m.path), { expect: 'any' });
    } catch {
      obj = null; // unreadable or not ELF here: fall back to memory
    }
    this.byFile.set(key, obj);
    return obj ?? undefined;
  }
}
