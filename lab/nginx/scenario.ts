/**
 * A forking server nobody here wrote, patched under load: Debian's nginx
 * (master + workers) serves gzip-compressed pages on loopback while the
 * libz.so.1 it uses is swapped for another build of it and back, and
 * `nginx -s reload` makes the patched master fork new workers. Used by
 * `npm run nginx` (scripts/nginx.ts, the long run) and by
 * test/system/trigger/nginx.test.ts (a short run in CI). Results: docs/FORK.md.
 *
 * What must hold: no failed request (every response a 200 whose gzip body
 * inflates to the page), no worker that died, and every worker forked after
 * the patch running the live build with its own private copy of libz's data
 * (`--status` from outside, and the inode of its `ulp:data:libz.so.1` memfd).
 *
 * Every process this starts is stopped and every file removed, whatever
 * happens; nothing outside its temporary folder is touched.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ROOT, runCli, runCliAsync, type Run } from '../cli.js';

export const NGINX = '/usr/sbin/nginx';
const SONAME = 'libz.so.1';
const DATA = `/memfd:ulp:data:${SONAME} (deleted)`;

export interface ZlibBuilds {
  /** The installed libz (what nginx loads) and a rebuild of it with a visible change (scripts/real-libs/build-zlib.sh). */
  installed: string;
  installedBuildId: string;
  other: string;
  otherBuildId: string;
}

export interface ScenarioOptions {
  zlib: ZlibBuilds;
  /** Seconds of load before the patch, after it, after the reload, and after the revert. */
  phaseSeconds: number;
  workers: number;
  /** Concurrent verifying clients (one request per connection, each body inflated and compared). */
  clients: number;
  /** Path of wrk for extra load (keep-alive connections, not verified), or undefined. */
  wrk: string | undefined;
  log: (line: string) => void;
}

export interface WorkerCheck {
  pid: number;
  liveBuildId: string | undefined;
  forkProtection: boolean;
  /** Inode of its `ulp:data:libz.so.1` memfd, one per alias. */
  dataInodes: number[];
}

export interface ScenarioResult {
  ok: boolean;
  problems: string[];
  nginxVersion: string;
  masterPid: number;
  /** `slow`: requests that timed out once and were asked again (a GET of a static page may be repeated; a busy machine may stall one). */
  requests: { verified: number; failed: number; errors: number; slow: number; firstFailure?: string };
  wrk?: {
    requests: number;
    socketErrors: number;
    readErrors: number;
    non2xx: number;
    seconds: number;
    raw?: string;
  };
  /** `ulp-trigger` runs: which process, which way, what it reported. */
  triggers: Array<{
    pid: number;
    role: 'master' | 'worker';
    revert: boolean;
    outcome: string;
    pauseMs: number | undefined;
  }>;
  /** Workers forked by the patched master (after the reload), and after the revert. */
  afterPatch: WorkerCheck[];
  afterRevert: WorkerCheck[];
  masterDataInode: number | undefined;
  /** error.log lines that say a worker died, or worse. */
  crashes: string[];
  forksSeenByMaster: number;
  seconds: number;
}

/** Exit code of scripts/real-libs/*.sh when they cannot run here (no sources, no tools). */
const CANNOT_RUN = 77;

