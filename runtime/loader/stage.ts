/**
 * Stage: map a build into the process at a fresh base and relocate it, on one
 * borrowed thread while the others keep running. Nothing in the program
 * points at the staged build afterwards, so staging is invisible; on any
 * failure everything it mapped is unmapped again.
 *
 * Layout of a staged build:
 *   - a PROT_NONE reservation of the whole image span (like ld.so),
 *   - each PT_LOAD mapped MAP_PRIVATE from a sealed memfd named after the patch,
 *     with its own protections from the start: the IFUNC resolvers and
 *     __register_frame that staging calls may read or run any page of it,
 *     the one holding the ELF header included (without -z separate-code that
 *     page holds code, .eh_frame and read-only data too),
 *   - until the build is complete (finishStaging), one more mapping of the
 *     memfd's first page, PROT_NONE and apart from the image: the snapshot
 *     takes a memfd with an inaccessible offset-0 mapping for an unfinished
 *     staging (snapshot.ts), so one a killed trigger left half relocated is
 *     never taken for a build by a later run,
 *   - the writable region that survives RELRO mapped MAP_SHARED from the
 *     library's data memfd instead: created here the first time (and copied
 *     into at the switch), duplicated from the already aliased canonical
 *     region with mremap(old_size = 0) for every later build. The build's
 *     region need not lie at the canonical build's vaddr: the same pages
 *     are mapped wherever this build's own region is (region.ts).
 */
import { closeSync, writeSync } from 'node:fs';
import { PAGE_SIZE, pageAlignDown, pageAlignUp, PF_R, PF_W, PF_X, type ElfObject } from '../../elf/index.js';
import { UlpError } from '../../common/errors.js';
import { openTargetFd, sealFromTracer, sizeMemfd } from '../memory.js';
import type { Session } from '../session.js';
import { MAP, MFD, NR, PROT } from '../sys/constants.js';
import { dataMemfdName } from '../memfd-names.js';
import type { ProcessObject, Region } from './model.js';
import { forgetForkAliases } from './fork/index.js';
import { u64Bytes } from '../../common/u64.js';

/** mremap(2) flags; with old_size 0 on a MAP_SHARED mapping, mremap maps the same pages a second time. */
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;

export interface StageRequest {
  /** The build's bytes and its parse. */
  bytes: Buffer;
  elf: ElfObject;
  /** memfd name, `ulp:<patch-id>[@<peer>]:<role>:<soname>` (model.ts). */
  memfdName: string;
  soname: string;
  /** This build's own writable region (its vaddrs): the same size as the canonical build's, not necessarily at the same vaddr. */
  region: Region | undefined;
  /** Runtime address of the canonical build's region, when it is already a shared mapping (a library switched before). */
  aliasedCanonicalRegion: bigint | undefined;
  /** Where to ask the kernel to put the image (datarefs.ts baseNear); anywhere when absent. */
  hint?: bigint;
  /**
   * The bytes to put into the memfd, once the bias is known: the build with its
   * data references rewritten (datarefs.ts). Done before anything is mapped from
   * the memfd, so the code pages stay clean file pages and nothing is poked.
   */
  rewrite?: (bias: bigint) => Buffer;
}

export interface StagedImage {
  bias: bigint;
  /**
   * The inaccessible mapping of the memfd's first page that marks the staging
   * unfinished; finishStaging unmaps it and clears this (after that the address
   * is the process's again and must never be unmapped by us).
   */
  marker: bigint | undefined;
  span: { start: bigint; end: bigint };
  /** True when this staging created the library's data memfd: the switch must copy the old data into it and alias. */
  freshData: boolean;
  /** Runtime address of the staged build's shared region, if any. */
  regionAddr: bigint | undefined;
}

function protOf(flags: number): number {
  return (flags & PF_R ? PROT.READ : 0) | (flags & PF_W ? PROT.WRITE : 0) | (flags & PF_X ? PROT.EXEC : 0);
}

