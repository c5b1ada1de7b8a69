/**
 * Which `ulp:` build memfds in /proc/PID/maps are builds, and where each
 * starts. Pure, over parsed maps.
 *
 * A build is mapped from its memfd's offset 0 at its base, and other
 * segments may map offset 0 again (a writable segment whose file offset lies
 * in the first page, as ld lays out -z noseparate-code libraries): the base
 * is the lowest. While staging, an inaccessible mapping of offset 0 marks
 * the build unfinished (stage.ts; earlier versions kept the base page itself
 * inaccessible), so a build a killed trigger left half relocated is never
 * taken for one.
 */
import type { Mapping } from '../maps.js';
import { parseMemfdPath } from '../memfd-names.js';

export interface BuildMappings {
  /** The base mapping of each finished build, in address order. */
  builds: Mapping[];
  /** One mapping of each unfinished staging: its image base when it was mapped, else its marker. */
  abandoned: Mapping[];
}

export function buildMappings(maps: readonly Mapping[]): BuildMappings {
  const byFile = new Map<string, Mapping[]>();
  for (const m of maps) {
    if (m.offset !== 0n || parseMemfdPath(m.path)?.kind !== 'build') continue;
    const key = `${m.dev}:${m.inode}`;
    byFile.set(key, [...(byFile.get(key) ?? []), m]);
  }
  const builds: Mapping[] = [];
  const abandoned: Mapping[] = [];
  for (const group of byFile.values()) {
    group.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    if (group.some((m) => !m.read)) abandoned.push(group.find((m) => m.read) ?? group[0]!);
    else builds.push(group[0]!);
  }
  const order = (a: Mapping, b: Mapping) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0);
  return { builds: builds.sort(order), abandoned: abandoned.sort(order) };
}
