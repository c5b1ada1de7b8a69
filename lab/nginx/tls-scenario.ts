/**
 * nginx over TLS, with regex locations, under a verifying loopback load
 * while pcre2, libcrypto and libssl are switched to another build with
 * `ulp-trigger --all --pid` (the master and its workers only: other
 * processes on the machine map the same builds), the patched master re-forks
 * its workers (`nginx -s reload`), and everything is reverted. Used by
 * test/system/trigger/nginx-tls.test.ts.
 *
 * nginx loads the builds from a private folder (LD_LIBRARY_PATH), so the
 * run depends on nothing the machine has installed but nginx itself. Every
 * request is a fresh TLS handshake (one request per connection; TLS 1.2 and
 * 1.3 alternate) whose certificate is verified against the test's own CA, to
 * a path that only a regex location with captures answers (pcre2 on every
 * request, JIT-compiled: pcre_jit on), and the body is compared with what
 * the captures must give.
 *
 * Phases last a number of verified responses, not a time: on a loaded
 * machine a phase is slower, never different.
 *
 * Every process this starts is stopped and its folder removed, whatever happens.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, runCliAsync } from '../cli.js';
import {
  childrenOf,
  configHead,
  freePort,
  NGINX,
  nextWorkers,
  nginxCrashes,
  sleep,
  stopNginx,
  waitFor,
} from './scenario.js';
import { selfSignedCert } from '../tls-cert.js';

/** One library switched by a bundle: what nginx must map before, while patched, and after the revert. */
export interface TlsBundle {
  soname: string;
  path: string;
  fromBuildId: string;
  toBuildId: string;
}

/** A library nginx maps whose update was refused: it must stay as loaded, untouched by ulp. */
export interface UntouchedLibrary {
  soname: string;
  buildId: string;
}

export interface TlsScenarioOptions {
  /** Folder on nginx's LD_LIBRARY_PATH holding the builds the bundles switch from. */
  libDir: string;
  /** Applied in this order, reverted in the opposite one. */
  bundles: TlsBundle[];
  untouched: UntouchedLibrary[];
  workers: number;
  clients: number;
  /** Verified responses each phase lasts. */
  responsesPerPhase: number;
  log: (line: string) => void;
}

export interface TriggerRun {
  soname: string;
  revert: boolean;
  code: number;
  /** pid -> outcome, or the error code. */
  outcomes: Record<number, string>;
  /** Changed functions that no jump covers, each with the reason (a real update has a few). */
  uncovered: number;
  /** Processes --all found that are not this nginx's (must be none). */
  strangers: number[];
  /** Each process's pause (the trigger's pauseMs), in the order --all reported them. */
  pausesMs: number[];
}

export interface ProcessCheck {
  pid: number;
  role: 'master' | 'worker';
  when: string;
  /** soname -> live build id per --status (undefined: not patched in this process). */
  live: Record<string, string | undefined>;
  forkProtection: boolean;
  /** soname -> build ids of the files mapped under that soname's file name. */
  mapped: Record<string, string[]>;
  /** soname -> names of the `ulp:` memfds mapped for it (builds, data, journals). */
  ulp: Record<string, string[]>;
}

export interface TlsScenarioResult {
  problems: string[];
  nginxVersion: string;
  masterPid: number;
  requests: {
    verified: number;
    failed: number;
    errors: number;
    tls12: number;
    tls13: number;
    firstFailure?: string;
  };
  triggers: TriggerRun[];
  checks: ProcessCheck[];
  reloads: number;
  crashes: string[];
}

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];

