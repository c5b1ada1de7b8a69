/**
 * The system library folder against readelf: every third regular ELF file of
 * type ET_DYN under /usr/lib/x86_64-linux-gnu in name order (all of them with
 * ULP_ELF_ALL=1: about 900 here, 25 s of the suite's time for little more
 * than a third gives; shared objects, and the few position-independent
 * executables that live there) must agree on build-id,
 * SONAME, NEEDED, program and section headers, every dynamic symbol with its
 * version, .symtab counts, and every relocation (type, offset, symbol, addend).
 */
import { strict as assert } from 'node:assert';
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { isUlpError } from '../../../common/errors.js';
import { compareWithReadelf } from '../../../lab/elf/compare.js';
import { readelfAsync } from '../../../lab/elf/readelf.js';

const ROOT = '/usr/lib/x86_64-linux-gnu';
const PARALLEL = 2;
const STRIDE = process.env.ULP_ELF_ALL === '1' ? 1 : 3;

interface Scan {
  candidates: string[];
  skipped: Record<string, number>;
}

/** Regular files only (symlinks point at files the walk meets anyway), classified by their ELF identification. */
function scan(root: string): Scan {
  const out: Scan = { candidates: [], skipped: {} };
  const skip = (why: string) => (out.skipped[why] = (out.skipped[why] ?? 0) + 1);
  const head = Buffer.alloc(20);
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (!e.isFile()) skip(e.isSymbolicLink() ? 'symbolic link' : 'not a regular file');
      else {
        const fd = openSync(p, 'r');
        const n = readSync(fd, head, 0, 20, 0);
        closeSync(fd);
        if (n < 20 || head.readUInt32BE(0) !== 0x7f454c46) skip('not ELF');
        else if (head[4] !== 2 || head[5] !== 1 || head.readUInt16LE(18) !== 62)
          skip('ELF, not 64-bit little-endian x86-64');
        else if (head.readUInt16LE(16) !== 3) skip(`ELF, e_type ${head.readUInt16LE(16)} (not ET_DYN)`);
        else out.candidates.push(p);
      }
    }
  };
  walk(root);
  out.candidates.sort();
  return out;
}

describe('elf: every shared object of the system against readelf -W', function () {
  this.timeout(15 * 60_000);

  it(`agrees with readelf on ${STRIDE === 1 ? 'every' : 'every third'} ET_DYN file under ${ROOT}`, async () => {
    const scanned = scan(ROOT);
    const skipped = scanned.skipped;
    const candidates = scanned.candidates.filter((_, i) => i % STRIDE === 0);
    assert.ok(candidates.length > 100, `only ${candidates.length} candidates`);
    const failures: string[] = [];
    let libraries = 0;
    let executables = 0;
    let next = 0;
    const worker = async () => {
      while (next < candidates.length) {
        const path = candidates[next++]!;
        const re = await readelfAsync(path);
        try {
          const buf = readFileSync(path);
          let obj;
          try {
            obj = parseElf(buf);
            libraries++;
          } catch (e) {
            // A PIE that lives among the libraries: refused as a shared object, read as 'any'.
            if (!(
              isUlpError(e) &&
              e.code === 'ELF_NOT_SHARED_OBJECT' &&
              re.interp !== undefined &&
              re.soname === undefined
            ))
              throw e;
            obj = parseElf(buf, { expect: 'any' });
            executables++;
          }
          const bad = compareWithReadelf(obj, re, { symbolDetails: true, relocDetails: true });
          if (bad.length) failures.push(`${path}:\n    ${bad.slice(0, 3).join('\n    ')}`);
        } catch (e) {
          failures.push(`${path}: ${isUlpError(e) ? `${e.code} ${e.message}` : String(e)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    console.log(
      `      checked ${candidates.length} ELF files (${libraries} shared objects, ${executables} position-independent executables); skipped: ${JSON.stringify(skipped)}`,
    );
    assert.deepEqual(failures.slice(0, 20), [], `${failures.length} of ${candidates.length} files disagree`);
  });
});
