/**
 * The text forms of ulp-pack's output: a pack result and an inspected
 * bundle. (--json prints the underlying objects instead.)
 */
import type { PackageInfo } from './package-info.js';
import type { DowngradeAssessment } from './version/evidence.js';
import type {
  BuildEntry,
  Bundle,
  BundleDataRefs,
  Finding,
  Report,
  SignatureStatus,
} from '../patches/index.js';
import { CATEGORY_NAMES } from '../patches/verdicts.js';
import { blockingFindings, removedExports } from '../patches/direction.js';
import { shortBuildId } from '../common/format.js';

/** The category table, then every finding grouped by severity. */
export function renderReport(report: Report, title: string): string {
  const lines = [`${title}: ${report.verdict.toUpperCase()}`];
  for (const name of CATEGORY_NAMES) {
    const c = report.categories[name];
    // Bundles written before a category existed (format 1.0 has no layout check) say so rather than pass silently.
    lines.push(
      c
        ? `  ${name.padEnd(9)} ${c.verdict.padEnd(12)} ${c.summary}`
        : `  ${name.padEnd(9)} ${'not checked'.padEnd(12)} the bundle predates this check; pack it again`,
    );
  }
  const groups: Array<[Finding['severity'], string]> = [
    ['error', 'refused because'],
    ['warning', 'warnings'],
    ['info', 'changes'],
  ];
  for (const [severity, heading] of groups) {
    const found = CATEGORY_NAMES.flatMap((name) =>
      (report.categories[name]?.findings ?? [])
        .filter((f) => f.severity === severity)
        .map((f) => ({ name, f })),
    );
    if (found.length === 0) continue;
    lines.push(`  ${heading}:`);
    for (const { name, f } of found) lines.push(`    ${name}: ${f.message} [${f.code}]`);
  }
  // What ulp-trigger checks in each process before it switches (the bundle is then format 2).
  for (const c of report.conditions ?? []) {
    const names = c.functions.map((f) => f.name ?? f.start);
    const shown =
      names.length > 8 ? `${names.slice(0, 8).join(', ')} and ${names.length - 8} more` : names.join(', ');
    lines.push(`  condition: no thread inside ${shown} at the switch; ${c.reason}`);
  }
  return lines.join('\n');
}

export interface PackSummary {
  soname: string;
  oldPath: string;
  newPath: string;
  forward: Report;
  reverse: Report;
  output: string | undefined;
  patchId: string | undefined;
  size: number | undefined;
  check: boolean;
  datarefs?: BundleDataRefs | undefined;
  packageInfo?: PackageInfo | undefined;
  versions?: DowngradeAssessment;
}

/** One line about the package, e.g. "package libssl3 3.0.19-1~deb12u2 -> 3.0.20-1~deb12u2, fixes CVE-2026-1234". */
export function packageLine(p: PackageInfo | undefined): string | undefined {
  if (!p) return undefined;
  const versions = p.fromVersion || p.toVersion ? ` ${p.fromVersion ?? '?'} -> ${p.toVersion ?? '?'}` : '';
  const fixes = p.fixes?.length ? `${p.name || versions ? ', ' : ''}fixes ${p.fixes.join(', ')}` : '';
  return `package ${p.name ?? '(unnamed)'}${versions}${fixes}`;
}

function versionLines(v: DowngradeAssessment | undefined): string[] {
  if (!v || v.evidence.length === 0) return [];
  const lines = [
    `versions: the new build looks ${v.downgrade ? 'OLDER (allowed by --allow-downgrade)' : 'newer'}`,
  ];
  for (const e of v.evidence) lines.push(`  ${e.source}: ${e.what}: ${e.old} -> ${e.new} (${e.order})`);
  return lines;
}

export function renderPack(s: PackSummary): string {
  const f = s.forward;
  const head = `${s.soname}: ${s.oldPath} (build-id ${shortBuildId(f.from.buildId)}, ${f.from.relro} RELRO${f.from.stripped ? ', stripped' : ''}) -> ${s.newPath} (build-id ${shortBuildId(f.to.buildId)}, ${f.to.relro} RELRO${f.to.stripped ? ', stripped' : ''})`;
  const pkg = packageLine(s.packageInfo);
  const parts = [
    head,
    ...(pkg ? [pkg] : []),
    ...versionLines(s.versions),
    '',
    renderReport(f, 'update (old -> new)'),
  ];
  if (f.verdict !== 'incompatible') {
    // The reverse report is in the bundle (see --inspect); here only its verdict and what would stop a revert.
    const errors = CATEGORY_NAMES.flatMap((n) =>
      (s.reverse.categories[n]?.findings ?? [])
        .filter((x) => x.severity === 'error')
        .map((x) => `    ${n}: ${x.message} [${x.code}]`),
    );
    const perProcess = errors.length > 0 && blockingFindings(s.reverse).length === 0;
    parts.push(
      '',
      `revert (new -> old): ${s.reverse.verdict.toUpperCase()}${perProcess ? ' only where a loaded object is bound to an export it removes' : ''}`,
      ...errors,
    );
    if (errors.length) parts.push(...revertRule(s.reverse));
  }
  parts.push('');
  if (f.verdict === 'incompatible') parts.push('result: incompatible: no bundle written');
  else if (s.check) parts.push(`result: ${f.verdict} (--check: nothing written)`);
  else
    parts.push(
      ...renderDataRefs(s.datarefs),
      '',
      `result: ${f.verdict}: wrote ${s.output} (patch ${s.patchId}, ${s.size} bytes)`,
    );
  return parts.join('\n') + '\n';
}