function config(dir: string, port: number, workers: number): string {
  // pcre_jit: each configuration load JIT-compiles the regexes, so a reload of a patched master runs the
  // live pcre2's jit_compile (the function a pcre2 bundle's condition names) and its workers run that code.
  return `pcre_jit on;
${configHead(dir, workers, 'lab/nginx/tls-scenario.ts')}  default_type text/plain;
  # A regex map and regex locations with captures: pcre2 runs on every request.
  map $http_x_probe $probe_kind {
    ~^(?<pk>[a-z]+)-(?<pn>[0-9]+)$ "$pn/$pk";
    default none;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    location ~ ^/re/(?<word>[a-z]+)/(?<num>[0-9]+)$ {
      return 200 "word=$word num=$num probe=$probe_kind\\n";
    }
    location ~* ^/CASE/([a-z]+)\\.TXT$ {
      return 200 "case=$1\\n";
    }
    location / {
      return 404;
    }
  }
}
`;
}

/** Self-signed, for 127.0.0.1: the client verifies it, so every handshake checks the server's signature. */
function makeCert(dir: string): Buffer {
  return selfSignedCert(dir, 'ulp-nginx-test', ['IP:127.0.0.1']);
}

/** One request per connection, so each is a full TLS handshake, and a reload never races a kept-alive socket. */
class Verifier {
  verified = 0;
  failed = 0;
  errors = 0;
  tls12 = 0;
  tls13 = 0;
  firstFailure: string | undefined;
  private running = true;
  private loops: Promise<void>[] = [];
  private seq = 0;

  constructor(
    private readonly port: number,
    private readonly ca: Buffer,
  ) {}

