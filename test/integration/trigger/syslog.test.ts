/**
 * Applies and reverts go to the system log (trigger/syslog.ts): a real
 * logger(1) writing to a datagram socket this test listens on
 * ($ULP_SYSLOG_SOCKET), one message per process with ident ulp, pid,
 * command, library, build-ids, patch id and result; failures too; dry runs
 * not; nothing with ULP_SYSLOG=0; --outdated --apply's result lines.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { logLine } from '../../../trigger/syslog.js';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { startTarget } from '../../../lab/target.js';

const buildIdOf = (path: string) => parseElf(readFileSync(path)).buildId!;

describe('system log: the line (pure)', () => {
  it('names the process, the library, the builds, the patch and the result; an error with its code', () => {
    const ids = { from: 'aa', to: 'bb', patchId: 'pp' };
    assert.equal(
      logLine(
        'forward',
        7,
        'my app',
        'libx.so.1',
        { result: { outcome: 'applied', pauseMs: 1.5 } as any },
        ids,
      ),
      'apply pid=7 comm="my app" lib=libx.so.1 from=aa to=bb patch=pp result=applied pause_ms=1.50',
    );
    assert.equal(
      logLine('reverse', 7, undefined, 'libx.so.1', { error: { code: 'PROC_EXITED', message: 'gone' } }, ids),
      'revert pid=7 comm=? lib=libx.so.1 from=aa to=bb patch=pp result=failed code=PROC_EXITED reason=gone',
    );
  });
});

describe('system log: applies and reverts', function () {
  this.timeout(300_000);
  let demo: Demo;
  let dir: string;
  let listener: ChildProcess;
  let socket: string;
  let received: string;
  before(async () => {
    demo = buildDemo({ tag: 'syslog' });
    dir = mkdtempSync(join(tmpdir(), 'ulp-syslog-'));
    socket = join(dir, 'log.sock');
    received = join(dir, 'received');
    const ready = join(dir, 'ready');
    listener = spawn(
      'python3',
      [
        '-c',
        `import socket\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(${JSON.stringify(socket)})\nopen(${JSON.stringify(ready)},'w').close()\nwhile True:\n  d=s.recv(65536)\n  with open(${JSON.stringify(received)},'ab') as f: f.write(d+b'\\n')\n`,
      ],
      { stdio: 'ignore' },
    );
    while (!existsSync(ready)) await new Promise((r) => setTimeout(r, 50));
  });
  after(() => {
    listener?.kill('SIGKILL');
    demo?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const messages = () => (existsSync(received) ? readFileSync(received, 'utf8').trimEnd().split('\n') : []);
  /** The messages once `ready` holds for them: the listener writes each datagram after it was sent, in its own time. */
  const messagesWhen = async (ready: (m: string[]) => boolean): Promise<string[]> => {
    for (let i = 0; i < 1500 && !ready(messages()); i++) await new Promise((r) => setTimeout(r, 20));
    return messages();
  };
  /** Datagrams are delivered when logger's send returns: read after the command exits. */
  const trigger = (args: string[], env: Record<string, string> = {}) =>
    runCli('ulp-trigger', args, { ULP_SYSLOG_SOCKET: socket, ...env });

  it('logs an apply, a failure and a revert, one message each; not a dry run, nothing with ULP_SYSLOG=0', async () => {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    const fix = demo.pack(1, 2);
    const [v1, v2] = [buildIdOf(demo.lib(1)), buildIdOf(demo.lib(2))];

    assert.equal(trigger([String(t.pid), fix, '--dry-run']).code, 0);
    assert.deepEqual(messages(), [], 'a dry run changes nothing and is not logged');
    assert.equal(trigger([String(t.pid), fix]).code, 0);
    const sleeper = startTarget(['sleep', '600']);
    try {
      assert.equal(trigger([String(sleeper.pid), fix]).code, 2);
    } finally {
      sleeper.dispose();
    }
    assert.equal(trigger([String(t.pid), fix, '--revert']).code, 0);
    assert.equal(trigger([String(t.pid), fix], { ULP_SYSLOG: '0' }).code, 0);

    const m = await messagesWhen((x) => x.length >= 3);
    assert.equal(m.length, 3, m.join('\n'));
    assert.match(
      m[0]!,
      new RegExp(
        `^<\\d+>.* ulp: apply pid=${t.pid} comm=demo_main lib=libdemo\\.so\\.1 from=${v1} to=${v2} patch=[0-9a-f]{32} result=applied pause_ms=\\d+\\.\\d\\d$`,
      ),
    );
    assert.match(
      m[1]!,
      / ulp: apply pid=\d+ comm=sleep lib=libdemo\.so\.1 .* result=failed code=TRIGGER_NOT_LOADED reason=/,
    );
    assert.match(
      m[2]!,
      new RegExp(
        ` ulp: revert pid=${t.pid} comm=demo_main lib=libdemo\\.so\\.1 from=${v2} to=${v1} patch=[0-9a-f]{32} result=reverted`,
      ),
    );

    // --all: one message per process.
    assert.equal(trigger(['--all', fix, '--revert']).code, 0);
    const revertedAll = (l: string) => new RegExp(` ulp: revert pid=${t.pid} .* result=reverted`).test(l);
    const all = (await messagesWhen((x) => x.slice(3).some(revertedAll))).slice(3);
    assert.ok(all.some(revertedAll), messages().join('\n'));

    // --outdated --apply: its result line for each process.
    const line = readFileSync(`/proc/${t.pid}/maps`, 'utf8')
      .split('\n')
      .find((l) => l.includes('/libdemo.so.1') && !l.includes('memfd'))!;
    const path = line.slice(line.indexOf('/')).replace(/ \(deleted\)$/, '');
    copyFileSync(demo.lib(2), `${path}.new`);
    renameSync(`${path}.new`, path);
    const n = messages().length;
    assert.equal(
      trigger(['--outdated', '--apply', '--bundles-dir', join(dir, 'bundles'), String(t.pid)]).code,
      0,
    );
    assert.deepEqual(
      (await messagesWhen((x) => x.length > n))
        .slice(n)
        .map((l) => l.replace(/^.* ulp: /, '').replace(/ (from|to|patch|pause_ms)=\S+/g, '')),
      [`outdated-apply pid=${t.pid} comm=demo_main lib=libdemo.so.1 result=applied old_code=memfd`],
    );
  });
});
