/** Text output of `ulp-trigger --outdated`; `--json` prints the report itself. */
import type { OutdatedProcess, OutdatedReport, PackageInfo, ProcessState } from './outdated-model.js';
import { shortBuildId } from '../common/format.js';

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
const pkg = (p: PackageInfo | undefined) => (p ? ` (${[p.name, p.version].filter(Boolean).join(' ')})` : '');
const shq = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

const HEADINGS: Record<ProcessState, string> = {
  patched: 'patched: the on-disk build is live',
  patchable: 'patchable',
  refused: 'refused',
  inaccessible: 'inaccessible',
};

export function renderOutdated(r: OutdatedReport): string {
  const lines: string[] = [];
  if (r.libraries.length === 0) lines.push('no process runs a shared library that was replaced on disk');
  else
    lines.push(
      `${count(r.summary.processes, 'process runs', 'processes run')} ${count(r.libraries.length, 'shared library', 'shared libraries')} replaced on disk`,
    );
  for (const lib of r.libraries) {
    lines.push(
      '',
      `${lib.path}${lib.soname ? ` [${lib.soname}]` : ''}: on disk build ${shortBuildId(lib.onDisk.buildId)}${pkg(lib.onDisk.package)}`,
    );
    const groups = new Map<string, OutdatedProcess[]>();
    for (const p of lib.processes) {
      const key = `${p.running.buildId ?? ''}|${p.state}`;
      groups.set(key, [...(groups.get(key) ?? []), p]);
    }
    for (const procs of groups.values()) {
      const first = procs[0]!;
      lines.push(
        `  running build ${shortBuildId(first.running.buildId)}${pkg(first.running.package)}: ${HEADINGS[first.state]}`,
      );
      for (const p of procs)
        lines.push(
          `    ${String(p.pid).padStart(7)}  ${p.command}${p.tracedBy ? `  (traced by pid ${p.tracedBy}: ulp-trigger can patch it once that tracer detaches)` : ''}`,
        );
      if (first.state === 'patchable') {
        lines.push(
          `    to patch: cp ${first.mapFiles} old.so && ulp-pack old.so ${shq(lib.path)} -o fix.ulp && ulp-trigger --all fix.ulp`,
        );
        lines.push(`    or every patchable process at once: ulp-trigger --outdated --apply`);
      }
      const reasons = new Map<string, string>();
      for (const p of procs)
        for (const x of p.reasons ?? [])
          reasons.set(
            `${x.code}${x.message}`,
            `${x.category ? `${x.category}: ` : ''}${x.message} [${x.code}]`,
          );
      if (reasons.size) {
        lines.push(`    ${first.state === 'refused' ? 'refused because' : 'because'}:`);
        for (const text of [...reasons.values()].slice(0, 8)) lines.push(`      ${text}`);
        if (reasons.size > 8) lines.push(`      ... ${reasons.size - 8} more (--json lists them all)`);
        if (first.state === 'refused') lines.push('    restart these processes to run the new build');
      }
    }
  }
  if (r.libraries.length) {
    const s = r.summary;
    lines.push(
      '',
      `summary: ${s.patched} patched, ${s.patchable} patchable, ${s.refused} refused, ${s.inaccessible} inaccessible (one per process and library)`,
    );
    if (s.patchable + s.refused + s.inaccessible === 0)
      lines.push('nothing left to do: every one of these processes runs the build now on disk');
  }
  if (r.uninspected) {
    const why =
      process.geteuid?.() === 0
        ? 'they belong to an outer container or a security module guards them'
        : 'run as root to include them';
    lines.push(
      `${count(r.uninspected, 'process', 'processes')} could not be inspected (no permission); ${why}`,
    );
  }
  return lines.join('\n') + '\n';
}
