/**
 * The memfd name of a retained old build's code (retain.ts): it carries the
 * device and inode of the deleted file the code came from, so that readers of
 * /proc/PID/maps (--outdated) still tie the copy to its file. Pure.
 */
const RETAINED_RE = /^\/memfd:ulp-retained:([0-9a-f]+:[0-9a-f]+):(\d+):(.+?)(?: \(deleted\))?$/;

/** The memfd name for a copy of a mapping of file dev:inode (memfd names are at most 249 bytes). */
export function retainedMemfdName(dev: string, inode: number, soname: string): string {
  return `ulp-retained:${dev}:${inode}:${soname}`.slice(0, 249);
}

/** "dev:inode" of the file a retained copy came from, for a path of /proc/PID/maps; undefined for any other path. */
export function retainedFileKey(path: string): string | undefined {
  const m = RETAINED_RE.exec(path);
  return m ? `${m[1]}:${m[2]}` : undefined;
}
