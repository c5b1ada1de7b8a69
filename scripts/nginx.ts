/**
 * `npm run nginx`: Debian's nginx under load while its libz is patched, its
 * workers re-forked by the patched master, and the patch reverted
 * (scenario.ts). Installs nginx-light and wrk with apt-get when they are
 * missing (without starting the distribution's nginx service), builds the
 * zlib fixtures (scripts/real-libs/build-zlib.sh), prints a summary, and
 * exits 0 when every check held, 1 when one did not, 77 when it cannot run
 * here. Options:
 *
 *   --seconds N   load per phase (default 10; four phases)
 *   --workers N   nginx worker processes (default 4)
 *   --clients N   verifying client loops (default 8)
 *   --no-install  fail instead of installing missing packages
 *   --json        print the result as JSON
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { NGINX, runScenario, zlibBuilds, type ScenarioResult } from '../lab/nginx/scenario.js';
import { handleArgs } from '../lab/script-args.js';

const CANNOT_RUN = 77;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** apt-get install, with a policy-rc.d that keeps the packages' own service from starting meanwhile. */
function install(packages: string[]): void {
  console.log(`installing ${packages.join(' ')} with apt-get`);
  const policy = '/usr/sbin/policy-rc.d';
  const ours = !existsSync(policy);
  if (ours) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], {
      stdio: 'inherit',
      env,
    });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
      r = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], {
        stdio: 'inherit',
        env,
      });
    }
    if (r.status !== 0) throw new Error(`apt-get install ${packages.join(' ')} failed`);
  } finally {
    if (ours) rmSync(policy, { force: true });
  }
}

function summary(r: ScenarioResult): string {
  const short = (id: string | undefined) => (id ?? 'none').slice(0, 12);
  const pauses = r.triggers.map((t) => t.pauseMs ?? 0);
  const lines = [
    '',
    `nginx fork run: ${r.ok ? 'PASSED' : 'FAILED'} (${r.seconds.toFixed(0)} s, ${r.nginxVersion})`,
    `  requests verified (gzip body inflated and compared): ${r.requests.verified}; failed ${r.requests.failed}; broken ${r.requests.errors}; asked again after one timeout ${r.requests.slow}`,
    ...(r.wrk
      ? [
          `  wrk (keep-alive load, not verified): ${r.wrk.requests} requests in ${r.wrk.seconds.toFixed(1)} s; socket errors ${r.wrk.socketErrors} (${r.wrk.readErrors} connections closed by the reloads); non-2xx ${r.wrk.non2xx}`,
        ]
      : []),
    `  ulp-trigger runs: ${r.triggers.length} (${r.triggers.filter((t) => t.outcome === 'applied').length} applied, ${r.triggers.filter((t) => t.outcome === 'reverted').length} reverted); pause per process ${Math.min(...pauses).toFixed(2)}-${Math.max(...pauses).toFixed(2)} ms`,
    `  workers forked by the patched master: ${r.afterPatch.map((w) => `${w.pid} (live ${short(w.liveBuildId)}, data memfd inode ${w.dataInodes[0] ?? '-'} x${w.dataInodes.length})`).join(', ')}; master's inode ${r.masterDataInode ?? '-'}`,
    `  workers forked after the revert: ${r.afterRevert.map((w) => `${w.pid} (live ${short(w.liveBuildId)})`).join(', ')}`,
    `  forks seen by the master's prepare handler: ${r.forksSeenByMaster}`,
    `  crashed workers (error.log): ${r.crashes.length}`,
    ...r.problems.map((p) => `  PROBLEM: ${p}`),
  ];
  return lines.join('\n');
}

async function main(): Promise<number> {
  handleArgs(import.meta.url, {
    values: ['--seconds', '--workers', '--clients'],
    flags: ['--no-install', '--json'],
  });
  if (process.getuid?.() !== 0) {
    console.log('cannot run here: needs root (nginx workers switch users; the trigger traces them)');
    return CANNOT_RUN;
  }
  const missing = [existsSync(NGINX) ? undefined : 'nginx-light', which('wrk') ? undefined : 'wrk'].filter(
    (p): p is string => p !== undefined,
  );
  if (missing.length) {
    if (process.argv.includes('--no-install')) {
      console.log(`cannot run here: missing ${missing.join(' ')} (apt-get install ${missing.join(' ')})`);
      return CANNOT_RUN;
    }
    install(missing);
  }
  const zlib = zlibBuilds();
  if (typeof zlib === 'string') {
    console.log(`cannot run here: ${zlib}`);
    return CANNOT_RUN;
  }
  const result = await runScenario({
    zlib,
    phaseSeconds: arg('--seconds', 10),
    workers: arg('--workers', 4),
    clients: arg('--clients', 8),
    wrk: which('wrk'),
    log: (l) => console.log(l),
  });
  console.log(process.argv.includes('--json') ? JSON.stringify(result, null, 2) : summary(result));
  return result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`nginx run failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
