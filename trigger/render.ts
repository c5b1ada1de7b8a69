/** Text output of ulp-trigger; `--json` prints the same objects instead. */
import type { RunResult } from './apply.js';
import type { PackageInfo } from '../patches/index.js';
import type { StatusReport } from './status.js';
import { forkSummary } from '../runtime/loader/index.js';
import type { AllResult, Match, ProcessOutcome } from './all.js';
import { hex, shortBuildId } from '../common/format.js';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : word.endsWith('s') ? 'es' : 's'}`;

export function renderRun(r: RunResult): string {
  const head = {
    applied: `applied patch ${r.patchId.slice(0, 12)} to process ${r.pid}`,
    'applied-partly': `patch ${r.patchId.slice(0, 12)} is live in process ${r.pid} but NOT fully applied: old code of changed functions is still reachable (below)`,
    reverted: `reverted patch ${r.patchId.slice(0, 12)} in process ${r.pid}`,
    'reverted-partly': `patch ${r.patchId.slice(0, 12)} is reverted in process ${r.pid} but patched code is still reachable (below)`,
    'already-applied': `patch ${r.patchId.slice(0, 12)} is already applied in process ${r.pid}: nothing to do`,
    'runs-new-build': `process ${r.pid} runs the new build of patch ${r.patchId.slice(0, 12)} already (loaded at start, not patched): nothing to do`,
    'not-applied': `patch ${r.patchId.slice(0, 12)} is not applied in process ${r.pid}: nothing to revert`,
    'dry-run': `dry run: patch ${r.patchId.slice(0, 12)} ${r.which === 'forward' ? 'can be applied to' : 'can be reverted in'} process ${r.pid}; nothing was changed`,
  }[r.outcome];
  const lines = [head];
  if (r.package) lines.push(`  ${packageText(r.package)}`);
  if (r.downgrade)
    lines.push(
      "  DOWNGRADE: the bundle's new build looked older than its old one (packed with --allow-downgrade)",
    );
  const s = r.switch;
  if (!s) {
    lines.push(`  ${r.soname}: live build ${shortBuildId(r.liveBefore)}`);
    return lines.join('\n') + '\n';
  }
  lines.push(
    `  ${r.soname}: build ${shortBuildId(s.fromBuildId)} -> ${shortBuildId(s.toBuildId)}${r.note ? ` (${r.note})` : ''}`,
  );
  if (s.staged) {
    const where = s.targetBase !== undefined ? ` at ${hex(s.targetBase)}` : '';
    lines.push(
      `  ${r.outcome === 'dry-run' ? 'would map' : 'mapped'} the build${where}: ${plural(s.relocations, 'relocation')}${s.ifuncs ? `, ${plural(s.ifuncs, 'IFUNC resolver')} run` : ''}`,
    );
  } else lines.push('  the build was already mapped in the process: nothing to stage');
  if (s.dataRefs) {
    const d = s.dataRefs;
    const dry = r.outcome === 'dry-run';
    if (d.mode === 'one-address')
      lines.push(
        `  its code ${dry ? 'would address' : 'addresses'} the library's live data directly: ${plural(d.code, 'code reference')} rewritten, ${plural(d.words, 'relocated word')}`,
      );
  }
  if (r.aliasing) lines.push(`  warning (--allow-aliasing): ${r.aliasing.reason}`);
  if (s.unwind) {
    const u = s.unwind;
    const verb = r.outcome === 'dry-run' ? 'would register' : 'registered';
    if (u.registered)
      lines.push(
        `  ${verb} its unwind tables with libgcc_s.so.1${u.loadedUnwinder ? `, ${r.outcome === 'dry-run' ? 'loading' : 'which it loaded into the process'} first` : ''}`,
      );
    else
      lines.push(
        `  warning: its unwind tables are not registered (${u.reason}): a C++ exception or pthread_cancel that unwinds through its frames will fail`,
      );
  }
  if (s.newImports.length)
    lines.push(
      `  new imports: ${s.newImports.map((i) => `${i.name}${i.version ? '@' + i.version : ''} (${i.from})`).join(', ')}`,
    );
  const verb = r.outcome === 'dry-run' ? 'would relink' : 'relinked';
  lines.push(
    `  ${verb} ${plural(s.rewritten, 'slot')}, bound ${plural(s.lazyBound, 'lazy slot')}${s.aliasedNow ? '; shared the writable data with the old build' : ''}`,
  );
  if (s.condition)
    lines.push(
      `  condition held: no thread inside ${s.condition.inactive.join(', ')} at the switch (every call chain walked${s.condition.attempts > 1 ? `; ${s.condition.attempts} pauses` : ''})`,
    );
  const p = s.pointers;
  if (p.retargeted || p.overwritten) {
    lines.push(
      `  ${r.outcome === 'dry-run' ? 'would retarget' : 'retargeted'} ${plural(p.retargeted, 'function pointer')} in the library's data${p.overwritten ? `; left ${p.overwritten} the program set itself` : ''}`,
    );
  }
  const rd = s.redirects;
  if (rd.active || rd.written || rd.restored) {
    const verb = r.outcome === 'dry-run' ? 'would redirect' : 'redirected';
    lines.push(
      `  ${verb} ${rd.active} function ${rd.active === 1 ? 'entry' : 'entries'} of builds that are not live to the live one (${rd.written} written, ${rd.restored} restored)`,
    );
  }
  if (rd.uncovered.length) {
    lines.push(
      `  ${plural(rd.uncovered.length, 'changed function')} of builds that are not live ${rd.uncovered.length === 1 ? 'stays' : 'stay'} reachable through pointers taken before the switch:`,
    );
    for (const u of rd.uncovered.slice(0, 20))
      lines.push(
        `    ${u.fn.name ?? `function at ${u.fn.start}`} in build ${shortBuildId(u.fn.build)}: ${u.reason}`,
      );
    if (rd.uncovered.length > 20) lines.push(`    … and ${rd.uncovered.length - 20} more (--json lists all)`);
  }
  const left = s.counts.unmatched + s.counts.missing;
  if (left)
    lines.push(
      `  ${plural(left, 'slot')} still point at other builds (IFUNC results or symbols the target lacks); --status lists old references`,
    );
  const all = s.pauses.filter((p) => p.kind === 'all');
  const borrow = s.pauses.filter((p) => p.kind === 'borrow');
  if (all.length) {
    const worst = all.reduce((a, b) => (b.ms > a.ms ? b : a));
    lines.push(
      `  process paused (all ${plural(worst.threads, 'thread')}) for ${worst.ms.toFixed(2)} ms${borrow.length ? `; staging borrowed one thread for ${borrow.reduce((n, p) => n + p.ms, 0).toFixed(1)} ms` : ''}`,
    );
  }
  return lines.join('\n') + '\n';
}

