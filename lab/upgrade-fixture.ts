/** The fixture library of the upgrade tests (test/fixtures/upgrade/libulpupg.c): v1 -> v2 patchable, v3 not. */
import { compile } from './compile.js';

export const UPG_SONAME = 'libulpupgtest.so.1';

export function upgLib(version: number): string {
  return compile({
    sources: ['upgrade/libulpupg.c'],
    out: UPG_SONAME,
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      '-pthread',
      `-DUPG_VERSION=${version}`,
      `-Wl,-soname,${UPG_SONAME}`,
      '-Wl,-z,relro,-z,now',
    ],
  });
}