  start(n: number): void {
    for (let i = 0; i < n; i++) this.loops.push(this.loop(i % 2 === 0 ? 'TLSv1.3' : 'TLSv1.2'));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Waits for `n` more verified responses; gives up only if the load stalls for good (then the phase reports it). */
  async more(n: number, stallMs = 120_000): Promise<boolean> {
    const target = this.verified + n;
    let last = this.verified;
    let since = Date.now();
    while (this.verified < target) {
      await sleep(50);
      if (this.verified !== last) [last, since] = [this.verified, Date.now()];
      else if (Date.now() - since > stallMs) return false;
    }
    return true;
  }

  private fail(kind: 'failed' | 'errors', why: string): void {
    this[kind]++;
    this.firstFailure ??= why;
  }

  private async loop(version: 'TLSv1.2' | 'TLSv1.3'): Promise<void> {
    while (this.running) {
      const i = this.seq++;
      const word = WORDS[i % WORDS.length]!;
      const caseProbe = i % 3 === 0;
      const path = caseProbe ? `/CASE/${word}.TXT` : `/re/${word}/${i}`;
      const probe = i % 2 === 0 ? `${word}-${i}` : `NOT A PROBE ${i}`;
      const want = caseProbe
        ? `case=${word}\n`
        : `word=${word} num=${i} probe=${i % 2 === 0 ? `${i}/${word}` : 'none'}\n`;
      try {
        const { status, body, protocol } = await this.get(path, probe, version);
        if (status !== 200) this.fail('failed', `${path}: HTTP ${status}`);
        else if (body !== want)
          this.fail('failed', `${path}: body ${JSON.stringify(body)}, expected ${JSON.stringify(want)}`);
        else if (protocol !== version)
          this.fail('failed', `${path}: negotiated ${protocol}, asked for ${version}`);
        else {
          this.verified++;
          if (version === 'TLSv1.2') this.tls12++;
          else this.tls13++;
        }
      } catch (e) {
        this.fail('errors', `${path}: ${(e as Error).message}`);
        await sleep(10);
      }
    }
  }

  private get(
    path: string,
    probe: string,
    version: 'TLSv1.2' | 'TLSv1.3',
  ): Promise<{ status: number; body: string; protocol: string | null }> {
    return new Promise((resolve, reject) => {
      const req = https.get(
        {
          host: '127.0.0.1',
          port: this.port,
          path,
          agent: false,
          ca: this.ca,
          minVersion: version,
          maxVersion: version,
          headers: { 'x-probe': probe, connection: 'close' },
          timeout: 30_000,
        },
        (res) => {
          const protocol = (res.socket as import('node:tls').TLSSocket).getProtocol?.() ?? null;
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8'), protocol }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
    });
  }
}

/** Names of the `ulp:` memfds mapped in `pid` that belong to `soname`. */
function ulpMappings(pid: number, soname: string): string[] {
  try {
    const names = readFileSync(`/proc/${pid}/maps`, 'utf8')
      .split('\n')
      .map((l) => /\/memfd:(ulp:\S+)/.exec(l)?.[1])
      .filter((n): n is string => !!n && n.endsWith(`:${soname}`));
    return [...new Set(names)];
  } catch {
    return [];
  }
}

/** Build ids of the files mapped whose name starts with the soname's stem (libssl.so.3 -> libssl), read from /proc/PID/map_files. */
function mappedBuilds(pid: number, soname: string): string[] {
  const stem = soname.slice(0, soname.indexOf('.so'));
  const out = new Set<string>();
  let maps: string;
  try {
    maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return [];
  }
  for (const line of maps.split('\n')) {
    const f = line.split(/\s+/);
    const path = f.slice(5).join(' ');
    if (f[2] !== '00000000' || !path.split('/').at(-1)?.startsWith(`${stem}.so`)) continue;
    const r = spawnSync('readelf', ['-n', `/proc/${pid}/map_files/${f[0]}`], { encoding: 'utf8' });
    const id = /Build ID: ([0-9a-f]+)/.exec(r.stdout)?.[1];
    if (id) out.add(id);
  }
  return [...out];
}

export async function runTlsScenario(opts: TlsScenarioOptions): Promise<TlsScenarioResult> {
  const log = opts.log;
  const dir = mkdtempSync(join(tmpdir(), 'ulp-nginx-tls-'));
  const env = { ...process.env, LD_LIBRARY_PATH: opts.libDir };
  const nginx = (...args: string[]) => {
    const r = spawnSync(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), ...args], {
      encoding: 'utf8',
      env,
    });
    if (r.status !== 0) throw new Error(`nginx ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  };
  let master: number | undefined;
  let verifier: Verifier | undefined;
  const problems: string[] = [];
  const triggers: TriggerRun[] = [];
  const checks: ProcessCheck[] = [];
  let reloads = 0;
  try {
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'tmp'));
    const ca = makeCert(dir);
    const port = await freePort();
    writeFileSync(join(dir, 'nginx.conf'), config(dir, port, opts.workers));
    const nginxVersion = spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim();
    nginx(); // daemonizes: the master is not our child
    master = await waitFor('nginx.pid', () => {
      const p = existsSync(join(dir, 'nginx.pid'))
        ? Number(readFileSync(join(dir, 'nginx.pid'), 'utf8').trim())
        : 0;
      return p > 0 ? p : undefined;
    });
    const m = master;
    let workers = await nextWorkers(m, [], opts.workers);
    log(`${nginxVersion}: master ${m}, workers ${workers.join(' ')}, https://127.0.0.1:${port}/re/WORD/N`);
    const maps = readFileSync(`/proc/${m}/maps`, 'utf8');
    for (const { soname } of [...opts.bundles, ...opts.untouched]) {
      if (!maps.includes(join(opts.libDir, soname)))
        throw new Error(`nginx does not load ${soname} from ${opts.libDir}`);
    }

    verifier = new Verifier(port, ca);
    verifier.start(opts.clients);
    const v = verifier;
    const phase = async (name: string) => {
      const before = v.verified;
      if (!(await v.more(opts.responsesPerPhase)))
        problems.push(`${name}: the load stalled (no verified response for two minutes)`);
      log(`  ${name}: ${v.verified - before} verified responses`);
    };
    const check = (when: string) => {
      for (const [pid, role] of [[m, 'master'], ...workers.map((w) => [w, 'worker'])] as Array<
        [number, 'master' | 'worker']
      >) {
        const st = runCli('ulp-trigger', ['--status', String(pid), '--json']).json;
        const live: ProcessCheck['live'] = {};
        const mapped: ProcessCheck['mapped'] = {};
        const ulp: ProcessCheck['ulp'] = {};
        for (const soname of [...opts.bundles.map((b) => b.soname), ...opts.untouched.map((u) => u.soname)]) {
          live[soname] = st?.libraries?.find((l: { soname: string }) => l.soname === soname)?.live;
          mapped[soname] = mappedBuilds(pid, soname);
          ulp[soname] = ulpMappings(pid, soname);
        }
        checks.push({ pid, role, when, live, forkProtection: st?.fork?.installed === true, mapped, ulp });
      }
    };
    const trigger = async (b: TlsBundle, revert: boolean) => {
      const pids = [m, ...workers];
      const r = await runCliAsync('ulp-trigger', [
        '--all',
        b.path,
        ...pids.flatMap((p) => ['--pid', String(p)]),
        '--json',
        ...(revert ? ['--revert'] : []),
      ]);
      const outcomes: TriggerRun['outcomes'] = {};
      const pausesMs: number[] = [];
      let uncovered = 0;
      for (const p of r.json?.processes ?? []) {
        outcomes[p.pid] = p.ok ? p.result.outcome : p.error.code;
        if (p.ok && typeof p.result.pauseMs === 'number') pausesMs.push(p.result.pauseMs);
        uncovered += p.ok ? (p.result.switch?.redirects?.uncovered?.length ?? 0) : 0;
      }
      const strangers = (r.json?.processes ?? [])
        .map((p: { pid: number }) => p.pid)
        .filter((p: number) => !pids.includes(p));
      triggers.push({ soname: b.soname, revert, code: r.code, outcomes, uncovered, strangers, pausesMs });
      if (r.code !== 0)
        problems.push(
          `ulp-trigger --all ${revert ? '--revert ' : ''}${b.soname} exited ${r.code}: ${r.stdout.slice(0, 2000)}${r.stderr}`,
        );
      log(
        `  ${revert ? 'reverted' : 'applied'} ${b.soname} in ${Object.keys(outcomes).length} processes: ${[...new Set(Object.values(outcomes))].join(', ')}; paused ${pausesMs.map((x) => `${x.toFixed(1)} ms`).join(', ')}`,
      );
    };
    const reload = async (when: string) => {
      const old = workers;
      nginx('-s', 'reload');
      reloads++;
      workers = await nextWorkers(m, old, opts.workers);
      log(`  nginx -s reload (${when}): the master forked workers ${workers.join(' ')}`);
    };

    await phase('before the patch');
    check('before');
    for (const b of opts.bundles) {
      await trigger(b, false);
      await phase(`${b.soname} applied`);
    }
    check('applied');
    await reload('patched');
    await phase('patched, workers forked by the patched master');
    check('forked patched');
    for (const b of [...opts.bundles].reverse()) {
      await trigger(b, true);
      await phase(`${b.soname} reverted`);
    }
    check('reverted');
    await reload('reverted');
    await phase('reverted, workers forked after the revert');
    check('forked reverted');

    await v.stop();
    const crashes = nginxCrashes(dir);
    const requests = {
      verified: v.verified,
      failed: v.failed,
      errors: v.errors,
      tls12: v.tls12,
      tls13: v.tls13,
      ...(v.firstFailure ? { firstFailure: v.firstFailure } : {}),
    };
    if (requests.failed || requests.errors)
      problems.push(
        `${requests.failed} failed and ${requests.errors} broken requests (first: ${requests.firstFailure})`,
      );
    if (crashes.length) problems.push(`nginx error.log: ${crashes.join(' | ')}`);
    if (childrenOf(m).length === 0) problems.push('the master has no workers left');
    return { problems, nginxVersion, masterPid: m, requests, triggers, checks, reloads, crashes };
  } finally {
    await verifier?.stop();
    if (master !== undefined) await stopNginx(dir, master);
    rmSync(dir, { recursive: true, force: true });
  }
}
