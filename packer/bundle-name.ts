/**
 * The file name of a bundle kept in a bundles folder: the SONAME and both
 * full build-ids, so that one name is one (old, new) pair on every host.
 * `ulp-pack --deb` writes these names and `ulp-trigger --outdated --apply`
 * looks them up, so a folder filled by one is reused by the other. Pure.
 */
export function bundleFileName(soname: string, from: string, to: string): string {
  const safe = soname.replace(/[^A-Za-z0-9._+-]/g, '_');
  return `${safe}_${from}_${to}.ulp`;
}
