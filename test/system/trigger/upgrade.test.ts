/**
 * A real package upgrade with real dpkg and apt: a fixture library packaged
 * as .deb files of its own (never a real system package), v1 installed,
 * processes started on it (a threaded one, a forking server and its
 * workers, a threaded one under another user), v2 installed through apt
 * with ulp's apt hook (ops/apt) configured, so the hook patches them; then a
 * v3 that is not eligible. Checks what each process prints and maps, what
 * --outdated and needrestart say, and the hook's log. The packages are
 * purged at the end.
 *
 * The hook is configured for this test's apt run only (a private
 * apt.conf.d folder and ULP_HOOK_PIDS), so it never touches other
 * processes on the machine.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseElf } from '../../../elf/index.js';
import { ROOT, runCli } from '../../../lab/cli.js';
import { compile } from '../../../lab/compile.js';
import { buildDeb } from '../../../lab/deb.js';
import { UPG_SONAME, upgLib } from '../../../lab/upgrade-fixture.js';
import { startTarget, type Target } from '../../../lab/target.js';

const PKG = 'ulp-upgtest-lib1';
const SONAME = UPG_SONAME;
const LIBDIR = '/usr/lib/x86_64-linux-gnu';
const FILE = `${LIBDIR}/libulpupgtest.so.1.0.0`;
const NOBODY = 65534;

const canRun =
  process.geteuid?.() === 0 &&
  ['dpkg', 'dpkg-deb', 'apt-get', 'needrestart', 'setpriv'].every(
    (c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0,
  );

const lib = upgLib;

function program(name: string): string {
  // Linked against v1's folder; at run time ld.so finds the installed package's file.
  return compile({
    sources: [`upgrade/${name}.c`],
    out: name,
    flags: ['-O2', '-pthread'],
    libs: [`-L${dirname(lib(1))}`, `-l:${SONAME}`],
  });
}

function upgDeb(dir: string, version: number): string {
  return buildDeb(dir, {
    name: PKG,
    version: `1.0-${version}`,
    files: {
      [FILE.slice(1)]: lib(version),
      [`${LIBDIR.slice(1)}/${SONAME}`]: { link: 'libulpupgtest.so.1.0.0' },
    },
  });
}

const dpkg = (...args: string[]) => execFileSync('dpkg', args, { stdio: 'pipe', encoding: 'utf8' });
const buildIdOf = (path: string) => parseElf(readFileSync(path)).buildId!;

/** The last "v= n=" line each pid printed. */
function lastLines(out: string): Map<number, { v: number; n: number }> {
  const m = new Map<number, { v: number; n: number }>();
  for (const x of out.matchAll(/^pid=(\d+) v=(\d+) n=(\d+)$/gm))
    m.set(Number(x[1]), { v: Number(x[2]), n: Number(x[3]) });
  return m;
}