/** "package libssl3 3.0.19-1~deb12u2 -> 3.0.20-1~deb12u2, fixes CVE-2026-1234". */
export function packageText(p: PackageInfo): string {
  const versions = p.fromVersion || p.toVersion ? ` ${p.fromVersion ?? '?'} -> ${p.toVersion ?? '?'}` : '';
  const fixes = p.fixes?.length ? `, fixes ${p.fixes.join(', ')}` : '';
  return `package ${p.name ?? '(unnamed)'}${versions}${fixes}`;
}

export function renderStatus(st: StatusReport): string {
  const lines = [`process ${st.pid}: ${plural(st.objects.length, 'object')} loaded`];
  const width = Math.min(48, Math.max(...st.objects.map((o) => (o.soname ?? o.name).length)));
  for (const o of st.objects)
    lines.push(`  ${(o.soname ?? o.name).padEnd(width)}  ${shortBuildId(o.buildId)}  ${hex(o.base)}`);
  if (st.libraries.length === 0) lines.push('no library of this process has been patched');
  for (const lib of st.libraries) {
    lines.push(
      '',
      `${lib.soname}: live build ${shortBuildId(lib.live)}${lib.mixed ? ' — INTERRUPTED SWITCH: slots point at more than one build; re-run the apply or revert to complete it' : ''}`,
    );
    for (const b of lib.builds) {
      const origin =
        b.source === 'loader'
          ? 'loaded by ld.so'
          : `mapped by ulp (patch ${b.patchId?.slice(0, 12)}, ${b.role} build)`;
      lines.push(
        `  ${b.live ? '*' : ' '} ${shortBuildId(b.buildId)}  ${hex(b.base)}  ${origin}, ${plural(b.slots, 'slot')} point here`,
      );
    }
    for (const p of lib.patches) {
      const about = [
        ...(p.package ? [packageText(p.package)] : []),
        ...(p.downgrade ? ['a DOWNGRADE, packed with --allow-downgrade'] : []),
      ];
      lines.push(
        `  patch ${p.patchId.slice(0, 12)}: ${p.state}${about.length ? ` (${about.join('; ')})` : ''}`,
      );
    }
    lines.push(`  writable data ${lib.aliased ? 'shared by all builds' : 'not shared yet'}`);
    const oc = lib.oldCode;
    if (oc.known)
      lines.push(
        `  old code: ${oc.redirected} function ${oc.redirected === 1 ? 'entry' : 'entries'} of builds that are not live jump to the live build; ${oc.reachable.length ? `${oc.reachable.length} changed ${oc.reachable.length === 1 ? 'function stays' : 'functions stay'} reachable:` : 'no changed function is reachable'}`,
      );
    else
      lines.push(
        '  old code: unknown (no redirect journal for the live build); changed functions of other builds may be reachable through old pointers',
      );
    for (const u of oc.reachable.slice(0, 10))
      lines.push(
        `    ${u.fn.name ?? `function at ${u.fn.start}`} in build ${shortBuildId(u.fn.build)}: ${u.reason}`,
      );
    const o = lib.oldReferences;
    lines.push(
      `  old references: ${plural(o.slots, 'slot')}, ${plural(o.dataPointers, 'data pointer')} into code of builds that are not live`,
    );
    for (const s of o.samples.slice(0, 5))
      lines.push(`    ${s.holder} @ ${hex(s.at)} -> ${hex(s.value)} (build ${shortBuildId(s.buildId)})`);
  }
  if (st.libraries.length || st.fork.installed) lines.push('', forkSummary(st.fork));
  for (const a of st.abandoned)
    lines.push(
      '',
      `abandoned staging of ${a.name} at ${hex(a.base)}: a trigger stopped before it finished; nothing uses it`,
    );
  lines.push('', `memory mapped by ulp: ${(st.ulpMappedBytes / 1024).toFixed(0)} KiB`);
  return lines.join('\n') + '\n';
}

