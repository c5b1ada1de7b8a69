/**
 * The host policy that makes signatures mandatory (trigger/policy.ts): its
 * parsing, and on a real process every refusal (unsigned, an untrusted
 * signer, --allow-unverified, a broken policy file) with the process
 * untouched; then --outdated --apply, which under the policy packs nothing
 * itself and applies a signed bundle put in its folder.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { parsePolicy } from '../../../trigger/policy.js';
import { bundleFileName } from '../../../trigger/upgrade-model.js';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';

const buildIdOf = (path: string) => parseElf(readFileSync(path)).buildId!;

describe('host policy: parsing (pure)', () => {
  const key = generateKeyPairSync('ed25519').publicKey;
  const parse = (text: string) => parsePolicy(text, '/p.json', () => key);
  const refused = (text: string, why: RegExp) =>
    assert.throws(
      () => parse(text),
      (e: any) => e.code === 'TRIGGER_POLICY_INVALID' && why.test(e.message) && !!e.hint,
    );

  it('reads the fields, with everything off by default', () => {
    assert.deepEqual(parse('{}'), {
      path: '/p.json',
      requireSignature: false,
      trustedKeys: [],
      allowLocalPack: false,
    });
    const p = parse('{"requireSignature": true, "trustedKeys": ["/k.pem"], "allowLocalPack": true}');
    assert.deepEqual(
      [p.requireSignature, p.allowLocalPack, p.trustedKeys.map((k) => k.path)],
      [true, true, ['/k.pem']],
    );
    assert.match(p.trustedKeys[0]!.keyId, /^[0-9a-f]{32}$/);
  });

  it('refuses what it does not understand: it fails closed', () => {
    refused('not json', /is not JSON/);
    refused('[]', /not a JSON object/);
    refused('{"requireSignatures": true}', /unknown field "requireSignatures"/);
    refused('{"requireSignature": "yes", "trustedKeys": ["/k"]}', /"requireSignature" is not true or false/);
    refused('{"requireSignature": true}', /trusts no key/);
    refused('{"trustedKeys": "/k.pem"}', /not a list/);
  });
});

describe('host policy: signatures mandatory', function () {
  this.timeout(300_000);
  let demo: Demo;
  let dir: string;
  let env: Record<string, string>;
  let trusted: string;
  let other: string;
  before(() => {
    demo = buildDemo({ tag: 'policy' });
    dir = mkdtempSync(join(tmpdir(), 'ulp-policy-'));
    const key = (name: string) => {
      const priv = join(dir, `${name}.pem`);
      execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', priv]);
      execFileSync('openssl', ['pkey', '-in', priv, '-pubout', '-out', join(dir, `${name}.pub.pem`)]);
      return priv;
    };
    trusted = key('trusted');
    other = key('other');
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({ requireSignature: true, trustedKeys: [join(dir, 'trusted.pub.pem')] }),
    );
    env = { ULP_POLICY: join(dir, 'policy.json') };
  });
  after(() => {
    demo?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function refused(args: string[], code: string, extraEnv: Record<string, string> = {}): void {
    const r = runCli('ulp-trigger', [...args, '--json'], { ...env, ...extraEnv });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.equal(r.json?.error?.code, code, r.stdout);
    assert.ok(r.json.error.hint);
  }

  it('refuses unsigned and untrusted bundles, --allow-unverified and a broken policy, the process untouched; applies a trusted one', async () => {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    const maps = () => readFileSync(`/proc/${t.pid}/maps`, 'utf8');
    const before = maps();
    const unsigned = demo.pack(1, 2);
    const byOther = demo.pack(1, 2, ['--sign', other]);
    const byTrusted = demo.pack(1, 2, ['--sign', trusted]);
    refused([String(t.pid), unsigned], 'TRIGGER_POLICY_UNSIGNED');
    refused([String(t.pid), byOther], 'TRIGGER_POLICY_UNTRUSTED');
    refused([String(t.pid), byOther, '--key', join(dir, 'other.pub.pem')], 'TRIGGER_POLICY_UNTRUSTED');
    refused([String(t.pid), byTrusted, '--allow-unverified'], 'TRIGGER_POLICY_UNSIGNED');
    refused(['--all', unsigned], 'TRIGGER_POLICY_UNSIGNED');
    writeFileSync(join(dir, 'broken.json'), '{"requireSignature": true,');
    refused([String(t.pid), byTrusted], 'TRIGGER_POLICY_INVALID', { ULP_POLICY: join(dir, 'broken.json') });
    assert.equal(maps(), before, 'nothing was mapped');
    assert.equal(rounds(t.output()).at(-1)?.version, '1');

    // Signed by the trusted key: applied without --key, the policy's key verifies it.
    const ok = runCli('ulp-trigger', [String(t.pid), byTrusted, '--json'], env);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    await t.waitFor((o) => rounds(o).at(-1)?.version === '2');
  });

  it('--outdated --apply packs nothing under the policy, and applies the signed bundle put in its folder', async () => {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    const line = readFileSync(`/proc/${t.pid}/maps`, 'utf8')
      .split('\n')
      .find((l) => l.includes('/libdemo.so.1'))!;
    const path = line.slice(line.indexOf('/'));
    copyFileSync(demo.lib(2), join(dirname(path), '.new'));
    renameSync(join(dirname(path), '.new'), path);
    const bundles = join(dir, 'bundles');
    const before = readFileSync(`/proc/${t.pid}/maps`, 'utf8');

    const r = runCli(
      'ulp-trigger',
      ['--outdated', '--apply', '--bundles-dir', bundles, '--json', String(t.pid)],
      env,
    );
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.deepEqual(
      r.json.processes.map((p: any) => [p.pid, p.result, p.reason.code]),
      [[t.pid, 'refused', 'TRIGGER_POLICY_UNSIGNED']],
    );
    assert.equal(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), before, 'untouched');

    mkdirSync(bundles, { recursive: true });
    copyFileSync(
      demo.pack(1, 2, ['--sign', trusted]),
      join(bundles, bundleFileName('libdemo.so.1', buildIdOf(demo.lib(1)), buildIdOf(demo.lib(2)))),
    );
    const ok = runCli(
      'ulp-trigger',
      ['--outdated', '--apply', '--bundles-dir', bundles, '--json', String(t.pid)],
      env,
    );
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.deepEqual(
      ok.json.bundles.map((b: any) => b.state),
      ['reused'],
    );
    assert.deepEqual(
      ok.json.processes.map((p: any) => p.result),
      ['applied'],
    );
    await t.waitFor((o) => rounds(o).at(-1)?.version === '2');
  });
});
