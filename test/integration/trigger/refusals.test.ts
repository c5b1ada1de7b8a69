/**
 * Every refusal of ulp-trigger: a specific error code and exit code, and the
 * target exactly as it was — the same mappings and the same value in every
 * GOT slot of the program and the library — and still running its version.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeBundle, encodeBundle, patchIdOf } from '../../../patches/index.js';
import { runCli, type Run } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { processState } from '../../../lab/process-state.js';
import { startTarget, type Target } from '../../../lab/target.js';
import { NOBODY, runCliAs } from '../../../lab/other-user.js';

describe('ulp-trigger refusals leave the process untouched', function () {
  this.timeout(180_000);
  let demo: Demo;
  let target: Target;
  let fix12: string;
  let fix23: string;
  let work: string;

  before(async () => {
    demo = buildDemo({ relro: 'partial' });
    fix12 = demo.pack(1, 2);
    fix23 = demo.pack(2, 3);
    work = mkdtempSync(join(tmpdir(), 'ulp-refusals-'));
    target = demo.start(1, ['20']);
    await target.waitFor((o) => rounds(o).length >= 2);
  });
  after(() => {
    demo?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  /** Runs the trigger, checks its error and exit code, and that the target is exactly as before. */
  async function refused(
    args: string[],
    code: string,
    exit: number,
    opts: { env?: Record<string, string>; run?: (args: string[]) => Run; pid?: number } = {},
  ): Promise<Run> {
    const pid = opts.pid ?? target.pid;
    const before = processState(pid);
    const r = (opts.run ?? ((a) => runCli('ulp-trigger', a, opts.env)))([...args, '--json']);
    assert.equal(r.json?.error?.code, code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.equal(r.code, exit);
    assert.ok(r.json.error.message.length > 10 && r.json.error.hint, 'a message and a hint');
    const after = processState(pid);
    assert.equal(after.maps, before.maps, 'mappings changed');
    assert.deepEqual(after.slots, before.slots, 'a slot changed');
    if (pid === target.pid) {
      const mark = target.output().length;
      const next = rounds((await target.waitFor((o) => rounds(o.slice(mark)).length >= 1)).slice(mark));
      assert.equal(next.at(-1)!.version, '1');
    }
    return r;
  }

  it('refuses a bundle for another build (wrong build-id)', async () => {
    const r = await refused([String(target.pid), fix23], 'TRIGGER_WRONG_BUILD', 2);
    assert.match(r.json.error.message, /is build [0-9a-f]{12}; this bundle patches build [0-9a-f]{12}/);
  });

  it('refuses a process that has not loaded the library', async () => {
    const other = startTarget(['sleep', '60']);
    try {
      await new Promise((r) => setTimeout(r, 100));
      await refused([String(other.pid), fix12], 'TRIGGER_NOT_LOADED', 2, { pid: other.pid });
    } finally {
      other.dispose();
    }
  });

  it('refuses a tampered bundle (a build byte changed)', async () => {
    const b = decodeBundle(readFileSync(fix12));
    const bad = Buffer.from(b.newBuild);
    bad[bad.length - 100] ^= 0xff;
    // Re-encoding checks hashes, so assemble the tampered tar by swapping the bytes in the encoded archive.
    const good = encodeBundle({ manifest: b.manifest, oldBuild: b.oldBuild, newBuild: b.newBuild });
    const raw = (await import('node:zlib')).gunzipSync(good);
    const at = raw.indexOf(b.newBuild);
    assert.ok(at > 0);
    bad.copy(raw, at);
    const path = join(work, 'tampered.ulp');
    writeFileSync(path, (await import('node:zlib')).gzipSync(raw));
    const r = await refused([String(target.pid), path], r0code(path), 3);
    assert.match(r.json.error.message, /new\.so/);
  });

  it('refuses a bundle signed by another key, and a signed bundle without a key', async () => {
    const a = generateKeyPairSync('ed25519');
    const b = generateKeyPairSync('ed25519');
    const keyA = join(work, 'a.pem');
    const pubB = join(work, 'b.pub.pem');
    writeFileSync(keyA, a.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pubB, b.publicKey.export({ type: 'spki', format: 'pem' }));
    const signed = demo.pack(1, 2, ['--sign', keyA]);
    await refused([String(target.pid), signed, '--key', pubB], 'BUNDLE_SIGNATURE_KEY_MISMATCH', 3);
    await refused([String(target.pid), signed], 'TRIGGER_SIGNATURE_UNVERIFIED', 3);
    const pubA = join(work, 'a.pub.pem');
    writeFileSync(pubA, a.publicKey.export({ type: 'spki', format: 'pem' }));
    const dry = runCli('ulp-trigger', ['--dry-run', String(target.pid), signed, '--key', pubA, '--json']);
    assert.equal(dry.code, 0, dry.stderr);
  });

  it('refuses a pid with no process, and one whose process has exited', async () => {
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    let free = pidMax - 1;
    while (existsSync(`/proc/${free}`)) free--;
    const none = runCli('ulp-trigger', [String(free), fix12, '--json']);
    assert.equal(none.code, 4);
    assert.equal(none.json.error.code, 'PROC_NOT_FOUND');
    const t = startTarget(['true']);
    await new Promise((r) => setTimeout(r, 200));
    const gone = runCli('ulp-trigger', [String(t.pid), fix12, '--json']);
    assert.equal(gone.code, 4);
    // Reaped already, or still waiting for its (reparented) parent to reap it.
    assert.ok(['PROC_NOT_FOUND', 'PROC_ZOMBIE'].includes(gone.json.error.code), gone.stdout);
  });

  it('refuses a process it may not trace (unprivileged user, root-owned target)', async function () {
    if (process.getuid?.() !== 0) this.skip();
    // The bundle must be readable, and the folder writable (tsx's cache), by the unprivileged user.
    const pub = mkdtempSync(join(tmpdir(), 'ulp-nobody-'));
    chmodSync(pub, 0o1777);
    const bundle = join(pub, 'fix.ulp');
    copyFileSync(fix12, bundle);
    chmodSync(bundle, 0o644);
    try {
      const asNobody = (args: string[]): Run => runCliAs(NOBODY, 'ulp-trigger', args, pub);
      await refused([String(target.pid), bundle], 'PROC_PERMISSION_DENIED', 4, { run: asNobody });
    } finally {
      rmSync(pub, { recursive: true, force: true });
    }
  });

  it('refuses a process that another tracer holds, naming the tracer', async () => {
    // A second tracer: python's ctypes seizes the target and waits.
    const tracer: ChildProcess = spawn(
      'python3',
      [
        '-c',
        `import ctypes,time,sys\nlibc=ctypes.CDLL(None,use_errno=True)\nr=libc.ptrace(0x4206,${target.pid},0,0)\nprint(r,flush=True)\ntime.sleep(60)`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve) => tracer.stdout!.once('data', () => resolve()));
      const r = await refused([String(target.pid), fix12], 'PROC_ALREADY_TRACED', 4);
      assert.match(r.json.error.message, new RegExp(String(tracer.pid)));
    } finally {
      tracer.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it('refuses to patch glibc itself', async () => {
    const b = decodeBundle(readFileSync(fix12));
    const manifest = {
      ...b.manifest,
      soname: 'libc.so.6',
      patchId: patchIdOf('libc.so.6', b.manifest.builds.old, b.manifest.builds.new),
    };
    const path = join(work, 'libc.ulp');
    writeFileSync(path, encodeBundle({ manifest, oldBuild: b.oldBuild, newBuild: b.newBuild }));
    await refused([String(target.pid), path], 'TRIGGER_GLIBC', 2);
  });
});

/** The code the bundle reader gives a build whose hash does not match (read from the reader itself, not hard-coded). */
function r0code(path: string): string {
  try {
    decodeBundle(readFileSync(path));
  } catch (e) {
    return (e as { code: string }).code;
  }
  throw new Error('the tampered bundle was accepted');
}