/**
 * What ulp-trigger --revert does with a reverse direction that has errors,
 * in the words of its own rule (trigger/apply.ts): export removals are
 * checked in each process, anything else refuses the revert everywhere.
 */
export function revertRule(reverse: Report): string[] {
  const blocking = blockingFindings(reverse);
  if (blocking.length > 0)
    return [
      '  ulp-trigger --revert refuses this bundle in every process (TRIGGER_INCOMPATIBLE): restart processes to go back',
    ];
  const removed = removedExports(reverse);
  return [
    `  ulp-trigger --revert checks each process: it refuses (TRIGGER_EXPORT_BOUND, exit 2, process untouched) one in which a loaded`,
    `  object is bound to ${removed.length === 1 ? 'this export' : `one of these ${removed.length} exports`}, naming the object and symbol, and reverts the others;`,
    '  the same holds for reverting any bundle below this one in a stack. An address taken with dlsym cannot be seen.',
  ];
}

export function signatureText(sig: SignatureStatus): string {
  if (sig.state === 'unsigned') return 'unsigned';
  if (sig.state === 'verified') return `signed by key ${sig.keyId}, verified`;
  return `signed by key ${sig.keyId}, NOT verified (give --key to check it)`;
}

export function renderInspect(path: string, bundle: Bundle): string {
  const m = bundle.manifest;
  const build = (label: string, b: BuildEntry) =>
    `  ${label}  build-id ${b.buildId}  sha256 ${b.sha256}  ${b.size} bytes`;
  const lines = [
    `${path}: patch ${m.patchId} for ${m.soname}`,
    `  format ${m.format}, written by ${m.tool.name} ${m.tool.version} at ${m.createdAt}`,
    build('old', m.builds.old),
    build('new', m.builds.new),
    `  signature: ${signatureText(bundle.signature)}`,
    ...(m.package ? [`  ${packageLine(m.package)}`] : []),
    ...(m.downgrade
      ? ['  DOWNGRADE: the new build looked older than the old one; written with --allow-downgrade']
      : []),
    '',
    renderReport(m.forward.report, 'update (old -> new)'),
    '',
    renderReport(m.reverse.report, 'revert (new -> old)'),
    ...(m.reverse.verdict === 'incompatible' ? revertRule(m.reverse.report) : []),
  ];
  lines.push('', ...renderDataRefs(m.datarefs));
  const fns = m.forward.report.functions;
  if (fns.changed.length || fns.added.length || fns.removed.length) {
    lines.push(
      '',
      `  functions: ${fns.changed.length} changed, ${fns.added.length} added, ${fns.removed.length} removed`,
    );
  }
  return lines.join('\n') + '\n';
}

/** What each build's data-reference map covers, and what ulp-trigger will do about what it does not. */
export function renderDataRefs(d: BundleDataRefs | undefined): string[] {
  if (!d)
    return [
      'data references: none recorded (a format 1.0 bundle): ulp-trigger stages its builds only with --allow-aliasing',
    ];
  const lines = [
    'data references (rewritten when a build is staged, so that its code addresses the live data):',
  ];
  for (const label of ['new', 'old'] as const) {
    const m = d[label];
    if (!m) {
      lines.push(`  ${label} build: no writable data`);
      continue;
    }
    const c = m.coverage;
    lines.push(
      `  ${label} build: ${m.code.count} code references, ${m.words.count} relocated words; ${c.decoded} code bytes decoded, ${c.padding} padding, ${c.scanned} scanned, ${c.tables} in tables`,
    );
    if (c.proven) lines.push('    every executable byte is accounted for');
    else {
      lines.push(
        `    NOT proven: ulp-trigger refuses to stage this build without --allow-aliasing; uncovered:`,
      );
      for (const u of c.uncovered.slice(0, 10)) lines.push(`      [${u.start}, ${u.end}): ${u.reason}`);
      if (c.uncovered.length > 10)
        lines.push(`      and ${c.uncovered.length - 10} more (ulp-pack --inspect --json lists them)`);
    }
  }
  return lines;
}