/**
 * `--all --dry-run`'s list of the processes found, read from /proc before
 * any is attached to: pid, command, user, systemd unit, and which of the
 * bundle's builds it runs.
 */
export function renderMatches(ms: readonly Match[]): string {
  const lines = [`${plural(ms.length, 'process')} found (from /proc, none attached to yet):`];
  for (const m of ms)
    lines.push(
      `  ${String(m.pid).padStart(7)}  ${(m.comm ?? '?').padEnd(15)}  ${(m.user ?? '?').padEnd(10)}  ${(m.unit ?? '-').padEnd(24)}  ${m.build} build ${shortBuildId(m.buildId)}`,
    );
  if (ms.length) lines.push('dry run of each (attaches to it, changes nothing):');
  return lines.join('\n') + '\n';
}

/** One process of `--all`, as it finishes (text output streams these lines). */
export function renderAllLine(p: ProcessOutcome): string {
  if (p.ok)
    return `  ${String(p.pid).padStart(7)}  ${p.result.outcome}${p.result.pauseMs !== undefined ? ` (paused ${p.result.pauseMs.toFixed(2)} ms)` : ''}\n`;
  return `  ${String(p.pid).padStart(7)}  FAILED [${p.error.code}] ${p.error.message}\n`;
}

/** What follows the process lines of `--all`: the counts, what was left alone, and an interruption. */
export function renderAllSummary(r: AllResult): string {
  const lines: string[] = [];
  const failed = r.processes.filter((p) => !p.ok).length;
  const found = r.processes.length + (r.interrupted?.notAttempted.length ?? 0);
  lines.push(
    `${plural(found, 'process')} with ${r.soname} build ${shortBuildId(r.fromBuildId)} or ${shortBuildId(r.toBuildId)} loaded: ${r.processes.length - failed} ok, ${failed} failed${r.interrupted ? `, ${r.interrupted.notAttempted.length} not attempted` : ''}; ${r.totalMs.toFixed(0)} ms in all`,
  );
  if (r.interrupted) {
    const left = r.interrupted.notAttempted;
    lines.push(
      `stopped by ${r.interrupted.signal} after ${plural(r.processes.length, 'process')}: each process above is done and none was left half done; not attempted (untouched): ${left.slice(0, 50).join(', ')}${left.length > 50 ? `, and ${left.length - 50} more (--json lists all)` : ''}`,
    );
  }
  if (r.skipped.length)
    lines.push(
      `left alone: ${r.skipped.map((x) => x.pid).join(', ')} (ancestors of this ulp-trigger, waiting for it; patch them by pid if needed)`,
    );
  if (r.inaccessible) {
    // Root is refused too by processes of an outer container (a sandbox's supervisor) or ones a security module guards.
    const why =
      process.geteuid?.() === 0
        ? 'they belong to an outer container or a security module guards them'
        : 'run as root to include them';
    lines.push(`${plural(r.inaccessible, 'process')} could not be inspected (no permission); ${why}`);
  }
  return lines.join('\n') + '\n';
}

export function renderAll(r: AllResult): string {
  const pkg = r.processes.map((p) => (p.ok ? p.result.package : undefined)).find((x) => x !== undefined);
  return (pkg ? packageText(pkg) + '\n' : '') + r.processes.map(renderAllLine).join('') + renderAllSummary(r);
}
