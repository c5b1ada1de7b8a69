/**
 * `npm run demo`: the whole job end to end, on a small library built here.
 *
 *   1. build libdemo v1 and v2 (same data layout, different code) and a program linked to v1
 *   2. start the program: it calls the library every 200 ms and prints what it sees
 *   3. ulp-pack v1 v2        -> fix.ulp
 *   4. ulp-trigger PID fix.ulp        the output changes, the counter keeps counting
 *   5. ulp-trigger --status PID
 *   6. ulp-trigger PID fix.ulp --revert
 *
 * Every step is checked; the script exits non-zero if one did not behave, and
 * always stops the program and removes its files.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, ROOT } from '../lab/root.js';
import { handleArgs } from '../lab/script-args.js';

const SRC = join(FIXTURES, 'trigger');
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function step(title: string): void {
  process.stdout.write(`\n${bold('== ' + title)}\n`);
}

function show(cmd: string[], env: Record<string, string> = {}): { code: number; stdout: string } {
  process.stdout.write(`$ ${cmd.join(' ')}\n`);
  const [bin, ...args] = cmd;
  const program =
    bin === 'ulp-pack' || bin === 'ulp-trigger'
      ? [process.execPath, join(ROOT, 'dist', 'bin', `${bin}.js`)]
      : [bin!];
  const r = spawnSync(program[0]!, [...program.slice(1), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  process.stdout.write(r.stdout.replace(/^/gm, '  '));
  if (r.stderr) process.stdout.write(r.stderr.replace(/^/gm, '  '));
  return { code: r.status ?? -1, stdout: r.stdout };
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`demo step did not behave: ${what}`);
  process.stdout.write(`  ok: ${what}\n`);
}

const lines = (log: string) =>
  readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('round='));
const field = (line: string, key: string) => new RegExp(`${key}=(\\S+)`).exec(line)?.[1];

async function nextLines(log: string, n: number): Promise<string[]> {
  const start = lines(log).length;
  const deadline = Date.now() + 10_000;
  while (lines(log).length < start + n) {
    if (Date.now() > deadline) throw new Error('the program stopped printing');
    await new Promise((r) => setTimeout(r, 50));
  }
  return lines(log).slice(start, start + n);
}

async function main(): Promise<void> {
  handleArgs(import.meta.url, {});
  if (!existsSync(join(ROOT, 'dist', 'bin', 'ulp-trigger.js')))
    throw new Error('run `npm install` first (it builds dist/)');
  const dir = mkdtempSync(join(tmpdir(), 'ulp-demo-'));
  let pid: number | undefined;
  try {
    step('1. build two versions of libdemo.so.1 and a program that uses it');
    for (const v of [1, 2])
      show([
        'gcc',
        '-shared',
        '-fPIC',
        '-O2',
        `-DDEMO_VERSION=${v}`,
        '-Wl,-soname,libdemo.so.1',
        '-Wl,-z,relro,-z,now',
        '-o',
        join(dir, `libdemo-v${v}.so`),
        join(SRC, 'libdemo.c'),
      ]);
    mkdirSync(join(dir, 'lib'));
    copyFileSync(join(dir, 'libdemo-v1.so'), join(dir, 'lib', 'libdemo.so.1'));
    show([
      'gcc',
      '-O2',
      '-o',
      join(dir, 'demo_main'),
      join(SRC, 'demo_main.c'),
      `-L${join(dir, 'lib')}`,
      '-l:libdemo.so.1',
    ]);

    step('2. start the program on v1');
    const log = join(dir, 'program.log');
    pid = Number(
      execFileSync(
        'sh',
        [
          '-c',
          `LD_LIBRARY_PATH='${join(dir, 'lib')}' '${join(dir, 'demo_main')}' 200 >'${log}' 2>&1 & echo $!`,
        ],
        { encoding: 'utf8' },
      ).trim(),
    );
    process.stdout.write(`  program running as pid ${pid}\n`);
    const before = await nextLines(log, 2);
    before.forEach((l) => process.stdout.write(`  | ${l}\n`));
    check(field(before[1]!, 'version') === '1', 'the program runs v1');

    step('3. compare the builds and write a patch bundle');
    const fix = join(dir, 'fix.ulp');
    check(
      show(['ulp-pack', join(dir, 'libdemo-v1.so'), join(dir, 'libdemo-v2.so'), '-o', fix]).code === 0 &&
        existsSync(fix),
      'ulp-pack wrote fix.ulp',
    );

    step('4. apply it to the running program');
    check(show(['ulp-trigger', String(pid), fix]).code === 0, 'ulp-trigger applied the patch');
    const after = await nextLines(log, 2);
    after.forEach((l) => process.stdout.write(`  | ${l}\n`));
    check(
      field(after[1]!, 'version') === '2' && field(after[1]!, 'greet') === 'HELLO',
      'the program now runs v2 code',
    );
    const counters = lines(log).map((l) => Number(field(l, 'counter')));
    check(
      counters.every((c, i) => i === 0 || c === counters[i - 1]! + 1),
      `the global counter kept counting through the switch (${counters[0]} .. ${counters.at(-1)})`,
    );
    check(
      field(after[1]!, 'saved') === '2',
      "a function pointer saved before the patch runs v2 too (v1's changed entry jumps to v2)",
    );

    step('5. what is live in the process');
    const status = show(['ulp-trigger', '--status', String(pid)]);
    check(
      status.code === 0 && /patch [0-9a-f]{12}: applied/.test(status.stdout),
      '--status shows the patch applied',
    );

    step('6. roll it back');
    check(show(['ulp-trigger', String(pid), fix, '--revert']).code === 0, 'ulp-trigger reverted the patch');
    const reverted = await nextLines(log, 2);
    reverted.forEach((l) => process.stdout.write(`  | ${l}\n`));
    check(field(reverted[1]!, 'version') === '1', 'the program runs v1 again, still counting');
    process.stdout.write(
      `\n${bold('demo complete')}: the program was patched and reverted while it ran, without a restart.\n`,
    );
  } finally {
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`\n${e.message}\n`);
  process.exitCode = 1;
});
