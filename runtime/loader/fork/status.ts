/** What `--status` says about fork protection, read from the process like everything else. */
import type { Mapping } from '../../maps.js';
import type { RemoteMemory } from '../../memory.js';
import { sonameOfDataName } from '../../memfd-names.js';
import { findForkPage } from './page.js';
import { readTable } from './table.js';

export interface ForkStatus {
  /** The fork page exists and its handlers are registered with glibc. */
  installed: boolean;
  /** Forks the prepare handler has seen (in a child: including its parent's before it forked). */
  forks: number;
  libraries: Array<{ name: string; aliases: number }>;
  /** Libraries whose data is shared but that the handlers do not know: a child would share them. */
  unprotected: string[];
}

/** `shared`: memfd names (`ulp:data:<soname>`) of the libraries whose data is shared in the process. */
export function readForkStatus(
  pid: number,
  mem: RemoteMemory,
  maps: readonly Mapping[],
  shared: readonly string[],
): ForkStatus {
  const page = findForkPage(pid, mem, maps);
  const table = page ? readTable(mem, page.base) : undefined;
  const libraries = (table?.libs ?? [])
    .filter((l) => l.aliases.length > 0)
    .map((l) => ({ name: l.name, aliases: l.aliases.length }));
  const installed = table?.registered ?? false;
  return {
    installed,
    forks: Number(table?.prepares ?? 0n),
    libraries,
    unprotected: shared.filter((name) => !installed || !libraries.some((l) => l.name === name)),
  };
}

/** One line for the text output of `--status`. */
export function forkSummary(f: ForkStatus): string {
  const libs = f.libraries.map((l) => sonameOfDataName(l.name)).join(', ');
  const state = f.installed
    ? `installed: a child gets private copies of the data of ${libs || 'no library yet'}; ${f.forks} fork${f.forks === 1 ? '' : 's'} seen`
    : 'not installed';
  const bad = f.unprotected.length
    ? ` — NOT PROTECTED: ${f.unprotected.map(sonameOfDataName).join(', ')} (a child would share them; re-run the apply)`
    : '';
  return `fork protection ${state}${bad}`;
}
