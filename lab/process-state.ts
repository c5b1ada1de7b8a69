/**
 * What a target process looks like from outside, for tests that must show a
 * command left it untouched: its mappings and the value of every symbol slot
 * (GLOB_DAT, JUMP_SLOT, R_X86_64_64) of every file-backed object, plus the
 * traces a tracer could leave behind (ulp memfds, open memfd descriptors,
 * threads still traced).
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { parseElf, RelocType } from '../elf/index.js';

/** The mappings and every symbol slot (GLOB_DAT, JUMP_SLOT, R_X86_64_64) of every file-backed object. */
export function processState(pid: number): { maps: string; slots: Map<string, bigint> } {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  const slots = new Map<string, bigint>();
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const seen = new Set<string>();
    for (const line of maps.split('\n')) {
      const m = /^([0-9a-f]+)-[0-9a-f]+ \S+ 00000000 \S+ \d+\s+(\/\S+)$/.exec(line);
      if (!m || seen.has(m[2]!) || m[2]!.startsWith('/memfd:')) continue;
      seen.add(m[2]!);
      let elf;
      try {
        elf = parseElf(readFileSync(m[2]!), { expect: 'any' });
      } catch {
        continue;
      }
      const bias = BigInt('0x' + m[1]) - (elf.loadSegments[0]?.vaddr ?? 0n);
      for (const r of elf.relocations) {
        if (r.type !== RelocType.GLOB_DAT && r.type !== RelocType.JUMP_SLOT && r.type !== RelocType.R64)
          continue;
        const buf = Buffer.alloc(8);
        readSync(fd, buf, 0, 8, Number(bias + r.offset));
        slots.set(`${m[2]}+0x${r.offset.toString(16)}`, buf.readBigUInt64LE(0));
      }
    }
  } finally {
    closeSync(fd);
  }
  return { maps, slots };
}

/** Threads of `pid` that still have a tracer (TracerPid != 0), with the tracer's pid. */
export function tracedThreads(pid: number): Array<{ tid: number; tracer: number }> {
  const out: Array<{ tid: number; tracer: number }> = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const tracer = Number(
        /TracerPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1] ?? 0,
      );
      if (tracer !== 0) out.push({ tid: Number(tid), tracer });
    } catch {
      // the thread exited meanwhile
    }
  }
  return out;
}

/** Descriptors the process holds open on memfds (a tracer that died mid-staging could leak one). */
export function memfdDescriptors(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (link.startsWith('/memfd:')) out.push(`${fd} -> ${link}`);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Lines of /proc/PID/maps that ulp-trigger created (its memfds and the stub page). */
export function ulpMappings(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.includes('/memfd:ulp:'));
}

/**
 * What an apply leaves in a process (a staged build, its metadata, a journal):
 * ulpMappings without the runtime's own stub and fork pages, which stay for
 * the next run and change nothing the program runs (docs/RUNTIME.md).
 */
export function applyMappings(pid: number): string[] {
  return ulpMappings(pid).filter((l) => !/ulp:(stub|fork)\b/.test(l));
}