/** The installed libz and a rebuild of it with a visible change (scripts/real-libs/build-zlib.sh), or why they cannot be had here. */
export function zlibBuilds(): ZlibBuilds | string {
  const r = spawnSync(join(ROOT, 'scripts/real-libs/build-zlib.sh'), [], { encoding: 'utf8' });
  if (r.status === CANNOT_RUN) return r.stderr.trim().split('\n').at(-1) ?? 'build-zlib.sh cannot run here';
  if (r.status !== 0) throw new Error(`build-zlib.sh failed (${r.status}):\n${r.stderr}`);
  const p = Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 2, -1)]),
  );
  return {
    installed: p.ZLIB_INSTALLED!,
    installedBuildId: p.ZLIB_INSTALLED_BUILD_ID!,
    other: p.ZLIB_VISIBLE!,
    otherBuildId: p.ZLIB_VISIBLE_BUILD_ID!,
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A page worth compressing, the same every run. */
function page(): Buffer {
  const words = [
    'live',
    'patch',
    'fork',
    'worker',
    'master',
    'zlib',
    'deflate',
    'alias',
    'shared',
    'private',
    'memfd',
    'nginx',
  ];
  const out: string[] = [];
  let x = 12345;
  for (let i = 0; i < 12_000; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out.push(words[x % words.length]!);
    if (i % 16 === 15) out.push('\n');
  }
  return Buffer.from(out.join(' '));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The start of an nginx.conf that keeps everything of the run in `dir` (pid, error log, temp folders),
 * up to and including `http {`: the scenario adds its own http settings and servers.
 */
export function configHead(dir: string, workers: number, writtenBy: string): string {
  return `# written by ${writtenBy}; removed when the run ends
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
`;
}

/** The lines of the run's error.log that tell of a crash or a serious error (a worker killed by a signal). */
export function nginxCrashes(dir: string): string[] {
  const errorLog = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
  return errorLog.split('\n').filter((l) => /exited on signal|\[(alert|crit|emerg)\]/.test(l));
}

function config(dir: string, port: number, workers: number): string {
  return `${configHead(dir, workers, 'lab/nginx/scenario.ts')}  types { text/plain txt; }
  gzip on;
  gzip_types text/plain;
  gzip_min_length 0;
  gzip_comp_level 6;
  server {
    listen 127.0.0.1:${port};
    root ${dir}/www;
  }
}
`;
}

function nginx(dir: string, ...args: string[]): void {
  const r = spawnSync(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nginx ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX] /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

export async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** New workers: `count` children of the master that are not in `old` (old workers may still be finishing their requests). */
export async function nextWorkers(master: number, old: readonly number[], count: number): Promise<number[]> {
  return waitFor(`${count} new nginx workers`, () => {
    const kids = childrenOf(master).filter((p) => !old.includes(p));
    return kids.length === count ? kids : undefined;
  });
}

function dataInodes(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/maps`, 'utf8')
      .split('\n')
      .filter((l) => l.endsWith(DATA))
      .map((l) => Number(l.split(/\s+/)[4]));
  } catch {
    return [];
  }
}

function checkWorker(pid: number): WorkerCheck {
  const r = runCli('ulp-trigger', ['--status', String(pid), '--json']);
  const lib = r.json?.libraries?.find((l: { soname: string }) => l.soname === SONAME);
  return {
    pid,
    liveBuildId: lib?.live,
    forkProtection: r.json?.fork?.installed === true,
    dataInodes: dataInodes(pid),
  };
}

/** Generous: nginx answers in milliseconds, but a request may wait out a pause and a loaded machine; see Verifier.loop. */
const REQUEST_TIMEOUT_MS = 60_000;

class RequestTimeout extends Error {
  constructor() {
    super(`request timed out (no response in ${REQUEST_TIMEOUT_MS / 1000} s)`);
  }
}

/** Verifying client: one request per connection (so a reload never races a reused keep-alive socket), body inflated and compared. */
class Verifier {
  verified = 0;
  failed = 0;
  errors = 0;
  slow = 0;
  firstFailure: string | undefined;
  private running = true;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly port: number,
    private readonly expected: Buffer,
  ) {}

  start(n: number): void {
    for (let i = 0; i < n; i++) this.loops.push(this.loop());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private fail(kind: 'failed' | 'errors', why: string): void {
    this[kind]++;
    this.firstFailure ??= why;
  }

  private async loop(): Promise<void> {
    // A timeout alone does not decide the verdict on a shared, loaded machine: the same
    // request is asked again, and only a second timeout in a row (two minutes without a
    // response: a hung worker) counts as broken.
    let timedOut = false;
    while (this.running) {
      try {
        const { status, encoding, body } = await this.get();
        timedOut = false;
        if (status !== 200) this.fail('failed', `HTTP ${status}`);
        else if (encoding !== 'gzip') this.fail('failed', `content-encoding ${encoding}`);
        else if (!gunzipSync(body).equals(this.expected))
          this.fail('failed', 'the inflated body differs from the page');
        else this.verified++;
      } catch (e) {
        if (e instanceof RequestTimeout && !timedOut) {
          timedOut = true;
          this.slow++;
          continue;
        }
        this.fail('errors', (e as Error).message);
        await sleep(10);
      }
    }
  }

  private get(): Promise<{ status: number; encoding: string | undefined; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = http.get(
        {
          host: '127.0.0.1',
          port: this.port,
          path: '/page.txt',
          agent: false,
          headers: { 'accept-encoding': 'gzip', connection: 'close' },
          timeout: REQUEST_TIMEOUT_MS,
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              encoding: res.headers['content-encoding'],
              body: Buffer.concat(parts),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new RequestTimeout()));
      req.on('error', reject);
    });
  }
}

/** wrk's keep-alive connections (-c): a graceful reload closes each idle one once, which wrk counts as a read error. */
const WRK_CONNECTIONS = 16;

function parseWrk(out: string): ScenarioResult['wrk'] {
  // "97364 requests in 3.00s" or "in 1.02m" once the run passes a minute.
  const m = /(\d+) requests in ([\d.]+)(ms|s|m|h)\b/.exec(out);
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 } as Record<string, number>;
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const [connect, read, write, timeout] = sock ? sock.slice(1).map(Number) : [0, 0, 0, 0];
  return {
    requests: m ? Number(m[1]) : 0,
    seconds: m ? Number(m[2]) * unit[m[3]!]! : 0,
    socketErrors: connect! + read! + write! + timeout!,
    readErrors: read!,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    ...(m ? {} : { raw: out.slice(-2000) }),
  };
}

export async function runScenario(opts: ScenarioOptions): Promise<ScenarioResult> {
  const t0 = Date.now();
  const log = opts.log;
  const dir = mkdtempSync(join(tmpdir(), 'ulp-nginx-'));
  let master: number | undefined;
  let wrk: ChildProcess | undefined;
  let verifier: Verifier | undefined;
  const problems: string[] = [];
  const triggers: ScenarioResult['triggers'] = [];
  try {
    // Workers run as nobody: they must be able to read the page.
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'www'));
    mkdirSync(join(dir, 'tmp'));
    const expected = page();
    writeFileSync(join(dir, 'www', 'page.txt'), expected);
    const fix = join(dir, 'zlib.ulp');
    const packed = runCli('ulp-pack', [opts.zlib.installed, opts.zlib.other, '-o', fix]);
    if (packed.code !== 0)
      throw new Error(`ulp-pack failed (${packed.code}): ${packed.stdout}${packed.stderr}`);
    const port = await freePort();
    writeFileSync(join(dir, 'nginx.conf'), config(dir, port, opts.workers));
    const nginxVersion = spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim();

    nginx(dir); // daemonizes: the master is not our child, and the trigger traces it from its own process
    master = await waitFor('nginx.pid', () => {
      const p = existsSync(join(dir, 'nginx.pid'))
        ? Number(readFileSync(join(dir, 'nginx.pid'), 'utf8').trim())
        : 0;
      return p > 0 ? p : undefined;
    });
    const m = master;
    let workers = await nextWorkers(m, [], opts.workers);
    log(
      `${nginxVersion}: master ${m}, workers ${workers.join(' ')}, http://127.0.0.1:${port}/page.txt (${expected.length} bytes, gzip)`,
    );
    const libz = readFileSync(`/proc/${m}/maps`, 'utf8')
      .split('\n')
      .find((l) => l.includes('/libz.so'));
    if (!libz?.endsWith(opts.zlib.installed))
      throw new Error(`nginx does not load ${opts.zlib.installed}: ${libz ?? 'no libz mapped'}`);

    verifier = new Verifier(port, expected);
    verifier.start(opts.clients);
    let wrkOut = '';
    if (opts.wrk) {
      wrk = spawn(
        opts.wrk,
        [
          '-t2',
          `-c${WRK_CONNECTIONS}`,
          '-d600s',
          '-H',
          'Accept-Encoding: gzip',
          `http://127.0.0.1:${port}/page.txt`,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      wrk.stdout!.on('data', (d) => (wrkOut += d));
      wrk.stderr!.on('data', (d) => (wrkOut += d));
    }
    const phase = async (name: string) => {
      const before = verifier!.verified;
      await sleep(opts.phaseSeconds * 1000);
      log(`  ${name}: ${verifier!.verified - before} verified responses in ${opts.phaseSeconds} s`);
    };
    const run = async (revert: boolean) => {
      // Master and workers at once, each in its own trigger process.
      const targets = [
        { pid: m, role: 'master' as const },
        ...workers.map((pid) => ({ pid, role: 'worker' as const })),
      ];
      const runs: Run[] = await Promise.all(
        targets.map((x) =>
          runCliAsync('ulp-trigger', [String(x.pid), fix, '--json', ...(revert ? ['--revert'] : [])]),
        ),
      );
      runs.forEach((r, i) => {
        const x = targets[i]!;
        triggers.push({
          pid: x.pid,
          role: x.role,
          revert,
          outcome:
            r.json?.outcome ?? `exit ${r.code}: ${r.json?.error?.code ?? r.stderr.trim().split('\n').at(-1)}`,
          pauseMs: r.json?.pauseMs,
        });
        if (r.code !== 0)
          problems.push(
            `ulp-trigger ${revert ? '--revert ' : ''}on ${x.role} ${x.pid} failed: ${r.stdout}${r.stderr}`,
          );
      });
      log(
        `  ${revert ? 'reverted' : 'patched'} master and ${workers.length} workers: paused ${triggers
          .slice(-targets.length)
          .map((x) => `${x.pauseMs?.toFixed(1) ?? '?'} ms`)
          .join(', ')}`,
      );
    };
    const reload = async (): Promise<number[]> => {
      const old = workers;
      nginx(dir, '-s', 'reload');
      workers = await nextWorkers(m, old, opts.workers);
      log(`  nginx -s reload: the master forked workers ${workers.join(' ')}`);
      return workers;
    };
    const expectWorkers = (checks: WorkerCheck[], buildId: string, when: string) => {
      const masterInode = dataInodes(m)[0];
      const seen = new Set<number>([masterInode ?? -1]);
      for (const w of checks) {
        if (w.liveBuildId !== buildId)
          problems.push(`worker ${w.pid} forked ${when} runs build ${w.liveBuildId}, not ${buildId}`);
        if (!w.forkProtection) problems.push(`worker ${w.pid} forked ${when} has no fork protection`);
        if (w.dataInodes.length < 2 || new Set(w.dataInodes).size !== 1)
          problems.push(
            `worker ${w.pid} forked ${when}: its libz data is not one memfd at every alias (${w.dataInodes.join(',')})`,
          );
        else if (seen.has(w.dataInodes[0]!))
          problems.push(
            `worker ${w.pid} forked ${when} shares its libz data with the master or another worker (inode ${w.dataInodes[0]})`,
          );
        else seen.add(w.dataInodes[0]!);
      }
    };

    await phase('before the patch');
    await run(false);
    await phase('patched, old workers');
    await reload();
    const afterPatch = workers.map(checkWorker);
    expectWorkers(afterPatch, opts.zlib.otherBuildId, 'after the patch');
    const masterDataInode = dataInodes(m)[0];
    await phase('patched, workers forked by the patched master');
    await run(true);
    await reload();
    const afterRevert = workers.map(checkWorker);
    expectWorkers(afterRevert, opts.zlib.installedBuildId, 'after the revert');
    await phase('reverted, workers forked after the revert');
    const forksSeenByMaster = runCli('ulp-trigger', ['--status', String(m), '--json']).json?.fork?.forks ?? 0;

    await verifier.stop();
    let wrkResult: ScenarioResult['wrk'];
    if (wrk) {
      const done = new Promise((r) => wrk!.on('close', r));
      wrk.kill('SIGINT'); // wrk prints its summary when interrupted
      await done;
      wrk = undefined;
      wrkResult = parseWrk(wrkOut);
    }
    const crashes = nginxCrashes(dir);
    const requests = {
      verified: verifier.verified,
      failed: verifier.failed,
      errors: verifier.errors,
      slow: verifier.slow,
      ...(verifier.firstFailure ? { firstFailure: verifier.firstFailure } : {}),
    };
    if (requests.failed || requests.errors)
      problems.push(
        `${requests.failed} failed and ${requests.errors} broken requests (first: ${requests.firstFailure})`,
      );
    if (requests.verified === 0) problems.push('no request was verified');
    if (wrkResult) {
      // Two reloads close each keep-alive connection at most once each, between requests (nginx's graceful shutdown).
      const expectedCloses = 2 * WRK_CONNECTIONS;
      if (wrkResult.requests === 0) problems.push(`wrk made no request (its output: ${wrkResult.raw ?? ''})`);
      if (
        wrkResult.non2xx ||
        wrkResult.socketErrors - wrkResult.readErrors ||
        wrkResult.readErrors > expectedCloses
      ) {
        problems.push(
          `wrk: ${wrkResult.non2xx} non-2xx responses, ${wrkResult.socketErrors} socket errors (${wrkResult.readErrors} reads, at most ${expectedCloses} expected from the reloads)`,
        );
      }
    }
    if (crashes.length) problems.push(`nginx error.log: ${crashes.join(' | ')}`);
    return {
      ok: problems.length === 0,
      problems,
      nginxVersion,
      masterPid: m,
      requests,
      ...(wrkResult ? { wrk: wrkResult } : {}),
      triggers,
      afterPatch,
      afterRevert,
      masterDataInode,
      crashes,
      forksSeenByMaster,
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    await verifier?.stop();
    if (wrk && wrk.exitCode === null) wrk.kill('SIGKILL');
    if (master !== undefined) await stopNginx(dir, master);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** nginx -s quit, then SIGKILL for whatever of ours is left (by pid: the master and its children only). */
export async function stopNginx(dir: string, master: number): Promise<void> {
  const kids = childrenOf(master);
  try {
    nginx(dir, '-s', 'quit');
  } catch {
    // the master is gone or unresponsive: killed below
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && [master, ...kids].some(alive)) await sleep(50);
  for (const pid of [master, ...kids, ...childrenOf(master)]) {
    if (!alive(pid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
