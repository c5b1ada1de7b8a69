/**
 * The soak report: every scenario's results gathered in one object (written
 * as JSON) and rendered as markdown tables. Pure: soak.ts collects, this
 * module only judges and formats.
 */
import type { CorpusResult } from './corpus.js';
import type { DeathResult, EnvResult } from './environments.js';
import { KNOWN_BUGS, knownCorpus, knownDeath, knownEnv, knownFault, knownHeld } from './known-bugs.js';
import type { FaultAttempt, FaultSummary, MixedCheck, SoakResult } from './scenarios.js';

export interface SoakReport {
  date: string;
  machine: {
    cpus: number;
    model: string;
    kernel: string;
    node: string;
    loadAverage: { start: number[]; end: number[] };
  };
  options: Record<string, unknown>;
  seconds: number;
  soak: SoakResult[];
  faults: { attempts: FaultAttempt[]; summary: FaultSummary[] };
  mixed: MixedCheck[];
  corpus: { results: CorpusResult[]; targets: number; health: string[] } | undefined;
  deaths: DeathResult[];
  environments: EnvResult[];
}

export interface Check {
  scenario: string;
  check: string;
  result: string;
  /** 'pass', 'FAIL', or 'FAIL (known bug ID)' when every failure is explained by known bugs. */
  verdict: string;
  ok: boolean;
}

const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');

function verdict(failures: number, known: string[]): { verdict: string; ok: boolean } {
  if (failures === 0) return { verdict: 'pass', ok: true };
  const ids = [...new Set(known)];
  return {
    verdict:
      known.length === failures
        ? `FAIL (known: ${ids.join(', ')})`
        : `FAIL${ids.length ? ` (incl. known: ${ids.join(', ')})` : ''}`,
    ok: false,
  };
}

