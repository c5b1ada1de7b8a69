/**
 * The pure part of `--all`'s scope (trigger/scope.ts): the /proc texts it
 * reads, user names, unit names, and how the filters combine.
 */
import assert from 'node:assert/strict';
import { renderMatches } from '../../../trigger/render.js';
import {
  EMPTY_SCOPE,
  inScope,
  needsFacts,
  parsePasswd,
  realUid,
  resolveUser,
  unitName,
  unitOf,
  userName,
  type ProcessFacts,
} from '../../../trigger/scope.js';

const facts = (over: Partial<ProcessFacts> = {}): ProcessFacts => ({
  pid: 100,
  comm: 'nginx',
  uid: 33,
  unit: 'nginx.service',
  ...over,
});

describe('--all scope (pure)', () => {
  it('reads the real uid, not the effective one, from /proc/PID/status', () => {
    const status =
      'Name:\tpasswd\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n';
    assert.equal(realUid(status), 1000);
    assert.equal(realUid('Name:\tx\n'), undefined);
  });

  it('finds the systemd unit in cgroup v2 and in v1 named-systemd text, the innermost unit that is not a slice', () => {
    assert.equal(unitOf('0::/system.slice/nginx.service\n'), 'nginx.service');
    assert.equal(
      unitOf('0::/system.slice/docker.service/payload/inner\n'),
      'docker.service',
      'a delegated sub-cgroup belongs to its service',
    );
    assert.equal(
      unitOf('0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n'),
      'pipewire.service',
    );
    assert.equal(unitOf('0::/user.slice/user-1000.slice/session-3.scope\n'), 'session-3.scope');
    assert.equal(
      unitOf('0::/user.slice/user-1000.slice\n'),
      undefined,
      'a slice holds units, it is no unit of a process',
    );
    assert.equal(unitOf('0::/\n'), undefined);
    const v1 =
      '12:pids:/system.slice/cron.service\n4:memory:/other/x.service\n1:name=systemd:/system.slice/cron.service\n0::/\n';
    assert.equal(unitOf(v1), 'cron.service', 'the named systemd hierarchy, not a controller');
    assert.equal(unitOf('1:name=systemd:/\n0::/\n'), undefined);
    assert.equal(unitOf('0::/system.slice/system-getty.slice/getty@tty1.service\n'), 'getty@tty1.service');
  });

  it('takes a unit name as systemctl does: without a suffix it is a service', () => {
    assert.equal(unitName('nginx'), 'nginx.service');
    assert.equal(unitName('nginx.service'), 'nginx.service');
    assert.equal(unitName('session-3.scope'), 'session-3.scope');
    assert.equal(unitName('getty@tty1'), 'getty@tty1.service');
  });

  it('resolves users from /etc/passwd text, a number as it is, an unknown name as undefined', () => {
    const users = parsePasswd(
      'root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n# comment\n\nbroken\nwww-data:x:99:99::/:/bin/false\n',
    );
    assert.equal(resolveUser('www-data', users), 33, 'the first entry of a name wins');
    assert.equal(resolveUser('0', users), 0);
    assert.equal(resolveUser('4242', users), 4242, 'a uid need not have a name');
    assert.equal(resolveUser('nosuch', users), undefined);
    assert.equal(userName(33, users), 'www-data');
    assert.equal(userName(4242, users), '4242');
    assert.equal(userName(undefined, users), undefined);
  });

  it('ANDs the filters, ORs the values of one filter, and lets an unknown fact match no filter that asks for it', () => {
    assert.ok(inScope(facts(), EMPTY_SCOPE));
    assert.ok(!needsFacts({ ...EMPTY_SCOPE, exclude: [1] }), 'excluding needs only the pid');
    assert.ok(needsFacts({ ...EMPTY_SCOPE, comms: ['x'] }));
    const scope = {
      exclude: [101],
      uids: [33, 0],
      comms: ['nginx'],
      units: ['nginx.service', 'web.service'],
    };
    assert.ok(inScope(facts(), scope));
    assert.ok(inScope(facts({ uid: 0, unit: 'web.service' }), scope));
    assert.ok(!inScope(facts({ pid: 101 }), scope), 'excluded');
    assert.ok(!inScope(facts({ uid: 1000 }), scope), 'another user');
    assert.ok(!inScope(facts({ comm: 'nginx: worker' }), scope), 'comm is exact');
    assert.ok(!inScope(facts({ unit: 'apache2.service' }), scope), 'another unit');
    assert.ok(!inScope(facts({ unit: undefined }), scope), 'no unit known: not in a unit scope');
    assert.ok(!inScope(facts({ uid: undefined }), scope));
    assert.ok(!inScope(facts({ comm: undefined }), scope));
    assert.ok(
      inScope(facts({ unit: undefined }), { ...scope, units: [] }),
      'a filter not given asks for nothing',
    );
  });

  it('--all --dry-run lists each match on a line: pid, comm, user, unit (or -), which build; nothing more when none', () => {
    const text = renderMatches([
      {
        pid: 4711,
        comm: 'nginx',
        uid: 33,
        user: 'www-data',
        unit: 'nginx.service',
        build: 'old',
        buildId: '1c2ec6beb49da7fb00',
      },
      {
        pid: 9,
        comm: undefined,
        uid: undefined,
        user: undefined,
        unit: undefined,
        build: 'new',
        buildId: '97ff0b2237a6ffa500',
      },
    ]);
    const lines = text.split('\n');
    assert.equal(lines[0], '2 processes found (from /proc, none attached to yet):');
    assert.match(lines[1]!, /^\s+4711 {2}nginx\s+www-data\s+nginx\.service\s+old build 1c2ec6be/);
    assert.match(lines[2]!, /^\s+9 {2}\?\s+\?\s+-\s+new build 97ff0b22/);
    assert.equal(lines[3], 'dry run of each (attaches to it, changes nothing):');
    assert.equal(renderMatches([]), '0 processes found (from /proc, none attached to yet):\n');
  });
});