/** Maps the build; relocation writes are applied separately (applyWrites) once the base is known. */
export function mapBuild(s: Session, req: StageRequest): StagedImage {
  const { elf, region } = req;
  const loads = elf.loadSegments;
  if (loads.length === 0)
    throw new UlpError(
      'LOADER_NO_SEGMENTS',
      'the build has no loadable segments',
      'Check the bundle: its build is not a shared library.',
    );
  const start = pageAlignDown(loads[0]!.vaddr);
  const end = pageAlignUp(loads.reduce((m, p) => (p.vaddr + p.memsz > m ? p.vaddr + p.memsz : m), 0n));
  const sys = s.sys;
  let reservation: bigint | undefined;
  let marker: bigint | undefined;
  let fd: number | undefined;
  try {
    // The address range first: the bytes may depend on where the build lands.
    reservation = sys.mmap(req.hint ?? 0n, end - start, PROT.NONE, MAP.PRIVATE | MAP.ANONYMOUS);
    const bias = reservation - start;
    const bytes = req.rewrite ? req.rewrite(bias) : req.bytes;
    fd = sys.memfdCreate(req.memfdName, MFD.CLOEXEC | MFD.ALLOW_SEALING);
    if (!fillMemfd(s.pid, fd, bytes)) sys.addSeals(fd);
    // The marker before any segment: whatever of the build a killed trigger leaves is never taken for a build.
    marker = sys.mmap(0n, PAGE_SIZE, PROT.NONE, MAP.PRIVATE, fd, 0n);
    for (const p of loads) {
      const segStart = pageAlignDown(p.vaddr);
      const fileEnd = p.vaddr + p.filesz;
      // The shared region replaces the tail of the writable segment; RELRO pages stay private and writable until relocated.
      const privEnd =
        region && (p.flags & PF_W) !== 0 && region.start < pageAlignUp(fileEnd)
          ? region.start
          : pageAlignUp(fileEnd);
      const writable = (p.flags & PF_W) !== 0;
      if (privEnd > segStart) {
        sys.mmap(
          bias + segStart,
          privEnd - segStart,
          writable ? PROT.READ | PROT.WRITE : protOf(p.flags),
          MAP.PRIVATE | MAP.FIXED,
          fd,
          pageAlignDown(p.offset),
        );
        // Bytes past p_filesz on the last file page belong to .bss: ld.so zeroes them, so must we.
        if (writable && fileEnd < privEnd && p.memsz > p.filesz)
          s.memory.write(bias + fileEnd, Buffer.alloc(Number(privEnd - fileEnd)));
      }
      const anonEnd = region && writable ? region.start : pageAlignUp(p.vaddr + p.memsz);
      if (anonEnd > privEnd && writable)
        sys.mmap(
          bias + privEnd,
          anonEnd - privEnd,
          PROT.READ | PROT.WRITE,
          MAP.PRIVATE | MAP.FIXED | MAP.ANONYMOUS,
        );
    }
    let freshData = false;
    let regionAddr: bigint | undefined;
    if (region) {
      regionAddr = bias + region.start;
      const len = region.end - region.start;
      if (req.aliasedCanonicalRegion !== undefined) {
        const got = s.syscall(NR.mremap, [
          req.aliasedCanonicalRegion,
          0,
          len,
          MREMAP_MAYMOVE | MREMAP_FIXED,
          regionAddr,
        ]);
        // Still staging: mapBuild's own catch takes everything back, and the program never saw any of it.
        if (got !== regionAddr)
          throw new UlpError(
            'LOADER_ALIAS_UNAVAILABLE',
            `could not alias the shared data of ${req.soname} at 0x${regionAddr.toString(16)}`,
            'Report this; the process was left unchanged.',
          );
      } else {
        const dfd = sys.memfdCreate(dataMemfdName(req.soname), MFD.CLOEXEC);
        try {
          sizeMemfd(s.pid, dfd, len);
          sys.mmap(regionAddr, len, PROT.READ | PROT.WRITE, MAP.SHARED | MAP.FIXED, dfd, 0);
        } finally {
          sys.close(dfd);
        }
        freshData = true;
      }
    }
    return {
      bias,
      marker,
      span: { start: reservation, end: reservation + (end - start) },
      freshData,
      regionAddr,
    };
  } catch (e) {
    if (reservation !== undefined) tryUnmap(s, reservation, end - start);
    if (marker !== undefined) tryUnmap(s, marker, PAGE_SIZE);
    throw e;
  } finally {
    if (fd !== undefined) sys.close(fd);
  }
}

/**
 * Maps `bytes` read-only into the process from a sealed memfd named `name`
 * (the bundle's metadata, model.ts metaMemfdName); returns the mapping.
 * Nothing refers to it: it exists to be read by --status.
 */
export function mapMetadata(s: Session, name: string, bytes: Buffer): { addr: bigint; len: bigint } {
  const sys = s.sys;
  const fd = sys.memfdCreate(name, MFD.CLOEXEC | MFD.ALLOW_SEALING);
  try {
    if (!fillMemfd(s.pid, fd, bytes)) sys.addSeals(fd);
    const len = pageAlignUp(BigInt(bytes.length));
    return { addr: sys.mmap(0n, len, PROT.READ, MAP.PRIVATE, fd, 0n), len };
  } finally {
    sys.close(fd);
  }
}

