/**
 * What an operator needs to know about a bundle besides its builds: which
 * package it updates, from which version to which, and which CVEs it fixes
 * (ulp-pack --package, --from-version, --to-version, --fixes). Validated
 * here, pure; stored in the manifest's optional `package` field.
 */
import { UlpError } from '../common/errors.js';
// The manifest's schema is the one definition of the shape; a type import loads no zod.
import type { PackageInfo } from '../patches/manifest.js';
import { CVE_RE } from '../patches/cve.js';

export type { PackageInfo };

/** Debian and RPM package names, and names in general: no spaces, no control characters. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9.+_:@~-]{0,127}$/;
/** A version as a distribution writes it (3.0.20-1~deb12u2, 1:2.5.0-1+deb12u5, 2.1.12-stable). */
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9.+_:~-]{0,127}$/;

export interface PackageArgs {
  package?: string;
  fromVersion?: string;
  toVersion?: string;
  fixes?: string[];
}

export function parsePackageInfo(args: PackageArgs): PackageInfo | undefined {
  const info: PackageInfo = {};
  if (args.package !== undefined) {
    if (!NAME_RE.test(args.package)) {
      throw new UlpError(
        'PACK_BAD_PACKAGE',
        `--package "${args.package}" is not a package name`,
        'Give the name as the distribution spells it (e.g. libssl3): letters, digits and . + _ - only, no spaces, at most 128 characters.',
        { value: args.package },
      );
    }
    info.name = args.package;
  }
  for (const [key, flag] of [
    ['fromVersion', '--from-version'],
    ['toVersion', '--to-version'],
  ] as const) {
    const v = args[key];
    if (v === undefined) continue;
    if (!VERSION_RE.test(v)) {
      throw new UlpError(
        'PACK_BAD_VERSION',
        `${flag} "${v}" is not a version`,
        'Give the version as the package manager shows it (e.g. 3.0.20-1~deb12u2): no spaces, at most 128 characters.',
        { option: flag, value: v },
      );
    }
    info[key] = v;
  }
  if (args.fixes?.length) {
    const fixes: string[] = [];
    for (const raw of args.fixes) {
      const id = raw.trim().toUpperCase();
      if (!CVE_RE.test(id)) {
        throw new UlpError(
          'PACK_BAD_CVE',
          `--fixes "${raw}" is not a CVE id`,
          'Give one CVE id per --fixes, in the form CVE-2024-12345.',
          { value: raw },
        );
      }
      if (!fixes.includes(id)) fixes.push(id);
    }
    info.fixes = fixes;
  }
  return Object.keys(info).length > 0 ? info : undefined;
}
