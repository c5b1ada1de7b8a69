/**
 * How numbers and build-ids are written for people and in JSON, one way
 * everywhere: the same value reads the same in a message, a report and
 * `--json`.
 */

/** `0x…`; a negative value (an addend, a displacement) as `-0x…`. */
export function hex(value: bigint | number): string {
  const v = BigInt(value);
  return v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16);
}

/** The first 12 hex digits of a build-id, enough to tell builds apart in a line of text. */
export function shortBuildId(id: string | undefined): string {
  return id ? id.slice(0, 12) : 'no-build-id';
}
