/**
 * The scripts' command lines (lab/script-args.ts): what checkArgs accepts,
 * and, over every scripts/*.ts read as text, that each option a script
 * reads is one its handleArgs call accepts and its header (its --help)
 * describes.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../../lab/root.js';
import { checkArgs, headerComment } from '../../../lab/script-args.js';

const SPEC = { values: ['--runs', '--json'], flags: ['--profile'], operands: 1 };

describe('script command lines', () => {
  it('accepts the options a script takes, and its operands', () => {
    assert.deepEqual(checkArgs([], SPEC), { kind: 'run' });
    assert.deepEqual(checkArgs(['--runs', '5', '--profile', 'lib.so', '--json', 'out.json'], SPEC), {
      kind: 'run',
    });
  });

  it('--help or -h wins over anything else', () => {
    assert.deepEqual(checkArgs(['--frob', '--help'], SPEC), { kind: 'help' });
    assert.deepEqual(checkArgs(['-h'], {}), { kind: 'help' });
  });

  it('refuses an unknown option, a missing value and an operand too many, saying which', () => {
    assert.deepEqual(checkArgs(['--frob'], SPEC), { kind: 'usage', message: 'unknown option --frob' });
    assert.deepEqual(checkArgs(['-x'], SPEC), { kind: 'usage', message: 'unknown option -x' });
    assert.deepEqual(checkArgs(['--runs'], SPEC), { kind: 'usage', message: '--runs needs a value' });
    assert.deepEqual(checkArgs(['--runs', '--profile'], SPEC), {
      kind: 'usage',
      message: '--runs needs a value',
    });
    assert.deepEqual(checkArgs(['a.so', 'b.so'], SPEC), {
      kind: 'usage',
      message: 'unexpected argument b.so (at most 1)',
    });
    assert.deepEqual(checkArgs(['a.so'], {}), { kind: 'usage', message: 'unexpected argument a.so' });
  });

  it('takes the leading doc comment of a source as its help', () => {
    assert.equal(headerComment('/**\n * One.\n *\n *   two --x\n */\nconst a = 1;\n'), 'One.\n\n  two --x\n');
    assert.equal(headerComment('const a = 1; /** not a header */'), '');
  });

  describe('every script', () => {
    const dir = join(ROOT, 'scripts');
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const source = readFileSync(join(dir, name), 'utf8');
      // soak.ts declares its options with commander, which has its own --help and refusals.
      if (/from 'commander'/.test(source)) continue;
      it(`${name}: checks its command line, and reads and describes only the options it accepts`, () => {
        const call = /handleArgs\(import\.meta\.url, (\{[\s\S]*?\})\)/.exec(source);
        assert.ok(call, `${name} does not call handleArgs`);
        const accepted = new Set([...call[1]!.matchAll(/'(--[a-z-]+)'/g)].map((m) => m[1]!));
        const read = new Set(
          [...source.matchAll(/(?:arg|flag|numbers|includes|indexOf)\('(--[a-z-]+)'/g)].map((m) => m[1]!),
        );
        // lab/bench/common.ts writes the result to the file named by --json.
        if (source.includes('writeJsonResult(')) read.add('--json');
        for (const o of read) assert.ok(accepted.has(o), `${name} reads ${o} but refuses it`);
        const help = headerComment(source);
        assert.ok(help.length > 0, `${name} has no header comment to print`);
        for (const o of accepted) assert.ok(help.includes(o), `${name}'s header does not describe ${o}`);
      });
    }
  });
});