/** One line per scenario: what was checked, what was seen, pass or fail. */
export function checks(r: SoakReport): Check[] {
  const out: Check[] = [];
  for (const s of r.soak) {
    const growth = s.memory.end.vmRssKiB - s.memory.afterFirst.vmRssKiB;
    out.push({
      scenario: `soak ${s.relro} RELRO, ${s.pattern}`,
      check: '8 threads check every result while apply/revert run back to back',
      result: `${s.switches} switches in ${s.seconds.toFixed(0)} s, ${s.calls.k11 + s.calls.k12 + s.calls.k13} checked calls, ${s.health.last?.bad ?? '?'} wrong, target ${s.health.alive ? 'alive' : 'DEAD'}; RSS ${s.memory.before.vmRssKiB} -> ${s.memory.afterFirst.vmRssKiB} -> ${s.memory.end.vmRssKiB} KiB (${growth >= 0 ? '+' : ''}${growth} after the first cycle), ulp mappings ${kib(s.ulpMappedBytes.afterFirst)} -> ${kib(s.ulpMappedBytes.end)}`,
      ...verdict(s.problems.length, []),
    });
  }
  if (r.faults.attempts.length) {
    for (const sum of r.faults.summary) {
      const xs = r.faults.attempts.filter((a) => a.signal === sum.signal);
      const failed = xs.filter((a) => a.problems.length > 0);
      const known = failed.map((a) => knownFault(a)?.id).filter((x): x is string => !!x);
      out.push({
        scenario: `trigger ${sum.signal === 'SIGKILL' ? 'killed' : 'interrupted'} (${sum.signal})`,
        check:
          sum.signal === 'SIGKILL'
            ? 'the target keeps running; re-running completes the switch'
            : 'patched or unpatched, never half (--status); re-running completes it',
        result: `${sum.survivors}/${sum.attempts} targets survived (${sum.inSession} signals landed in-session); after the signal: ${sum.endedFrom} unpatched, ${sum.endedGoal} patched, ${sum.mixedSeen} mixed, ${sum.abandonedSeen} with an abandoned staging; re-run completed ${sum.rerunCompleted}/${sum.attempts}`,
        ...verdict(failed.length, known),
      });
    }
    const held = r.faults.attempts.filter((a) => a.heldSignal !== undefined);
    if (held.length) {
      const lost = held.filter((a) => a.heldSignal === 'lost');
      out.push({
        scenario: 'held SIGINT/SIGTERM acted on',
        check: 'a signal held during the run ends the command once it let go of the target (docs/RUNTIME.md)',
        result: `${held.length - lost.length}/${held.length} commands ended by the signal they were sent; ${[...countBy(lost.map((a) => a.end))].map(([e, n]) => `${e} ${n}`).join(', ') || 'none ran on'}`,
        ...verdict(
          lost.length,
          lost.map((a) => knownHeld(a)?.id).filter((x): x is string => !!x),
        ),
      });
    }
  }
  if (r.mixed.length) {
    const failed = r.mixed.filter((m) => m.problems.length > 0);
    out.push({
      scenario: 'interrupted switch (slots half rewritten)',
      check: '--status says mixed; re-running apply or revert completes it',
      result: r.mixed
        .map(
          (m) =>
            `${m.relro}/${m.direction}: ${m.rewound} slots rewound, mixed=${m.statusMixed.mixed}, re-run ${m.rerun}, then ${m.final.live}`,
        )
        .join('; '),
      ...verdict(failed.length, []),
    });
  }
  if (r.corpus) {
    const run = r.corpus.results.filter((c) => !c.note);
    const failed = run.filter((c) => !c.ok);
    const known = failed.map((c) => knownCorpus(c)?.id).filter((x): x is string => !!x);
    out.push({
      scenario: 'bad input',
      check: 'each refused with its specific code and documented exit; nothing written; the target unchanged',
      result: `${run.length - failed.length}/${run.length} refused as expected (${new Set(run.map((c) => c.group)).size} groups), ${r.corpus.targets - 1} target(s) replaced after a change${r.corpus.health.length ? `; target: ${r.corpus.health.join('; ')}` : ''}`,
      ...verdict(failed.length + r.corpus.health.length, known),
    });
  }
  if (r.deaths.length) {
    const failed = r.deaths.filter((d) => d.problems.length > 0);
    const known = failed.map((d) => knownDeath(d)?.id).filter((x): x is string => !!x);
    const codes = countBy(
      r.deaths.map((d) => d.code ?? (d.end.startsWith('exit 0') ? 'finished first' : d.end)),
    );
    out.push({
      scenario: 'target dies during the trigger',
      check:
        'exit 4 with a code that says it exited; never a hang or an internal error (the time to notice is measured, not judged)',
      result: `${r.deaths.length - failed.length}/${r.deaths.length} clear; ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}; slowest ${Math.max(...r.deaths.map((d) => d.ms)).toFixed(0)} ms`,
      ...verdict(failed.length, known),
    });
  }
  for (const e of r.environments) {
    const bug = knownEnv(e);
    out.push({
      scenario: e.name,
      check: 'a clear error, nothing left behind',
      result: e.end,
      ...verdict(e.problems.length ? 1 : 0, bug ? [bug.id] : []),
    });
  }
  return out;
}