function needrestartFlags(pids: number[]): Map<number, string> {
  const r = spawnSync('needrestart', ['-b', '-r', 'l', '-v'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const text = `${r.stdout}\n${r.stderr}`;
  const out = new Map<number, string>();
  for (const pid of pids) {
    const line = new RegExp(`#${pid} uses (?:deleted|obsolete|non-existing) (\\S+)`).exec(text);
    if (line) out.set(pid, line[1]!);
  }
  return out;
}

describe('after apt upgrade: the apt hook patches every process running the replaced library', function () {
  this.timeout(600_000);
  let dir: string;
  let debs: string[];
  const targets: Target[] = [];
  let pids: number[] = [];
  let threaded: Target;
  let server: Target;
  let other: Target;
  let env: Record<string, string>;
  let log: string;
  let bundlesDir: string;
  let confDir: string;

  before(async function () {
    if (!canRun) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'ulp-upgrade-'));
    chmodSync(dir, 0o755);
    debs = [1, 2, 3].map((v) => upgDeb(dir, v));
    spawnSync('dpkg', ['--purge', PKG], { stdio: 'ignore' }); // a previous run that died
    dpkg('-i', debs[0]!);
    assert.equal(buildIdOf(FILE), buildIdOf(lib(1)));
    const threads = program('upg_threads');
    threaded = startTarget([threads]);
    server = startTarget([program('upg_server')]);
    other = startTarget(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', threads]);
    targets.push(threaded, server, other);
    await threaded.waitFor((o) => lastLines(o).size >= 1);
    await server.waitFor((o) => lastLines(o).size >= 3);
    await other.waitFor((o) => lastLines(o).size >= 1);
    pids = [
      ...lastLines(threaded.output()).keys(),
      ...lastLines(server.output()).keys(),
      ...lastLines(other.output()).keys(),
    ].sort((a, b) => a - b);
    assert.equal(pids.length, 5);
    assert.equal(
      Number(
        /Uid:\s+(\d+)/.exec(
          readFileSync(`/proc/${[...lastLines(other.output()).keys()][0]}/status`, 'utf8'),
        )![1],
      ),
      NOBODY,
    );

    confDir = join(dir, 'apt.conf.d');
    const inst = spawnSync(
      'sh',
      [join(ROOT, 'ops/apt/install.sh'), '--libdir', join(dir, 'lib'), '--confdir', confDir],
      { encoding: 'utf8' },
    );
    assert.equal(inst.status, 0, inst.stderr);
    log = join(dir, 'log', 'upgrade.log');
    bundlesDir = join(dir, 'bundles');
    env = {
      // apt runs its hooks from another folder: tsx is named by its absolute URL.
      ULP_TRIGGER: `${process.execPath} --import ${pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href} ${join(ROOT, 'bin', 'ulp-trigger.ts')}`,
      ULP_LOG: log,
      ULP_BUNDLES_DIR: bundlesDir,
      ULP_HOOK_PIDS: pids.join(' '),
      ULP_HOOK_DEFAULTS: join(dir, 'no-defaults'),
    };
  });

  after(() => {
    for (const t of targets) t.dispose();
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL'); // the server's workers, should the fixture's parent-death signal not have come
      } catch {
        /* gone */
      }
    }
    if (canRun) spawnSync('dpkg', ['--purge', PKG], { stdio: 'ignore' });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** apt-get install of a local .deb, with only this test's apt.conf.d (the hook) and the hook's settings. */
  function aptInstall(deb: string): string {
    // APT_CONFIG is read before the parts folder, so apt reads this test's folder instead of /etc/apt/apt.conf.d.
    const aptConfig = join(dir, 'apt.conf');
    writeFileSync(aptConfig, `Dir::Etc::parts "${confDir}";\n`);
    const r = spawnSync('apt-get', ['install', '-y', '-o', 'DPkg::Lock::Timeout=600', deb], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', APT_CONFIG: aptConfig, ...env },
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  it('v2 (patchable): every process runs v2 with its state kept, --outdated lists none, the log has one line per process', async () => {
    const before = new Map([
      ...lastLines(threaded.output()),
      ...lastLines(server.output()),
      ...lastLines(other.output()),
    ]);
    for (const p of pids) assert.equal(before.get(p)?.v, 1);
    const aptOut = aptInstall(debs[1]!);
    assert.equal(buildIdOf(FILE), buildIdOf(lib(2)), 'dpkg installed v2');
    assert.match(aptOut, /ulp: result: 5 patched; no process needs a restart/);

    // Each process prints v=2 and a counter that went on from where it was.
    const outputs = [threaded, server, other];
    for (const t of outputs) await t.waitFor((o) => [...lastLines(o).values()].every((x) => x.v === 2));
    const now = new Map([
      ...lastLines(threaded.output()),
      ...lastLines(server.output()),
      ...lastLines(other.output()),
    ]);
    for (const p of pids) {
      assert.equal(now.get(p)?.v, 2, `pid ${p}`);
      assert.ok(
        now.get(p)!.n > before.get(p)!.n,
        `pid ${p} kept its counter: ${before.get(p)!.n} -> ${now.get(p)!.n}`,
      );
    }

    const o = runCli('ulp-trigger', ['--outdated', '--json', ...pids.map(String)]);
    assert.equal(o.code, 0, o.stdout + o.stderr);
    assert.deepEqual(o.json.summary, { processes: 5, patched: 5, patchable: 0, refused: 0, inaccessible: 0 });

    // One result line per process, each applied, with the bundle's patch id; one bundle for the one pair of builds.
    const lines = readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l.includes('ULP-RESULT:'));
    assert.deepEqual(
      lines.map((l) => Number(/ pid=(\d+) /.exec(l)![1])).sort((a, b) => a - b),
      pids,
    );
    for (const l of lines)
      assert.match(
        l,
        new RegExp(
          `lib=${SONAME.replace(/\./g, '\\.')} result=applied from=${buildIdOf(lib(1))} to=${buildIdOf(lib(2))} patch=[0-9a-f]{32}`,
        ),
      );
    assert.match(readFileSync(log, 'utf8'), /ulp-apt-hook: exit=0\n$/);
    const kept = readdirSync(bundlesDir);
    assert.deepEqual(kept, [`${SONAME}_${buildIdOf(lib(1))}_${buildIdOf(lib(2))}.ulp`]);

    for (const l of lines) assert.match(l, / old_code=memfd( |$)/);
    // v1's code, still mapped for pointers taken before the switch, now runs from a memfd copy: no executable
    // mapping of the deleted file is left, and stock needrestart lists none of the processes.
    for (const p of pids) {
      const maps = readFileSync(`/proc/${p}/maps`, 'utf8').split('\n');
      assert.deepEqual(
        maps.filter((l) => l.includes(FILE) && / r-xp /.test(l)),
        [],
        `pid ${p}`,
      );
      assert.ok(
        maps.some((l) =>
          / r-xp .*\/memfd:ulp-retained:[0-9a-f]+:[0-9a-f]+:\d+:libulpupgtest\.so\.1 \(deleted\)$/.test(l),
        ),
        `pid ${p}:\n${maps.join('\n')}`,
      );
    }
    assert.deepEqual([...needrestartFlags(pids)], [], 'needrestart lists none of them');

    // The kept bundle reverts one process and applies again (what an operator does with --revert).
    const bundle = join(bundlesDir, kept[0]!);
    const pid = pids[0]!;
    assert.equal(runCli('ulp-trigger', [String(pid), bundle, '--revert']).code, 0);
    const owner = [threaded, server, other].find((t) => lastLines(t.output()).has(pid))!;
    const mark = owner.output().length;
    await owner.waitFor((out) => new RegExp(`^pid=${pid} v=1 `, 'm').test(out.slice(mark)));
    assert.equal(runCli('ulp-trigger', [String(pid), bundle]).code, 0);
    const mark2 = owner.output().length;
    await owner.waitFor((out) => new RegExp(`^pid=${pid} v=2 `, 'm').test(out.slice(mark2)));
  });

  it('v3 (not eligible): --outdated lists every process as needing a restart with the reason, nothing is touched', async () => {
    const maps = new Map(pids.map((p) => [p, readFileSync(`/proc/${p}/maps`, 'utf8')]));
    const logBefore = readFileSync(log, 'utf8');
    const aptOut = aptInstall(debs[2]!);
    assert.equal(buildIdOf(FILE), buildIdOf(lib(3)));
    assert.match(aptOut, /ulp: NEEDRESTART-PID: upg_(?:server|threads)=/);

    const o = runCli('ulp-trigger', ['--outdated', '--json', ...pids.map(String)]);
    assert.equal(o.code, 7, o.stdout + o.stderr);
    assert.deepEqual(o.json.summary, { processes: 5, patched: 0, patchable: 0, refused: 5, inaccessible: 0 });
    for (const p of o.json.libraries[0].processes) {
      assert.equal(p.running.buildId, buildIdOf(lib(2)), 'they run v2, the build ulp staged');
      assert.ok(
        p.reasons.some((r: any) => /^DATA_/.test(r.code)),
        JSON.stringify(p.reasons),
      );
    }
    const text = runCli('ulp-trigger', ['--outdated', ...pids.map(String)]);
    assert.match(text.stdout, /refused because:\n[\s\S]*restart these processes to run the new build/);

    // The hook logged one refused line per process, and no bundle was written for v3.
    const lines = readFileSync(log, 'utf8')
      .slice(logBefore.length)
      .split('\n')
      .filter((l) => l.includes('ULP-RESULT:'));
    assert.deepEqual(
      lines.map((l) => Number(/ pid=(\d+) /.exec(l)![1])).sort((a, b) => a - b),
      pids,
    );
    for (const l of lines) assert.match(l, / result=refused .*code=[A-Z_]+ reason=/);
    assert.match(readFileSync(log, 'utf8'), /NEEDRESTART-PID: upg_server=\d+,\d+,\d+\n/);
    assert.equal(readdirSync(bundlesDir).length, 1);

    // Nothing touched: the same mappings, and every process still runs v2 and counts on.
    for (const p of pids) assert.equal(readFileSync(`/proc/${p}/maps`, 'utf8'), maps.get(p), `maps of ${p}`);
    const mark = new Map([threaded, server, other].map((t) => [t, lastLines(t.output())]));
    for (const [t, last] of mark) {
      await t.waitFor((out) =>
        [...lastLines(out)].every(([pid, x]) => x.v === 2 && x.n > (last.get(pid)?.n ?? 0)),
      );
    }
    assert.ok(existsSync(FILE));
  });
});
