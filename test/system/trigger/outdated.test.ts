/**
 * `ulp-trigger --outdated` against real processes whose libraries are
 * replaced on disk the way dpkg does it (the new build written to a temporary
 * file, renamed over the path): what it lists, the states it gives, that it
 * works on a process another tracer holds, and its exit codes. Then the same
 * on the real Debian builds of OpenSSL, where one update is patchable and
 * the other is refused.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { dpkgOwners } from '../../../trigger/outdated.js';
import { dpkgPathAliases } from '../../../trigger/outdated-model.js';
import { runCli, type Run } from '../../../lab/cli.js';
import { compile } from '../../../lab/compile.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';
import { startTarget, type Target } from '../../../lab/target.js';
import { asUser, exposed, NOBODY, runCliAs } from '../../../lab/other-user.js';

const buildIdOf = (path: string) => parseElf(readFileSync(path)).buildId!;

/** The path a process maps `name` from, read from its maps. */
function mappedPath(pid: number, name: string): string {
  const line = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .find((l) => l.includes(`/${name}`));
  assert.ok(line, `process ${pid} does not map ${name}`);
  return line.slice(line.indexOf('/')).replace(/ \(deleted\)$/, '');
}

/** What dpkg does: write the new file beside the old one and rename it over the path. */
function replaceLikeDpkg(path: string, newBuild: string): void {
  const tmp = join(dirname(path), `.${Date.now()}.dpkg-new`);
  copyFileSync(newBuild, tmp);
  renameSync(tmp, path);
}

function outdated(args: string[]): Run {
  return runCli('ulp-trigger', ['--outdated', ...args]);
}

