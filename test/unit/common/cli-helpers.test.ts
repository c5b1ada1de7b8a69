/** The output helpers both commands share (common/cli.ts). */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import {
  ExitCode,
  asUlpError,
  exitCodeFor,
  exitCodeOf,
  jsonReplacer,
  parseCommandLine,
  progress,
  toolVersion,
} from '../../../common/cli.js';
import { UlpError } from '../../../common/errors.js';

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const s = new Writable({
    write(chunk, _enc, cb) {
      s.text += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text: string };
  s.text = '';
  Object.assign(s, { isTTY, columns: 40 });
  return s;
}

describe('common/cli', () => {
  it('draws a progress line only on a terminal, and clears it', async () => {
    const tty = fakeStream(true);
    const p = progress('tool', tty);
    p.update('step one');
    p.update('a very long step that does not fit in forty columns at all');
    p.done();
    await new Promise((r) => setImmediate(r));
    assert.match(
      tty.text,
      // eslint-disable-next-line no-control-regex -- the escape sequence that clears a terminal line is what is checked
      /^\r\x1b\[Ktool: step one\r\x1b\[Ktool: a very long step that does not fi\r\x1b\[K$/,
    );
    const pipe = fakeStream(false);
    const q = progress('tool', pipe);
    q.update('step');
    q.done();
    assert.equal(pipe.text, '');
  });

  it('prints bigints as hex in JSON', () => {
    assert.equal(JSON.stringify({ a: 255n, b: -16n }, jsonReplacer), '{"a":"0xff","b":"-0x10"}');
  });

  it('maps codes through the registry; a code outside it is an internal error', () => {
    assert.equal(exitCodeFor(new UlpError('BUNDLE_CORRUPT', 'm')), ExitCode.INVALID_INPUT);
    assert.equal(exitCodeFor(new UlpError('SWITCH_ROLLED_BACK', 'm')), ExitCode.ROLLED_BACK);
    assert.equal(exitCodeOf('X_OTHER'), ExitCode.INTERNAL);
    const wrapped = asUlpError(new TypeError('boom'));
    assert.equal(wrapped.code, 'INTERNAL_ERROR');
    assert.match(wrapped.hint!, /bug/);
  });

  it('turns commander outcomes into exit codes without exiting', async () => {
    const mk = () =>
      new Command('t')
        .option('--x')
        .version('1.2.3')
        .configureOutput({ writeOut: () => {}, writeErr: () => {} });
    assert.equal(await parseCommandLine(mk(), ['--x'], 'PACK_USAGE'), undefined);
    assert.equal(await parseCommandLine(mk(), ['--help'], 'PACK_USAGE'), 0);
    assert.equal(await parseCommandLine(mk(), ['--version'], 'PACK_USAGE'), 0);
    // Commander's own complaints become the command's usage error, shown like any other error.
    await assert.rejects(parseCommandLine(mk(), ['--nope'], 'TRIGGER_USAGE'), (e: UlpError) => {
      assert.equal(e.code, 'TRIGGER_USAGE');
      assert.equal(e.message, "unknown option '--nope'");
      assert.equal(e.hint, 'Run t --help.');
      return true;
    });
    assert.equal(exitCodeFor(new UlpError('TRIGGER_USAGE', 'm')), 64);
  });

  it('knows the package version', () => assert.match(toolVersion(), /^\d+\.\d+\.\d+/));
});