/**
 * Fills and seals a memfd of the target from the tracer side, through /proc/PID/fd: no copy through the
 * target's memory, no remote fcntl. False when it could not be sealed from here (the caller seals it remotely).
 */
function fillMemfd(pid: number, fd: number, bytes: Buffer): boolean {
  const tfd = openTargetFd(pid, fd, 'r+');
  try {
    for (let off = 0; off < bytes.length;) off += writeSync(tfd, bytes, off, bytes.length - off, off);
    return sealFromTracer(tfd);
  } finally {
    closeSync(tfd);
  }
}

export interface Write {
  addr: bigint;
  value: bigint;
}

/**
 * Writes relocation values into the staged build's private pages: grouped by
 * page and written with process_vm_writev (the pages are still writable),
 * then the RELRO range is made read-only the way ld.so does it.
 */
export function applyWrites(s: Session, elf: ElfObject, image: StagedImage, writes: readonly Write[]): void {
  const byPage = new Map<bigint, Write[]>();
  for (const w of writes) {
    const page = pageAlignDown(w.addr);
    const list = byPage.get(page) ?? [];
    list.push(w);
    byPage.set(page, list);
    // A word that straddles two pages is split by the runs below.
  }
  const pages = [...byPage.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Coalesce adjacent pages into runs: one read and one write per run.
  for (let i = 0; i < pages.length;) {
    let j = i;
    while (j + 1 < pages.length && pages[j + 1] === pages[j]! + 4096n) j++;
    const runStart = pages[i]!;
    const runEnd = pages[j]! + 4096n;
    const buf = s.memory.read(runStart, Number(runEnd - runStart));
    for (let k = i; k <= j; k++) {
      for (const w of byPage.get(pages[k]!)!) {
        const off = Number(w.addr - runStart);
        if (off + 8 <= buf.length) buf.writeBigUInt64LE(w.value, off);
        else s.poke(w.addr, u64Bytes(w.value)); // straddles the end of the run
      }
    }
    s.memory.write(runStart, buf);
    i = j + 1;
  }
  const relro = elf.relro;
  if (relro) {
    const from = pageAlignDown(image.bias + relro.vaddr);
    const to = pageAlignDown(image.bias + relro.vaddr + relro.memsz);
    if (to > from) s.sys.mprotect(from, to - from, PROT.READ);
  }
  // Writable pages outside RELRO and the shared region keep their protection; read-only segments were never writable.
}

/** The last step of staging: the build becomes visible to later runs (and to --status) only now. */
export function finishStaging(s: Session, image: StagedImage): void {
  if (image.marker === undefined) return;
  s.sys.munmap(image.marker, PAGE_SIZE);
  image.marker = undefined;
}

/** Unmaps a staged image nothing points at, with its marker while it has one. */
export function unmapImage(s: Session, image: StagedImage): void {
  tryUnmap(s, image.span.start, image.span.end - image.span.start);
  if (image.marker !== undefined) tryUnmap(s, image.marker, PAGE_SIZE);
  image.marker = undefined;
}

export function tryUnmap(s: Session, addr: bigint, len: bigint): void {
  try {
    forgetForkAliases(s, addr, len); // first: a child forked meanwhile must not map a copy where nothing of ours is left
    s.sys.munmap(addr, len);
  } catch {
    // Best effort: the mapping is unreferenced; leaving it only costs address space.
  }
}

/**
 * The first switch of a library: copy the old build's writable region into
 * the data memfd (through the staged build's shared mapping of it), then
 * duplicate that mapping over the old region. Runs with all threads stopped,
 * so nothing can write the old region between the copy and the remap.
 */
export function aliasCanonical(
  s: Session,
  canonical: ProcessObject,
  region: Region,
  stagedRegionAddr: bigint,
): void {
  const len = region.end - region.start;
  const oldAddr = canonical.bias + region.start;
  s.memory.write(stagedRegionAddr, s.memory.read(oldAddr, Number(len)));
  const got = s.syscall(NR.mremap, [stagedRegionAddr, 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, oldAddr]);
  if (got !== oldAddr)
    throw new UlpError(
      'LOADER_ALIAS',
      `could not alias the writable data of ${canonical.soname ?? canonical.name} at 0x${oldAddr.toString(16)}`,
      'The process was left on its current version.',
    );
}