function countBy(xs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return new Map([...m].sort((a, b) => b[1] - a[1]));
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

/** The whole report in markdown: the verdict table, then the detail of each scenario and every failure. */
export function renderMarkdown(r: SoakReport): string {
  const cs = checks(r);
  const parts: string[] = [];
  parts.push(`# ulp soak, ${r.date}`);
  parts.push(
    `${r.machine.cpus} × ${r.machine.model}, Linux ${r.machine.kernel}, Node ${r.machine.node}; load average ${r.machine.loadAverage.start.map((x) => x.toFixed(2)).join(' ')} at the start, ${r.machine.loadAverage.end.map((x) => x.toFixed(2)).join(' ')} at the end; ${(r.seconds / 60).toFixed(1)} min`,
  );
  parts.push(
    table(
      ['scenario', 'checked', 'result', 'verdict'],
      cs.map((c) => [c.scenario, c.check, c.result, c.verdict]),
    ),
  );
  if (r.soak.length) {
    parts.push('## Soak');
    parts.push(
      table(
        [
          'run',
          'cycles',
          'switches',
          'pause median / worst (ms)',
          'command median / worst (ms)',
          'calls v1 / v2 / v3',
          'rounds',
          'wrong',
          'RSS KiB before / first / end',
          'mappings',
          'fds',
        ],
        r.soak.map((s) => [
          `${s.relro}/${s.pattern}`,
          String(s.cycles),
          String(s.switches),
          `${f1(s.pauses.median)} / ${f1(s.pauses.worst)}`,
          `${s.commandMs.median.toFixed(0)} / ${s.commandMs.worst.toFixed(0)}`,
          `${s.calls.k11} / ${s.calls.k12} / ${s.calls.k13}`,
          String(s.rounds),
          String(s.health.last?.bad ?? '?'),
          `${s.memory.before.vmRssKiB} / ${s.memory.afterFirst.vmRssKiB} / ${s.memory.end.vmRssKiB}`,
          `${s.memory.before.mappings} / ${s.memory.afterFirst.mappings} / ${s.memory.end.mappings}`,
          `${s.memory.before.fds} / ${s.memory.end.fds}`,
        ]),
      ),
    );
  }
  if (r.faults.attempts.length) {
    parts.push('## Trigger interrupted and killed');
    const rows: string[][] = [];
    const keys = new Map<string, FaultAttempt[]>();
    for (const a of r.faults.attempts) {
      const where = a.point.startsWith('at milestone')
        ? a.point.replace('at milestone ', '')
        : a.point.includes('attach')
          ? 'random, after attach'
          : 'random, after start';
      const k = `${a.signal}|${a.relro}|${a.kind}|${where}`;
      keys.set(k, [...(keys.get(k) ?? []), a]);
    }
    for (const [k, xs] of keys) {
      const [signal, relro, kind, where] = k.split('|') as [string, string, string, string];
      const failed = xs.filter((a) => a.problems.length > 0);
      const known = [...new Set(failed.map((a) => knownFault(a)?.id).filter(Boolean))];
      rows.push([
        signal,
        relro,
        kind,
        where,
        String(xs.length),
        String(xs.filter((a) => a.phase === 'in-session').length),
        String(xs.filter((a) => a.survived).length),
        [...countBy(xs.map((a) => (a.after.mixed ? 'mixed' : a.after.live)))]
          .map(([s, n]) => `${s} ${n}`)
          .join(', '),
        String(xs.length - failed.length),
        known.join(', '),
      ]);
    }
    parts.push(
      table(
        [
          'signal',
          'RELRO',
          'kind',
          'where',
          'attempts',
          'in session',
          'target survived',
          '--status after',
          'all checks held',
          'known bug',
        ],
        rows,
      ),
    );
    const residue = r.faults.attempts.filter((a) => a.residue.length > 0);
    if (residue.length)
      parts.push(
        `Residue after a SIGKILL (not a failure): ${residue.length} attempt(s) left an open memfd descriptor in the target, e.g. ${residue[0]!.residue[0]} (${residue[0]!.kind}, ${residue[0]!.point}).`,
      );
  }
  if (r.corpus) {
    parts.push('## Bad input');
    const groups = new Map<string, CorpusResult[]>();
    for (const c of r.corpus.results)
      if (!c.note) groups.set(`${c.group}|${c.tool}`, [...(groups.get(`${c.group}|${c.tool}`) ?? []), c]);
    parts.push(
      table(
        ['group', 'command', 'cases', 'refused as expected', 'codes seen (exit)'],
        [...groups].map(([k, xs]) => {
          const [group, tool] = k.split('|') as [string, string];
          return [
            group,
            tool,
            String(xs.length),
            String(xs.filter((x) => x.ok).length),
            [
              ...countBy(
                xs.map((x) =>
                  x.exit === null
                    ? 'no answer (killed)'
                    : `${x.code ?? (x.exit === 0 ? 'accepted' : x.exit === 2 && tool === 'ulp-pack' ? 'incompatible' : 'no code')} (${x.exit})`,
                ),
              ),
            ]
              .map(([c, n]) => (n > 1 ? `${c} ×${n}` : c))
              .join(', '),
          ];
        }),
      ),
    );
    const notes = r.corpus.results.filter((c) => c.note);
    if (notes.length) parts.push(notes.map((n) => `- ${n.name}`).join('\n'));
  }
  if (r.deaths.length) {
    parts.push('## The target dies during the trigger');
    const rows = new Map<string, DeathResult[]>();
    for (const d of r.deaths) {
      const where = d.point.startsWith('at milestone')
        ? d.point
        : d.point.includes('attach')
          ? 'random, after attach'
          : 'random, after start';
      rows.set(`${d.kind}|${where}`, [...(rows.get(`${d.kind}|${where}`) ?? []), d]);
    }
    parts.push(
      table(
        ['kind', 'killed', 'attempts', 'clear', 'answers', 'slowest (ms)'],
        [...rows].map(([k, xs]) => {
          const [kind, where] = k.split('|') as [string, string];
          return [
            kind,
            where,
            String(xs.length),
            String(xs.filter((x) => x.problems.length === 0).length),
            [...countBy(xs.map((x) => x.code ?? x.end))].map(([c, n]) => `${c} ${n}`).join(', '),
            Math.max(...xs.map((x) => x.ms)).toFixed(0),
          ];
        }),
      ),
    );
  }
  const failures: string[] = [];
  for (const s of r.soak) for (const p of s.problems) failures.push(`soak ${s.relro}/${s.pattern}: ${p}`);
  for (const a of r.faults.attempts)
    if (a.problems.length)
      failures.push(
        `${a.signal} ${a.relro} RELRO ${a.kind} ${a.point} (${a.phase}, ${a.end}; status after: ${a.after.mixed ? 'mixed' : a.after.live}${a.after.aliased ? '' : ', data not shared'}; re-run ${a.rerun})${tag(knownFault(a)?.id)}: ${a.problems.join('; ')}`,
      );
  const lost = r.faults.attempts.filter((a) => a.heldSignal === 'lost');
  if (lost.length)
    failures.push(
      `${lost.length} held SIGINT/SIGTERM never acted on: the commands ended ${[...new Set(lost.map((a) => a.end))].join(', ')}${tag(knownHeld(lost[0]!)?.id)}`,
    );
  for (const m of r.mixed)
    for (const p of m.problems) failures.push(`interrupted switch ${m.relro}/${m.direction}: ${p}`);
  if (r.corpus)
    for (const c of r.corpus.results)
      if (!c.ok)
        failures.push(
          `bad input ${c.tool} [${c.group}] ${c.name}${tag(knownCorpus(c)?.id)}: ${c.problems.join('; ')}`,
        );
  for (const d of r.deaths)
    if (d.problems.length) failures.push(`${d.name}${tag(knownDeath(d)?.id)}: ${d.problems.join('; ')}`);
  for (const e of r.environments)
    for (const p of e.problems) failures.push(`${e.name}${tag(knownEnv(e)?.id)}: ${p}`);
  if (failures.length) {
    parts.push(`## Failures (${failures.length})`);
    const shown = failures.slice(0, 60);
    parts.push(
      shown.map((f) => `- ${f}`).join('\n') +
        (failures.length > shown.length ? `\n- ... ${failures.length - shown.length} more in the JSON` : ''),
    );
  }
  const seen = KNOWN_BUGS.filter((b) => failures.some((f) => f.includes(`[known: ${b.id}]`)));
  if (seen.length) {
    parts.push('## Known bugs seen');
    parts.push(
      table(
        ['id', 'bug', 'where'],
        seen.map((b) => [b.id, b.title, b.where]),
      ),
    );
  }
  parts.push(
    cs.every((c) => c.ok)
      ? '**All checks held.**'
      : `**${cs.filter((c) => !c.ok).length} of ${cs.length} checks failed.**`,
  );
  return parts.join('\n\n') + '\n';
}

function tag(id: string | undefined): string {
  return id ? ` [known: ${id}]` : '';
}