/** A tracer that holds `pid` with PTRACE_SEIZE and waits (python's ctypes, as a debugger would). */
async function seize(pid: number): Promise<ChildProcess> {
  const tracer = spawn(
    'python3',
    [
      '-c',
      `import ctypes,time\nlibc=ctypes.CDLL(None,use_errno=True)\nprint(libc.ptrace(0x4206,${pid},0,0),flush=True)\ntime.sleep(600)`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const answer = await new Promise<string>((resolve) =>
    tracer.stdout!.once('data', (d) => resolve(String(d))),
  );
  assert.equal(answer.trim(), '0', 'PTRACE_SEIZE failed');
  assert.equal(
    readFileSync(`/proc/${pid}/status`, 'utf8').match(/TracerPid:\s*(\d+)/)![1],
    String(tracer.pid),
  );
  return tracer;
}

describe('ulp-trigger --outdated', function () {
  this.timeout(180_000);
  let demo: Demo;
  before(() => {
    demo = buildDemo({ tag: 'outdated' });
  });
  after(() => demo?.dispose());

  it('lists a process whose library was replaced with both builds, patchable, then patched after the apply', async () => {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    const path = mappedPath(t.pid, 'libdemo.so.1');
    const [v1, v2] = [buildIdOf(demo.lib(1)), buildIdOf(demo.lib(2))];

    const before = outdated([String(t.pid), '--json']);
    assert.equal(before.code, 0, before.stdout + before.stderr);
    assert.deepEqual(before.json.libraries, [], 'nothing is replaced yet');

    replaceLikeDpkg(path, demo.lib(2));
    const r = outdated([String(t.pid), '--json']);
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.equal(r.json.libraries.length, 1);
    const lib = r.json.libraries[0];
    assert.equal(lib.path, path);
    assert.equal(lib.soname, 'libdemo.so.1');
    assert.equal(lib.onDisk.buildId, v2);
    assert.deepEqual(
      lib.processes.map((p: any) => [p.pid, p.state, p.running.buildId, p.command]),
      [[t.pid, 'patchable', v1, 'demo_main']],
    );
    assert.equal(
      lib.processes[0].mapFiles,
      `/proc/${t.pid}/map_files/${lib.processes[0].mapFiles.split('/').pop()}`,
    );
    // The running build's bytes can be read back through map_files though its file is gone: it is v1.
    assert.equal(buildIdOf(lib.processes[0].mapFiles), v1);
    assert.deepEqual(
      r.json.pairs.map((p: any) => [p.from, p.to, p.verdict]),
      [[v1, v2, 'compatible']],
    );
    assert.deepEqual(r.json.summary, { processes: 1, patched: 0, patchable: 1, refused: 0, inaccessible: 0 });
    assert.equal(r.json.uninspected, 0);
    assert.equal(r.json.scanned, 1);
    assert.equal(typeof r.json.totalMs, 'number');

    const text = outdated([String(t.pid)]);
    assert.equal(text.code, 7);
    assert.match(
      text.stdout,
      new RegExp(`${path.replace(/[.]/g, '\\.')} \\[libdemo\\.so\\.1\\]: on disk build ${v2.slice(0, 12)}`),
    );
    assert.match(
      text.stdout,
      new RegExp(`running build ${v1.slice(0, 12)}: patchable\\n\\s+${t.pid}  demo_main`),
    );
    assert.match(
      text.stdout,
      /to patch: cp \/proc\/\d+\/map_files\/[0-9a-f]+-[0-9a-f]+ old\.so && ulp-pack old\.so /,
    );

    // Without pids: the whole machine, and this process is among what it finds.
    const all = outdated(['--json']);
    assert.ok([4, 7].includes(all.code), all.stderr);
    const mine = all.json.libraries.find((l: any) => l.path === path);
    assert.deepEqual(
      mine?.processes.map((p: any) => [p.pid, p.state]),
      [[t.pid, 'patchable']],
    );
    assert.ok(all.json.scanned > 1);

    const fix = demo.pack(1, 2);
    const applied = runCli('ulp-trigger', [String(t.pid), fix]);
    assert.equal(applied.code, 0, applied.stderr);
    await t.waitFor((o) => rounds(o).at(-1)?.version === '2');
    const after = outdated([String(t.pid), '--json']);
    assert.equal(after.code, 0, after.stdout);
    assert.deepEqual(
      after.json.libraries[0].processes.map((p: any) => [p.pid, p.state, p.running.buildId]),
      [[t.pid, 'patched', v2]],
    );
    assert.match(
      outdated([String(t.pid)]).stdout,
      /: patched: the on-disk build is live\n[\s\S]*\nnothing left to do: /,
    );

    // Reverted: the new build stays mapped but is not live, so the process is outdated again.
    assert.equal(runCli('ulp-trigger', [String(t.pid), fix, '--revert']).code, 0);
    const reverted = outdated([String(t.pid), '--json']);
    assert.equal(reverted.code, 7);
    assert.deepEqual(
      reverted.json.libraries[0].processes.map((p: any) => [p.state, p.running.buildId]),
      [['patchable', v1]],
    );
  });

  it('leaves alone a replaced file that is not a library, and a library deleted without a replacement', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ulp-outdated-'));
    const targets: Target[] = [];
    try {
      const data = join(dir, 'code.bin');
      writeFileSync(data, Buffer.alloc(4096, 0xc3));
      const mapper = startTarget([compile({ sources: ['outdated/map_file.c'], out: 'map_file' }), data]);
      targets.push(mapper);
      await mapper.waitFor((o) => o.includes('mapped'));
      writeFileSync(join(dir, 'new.bin'), Buffer.alloc(8192, 0x90));
      renameSync(join(dir, 'new.bin'), data);
      assert.match(readFileSync(`/proc/${mapper.pid}/maps`, 'utf8'), /code\.bin \(deleted\)/);

      const t = demo.start(1, ['100']);
      targets.push(t);
      await t.waitFor((o) => rounds(o).length >= 1);
      unlinkSync(mappedPath(t.pid, 'libdemo.so.1'));

      const r = outdated([String(mapper.pid), String(t.pid), '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(r.json.libraries, []);
      assert.equal(r.json.scanned, 2);
      assert.match(
        outdated([String(mapper.pid), String(t.pid)]).stdout,
        /^no process runs a shared library that was replaced on disk\n$/,
      );
    } finally {
      for (const t of targets) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a process another tracer holds: --outdated and --status work, the apply is refused', async () => {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    replaceLikeDpkg(mappedPath(t.pid, 'libdemo.so.1'), demo.lib(2));
    const tracer = await seize(t.pid);
    try {
      const r = outdated([String(t.pid), '--json']);
      assert.equal(r.code, 7, r.stdout + r.stderr);
      const p = r.json.libraries[0].processes[0];
      assert.equal(p.state, 'patchable');
      assert.equal(p.tracedBy, tracer.pid);
      assert.match(outdated([String(t.pid)]).stdout, new RegExp(`traced by pid ${tracer.pid}`));

      const st = runCli('ulp-trigger', ['--status', String(t.pid), '--json']);
      assert.equal(st.code, 0, st.stdout + st.stderr);
      assert.ok(
        st.json.objects.some((o: any) => o.soname === 'libdemo.so.1' && o.buildId === buildIdOf(demo.lib(1))),
      );

      const apply = runCli('ulp-trigger', [String(t.pid), demo.pack(1, 2), '--json']);
      assert.equal(apply.code, 4);
      assert.equal(apply.json.error.code, 'PROC_ALREADY_TRACED');
      // Nothing was touched: the process still runs v1 and maps no build of ulp's.
      assert.doesNotMatch(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), /memfd:ulp:/);
    } finally {
      tracer.kill('SIGKILL');
    }
    const mark = t.output().length;
    await t.waitFor((o) => rounds(o.slice(mark)).length >= 1);
    assert.equal(rounds(t.output()).at(-1)!.version, '1');
  });

  it('without root: a process of the same user is listed inaccessible (its running build cannot be read), others are counted uninspected', async function () {
    if (process.getuid?.() !== 0) this.skip();
    // A folder the unprivileged user can use: the library, and HOME/TMPDIR for tsx's cache.
    const pub = mkdtempSync(join(tmpdir(), 'ulp-outdated-nobody-'));
    chmodSync(pub, 0o1777);
    copyFileSync(demo.lib(1), join(pub, 'libdemo.so.1'));
    chmodSync(join(pub, 'libdemo.so.1'), 0o644);
    const t = startTarget([...asUser(NOBODY), exposed(demo.exe, join(pub, 'bin')), '100'], {
      LD_LIBRARY_PATH: pub,
    });
    const asNobody = (args: string[]): Run => runCliAs(NOBODY, 'ulp-trigger', args, pub);
    try {
      await t.waitFor((o) => rounds(o).length >= 1);
      replaceLikeDpkg(join(pub, 'libdemo.so.1'), demo.lib(2));
      const r = asNobody(['--outdated', String(t.pid), '--json']);
      assert.equal(r.code, 7, r.stdout + r.stderr);
      const p = r.json.libraries[0].processes[0];
      assert.equal(p.pid, t.pid);
      assert.equal(p.state, 'inaccessible');
      assert.equal(
        p.running.buildId,
        buildIdOf(demo.lib(1)),
        'the build-id is read from memory all the same',
      );
      assert.deepEqual(
        p.reasons.map((x: any) => x.code),
        ['OUTDATED_BUILD_UNREADABLE'],
      );
      assert.deepEqual(r.json.pairs, [], 'nothing could be analysed');
      // The whole machine: root's processes cannot be read and are counted, not listed.
      const all = asNobody(['--outdated', '--json']);
      assert.equal(all.code, 7);
      assert.ok(all.json.uninspected > 0);
      assert.match(
        asNobody(['--outdated']).stdout,
        /could not be inspected \(no permission\); run as root to include them/,
      );
      // As root the same process is patchable.
      assert.equal(outdated([String(t.pid), '--json']).json.libraries[0].processes[0].state, 'patchable');
    } finally {
      t.dispose();
      rmSync(pub, { recursive: true, force: true });
    }
  });

  it('reads a process whose main thread has exited (its /proc/PID/maps is empty) through a live thread', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ulp-outdated-mainexit-'));
    copyFileSync(demo.lib(1), join(dir, 'libdemo.so.1'));
    const t = startTarget(
      [compile({ sources: ['runtime/mainexit.c'], out: 'mainexit', flags: ['-O2', '-pthread'] })],
      { LD_PRELOAD: join(dir, 'libdemo.so.1') },
    );
    try {
      // Not t.waitFor: it takes the zombie leader for an exited process.
      for (let i = 0; i < 500 && !t.output().includes('ready'); i++)
        await new Promise((r) => setTimeout(r, 20));
      assert.match(t.output(), /ready/);
      assert.equal(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), '', 'the leader is a zombie');
      replaceLikeDpkg(join(dir, 'libdemo.so.1'), demo.lib(2));
      const r = outdated([String(t.pid), '--json']);
      assert.equal(r.code, 7, r.stdout + r.stderr);
      const p = r.json.libraries[0].processes[0];
      assert.deepEqual([p.pid, p.state, p.running.buildId], [t.pid, 'patchable', buildIdOf(demo.lib(1))]);
      assert.doesNotMatch(p.mapFiles, new RegExp(`^/proc/${t.pid}/`), 'map_files of a live thread');
    } finally {
      t.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names both package versions when the builds carry an ELF package note', async () => {
    const noted = (v: number) =>
      compile({
        sources: ['trigger/libdemo.c'],
        out: `libdemo-note-v${v}.so`,
        flags: [
          '-shared',
          '-fPIC',
          '-O2',
          `-DDEMO_VERSION=${v}`,
          '-DDEMO_TAG="outdated-note"',
          '-Wl,-soname,libdemo.so.1',
          '-Xlinker',
          `--package-metadata={"type":"deb","name":"libdemo1","version":"${v}.0-1","architecture":"amd64"}`,
        ],
      });
    const dir = mkdtempSync(join(tmpdir(), 'ulp-outdated-note-'));
    copyFileSync(noted(1), join(dir, 'libdemo.so.1'));
    const t = startTarget([demo.exe, '100'], { LD_LIBRARY_PATH: dir });
    try {
      await t.waitFor((o) => rounds(o).length >= 1);
      replaceLikeDpkg(join(dir, 'libdemo.so.1'), noted(2));
      const r = outdated([String(t.pid), '--json']);
      assert.equal(r.code, 7, r.stdout + r.stderr);
      const lib = r.json.libraries[0];
      assert.deepEqual(lib.onDisk.package, { name: 'libdemo1', version: '2.0-1', source: 'note' });
      assert.deepEqual(lib.processes[0].running.package, {
        name: 'libdemo1',
        version: '1.0-1',
        source: 'note',
      });
      const text = outdated([String(t.pid)]).stdout;
      assert.match(
        text,
        /on disk build [0-9a-f]{12} \(libdemo1 2\.0-1\)\n {2}running build [0-9a-f]{12} \(libdemo1 1\.0-1\): patchable/,
      );
    } finally {
      t.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("finds the package that owns a path and its installed version in dpkg's database, as dpkg-query does", function () {
    const libc = readFileSync('/proc/self/maps', 'utf8').match(/\s(\/\S*\/libc\.so\.6)$/m)?.[1];
    // On a merged-/usr system the kernel shows /usr/lib/... and dpkg may list /lib/...: ask dpkg-query for both.
    let owner: string | undefined;
    for (const path of libc ? dpkgPathAliases(libc) : []) {
      try {
        owner = execFileSync('dpkg-query', ['-S', path], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        }).split(':')[0]!;
        break;
      } catch {
        // not listed under this name
      }
    }
    if (!owner) return this.skip(); // not a dpkg system
    const version = execFileSync('dpkg-query', ['-W', '-f=${Version}', owner], { encoding: 'utf8' });
    const found = dpkgOwners('/proc/self/root', [libc!, '/nonexistent/libx.so.1']);
    assert.deepEqual(found.get(libc!), { name: owner, version, source: 'dpkg' });
    assert.equal(found.has('/nonexistent/libx.so.1'), false);
  });

  it('rejects what is not a pid, and options that mean nothing with it', () => {
    for (const [args, pattern] of [
      [['--outdated', 'x'], /"x" is not a process id/],
      [['--outdated', '--status', '1'], /cannot be combined/],
      [['--outdated', '--dry-run'], /--dry-run has no meaning with --outdated/],
      [['--outdated', '--revert', '--json'], /--revert has no meaning with --outdated/],
    ] as Array<[string[], RegExp]>) {
      const r = runCli('ulp-trigger', args);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.json?.error.message ?? r.stderr, pattern);
      if (!r.json) assert.match(r.stderr, /^ulp-trigger: error \[TRIGGER_USAGE\]: .*\n {2}hint: /);
    }
  });
});

describe('ulp-trigger --outdated on the real Debian builds of OpenSSL', function () {
  this.timeout(300_000);
  let real: string | undefined;
  const dirs: string[] = [];
  const targets: Target[] = [];
  before(function () {
    real = realBuildsDir();
    if (!real) this.skip();
  });
  after(() => {
    for (const t of targets) t.dispose();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** python3 with OpenSSL `from` loaded from a private folder, then both libraries replaced by `to` as dpkg would. */
  async function upgraded(from: string, to: string): Promise<{ target: Target; dir: string }> {
    const dir = mkdtempSync(join(tmpdir(), 'ulp-outdated-real-'));
    dirs.push(dir);
    for (const f of [REAL_FILES.crypto, REAL_FILES.ssl])
      copyFileSync(realBuild(real!, from, f), join(dir, f));
    // A private LD_LIBRARY_PATH folder: the machine's own processes use the system's OpenSSL, never these paths.
    const target = startTarget(
      ['python3', '-c', 'import ssl, time\nprint(ssl.OPENSSL_VERSION, flush=True)\ntime.sleep(600)'],
      { LD_LIBRARY_PATH: dir },
    );
    targets.push(target);
    await target.waitFor((o) => o.includes('OpenSSL 3.0.'));
    for (const f of [REAL_FILES.crypto, REAL_FILES.ssl])
      replaceLikeDpkg(join(dir, f), realBuild(real!, to, f));
    return { target, dir };
  }

  const bySoname = (r: Run) => new Map<string, any>(r.json.libraries.map((l: any) => [l.soname, l]));

  it('3.0.19 -> 3.0.20: both libraries patchable, with the builds named in the archive', async () => {
    const { target } = await upgraded(REAL.ssl19, REAL.ssl20);
    const r = outdated([String(target.pid), '--json']);
    assert.equal(r.code, 7, r.stdout + r.stderr);
    const libs = bySoname(r);
    for (const f of [REAL_FILES.crypto, REAL_FILES.ssl]) {
      const lib = libs.get(f);
      assert.ok(lib, `${f} not listed: ${JSON.stringify([...libs.keys()])}`);
      assert.equal(lib.onDisk.buildId, buildIdOf(realBuild(real!, REAL.ssl20, f)));
      assert.deepEqual(
        lib.processes.map((p: any) => [p.pid, p.state, p.running.buildId]),
        [[target.pid, 'patchable', buildIdOf(realBuild(real!, REAL.ssl19, f))]],
      );
    }
    assert.match(libs.get(REAL_FILES.crypto).onDisk.buildId, /^7d90f38412d00023/);
    assert.equal(r.json.pairs.length, 2, 'each pair analysed once');
  });

  it('3.0.20 -> 3.0.22: each state is the verdict ulp-pack --check gives, refusals with its reasons', async () => {
    const { target } = await upgraded(REAL.ssl20, REAL.ssl22);
    const r = outdated([String(target.pid), '--json']);
    assert.equal(r.code, 7, r.stdout + r.stderr);
    const libs = bySoname(r);
    const states: string[] = [];
    for (const f of [REAL_FILES.crypto, REAL_FILES.ssl]) {
      const p = libs.get(f).processes[0];
      states.push(p.state);
      const check = runCli('ulp-pack', [
        realBuild(real!, REAL.ssl20, f),
        realBuild(real!, REAL.ssl22, f),
        '--check',
        '--json',
      ]);
      const expected = check.json.verdict === 'incompatible' ? 'refused' : 'patchable';
      assert.equal(p.state, expected, `${f}: ulp-pack says ${check.json.verdict}`);
      if (expected === 'refused') {
        const packErrors = Object.values(check.json.forward.categories).flatMap((c: any) =>
          c.findings.filter((x: any) => x.severity === 'error').map((x: any) => x.code),
        );
        assert.deepEqual(
          [...new Set(p.reasons.map((x: any) => x.code))].sort(),
          [...new Set(packErrors)].sort(),
        );
      }
    }
    // The archive's README: libssl is incompatible (struct ssl_st grew); the packer refuses at least one of the pair.
    assert.ok(states.includes('refused'), states.join(', '));
    const refused = [...libs.values()].find((l) => l.processes[0].state === 'refused');
    const text = outdated([String(target.pid)]).stdout;
    assert.match(
      text,
      new RegExp(
        `${refused.soname.replace(/\./g, '\\.')} \\[[^\\]]+\\]: on disk build [0-9a-f]{12}[\\s\\S]*refused because:[\\s\\S]*restart these processes`,
      ),
    );
  });
});
