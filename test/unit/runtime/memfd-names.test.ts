/**
 * The `ulp:` memfd names (runtime/memfd-names.ts), the state format every
 * patched process carries: each name parses back to what formatted it, from
 * the name and from the /proc/PID/maps path, cut to what memfd_create
 * accepts; a name of a newer ulp is recognised as ulp's without being
 * mistaken for one this version knows.
 */
import assert from 'node:assert/strict';
import {
  buildMemfdName,
  dataMemfdName,
  FORK_MEMFD,
  journalMemfdName,
  MAX_MEMFD_NAME,
  memfdMapsPath,
  memfdNameOfPath,
  metaMemfdName,
  parseMemfdName,
  parseMemfdPath,
  sonameOfDataName,
  STUB_MEMFD,
} from '../../../runtime/memfd-names.js';

const patchId = 'ab'.repeat(16);
const peer = '0123456789abcdef0123456789abcdef01234567';

describe('ulp: memfd names', () => {
  it('each kind parses back to what formatted it, from the name and from its maps path', () => {
    const cases = [
      [
        buildMemfdName(patchId, 'new', 'libz.so.1', peer),
        { kind: 'build', name: { patchId, role: 'new', soname: 'libz.so.1', peer: peer.slice(0, 16) } },
      ],
      [
        buildMemfdName(patchId, 'old', 'libz.so.1'),
        { kind: 'build', name: { patchId, role: 'old', soname: 'libz.so.1' } },
      ],
      [dataMemfdName('libz.so.1'), { kind: 'data', soname: 'libz.so.1' }],
      [metaMemfdName(patchId), { kind: 'meta', patchId }],
      [journalMemfdName('libz.so.1'), { kind: 'redirects', soname: 'libz.so.1' }],
      [STUB_MEMFD, { kind: 'stub' }],
      [FORK_MEMFD, { kind: 'fork' }],
    ] as const;
    for (const [name, parsed] of cases) {
      assert.deepEqual(parseMemfdName(name), parsed, name);
      assert.deepEqual(parseMemfdPath(memfdMapsPath(name)), parsed, name);
      assert.deepEqual(parseMemfdPath(`/memfd:${name}`), parsed, `${name} not yet deleted`);
    }
    assert.equal(memfdMapsPath(STUB_MEMFD), '/memfd:ulp:stub (deleted)');
  });

  it('names are cut to the 249 bytes memfd_create accepts, and the cut name still parses', () => {
    const soname = 'lib' + 'x'.repeat(400) + '.so.1';
    for (const name of [
      buildMemfdName(patchId, 'new', soname, peer),
      dataMemfdName(soname),
      journalMemfdName(soname),
    ]) {
      assert.equal(name.length, MAX_MEMFD_NAME);
      assert.ok(parseMemfdName(name)?.kind !== 'other', name.slice(0, 30));
    }
  });

  it("a ulp: name this version does not know is ulp's but of no known kind; other memfds and files are not ulp's", () => {
    assert.deepEqual(parseMemfdPath('/memfd:ulp:future-thing:x (deleted)'), {
      kind: 'other',
      name: 'ulp:future-thing:x',
    });
    assert.equal(parseMemfdPath('/memfd:pulseaudio (deleted)'), undefined);
    assert.equal(parseMemfdPath('/usr/lib/ulp:stub'), undefined);
    assert.equal(parseMemfdPath(''), undefined);
    assert.equal(memfdNameOfPath('/memfd:ulp:data:libz.so.1 (deleted)'), 'ulp:data:libz.so.1');
  });

  it('a build name needs a hex patch id and a role: data, meta and journal names are never builds', () => {
    assert.equal(parseMemfdName('ulp:data:new:libz.so.1')?.kind, 'data');
    assert.equal(parseMemfdName(`ulp:meta:${patchId}`)?.kind, 'meta');
    assert.equal(parseMemfdName(`ulp:${patchId}:mid:libz.so.1`)?.kind, 'other');
  });

  it("the soname of a data name, for the fork table's entries", () => {
    assert.equal(sonameOfDataName(dataMemfdName('libcrypto.so.3')), 'libcrypto.so.3');
    assert.equal(sonameOfDataName('something else'), 'something else');
  });
});
